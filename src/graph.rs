//! The whole pipeline in one place: how a job becomes a timely dataflow on each worker.
//!
//! ```text
//! shards ─read─▶ samples ─decode(per preprocessing)─▶ images ─┬─ infer[pair A] ─ explain ─┐
//!                   │                  │                       └─ infer[pair B] ─ explain ─┤
//!                   └──────────────────┴──── errors ─────────────────────────────────────┴─▶ Parquet sinks
//! ```
//!
//! Timestamps are batch sequence numbers local to each worker: worker w reads shards
//! `w, w + peers, …` (shard % peers == w), cut into batches of `run.batch_size` that never span a
//! shard. A shard's part files are written once the frontier passes its last batch, so outputs do
//! not depend on how many workers or processes there are.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use operators::explain::{explain, ExplainConfig};
use operators::infer::{infer, PairModels};
use operators::{decode, ErrorRow, Image, ImageRow, PairRow, Preprocess, Sample, Stage};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::{Concatenate, OkErr, Probe};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::{InputHandle, ProbeHandle, StreamVec};

use sources::{Dataset, Fetcher, Shard, ShardReader};
use crate::job::Job;
use crate::models::{set_torch_threads, PairSpec};
use tables::{write_part, Table};

/// Everything the workers share, checked before any work starts.
pub struct Plan {
    pub job: Job,
    pub dataset: Dataset,
    /// Shard bytes from local files or object stores, with prefetch; shared by the workers.
    pub fetch: Fetcher,
    pub pairs: Vec<PairSpec>,
    pub out_dir: PathBuf,
}

/// Counts one worker saw, summed into `run.json`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    pub shards: usize,
    pub images_in: usize,
    pub torch_threads: usize,
    pub wall_s: f64,
}

/// Shared progress counter, so one line can report the whole process.
#[derive(Default)]
pub struct Progress {
    /// (image, pair) units finished: a pair row or an error row.
    pub units_done: AtomicUsize,
    pub pairs: AtomicUsize,
}

impl Progress {
    pub fn images_done(&self) -> usize {
        self.units_done.load(Ordering::Relaxed) / self.pairs.load(Ordering::Relaxed).max(1)
    }
}

/// Builds and runs the dataflow on one worker until its shards are done.
pub fn run_worker(
    worker: &mut timely::worker::Worker,
    plan: &Plan,
    workers_on_host: usize,
    progress: &Arc<Progress>,
) -> Result<WorkerReport, String> {
    let start = Instant::now();
    let (index, peers) = (worker.index(), worker.peers());
    let job = &plan.job;
    let torch_threads = job.torch_threads(workers_on_host);
    set_torch_threads(torch_threads);

    let mine: Vec<&Shard> = plan.dataset.shards.iter().filter(|s| s.index % peers == index).collect();
    // Batch k of this worker is timestamp k: (shard slot, batch length), from counts known up
    // front (folder listing or shard index).
    let mut batches: Vec<(usize, usize)> = Vec::new();
    for (slot, shard) in mine.iter().enumerate() {
        let n = shard.count();
        for start in (0..n).step_by(job.run.batch_size) {
            batches.push((slot, (n - start).min(job.run.batch_size)));
        }
    }
    let shard_of_time: Rc<Vec<usize>> = Rc::new(batches.iter().map(|b| b.0).collect());
    let shard_names: Rc<Vec<String>> = Rc::new(mine.iter().map(|s| s.name.clone()).collect());

    let mut loaded = Vec::new();
    for spec in &plan.pairs {
        let pair = spec.load().map_err(|e| e.to_string())?;
        let models = PairModels { float: Box::new(pair.float), quantized: Box::new(pair.quantized) };
        loaded.push((spec.name().to_string(), spec.manifest.preprocess.clone(), Rc::new(models)));
    }

    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Result<Sample, ErrorRow>>>>::new();
    let probe = ProbeHandle::new();
    let out_dir = plan.out_dir.clone();
    let max_pixels = job.data.max_pixels;
    let explain_cfg = |crop: u32| ExplainConfig {
        sign: job.cam.sign,
        wsol_threshold: job.wsol.threshold,
        crop: crop as usize,
    };

    worker.dataflow::<u64, _, _>(|scope| {
        let (samples, read_errors) = input.to_stream(scope).ok_err(|r| r);
        let mut errors = vec![read_errors];
        let mut image_rows = Vec::new();
        let mut pair_rows = Vec::new();

        // One decode per distinct preprocessing, shared by every pair that uses it.
        let mut decoded: HashMap<String, StreamVec<'_, u64, Rc<Image>>> = HashMap::new();
        for (name, pre, models) in &loaded {
            let first_branch = decoded.is_empty();
            let images = decoded
                .entry(pre.key())
                .or_insert_with(|| {
                    let (images, decode_errors) = decode_stream(samples.clone(), pre.clone(), max_pixels);
                    // An image fails to decode alike in every branch (preprocessing cannot fail),
                    // and a model-less error row counts against every pair: report it once.
                    if first_branch {
                        errors.push(decode_errors);
                    }
                    images
                })
                .clone();
            let (inferred, infer_errors) = infer(images, name.clone(), models.clone()).ok_err(|r| r);
            errors.push(infer_errors);
            let cfg = explain_cfg(pre.crop);
            let explained = inferred.map(move |inf| explain(&inf, &cfg));
            image_rows.push(explained.clone().flat_map(|e| e.images));
            pair_rows.push(explained.map(|e| e.pair));
        }

        let parts = SinkParts { out_dir: out_dir.clone(), shard_of_time, shard_names, progress, pairs: loaded.len() };
        sink_parts::<ImageRow>(scope.concatenate(image_rows), &parts, &probe);
        sink_parts::<PairRow>(scope.concatenate(pair_rows), &parts, &probe);
        sink_parts::<ErrorRow>(scope.concatenate(errors), &parts, &probe);
    });

    let mut images_in = 0;
    let mut reader: Option<(usize, ShardReader)> = None;
    for (time, &(slot, len)) in batches.iter().enumerate() {
        if reader.as_ref().map(|r| r.0) != Some(slot) {
            reader = Some((slot, mine[slot].open(&plan.fetch)));
            // The next shard's bytes start flowing while this one is read.
            if let Some(next) = mine.get(slot + 1) {
                plan.fetch.prefetch(next);
            }
        }
        let (_, current) = reader.as_mut().expect("opened above");
        for item in current.by_ref().take(len) {
            input.send(item);
        }
        images_in += len;
        input.advance_to(time as u64 + 1);
        // Backpressure: the source waits while too many batches are unfinished downstream.
        let horizon = (time as u64 + 1).saturating_sub(job.run.max_in_flight as u64);
        while probe.less_than(&horizon) {
            worker.step();
        }
    }
    input.close();
    while worker.step() {}

    Ok(WorkerReport {
        worker: index,
        shards: mine.len(),
        images_in,
        torch_threads,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Decode + preprocess (SPEC §1) for one preprocessing; failures become error rows.
fn decode_stream<'s>(
    samples: StreamVec<'s, u64, Sample>,
    pre: Preprocess,
    max_pixels: u64,
) -> (StreamVec<'s, u64, Rc<Image>>, StreamVec<'s, u64, ErrorRow>) {
    samples.ok_err(move |s: Sample| {
        decode::decode_sample(&s, &pre, max_pixels)
            .map(Rc::new)
            .map_err(|e| ErrorRow::new(&s.image_id, &s.shard, Stage::Decode, e.to_string()))
    })
}

struct SinkParts<'a> {
    progress: &'a Arc<Progress>,
    pairs: usize,
    out_dir: PathBuf,
    shard_of_time: Rc<Vec<usize>>,
    shard_names: Rc<Vec<String>>,
}

/// Collects a table's rows per shard and writes the shard's part file once the frontier has passed
/// the shard's last batch. Every shard of the worker gets a part, empty or not, so a finished shard
/// is visible as such.
fn sink_parts<'s, T: Table + 'static>(rows: StreamVec<'s, u64, T>, parts: &SinkParts, probe: &ProbeHandle<u64>) {
    let out_dir = parts.out_dir.clone();
    let shard_of_time = parts.shard_of_time.clone();
    let names = parts.shard_names.clone();
    let progress = parts.progress.clone();
    let pairs = parts.pairs;
    // The last timestamp of each shard slot.
    let mut last_time: Vec<u64> = vec![0; names.len()];
    for (t, &slot) in shard_of_time.iter().enumerate() {
        last_time[slot] = t as u64;
    }
    let mut stash: BTreeMap<usize, Vec<T>> = (0..names.len()).map(|slot| (slot, Vec::new())).collect();
    rows.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        &format!("Sink[{}]", T::NAME),
        move |_cap, _info| {
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    let slot = shard_of_time[*cap.least().expect("a stamp holds one time") as usize];
                    progress.units_done.fetch_add(T::units_done(data, pairs), Ordering::Relaxed);
                    stash.entry(slot).or_default().append(data);
                });
                let done: Vec<usize> =
                    stash.keys().copied().filter(|&slot| !frontier.less_equal(&last_time[slot])).collect();
                for slot in done {
                    let rows = stash.remove(&slot).unwrap_or_default();
                    if let Err(e) = write_part(&out_dir, &names[slot], &rows) {
                        // A lost part file would silently drop rows; stop loudly instead.
                        panic!("writing {} part {}: {e}", T::NAME, names[slot]);
                    }
                }
            }
        },
    )
    .probe_with(probe);
}
