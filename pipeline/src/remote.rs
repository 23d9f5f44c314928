//! The report of a run that lives in an object store. The report reads a local folder (Parquet
//! parts, `run.json`) and writes its tables and figures next to them, so the run's tables and
//! `run.json` are first copied into a local cache folder; the report is made there, and its files
//! are also put back into the run's `report/` in the store, so the bucket holds the whole run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tables::RunDir;

use crate::ledger::TABLES;

/// The local folder a store's run is copied to: `$XDG_CACHE_HOME/qcam/runs/<scheme>/<bucket>/<prefix>`
/// (`~/.cache` when unset, the temporary folder when there is no home).
pub fn cache_dir(dir: &RunDir) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let url = dir.path().to_string_lossy().into_owned();
    let (scheme, rest) = url.split_once("://").unwrap_or(("local", &url));
    let tail: PathBuf = rest.split('/').filter(|s| !s.is_empty() && *s != "." && *s != "..").collect();
    base.join("qcam/runs").join(scheme).join(tail)
}

/// Copies the run's tables (committed parts only) and `run.json` from `dir` into the local folder
/// `to`, replacing what an earlier copy left there.
pub fn download(dir: &RunDir, to: &Path) -> Result<()> {
    let local = RunDir::from(to);
    for table in TABLES {
        local.remove(table)?;
        for name in dir.list(table)?.into_iter().filter(|n| n.ends_with(".parquet")) {
            let rel = format!("{table}/{name}");
            let bytes = dir.read(&rel)?.with_context(|| format!("{}: vanished while copied", dir.at(&rel).display()))?;
            local.write(&rel, bytes)?;
        }
    }
    let record = dir.read(types::RUN_FILE)?.with_context(|| format!("{}: no run.json: the run has not finished", dir.at(types::RUN_FILE).display()))?;
    local.write(types::RUN_FILE, record)?;
    Ok(())
}

/// Puts the report's files from the local copy back into the store's `report/`. A store that
/// refuses (read-only credentials) costs only a note: the report is in the local folder.
fn upload_report(local: &Path, dir: &RunDir) {
    let from = local.join(report::REPORT_DIR);
    let files = std::fs::read_dir(&from).into_iter().flatten().flatten().filter(|e| e.path().is_file());
    for entry in files {
        let rel = format!("{}/{}", report::REPORT_DIR, entry.file_name().to_string_lossy());
        let put = std::fs::read(entry.path()).map_err(anyhow::Error::from).and_then(|b| Ok(dir.write(&rel, b)?));
        if let Err(e) = put {
            eprintln!("qcam: the report stays in {} only: {e:#}", from.display());
            return;
        }
    }
}

/// The report of the run in `dir`: made in place for a local folder; for a store, made in a local
/// copy (`cache`, or [`cache_dir`]) whose folder is named on stderr.
pub fn report(dir: &RunDir, cache: Option<&Path>) -> Result<String> {
    let RunDir::Store(_) = dir else {
        return report::report(&dir.path());
    };
    let local = cache.map_or_else(|| cache_dir(dir), Path::to_path_buf);
    download(dir, &local).with_context(|| format!("copying the run in {dir} to {}", local.display()))?;
    let text = report::report(&local)?;
    upload_report(&local, dir);
    eprintln!("qcam: report of {dir} made from a copy in {}; its files are in {}", local.display(), local.join(report::REPORT_DIR).display());
    Ok(text)
}
