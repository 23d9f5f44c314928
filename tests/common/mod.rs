//! Shared by the integration tests: where the repo's venv, exported models and sample data are.
//! A missing prerequisite fails the test with the command that provides it; nothing is skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("QCAM_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(p.exists(), "Python reference environment missing at {} (run `make setup`)", p.display());
    p
}

pub fn models_dir() -> PathBuf {
    let d = std::env::var_os("QCAM_MODELS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("artifacts/models"));
    assert!(d.is_dir(), "exported models missing at {} (run `make models`)", d.display());
    d
}

pub fn pair_dir(name: &str) -> PathBuf {
    let d = models_dir().join(name);
    assert!(d.join("manifest.json").is_file(), "pair {name} not exported in {} (run `make models`)", d.display());
    d
}

pub fn sample_dir() -> PathBuf {
    let d = std::env::var_os("QCAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/imagenet-val-sample"));
    assert!(d.is_dir(), "sample data missing at {}", d.display());
    d
}

/// Runs a reference script with the venv's Python; panics with its stderr on failure.
pub fn run_python(script: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python()).arg(script).args(args).output().expect("spawning python");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Every row of a run's table rendered as text, timing columns left out, sorted: two runs with
/// equal results give equal vectors.
pub fn canonical(out: &Path, table: &str) -> Vec<String> {
    tables::canonical_rows(out, table).unwrap()
}

/// Runs the qcam binary built for these tests; the test fails unless it exits 0.
pub fn run_qcam<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) {
    let status = Command::new(env!("CARGO_BIN_EXE_qcam")).args(args).status().unwrap();
    assert!(status.success(), "qcam {args:?} failed");
}

/// Asserts that `other`'s `table` has exactly the rows of `reference` (as [`canonical`] gives
/// them); `what` says which run `other` is, and a failure shows the first differing row.
pub fn assert_same_rows(reference: &[String], other: &Path, table: &str, what: &str) {
    let rows = canonical(other, table);
    assert_eq!(rows.len(), reference.len(), "{table}: {} rows {what}, {} in the reference", rows.len(), reference.len());
    let first_diff = reference.iter().zip(&rows).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none(),
        "{table} differs {what} at sorted row {first_diff:?}:\n{:?}",
        first_diff.map(|i| (&reference[i], &rows[i]))
    );
}
