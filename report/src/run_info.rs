//! What the report needs from `run.json`: the pair manifests (weights provenance, sizes,
//! preprocessing), where the images were read from, the WSOL threshold and the job's `report`
//! section (the intervals' resamples, seed and confidence).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use types::Variant;
use sources::DataConfig;
use types::Manifest;
use types::RUN_FILE;

use crate::bootstrap::{config_from_job, ReportConfig};

/// SPEC §6's default, for runs whose job does not record one.
pub const DEFAULT_WSOL_THRESHOLD: f64 = 0.2;

#[derive(Deserialize)]
struct RunFile {
    #[serde(default)]
    job: serde_json::Value,
    pairs: Vec<PairEntry>,
}

#[derive(Deserialize)]
struct PairEntry {
    manifest: Manifest,
}

pub struct RunInfo {
    pub manifests: BTreeMap<String, Manifest>,
    /// The job's `data` section, or why it could not be read (Figure 3 then says so).
    pub data: Result<DataConfig, String>,
    pub wsol_threshold: f64,
    /// The job's `subset.top_fraction`, when it records one (the subset itself is read from its table).
    pub top_fraction: Option<f64>,
    /// `job.report`, defaults where the job has none (runs before the section existed).
    pub config: ReportConfig,
}

impl RunInfo {
    pub fn read(run_dir: &Path) -> Result<RunInfo> {
        let path = run_dir.join(RUN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A multi-process run writes one file per process; any of them lists the pairs.
            Err(_) => {
                let alt = run_dir.join("run.process-0.json");
                std::fs::read_to_string(&alt).with_context(|| format!("{}: no run.json", run_dir.display()))?
            }
        };
        let run: RunFile = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
        let data = match run.job.get("data") {
            Some(v) => serde_json::from_value::<DataConfig>(v.clone()).map_err(|e| format!("job.data in run.json: {e}")),
            None => Err("run.json records no job.data".into()),
        };
        let wsol_threshold =
            run.job.pointer("/wsol/threshold").and_then(serde_json::Value::as_f64).unwrap_or(DEFAULT_WSOL_THRESHOLD);
        let config = config_from_job(run.job.get("report")).with_context(|| format!("{}", path.display()))?;
        Ok(RunInfo {
            config,
            manifests: run.pairs.into_iter().map(|p| (p.manifest.name.clone(), p.manifest)).collect(),
            data,
            wsol_threshold,
            top_fraction: run.job.pointer("/subset/top_fraction").and_then(serde_json::Value::as_f64),
        })
    }

    /// real | substitute | random for one variant of a pair; `unknown` for a pair without manifest.
    pub fn weights(&self, model: &str, variant: &str) -> String {
        match (self.manifests.get(model), variant_of(variant)) {
            (Some(m), Some(v)) => m.provenance(v).kind().to_string(),
            _ => "unknown".into(),
        }
    }

    /// `float/int8` provenance of a pair, e.g. `real/substitute`.
    pub fn pair_weights(&self, model: &str) -> String {
        format!("{}/{}", self.weights(model, "float"), self.weights(model, "quantized"))
    }

    pub fn bytes(&self, model: &str, variant: &str) -> Option<u64> {
        Some(self.manifests.get(model)?.file(variant_of(variant)?).bytes)
    }
}

pub fn variant_of(s: &str) -> Option<Variant> {
    Variant::BOTH.into_iter().find(|v| v.as_str() == s)
}

/// Where a relative `data.path` lies. qcam resolved it against the directory it ran in, which the
/// report may not share: try that first, then each folder above the run folder (the run folder is
/// usually `<repo>/runs/<job>`, the path relative to `<repo>`). URLs and absolute paths stay as
/// they are.
pub fn resolve_data_path(path: &Path, run_dir: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
    if path.is_absolute() || sources::is_url(path) || exists(path) {
        return path.to_path_buf();
    }
    let run_dir = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    run_dir.ancestors().map(|base| base.join(path)).find(|p| exists(p)).unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_path_found_above_the_run_folder() {
        let run = Path::new("/repo/runs/demo");
        let exists = |p: &Path| p == Path::new("/repo/jobs/../data");
        assert_eq!(resolve_data_path(Path::new("jobs/../data"), run, exists), Path::new("/repo/jobs/../data"));
        // Not found anywhere: left as written, so the error names what run.json says.
        assert_eq!(resolve_data_path(Path::new("nowhere"), run, |_| false), Path::new("nowhere"));
        // Absolute paths and URLs are never re-based.
        let any = |_: &Path| true;
        assert_eq!(resolve_data_path(Path::new("/data"), Path::new("/r"), any), Path::new("/data"));
        assert_eq!(resolve_data_path(Path::new("s3://b/p"), Path::new("/r"), |_| false), Path::new("s3://b/p"));
    }

    #[test]
    fn variants_by_their_table_names() {
        assert_eq!(variant_of("float"), Some(Variant::Float));
        assert_eq!(variant_of("quantized"), Some(Variant::Quantized));
        assert_eq!(variant_of("int8"), None);
    }
}
