//! The run record (SPEC §8 `run.json`): what produced a run folder's tables, written when the run
//! commits and read back by the same struct.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Job, Layout, Manifest};

/// The run record in a run folder.
pub const RUN_FILE: &str = "run.json";

/// Versions of what computed the numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub qcam: String,
    /// What ran the models, e.g. `libtorch 2.13.0+cu130 via tch 0.26`.
    pub runtime: String,
    pub timely: String,
}

/// What became of one pair's images over the whole folder: each listed image is either a `pairs`
/// row of the pair (`rows_ok`) or an `errors` row of it (`rows_error`; an error with no model, from
/// reading, labels or decoding, counts against every pair), so `images_in = rows_ok + rows_error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    #[serde(flatten)]
    pub counts: PairCounts,
}

/// Counts and timings of one worker of the last invocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub worker: usize,
    /// Shards this worker read and computed.
    pub shards: usize,
    /// Images this worker read and computed.
    pub images_in: usize,
    /// Images of finished shards whose rows this worker read back.
    pub images_reused: usize,
    pub torch_threads: usize,
    /// Seconds until this worker saw every shard's parts written (read, decode, infer, explain,
    /// sinks). Deletion/insertion starts as soon as selection is final, and a worker inside one of
    /// its activations (a shard's subset images) sees the end of phase 1 only after it: the
    /// smallest value over the workers is when phase 1 ended.
    pub phase1_s: f64,
    /// Seconds in deletion/insertion (re-reading the images included).
    pub perturb_s: f64,
    /// Of those, seconds inside the model forwards.
    pub perturb_forward_s: f64,
    /// Seconds this worker waited, over the whole run, for another worker's models to release
    /// libtorch's quantized engine (pairs of different engines cannot run int8 forwards at once).
    #[serde(default)]
    pub engine_wait_s: f64,
    pub wall_s: f64,
}

/// `run.json`. The counts describe the whole folder; the workers and timings, the invocation that
/// last completed it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub job: Job,
    pub versions: Versions,
    pub pairs: Vec<PairRecord>,
    pub data_layout: Layout,
    pub images_listed: usize,
    pub shards: usize,
    /// Shards this invocation read back from an earlier one instead of computing.
    pub shards_reused: usize,
    pub processes: usize,
    pub workers_per_process: usize,
    pub started_unix_s: u64,
    pub wall_s: f64,
    pub workers: Vec<WorkerReport>,
}
