//! `qcam run`: validate everything, then execute the graph on timely and record provenance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use sources::Dataset;
use crate::graph::{run_worker, Plan, Progress, WorkerReport};
use crate::job::Job;
use crate::ledger;
use crate::models::{Manifest, PairSpec};

/// Command-line overrides of the job file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub data: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub workers: Option<usize>,
    pub limit: Option<usize>,
    pub overwrite: bool,
    /// Continue the run in the output folder: finished shards are read back, not recomputed
    /// (`--resume` after a crash, `--append` after adding shards; the same mechanism).
    pub resume: bool,
    pub cluster: Option<ClusterOptions>,
}

/// One process of a multi-process run (timely's `-n/-p/-h`).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub process: usize,
    pub addresses: Vec<String>,
}

#[derive(Serialize)]
struct Versions {
    qcam: &'static str,
    libtorch: &'static str,
    tch: &'static str,
    timely: &'static str,
}

#[derive(Serialize)]
struct PairRecord<'a> {
    manifest_path: &'a Path,
    manifest: &'a Manifest,
    #[serde(flatten)]
    counts: PairCounts,
}

/// What became of one pair's images in this process: each image read is either a `pairs` row of
/// the pair (`rows_ok`) or an `errors` row of it (`rows_error`; an error with no model, from
/// reading, labels or decoding, counts against every pair), so `images_in = rows_ok + rows_error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PairCounts {
    pub images_in: usize,
    pub rows_ok: usize,
    pub rows_error: usize,
}

impl PairCounts {
    pub fn add_up(&self) -> bool {
        self.images_in == self.rows_ok + self.rows_error
    }
}

/// Counts the rows this process wrote, per pair, from its shards' part files: what is on disk, not
/// what the graph meant to write.
fn count_rows(out_dir: &Path, parts: &[String], pairs: &[PairSpec], images_in: usize) -> Result<Vec<PairCounts>> {
    use tables::{column, read_parts, Utf8Col};
    let mut counts = vec![PairCounts { images_in, ..PairCounts::default() }; pairs.len()];
    let slot = |model: &str| pairs.iter().position(|p| p.name() == model);
    for batch in read_parts(out_dir, "pairs", parts)? {
        let model = column::<Utf8Col>(&batch, "model");
        for i in 0..batch.num_rows() {
            let at = slot(model.value(i)).with_context(|| format!("a pairs row names unknown model `{}`", model.value(i)))?;
            counts[at].rows_ok += 1;
        }
    }
    for batch in read_parts(out_dir, "errors", parts)? {
        let model = column::<Utf8Col>(&batch, "model");
        for i in 0..batch.num_rows() {
            if arrow::array::Array::is_null(model, i) {
                counts.iter_mut().for_each(|c| c.rows_error += 1);
            } else {
                let at = slot(model.value(i)).with_context(|| format!("an errors row names unknown model `{}`", model.value(i)))?;
                counts[at].rows_error += 1;
            }
        }
    }
    Ok(counts)
}

#[derive(Serialize)]
struct RunRecord<'a> {
    schema_version: u32,
    job: &'a Job,
    versions: Versions,
    pairs: Vec<PairRecord<'a>>,
    data_layout: crate::job::Layout,
    images_listed: usize,
    shards: usize,
    processes: usize,
    process: usize,
    workers_per_process: usize,
    started_unix_s: u64,
    wall_s: f64,
    workers: Vec<WorkerReport>,
    /// Finished (shard, pair) units in the folder when this process ended.
    units_done: Vec<(String, String)>,
}

pub use tables::RUN_FILE;

/// Loads and checks the job, the data listing and every model before any work starts.
pub fn plan(job_path: &Path, opts: &RunOptions) -> Result<Plan> {
    let mut job = Job::load(job_path)?;
    if let Some(data) = &opts.data {
        job.data.path = data.clone();
    }
    if let Some(out) = &opts.out {
        job.output.dir = out.clone();
    }
    if let Some(limit) = opts.limit {
        job.data.limit = Some(limit);
    }
    if let Some(dir) = &opts.models_dir {
        job.models.dir = dir.clone();
    }
    if let Some(w) = opts.workers {
        if w == 0 {
            bail!("--workers must be at least 1");
        }
        job.run.workers = w;
    }
    job.output.overwrite |= opts.overwrite;

    let dataset = Dataset::open(&job.data).with_context(|| format!("{}: field `data.path`", job_path.display()))?;
    let mut pairs = Vec::new();
    for name in &job.models.pairs {
        let spec = PairSpec::read(&job.models.dir, name)
            .with_context(|| format!("{}: field `models.pairs`: pair `{name}`", job_path.display()))?;
        spec.verify()?;
        spec.check_contract()?;
        pairs.push(spec);
    }
    let out_dir = job.output.dir.clone();
    let fetch = sources::Fetcher::new()?;
    let settings = ledger::settings_digest(&job, &pairs);
    let finished = if opts.resume { ledger::finished(&out_dir, &dataset, &settings) } else { Default::default() };
    Ok(Plan { job, dataset, fetch, pairs, out_dir, finished, settings })
}

/// Refuses to mix a new run into an old one unless asked to replace it.
fn prepare_output(out_dir: &Path, overwrite: bool) -> Result<()> {
    if out_dir.exists() && std::fs::read_dir(out_dir)?.next().is_some() {
        if !overwrite {
            bail!("{}: output folder is not empty; pass --overwrite or set output.overwrite = true", out_dir.display());
        }
        std::fs::remove_dir_all(out_dir).with_context(|| format!("clearing {}", out_dir.display()))?;
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    Ok(())
}

pub fn run(job_path: &Path, opts: &RunOptions) -> Result<PathBuf> {
    let plan = plan(job_path, opts)?;
    if let Some(c) = &opts.cluster {
        if c.process >= c.addresses.len() {
            bail!("--process {} is out of range: the hostfile lists {} processes", c.process, c.addresses.len());
        }
    }
    let (process, processes) = match &opts.cluster {
        Some(c) => (c.process, c.addresses.len()),
        None => (0, 1),
    };
    if opts.resume {
        if !plan.out_dir.is_dir() {
            bail!("{}: nothing to resume or append to: the output folder does not exist", plan.out_dir.display());
        }
        eprintln!("qcam: {} of {} shards already finished in {}", plan.finished.len(), plan.dataset.shards.len(), plan.out_dir.display());
    } else if process == 0 {
        prepare_output(&plan.out_dir, plan.job.output.overwrite)?;
    }
    let workers = plan.job.run.workers;
    let communication = match &opts.cluster {
        None if workers == 1 => timely::CommunicationConfig::Thread,
        None => timely::CommunicationConfig::Process(workers),
        Some(c) => timely::CommunicationConfig::Cluster {
            threads: workers,
            process: c.process,
            addresses: c.addresses.clone(),
            report: false,
            zerocopy: false,
        },
    };
    let config = timely::Config { communication, worker: timely::WorkerConfig::default() };

    // Processes sharing this machine share its cores: count the hostfile's entries on our host.
    let local_processes = match &opts.cluster {
        Some(c) => {
            let host = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
            let mine = host(&c.addresses[c.process]);
            c.addresses.iter().filter(|a| host(a) == mine).count()
        }
        None => 1,
    };
    let workers_on_host = workers * local_processes;
    let started_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let start = Instant::now();
    let total = plan.dataset.len();
    eprintln!(
        "qcam: {} images in {} shards, {} pair(s), {} worker(s) × {} process(es) → {}",
        total,
        plan.dataset.shards.len(),
        plan.pairs.len(),
        workers,
        processes,
        plan.out_dir.display()
    );
    let plan = Arc::new(plan);
    let progress = Arc::new(Progress::default());
    progress.pairs.store(plan.pairs.len(), std::sync::atomic::Ordering::Relaxed);
    let reporter = crate::progress::spawn(progress.clone(), total, processes);
    let shared = plan.clone();
    let guards = timely::execute(config, move |worker| run_worker(worker, &shared, workers_on_host, &progress))
        .map_err(|e| anyhow::anyhow!("starting timely: {e}"))?;
    let mut reports = Vec::new();
    for result in guards.join() {
        match result {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(e)) => bail!("worker failed: {e}"),
            Err(e) => bail!("worker panicked: {e}"),
        }
    }
    reporter.finish();
    let wall_s = start.elapsed().as_secs_f64();

    // The shards this process computed: graph::run_worker gives worker w of `peers` the shards with
    // index % peers == w, and this process runs workers process·workers .. (process+1)·workers;
    // shards finished by an earlier run were read back, not computed.
    let peers = workers * processes;
    let parts: Vec<String> = plan
        .dataset
        .shards
        .iter()
        .filter(|s| (s.index % peers) / workers == process && !plan.finished.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let images_in: usize = reports.iter().map(|w| w.images_in).sum();
    let counts = count_rows(&plan.out_dir, &parts, &plan.pairs, images_in)?;

    let record = RunRecord {
        schema_version: crate::SCHEMA_VERSION,
        job: &plan.job,
        versions: Versions {
            qcam: env!("CARGO_PKG_VERSION"),
            libtorch: env!("QCAM_LIBTORCH_VERSION"),
            tch: "0.26",
            timely: "0.32",
        },
        pairs: plan
            .pairs
            .iter()
            .zip(&counts)
            .map(|(p, &counts)| PairRecord { manifest_path: &p.manifest_path, manifest: &p.manifest, counts })
            .collect(),
        data_layout: plan.dataset.layout,
        images_listed: total,
        shards: plan.dataset.shards.len(),
        processes,
        process,
        workers_per_process: workers,
        started_unix_s,
        wall_s,
        workers: reports,
        units_done: ledger::units(&plan.out_dir),
    };
    let name = if processes == 1 { RUN_FILE.to_string() } else { format!("run.process-{process}.json") };
    let path = plan.out_dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&record)?).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("qcam: process {process}: {images_in} images in {wall_s:.1} s ({:.2} images/s)", images_in as f64 / wall_s);
    for (pair, c) in plan.pairs.iter().zip(&counts) {
        eprintln!("qcam:   {}: {} rows, {} errors", pair.name(), c.rows_ok, c.rows_error);
    }
    // Every image read must be accounted for, once, in every pair; anything else is a bug that
    // lost or duplicated rows, and the run says so instead of reporting on partial tables.
    if let Some((pair, c)) = plan.pairs.iter().zip(&counts).find(|(_, c)| !c.add_up()) {
        bail!(
            "{}: pair `{}`: {} images in, but {} rows + {} errors: rows were lost or duplicated",
            path.display(),
            pair.name(),
            c.images_in,
            c.rows_ok,
            c.rows_error
        );
    }
    Ok(plan.out_dir.clone())
}

/// The tables a run writes, in the order their digests are listed.
pub const TABLES: [&str; 6] = ["images", "pairs", "errors", "subset", "aggregates", "perturbation"];

/// sha256 of every table's canonical rows (timing columns aside): equal for equal results.
pub fn output_digest(out_dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for table in TABLES {
        h.update(table.as_bytes());
        for row in tables::canonical_rows(out_dir, table)? {
            h.update(row.as_bytes());
            h.update(b"\n");
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Resident memory and open file descriptors of this process (Linux `/proc`; zeros elsewhere).
fn process_usage() -> (u64, usize) {
    let rss_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    (rss_kb, fds)
}

#[derive(Serialize)]
struct SoakRun {
    rss_kb: u64,
    open_files: usize,
    wall_s: f64,
    digest: String,
}

/// How much resident memory may grow over the second half of a soak before it counts as a leak: 3%
/// of the level there. Measured on 2 cores: the level steps once (428 → 520 MB between runs 3 and 4
/// with huge pages on) and then varies by under 1%; a leak of 2 MB a run over ten runs is 4%.
pub const SOAK_RSS_GROWTH: f64 = 0.03;

/// Judges a soak's RSS series (kB, one entry per run). The first half is warm-up: allocator arenas,
/// libtorch's caches and huge pages may raise the level there once, which is a plateau, not a leak.
/// Over the second half the least-squares slope, times the runs it spans, must stay within
/// [`SOAK_RSS_GROWTH`] of the level: memory that grows with every run fails however it started.
pub fn soak_rss_verdict(rss_kb: &[u64]) -> Result<(), String> {
    let n = rss_kb.len();
    if n < 4 {
        return Ok(()); // too few runs to tell warm-up from growth
    }
    let tail: Vec<f64> = rss_kb[n / 2..].iter().map(|&v| v as f64).collect();
    let m = tail.len() as f64;
    let mean_x = (m - 1.0) / 2.0;
    let mean_y = tail.iter().sum::<f64>() / m;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in tail.iter().enumerate() {
        sxy += (i as f64 - mean_x) * (y - mean_y);
        sxx += (i as f64 - mean_x).powi(2);
    }
    let growth = sxy / sxx * (m - 1.0);
    if growth > SOAK_RSS_GROWTH * mean_y {
        return Err(format!(
            "RSS grows by {:.0} kB over runs {}..{} (least-squares fit; {:.1}% of {:.0} kB, limit {:.0}%): {:?}",
            growth,
            n / 2 + 1,
            n,
            100.0 * growth / mean_y,
            mean_y,
            100.0 * SOAK_RSS_GROWTH,
            rss_kb
        ));
    }
    Ok(())
}

/// `qcam run --repeat N`: the job N times in one process, into the same folder. Fails if any run's
/// tables differ from the first's, if open files grow after the first run, or if resident memory
/// grows over the second half of the runs ([`soak_rss_verdict`]). Writes `soak.json` with the
/// figures.
pub fn soak(job_path: &Path, opts: &RunOptions, repeat: usize) -> Result<PathBuf> {
    let mut runs: Vec<SoakRun> = Vec::new();
    let mut out_dir = PathBuf::new();
    for i in 0..repeat {
        let start = Instant::now();
        out_dir = run(job_path, &RunOptions { overwrite: true, ..opts.clone() })?;
        let digest = output_digest(&out_dir)?;
        let (rss_kb, open_files) = process_usage();
        eprintln!("qcam soak: run {}/{repeat}: RSS {:.0} MB, {open_files} open files, tables {}", i + 1, rss_kb as f64 / 1024.0, &digest[..16]);
        runs.push(SoakRun { rss_kb, open_files, wall_s: start.elapsed().as_secs_f64(), digest });
    }
    let record = serde_json::json!({ "repeat": repeat, "runs": runs });
    std::fs::write(out_dir.join("soak.json"), serde_json::to_vec_pretty(&record)?)?;
    if let Some((i, r)) = runs.iter().enumerate().find(|(_, r)| r.digest != runs[0].digest) {
        bail!("soak: run {} wrote different tables from run 1 ({} vs {})", i + 1, r.digest, runs[0].digest);
    }
    if let (Some(warm), Some(last)) = (runs.get(1), runs.last()) {
        if last.open_files > warm.open_files {
            bail!("soak: open files grew from {} (run 2) to {} (run {repeat})", warm.open_files, last.open_files);
        }
    }
    let rss: Vec<u64> = runs.iter().map(|r| r.rss_kb).collect();
    soak_rss_verdict(&rss).map_err(|e| anyhow::anyhow!("soak: {e}"))?;
    Ok(out_dir)
}

#[cfg(test)]
mod tests {
    use super::soak_rss_verdict;

    /// MB → kB.
    fn kb(mb: &[f64]) -> Vec<u64> {
        mb.iter().map(|v| (v * 1024.0) as u64).collect()
    }

    #[test]
    fn a_plateau_after_warm_up_passes() {
        // The series measured on main at 5874096 (huge pages on): one step at run 4, then flat.
        let mut series = vec![412.0, 428.0, 428.0, 520.0, 520.0, 516.0];
        series.extend([520.0; 14]);
        assert_eq!(soak_rss_verdict(&kb(&series)), Ok(()));
        // Noise of a few MB either way, as with huge pages off (413–445 MB).
        let noisy = [413.0, 440.0, 431.0, 445.0, 420.0, 438.0, 425.0, 444.0, 418.0, 436.0];
        assert_eq!(soak_rss_verdict(&kb(&noisy)), Ok(()));
    }

    #[test]
    fn steady_growth_fails_however_small_the_start() {
        // 2 MB a run on a 500 MB process: 20 MB over the last ten runs, 4%.
        let leak: Vec<f64> = (0..20).map(|i| 500.0 + 2.0 * i as f64).collect();
        let err = soak_rss_verdict(&kb(&leak)).unwrap_err();
        assert!(err.contains("runs 11..20"), "{err}");
        // A leak that only starts after warm-up is caught as well.
        let late: Vec<f64> = (0..20).map(|i| if i < 10 { 500.0 } else { 500.0 + 3.0 * (i - 9) as f64 }).collect();
        assert!(soak_rss_verdict(&kb(&late)).is_err());
        // A second step inside the measured half is growth too.
        let mut stepped = vec![430.0; 14];
        stepped.extend([520.0; 6]);
        assert!(soak_rss_verdict(&kb(&stepped)).is_err());
    }
}
