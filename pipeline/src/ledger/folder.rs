//! The run folder as a place: which folders a run may write into (never the data) and what of an
//! earlier run's folder it may remove (only what qcam wrote).

use std::path::Path;

use tables::RunDir;

use super::{LedgerError, DONE_DIR, LOCK_FILE, STAGING_DIR, TABLES};

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

/// Whether URL `a` is `b` or lies under it: same scheme and bucket (case aside), and `b`'s path a
/// whole-segment prefix of `a`'s.
fn url_within(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        format!("{}://{}/{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), path.trim_matches('/'))
    };
    let (a, b) = (norm(a), norm(b));
    a == b || a.starts_with(&format!("{}/", b.trim_end_matches('/')))
}

/// Refuses an output folder that is, holds or lies inside the input, on disk or in a store: qcam
/// never deletes, or writes into, what it did not write.
pub fn check_apart(out_dir: &Path, data: &Path) -> Result<(), LedgerError> {
    let overlap = match (sources::is_url(out_dir), sources::is_url(data)) {
        (false, false) => within(data, out_dir) || within(out_dir, data),
        (true, true) => {
            let (out, data) = (out_dir.to_string_lossy(), data.to_string_lossy());
            url_within(&out, &data) || url_within(&data, &out)
        }
        _ => false, // one on disk, one behind a URL
    };
    if overlap {
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

/// Gets `dir` ready for a run. A fresh run needs an empty (or absent) folder; with `overwrite`,
/// the previous run's entries are removed, and only those. A resume or append needs the folder.
pub fn prepare(dir: &RunDir, resume: bool, overwrite: bool) -> Result<(), LedgerError> {
    if resume {
        if !dir.exists()? {
            return Err(LedgerError::Refused { path: dir.path(), message: "nothing to resume or append to: the output folder does not exist".into() });
        }
        return Ok(());
    }
    let entries: Vec<String> = dir.list("")?.into_iter().filter(|name| name != LOCK_FILE).collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(LedgerError::Refused {
            path: dir.path(),
            message: "output folder is not empty; pass --overwrite or set output.overwrite = true (or --resume / --append)".into(),
        });
    }
    let (ours, foreign): (Vec<String>, Vec<String>) = entries.into_iter().partition(|n| is_ours(n));
    for name in &ours {
        dir.remove(name)?;
    }
    if !foreign.is_empty() {
        eprintln!("qcam: --overwrite left {} entries qcam did not write in {dir}: {:?}", foreign.len(), foreign);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use tables::RunDir;

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
    fn overlapping_urls_are_refused_by_whole_segments() {
        let url = |u: &str| PathBuf::from(u);
        assert!(check_apart(&url("s3://bucket/val"), &url("s3://bucket/val/")).is_err(), "the same folder");
        assert!(check_apart(&url("s3://Bucket/val/runs/x"), &url("S3://bucket/val")).is_err(), "inside the data");
        assert!(check_apart(&url("s3://bucket"), &url("s3://bucket/val")).is_err(), "holding the data");
        assert!(check_apart(&url("s3://bucket/val-runs"), &url("s3://bucket/val")).is_ok(), "a sibling with a longer name");
        assert!(check_apart(&url("s3://other/val"), &url("s3://bucket/val")).is_ok());
        assert!(check_apart(&url("gs://bucket/val"), &url("s3://bucket/val")).is_ok());
        assert!(check_apart(Path::new("/tmp/val"), &url("s3://bucket/val")).is_ok());
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
        let dir = RunDir::from(out);
        let err = prepare(&dir, false, false).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        prepare(&dir, false, true).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["notes", "thesis.tex"]);
    }
}
