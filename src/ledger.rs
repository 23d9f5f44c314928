//! Which shards of a run folder are finished, so a resumed or appended run skips them.
//!
//! A shard is finished once its `images`, `pairs` and `errors` parts are all written (each is
//! renamed into place only when complete); then `done/<shard>.json` records what produced them.
//! A later run reuses the shard only if that record still describes it: the same images (count and
//! a digest of their ids) and the same settings (pairs, their model files, preprocessing, CAM and
//! WSOL knobs). Anything else, including parts without a record, is redone and overwritten.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sources::{Dataset, Shard, ShardSource};
use crate::job::Job;
use crate::models::PairSpec;

const DONE_DIR: &str = "done";

/// The record of one finished shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardDone {
    pub shard: String,
    pub images: usize,
    /// sha256 over the shard's image ids, in order.
    pub ids_sha256: String,
    /// [`settings_digest`] of the run that wrote it.
    pub settings: String,
    /// The pairs whose rows the parts hold: the (shard, pair) units this record completes.
    pub pairs: Vec<String>,
}

/// A digest of everything that changes a shard's rows, besides its images.
pub fn settings_digest(job: &Job, pairs: &[PairSpec]) -> String {
    let models: Vec<_> = pairs
        .iter()
        .map(|p| (&p.manifest.name, &p.manifest.float.sha256, &p.manifest.quantized.sha256, &p.manifest.preprocess))
        .collect();
    let what = serde_json::json!({
        "schema": crate::SCHEMA_VERSION,
        "cam": job.cam,
        "wsol": job.wsol,
        "max_pixels": job.data.max_pixels,
        "models": models,
    });
    hex::encode(Sha256::digest(what.to_string().as_bytes()))
}

fn ids_digest(shard: &Shard) -> String {
    let mut h = Sha256::new();
    let mut add = |id: &str| {
        h.update(id.as_bytes());
        h.update(b"\n");
    };
    match &shard.source {
        ShardSource::Files(entries) => entries.iter().for_each(|e| add(&e.image_id)),
        ShardSource::Tar(t) => t.keys.iter().for_each(|k| add(k)),
    }
    hex::encode(h.finalize())
}

fn record_path(out_dir: &Path, shard: &str) -> PathBuf {
    out_dir.join(DONE_DIR).join(format!("{shard}.json"))
}

/// Records `shard` as finished; called once its three parts are in place.
pub fn mark_done(out_dir: &Path, shard: &Shard, settings: &str, pairs: &[String]) -> std::io::Result<()> {
    let record = ShardDone {
        shard: shard.name.clone(),
        images: shard.count(),
        ids_sha256: ids_digest(shard),
        settings: settings.to_string(),
        pairs: pairs.to_vec(),
    };
    let path = record_path(out_dir, &shard.name);
    std::fs::create_dir_all(path.parent().expect("under out_dir"))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&record)?)?;
    std::fs::rename(&tmp, &path)
}

/// The shards of `dataset` that a previous run into `out_dir` finished with these settings.
pub fn finished(out_dir: &Path, dataset: &Dataset, settings: &str) -> BTreeSet<String> {
    dataset
        .shards
        .iter()
        .filter(|shard| {
            let Ok(text) = std::fs::read(record_path(out_dir, &shard.name)) else { return false };
            let Ok(done) = serde_json::from_slice::<ShardDone>(&text) else { return false };
            done.images == shard.count() && done.settings == settings && done.ids_sha256 == ids_digest(shard)
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Every finished (shard, pair) unit recorded in `out_dir`, for run.json.
pub fn units(out_dir: &Path) -> Vec<(String, String)> {
    let Ok(read) = std::fs::read_dir(out_dir.join(DONE_DIR)) else { return Vec::new() };
    let mut units: Vec<(String, String)> = read
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .filter_map(|text| serde_json::from_slice::<ShardDone>(&text).ok())
        .flat_map(|d| d.pairs.into_iter().map(move |p| (d.shard.clone(), p)))
        .collect();
    units.sort();
    units
}
