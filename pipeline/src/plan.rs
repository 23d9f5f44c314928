//! The job resolved once (ripgrep's low-args → high-args step): the command line's overrides
//! applied, the data listed, every model verified and its contract checked, the layout of
//! processes and workers fixed. What the graph needs is handed out as plain values
//! ([`GraphPlan`]); no operator ever reads the job.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use operators::explain::ExplainConfig;
use operators::perturb::PerturbConfig;

pub use crate::ops::Orders;
use sources::{Dataset, Fetcher, Shard};
use tables::RunDir;
use types::Preprocess;

use types::{Job, PerturbScope};
use crate::models::{Backend, ModelError, PairSpec};

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

/// Who runs what: processes, workers per process, and who writes the run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub process: usize,
    pub processes: usize,
    /// Worker threads per process.
    pub workers: usize,
    /// Every process writes into the same folder (one process, `output.shared`, or an output in an
    /// object store, which every process reaches); otherwise process 0's worker 0 gathers every row
    /// and writes the whole run.
    pub shared: bool,
}

impl Placement {
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// The worker that reads and computes shard `index`.
    pub fn computes(&self, index: usize) -> usize {
        index % self.peers()
    }

    /// The worker that writes shard `index`'s parts.
    pub fn writes_shard(&self, index: usize) -> usize {
        if self.shared { self.computes(index) } else { 0 }
    }

    /// The worker that writes pair `index`'s run-level tables (subset, aggregates, perturbation).
    pub fn writes_pair(&self, index: usize) -> usize {
        if self.shared { index % self.peers() } else { 0 }
    }

    /// This process holds the run folder: it locks it, decides what is finished, and commits.
    pub fn holds_folder(&self) -> bool {
        self.process == 0
    }

    /// Whether `worker` (a global index) runs in this process.
    pub fn is_local(&self, worker: usize) -> bool {
        worker / self.workers == self.process
    }
}

/// Maps (shard, batch) to timestamps and timestamps to epochs. Time is global and counts shards:
/// batch `b` of shard `s` is `s · stride + b`, `stride` being the most batches any shard has.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    stride: u64,
    epoch_shards: u64,
    shards: u64,
}

impl Clock {
    pub fn new(dataset: &Dataset, batch_size: usize, epoch_shards: usize) -> Clock {
        let batches = |s: &Shard| s.count().div_ceil(batch_size) as u64;
        let stride = dataset.shards.iter().map(batches).max().unwrap_or(1).max(1);
        Clock { stride, epoch_shards: epoch_shards.max(1) as u64, shards: dataset.shards.len() as u64 }
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

    pub fn last_epoch(&self) -> u64 {
        self.epoch_of(self.time(self.shards.saturating_sub(1) as usize, 0))
    }

    /// A time after every batch: run-level parts complete there.
    pub fn end(&self) -> u64 {
        u64::MAX
    }
}

/// One pair's branch of the graph, as plain values.
#[derive(Clone, Debug)]
pub struct PairPlan {
    pub name: String,
    pub preprocess: Preprocess,
    pub explain: ExplainConfig,
    /// Deletion/insertion, when the job runs it.
    pub perturb: Option<PerturbConfig>,
    /// The worker that writes this pair's run-level tables.
    pub writer: usize,
    /// [`crate::ledger::pair_digest`]: what this pair's deletion/insertion rows depend on.
    pub digest: String,
}

/// Everything the topology needs, and nothing else.
#[derive(Clone, Debug)]
pub struct GraphPlan {
    pub clock: Clock,
    pub placement: Placement,
    /// libtorch intra-op threads per worker, also the cores its per-image CPU work spreads over.
    pub threads: usize,
    pub max_pixels: u64,
    pub top_fraction: f64,
    /// Rank every image, not only the subset (`perturbation.scope = "all"`).
    pub rank_all: bool,
    /// Which pixel orders deletion/insertion runs on which of its images.
    pub orders: Orders,
    pub pairs: Vec<PairPlan>,
}

/// The job, resolved and checked.
pub struct Plan {
    pub job: Job,
    pub job_path: PathBuf,
    pub dataset: Dataset,
    /// Shard bytes from local files or object stores, with prefetch; shared by the workers.
    pub fetch: Fetcher,
    pub pairs: Vec<PairSpec>,
    /// The run folder: `output.dir`, on disk or in an object store.
    pub out: RunDir,
    pub resume: bool,
    pub placement: Placement,
    /// [`crate::ledger::settings_digest`] of this run: what a shard's rows depend on.
    pub settings: String,
    pub graph: GraphPlan,
    /// Batches a worker's source may have in flight (backpressure).
    pub max_in_flight: usize,
    pub batch_size: usize,
}

impl Plan {
    /// The shards worker `worker` reads and computes: the one place that rule is written.
    pub fn shards_of(&self, worker: usize) -> impl Iterator<Item = &Shard> {
        self.dataset.shards.iter().filter(move |s| self.placement.computes(s.index) == worker)
    }
}

/// Applies the command line to the job.
fn apply(job: &mut Job, opts: &RunOptions) -> Result<()> {
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
    Ok(())
}

/// Loads a pair and checks its contract ([`PairSpec::check_contract`]) on a thread of its own.
/// The check runs a forward, and libgomp gives the calling thread an OpenMP team that lives as long
/// as the thread. Left on the main thread, that team made libgomp count more OpenMP threads than
/// cores once a worker started its own, and then every team's threads sleep on a futex after about
/// 100 spins instead of 300,000, so each parallel region of a forward waited for a wake-up.
fn check_contract_off_thread(spec: &PairSpec, backend: &dyn Backend) -> Result<(), ModelError> {
    std::thread::scope(|s| {
        let check = s.spawn(|| spec.check_contract(&spec.load(backend)?));
        check.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Processes sharing this machine: the hostfile's entries on our host.
fn processes_here(cluster: &ClusterOptions) -> usize {
    let host = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
    let mine = host(&cluster.addresses[cluster.process]);
    cluster.addresses.iter().filter(|a| host(a) == mine).count()
}

/// Loads and checks the job, the data listing and every model before any work starts. A problem
/// stops here, naming the file and field.
pub fn plan(job_path: &Path, opts: &RunOptions, backend: &dyn Backend) -> Result<Plan> {
    let mut job = Job::load(job_path)?;
    apply(&mut job, opts)?;
    let (process, processes) = match &opts.cluster {
        Some(c) if c.process >= c.addresses.len() => {
            bail!("--process {} is out of range: the hostfile lists {} processes", c.process, c.addresses.len())
        }
        Some(c) => (c.process, c.addresses.len()),
        None => (0, 1),
    };
    let out = RunDir::parse(&job.output.dir).with_context(|| format!("{}: field `output.dir`", job_path.display()))?;
    let shared = processes == 1 || job.output.shared || out.is_store();
    let placement = Placement { process, processes, workers: job.run.workers, shared };

    let dataset = Dataset::open(&job.data).with_context(|| format!("{}: field `data.path`", job_path.display()))?;
    let mut pairs = Vec::new();
    for name in &job.models.pairs {
        let spec = PairSpec::read(&job.models.dir, name)
            .with_context(|| format!("{}: field `models.pairs`: pair `{name}`", job_path.display()))?;
        spec.verify()?;
        check_contract_off_thread(&spec, backend)?;
        pairs.push(spec);
    }
    let local = opts.cluster.as_ref().map(processes_here).unwrap_or(1);
    let threads = job.torch_threads(job.run.workers * local);
    let clock = Clock::new(&dataset, job.run.batch_size, job.subset.epoch_shards);
    let perturb_batch = job.perturb_batch();
    let graph = GraphPlan {
        clock,
        placement,
        threads,
        max_pixels: job.data.max_pixels,
        top_fraction: job.subset.top_fraction,
        rank_all: job.perturbation.scope == PerturbScope::All,
        orders: Orders { baselines: job.perturbation.baselines.clone(), share: job.perturbation.baseline_share },
        pairs: pairs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let crop = spec.manifest.preprocess.crop as usize;
                PairPlan {
                    name: spec.name().to_string(),
                    preprocess: spec.manifest.preprocess.clone(),
                    explain: ExplainConfig {
                        sign: job.cam.sign,
                        wsol_threshold: job.wsol.threshold,
                        crop,
                        gaussian_sigma: job.baselines.gaussian_sigma,
                    },
                    perturb: (job.perturbation.scope != PerturbScope::None).then_some(PerturbConfig {
                        steps: job.perturbation.steps,
                        batch: perturb_batch,
                        crop,
                        gaussian_sigma: job.baselines.gaussian_sigma,
                        seed: job.baselines.seed,
                        reuse_known: job.perturbation.reuse_known_scores,
                    }),
                    writer: placement.writes_pair(i),
                    digest: crate::ledger::pair_digest(&job, spec),
                }
            })
            .collect(),
    };
    let settings = crate::ledger::settings_digest(&job, &pairs);
    Ok(Plan {
        out,
        fetch: Fetcher::new()?,
        max_in_flight: job.run.max_in_flight,
        batch_size: job.run.batch_size,
        job_path: job_path.to_path_buf(),
        resume: opts.resume,
        job,
        dataset,
        pairs,
        placement,
        settings,
        graph,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_says_who_computes_and_who_writes() {
        let gathered = Placement { process: 1, processes: 2, workers: 2, shared: false };
        assert_eq!((0..6).map(|s| gathered.computes(s)).collect::<Vec<_>>(), [0, 1, 2, 3, 0, 1]);
        assert!((0..6).all(|s| gathered.writes_shard(s) == 0));
        assert!(!gathered.holds_folder() && gathered.is_local(2) && !gathered.is_local(1));
        let shared = Placement { shared: true, ..gathered };
        assert_eq!((0..6).map(|s| shared.writes_shard(s)).collect::<Vec<_>>(), [0, 1, 2, 3, 0, 1]);
        assert_eq!(shared.writes_pair(5), 1);
    }
}
