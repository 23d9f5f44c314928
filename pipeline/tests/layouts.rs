//! The tables do not depend on how the work is laid out: one worker, two worker threads, two
//! processes gathering into process 0's folder, two processes writing a shared folder. And every
//! listed image is accounted for once per pair in run.json.

mod common;

use common::*;

#[test]
fn threads_and_processes_write_the_same_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let job = job(tmp.path(), "job.toml", default_spec(tmp.path(), &models));
    let job = job.to_str().unwrap();
    let one = tmp.path().join("one");
    let out = ok(&["run", job, "--out", one.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# qcam report"), "a single process prints the report");
    assert_eq!(canonical(&one, "pairs").len(), 200);
    assert_eq!(canonical(&one, "subset").len(), 10, "ceil(0.05 · 100) per pair");
    // Per pair: 5 images × 2 variants under EigenCAM's order, and the best ceil(0.2 · 5) = 1 image
    // under the two baselines' orders.
    assert_eq!(canonical(&one, "perturbation").len(), 2 * (5 * 2 + 2 * 2));

    let record = run_record(&one);
    assert_eq!((record.images_listed, record.shards, record.processes), (100, 4, 1));
    for pair in &record.pairs {
        assert_eq!((pair.counts.images_in, pair.counts.rows_ok, pair.counts.rows_error), (100, 100, 0), "{}", pair.manifest.name);
    }

    let two = tmp.path().join("two-threads");
    ok(&["run", job, "--out", two.to_str().unwrap(), "-w", "2"]);
    assert_same_tables(&one, &two, "with 2 worker threads");
    assert_eq!(run_record(&two).workers.len(), 2);

    // Two processes: process 0 gathers every row and alone prints the report.
    let gathered = tmp.path().join("two-processes");
    let out = ok(&["spawn", "-n", "2", "--", "run", job, "--out", gathered.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("# qcam report").count(), 1);
    assert_same_tables(&one, &gathered, "with 2 processes gathering");
    let record = run_record(&gathered);
    assert_eq!((record.processes, record.workers.len()), (2, 2), "every worker's report reaches run.json");

    // A shared folder: each process writes its own shards.
    let shared_spec = common::JobSpec { extra: "", ..default_spec(tmp.path(), &models) };
    let shared_job = shared_spec.write(&tmp.path().join("shared.toml"));
    let text = std::fs::read_to_string(&shared_job).unwrap().replace("[output]\n", "[output]\nshared = true\n");
    std::fs::write(&shared_job, text).unwrap();
    let shared = tmp.path().join("shared");
    ok(&["spawn", "-n", "2", "--", "run", shared_job.to_str().unwrap(), "--out", shared.to_str().unwrap(), "-w", "2"]);
    assert_same_tables(&one, &shared, "with 2 processes × 2 workers on a shared folder");
    for dir in [&one, &two, &gathered, &shared] {
        let left: Vec<String> = files(dir).into_iter().filter(|f| f.contains(".staging") || f.ends_with(".pending") || f.ends_with(".tmp") || f.ends_with(".lock")).collect();
        assert!(left.is_empty(), "{}: leftovers {left:?}", dir.display());
    }
}
