//! Two hosts that share nothing but the job: each process runs in a Linux network namespace of its
//! own, with its own address on a veth pair between them, and its own scratch output folder. The
//! run gathers into process 0's folder: its tables equal a single-process run's row for row,
//! process 0 prints the report, and process 1's scratch folder holds nothing afterwards.
//!
//! Needs root (CI runs as root); where namespaces cannot be made the test says why and skips. It
//! uses only addresses inside the namespaces it makes (10.77.<n>.1 and .2) and removes them however
//! it ends.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Two namespaces joined by a veth pair, removed on drop.
struct Hosts {
    names: [String; 2],
    addresses: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Hosts {
    fn make() -> Result<Hosts, String> {
        // A subnet and names of our own, so that parallel runs of this test do not collide.
        let n = (std::process::id() % 250) as u8 + 1;
        let tag = format!("q{}", std::process::id() % 100_000);
        let hosts = Hosts {
            names: [format!("qcam-{tag}-0"), format!("qcam-{tag}-1")],
            addresses: [format!("10.77.{n}.1"), format!("10.77.{n}.2")],
        };
        let links = [format!("{tag}a"), format!("{tag}b")];
        ip(&["netns", "add", &hosts.names[0]])?;
        ip(&["netns", "add", &hosts.names[1]])?;
        ip(&["link", "add", &links[0], "netns", &hosts.names[0], "type", "veth", "peer", "name", &links[1], "netns", &hosts.names[1]])?;
        for i in 0..2 {
            let ns = &hosts.names[i];
            ip(&["-n", ns, "addr", "add", &format!("{}/24", hosts.addresses[i]), "dev", &links[i]])?;
            ip(&["-n", ns, "link", "set", &links[i], "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Children killed on drop, so a failing test leaves no process behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn hosts_without_a_shared_folder_gather_the_run_on_process_0() {
    let hosts = match Hosts::make() {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: cannot make network namespaces here ({why})");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let models = fake_models(tmp.path(), 0);
    let job = job(tmp.path(), "job.toml", default_spec(tmp.path(), &models));
    let text = std::fs::read_to_string(&job).unwrap().replace("[run]\n", "[run]\npeer_timeout_s = 60\n");
    std::fs::write(&job, text).unwrap();
    let reference = tmp.path().join("reference");
    ok(&["run", job.to_str().unwrap(), "--out", reference.to_str().unwrap()]);

    let hostfile = tmp.path().join("hosts.txt");
    std::fs::write(&hostfile, format!("{}:2101\n{}:2101\n", hosts.addresses[0], hosts.addresses[1])).unwrap();
    let scratch = [tmp.path().join("host-0"), tmp.path().join("host-1")];
    let mut procs = Procs(Vec::new());
    for (i, ns) in hosts.names.iter().enumerate() {
        std::fs::create_dir_all(&scratch[i]).unwrap();
        let out = scratch[i].join("out");
        // Output to files, not pipes: a report larger than a pipe would stall a child not read.
        let log = |what: &str| std::fs::File::create(tmp.path().join(format!("process-{i}.{what}"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_qcam-fake"), "run", job.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--hostfile", hostfile.to_str().unwrap(), "--process", &i.to_string()])
            .stdout(Stdio::from(log("stdout")))
            .stderr(Stdio::from(log("stderr")))
            .spawn()
            .unwrap();
        procs.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while procs.0.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        assert!(Instant::now() < deadline, "the two hosts did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |i: usize, what: &str| std::fs::read_to_string(tmp.path().join(format!("process-{i}.{what}"))).unwrap();
    for (i, child) in procs.0.iter_mut().enumerate() {
        assert!(child.wait().unwrap().success(), "process {i} failed:\n{}", read(i, "stderr"));
    }
    let printed = |i: usize| read(i, "stdout").matches("# qcam report").count();
    assert_eq!((printed(0), printed(1)), (1, 0), "process 0, and only it, prints the report");
    let gathered = scratch[0].join("out");
    assert_same_tables(&reference, &gathered, "gathered from two hosts");
    let record = run_record(&gathered);
    assert_eq!((record.processes, record.workers.len()), (2, 2));
    assert!(record.workers.iter().all(|w| w.images_in == 50), "each host computed its half: {:?}", record.workers);
    assert!(files(&gathered).iter().all(|f| !f.contains(".staging") && !f.ends_with(".pending")), "{:?}", files(&gathered));
    assert!(!gathered.join(".qcam.lock").exists());
    assert_eq!(files(&scratch[1]), Vec::<String>::new(), "process 1 left files in its scratch folder");
    assert!(!scratch[1].join("out").exists(), "process 1 made its output folder");
}
