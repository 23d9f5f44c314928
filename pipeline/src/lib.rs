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
///
/// It also keeps that arena's freed memory for the next batch. By default glibc hands large
/// buffers back to the kernel (an `mmap` per buffer until its dynamic threshold catches up, and a
/// heap trim whenever 2 × that threshold is free at the top), and every batch's activations then
/// came back as fresh pages the kernel had to zero: `clear_page_erms` was 14% of a phase-1 run's
/// CPU samples. With buffers up to 32 MB served from the heap and the heap trimmed only past 1 GB
/// free, the demo job's phase 1 (300 images, 2 workers; four interleaved A/B pairs) took 7.0–8.9 s
/// of system time against 7.6–14.3 s, 123–165 k page faults against 172–242 k, and 40.9–43.3 s of
/// wall (mean 42.1) against 40.2–49.0 s (mean 46.0), with the same peak RSS (1.13–1.28 GB against
/// 1.18–1.33 GB). A soak trims before it reads RSS, so what it judges is unchanged.
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or malloc `GLIBC_TUNABLES` the user set are
/// kept.
///
/// Transparent huge pages for libtorch's tensors (`THP_MEM_ALLOC_ENABLE=1`) were qcam's default
/// while every batch's activations came back as fresh pages. With the heap keeping them they cost:
/// 2 MB-aligned buffers in one arena, and 2 MB of zeroing per fault. The demo's phase 1 (1 × 1)
/// took 41.7 and 43.5 s without them against 47.8 and 52.9 s with them (two interleaved A/B
/// pairs; the bench's own runs that day: 40.4 s without, 45.0–58.2 s with), so qcam leaves the
/// variable to the user and libtorch's default (off).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        let tunables = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        // SAFETY: mallopt only sets allocator parameters; called while the process has one thread.
        unsafe {
            if !set("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            if !set("MALLOC_MMAP_THRESHOLD_") && !set("MALLOC_TRIM_THRESHOLD_") && !tunables {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        }
    }
}
