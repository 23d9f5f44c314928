//! The job file: everything a run does, read once and validated before any work starts. Part of the
//! vocabulary because `run.json` records it and the report reads it back with the same struct.
//!
//! Relative paths in a job file are resolved against the job file's own folder, so a job runs the
//! same from any working directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Method;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{file}: cannot read job file: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Invalid { file: PathBuf, field: &'static str, message: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Names the run; also the default output folder name.
    pub name: String,
    pub data: DataConfig,
    pub models: ModelsConfig,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub cam: CamConfig,
    #[serde(default)]
    pub wsol: WsolConfig,
    #[serde(default)]
    pub subset: SubsetConfig,
    #[serde(default)]
    pub perturbation: PerturbationConfig,
    #[serde(default)]
    pub baselines: BaselinesConfig,
    pub output: OutputConfig,
    /// How the report states uncertainty; changes no table of the run.
    #[serde(default)]
    pub report: ReportConfig,
}

/// The job's `[report]` section (`run.json`: `job.report`); absent means these defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Bootstrap resamples per group of images; 0 leaves every interval empty.
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// Seeds every group's draws (mixed with the group's key, so groups draw independently).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Two-sided coverage of the percentile interval, in (0, 1).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

fn default_resamples() -> usize {
    1000
}
/// "QCAM" in ASCII: any fixed number would do; this one is recognisable in a job file.
fn default_seed() -> u64 {
    0x5143_414D
}
fn default_confidence() -> f64 {
    0.95
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { resamples: default_resamples(), seed: default_seed(), confidence: default_confidence() }
    }
}

/// SPEC §4 selection and the running aggregates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetConfig {
    /// Share of each pair's images, by RMSE, that forms the subset: `k = ceil(top_fraction · N)`.
    #[serde(default = "default_top_fraction")]
    pub top_fraction: f64,
    /// Shards per epoch. The aggregates table gets a row per epoch; epochs are counted in shards so
    /// the same shards give the same rows whatever the worker layout or however the run was split.
    #[serde(default = "default_epoch_shards")]
    pub epoch_shards: usize,
}

/// Which images deletion/insertion (SPEC §5) runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerturbScope {
    Subset,
    All,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationConfig {
    #[serde(default = "default_scope")]
    pub scope: PerturbScope,
    /// Curve points are `steps + 1`; each image costs `2 · (steps + 1)` forwards per variant.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Perturbed images per forward pass; 0 = `run.batch_size`.
    #[serde(default)]
    pub batch_size: usize,
    /// Baseline pixel orders also run (`gaussian`, `random`); `[]` runs EigenCAM's only. Each
    /// costs what EigenCAM's order costs, on `baseline_share` of the images.
    #[serde(default = "default_order_baselines")]
    pub baselines: Vec<Method>,
    /// The share of the images deletion/insertion runs on that also get the baselines: the best
    /// `ceil(share · n)` by rank (0 turns the baselines off as `[]` does).
    #[serde(default = "default_baseline_share")]
    pub baseline_share: f64,
    /// Take the scores of the points whose images are already scored instead of running them: the
    /// unperturbed image (phase 1's top-1 probability: deletion's first point, insertion's last)
    /// and the all-zero image (deletion's last, once per model). `false` runs all `2 · (steps + 1)`
    /// forwards, as RISE does; the curves then differ only by the forwards' float rounding.
    #[serde(default = "yes")]
    pub reuse_known_scores: bool,
}

/// The no-model baselines (`wsol` and `perturbation` tables, `method` column): what a map that
/// ignores the image scores, so the report can say what EigenCAM's numbers are worth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselinesConfig {
    /// σ of the centred Gaussian map, as a share of the crop side.
    #[serde(default = "default_gaussian_sigma")]
    pub gaussian_sigma: f64,
    /// Seeds the random pixel order (mixed with each image id, so every image has its own).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder holding one sub-folder per exported pair, each with a `manifest.json`.
    pub dir: PathBuf,
    /// Pair names; each one adds a branch to the graph.
    pub pairs: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Images per forward pass. Batches never span shards.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Timely worker threads per process (`qcam run -w` overrides).
    #[serde(default = "default_one")]
    pub workers: usize,
    /// libtorch intra-op threads per worker; 0 = cores / workers, so workers × threads fit the cores.
    #[serde(default)]
    pub torch_threads: usize,
    /// Batches a worker may have in flight before its source waits (bounds memory: backpressure).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Seconds a cluster process waits for its peers to connect before it gives up, naming them.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_s: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamConfig {
    #[serde(default)]
    pub sign: SignPolicy,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsolConfig {
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The run folder: a path, or an `s3://` / `gs://` URL (then every process of a cluster writes
    /// its own shards' parts there, as with `shared`).
    pub dir: PathBuf,
    /// Replace an existing run folder instead of refusing to touch it.
    #[serde(default)]
    pub overwrite: bool,
    /// Every process of a cluster run sees `dir` (a shared filesystem), so each writes the parts of
    /// the shards it computes. Otherwise (the default) process 0 gathers every row through the
    /// dataflow and writes the whole run into its own `dir`; the other processes write nothing.
    #[serde(default)]
    pub shared: bool,
}

fn default_batch_size() -> usize {
    16
}
fn default_one() -> usize {
    1
}
fn default_in_flight() -> usize {
    4
}
fn default_peer_timeout() -> u64 {
    600
}
fn default_threshold() -> f32 {
    0.2
}
fn default_top_fraction() -> f64 {
    0.05
}
fn default_epoch_shards() -> usize {
    4
}
fn default_scope() -> PerturbScope {
    PerturbScope::Subset
}
fn default_steps() -> usize {
    100
}
fn default_order_baselines() -> Vec<Method> {
    Method::ORDER_BASELINES.to_vec()
}
fn yes() -> bool {
    true
}
fn default_baseline_share() -> f64 {
    0.2
}
/// A quarter of the side: the map's 0.2 cut (WSOL's default threshold) then falls 1.79σ = 0.45
/// sides from the centre, a box just inside the crop, as wide as most ImageNet objects.
fn default_gaussian_sigma() -> f64 {
    0.25
}

impl Default for SubsetConfig {
    fn default() -> Self {
        SubsetConfig { top_fraction: default_top_fraction(), epoch_shards: default_epoch_shards() }
    }
}

impl Default for PerturbationConfig {
    fn default() -> Self {
        PerturbationConfig {
            scope: default_scope(),
            steps: default_steps(),
            batch_size: 0,
            baselines: default_order_baselines(),
            baseline_share: default_baseline_share(),
            reuse_known_scores: true,
        }
    }
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        BaselinesConfig { gaussian_sigma: default_gaussian_sigma(), seed: default_seed() }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            batch_size: default_batch_size(),
            workers: 1,
            torch_threads: 0,
            max_in_flight: default_in_flight(),
            peer_timeout_s: default_peer_timeout(),
        }
    }
}

impl Default for WsolConfig {
    fn default() -> Self {
        WsolConfig { threshold: default_threshold() }
    }
}

impl Job {
    /// Reads, resolves and validates a job file. Every error names the file, and the field where
    /// there is one.
    pub fn load(file: &Path) -> Result<Job, JobError> {
        let text = std::fs::read_to_string(file)
            .map_err(|source| JobError::Read { file: file.to_path_buf(), source })?;
        let mut job = Job::parse(&text, file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        job.resolve_paths(base);
        Ok(job)
    }

    /// Parses and validates without touching the filesystem; `file` only labels errors.
    pub fn parse(text: &str, file: &Path) -> Result<Job, JobError> {
        let job: Job = toml::from_str(text)
            .map_err(|e| JobError::Parse { file: file.to_path_buf(), message: e.to_string() })?;
        job.validate(file)?;
        Ok(job)
    }

    /// Perturbed images per forward pass.
    pub fn perturb_batch(&self) -> usize {
        if self.perturbation.batch_size > 0 { self.perturbation.batch_size } else { self.run.batch_size }
    }

    /// libtorch intra-op threads per worker: the job's value, or the cores shared out among all
    /// workers on this machine, every local process counted (never less than one). Measured: two
    /// processes of two OpenMP threads each on two cores ran at half the speed of one.
    pub fn torch_threads(&self, workers_on_host: usize) -> usize {
        if self.run.torch_threads > 0 {
            return self.run.torch_threads;
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        (cores / workers_on_host.max(1)).max(1)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        // A URL (s3://, gs://, https://) is not a path relative to anything.
        if !is_url(&self.data.path) {
            resolve(&mut self.data.path);
        }
        resolve(&mut self.models.dir);
        if !is_url(&self.output.dir) {
            resolve(&mut self.output.dir);
        }
    }

    fn validate(&self, file: &Path) -> Result<(), JobError> {
        let invalid = |field: &'static str, message: String| JobError::Invalid {
            file: file.to_path_buf(),
            field,
            message,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if self.models.pairs.is_empty() {
            return Err(invalid("models.pairs", "list at least one model pair".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for pair in &self.models.pairs {
            if !seen.insert(pair) {
                return Err(invalid("models.pairs", format!("pair `{pair}` is listed twice")));
            }
            // Pair names become folder names and column values; keep them plain.
            if pair.is_empty() || !pair.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
                return Err(invalid("models.pairs", format!("`{pair}` is not a plain name ([A-Za-z0-9_.-])")));
            }
        }
        if self.data.shard_size == 0 {
            return Err(invalid("data.shard_size", "must be at least 1".into()));
        }
        if self.data.max_pixels == 0 {
            return Err(invalid("data.max_pixels", "must be at least 1 (every image would be refused)".into()));
        }
        if self.data.limit == Some(0) {
            return Err(invalid("data.limit", "must be at least 1 (or left out)".into()));
        }
        if self.run.batch_size == 0 {
            return Err(invalid("run.batch_size", "must be at least 1".into()));
        }
        if self.run.workers == 0 {
            return Err(invalid("run.workers", "must be at least 1".into()));
        }
        if self.run.max_in_flight == 0 {
            return Err(invalid("run.max_in_flight", "must be at least 1".into()));
        }
        if self.run.peer_timeout_s == 0 {
            return Err(invalid("run.peer_timeout_s", "must be at least 1".into()));
        }
        if !(self.wsol.threshold >= 0.0 && self.wsol.threshold < 1.0) {
            return Err(invalid("wsol.threshold", format!("{} is outside [0, 1)", self.wsol.threshold)));
        }
        if !(self.subset.top_fraction > 0.0 && self.subset.top_fraction <= 1.0) {
            return Err(invalid("subset.top_fraction", format!("{} is outside (0, 1]", self.subset.top_fraction)));
        }
        if self.subset.epoch_shards == 0 {
            return Err(invalid("subset.epoch_shards", "must be at least 1".into()));
        }
        if self.perturbation.steps == 0 {
            return Err(invalid("perturbation.steps", "must be at least 1".into()));
        }
        if let Some(m) = self.perturbation.baselines.iter().find(|m| !Method::ORDER_BASELINES.contains(m)) {
            return Err(invalid("perturbation.baselines", format!("`{m}` has no pixel order (gaussian or random)")));
        }
        if let Some(m) = self.perturbation.baselines.iter().enumerate().find_map(|(i, m)| self.perturbation.baselines[..i].contains(m).then_some(m)) {
            return Err(invalid("perturbation.baselines", format!("`{m}` is listed twice")));
        }
        if !(0.0..=1.0).contains(&self.perturbation.baseline_share) {
            return Err(invalid("perturbation.baseline_share", format!("{} is outside [0, 1]", self.perturbation.baseline_share)));
        }
        if !(self.baselines.gaussian_sigma > 0.0 && self.baselines.gaussian_sigma.is_finite()) {
            return Err(invalid("baselines.gaussian_sigma", format!("{} is not a positive share of the crop side", self.baselines.gaussian_sigma)));
        }
        if !(self.report.confidence > 0.0 && self.report.confidence < 1.0) {
            return Err(invalid("report.confidence", format!("{} is not in (0, 1)", self.report.confidence)));
        }
        Ok(())
    }
}

/// How to fix the arbitrary sign of the principal component (job knob `cam.sign`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignPolicy {
    /// Flip when `Σ_i p_i · m_i < 0`, `m_i` the channel mean of the uncentred activation at pixel i:
    /// the map then points the way the raw activation mass points (the SPEC's default).
    #[default]
    Mean,
    /// Flip when `|min p| > |max p|` (pytorch-grad-cam's SegEigenCAM rule).
    MaxAbs,
    /// Keep whatever sign the eigen-solver returned (pytorch-grad-cam's EigenCAM does this).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Detect from the folder contents.
    Auto,
    /// Kaggle "ImageNet Object Localization Challenge": `LOC_val_solution.csv` + `ILSVRC/Data/CLS-LOC/val`.
    Kaggle,
    /// Original ILSVRC2012: a folder of val JPEGs, `ILSVRC2012_bbox_val_v3` XMLs, a labels file.
    Ilsvrc,
    /// WebDataset tar shards with an `index.json` (written by `qcam shard`); the only layout
    /// readable from a URL.
    Shards,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A folder, or a URL (`http(s)://`, `s3://bucket/prefix`, `gs://bucket/prefix`) of the folder
    /// holding `index.json`.
    pub path: PathBuf,
    #[serde(default = "default_layout")]
    pub layout: Layout,
    /// Images per shard when a folder layout is split into shards (shards are the unit of work).
    /// Tar shards keep the split they were written with.
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
    /// Only the first `limit` entries (sorted by id); for quick runs. Entries that can only
    /// yield an error row (an id listed without an image file, a file that is not an image)
    /// count like any other, so a folder and the shards packed from it cut at the same id.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Decode refuses images above this many pixels instead of allocating them.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
}

impl DataConfig {
    /// A configuration with every default but the location (and an optional limit).
    pub fn at(path: PathBuf, limit: Option<usize>) -> DataConfig {
        DataConfig {
            path,
            layout: default_layout(),
            shard_size: default_shard_size(),
            limit,
            max_pixels: default_max_pixels(),
        }
    }

}

fn default_layout() -> Layout {
    Layout::Auto
}
fn default_shard_size() -> usize {
    100
}
fn default_max_pixels() -> u64 {
    // Pillow's own limit: every ImageNet val image fits; a decompression bomb does not.
    crate::DEFAULT_MAX_PIXELS
}

/// `scheme://…` with a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
pub fn is_url(path: &Path) -> bool {
    let Some(text) = path.to_str() else { return false };
    let Some((scheme, _)) = text.split_once("://") else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[data]
path = "data"
[models]
dir = "models"
pairs = ["a", "b"]
[output]
dir = "out"
"#;

    #[test]
    fn defaults_follow_the_spec() {
        let job = Job::parse(MINIMAL, Path::new("job.toml")).unwrap();
        assert_eq!(job.wsol.threshold, 0.2);
        assert_eq!(job.cam.sign, SignPolicy::Mean);
        assert_eq!(job.run.batch_size, 16);
        assert_eq!(job.data.layout, Layout::Auto);
        assert_eq!(job.subset.top_fraction, 0.05);
        assert_eq!(job.perturbation.steps, 100);
        assert_eq!(job.perturbation.scope, PerturbScope::Subset);
        assert_eq!(job.perturbation.baselines, [Method::Gaussian, Method::Random]);
        assert_eq!((job.perturbation.baseline_share, job.baselines.gaussian_sigma), (0.2, 0.25));
    }

    #[test]
    fn a_baseline_without_a_pixel_order_is_refused() {
        let text = MINIMAL.replace("[output]", "[perturbation]\nbaselines = [\"full\"]\n[output]");
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert_eq!(err, "j.toml: field `perturbation.baselines`: `full` has no pixel order (gaussian or random)");
        let text = MINIMAL.replace("[output]", "[perturbation]\nbaselines = [\"saliency\"]\n[output]");
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(err.starts_with("j.toml:") && err.contains("`saliency`") && err.contains("baselines"), "{err}");
        let text = MINIMAL.replace("[output]", "[baselines]\ngaussian_sigma = 0\n[output]");
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(err.contains("baselines.gaussian_sigma"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_job_file() {
        let mut job = Job::parse(MINIMAL, Path::new("jobs/job.toml")).unwrap();
        job.resolve_paths(Path::new("/x/jobs"));
        assert_eq!(job.data.path, Path::new("/x/jobs/data"));
        assert_eq!(job.output.dir, Path::new("/x/jobs/out"));
        let mut job = Job::parse(&MINIMAL.replace("dir = \"out\"", "dir = \"s3://bucket/runs/a\""), Path::new("j.toml")).unwrap();
        job.resolve_paths(Path::new("/x/jobs"));
        assert_eq!(job.output.dir, Path::new("s3://bucket/runs/a"), "a URL is left as written");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = MINIMAL.replace("[output]", "[output]\nfrobnicate = 1");
        let err = Job::parse(&text, Path::new("jobs/bad.toml")).unwrap_err().to_string();
        assert!(err.starts_with("jobs/bad.toml:"), "{err}");
        assert!(err.contains("frobnicate"), "{err}");
    }

    #[test]
    fn bad_value_names_file_and_field() {
        let text = MINIMAL.replace("[output]", "[run]\nbatch_size = 0\n[output]");
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert_eq!(err, "j.toml: field `run.batch_size`: must be at least 1");
        let text = MINIMAL.replace("[output]", "[cam]\nsign = \"sideways\"\n[output]");
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(err.contains("sideways") && err.contains("sign"), "{err}");
    }

    #[test]
    fn duplicate_pair_is_refused() {
        let text = MINIMAL.replace(r#"["a", "b"]"#, r#"["a", "a"]"#);
        let err = Job::parse(&text, Path::new("j.toml")).unwrap_err().to_string();
        assert!(err.contains("models.pairs") && err.contains("twice"), "{err}");
    }
}
