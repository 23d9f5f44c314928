//! qcam's run, without libtorch: the job resolved into a [`plan`], the timely [`graph`] and its
//! [`sinks`], the [`drive`]r that feeds each worker, the run folder's [`ledger`], and the command
//! line ([`cli`]). Models come in through [`models::Backend`]: the `qcam` binary gives libtorch,
//! the [`fake`] backend makes every whole-run behaviour testable without it.
//!
//! Read [`graph`] first: it is the whole pipeline in one place. The paper's steps are the files of
//! the `operators` crate.

pub mod cli;
pub mod drive;
pub mod fake;
pub mod graph;
pub mod ledger;
pub mod models;
pub mod ops;
pub mod peers;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod reread;
pub mod run;
pub mod sinks;
pub mod soak;
pub mod spawn;

/// Version of the output schema (SPEC §8); a change to a table's definition bumps it, so a resume
/// never mixes parts of two schemas. 2: the `wsol` table and `perturbation.method` (baselines).
pub const SCHEMA_VERSION: u32 = 2;

/// Keeps glibc's allocator from growing a run's resident memory with every new thread. Each run
/// starts new worker threads; glibc gives new threads new arenas, and its dynamic mmap threshold
/// soon serves the multi-MB activation buffers of every batch from them, where freed memory stays
/// resident: RSS stepped up at unpredictable runs of a soak (444 → 527 → 546 MB over 30 runs).
/// One arena kept the same soak at 337 → 368 MB, flat after run 5, with fewer page faults (91 k
/// against 120–138 k per 48-image run) and no measurable cost in CPU time (benches/PERFORMANCE.md).
/// A `MALLOC_ARENA_MAX` the user set is kept. Call before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called while the process has one thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}
