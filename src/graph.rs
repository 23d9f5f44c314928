//! The whole pipeline in one place: how a job becomes a timely dataflow on each worker.
//!
//! ```text
//! shards ─read─▶ samples ─decode─▶ rgb ─preprocess(per setting)─▶ images ─┬─ pair A: infer ─ explain ─┬─▶ images, pairs
//!                                                                         │                          └─▶ scored ─▶ select ─▶ subset
//!                                                                         │                                    └▶ aggregate ─▶ aggregates
//!                                                                         │              subset ─deal─▶ perturb ─▶ perturbation
//!                                                                         └─ pair B: …
//! every stage's failures ──────────────────────────────────────────────────────────────────────────────────▶ errors
//! ```
//!
//! Decode, preprocess and explain spread each batch over the worker's `torch_threads` cores
//! (`operators::par`), the cores its forwards use, which would otherwise idle between forwards.
//!
//! Time is global and counts shards: batch `b` of shard `s` is time `s · stride + b`, where
//! `stride` is the most batches any shard has. Worker w reads the shards with `s % peers == w`, in
//! order, cut into batches of `run.batch_size` that never span a shard. A shard's part files are
//! written once the frontier passes its last batch, so the outputs do not depend on how many
//! workers or processes there are.
//!
//! Selection and the aggregates (`operators::subset`) are differential collections whose updates
//! are stamped with the end of their epoch, a fixed run of `subset.epoch_shards` shards, so they
//! change once per epoch. Once the input is complete the subset is final: its images are dealt out
//! to all workers by rank, re-read from their shards, and perturbed (deletion/insertion).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use differential_dataflow::{AsCollection, VecCollection};
use operators::explain::{explain, ExplainConfig};
use operators::infer::{infer, PairModels};
use types::Variant;
use operators::par::par_map;
use operators::perturb::{perturb, PerturbConfig, PerturbJob, StageTime};
use operators::subset::{self, Ranked, Scored, Totals};
use operators::decode;
use types::{AggregateRow, ErrorRow, Image, ImageRow, PairRow, PerturbationRow, Preprocess, Sample, Stage, SubsetRow};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::{Concat, Concatenate, Exchange as _, Inspect, OkErr, Probe};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Map;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::{InputHandle, ProbeHandle, StreamVec};

use sources::{Dataset, Fetcher, Shard};
use crate::job::{Job, PerturbScope};
use crate::ledger;
use crate::models::{set_torch_threads, PairSpec, SharedModel};
use tables::{write_part, Table};

/// Everything the workers share, checked before any work starts.
pub struct Plan {
    pub job: Job,
    pub dataset: Dataset,
    /// Shard bytes from local files or object stores, with prefetch; shared by the workers.
    pub fetch: Fetcher,
    pub pairs: Vec<PairSpec>,
    pub out_dir: PathBuf,
    /// Shards a previous run into `out_dir` finished with the same settings (resume, append): their
    /// rows are read back into selection, not recomputed.
    pub finished: BTreeSet<String>,
    /// [`ledger::settings_digest`] of this run.
    pub settings: String,
}

/// Counts one worker saw, summed into `run.json`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    pub shards: usize,
    /// Images this worker read and computed.
    pub images_in: usize,
    /// Images of finished shards whose rows were read back.
    pub images_reused: usize,
    pub torch_threads: usize,
    /// Seconds until this worker's shards were written (read, decode, infer, explain, sinks).
    pub phase1_s: f64,
    /// Seconds in deletion/insertion (re-reading the images included).
    pub perturb_s: f64,
    /// Of those, seconds inside the model forwards.
    pub perturb_forward_s: f64,
    pub wall_s: f64,
}

/// Shared progress counter, so one line can report the whole process.
#[derive(Default)]
pub struct Progress {
    /// (image, pair) units finished: a pair row or an error row.
    pub units_done: AtomicUsize,
    pub pairs: AtomicUsize,
    /// (image, pair) units through deletion/insertion.
    pub perturbed: AtomicUsize,
}

impl Progress {
    pub fn images_done(&self) -> usize {
        self.units_done.load(Ordering::Relaxed) / self.pairs.load(Ordering::Relaxed).max(1)
    }
}

/// Maps (shard, batch) to timestamps and timestamps to epochs.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    stride: u64,
    epoch_shards: u64,
}

impl Clock {
    pub fn new(dataset: &Dataset, batch_size: usize, epoch_shards: usize) -> Clock {
        let batches = |s: &Shard| s.count().div_ceil(batch_size) as u64;
        let stride = dataset.shards.iter().map(batches).max().unwrap_or(1).max(1);
        Clock { stride, epoch_shards: epoch_shards.max(1) as u64 }
    }

    pub fn time(&self, shard: usize, batch: usize) -> u64 {
        shard as u64 * self.stride + batch as u64
    }

    pub fn shard_of(&self, time: u64) -> usize {
        (time / self.stride) as usize
    }

    pub fn epoch_of(&self, time: u64) -> u64 {
        time / self.stride / self.epoch_shards
    }

    /// The last time of epoch `e`: updates of the epoch are stamped with it.
    pub fn epoch_end(&self, epoch: u64) -> u64 {
        (epoch + 1) * self.epoch_shards * self.stride - 1
    }
}

/// Builds and runs the dataflow on one worker until its shards, and its share of deletion/insertion,
/// are done.
pub fn run_worker(
    worker: &mut timely::worker::Worker,
    plan: &Arc<Plan>,
    workers_on_host: usize,
    progress: &Arc<Progress>,
) -> Result<WorkerReport, String> {
    let start = Instant::now();
    let (index, peers) = (worker.index(), worker.peers());
    let job = &plan.job;
    let torch_threads = job.torch_threads(workers_on_host);
    set_torch_threads(torch_threads);
    let clock = Clock::new(&plan.dataset, job.run.batch_size, job.subset.epoch_shards);
    let last_epoch = clock.epoch_of(clock.time(plan.dataset.shards.len().saturating_sub(1), 0));

    let mine: Vec<&Shard> = plan.dataset.shards.iter().filter(|s| s.index % peers == index).collect();
    let pair_names: Vec<String> = plan.pairs.iter().map(|p| p.name().to_string()).collect();

    let mut loaded = Vec::new();
    for spec in &plan.pairs {
        let pair = spec.load_shared().map_err(|e| e.to_string())?;
        let models = PairModels {
            float: Box::new(SharedModel::new(pair.clone(), Variant::Float)),
            quantized: Box::new(SharedModel::new(pair, Variant::Quantized)),
        };
        loaded.push((spec.name().to_string(), spec.manifest.preprocess.clone(), Rc::new(models)));
    }

    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Result<Sample, ErrorRow>>>>::new();
    // Rows of shards a previous run into this folder finished, read back instead of recomputed.
    let mut reused = InputHandle::<u64, CapacityContainerBuilder<Vec<(String, Scored)>>>::new();
    let probe = ProbeHandle::new();
    let out_dir = plan.out_dir.clone();
    let max_pixels = job.data.max_pixels;
    let perturb_time = Rc::new(StageTime::default());
    let explain_cfg = |crop: u32| ExplainConfig {
        sign: job.cam.sign,
        wsol_threshold: job.wsol.threshold,
        crop: crop as usize,
    };

    // The shards this worker computes, and when each one's parts can be written.
    let fresh: Vec<&Shard> = mine.iter().copied().filter(|s| !plan.finished.contains(&s.name)).collect();
    let parts = Rc::new(SinkParts {
        out_dir: out_dir.clone(),
        clock,
        shards: fresh.iter().map(|s| (s.index, ((*s).clone(), clock.time(s.index, s.count().div_ceil(job.run.batch_size).max(1) - 1)))).collect(),
        progress: progress.clone(),
        pairs: pair_names.clone(),
        settings: plan.settings.clone(),
        written: Default::default(),
    });

    worker.dataflow::<u64, _, _>(|scope| {
        let (samples, read_errors) = input.to_stream(scope).ok_err(|r| r);
        let reused = reused.to_stream(scope);
        let mut errors = vec![read_errors];
        let mut image_rows = Vec::new();
        let mut pair_rows = Vec::new();

        // Each image is decoded once; a decode failure is a model-less error row, which counts
        // against every pair. Then one preprocessing per distinct setting, shared by the pairs
        // that use it. The per-image CPU work runs on the worker's `torch_threads` cores.
        let (rgb, decode_errors) = par_map(samples, "Decode", torch_threads, move |s: Sample| {
            decode::Decoded::of(&s, max_pixels)
                .map(Arc::new)
                .map_err(|e| ErrorRow::new(&s.image_id, &s.shard, Stage::Decode, e.to_string()))
        })
        .ok_err(|r| r);
        errors.push(decode_errors);
        let mut preprocessed: HashMap<String, StreamVec<'_, u64, Rc<Image>>> = HashMap::new();
        for (pair_index, (name, pre, models)) in loaded.iter().enumerate() {
            let images = preprocessed
                .entry(pre.key())
                .or_insert_with(|| {
                    let p = pre.clone();
                    par_map(rgb.clone(), &format!("Preprocess[{}]", pre.key()), torch_threads, move |d: Arc<decode::Decoded>| {
                        d.preprocess(&mut decode::Preprocessor::new(&p))
                    })
                    .map(Rc::new)
                })
                .clone();
            let (inferred, infer_errors) = infer(images, name.clone(), models.clone()).ok_err(|r| r);
            errors.push(infer_errors);
            let cfg = explain_cfg(pre.crop);
            let explained = par_map(inferred, &format!("Explain[{name}]"), torch_threads, move |inf| explain(&inf, &cfg));
            image_rows.push(explained.clone().flat_map(|e| e.images));
            pair_rows.push(explained.clone().map(|e| e.pair));

            // Selection and aggregates over this pair's fresh and reused records (SPEC §4).
            let this = name.clone();
            let scored = explained
                .flat_map(|e| Scored::of(&e.pair, [&e.images[0], &e.images[1]]))
                .concat(reused.clone().flat_map(move |(pair, s)| (pair == this).then_some(s)));
            let pair = PairBranch { name: name.clone(), owner: (pair_index % peers) as u64, is_owner: pair_index % peers == index };
            let updates = epoch_updates(scored, pair.name.clone(), clock);
            let rank_all = job.perturbation.scope == PerturbScope::All;
            let ranked = subset::select(updates.clone(), job.subset.top_fraction, rank_all);
            sink_aggregates(subset::aggregate(updates, job.subset.top_fraction), &pair, clock, last_epoch, &out_dir);
            if job.perturbation.scope == PerturbScope::None {
                sink_subset(ranked, &pair, job.perturbation.scope, job.perturbation.steps, &out_dir, Rc::default());
                continue;
            }
            // Deletion/insertion (SPEC §5) on the final subset, dealt out by rank.
            let finished = Rc::new(RefCell::new(Vec::new()));
            let jobs = sink_subset(ranked, &pair, job.perturbation.scope, job.perturbation.steps, &out_dir, finished.clone())
                .exchange(move |j: &PerturbJob| j.rank as u64 - 1 + pair_index as u64);
            let cfg = PerturbConfig { steps: job.perturbation.steps, batch: job.perturb_batch(), crop: pre.crop as usize };
            let load = load_images(plan.clone(), pre.clone());
            let stage_dir = staging_dir(&out_dir, name);
            let counter = progress.clone();
            let results = perturb(jobs, models.clone(), load, cfg, perturb_time.clone()).inspect(move |r| {
                counter.perturbed.fetch_add(1, Ordering::Relaxed);
                // Staged per image so a crash in this stage loses at most the images in flight.
                if let Ok(rows) = r {
                    if let Err(e) = write_part(&stage_dir, &rows[0].image_id, rows) {
                        eprintln!("qcam: staging perturbation rows: {e}");
                    }
                }
            });
            sink_perturbation(results, &pair, finished, &out_dir);
        }

        sink_parts::<ImageRow>(scope.concatenate(image_rows), &parts, &probe);
        sink_parts::<PairRow>(scope.concatenate(pair_rows), &parts, &probe);
        sink_parts::<ErrorRow>(scope.concatenate(errors), &parts, &probe);
    });

    let mut images_in = 0;
    let mut images_reused = 0;
    let mut sent: Vec<u64> = Vec::new();
    for shard in &mine {
        if plan.finished.contains(&shard.name) {
            let t = clock.time(shard.index, 0);
            input.advance_to(t);
            reused.advance_to(t);
            let records = read_scored(&out_dir, &shard.name, &pair_names).map_err(|e| format!("reading back shard {}: {e}", shard.name))?;
            images_reused += shard.count();
            progress.units_done.fetch_add(shard.count() * pair_names.len(), Ordering::Relaxed);
            reused.send_batch(&mut records.into_iter().collect());
            continue;
        }
        let mut reader = shard.open(&plan.fetch);
        // The next shard's bytes start flowing while this one is read.
        if let Some(next) = mine.iter().skip_while(|s| s.index != shard.index).nth(1) {
            plan.fetch.prefetch(next);
        }
        let n = shard.count();
        for (batch, start) in (0..n).step_by(job.run.batch_size).enumerate() {
            let len = (n - start).min(job.run.batch_size);
            let t = clock.time(shard.index, batch);
            input.advance_to(t);
            reused.advance_to(t);
            for item in reader.by_ref().take(len) {
                input.send(item);
            }
            images_in += len;
            sent.push(t);
            // Backpressure: the source waits while more than `max_in_flight` of its batches are
            // unfinished downstream.
            if let Some(&oldest) = sent.len().checked_sub(job.run.max_in_flight + 1).map(|i| &sent[i]) {
                while probe.less_equal(&oldest) {
                    worker.step();
                }
            }
        }
    }
    input.close();
    reused.close();
    // Phase 1 (the per-shard tables) ends when its sinks' frontier empties; selection and
    // deletion/insertion finish after it.
    while !probe.done() {
        worker.step();
    }
    let phase1_s = start.elapsed().as_secs_f64();
    while worker.step() {}

    Ok(WorkerReport {
        worker: index,
        shards: mine.len(),
        images_in,
        images_reused,
        torch_threads,
        phase1_s,
        perturb_s: perturb_time.busy_s.get(),
        perturb_forward_s: perturb_time.forward_s.get(),
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Where one pair's run-level tables (subset, aggregates, perturbation) are written: by one worker,
/// its owner, which gets all of the pair's records for them.
struct PairBranch {
    name: String,
    owner: u64,
    is_owner: bool,
}

/// Explained records as differential updates, each stamped with the end of its epoch so selection
/// and the aggregates change once per epoch, not once per batch.
fn epoch_updates<'s>(scored: StreamVec<'s, u64, Scored>, pair: String, clock: Clock) -> VecCollection<'s, u64, (String, Scored)> {
    scored
        .unary(Pipeline, "EpochUpdates", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    // Later than the message's time, which a collection allows.
                    let t = clock.epoch_end(clock.epoch_of(*cap.least().expect("a stamp holds one time")));
                    output.session(&cap).give_iterator(data.drain(..).map(|s| ((pair.clone(), s), t, 1isize)));
                });
            }
        })
        .as_collection()
}

/// Final state of a collection's updates: records with a positive count, in order.
fn positive<D: Ord + Clone>(state: &BTreeMap<D, isize>) -> impl Iterator<Item = &D> {
    state.iter().filter(|(_, &c)| c > 0).map(|(d, _)| d)
}

/// Writes the pair's `aggregates` part: one row per variant for every epoch, the state once the
/// frontier has passed the epoch's end.
fn sink_aggregates<'s>(totals: VecCollection<'s, u64, (String, Totals)>, pair: &PairBranch, clock: Clock, last_epoch: u64, out_dir: &Path) {
    let (name, owner, is_owner, out_dir) = (pair.name.clone(), pair.owner, pair.is_owner, out_dir.to_path_buf());
    let mut pending: Vec<(Totals, u64, isize)> = Vec::new();
    let mut state: BTreeMap<Totals, isize> = BTreeMap::new();
    let mut rows: Vec<AggregateRow> = Vec::new();
    let mut next_epoch = 0;
    totals.inner.sink(Exchange::new(move |_| owner), "Aggregates", move |(input, frontier)| {
        input.for_each(|_, data| pending.extend(data.drain(..).map(|((_, t), time, diff)| (t, time, diff))));
        while next_epoch <= last_epoch && !frontier.less_equal(&clock.epoch_end(next_epoch)) {
            let end = clock.epoch_end(next_epoch);
            for (t, _, diff) in pending.extract_if(.., |(_, time, _)| *time <= end) {
                *state.entry(t).or_default() += diff;
            }
            if let Some(t) = positive(&state).next() {
                rows.extend(t.rows(next_epoch, &name));
            }
            next_epoch += 1;
        }
        if is_owner && next_epoch > last_epoch && !rows.is_empty() {
            write_or_die(write_part(&out_dir, &name, &std::mem::take(&mut rows)));
        }
    });
}

/// Writes the pair's `subset` part once selection is final, and emits the images to perturb. Those
/// whose rows a previous run of this folder already computed (a final part or staged rows) are not
/// redone: their rows go to `finished` for the perturbation sink, on this same worker.
fn sink_subset<'s>(
    ranked: VecCollection<'s, u64, (String, Ranked)>,
    pair: &PairBranch,
    scope: PerturbScope,
    steps: usize,
    out_dir: &Path,
    finished: Rc<RefCell<Vec<PerturbationRow>>>,
) -> StreamVec<'s, u64, PerturbJob> {
    let (name, owner, is_owner, out_dir) = (pair.name.clone(), pair.owner, pair.is_owner, out_dir.to_path_buf());
    ranked.inner.unary_frontier(Exchange::new(move |_| owner), "Subset", move |cap, _info| {
        let mut cap = Some(cap);
        let mut state: BTreeMap<Ranked, isize> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|_, data| {
                for ((_, r), _, diff) in data.drain(..) {
                    *state.entry(r).or_default() += diff;
                }
            });
            if !frontier.frontier().is_empty() {
                return;
            }
            let Some(cap) = cap.take() else { return };
            if !is_owner {
                return;
            }
            let ranked: Vec<&Ranked> = positive(&state).collect();
            let rows: Vec<SubsetRow> = ranked
                .iter()
                .filter(|r| r.in_subset)
                .map(|r| SubsetRow { model: name.clone(), image_id: r.scored.image_id.clone(), rank: r.rank as i32, rmse: r.scored.rmse() })
                .collect();
            write_or_die(write_part(&out_dir, &name, &rows));
            if scope == PerturbScope::None {
                return;
            }
            let mut done = previous_perturbation(&out_dir, &name, steps);
            let mut session = output.session(&cap);
            for r in ranked.into_iter().filter(|r| r.in_subset || scope == PerturbScope::All) {
                match done.remove(&r.scored.image_id) {
                    Some(rows) => finished.borrow_mut().extend(rows),
                    None => session.give(PerturbJob { shard: r.scored.shard.clone(), model: name.clone(), rank: r.rank, scored: r.scored.clone() }),
                }
            }
        }
    })
}

/// Perturbation rows an earlier run into this folder finished for `pair` with the same `steps`:
/// its final part, then anything it staged before it stopped. Both variants or nothing.
fn previous_perturbation(out_dir: &Path, pair: &str, steps: usize) -> HashMap<String, Vec<PerturbationRow>> {
    let mut rows: Vec<PerturbationRow> = tables::read_part(out_dir, pair).ok().flatten().unwrap_or_default();
    rows.extend(tables::read_rows::<PerturbationRow>(&staging_dir(out_dir, pair)).unwrap_or_default());
    let mut by_image: HashMap<String, Vec<PerturbationRow>> = HashMap::new();
    for row in rows.into_iter().filter(|r| r.deletion_curve.len() == steps + 1) {
        let entry = by_image.entry(row.image_id.clone()).or_default();
        if !entry.iter().any(|r| r.variant == row.variant) {
            entry.push(row);
        }
    }
    by_image.retain(|_, rows| rows.len() == 2);
    by_image
}

fn staging_dir(out_dir: &Path, pair: &str) -> PathBuf {
    out_dir.join(".staging").join(pair)
}

/// Gathers the pair's perturbation rows and errors on its owner and writes them once every worker
/// is done; then the staged copies are no longer needed.
fn sink_perturbation<'s>(
    results: StreamVec<'s, u64, Result<[PerturbationRow; 2], ErrorRow>>,
    pair: &PairBranch,
    finished: Rc<RefCell<Vec<PerturbationRow>>>,
    out_dir: &Path,
) {
    let (name, owner, is_owner, out_dir) = (pair.name.clone(), pair.owner, pair.is_owner, out_dir.to_path_buf());
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let mut written = false;
    results.sink(Exchange::new(move |_| owner), "Perturbation", move |(input, frontier)| {
        input.for_each(|_, data| {
            for r in data.drain(..) {
                match r {
                    Ok(pair_rows) => rows.extend(pair_rows),
                    Err(e) => errors.push(e),
                }
            }
        });
        if !is_owner || written || !frontier.frontier().is_empty() {
            return;
        }
        written = true;
        rows.extend(finished.borrow_mut().drain(..));
        rows.sort_by(|a, b| (&a.image_id, a.variant).cmp(&(&b.image_id, b.variant)));
        write_or_die(write_part(&out_dir, &name, &rows));
        write_or_die(write_part(&out_dir, &format!("perturb-{name}"), &errors));
        let _ = std::fs::remove_dir_all(staging_dir(&out_dir, &name));
    });
}

/// Re-reads and decodes the images of one shard's jobs, for deletion/insertion. One result per job.
fn load_images(plan: Arc<Plan>, pre: Preprocess) -> impl FnMut(&[PerturbJob]) -> Vec<Result<Rc<Image>, ErrorRow>> {
    move |jobs| {
        let fail = |job: &PerturbJob, message: String| ErrorRow::new(&job.scored.image_id, &job.shard, Stage::Perturb, message).for_model(&job.model);
        let Some(shard) = jobs.first().and_then(|j| plan.dataset.shards.iter().find(|s| s.name == j.shard)) else {
            return jobs.iter().map(|j| Err(fail(j, "shard is no longer listed".into()))).collect();
        };
        let wanted: HashSet<&str> = jobs.iter().map(|j| j.scored.image_id.as_str()).collect();
        let mut samples: HashMap<String, Sample> = shard
            .open(&plan.fetch)
            .filter_map(Result::ok)
            .filter(|s| wanted.contains(s.image_id.as_str()))
            .map(|s| (s.image_id.clone(), s))
            .collect();
        let out = jobs
            .iter()
            .map(|j| match samples.remove(&j.scored.image_id) {
                Some(s) => decode::decode_sample(&s, &pre, plan.job.data.max_pixels)
                    .map(Rc::new)
                    .map_err(|e| fail(j, format!("decode: {e}"))),
                None => Err(fail(j, "image no longer readable from its shard".into())),
            })
            .collect();
        out
    }
}

/// A finished shard's records, read back from its `images` and `pairs` parts.
fn read_scored(out_dir: &Path, shard: &str, pairs: &[String]) -> Result<Vec<(String, Scored)>, String> {
    let missing = || format!("part {shard} is missing");
    let images: Vec<ImageRow> = tables::read_part(out_dir, shard).map_err(|e| e.to_string())?.ok_or_else(missing)?;
    let pair_rows: Vec<PairRow> = tables::read_part(out_dir, shard).map_err(|e| e.to_string())?.ok_or_else(missing)?;
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

fn write_or_die(result: Result<PathBuf, tables::TableError>) {
    // A lost part file would silently drop rows; stop loudly instead.
    if let Err(e) = result {
        panic!("writing a part file: {e}");
    }
}

struct SinkParts {
    progress: Arc<Progress>,
    pairs: Vec<String>,
    out_dir: PathBuf,
    clock: Clock,
    /// Shard index → the shard and the time of its last batch.
    shards: HashMap<usize, (Shard, u64)>,
    settings: String,
    /// Shard index → how many of its three parts are written.
    written: RefCell<HashMap<usize, usize>>,
}

impl SinkParts {
    /// Once all three tables' parts of a shard are in place, the shard is recorded as done.
    fn part_written(&self, shard: usize) {
        let mut written = self.written.borrow_mut();
        let n = written.entry(shard).or_default();
        *n += 1;
        if *n == 3 {
            let (s, _) = &self.shards[&shard];
            if let Err(e) = ledger::mark_done(&self.out_dir, s, &self.settings, &self.pairs) {
                panic!("recording shard {} as done: {e}", s.name);
            }
        }
    }
}

/// Collects a table's rows per shard and writes the shard's part file once the frontier has passed
/// the shard's last batch. Every shard the worker computes gets a part, empty or not, so a finished
/// shard is visible as such.
/// How many (image, pair) units rows of a table finish, for progress: a pair row finishes one, an
/// error before any model finishes one per pair.
trait Units: Sized {
    fn units_done(_rows: &[Self], _pairs: usize) -> usize {
        0
    }
}

impl Units for ImageRow {}

impl Units for PairRow {
    fn units_done(rows: &[Self], _pairs: usize) -> usize {
        rows.len()
    }
}

impl Units for ErrorRow {
    fn units_done(rows: &[Self], pairs: usize) -> usize {
        rows.iter().map(|r| if r.model.is_some() { 1 } else { pairs }).sum()
    }
}

fn sink_parts<'s, T: Table + Units + 'static>(rows: StreamVec<'s, u64, T>, parts: &Rc<SinkParts>, probe: &ProbeHandle<u64>) {
    let parts = parts.clone();
    let mut stash: BTreeMap<usize, Vec<T>> = parts.shards.keys().map(|&s| (s, Vec::new())).collect();
    rows.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        &format!("Sink[{}]", T::NAME),
        move |_cap, _info| {
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    let shard = parts.clock.shard_of(*cap.least().expect("a stamp holds one time"));
                    parts.progress.units_done.fetch_add(T::units_done(data, parts.pairs.len()), Ordering::Relaxed);
                    stash.entry(shard).or_default().append(data);
                });
                let done: Vec<usize> = stash
                    .keys()
                    .copied()
                    .filter(|s| parts.shards.get(s).is_some_and(|(_, last)| !frontier.less_equal(last)))
                    .collect();
                for shard in done {
                    let rows = stash.remove(&shard).unwrap_or_default();
                    write_or_die(write_part(&parts.out_dir, &parts.shards[&shard].0.name, &rows));
                    parts.part_written(shard);
                }
            }
        },
    )
    .probe_with(probe);
}
