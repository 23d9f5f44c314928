//! A run whose output is an object store (`output.dir = s3://…`), against a real S3 server on
//! loopback (moto; see `common/s3.rs` for why): two processes write one run into the bucket with
//! no shared folder, and it equals a local run table for table; a process killed during
//! deletion/insertion is resumed from what the bucket holds, losing and duplicating nothing; and a
//! second run into a folder in use is refused, naming the first.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::s3::S3;
use common::*;

/// A [`Case`] with an S3 server of its own.
struct StoreCase {
    case: Case,
    s3: S3,
}

impl StoreCase {
    fn new(forward_ms: u64) -> StoreCase {
        StoreCase { case: Case::new(forward_ms), s3: S3::start() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.case.path(name)
    }

    /// `qcam-fake` with the store's credentials and a cache folder of the test's own.
    fn qcam(&self) -> Command {
        let mut cmd = qcam();
        cmd.envs(self.s3.env()).env("XDG_CACHE_HOME", self.path("cache"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.qcam().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "qcam-fake {args:?} failed:\n{}", stderr(&out));
        out
    }

    /// The run at `prefix` in the bucket, copied by `qcam report` into a local folder.
    fn fetched(&self, prefix: &str) -> PathBuf {
        let copy = self.path(&format!("copy-of-{}", prefix.replace('/', "-")));
        let out = self.ok(&["report", &self.s3.url(prefix), "--cache", copy.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("# qcam report"));
        copy
    }

    /// Keys a finished run must not leave behind.
    fn leftovers(&self, prefix: &str) -> Vec<String> {
        let temporary = |k: &String| k.starts_with(".staging/") || k.ends_with(".pending") || k.ends_with(".tmp") || k.ends_with(".lock");
        self.s3.keys(prefix).into_iter().filter(temporary).collect()
    }
}

#[test]
fn a_run_into_a_bucket_equals_a_local_run() {
    let c = StoreCase::new(0);
    let job = c.case.job("job.toml", |_| {});
    let local = c.case.clean(&job, "local");

    let url = c.s3.url("runs/two");
    let out = c.ok(&["spawn", "-n", "2", "--", "run", &job, "--out", &url, "-w", "2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("# qcam report").count(), 1, "process 0 alone prints the report");
    let keys = c.s3.keys("runs/two");
    for key in ["run.json", "done/val-00003.json", "images/part-val-00003.parquet", "perturbation/part-fb.parquet", "report/report.md"] {
        assert!(keys.contains(&key.to_string()), "{key} missing from the bucket: {keys:?}");
    }
    assert_eq!(c.leftovers("runs/two"), Vec::<String>::new());
    let copy = c.fetched("runs/two");
    assert_same_tables(&local, &copy, "in the bucket");
    let record = run_record(&copy);
    assert_eq!((record.processes, record.workers.len()), (2, 4));
    assert!(record.pairs.iter().all(|p| p.counts.rows_ok == 100 && p.counts.add_up()));
    assert!(!Path::new(&url).exists(), "nothing was written to a local folder named like the URL");
}

/// Polls `ready` until it holds, failing the test if `child` ends first or it never does.
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_process_killed_during_deletion_resumes_from_the_bucket() {
    let c = StoreCase::new(25);
    let job = c.case.job("job.toml", |s| s.steps = 40);
    let reference = c.case.clean(&job, "reference");

    let url = c.s3.url("runs/killed");
    let ports: Vec<u16> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let hosts = c.path("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
    let mut procs: Vec<Child> = (0..2)
        .map(|p| {
            c.qcam()
                .args(["run", &job, "--out", &url, "--hostfile", hosts.to_str().unwrap(), "--process", &p.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let staged = || c.s3.keys("runs/killed").iter().filter(|k| k.starts_with(".staging/")).count();
    wait_for(&mut procs[0], "2 staged images", || staged() >= 2);
    // Process 0 holds the lock: killing it leaves the lock behind, as a crash would.
    procs[0].kill().unwrap();
    procs[0].wait().unwrap();
    let keys = c.s3.keys("runs/killed");
    assert!(!keys.iter().any(|k| k.starts_with("perturbation/part-")), "deletion/insertion finished before the kill: {keys:?}");
    assert!(keys.contains(&".qcam.lock".to_string()), "{keys:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while procs[1].try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "process 1 kept running without its peer");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!procs[1].wait().unwrap().success());

    let done = c.run(&["spawn", "-n", "2", "--", "run", &job, "--out", &url, "--resume"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let err = stderr(&done);
    assert!(err.contains("taking over the stale lock") && err.contains("4 of 4 shards already finished"), "{err}");
    assert_eq!(c.leftovers("runs/killed"), Vec::<String>::new());
    assert_same_tables(&reference, &c.fetched("runs/killed"), "after a process was killed and the run resumed");
}

#[test]
fn a_second_run_into_a_folder_in_use_is_refused_naming_the_first() {
    let c = StoreCase::new(20);
    let job = c.case.job("job.toml", |_| {});
    let other = c.case.job("other.toml", |s| s.limit = 40);
    let url = c.s3.url("runs/busy");
    let mut first = c.qcam().args(["run", &job, "--out", &url]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&mut first, "the first run's lock", || c.s3.keys("runs/busy").contains(&".qcam.lock".to_string()));
    for flag in ["--resume", "--overwrite"] {
        let refused = c.run(&["run", &other, "--out", &url, flag]);
        assert!(!refused.status.success());
        let err = stderr(&refused);
        assert!(err.contains("in use by another qcam run") && err.contains(&format!("pid {}", first.id())) && err.contains("job.toml"), "{err}");
        assert!(err.contains(&format!("{url}/.qcam.lock")), "the lock is named by its URL: {err}");
    }
    assert!(first.wait().unwrap().success(), "the first run must not be disturbed");
    let reference = c.case.clean(&job, "reference");
    assert_same_tables(&reference, &c.fetched("runs/busy"), "after a refused second run");

    // A bucket that does not exist: the error names the object it could not write.
    let missing = "s3://no-such-bucket/runs/x";
    let failed = c.run(&["run", &job, "--out", missing]);
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("s3://no-such-bucket/runs/x/.qcam.lock"), "{}", stderr(&failed));
}

#[test]
fn shards_in_a_bucket_run_into_the_same_bucket_but_never_into_the_data() {
    let c = StoreCase::new(0);
    let shards = c.path("shards");
    ok(&["shard", sample_dir().to_str().unwrap(), "--out", shards.to_str().unwrap(), "--shard-size", "10", "--limit", "20"]);
    c.s3.upload(&shards, "val");
    let job = c.case.job("job.toml", |s| s.limit = 20);
    let data = c.s3.url("val");
    for out in [data.clone(), format!("{data}/"), c.s3.url("val/runs/x")] {
        let refused = c.run(&["run", &job, "--data", &data, "--out", &out]);
        assert!(!refused.status.success(), "{out} was accepted");
        assert!(stderr(&refused).contains("overlap"), "{}", stderr(&refused));
    }
    assert_eq!(c.s3.keys("val").len(), 3, "the data was left as it was: {:?}", c.s3.keys("val"));
    c.ok(&["run", &job, "--data", &data, "--out", &c.s3.url("val-runs/x")]);
    let record = run_record(&c.fetched("val-runs/x"));
    assert!(record.pairs.iter().all(|p| p.counts.images_in == 20 && p.counts.add_up()));
}
