//! `qcam run`: plan, take the folder, execute the graph on timely, commit, and record what ran.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use tables::RunDir;
use types::{PairCounts, PairRecord, RunRecord, Versions, WorkerReport, RUN_FILE};

use crate::drive::{run_worker, Notice, Shared};
use types::PerturbScope;
use crate::ledger::{self, Expected, Lock};
use crate::models::Backend;
use crate::plan::{plan, Plan, RunOptions};
use crate::progress::{self, Failure, Progress};

pub use crate::ledger::TABLES;

/// The message of a worker's panic, not `Any { .. }`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a worker panicked".into())
}

/// Counts every pair's rows over the whole folder (what is written, not what the graph meant).
fn count_rows(out: &RunDir, plan: &Plan) -> Result<Vec<PairCounts>> {
    use tables::{column, read_table, Utf8Col};
    let mut counts = vec![PairCounts { images_in: plan.dataset.len(), ..PairCounts::default() }; plan.pairs.len()];
    let slot = |model: &str| plan.pairs.iter().position(|p| p.name() == model);
    for batch in read_table(out, "pairs")? {
        let model = column::<Utf8Col>(&batch, "model");
        for i in 0..batch.num_rows() {
            let at = slot(model.value(i)).with_context(|| format!("a pairs row names unknown model `{}`", model.value(i)))?;
            counts[at].rows_ok += 1;
        }
    }
    let shards: BTreeSet<&str> = plan.dataset.shards.iter().map(|s| s.name.as_str()).collect();
    for batch in read_table(out, "errors")? {
        let (model, shard) = (column::<Utf8Col>(&batch, "model"), column::<Utf8Col>(&batch, "shard"));
        for i in 0..batch.num_rows() {
            // Deletion/insertion errors are about subset images already counted by phase 1.
            if !shards.contains(shard.value(i)) || column::<Utf8Col>(&batch, "stage").value(i) == "perturb" {
                continue;
            }
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

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Ends a run on the process that holds the folder: commit, count, record, check.
fn finish(plan: &Plan, notices: Vec<Notice>, backend: &dyn Backend, reused: usize, started_unix_s: u64, wall_s: f64) -> Result<()> {
    let out = &plan.out;
    let expected = Expected {
        shards: plan.dataset.shards.iter().map(|s| s.name.clone()).collect(),
        pairs: plan.pairs.iter().map(|p| p.name().to_string()).collect(),
        perturbation: plan.job.perturbation.scope != PerturbScope::None,
    };
    let digests: Vec<(String, String)> = plan.graph.pairs.iter().map(|p| (p.name.clone(), p.digest.clone())).collect();
    ledger::commit(out, &expected, &digests)?;
    let counts = count_rows(out, plan)?;
    let mut workers: Vec<WorkerReport> = notices
        .into_iter()
        .filter_map(|n| match n {
            Notice::Report(r) => Some(r),
            Notice::Written(_) => None,
        })
        .collect();
    workers.sort_by_key(|w| w.worker);
    let record = RunRecord {
        schema_version: crate::SCHEMA_VERSION,
        job: plan.job.clone(),
        versions: Versions { qcam: env!("CARGO_PKG_VERSION").into(), runtime: backend.runtime(), timely: "0.32".into() },
        pairs: plan
            .pairs
            .iter()
            .zip(&counts)
            .map(|(p, &counts)| PairRecord { manifest_path: p.manifest_path.clone(), manifest: p.manifest.clone(), counts })
            .collect(),
        data_layout: plan.dataset.layout,
        images_listed: plan.dataset.len(),
        shards: plan.dataset.shards.len(),
        shards_reused: reused,
        processes: plan.placement.processes,
        workers_per_process: plan.placement.workers,
        started_unix_s,
        wall_s,
        workers,
    };
    let path = out.at(RUN_FILE);
    out.write(RUN_FILE, serde_json::to_vec_pretty(&record)?)?;
    for (pair, c) in plan.pairs.iter().zip(&counts) {
        eprintln!("qcam:   {}: {} rows, {} errors", pair.name(), c.rows_ok, c.rows_error);
    }
    // Every listed image must be accounted for, once, in every pair; anything else is a bug that
    // lost or duplicated rows, and the run says so instead of reporting on partial tables.
    if let Some((pair, c)) = plan.pairs.iter().zip(&counts).find(|(_, c)| !c.add_up()) {
        bail!(
            "{}: pair `{}`: {} images listed, but {} rows + {} errors: rows were lost or duplicated",
            path.display(),
            pair.name(),
            c.images_in,
            c.rows_ok,
            c.rows_error
        );
    }
    Ok(())
}

/// Runs a job. Returns the output folder (on the process that holds it; the others return it too,
/// though it may hold nothing of theirs).
pub fn run(job_path: &Path, opts: &RunOptions, backend: Arc<dyn Backend>) -> Result<RunDir> {
    let plan = plan(job_path, opts, backend.as_ref())?;
    let holds = plan.placement.holds_folder();
    let mut lock = None;
    let mut finished = BTreeSet::new();
    if holds {
        ledger::check_apart(&plan.job.output.dir, &plan.job.data.path)?;
        lock = Some(Lock::acquire(&plan.out, job_path)?);
        ledger::prepare(&plan.out, plan.resume, plan.job.output.overwrite)?;
        if plan.resume {
            finished = ledger::finished(&plan.out, &plan.dataset, &plan.settings)?;
            eprintln!("qcam: {} of {} shards already finished in {}", finished.len(), plan.dataset.shards.len(), plan.out);
        }
    }
    let placement = plan.placement;
    let communication = match &opts.cluster {
        None if placement.workers == 1 => timely::CommunicationConfig::Thread,
        None => timely::CommunicationConfig::Process(placement.workers),
        Some(c) => timely::CommunicationConfig::Cluster {
            threads: placement.workers,
            process: c.process,
            addresses: c.addresses.clone(),
            report: false,
            zerocopy: false,
        },
    };
    let config = timely::Config { communication, worker: timely::WorkerConfig::default() };
    let started_unix_s = now_unix_s();
    let start = Instant::now();
    eprintln!(
        "qcam: {} images in {} shards, {} pair(s), {} worker(s) × {} process(es) → {}",
        plan.dataset.len(),
        plan.dataset.shards.len(),
        plan.pairs.len(),
        placement.workers,
        placement.processes,
        plan.out
    );
    let progress = Arc::new(Progress::default());
    progress.pairs.store(plan.pairs.len(), std::sync::atomic::Ordering::Relaxed);
    let images_here: usize = (0..placement.peers())
        .filter(|&w| placement.is_local(w))
        .flat_map(|w| plan.shards_of(w).map(|s| s.count()).collect::<Vec<_>>())
        .sum();
    progress.images_total.store(images_here, std::sync::atomic::Ordering::Relaxed);
    let reused = finished.len();
    let pairs = plan.pairs.len();
    let shared = Arc::new(Shared {
        perturb_pool: Arc::new(operators::pool::JobPool::new(pairs)),
        reread: Default::default(),
        plan,
        backend: backend.clone(),
        progress: progress.clone(),
        failure: Failure::default(),
        finished,
        notices: Arc::new(Mutex::new(Vec::new())),
    });
    let reporter = progress::spawn(progress);
    let timeout = std::time::Duration::from_secs(shared.plan.job.run.peer_timeout_s);
    let guards = crate::peers::execute(config, opts.cluster.as_ref(), timeout, {
        let shared = shared.clone();
        move |worker| {
            // A panic becomes this worker's error with its message, and stops the other workers.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_worker(worker, &shared)))
                .unwrap_or_else(|payload| Err(format!("worker {} panicked: {}", worker.index(), panic_message(payload.as_ref()))));
            if let Err(e) = &result {
                shared.failure.set(e.clone());
            }
            result
        }
    })?;
    let mut failed = None;
    for result in guards.join() {
        let message = match result {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e,
            Err(e) => format!("worker panicked: {e}"),
        };
        failed.get_or_insert(message);
    }
    reporter.finish();
    if let Some(e) = failed.or_else(|| shared.failure.get()) {
        bail!("the run stopped: {e}\nqcam: nothing was committed; fix the cause and rerun with --resume to continue");
    }
    let wall_s = start.elapsed().as_secs_f64();
    let plan = &shared.plan;
    let mine: usize = (0..placement.peers()).filter(|&w| placement.is_local(w)).count();
    eprintln!("qcam: process {}: {mine} worker(s) done in {wall_s:.1} s", placement.process);
    if holds {
        let notices = std::mem::take(&mut *shared.notices.lock().unwrap_or_else(|e| e.into_inner()));
        finish(plan, notices, backend.as_ref(), reused, started_unix_s, wall_s)?;
    }
    drop(lock);
    Ok(plan.out.clone())
}

/// sha256 of every table's canonical rows (timing columns aside): equal for equal results.
pub fn output_digest(out: &RunDir) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for table in TABLES {
        h.update(table.as_bytes());
        for row in tables::canonical_rows(out, table)? {
            h.update(row.as_bytes());
            h.update(b"\n");
        }
    }
    Ok(hex::encode(h.finalize()))
}
