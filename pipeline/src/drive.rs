//! One worker's run: agree on what an earlier run finished, load the models, build the graph, feed
//! it this worker's shards with backpressure, and step until everything is written. Everything the
//! graph does with the world (part files, staging, re-reading images) is wired here.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use operators::perturb::{PerturbJob, StageTime};
use operators::pool::JobPool;
use operators::subset::Scored;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::{Concat, Exchange as _, Inspect, Probe};
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;
use types::{ErrorRow, ImageRow, PairRow, Sample, Stage, Variant, WorkerReport};

use crate::graph::{self, Loader, PairResources, Resources};
use crate::ledger;
use crate::models::Backend;
use crate::plan::Plan;
use crate::progress::{Failure, Progress};
use crate::reread::Reread;
use crate::sinks::{Parts, RecordShards, Written};

/// What the workers of a process share.
pub struct Shared {
    pub plan: Plan,
    pub backend: Arc<dyn Backend>,
    pub progress: Arc<Progress>,
    pub failure: Failure,
    /// Shards an earlier run finished, as the folder says; known to the process holding it, and
    /// told to every worker by worker 0.
    pub finished: BTreeSet<String>,
    /// What worker 0 gathers from every worker of the run: each part written, each report.
    pub notices: Arc<Mutex<Vec<Notice>>>,
    /// The deletion/insertion jobs of this process's workers, by pair.
    pub perturb_pool: Arc<JobPool<PerturbJob>>,
    /// The images those jobs re-read, one shard at a time.
    pub reread: Reread,
}

/// What reaches worker 0 at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    Written(Written),
    Report(WorkerReport),
}

/// Worker 0 tells every worker which shards are finished: only the process holding the folder
/// can read it.
fn agree_on_finished(worker: &mut Worker, mine: &BTreeSet<String>) -> BTreeSet<String> {
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<String>>>::new();
    let probe = ProbeHandle::new();
    let got = Rc::new(RefCell::new(BTreeSet::new()));
    let sink = got.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        input.to_stream(scope).broadcast().inspect(move |s: &String| {
            sink.borrow_mut().insert(s.clone());
        })
        .probe_with(&probe);
    });
    if worker.index() == 0 {
        mine.iter().for_each(|s| input.send(s.clone()));
    }
    input.close();
    while !probe.done() {
        worker.step_or_park(Some(PARK));
    }
    got.take()
}

/// Re-reads and decodes a deletion/insertion job's image, through the process's [`Reread`]: the
/// shard is read for every image its queued jobs want. A failure names the job's method, since
/// each of an image's methods is a job of its own.
fn loader(shared: Arc<Shared>, pre: types::Preprocess) -> Loader {
    Box::new(move |job: &PerturbJob| {
        let plan = &shared.plan;
        let fail = |message: String| {
            let message = format!("{}: {message}", job.method.as_str());
            ErrorRow::new(&job.scored.image_id, &job.shard, Stage::Perturb, message).for_model(&job.model)
        };
        let shard = plan.dataset.shards.iter().find(|s| s.name == job.shard).ok_or_else(|| fail("shard is no longer listed".into()))?;
        let wanted = || {
            let mut ids = HashSet::new();
            shared.perturb_pool.for_each_queued(|j| {
                if j.shard == job.shard {
                    ids.insert(j.scored.image_id.clone());
                }
            });
            ids
        };
        let sample = shared
            .reread
            .sample(shard, &job.scored.image_id, wanted, &plan.fetch)
            .map_err(|e| fail(format!("image no longer readable from its shard: {e}")))?;
        operators::decode::decode_sample(&sample, &pre, plan.graph.max_pixels).map(Rc::new).map_err(|e| fail(format!("decode: {e}")))
    })
}

/// A finished shard's records, read back from its `images` and `pairs` parts.
fn read_scored(out: &tables::RunDir, shard: &str, pairs: &[String]) -> Result<Vec<(String, Scored)>, String> {
    let missing = || format!("shard {shard}: a part recorded as written is missing");
    let images: Vec<ImageRow> = tables::read_part(out, shard).map_err(|e| e.to_string())?.ok_or_else(missing)?;
    let pair_rows: Vec<PairRow> = tables::read_part(out, shard).map_err(|e| e.to_string())?.ok_or_else(missing)?;
    let by_key: HashMap<(&str, &str, Variant), &ImageRow> =
        images.iter().map(|r| ((r.image_id.as_str(), r.model.as_str(), r.variant), r)).collect();
    Ok(pair_rows
        .iter()
        .filter(|p| pairs.contains(&p.model))
        .filter_map(|p| {
            let f = by_key.get(&(p.image_id.as_str(), p.model.as_str(), Variant::Float))?;
            let q = by_key.get(&(p.image_id.as_str(), p.model.as_str(), Variant::Quantized))?;
            Some((p.model.clone(), Scored::of(p, [f, q])?))
        })
        .collect())
}

/// The side effects the graph uses on this worker.
fn resources(shared: &Arc<Shared>, me: usize, finished: &BTreeSet<String>, perturb_time: Rc<StageTime>) -> Result<Resources, String> {
    let plan = &shared.plan;
    let placement = plan.placement;
    let clock = plan.graph.clock;
    let end = clock.end();
    let index_of: Rc<HashMap<String, usize>> = Rc::new(plan.dataset.shards.iter().map(|s| (s.name.clone(), s.index)).collect());
    let base = |mine: BTreeMap<String, u64>, writer: Rc<dyn Fn(&str) -> u64>, pending: bool| Parts {
        mine,
        writer,
        pending,
        out: plan.out.clone(),
        failure: shared.failure.clone(),
    };
    let shard_parts = base(
        plan.dataset
            .shards
            .iter()
            .filter(|s| placement.writes_shard(s.index) == me && !finished.contains(&s.name))
            .map(|s| (s.name.clone(), clock.time(s.index, s.count().div_ceil(plan.batch_size).max(1) - 1)))
            .collect(),
        Rc::new(move |part: &str| placement.writes_shard(index_of.get(part).copied().unwrap_or(0)) as u64),
        false,
    );
    let mut pairs = Vec::new();
    for (spec, pair) in plan.pairs.iter().zip(&plan.graph.pairs) {
        let models = Rc::new(spec.load(shared.backend.as_ref()).map_err(|e| e.to_string())?);
        let writer = pair.writer;
        let mine = |part: String| if writer == me { BTreeMap::from([(part, end)]) } else { BTreeMap::new() };
        let to_writer: Rc<dyn Fn(&str) -> u64> = Rc::new(move |_| writer as u64);
        let (out, name, digest, resume) = (plan.out.clone(), pair.name.clone(), pair.digest.clone(), plan.resume);
        let previous: Box<dyn FnOnce() -> HashMap<String, Vec<types::PerturbationRow>>> =
            Box::new(move || if resume { ledger::previous_perturbation(&out, &name, &digest) } else { HashMap::new() });
        let (out, name, digest, failure) = (plan.out.clone(), pair.name.clone(), pair.digest.clone(), shared.failure.clone());
        let stage = Box::new(move |rows: &[types::PerturbationRow]| {
            if let Err(e) = ledger::stage(&out, &name, &digest, rows) {
                failure.set(e.to_string());
            }
        });
        pairs.push(PairResources {
            models,
            load: loader(shared.clone(), pair.preprocess.clone()),
            previous: std::cell::Cell::new(Some(previous)),
            stage,
            parts: base(mine(pair.name.clone()), to_writer.clone(), true),
            error_parts: base(mine(format!("perturb-{}", pair.name)), to_writer, true),
        });
    }
    let progress = shared.progress.clone();
    let (dealt, perturbed) = (progress.clone(), progress.clone());
    Ok(Resources {
        pairs,
        shard_parts,
        shard_names: Rc::new(plan.dataset.shards.iter().map(|s| s.name.clone()).collect()),
        perturb_time,
        perturb_pool: shared.perturb_pool.clone(),
        worker: me,
        on_dealt: Rc::new(move |n| {
            dealt.perturb_total.fetch_add(n, Ordering::Relaxed);
        }),
        on_perturbed: Rc::new(move |n| {
            perturbed.perturb_done.fetch_add(n, Ordering::Relaxed);
        }),
        on_units: Rc::new(move |n| {
            progress.units_done.fetch_add(n, Ordering::Relaxed);
        }),
    })
}

/// How long an idle worker may sleep before it looks again at what no message announces (another
/// worker's failure). Messages and activations wake it at once.
const PARK: std::time::Duration = std::time::Duration::from_millis(10);

/// Steps the worker until `done`, or until any worker of the process failed. An idle worker parks
/// rather than spins: a spinning worker held a core that libtorch, the shard reader or another
/// process's worker wanted (15% of a phase-1 run's CPU samples were the scheduler's idle loop).
fn step_until(worker: &mut Worker, failure: &Failure, mut done: impl FnMut() -> bool) -> Result<(), String> {
    while !done() {
        if let Some(e) = failure.get() {
            return Err(e);
        }
        worker.step_or_park(Some(PARK));
    }
    failure.get().map_or(Ok(()), Err)
}

/// Builds and runs the dataflow on one worker until its shards, its share of deletion/insertion,
/// and (on worker 0) the gathering of every notice are done.
pub fn run_worker(worker: &mut Worker, shared: &Arc<Shared>) -> Result<WorkerReport, String> {
    let start = Instant::now();
    let me = worker.index();
    let plan = &shared.plan;
    shared.backend.set_threads(plan.graph.threads);
    let finished = agree_on_finished(worker, &shared.finished);
    let perturb_time = Rc::new(StageTime::default());
    let res = resources(shared, me, &finished, perturb_time.clone())?;

    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Result<Sample, ErrorRow>>>>::new();
    let mut reused = InputHandle::<u64, CapacityContainerBuilder<Vec<(String, Scored)>>>::new();
    let mut reports = InputHandle::<u64, CapacityContainerBuilder<Vec<Notice>>>::new();
    let (phase1, run_level) = (ProbeHandle::new(), ProbeHandle::new());
    let settings = plan.settings.clone();
    let pair_names: Vec<String> = plan.pairs.iter().map(|p| p.name().to_string()).collect();
    let shards: HashMap<String, sources::Shard> = plan.dataset.shards.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let (run_dir, failure, notices) = (plan.out.clone(), shared.failure.clone(), shared.notices.clone());

    worker.dataflow::<u64, _, _>(|scope| {
        let out = graph::build(&plan.graph, res, input.to_stream(scope), reused.to_stream(scope));
        let names = pair_names.clone();
        let shard_parts = out
            .shard_parts
            .record_shards(&ledger::SHARD_TABLES, move |shard, rows| {
                if let Err(e) = ledger::mark_done(&run_dir, &shards[shard], &settings, &names, rows) {
                    failure.set(e.to_string());
                }
            })
            .probe_with(&phase1);
        shard_parts
            .concat(out.run_parts.probe_with(&run_level))
            .map(Notice::Written)
            .concat(reports.to_stream(scope))
            .exchange(|_| 0)
            .inspect(move |n: &Notice| notices.lock().unwrap_or_else(|e| e.into_inner()).push(n.clone()));
    });

    // Feed: this worker's shards in order; worker 0 also reads back every finished shard.
    let mut report = WorkerReport { worker: me, torch_threads: plan.graph.threads, ..WorkerReport::default() };
    let mut sent: Vec<u64> = Vec::new();
    for shard in &plan.dataset.shards {
        let t = plan.graph.clock.time(shard.index, 0);
        let computes = plan.placement.computes(shard.index) == me;
        if finished.contains(&shard.name) {
            if me == 0 {
                input.advance_to(t);
                reused.advance_to(t);
                let records = read_scored(&plan.out, &shard.name, &pair_names).map_err(|e| format!("reading back {e}"))?;
                report.images_reused += shard.count();
                shared.progress.units_done.fetch_add(shard.count() * pair_names.len(), Ordering::Relaxed);
                reused.send_batch(&mut records.into_iter().collect());
            }
            continue;
        }
        if !computes {
            continue;
        }
        report.shards += 1;
        let mut reader = shard.open(&plan.fetch);
        if let Some(next) = plan.shards_of(me).find(|s| s.index > shard.index && !finished.contains(&s.name)) {
            plan.fetch.prefetch(next); // the next shard's bytes flow while this one is read
        }
        let n = shard.count();
        for (batch, from) in (0..n).step_by(plan.batch_size).enumerate() {
            let len = (n - from).min(plan.batch_size);
            let t = plan.graph.clock.time(shard.index, batch);
            input.advance_to(t);
            reused.advance_to(t);
            for item in reader.by_ref().take(len) {
                input.send(item);
            }
            report.images_in += len;
            sent.push(t);
            // Backpressure: wait while more than `max_in_flight` of this source's batches are unwritten.
            if let Some(&oldest) = sent.len().checked_sub(plan.max_in_flight + 1).map(|i| &sent[i]) {
                step_until(worker, &shared.failure, || !phase1.less_equal(&oldest))?;
            }
        }
    }
    input.close();
    reused.close();
    step_until(worker, &shared.failure, || phase1.done())?;
    report.phase1_s = start.elapsed().as_secs_f64();
    step_until(worker, &shared.failure, || run_level.done())?;
    report.perturb_s = perturb_time.busy_s.get();
    report.perturb_forward_s = perturb_time.forward_s.get();
    report.engine_wait_s = shared.backend.engine_wait_s();
    report.wall_s = start.elapsed().as_secs_f64();
    reports.send(Notice::Report(report.clone()));
    reports.close();
    while worker.step_or_park(Some(PARK)) {
        if let Some(e) = shared.failure.get() {
            return Err(e);
        }
    }
    Ok(report)
}
