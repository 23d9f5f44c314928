//! Clear failures instead of hangs and panics: a peer that never joins, a signal to `spawn`, a
//! full disk, a corrupt part. Each ends with one line that names what went wrong, and a rerun
//! with `--resume` completes.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_peer_that_never_joins_ends_the_run_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let spec = JobSpec { extra: "", ..default_spec(tmp.path(), &models) };
    let job = spec.write(&tmp.path().join("job.toml"));
    let text = std::fs::read_to_string(&job).unwrap().replace("[run]\n", "[run]\npeer_timeout_s = 2\n");
    std::fs::write(&job, text).unwrap();
    let ports: Vec<u16> = (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
    let start = Instant::now();
    let out = run(&["run", job.to_str().unwrap(), "--hostfile", hosts.to_str().unwrap(), "--process", "0"]);
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    let err = stderr(&out);
    assert!(err.contains(&format!("process 1 at 127.0.0.1:{} (it never connected)", ports[1])), "{err}");
    assert!(!tmp.path().join("out/.qcam.lock").exists(), "the lock is released");
}

fn qcam_processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker) && String::from_utf8_lossy(c).contains("qcam-fake"))
        .count()
}

#[test]
fn sigterm_to_spawn_stops_its_children_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 200);
    let job = job(tmp.path(), "job.toml", default_spec(tmp.path(), &models));
    let out = tmp.path().join("spawned-out");
    let mut spawn = qcam()
        .args(["spawn", "-n", "2", "--", "run", job.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = out.to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while qcam_processes_with(&marker) < 3 {
        assert!(Instant::now() < deadline, "the children never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hostfile = format!("qcam-hosts-{}-", spawn.id());
    let hostfiles = || std::fs::read_dir(std::env::temp_dir()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&hostfile)).count();
    assert_eq!(hostfiles(), 1);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(spawn.id() as libc::pid_t, libc::SIGTERM) };
    let status = spawn.wait().unwrap();
    assert!(!status.success());
    assert_eq!(qcam_processes_with(&marker), 0, "children left running");
    assert_eq!(hostfiles(), 0, "the hostfile is left behind");
}

/// A run that fails on a mount, then `--resume` once the mount is fixed, in a mount namespace of its
/// own (the tmpfs goes with the shell). `setup` runs after a tmpfs is mounted on the output folder,
/// `fix` before the resume; `first` is the failing run's extra flags. Checks that the first run
/// failed naming the folder with `cause` and no panic, and that the resumed folder equals a clean
/// run. Skips, saying why, where no mount namespace can be made.
fn fails_on_a_mount_then_resumes(tmpfs_size: &str, setup: &str, first: &str, fix: &str, cause: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let job = job(tmp.path(), "job.toml", default_spec(tmp.path(), &models));
    let reference = tmp.path().join("reference");
    ok(&["run", job.to_str().unwrap(), "--out", reference.to_str().unwrap()]);
    let (out, kept) = (tmp.path().join("mounted"), tmp.path().join("kept"));
    std::fs::create_dir_all(&out).unwrap();
    let (exe, out_s, job_s, tmp_s) = (env!("CARGO_BIN_EXE_qcam-fake"), out.display(), job.display(), tmp.path().display());
    let sub = |cmd: &str| cmd.replace("{exe}", exe).replace("{out}", &out_s.to_string()).replace("{job}", &job_s.to_string());
    let script = format!(
        "set -u; mount -t tmpfs -o size={tmpfs_size} tmpfs {out_s}; {}; \
         {exe} run {job_s} --out {out_s} {first} >/dev/null 2>{tmp_s}/first.err; echo $? > {tmp_s}/first.rc; \
         {}; \
         {exe} run {job_s} --out {out_s} --resume >/dev/null 2>{tmp_s}/second.err; echo $? > {tmp_s}/second.rc; \
         cp -r {out_s} {}",
        sub(setup),
        sub(fix),
        kept.display()
    );
    let status = Command::new("unshare").args(["-m", "sh", "-c", &script]).status();
    if !status.as_ref().is_ok_and(|s| s.success()) || !tmp.path().join("first.rc").exists() {
        eprintln!("skipped: cannot make a mount namespace with a tmpfs here ({status:?})");
        return;
    }
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap();
    assert_ne!(read("first.rc").trim(), "0", "the run succeeded despite `{cause}`");
    let err = read("first.err");
    assert!(err.contains(cause) && err.contains(&out.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(read("second.rc").trim(), "0", "{}", read("second.err"));
    assert_same_tables(&reference, &kept, &format!("after `{cause}` and a resume"));
}

#[test]
fn a_full_disk_stops_the_run_naming_the_file_and_resume_completes() {
    // 96 KiB fill up during the first shard; the disk then grows to 64 MiB.
    fails_on_a_mount_then_resumes("96k", "true", "", "mount -o remount,size=64m {out}", "No space left on device");
}

#[test]
fn a_read_only_output_stops_the_run_naming_the_folder_and_resume_completes() {
    // Half the run, then the folder turns read-only (as root, only a read-only mount stops
    // writes) for an --append; then writable again and --resume.
    fails_on_a_mount_then_resumes(
        "64m",
        "{exe} run {job} --out {out} --limit 50 >/dev/null 2>&1; mount -o remount,ro {out}",
        "--append",
        "mount -o remount,rw {out}",
        "Read-only file system",
    );
}

#[test]
fn a_corrupt_part_is_named_by_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let job = job(tmp.path(), "job.toml", JobSpec { limit: 30, ..default_spec(tmp.path(), &models) });
    let out = tmp.path().join("out");
    ok(&["run", job.to_str().unwrap()]);
    let part = out.join("pairs/part-val-00000.parquet");
    std::fs::write(&part, b"not parquet").unwrap();
    let failed = run(&["report", out.to_str().unwrap()]);
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(err.contains(&part.display().to_string()), "{err}");
}
