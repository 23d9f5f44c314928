//! The run record (SPEC §8 `run.json`).

/// The run record in a run folder; a multi-process run writes `run.process-<i>.json`.
pub const RUN_FILE: &str = "run.json";
