//! The run folder's bookkeeping: what is finished, what a run may reuse, who holds the folder, and
//! how a run ends with exactly its tables in it. The folder is a [`RunDir`], on disk or in an object
//! store; every rule below holds for both (in a store a rename is a copy and a delete, and a listing
//! is by prefix).
//!
//! * A shard is finished once its `images`, `pairs` and `errors` parts are all written (each
//!   appears under its final name only when complete); then `done/<shard>.json` records what
//!   produced them and how many rows each holds. A later run reuses the shard only if that record
//!   still describes it (same images, same settings) and its parts read back with those counts;
//!   anything else is recomputed.
//! * Run-level tables (subset, aggregates, perturbation) are written as `*.pending` and only
//!   renamed into place by [`commit`], once every part of the run is written: a run that fails
//!   never replaces a good table with a partial one.
//! * Deletion/insertion rows are staged per image under `.staging/<pair>/<digest>/` as they are
//!   computed, so a crash in that stage loses only the images in flight.
//! * [`commit`] removes every part, record and staging file that the job as now written does not
//!   produce (another shard size, a smaller limit, a pair removed), so the folder holds exactly the
//!   job's tables, and counts them for `run.json`.
//! * One run at a time: [`Lock`] (`.qcam.lock`) names the run that holds the folder.

mod folder;
mod lock;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sources::{Dataset, Shard, ShardSource};
use tables::{RunDir, Table, TableError};
use types::{ErrorRow, ImageRow, Method, PairRow, PerturbationRow, Variant, WsolRow};

use types::Job;
use crate::models::PairSpec;

pub use folder::{check_apart, prepare};
pub use lock::{Holder, Lock};

const DONE_DIR: &str = "done";
const STAGING_DIR: &str = ".staging";
const LOCK_FILE: &str = ".qcam.lock";
/// Suffix of a run-level part written but not yet committed.
pub const PENDING: &str = "pending";

/// The tables a run writes, in the order their digests are listed.
pub const TABLES: [&str; 7] = ["images", "pairs", "wsol", "errors", "subset", "aggregates", "perturbation"];
/// The per-shard tables; a shard is finished when all four parts are written.
pub const SHARD_TABLES: [&str; 4] = [ImageRow::NAME, PairRow::NAME, WsolRow::NAME, ErrorRow::NAME];

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{}: {message}", path.display())]
    Refused { path: PathBuf, message: String },
}

fn digest_of(value: serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// A digest of everything that changes a shard's rows, besides its images.
pub fn settings_digest(job: &Job, pairs: &[PairSpec]) -> String {
    let models: Vec<_> = pairs
        .iter()
        .map(|p| (&p.manifest.name, &p.manifest.float.sha256, &p.manifest.quantized.sha256, &p.manifest.preprocess))
        .collect();
    digest_of(serde_json::json!({
        "schema": crate::SCHEMA_VERSION,
        "cam": job.cam,
        "wsol": job.wsol,
        "gaussian_sigma": job.baselines.gaussian_sigma,
        "max_pixels": job.data.max_pixels,
        "models": models,
    }))
}

/// A digest of everything one pair's deletion/insertion rows depend on besides the image: its
/// files and preprocessing, the CAM settings that make the map, the baselines' maps and orders,
/// and the steps. (Which images get which baselines is decided anew by every run.)
pub fn pair_digest(job: &Job, pair: &PairSpec) -> String {
    let m = &pair.manifest;
    digest_of(serde_json::json!({
        "schema": crate::SCHEMA_VERSION,
        "cam": job.cam,
        "max_pixels": job.data.max_pixels,
        "model": (&m.name, &m.float.sha256, &m.quantized.sha256, &m.preprocess),
        "steps": job.perturbation.steps,
        "baselines": job.baselines,
    }))
}

/// The record of one finished shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardDone {
    pub shard: String,
    pub images: usize,
    /// sha256 over the shard's image ids, in order.
    pub ids_sha256: String,
    /// [`settings_digest`] of the run that wrote it.
    pub settings: String,
    /// The pairs whose rows the parts hold.
    pub pairs: Vec<String>,
    /// Rows in each of the shard's parts, by table: a read-back must find exactly these.
    pub rows: BTreeMap<String, usize>,
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

fn record_key(shard: &str) -> String {
    format!("{DONE_DIR}/{shard}.json")
}

/// Records `shard` as finished; called once its three parts are in place.
pub fn mark_done(
    dir: &RunDir,
    shard: &Shard,
    settings: &str,
    pairs: &[String],
    rows: BTreeMap<String, usize>,
) -> Result<(), LedgerError> {
    let record = ShardDone {
        shard: shard.name.clone(),
        images: shard.count(),
        ids_sha256: ids_digest(shard),
        settings: settings.to_string(),
        pairs: pairs.to_vec(),
        rows,
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
    Ok(dir.write(&record_key(&shard.name), bytes)?)
}

/// Why a shard recorded as done (`text` is its record) is not reused, or `None` when it is.
fn not_reusable(dir: &RunDir, shard: &Shard, settings: &str, text: &[u8]) -> Option<String> {
    let Ok(done) = serde_json::from_slice::<ShardDone>(text) else { return Some("its record does not parse".into()) };
    if done.images != shard.count() || done.ids_sha256 != ids_digest(shard) {
        return Some("its images changed".into());
    }
    if done.settings != settings {
        return Some("the settings changed".into());
    }
    for table in SHARD_TABLES {
        match (tables::part_rows(dir, table, &shard.name), done.rows.get(table)) {
            (Ok(n), Some(&want)) if n == want => {}
            (Ok(n), want) => {
                let at = dir.at(&tables::part_key(table, &shard.name));
                return Some(format!("{} holds {n} rows, its record says {want:?}", at.display()));
            }
            (Err(e), _) => return Some(e.to_string()),
        }
    }
    None
}

/// The shards of `dataset` that a previous run into `dir` finished with these settings and whose
/// parts still hold what their records say. A shard that was recorded but cannot be reused is
/// reported on stderr and recomputed; a record that cannot be read at all stops the run.
pub fn finished(dir: &RunDir, dataset: &Dataset, settings: &str) -> Result<BTreeSet<String>, LedgerError> {
    let mut out = BTreeSet::new();
    for shard in &dataset.shards {
        let Some(text) = dir.read(&record_key(&shard.name))? else { continue };
        match not_reusable(dir, shard, settings, &text) {
            None => {
                out.insert(shard.name.clone());
            }
            Some(why) => eprintln!("qcam: shard {} is recomputed: {why}", shard.name),
        }
    }
    Ok(out)
}

/// Where a pair's deletion/insertion rows are staged, per image, under these settings.
pub fn staging_dir(dir: &RunDir, pair: &str, digest: &str) -> RunDir {
    dir.join(&format!("{STAGING_DIR}/{pair}/{}", &digest[..16]))
}

/// Stages one job's rows: an image under one method, both variants.
pub fn stage(dir: &RunDir, pair: &str, digest: &str, rows: &[PerturbationRow]) -> Result<(), LedgerError> {
    let Some(first) = rows.first() else { return Ok(()) };
    tables::write_part(staging_dir(dir, pair, digest), &format!("{}.{}", first.image_id, first.method.as_str()), rows)?;
    Ok(())
}

/// The record that a pair's committed `perturbation` part was computed with these settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PairDone {
    pair: String,
    digest: String,
}

fn pair_record_key(pair: &str) -> String {
    format!("{DONE_DIR}/pairs/{pair}.json")
}

/// Deletion/insertion rows an earlier run into this folder finished for `pair` under the same
/// settings: its committed part, then anything it staged before it stopped. Per image and method,
/// both variants or nothing. Unreadable files are reported and ignored: their images are redone.
pub fn previous_perturbation(dir: &RunDir, pair: &str, digest: &str) -> HashMap<String, Vec<PerturbationRow>> {
    let mut rows: Vec<PerturbationRow> = Vec::new();
    let record: Option<PairDone> = match dir.read(&pair_record_key(pair)) {
        Ok(text) => text.and_then(|t| serde_json::from_slice(&t).ok()),
        Err(e) => {
            eprintln!("qcam: not reusing deletion/insertion rows: {e}");
            None
        }
    };
    if record.is_some_and(|r| r.digest == digest) {
        match tables::read_part(dir, pair) {
            Ok(found) => rows.extend(found.unwrap_or_default()),
            Err(e) => eprintln!("qcam: not reusing deletion/insertion rows: {e}"),
        }
    }
    match tables::read_rows::<PerturbationRow>(staging_dir(dir, pair, digest)) {
        Ok(staged) => rows.extend(staged),
        Err(e) => eprintln!("qcam: not reusing staged deletion/insertion rows: {e}"),
    }
    let mut by_image: HashMap<String, Vec<PerturbationRow>> = HashMap::new();
    for row in rows.into_iter().filter(|r| r.model == pair) {
        let entry = by_image.entry(row.image_id.clone()).or_default();
        if !entry.iter().any(|r| (r.method, r.variant) == (row.method, row.variant)) {
            entry.push(row);
        }
    }
    for rows in by_image.values_mut() {
        let complete = |m: Method, rows: &[PerturbationRow]| rows.iter().filter(|r| r.method == m).count() == 2;
        let done: Vec<Method> = Method::ALL.into_iter().filter(|&m| complete(m, rows)).collect();
        rows.retain(|r| done.contains(&r.method));
        rows.sort_by_key(|r| (r.method, r.variant == Variant::Quantized));
    }
    by_image.retain(|_, rows| !rows.is_empty());
    by_image
}

// ---- Preparing and committing the folder -----------------------------------------------------------

/// The parts the job as now written produces, by table.
pub struct Expected {
    pub shards: Vec<String>,
    pub pairs: Vec<String>,
    /// Whether the run has deletion/insertion (then `perturbation` and `errors/perturb-<pair>`).
    pub perturbation: bool,
}

impl Expected {
    fn parts(&self, table: &str) -> BTreeSet<String> {
        let perturb_errors = self.pairs.iter().filter(|_| self.perturbation).map(|p| format!("perturb-{p}"));
        match table {
            "images" | "pairs" | "wsol" => self.shards.iter().cloned().collect(),
            "errors" => self.shards.iter().cloned().chain(perturb_errors).collect(),
            "subset" | "aggregates" => self.pairs.iter().cloned().collect(),
            "perturbation" if self.perturbation => self.pairs.iter().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }
}

/// A part file's name within its table folder: `part-<part>.parquet` → `<part>`.
fn part_name(file: &str) -> Option<&str> {
    file.strip_prefix("part-")?.strip_suffix(".parquet")
}

/// Removes every entry of folder `rel` that `keep` refuses.
fn remove_unless(dir: &RunDir, rel: &str, keep: impl Fn(&str) -> bool) -> Result<(), LedgerError> {
    for name in dir.list(rel)? {
        if !keep(&name) {
            dir.remove(&format!("{rel}/{name}"))?;
        }
    }
    Ok(())
}

/// Ends a successful run: the pending run-level parts go into place, and everything the job as
/// now written does not produce is removed (stale parts, records and staging, half-written
/// temporaries). Afterwards the folder holds exactly the job's tables.
pub fn commit(dir: &RunDir, expected: &Expected, pair_digests: &[(String, String)]) -> Result<(), LedgerError> {
    let pending = format!(".{PENDING}");
    for table in TABLES {
        let want = expected.parts(table);
        for file in dir.list(table)? {
            let wanted = |name: &str| part_name(name).is_some_and(|p| want.contains(p));
            match file.strip_suffix(&pending) {
                Some(final_name) if wanted(final_name) => dir.rename(&format!("{table}/{file}"), &format!("{table}/{final_name}"))?,
                None if wanted(&file) => {}
                _ => dir.remove(&format!("{table}/{file}"))?,
            }
        }
    }
    if expected.perturbation {
        for (pair, digest) in pair_digests {
            let record = PairDone { pair: pair.clone(), digest: digest.clone() };
            dir.write(&pair_record_key(pair), serde_json::to_vec_pretty(&record).expect("serializes"))?;
        }
    }
    let shards: BTreeSet<String> = expected.shards.iter().map(|s| format!("{s}.json")).collect();
    remove_unless(dir, DONE_DIR, |file| file == "pairs" || shards.contains(file))?;
    let pairs: BTreeSet<String> = if expected.perturbation {
        pair_digests.iter().map(|(p, _)| format!("{p}.json")).collect()
    } else {
        BTreeSet::new()
    };
    remove_unless(dir, &format!("{DONE_DIR}/pairs"), |file| pairs.contains(file))?;
    // Every staged row is in a committed part now.
    Ok(dir.remove(STAGING_DIR)?)
}

/// The entry a pending run-level part is written as before [`commit`].
pub fn pending_key(table: &str, part: &str) -> String {
    format!("{}.{PENDING}", tables::part_key(table, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_keeps_exactly_the_expected_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        let files = [
            "images/part-val-00000.parquet",
            "images/part-val-00001.parquet",
            "images/part-old-00000.parquet",
            "images/.part-val-00002.parquet.tmp",
            "subset/part-a.parquet",
            "subset/part-a.parquet.pending",
            "subset/part-gone.parquet",
            "errors/part-perturb-a.parquet.pending",
            "done/val-00000.json",
            "done/old-00000.json",
            ".staging/a/0123456789abcdef/part-x.parquet",
        ];
        for f in files {
            std::fs::create_dir_all(out.join(f).parent().unwrap()).unwrap();
            std::fs::write(out.join(f), f).unwrap();
        }
        let expected = Expected { shards: vec!["val-00000".into(), "val-00001".into()], pairs: vec!["a".into()], perturbation: true };
        commit(&RunDir::from(out), &expected, &[("a".into(), "d".repeat(64))]).unwrap();
        let mut left = Vec::new();
        for dir in ["images", "subset", "errors", "done", "done/pairs"] {
            for e in std::fs::read_dir(out.join(dir)).unwrap().flatten() {
                if e.path().is_file() {
                    left.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        left.sort();
        assert_eq!(left, [
            "done/pairs/a.json",
            "done/val-00000.json",
            "errors/part-perturb-a.parquet",
            "images/part-val-00000.parquet",
            "images/part-val-00001.parquet",
            "subset/part-a.parquet",
        ]);
        assert_eq!(std::fs::read_to_string(out.join("subset/part-a.parquet")).unwrap(), "subset/part-a.parquet.pending");
        assert!(!out.join(".staging").exists());
    }
}
