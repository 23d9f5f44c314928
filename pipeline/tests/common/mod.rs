//! Shared by the whole-run tests: fake model pairs, job files over the real sample images, the
//! `qcam-fake` binary, and table comparisons. No libtorch, no Python.
#![allow(dead_code)]

pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pipeline::fake::{self, FakeSpec};

pub const TABLES: [&str; 7] = ["images", "pairs", "wsol", "errors", "subset", "aggregates", "perturbation"];

pub fn sample_dir() -> PathBuf {
    let d = std::env::var_os("QCAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/imagenet-val-sample"));
    assert!(d.is_dir(), "sample data missing at {}", d.display());
    d
}

/// Two fake pairs, `fa` and `fb`, at a 64-pixel crop, in `dir/models`; each forward takes at
/// least `forward_ms`.
pub fn fake_models(dir: &Path, forward_ms: u64) -> PathBuf {
    let models = dir.join("models");
    for (name, seed) in [("fa", 1), ("fb", 2)] {
        let (f, q) = fake::specs(seed);
        let (f, q) = (FakeSpec { forward_ms, ..f }, FakeSpec { forward_ms, ..q });
        fake::write_pair(&models, name, &f, &q, 64).unwrap();
    }
    models
}

/// A job over the sample images. `extra` is TOML appended inside `[run]`'s neighbours: whole
/// sections only.
pub struct JobSpec<'a> {
    pub data: PathBuf,
    pub models: PathBuf,
    pub pairs: &'a [&'a str],
    pub limit: usize,
    pub shard_size: usize,
    pub steps: usize,
    pub out: PathBuf,
    pub extra: &'a str,
}

impl JobSpec<'_> {
    pub fn write(&self, path: &Path) -> PathBuf {
        let pairs: Vec<String> = self.pairs.iter().map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "name = \"fake\"\n[data]\npath = \"{}\"\nlimit = {}\nshard_size = {}\n[models]\ndir = \"{}\"\npairs = [{}]\n\
             [run]\nbatch_size = 8\ntorch_threads = 1\n[subset]\nepoch_shards = 2\n[perturbation]\nsteps = {}\n[output]\ndir = \"{}\"\n{}",
            self.data.display(),
            self.limit,
            self.shard_size,
            self.models.display(),
            pairs.join(", "),
            self.steps,
            self.out.display(),
            self.extra
        );
        std::fs::write(path, text).unwrap();
        path.to_path_buf()
    }
}

pub fn job(dir: &Path, name: &str, spec: JobSpec<'_>) -> PathBuf {
    spec.write(&dir.join(name))
}

/// The default job: 100 sample images in shards of 25, both pairs, 10 steps.
pub fn default_spec(dir: &Path, models: &Path) -> JobSpec<'static> {
    JobSpec {
        data: sample_dir(),
        models: models.to_path_buf(),
        pairs: &["fa", "fb"],
        limit: 100,
        shard_size: 25,
        steps: 10,
        out: dir.join("out"),
        extra: "",
    }
}

/// A test's temporary folder, with the two fake pairs in it and job files made from the default spec.
pub struct Case {
    pub tmp: tempfile::TempDir,
    pub models: PathBuf,
}

impl Case {
    pub fn new(forward_ms: u64) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let models = fake_models(tmp.path(), forward_ms);
        Case { tmp, models }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A job file `name` from the default spec, changed by `edit`.
    pub fn job(&self, name: &str, edit: impl FnOnce(&mut JobSpec<'static>)) -> String {
        let mut spec = default_spec(self.tmp.path(), &self.models);
        edit(&mut spec);
        spec.write(&self.path(name)).to_str().unwrap().to_string()
    }

    /// A clean run of `job` into the local folder `name`.
    pub fn clean(&self, job: &str, name: &str) -> PathBuf {
        let out = self.path(name);
        ok(&["run", job, "--out", out.to_str().unwrap()]);
        out
    }
}

pub fn qcam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qcam-fake"))
}

pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    qcam().args(args).output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `qcam-fake` and fails the test unless it exits 0.
pub fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = run(args);
    assert!(out.status.success(), "qcam-fake {args:?} failed:\n{}", stderr(&out));
    out
}

/// Every row of a run's table as text, timing columns left out, sorted.
pub fn canonical(out: &Path, table: &str) -> Vec<String> {
    tables::canonical_rows(out, table).unwrap()
}

/// Asserts that every table of `other` has exactly the rows of `reference`'s.
pub fn assert_same_tables(reference: &Path, other: &Path, what: &str) {
    for table in TABLES {
        let (want, got) = (canonical(reference, table), canonical(other, table));
        assert_eq!(got.len(), want.len(), "{table}: {} rows {what}, {} in the reference", got.len(), want.len());
        let first = want.iter().zip(&got).position(|(a, b)| a != b);
        assert!(first.is_none(), "{table} differs {what} at sorted row {first:?}");
    }
}

/// The files of a folder, relative, sorted (recursively).
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn run_record(out: &Path) -> types::RunRecord {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
