//! Soak: the same job 20 times in one process (`qcam run --repeat 20`) writes identical tables every
//! time, and neither resident memory nor open files grow from the second run to the last. The
//! tables also equal those of a separate single run.

mod common;

use std::process::Command;

use common::canonical;

#[test]
fn twenty_runs_in_one_process_neither_leak_nor_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    let soak = tmp.path().join("soak");
    let single = tmp.path().join("single");
    std::fs::write(
        &job,
        format!(
            "name = \"soak\"\n[data]\npath = \"{}\"\nlimit = 16\nshard_size = 8\n[models]\ndir = \"{}\"\n\
             pairs = [\"mobilenet_v2_qnnpack\"]\n[run]\nbatch_size = 8\ntorch_threads = 1\n[perturbation]\nsteps = 2\n\
             [output]\ndir = \"{}\"\n",
            common::sample_dir().display(),
            common::models_dir().display(),
            single.display()
        ),
    )
    .unwrap();
    let qcam = |args: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_qcam")).args(args).status().unwrap();
        assert!(status.success(), "qcam {args:?} failed");
    };
    qcam(&["run", job.to_str().unwrap(), "--out", soak.to_str().unwrap(), "--repeat", "20"]);
    qcam(&["run", job.to_str().unwrap()]);

    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(soak.join("soak.json")).unwrap()).unwrap();
    let runs = record["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 20);
    let field = |i: usize, f: &str| runs[i][f].as_u64().unwrap();
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["digest"], runs[0]["digest"], "run {} wrote different tables", i + 1);
    }
    let fds: Vec<u64> = (1..20).map(|i| field(i, "open_files")).collect();
    assert!(fds.iter().all(|&n| n == fds[0]), "open files vary after the first run: {fds:?}");
    let (warm, last) = (field(1, "rss_kb") as f64, field(19, "rss_kb") as f64);
    assert!(last <= warm * 1.10, "RSS grew from {warm} kB (run 2) to {last} kB (run 20)");

    for table in ["images", "pairs", "errors", "subset", "aggregates", "perturbation"] {
        assert_eq!(canonical(&soak, table), canonical(&single, table), "{table}: soak differs from a single run");
    }
    assert_eq!(canonical(&single, "subset").len(), 1, "k = ceil(0.05 · 16)");
}
