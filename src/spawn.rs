//! `qcam spawn -n N -- run JOB ...`: a timely cluster of N processes on loopback, for one machine
//! or for tests. Each process gets `--process i --hostfile FILE`; if one fails, the rest are
//! stopped, so a broken run never hangs waiting for a peer.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Free loopback ports, found by binding port 0 and releasing it.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// Runs the processes and waits. Returns the run's output folder when the command was a `run`
/// whose `--out` could be read from the arguments, so the caller can report on it.
pub fn spawn_local(processes: usize, command: &[String]) -> Result<Option<PathBuf>> {
    if processes == 0 {
        bail!("-n must be at least 1");
    }
    let exe = std::env::current_exe().context("locating the qcam binary")?;
    let hostfile = tempfile_path("qcam-hosts")?;
    let hosts: Vec<String> = free_ports(processes)?.into_iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::write(&hostfile, hosts.join("\n") + "\n")?;

    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..processes {
        let child = Command::new(&exe)
            .args(command)
            .arg("--process")
            .arg(i.to_string())
            .arg("--hostfile")
            .arg(&hostfile)
            .spawn()
            .with_context(|| format!("starting process {i}"))?;
        children.push((i, child));
    }
    let mut failed = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait()? {
                Some(status) => {
                    let (index, _) = children.remove(i);
                    if !status.success() && failed.is_none() {
                        failed = Some((index, status));
                    }
                }
                None => i += 1,
            }
        }
        if failed.is_some() {
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
            }
            for (_, child) in children.iter_mut() {
                let _ = child.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&hostfile);
    if let Some((index, status)) = failed {
        bail!("process {index} of {processes} failed ({status}); the others were stopped");
    }
    Ok(out_dir_of(command))
}

fn tempfile_path(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir();
    let name = format!("{prefix}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
    Ok(dir.join(name))
}

/// The output folder of a `run` command line: `--out` if given, else the job file's `output.dir`.
fn out_dir_of(command: &[String]) -> Option<PathBuf> {
    if command.first().map(String::as_str) != Some("run") {
        return None;
    }
    if let Some(pos) = command.iter().position(|a| a == "--out") {
        return command.get(pos + 1).map(PathBuf::from);
    }
    let job = command.iter().skip(1).find(|a| !a.starts_with('-'))?;
    crate::job::Job::load(std::path::Path::new(job)).ok().map(|j| j.output.dir)
}
