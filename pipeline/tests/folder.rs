//! Who may write a run folder: one run at a time (a second is refused, naming the first), never
//! an output folder that is, holds or lies inside the data, and `--overwrite` removes only what
//! qcam wrote.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_second_run_into_a_folder_in_use_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 20);
    let job = job(tmp.path(), "job.toml", default_spec(tmp.path(), &models));
    let other = job_file_with_limit(tmp.path(), &models, 40);
    let out = tmp.path().join("out");
    let mut first = qcam().args(["run", job.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join(".qcam.lock").exists() {
        assert!(Instant::now() < deadline && first.try_wait().unwrap().is_none(), "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    for args in [
        vec!["run", other.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume"],
        vec!["run", other.to_str().unwrap(), "--out", out.to_str().unwrap(), "--overwrite"],
    ] {
        let refused = run(&args);
        assert!(!refused.status.success());
        let err = stderr(&refused);
        assert!(err.contains("in use by another qcam run") && err.contains(&format!("pid {}", first.id())) && err.contains("job.toml"), "{err}");
    }
    assert!(first.wait().unwrap().success(), "the first run must not be disturbed");
    let reference = tmp.path().join("reference");
    ok(&["run", job.to_str().unwrap(), "--out", reference.to_str().unwrap()]);
    assert_same_tables(&reference, &out, "after a refused second run");
    assert_eq!(run_record(&out).images_listed, 100);
}

fn job_file_with_limit(dir: &std::path::Path, models: &std::path::Path, limit: usize) -> std::path::PathBuf {
    JobSpec { limit, ..default_spec(dir, models) }.write(&dir.join("other.toml"))
}

#[test]
fn an_output_folder_overlapping_the_data_is_refused_and_the_data_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    // A private copy of a few images as the dataset.
    let data = tmp.path().join("data");
    let sample = sample_dir();
    std::fs::create_dir_all(data.join("ILSVRC/Data/CLS-LOC/val")).unwrap();
    let csv = std::fs::read_to_string(sample.join("LOC_val_solution.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().take(9).collect();
    std::fs::write(data.join("LOC_val_solution.csv"), lines.join("\n") + "\n").unwrap();
    std::fs::copy(sample.join("LOC_synset_mapping.txt"), data.join("LOC_synset_mapping.txt")).unwrap();
    for line in &lines[1..] {
        let id = line.split(',').next().unwrap();
        std::fs::copy(sample.join(format!("ILSVRC/Data/CLS-LOC/val/{id}.JPEG")), data.join(format!("ILSVRC/Data/CLS-LOC/val/{id}.JPEG"))).unwrap();
    }
    let before = files(&data);
    let spec = JobSpec { data: data.clone(), limit: 8, ..default_spec(tmp.path(), &models) };
    let job = spec.write(&tmp.path().join("job.toml"));
    for out in [data.clone(), tmp.path().to_path_buf(), data.join("ILSVRC/runs/x")] {
        let refused = run(&["run", job.to_str().unwrap(), "--out", out.to_str().unwrap(), "--overwrite"]);
        assert!(!refused.status.success(), "{} was accepted", out.display());
        assert!(stderr(&refused).contains("overlap"), "{}", stderr(&refused));
        assert_eq!(files(&data), before, "the data changed");
    }
}

#[test]
fn overwrite_removes_only_what_qcam_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let job = job(tmp.path(), "job.toml", JobSpec { limit: 30, ..default_spec(tmp.path(), &models) });
    let out = tmp.path().join("out");
    ok(&["run", job.to_str().unwrap()]);
    std::fs::write(out.join("my-notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(out.join("images/extra")).unwrap();
    let refused = run(&["run", job.to_str().unwrap()]);
    assert!(!refused.status.success() && stderr(&refused).contains("not empty"), "{}", stderr(&refused));
    ok(&["run", job.to_str().unwrap(), "--overwrite"]);
    assert_eq!(std::fs::read_to_string(out.join("my-notes.txt")).unwrap(), "mine");
    assert_eq!(canonical(&out, "pairs").len(), 60);
}
