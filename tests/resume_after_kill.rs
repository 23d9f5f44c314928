//! Fault injection: one process of a 2-process run is killed with SIGKILL, once while shards are
//! being computed and once during deletion/insertion; `qcam spawn -n 2 -- run … --resume` then
//! finishes the run. Every table must equal an uninterrupted run's, row for row: nothing lost,
//! nothing duplicated.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same_rows, canonical, run_qcam};

const TABLES: [&str; 6] = ["images", "pairs", "errors", "subset", "aggregates", "perturbation"];

fn write_job(dir: &Path) -> PathBuf {
    let text = format!(
        r#"name = "resume-test"
[data]
path = "{}"
shard_size = 25
[models]
dir = "{}"
pairs = ["mobilenet_v2_qnnpack"]
[run]
batch_size = 16
torch_threads = 1
[subset]
epoch_shards = 3
[perturbation]
steps = 20
[output]
dir = "{}"
"#,
        common::sample_dir().display(),
        common::models_dir().display(),
        dir.join("unused").display()
    );
    let job = dir.join("job.toml");
    std::fs::write(&job, text).unwrap();
    job
}

fn qcam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qcam"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts both processes of a loopback cluster directly, so one of them can be killed.
fn start_cluster(job: &str, out: &Path, dir: &Path) -> Vec<Child> {
    let hostfile = dir.join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    (0..2)
        .map(|p| {
            qcam()
                .args(["run", job, "--out", out.to_str().unwrap(), "--hostfile", hostfile.to_str().unwrap(), "--process", &p.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Waits until `ready` holds, then SIGKILLs process 1 and makes sure process 0 ends too.
fn kill_when(mut children: Vec<Child>, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !ready() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        assert!(children[1].try_wait().unwrap().is_none(), "process 1 ended before {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    children[1].kill().unwrap(); // SIGKILL
    children[1].wait().unwrap();
    // Its peer loses the connection and stops; if it does not, kill it as well.
    let deadline = Instant::now() + Duration::from_secs(60);
    while children[0].try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = children[0].kill();
    children[0].wait().unwrap();
}

fn resume(job: &str, out: &Path) {
    run_qcam(&["spawn", "-n", "2", "--", "run", job, "--out", out.to_str().unwrap(), "--resume"]);
}

fn assert_same(reference: &Path, other: &Path) {
    for table in TABLES {
        assert_same_rows(&canonical(reference, table), other, table, "after resume");
    }
}

#[test]
fn a_killed_process_is_resumed_without_loss_or_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let job = write_job(tmp.path());
    let job = job.to_str().unwrap();
    let reference = tmp.path().join("reference");
    run_qcam(&["run", job, "--out", reference.to_str().unwrap()]);
    assert_eq!(canonical(&reference, "pairs").len(), 300);
    assert_eq!(canonical(&reference, "subset").len(), 15);

    // Killed mid-way through the shards: some are done, the rest not started or half written.
    let mid = tmp.path().join("killed-in-phase-1");
    let done = mid.join("done");
    kill_when(start_cluster(job, &mid, tmp.path()), "4 finished shards", || count_files(&done) >= 4);
    let finished_before = count_files(&done);
    assert!(finished_before < 12, "the run finished before it was killed");
    resume(job, &mid);
    assert_same(&reference, &mid);

    // Killed during deletion/insertion: rows of some subset images are staged, none final.
    let late = tmp.path().join("killed-in-deletion");
    let staged = late.join(".staging").join("mobilenet_v2_qnnpack").join("perturbation");
    kill_when(start_cluster(job, &late, tmp.path()), "2 staged images", || count_files(&staged) >= 2);
    assert!(!late.join("perturbation").exists(), "deletion/insertion finished before the kill");
    resume(job, &late);
    assert_same(&reference, &late);
}
