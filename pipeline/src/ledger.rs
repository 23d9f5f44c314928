//! The run folder's bookkeeping: what is finished, what a run may reuse, who holds the folder, and
//! how a run ends with exactly its tables in it.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sources::{Dataset, Shard, ShardSource};
use tables::{Table, TableError};
use types::{ErrorRow, ImageRow, PairRow, PerturbationRow, Variant};

use types::Job;
use crate::models::PairSpec;

const DONE_DIR: &str = "done";
const STAGING_DIR: &str = ".staging";
const LOCK_FILE: &str = ".qcam.lock";
/// Suffix of a run-level part written but not yet committed.
pub const PENDING: &str = "pending";

/// The tables a run writes, in the order their digests are listed.
pub const TABLES: [&str; 6] = ["images", "pairs", "errors", "subset", "aggregates", "perturbation"];
/// The per-shard tables; a shard is finished when all three parts are written.
pub const SHARD_TABLES: [&str; 3] = [ImageRow::NAME, PairRow::NAME, ErrorRow::NAME];

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{}: {message}", path.display())]
    Refused { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io { path: path.into(), source }
}

/// Writes `bytes` to `path` through a temporary name, so a reader sees all of it or nothing.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
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
        "max_pixels": job.data.max_pixels,
        "models": models,
    }))
}

/// A digest of everything one pair's deletion/insertion rows depend on besides the image: its
/// files and preprocessing, the CAM settings that make the map, and the steps.
pub fn pair_digest(job: &Job, pair: &PairSpec) -> String {
    let m = &pair.manifest;
    digest_of(serde_json::json!({
        "schema": crate::SCHEMA_VERSION,
        "cam": job.cam,
        "max_pixels": job.data.max_pixels,
        "model": (&m.name, &m.float.sha256, &m.quantized.sha256, &m.preprocess),
        "steps": job.perturbation.steps,
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

fn record_path(out_dir: &Path, shard: &str) -> PathBuf {
    out_dir.join(DONE_DIR).join(format!("{shard}.json"))
}

/// Records `shard` as finished; called once its three parts are in place.
pub fn mark_done(
    out_dir: &Path,
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
    write_atomic(&record_path(out_dir, &shard.name), &bytes)
}

/// Rows a part file says it holds (its footer), or why it cannot be read.
fn part_rows(path: &Path) -> Result<usize, TableError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|source| TableError::Io { path: path.into(), source })?;
    let reader = SerializedFileReader::new(file).map_err(|source| TableError::Parquet { path: path.into(), source })?;
    Ok(reader.metadata().file_metadata().num_rows() as usize)
}

/// Why a shard recorded as done is not reused, or `None` when it is.
fn not_reusable(out_dir: &Path, shard: &Shard, settings: &str) -> Option<String> {
    let text = std::fs::read(record_path(out_dir, &shard.name)).ok()?;
    let Ok(done) = serde_json::from_slice::<ShardDone>(&text) else { return Some("its record does not parse".into()) };
    if done.images != shard.count() || done.ids_sha256 != ids_digest(shard) {
        return Some("its images changed".into());
    }
    if done.settings != settings {
        return Some("the settings changed".into());
    }
    for table in SHARD_TABLES {
        let path = tables::part_path(out_dir, table, &shard.name);
        match (part_rows(&path), done.rows.get(table)) {
            (Ok(n), Some(&want)) if n == want => {}
            (Ok(n), want) => return Some(format!("{} holds {n} rows, its record says {want:?}", path.display())),
            (Err(e), _) => return Some(e.to_string()),
        }
    }
    None
}

/// The shards of `dataset` that a previous run into `out_dir` finished with these settings and
/// whose parts still hold what their records say. A shard that was recorded but cannot be reused
/// is reported on stderr and recomputed.
pub fn finished(out_dir: &Path, dataset: &Dataset, settings: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in &dataset.shards {
        if !record_path(out_dir, &shard.name).exists() {
            continue;
        }
        match not_reusable(out_dir, shard, settings) {
            None => {
                out.insert(shard.name.clone());
            }
            Some(why) => eprintln!("qcam: shard {} is recomputed: {why}", shard.name),
        }
    }
    out
}

/// Where a pair's deletion/insertion rows are staged, per image, under these settings.
pub fn staging_dir(out_dir: &Path, pair: &str, digest: &str) -> PathBuf {
    out_dir.join(STAGING_DIR).join(pair).join(&digest[..16])
}

/// Stages one image's rows (both variants).
pub fn stage(out_dir: &Path, pair: &str, digest: &str, rows: &[PerturbationRow]) -> Result<(), LedgerError> {
    let Some(first) = rows.first() else { return Ok(()) };
    tables::write_part(&staging_dir(out_dir, pair, digest), &first.image_id, rows)?;
    Ok(())
}

/// The record that a pair's committed `perturbation` part was computed with these settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PairDone {
    pair: String,
    digest: String,
}

fn pair_record_path(out_dir: &Path, pair: &str) -> PathBuf {
    out_dir.join(DONE_DIR).join("pairs").join(format!("{pair}.json"))
}

/// Deletion/insertion rows an earlier run into this folder finished for `pair` under the same
/// settings: its committed part, then anything it staged before it stopped. Both variants of an
/// image or nothing. Unreadable files are reported and ignored: their images are redone.
pub fn previous_perturbation(out_dir: &Path, pair: &str, digest: &str) -> HashMap<String, Vec<PerturbationRow>> {
    let mut rows: Vec<PerturbationRow> = Vec::new();
    let record: Option<PairDone> = std::fs::read(pair_record_path(out_dir, pair)).ok().and_then(|t| serde_json::from_slice(&t).ok());
    if record.is_some_and(|r| r.digest == digest) {
        match tables::read_part(out_dir, pair) {
            Ok(found) => rows.extend(found.unwrap_or_default()),
            Err(e) => eprintln!("qcam: not reusing deletion/insertion rows: {e}"),
        }
    }
    match tables::read_rows::<PerturbationRow>(&staging_dir(out_dir, pair, digest)) {
        Ok(staged) => rows.extend(staged),
        Err(e) => eprintln!("qcam: not reusing staged deletion/insertion rows: {e}"),
    }
    let mut by_image: HashMap<String, Vec<PerturbationRow>> = HashMap::new();
    for row in rows.into_iter().filter(|r| r.model == pair) {
        let entry = by_image.entry(row.image_id.clone()).or_default();
        if !entry.iter().any(|r| r.variant == row.variant) {
            entry.push(row);
        }
    }
    by_image.retain(|_, rows| rows.len() == 2);
    for rows in by_image.values_mut() {
        rows.sort_by_key(|r| r.variant == Variant::Quantized);
    }
    by_image
}

// ---- One run at a time -------------------------------------------------------------------------

/// Who holds a run folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub started_unix_s: u64,
    pub job: PathBuf,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}, job {}, started at unix time {}", self.pid, self.host, self.job.display(), self.started_unix_s)
    }
}

/// A lock not refreshed for this long belongs to a run that died on another machine.
const LOCK_STALE_S: u64 = 60;
const LOCK_HEARTBEAT_S: u64 = 10;

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "unknown".into() }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The folder's lock, held for the run's life: created exclusively, refreshed every few seconds,
/// removed on drop. A lock whose process is gone (same host) or that nobody refreshed for a minute
/// (another host) is stale and taken over, with a note.
pub struct Lock {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    pub fn acquire(out_dir: &Path, job: &Path) -> Result<Lock, LedgerError> {
        std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
        let path = out_dir.join(LOCK_FILE);
        let me = Holder { host: hostname(), pid: std::process::id(), started_unix_s: now_unix_s(), job: job.to_path_buf() };
        let bytes = serde_json::to_vec_pretty(&me).expect("a holder serializes");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&bytes).map_err(io(&path))?;
                    return Ok(Lock::holding(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let other: Option<Holder> = std::fs::read(&path).ok().and_then(|t| serde_json::from_slice(&t).ok());
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .map_or(0, |d| d.as_secs());
                    let stale = match &other {
                        Some(h) if h.host == me.host => !pid_alive(h.pid),
                        _ => age > LOCK_STALE_S,
                    };
                    if !stale {
                        let who = other.map_or_else(|| "a run whose lock does not parse".to_string(), |h| h.to_string());
                        return Err(LedgerError::Refused {
                            path: out_dir.into(),
                            message: format!("the folder is in use by another qcam run ({who}); wait for it, or remove {} if that run is gone", path.display()),
                        });
                    }
                    eprintln!("qcam: taking over the stale lock of {}", other.map_or_else(|| "an unknown run".into(), |h| h.to_string()));
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(LedgerError::Refused { path, message: "another run took the lock at the same moment".into() })
    }

    fn holding(path: PathBuf) -> Lock {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, file) = (stop.clone(), path.clone());
        let heartbeat = std::thread::spawn(move || {
            let tick = std::time::Duration::from_millis(200);
            let mut since = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                if since.elapsed().as_secs() >= LOCK_HEARTBEAT_S {
                    since = std::time::Instant::now();
                    if let Ok(f) = std::fs::File::options().append(true).open(&file) {
                        let _ = f.set_modified(std::time::SystemTime::now());
                    }
                }
            }
        });
        Lock { path, stop, heartbeat: Some(heartbeat) }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---- Preparing and committing the folder -----------------------------------------------------------

/// Whether `a` is `b` or lies inside it (both made absolute; symlinks resolved where they exist).
fn within(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| {
        let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
        // The deepest existing ancestor is resolved; the rest appended.
        let mut existing = abs.clone();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut out = existing.canonicalize().unwrap_or(existing);
        out.extend(rest.iter().rev());
        out
    };
    resolve(a).starts_with(resolve(b))
}

/// Refuses an output folder that is, holds or lies inside the input: qcam never deletes, or
/// writes into, what it did not write.
pub fn check_apart(out_dir: &Path, data: &Path) -> Result<(), LedgerError> {
    if sources::is_url(data) {
        return Ok(());
    }
    if within(data, out_dir) || within(out_dir, data) {
        return Err(LedgerError::Refused {
            path: out_dir.into(),
            message: format!("the output folder and the data ({}) overlap; choose an output folder outside the data", data.display()),
        });
    }
    Ok(())
}

/// Entries of a run folder that qcam writes (and so may remove).
fn is_ours(name: &str) -> bool {
    TABLES.contains(&name)
        || matches!(name, DONE_DIR | STAGING_DIR | "soak.json" | types::RUN_FILE | report::REPORT_DIR)
        || (name.starts_with("run.process-") && name.ends_with(".json"))
}

/// Gets `out_dir` ready for a run. A fresh run needs an empty (or absent) folder; with
/// `overwrite`, the previous run's entries are removed, and only those. A resume or append needs
/// the folder.
pub fn prepare(out_dir: &Path, resume: bool, overwrite: bool) -> Result<(), LedgerError> {
    if resume {
        if !out_dir.is_dir() {
            return Err(LedgerError::Refused { path: out_dir.into(), message: "nothing to resume or append to: the output folder does not exist".into() });
        }
        return Ok(());
    }
    let entries: Vec<(String, PathBuf)> = match std::fs::read_dir(out_dir) {
        Ok(read) => read.filter_map(|e| e.ok()).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(out_dir)(e)),
    };
    let entries: Vec<_> = entries.into_iter().filter(|(name, _)| name != LOCK_FILE).collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(LedgerError::Refused {
            path: out_dir.into(),
            message: "output folder is not empty; pass --overwrite or set output.overwrite = true (or --resume / --append)".into(),
        });
    }
    let foreign: Vec<&String> = entries.iter().map(|(n, _)| n).filter(|n| !is_ours(n)).collect();
    for (name, path) in entries.iter().filter(|(n, _)| is_ours(n)) {
        let removed = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        removed.map_err(io(path))?;
        let _ = name;
    }
    if !foreign.is_empty() {
        eprintln!("qcam: --overwrite left {} entries qcam did not write in {}: {:?}", foreign.len(), out_dir.display(), foreign);
    }
    Ok(())
}

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
            "images" | "pairs" => self.shards.iter().cloned().collect(),
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

fn remove(path: &Path) -> Result<(), LedgerError> {
    let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, LedgerError> {
    match std::fs::read_dir(dir) {
        Ok(read) => Ok(read.filter_map(|e| e.ok()).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Ends a successful run: the pending run-level parts go into place, and everything the job as
/// now written does not produce is removed (stale parts, records and staging, half-written
/// temporaries). Afterwards the folder holds exactly the job's tables.
pub fn commit(out_dir: &Path, expected: &Expected, pair_digests: &[(String, String)]) -> Result<(), LedgerError> {
    for table in TABLES {
        let dir = out_dir.join(table);
        let want = expected.parts(table);
        for (file, path) in list(&dir)? {
            if let Some(final_name) = file.strip_suffix(&format!(".{PENDING}")) {
                let keep = part_name(final_name).is_some_and(|p| want.contains(p));
                if keep {
                    std::fs::rename(&path, dir.join(final_name)).map_err(io(&path))?;
                    continue;
                }
            } else if part_name(&file).is_some_and(|p| want.contains(p)) {
                continue;
            }
            remove(&path)?;
        }
    }
    if expected.perturbation {
        for (pair, digest) in pair_digests {
            let record = PairDone { pair: pair.clone(), digest: digest.clone() };
            write_atomic(&pair_record_path(out_dir, pair), &serde_json::to_vec_pretty(&record).expect("serializes"))?;
        }
    }
    let shards: BTreeSet<String> = expected.shards.iter().map(|s| format!("{s}.json")).collect();
    for (file, path) in list(&out_dir.join(DONE_DIR))? {
        if file != "pairs" && !shards.contains(&file) {
            remove(&path)?;
        }
    }
    let pairs: BTreeSet<String> = if expected.perturbation {
        pair_digests.iter().map(|(p, _)| format!("{p}.json")).collect()
    } else {
        BTreeSet::new()
    };
    for (file, path) in list(&out_dir.join(DONE_DIR).join("pairs"))? {
        if !pairs.contains(&file) {
            remove(&path)?;
        }
    }
    // Every staged row is in a committed part now.
    remove(&out_dir.join(STAGING_DIR))
}

/// Where a pending run-level part is written before [`commit`].
pub fn pending_path(out_dir: &Path, table: &str, part: &str) -> PathBuf {
    let path = tables::part_path(out_dir, table, part);
    let mut name = path.file_name().expect("a part has a name").to_os_string();
    name.push(format!(".{PENDING}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_refused_both_ways_and_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("ILSVRC")).unwrap();
        assert!(check_apart(&data, &data).is_err());
        assert!(check_apart(tmp.path(), &data).is_err(), "the output holds the data");
        assert!(check_apart(&data.join("runs/x"), &data).is_err(), "the output lies inside the data");
        std::os::unix::fs::symlink(&data, tmp.path().join("link")).unwrap();
        assert!(check_apart(&tmp.path().join("link"), &data).is_err(), "a link to the data is the data");
        assert!(check_apart(&tmp.path().join("out"), &data).is_ok());
    }

    #[test]
    fn overwrite_removes_only_what_qcam_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        for dir in ["images", "done", ".staging/p", "notes"] {
            std::fs::create_dir_all(out.join(dir)).unwrap();
        }
        for file in ["images/part-val-00000.parquet", "run.json", "thesis.tex", "notes/a.txt"] {
            std::fs::write(out.join(file), b"x").unwrap();
        }
        let err = prepare(out, false, false).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        prepare(out, false, true).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["notes", "thesis.tex"]);
    }

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
        commit(out, &expected, &[("a".into(), "d".repeat(64))]).unwrap();
        let mut left = Vec::new();
        for dir in ["images", "subset", "errors", "done", "done/pairs"] {
            for (f, p) in list(&out.join(dir)).unwrap() {
                if p.is_file() {
                    left.push(format!("{dir}/{f}"));
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

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = Lock::acquire(tmp.path(), Path::new("jobs/a.toml")).unwrap();
        let err = Lock::acquire(tmp.path(), Path::new("jobs/b.toml")).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("jobs/a.toml"), "{err}");
        drop(lock);
        assert!(Lock::acquire(tmp.path(), Path::new("jobs/b.toml")).is_ok(), "released on drop");
        // A holder that no longer exists on this host is stale.
        let dead = Holder { host: hostname(), pid: u32::MAX / 2, started_unix_s: 0, job: "x".into() };
        std::fs::write(tmp.path().join(LOCK_FILE), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(Lock::acquire(tmp.path(), Path::new("jobs/c.toml")).is_ok());
    }
}
