//! The whole pipeline as one function of its inputs: how a worker's share of the job becomes a
//! timely dataflow. Topology only; [`crate::drive`] feeds the inputs and steps the worker, and the
//! side effects (models, image re-reading, staging, part files) come in as [`Resources`].
//!
//! ```text
//! samples ─decode─▶ rgb ─preprocess(per setting)─▶ images ─┬─ pair A: infer ─ explain ─┬─▶ images, pairs, wsol
//!                                                           │                          └─▶ scored ─▶ select ─▶ decide ─▶ subset
//!                                                           │                                    └▶ aggregate ─▶ aggregates
//!                                                           │         decide ─jobs, dealt by rank─▶ perturb ─▶ perturbation
//!                                                           └─ pair B: …
//! every stage's failures ───────────────────────────────────────────────────────────────────────▶ errors
//! ```
//!
//! Worker w reads the shards [`crate::plan::Plan::shards_of`] gives it, in order, cut into batches
//! that never span a shard; batch `b` of shard `s` is time `s · stride + b` ([`crate::plan::Clock`]). A shard's
//! parts are written once the frontier passes its last batch, so the outputs do not depend on how
//! many workers or processes there are. Selection and the aggregates are differential collections
//! updated once per epoch (a fixed run of shards). Once the input is complete the subset is final:
//! its images are dealt out to all workers, one job per (image, pixel order), re-read and perturbed
//! (deletion/insertion); the workers of a process share their jobs, so they finish together.
//! Decode, preprocess and explain spread each batch over the worker's cores (`operators::par`).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use operators::explain::explain;
use operators::infer::{infer, PairModels};
use operators::par::par_map;
use operators::perturb::{perturb, PerturbConfig, PerturbJob, Seat, StageTime};
use operators::pool::JobPool;
use operators::subset::{self, Scored};
use operators::decode;
use timely::dataflow::operators::core::{Concat, Concatenate, Exchange as _, Inspect, OkErr};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use types::{ErrorRow, Image, PerturbationRow, Sample, Stage};

use crate::ops::{AggregateRows, Decide, Decision, EpochUpdates};
use crate::plan::{GraphPlan, PairPlan};
use crate::sinks::{ByShard, Count, Parts, WriteParts, Written};

/// Re-reads and decodes the image of a deletion/insertion job.
pub type Loader = Box<dyn FnMut(&PerturbJob) -> Result<Rc<Image>, ErrorRow>>;

/// One pair's effects, from the driver.
pub struct PairResources {
    pub models: Rc<PairModels>,
    pub load: Loader,
    /// The rows an earlier run finished (asked once, on the pair's writer, when the subset is final).
    pub previous: std::cell::Cell<Option<Box<dyn FnOnce() -> HashMap<String, Vec<PerturbationRow>>>>>,
    /// Keeps one image's deletion/insertion rows safe until the run commits (on the writer).
    pub stage: Box<dyn FnMut(&[PerturbationRow])>,
    /// The pair's run-level parts.
    pub parts: Parts,
    /// Its deletion/insertion errors part, in the `errors` table.
    pub error_parts: Parts,
}

/// Everything with a side effect that the graph uses.
pub struct Resources {
    pub pairs: Vec<PairResources>,
    /// The shard tables' parts (images, pairs, errors): which this worker writes, and where.
    pub shard_parts: Parts,
    /// Shard names by index, to name the parts.
    pub shard_names: Rc<Vec<String>>,
    pub perturb_time: Rc<StageTime>,
    /// The process's deletion/insertion jobs, shared by its workers (by pair index), and this
    /// worker's index in it.
    pub perturb_pool: Arc<JobPool<PerturbJob>>,
    pub worker: usize,
    /// Counts each (image, pair) dealt to and finished by deletion/insertion on this worker.
    pub on_dealt: Rc<dyn Fn(usize)>,
    pub on_perturbed: Rc<dyn Fn(usize)>,
    /// Counts (image, pair) units of phase 1 finished on this worker.
    pub on_units: Rc<dyn Fn(usize)>,
}

/// The notices of the parts the graph writes.
pub struct Outputs<'s> {
    /// Shard tables: one per (shard, table), at the shard's last batch.
    pub shard_parts: StreamVec<'s, u64, Written>,
    /// Run-level tables, at the end.
    pub run_parts: StreamVec<'s, u64, Written>,
}

/// Builds one worker's dataflow: `samples` are its shards' images, `reused` the records of shards
/// an earlier run finished, read back for selection.
pub fn build<'s>(
    plan: &GraphPlan,
    res: Resources,
    samples: StreamVec<'s, u64, Result<Sample, ErrorRow>>,
    reused: StreamVec<'s, u64, (String, Scored)>,
) -> Outputs<'s> {
    let scope = samples.scope();
    let (threads, max_pixels) = (plan.threads, plan.max_pixels);
    let (samples, read_errors) = samples.ok_err(|r| r);
    let mut errors = vec![read_errors];
    let (mut image_rows, mut pair_rows, mut wsol_rows, mut run_parts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());

    // Each image is decoded once; a decode failure is a model-less error row, which counts against
    // every pair. Then one preprocessing per distinct setting, shared by the pairs that use it.
    let (rgb, decode_errors) = par_map(samples, "Decode", threads, move |s: Sample| {
        decode::Decoded::of(&s, max_pixels)
            .map(Arc::new)
            .map_err(|e| ErrorRow::new(&s.image_id, &s.shard, Stage::Decode, e.to_string()))
    })
    .ok_err(|r| r);
    errors.push(decode_errors);
    let mut preprocessed: HashMap<String, StreamVec<'s, u64, Rc<Image>>> = HashMap::new();
    let mut res = res;
    let branches = std::mem::take(&mut res.pairs);

    for (index, (pair, r)) in plan.pairs.iter().zip(branches).enumerate() {
        let pre = pair.preprocess.clone();
        let images = preprocessed
            .entry(pre.key())
            .or_insert_with(|| {
                par_map(rgb.clone(), &format!("Preprocess[{}]", pre.key()), threads, move |d: Arc<decode::Decoded>| {
                    d.preprocess(&mut decode::Preprocessor::new(&pre))
                })
                .map(Rc::new)
            })
            .clone();
        let (inferred, infer_errors) = infer(images, pair.name.clone(), r.models.clone()).ok_err(|r| r);
        errors.push(infer_errors);
        let cfg = pair.explain;
        let explained = par_map(inferred, &format!("Explain[{}]", pair.name), threads, move |inf| explain(&inf, &cfg));
        image_rows.push(explained.clone().flat_map(|e| e.images));
        pair_rows.push(explained.clone().map(|e| e.pair));
        wsol_rows.push(explained.clone().flat_map(|e| e.wsol));

        let this = pair.name.clone();
        let scored = explained
            .flat_map(|e| Scored::of(&e.pair, [&e.images[0], &e.images[1]]))
            .concat(reused.clone().flat_map(move |(p, s)| (p == this).then_some(s)));
        let decisions = select(plan, pair, &r, scored, &mut run_parts);
        if let Some(cfg) = pair.perturb {
            run_parts.extend(deletion_insertion(pair, index, cfg, r, &res, decisions));
        }
    }

    // Progress: an (image, pair) is done with its pair row or its error row; an error before any
    // model counts against every pair.
    let pairs = plan.pairs.len();
    let pair_rows = scope.concatenate(pair_rows).count_with(res.on_units.clone(), |_| 1);
    let errors = scope.concatenate(errors).count_with(res.on_units, move |r: &ErrorRow| if r.model.is_some() { 1 } else { pairs });
    let shard_parts = scope.concatenate([
        scope.concatenate(image_rows).by_shard(plan.clock, res.shard_names.clone()).write_parts(res.shard_parts.clone()),
        pair_rows.by_shard(plan.clock, res.shard_names.clone()).write_parts(res.shard_parts.clone()),
        scope.concatenate(wsol_rows).by_shard(plan.clock, res.shard_names.clone()).write_parts(res.shard_parts.clone()),
        errors.by_shard(plan.clock, res.shard_names).write_parts(res.shard_parts),
    ]);
    Outputs { shard_parts, run_parts: scope.concatenate(run_parts) }
}

/// Selection and the running aggregates over a pair's fresh and reused records (SPEC §4): writes
/// `aggregates` and `subset`, and returns the final decisions for deletion/insertion.
fn select<'s>(
    plan: &GraphPlan,
    pair: &PairPlan,
    r: &PairResources,
    scored: StreamVec<'s, u64, Scored>,
    run_parts: &mut Vec<StreamVec<'s, u64, Written>>,
) -> StreamVec<'s, u64, Decision> {
    let updates = scored.epoch_updates(pair.name.clone(), plan.clock);
    let writer = pair.writer as u64;
    run_parts.push(
        subset::aggregate(updates.clone(), plan.top_fraction)
            .aggregate_rows(pair.name.clone(), writer, plan.clock)
            .write_parts(r.parts.clone()),
    );
    let previous = r.previous.take();
    let decisions = subset::select(updates, plan.top_fraction, plan.rank_all).decide(
        pair.name.clone(),
        writer,
        pair.perturb.is_some().then(|| plan.orders.clone()),
        plan.rank_all,
        move || previous.map(|p| p()).unwrap_or_default(),
    );
    let name = pair.name.clone();
    run_parts.push(
        decisions
            .clone()
            .flat_map(move |d| match d {
                Decision::Subset(row) => Some((name.clone(), row)),
                _ => None,
            })
            .write_parts(r.parts.clone()),
    );
    decisions
}

/// Deletion/insertion (SPEC §5) on the final subset, dealt out by rank; each image's rows are
/// staged on the writer as they arrive, then written as the pair's part, with the rows an
/// earlier run finished.
fn deletion_insertion<'s>(
    pair: &PairPlan,
    index: usize,
    cfg: PerturbConfig,
    r: PairResources,
    res: &Resources,
    decisions: StreamVec<'s, u64, Decision>,
) -> [StreamVec<'s, u64, Written>; 2] {
    let writer = pair.writer as u64;
    let jobs = decisions
        .clone()
        .flat_map(|d| match d {
            Decision::Perturb(job) => Some(job),
            _ => None,
        })
        .exchange(move |j: &PerturbJob| j.deal as u64 + index as u64)
        .count_with(res.on_dealt.clone(), |_| 1);
    let reused_rows = decisions.flat_map(|d| match d {
        Decision::Reuse(row) => Some(row),
        _ => None,
    });
    let seat = Seat { pool: res.perturb_pool.clone(), branch: index, worker: res.worker };
    let (rows, errors) = perturb(jobs, r.models, r.load, cfg, res.perturb_time.clone(), seat)
        .count_with(res.on_perturbed.clone(), |_| 1)
        .ok_err(|r| r);
    let mut stage = r.stage;
    let (name, again) = (pair.name.clone(), pair.name.clone());
    [
        rows.exchange(move |_| writer)
            .inspect(move |rows: &Vec<PerturbationRow>| stage(rows))
            .flat_map(|rows| rows)
            .concat(reused_rows)
            .map(move |row| (name.clone(), row))
            .write_parts(r.parts),
        errors.map(move |e| (format!("perturb-{again}"), e)).write_parts(r.error_parts),
    ]
}
