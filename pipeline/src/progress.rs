//! What a process tells its user while it runs: progress counters the workers share, a reporter
//! thread that prints them (a one-line bar on a terminal, log lines otherwise), and the first
//! failure, which stops every worker.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters shared by the workers of a process.
#[derive(Default)]
pub struct Progress {
    /// Images this process will compute or read back.
    pub images_total: AtomicUsize,
    /// (image, pair) units finished: a pair row or an error row.
    pub units_done: AtomicUsize,
    pub pairs: AtomicUsize,
    /// (image, pair) units this process's workers were dealt for deletion/insertion, and finished.
    pub perturb_total: AtomicUsize,
    pub perturb_done: AtomicUsize,
}

impl Progress {
    pub fn images_done(&self) -> usize {
        self.units_done.load(Ordering::Relaxed) / self.pairs.load(Ordering::Relaxed).max(1)
    }

    /// The status line: the images of phase 1, then deletion/insertion with its own rate and ETA
    /// once this process has been dealt any.
    fn line(&self, elapsed: Duration, perturb_started: Option<Instant>) -> String {
        let done = self.images_done();
        let total = self.images_total.load(Ordering::Relaxed);
        let mut line = format!("images {done}/{total}  {}", rate_eta(done, total, elapsed));
        let (pd, pt) = (self.perturb_done.load(Ordering::Relaxed), self.perturb_total.load(Ordering::Relaxed));
        if pt > 0 {
            let since = perturb_started.map(|t| t.elapsed()).unwrap_or_default();
            line.push_str(&format!("  deletion/insertion {pd}/{pt}  {}", rate_eta(pd, pt, since)));
        }
        line
    }
}

fn rate_eta(done: usize, total: usize, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let eta = if done >= total {
        "done".to_string()
    } else if rate > 0.0 {
        format!("ETA {:.0} s", total.saturating_sub(done) as f64 / rate)
    } else {
        "ETA ?".to_string()
    };
    format!("{rate:.1}/s  {eta}")
}

/// The first failure of any worker of this process (a part that could not be written, a model
/// that could not be loaded). Workers check it between steps and stop.
#[derive(Clone, Default)]
pub struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// Records `message` unless an earlier failure is already recorded.
    pub fn set(&self, message: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the reporter thread for this process's counters.
pub fn spawn(progress: Arc<Progress>) -> Reporter {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let tty = std::io::stderr().is_terminal();
    let handle = std::thread::spawn(move || {
        let start = Instant::now();
        let period = if tty { Duration::from_millis(250) } else { Duration::from_secs(10) };
        let mut last = Instant::now();
        let mut perturb_started = None;
        loop {
            let stopping = flag.load(Ordering::Relaxed);
            if perturb_started.is_none() && progress.perturb_total.load(Ordering::Relaxed) > 0 {
                perturb_started = Some(Instant::now());
            }
            if stopping || last.elapsed() >= period {
                last = Instant::now();
                let line = progress.line(start.elapsed(), perturb_started);
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r{line}   ");
                    if stopping {
                        let _ = writeln!(err);
                    }
                } else if !stopping {
                    let _ = writeln!(err, "qcam: {line}");
                }
            }
            if stopping {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Reporter { stop, handle: Some(handle) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_insertion_has_its_own_total_rate_and_eta() {
        let p = Progress::default();
        p.pairs.store(2, Ordering::Relaxed);
        p.images_total.store(300, Ordering::Relaxed);
        p.units_done.store(600, Ordering::Relaxed);
        p.perturb_total.store(20, Ordering::Relaxed);
        p.perturb_done.store(5, Ordering::Relaxed);
        let started = Instant::now() - Duration::from_secs(10);
        let line = p.line(Duration::from_secs(60), Some(started));
        assert!(line.starts_with("images 300/300  5.0/s  done  deletion/insertion 5/20  0.5/s  ETA 30 s"), "{line}");
        let f = Failure::default();
        f.set("first".into());
        f.set("second".into());
        assert_eq!(f.get().as_deref(), Some("first"));
    }
}
