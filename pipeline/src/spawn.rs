//! `qcam spawn -n N -- run JOB ...`: a timely cluster of N processes on loopback, for one machine
//! or for tests. Each process gets `--process i --hostfile FILE`. If one fails, the rest are
//! stopped, so a broken run never hangs waiting for a peer; a SIGTERM or SIGINT to `spawn` is
//! passed on to every child, waited for, and the hostfile removed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The signal `spawn` received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    RECEIVED.store(signal, Ordering::SeqCst);
}

fn catch_termination() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores into an atomic.
        unsafe { libc::signal(signal, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// Free loopback ports, found by binding port 0 and releasing it.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// Removes the hostfile however `spawn` ends.
struct Hostfile(PathBuf);

impl Drop for Hostfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `signal` to the children still running, waits up to `grace` for them, then kills the rest.
fn stop_all(children: &mut [(usize, Child)], signal: libc::c_int, grace: Duration) {
    for (_, child) in children.iter() {
        // SAFETY: plain kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }
    let deadline = Instant::now() + grace;
    for (_, child) in children.iter_mut() {
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs the processes and waits for all of them.
pub fn spawn_local(processes: usize, command: &[String]) -> Result<()> {
    if processes == 0 {
        bail!("-n must be at least 1");
    }
    catch_termination();
    let exe = std::env::current_exe().context("locating the qcam binary")?;
    let hostfile = Hostfile(std::env::temp_dir().join(format!(
        "qcam-hosts-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos()
    )));
    let hosts: Vec<String> = free_ports(processes)?.into_iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::write(&hostfile.0, hosts.join("\n") + "\n")?;

    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..processes {
        let child = Command::new(&exe)
            .args(command)
            .arg("--process")
            .arg(i.to_string())
            .arg("--hostfile")
            .arg(&hostfile.0)
            .spawn();
        match child {
            Ok(c) => children.push((i, c)),
            Err(e) => {
                stop_all(&mut children, libc::SIGTERM, Duration::from_secs(10));
                return Err(e).with_context(|| format!("starting process {i}"));
            }
        }
    }
    let mut failed = None;
    while !children.is_empty() {
        let signal = RECEIVED.load(Ordering::SeqCst);
        if signal != 0 {
            stop_all(&mut children, signal, Duration::from_secs(30));
            bail!("stopped by signal {signal}: passed on to the {processes} processes, which have ended");
        }
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
            stop_all(&mut children, libc::SIGTERM, Duration::from_secs(10));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((index, status)) = failed {
        bail!("process {index} of {processes} failed ({status}); the others were stopped");
    }
    Ok(())
}
