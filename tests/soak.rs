//! Soak: the same job 20 times in one process (`qcam run --repeat 20`) writes identical tables every
//! time, open files do not grow after the first run, and resident memory does not grow over the
//! last ten runs (`pipeline::soak::soak_rss_verdict`: a one-time plateau during warm-up is allowed, a
//! steady climb is not). The tables also equal those of a separate single run.

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
    // Warm-up may raise the level once (a plateau); the second half must not grow.
    let rss: Vec<u64> = (0..20).map(|i| field(i, "rss_held_kb")).collect();
    eprintln!("soak: RSS held after each run (MB): {:?}", rss.iter().map(|kb| kb / 1024).collect::<Vec<_>>());
    if let Err(e) = pipeline::soak::soak_rss_verdict(&rss) {
        panic!("{e}");
    }

    for table in ["images", "pairs", "wsol", "errors", "subset", "aggregates", "perturbation"] {
        assert_eq!(canonical(&soak, table), canonical(&single, table), "{table}: soak differs from a single run");
    }
    assert_eq!(canonical(&single, "subset").len(), 1, "k = ceil(0.05 · 16)");
}
