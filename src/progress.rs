//! Progress: a one-line bar on a terminal, plain log lines otherwise (CI logs, cluster pods).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::graph::Progress;

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

/// `total` is the whole dataset; with several processes this process reads about 1/processes.
pub fn spawn(progress: Arc<Progress>, total: usize, processes: usize) -> Reporter {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let tty = std::io::stderr().is_terminal();
    let expected = total.div_ceil(processes.max(1));
    let handle = std::thread::spawn(move || {
        let start = Instant::now();
        let period = if tty { Duration::from_millis(250) } else { Duration::from_secs(10) };
        let mut last = Instant::now();
        loop {
            let stopping = flag.load(Ordering::Relaxed);
            if stopping || last.elapsed() >= period {
                last = Instant::now();
                let done = progress.images_done();
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                let rate = done as f64 / secs;
                let eta = if rate > 0.0 {
                    format!("{:.0} s", expected.saturating_sub(done) as f64 / rate)
                } else {
                    "?".to_string()
                };
                let mut line = format!("images {done}/{expected}  {rate:.1} img/s  ETA {eta}");
                let perturbed = progress.perturbed.load(Ordering::Relaxed);
                if perturbed > 0 {
                    line.push_str(&format!("  deletion/insertion: {perturbed} done"));
                }
                let mut err = std::io::stderr().lock();
                if tty {
                    let width = 30;
                    let filled = (done * width / expected.max(1)).min(width);
                    let _ = write!(err, "\r[{}{}] {line}   ", "#".repeat(filled), ".".repeat(width - filled));
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
