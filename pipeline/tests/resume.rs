//! Resume, append, re-sharding, a changed limit or pair list, and runs that fail or are killed:
//! afterwards the folder holds exactly the tables of one clean run of the job as finally written,
//! row for row, and no failed run ever replaces a good table with a partial one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

impl Case {
    /// A copy of a finished folder.
    fn copy(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.path(name);
        copy_dir(from, &to);
        to
    }
}

fn resume(job: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", job, "--out", out.to_str().unwrap(), "--resume"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn an_unreadable_part_is_recomputed_not_fatal() {
    let c = Case::new(0);
    let job = c.job("job.toml", |_| {});
    let reference = c.clean(&job, "reference");
    for (name, damage) in [("truncated", 100u64), ("emptied", 0)] {
        let out = c.copy(&reference, name);
        let part = out.join("images/part-val-00001.parquet");
        std::fs::OpenOptions::new().write(true).open(&part).unwrap().set_len(damage).unwrap();
        let done = resume(&job, &out, &[]);
        assert!(done.status.success(), "{}", stderr(&done));
        let err = stderr(&done);
        assert!(err.contains("shard val-00001 is recomputed") && err.contains("part-val-00001.parquet"), "{err}");
        assert!(err.contains("3 of 4 shards already finished"), "{err}");
        assert_same_tables(&reference, &out, &format!("after resuming over a {name} part"));
    }
    // A part whose row count no longer matches its record is recomputed too.
    let out = c.copy(&reference, "swapped");
    std::fs::copy(out.join("images/part-val-00000.parquet"), out.join("pairs/part-val-00002.parquet")).unwrap();
    assert!(resume(&job, &out, &[]).status.success());
    assert_same_tables(&reference, &out, "after resuming over a part with the wrong rows");
}

#[test]
fn a_failed_run_replaces_no_table() {
    let c = Case::new(0);
    let small = c.job("small.toml", |s| s.limit = 50);
    let large = c.job("large.toml", |s| s.limit = 150);
    let out = c.clean(&small, "folder");
    let kept = |table: &str| std::fs::read(out.join(table).join("part-fa.parquet")).unwrap();
    let before: Vec<Vec<u8>> = ["subset", "aggregates", "perturbation"].map(kept).to_vec();
    let record = std::fs::read(out.join("run.json")).unwrap();

    // Deletion/insertion cannot stage its rows: the append fails after phase 1.
    std::fs::write(out.join(".staging"), b"in the way").unwrap();
    let failed = run(&["run", &large, "--out", out.to_str().unwrap(), "--append"]);
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(err.contains(".staging") && err.contains("--resume"), "{err}");
    let after: Vec<Vec<u8>> = ["subset", "aggregates", "perturbation"].map(kept).to_vec();
    assert!(before == after, "a failed run changed a run-level table");
    assert_eq!(std::fs::read(out.join("run.json")).unwrap(), record, "a failed run rewrote run.json");
    assert!(!out.join(".qcam.lock").exists(), "the lock is released on failure");

    std::fs::remove_file(out.join(".staging")).unwrap();
    let done = resume(&large, &out, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_same_tables(&c.clean(&large, "reference"), &out, "after the failed append was resumed");
    assert!(files(&out).iter().all(|f| !f.ends_with(".pending")), "{:?}", files(&out));
}

#[test]
fn the_folder_ends_with_exactly_the_job_as_now_written() {
    let c = Case::new(0);
    let job = c.job("job.toml", |_| {});
    let first = c.clean(&job, "first");

    // Another shard size: the old shards' parts and records go.
    let resharded = c.job("resharded.toml", |s| s.shard_size = 20);
    let out = c.copy(&first, "resharded");
    assert!(resume(&resharded, &out, &[]).status.success());
    let reference = c.clean(&resharded, "reference-20");
    assert_same_tables(&reference, &out, "after re-sharding");
    assert_eq!(files(&out.join("images")), files(&reference.join("images")));
    assert_eq!(files(&out.join("done")), files(&reference.join("done")));
    let record = run_record(&out);
    assert_eq!((record.images_listed, record.shards), (100, 5));
    assert!(record.pairs.iter().all(|p| p.counts.add_up() && p.counts.rows_ok == 100));

    // A smaller limit: the rows beyond it go.
    let out = c.copy(&first, "limited");
    assert!(resume(&job, &out, &["--limit", "60"]).status.success());
    let limited = c.job("limited.toml", |s| s.limit = 60);
    assert_same_tables(&c.clean(&limited, "reference-60"), &out, "after a smaller limit");

    // A pair removed: its parts and records go.
    let one_pair = c.job("one-pair.toml", |s| s.pairs = &["fa"]);
    let out = c.copy(&first, "one-pair");
    assert!(resume(&one_pair, &out, &[]).status.success());
    assert_same_tables(&c.clean(&one_pair, "reference-fa"), &out, "after removing a pair");
    let left: Vec<String> = files(&out).into_iter().filter(|f| f.contains("fb")).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The job file `job` with `lines` added to its `[perturbation]` section.
fn with_perturbation(job: String, lines: &str) -> String {
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, text.replacen("[perturbation]\n", &format!("[perturbation]\n{lines}\n"), 1)).unwrap();
    job
}

/// The perturbation rows of `out` under `method`.
fn method_rows(out: &Path, method: &str) -> usize {
    canonical(out, "perturbation").iter().filter(|r| r.contains(&format!(" | method={method} | "))).count()
}

#[test]
fn changing_the_baselines_ends_with_the_job_as_now_written() {
    let c = Case::new(0);
    let job = c.job("job.toml", |_| {});
    let first = c.clean(&job, "first");
    // 100 images: a subset of 5 per pair; the default share 0.2 gives one image both baselines.
    assert_eq!((method_rows(&first, "eigencam"), method_rows(&first, "gaussian"), method_rows(&first, "random")), (20, 4, 4));
    assert_eq!(canonical(&first, "wsol").len(), 100 * 2 * 2 * 3, "images × pairs × variants × (eigencam, gaussian, full)");

    // More images get the baselines: the missing orders are computed, the rest kept.
    let all = with_perturbation(c.job("all.toml", |_| {}), "baseline_share = 1.0");
    let out = c.copy(&first, "more");
    let resumed = resume(&all, &out, &[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_tables(&c.clean(&all, "reference-more"), &out, "after more baselines");
    assert_eq!((method_rows(&out, "gaussian"), method_rows(&out, "random")), (20, 20));

    // Only the random order: the Gaussian rows go.
    let random = with_perturbation(c.job("random.toml", |_| {}), "baseline_share = 1.0\nbaselines = [\"random\"]");
    assert!(resume(&random, &out, &[]).status.success());
    assert_same_tables(&c.clean(&random, "reference-random"), &out, "after dropping a baseline");
    assert_eq!((method_rows(&out, "eigencam"), method_rows(&out, "gaussian"), method_rows(&out, "random")), (20, 0, 20));
}

#[test]
fn an_image_gone_before_its_reread_fails_each_of_its_jobs_alone() {
    let c = Case::new(0);
    let data = c.path("data");
    copy_dir(&sample_dir(), &data);
    let job = c.job("job.toml", |s| s.data = data.clone());
    let out = c.clean(&job, "out");
    // Rank 2 of pair `fa`: no baseline rows yet (the top image of each pair has them).
    let subset = canonical(&out, "subset");
    let row = subset.iter().find(|r| r.starts_with("model=fa | ") && r.contains(" | rank=2 | ")).expect("rank 2 of fa");
    let id = row.split(" | ").find_map(|f| f.strip_prefix("image_id=")).unwrap().to_string();
    let before = canonical(&out, "perturbation");
    // The pairs that will need its baselines: it is in their subset, without them so far.
    let fresh = ["fa", "fb"]
        .into_iter()
        .filter(|p| subset.iter().any(|r| r.starts_with(&format!("model={p} | image_id={id} | "))))
        .filter(|p| !before.iter().any(|r| r.starts_with(&format!("image_id={id} | model={p} | variant=float | method=gaussian | "))))
        .count();
    assert!(fresh >= 1);
    let file = files(&data).into_iter().find(|f| f.ends_with(&format!("{id}.JPEG"))).expect("its image");
    std::fs::remove_file(data.join(&file)).unwrap();

    // Both baselines for every subset image: phase 1 and EigenCAM's rows are reused, the new
    // orders re-read their images, and the one gone fails once per job, naming its order.
    let all = with_perturbation(c.job("all.toml", |s| s.data = data.clone()), "baseline_share = 1.0");
    let resumed = resume(&all, &out, &[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let errors: Vec<String> = canonical(&out, "errors").into_iter().filter(|r| r.contains(&id)).collect();
    assert_eq!(errors.len(), 2 * fresh, "{errors:?}");
    assert!(errors.iter().all(|r| r.contains(" | stage=perturb | ")), "{errors:?}");
    for method in ["gaussian", "random"] {
        let named = errors.iter().filter(|r| r.contains(&format!("{method}: image no longer readable from its shard: no image file"))).count();
        assert_eq!(named, fresh, "{method}: {errors:?}");
        // 5 subset images × 2 pairs × 2 variants, less the image's two rows in each fresh pair.
        assert_eq!(method_rows(&out, method), 20 - 2 * fresh, "{method}: every other image's rows are there");
    }
    assert_eq!(method_rows(&out, "eigencam"), 20, "EigenCAM's rows came from the first run");
}

#[test]
fn append_computes_only_the_new_shards() {
    let c = Case::new(0);
    let half = c.job("half.toml", |s| s.limit = 50);
    let all = c.job("all.toml", |_| {});
    let out = c.clean(&half, "appended");
    let done = run(&["run", &all, "--out", out.to_str().unwrap(), "--append"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let record = run_record(&out);
    assert_eq!(record.shards_reused, 2);
    assert_eq!(record.workers.iter().map(|w| w.images_in).sum::<usize>(), 50, "only the new shards are computed");
    assert_same_tables(&c.clean(&all, "reference"), &out, "after an append");
}

/// Waits until `ready`, then SIGKILLs `child`.
fn kill_when(mut child: Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn count(dir: &Path) -> usize {
    files(dir).len()
}

#[test]
fn a_killed_run_resumes_without_loss_or_duplicates() {
    let c = Case::new(25);
    let job = c.job("job.toml", |s| s.steps = 40);
    let reference = c.clean(&job, "reference");
    let start = |out: &Path| {
        qcam().args(["run", &job, "--out", out.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    };

    let mid = c.path("killed-in-phase-1");
    kill_when(start(&mid), "2 finished shards", || count(&mid.join("done")) >= 2);
    assert!(count(&mid.join("done")) < 4, "the run finished before it was killed");
    let done = resume(&job, &mid, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stderr(&done).contains("taking over the stale lock"), "{}", stderr(&done));
    assert_same_tables(&reference, &mid, "after a kill in phase 1");

    let late = c.path("killed-in-deletion");
    kill_when(start(&late), "2 staged images", || count(&late.join(".staging")) >= 2);
    assert!(!late.join("perturbation/part-fa.parquet").exists(), "deletion/insertion finished before the kill");
    let done = resume(&job, &late, &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_same_tables(&reference, &late, "after a kill in deletion/insertion");
}

#[test]
fn a_killed_cluster_process_stops_its_peer_and_the_cluster_resumes() {
    let c = Case::new(25);
    let job = c.job("job.toml", |s| s.steps = 40);
    let reference = c.clean(&job, "reference");
    let out = c.path("cluster");
    let ports: Vec<u16> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let hosts = c.path("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
    let mut procs: Vec<Child> = (0..2)
        .map(|p| {
            qcam()
                .args(["run", &job, "--out", out.to_str().unwrap(), "--hostfile", hosts.to_str().unwrap(), "--process", &p.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let first = procs.remove(0);
    kill_when(procs.remove(0), "2 finished shards", || count(&out.join("done")) >= 2);
    // Its peer sees the connection break and stops by itself.
    let mut first = first;
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "process 0 kept running without its peer");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!first.wait().unwrap().success());
    let done = run(&["spawn", "-n", "2", "--", "run", &job, "--out", out.to_str().unwrap(), "--resume"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_same_tables(&reference, &out, "after a cluster process was killed");
}
