//! One run at a time: `.qcam.lock` in the run folder names the run that holds it.
//!
//! The lock is created only if absent (locally `O_EXCL`; in an object store a conditional put,
//! S3's `If-None-Match: *` or GCS's generation match), refreshed every [`LOCK_HEARTBEAT_S`]
//! seconds (a new modification time; in a store, the object written again), and removed on drop.
//! A lock whose process is gone (same host) or that nobody refreshed for [`LOCK_STALE_S`] seconds
//! (any host, so also a container restarted under its old name and pid; in a store by the store's
//! clock against ours) is stale and taken over, with a note. On a store without conditional puts
//! the lock is checked, then written: two runs that start within one round trip of each other
//! could both take it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tables::RunDir;

use super::{LedgerError, LOCK_FILE};

/// Who holds a run folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub started_unix_s: u64,
    pub job: PathBuf,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}, job {}, started at unix time {}", self.pid, self.host, self.job.display(), self.started_unix_s)
    }
}

/// A lock not refreshed for this long belongs to a run that died on another machine.
const LOCK_STALE_S: u64 = 60;
const LOCK_HEARTBEAT_S: u64 = 10;

pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "unknown".into() }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The folder's lock, held for the run's life (see the module's comment).
pub struct Lock {
    dir: RunDir,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    pub fn acquire(dir: &RunDir, job: &Path) -> Result<Lock, LedgerError> {
        if let Some(path) = dir.local_path() {
            std::fs::create_dir_all(path).map_err(|source| tables::TableError::Io { path: path.into(), source })?;
        }
        let me = Holder { host: hostname(), pid: std::process::id(), started_unix_s: now_unix_s(), job: job.to_path_buf() };
        let bytes = serde_json::to_vec_pretty(&me).expect("a holder serializes");
        for _ in 0..2 {
            if dir.create_new(LOCK_FILE, bytes.clone())? {
                return Ok(Lock::holding(dir.clone(), bytes));
            }
            let other: Option<Holder> = dir.read(LOCK_FILE).ok().flatten().and_then(|t| serde_json::from_slice(&t).ok());
            let age = dir.age(LOCK_FILE)?.map_or(0, |d| d.as_secs());
            // Not refreshed for a minute is stale wherever the holder ran: a container restarted
            // under the same host name gets the same pid (1) as the run that died in it.
            let stale = age > LOCK_STALE_S || other.as_ref().is_some_and(|h| h.host == me.host && !pid_alive(h.pid));
            if !stale {
                let who = other.map_or_else(|| "a run whose lock does not parse".to_string(), |h| h.to_string());
                return Err(LedgerError::Refused {
                    path: dir.path(),
                    message: format!(
                        "the folder is in use by another qcam run ({who}); wait for it, or remove {} if that run is gone",
                        dir.at(LOCK_FILE).display()
                    ),
                });
            }
            eprintln!("qcam: taking over the stale lock of {}", other.map_or_else(|| "an unknown run".into(), |h| h.to_string()));
            dir.remove(LOCK_FILE)?;
        }
        Err(LedgerError::Refused { path: dir.at(LOCK_FILE), message: "another run took the lock at the same moment".into() })
    }

    fn holding(dir: RunDir, bytes: Vec<u8>) -> Lock {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, held) = (stop.clone(), dir.clone());
        let heartbeat = std::thread::spawn(move || {
            let tick = std::time::Duration::from_millis(200);
            let mut since = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                if since.elapsed().as_secs() >= LOCK_HEARTBEAT_S {
                    since = std::time::Instant::now();
                    // A missed beat is retried at the next; the lock goes stale only after several.
                    let _ = held.touch(LOCK_FILE, &bytes);
                }
            }
        });
        Lock { dir, stop, heartbeat: Some(heartbeat) }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let _ = self.dir.remove(LOCK_FILE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::from(tmp.path());
        let lock = Lock::acquire(&dir, Path::new("jobs/a.toml")).unwrap();
        let err = Lock::acquire(&dir, Path::new("jobs/b.toml")).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("jobs/a.toml"), "{err}");
        drop(lock);
        assert!(Lock::acquire(&dir, Path::new("jobs/b.toml")).is_ok(), "released on drop");
        // A holder that no longer exists on this host is stale.
        let dead = Holder { host: hostname(), pid: u32::MAX / 2, started_unix_s: 0, job: "x".into() };
        std::fs::write(tmp.path().join(LOCK_FILE), serde_json::to_vec(&dead).unwrap()).unwrap();
        drop(Lock::acquire(&dir, Path::new("jobs/c.toml")).unwrap());
        // A live pid on this host whose lock nobody refreshed for minutes: a restarted container.
        let alive = Holder { pid: std::process::id(), ..dead };
        std::fs::write(tmp.path().join(LOCK_FILE), serde_json::to_vec(&alive).unwrap()).unwrap();
        let file = std::fs::File::options().append(true).open(tmp.path().join(LOCK_FILE)).unwrap();
        file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(LOCK_STALE_S + 60)).unwrap();
        let err = Lock::acquire(&dir, Path::new("jobs/d.toml")).err();
        assert!(err.is_none(), "a lock not refreshed for minutes was not taken over: {err:?}");
    }
}
