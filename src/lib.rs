//! qcam: explain and compare float and int8 CNNs with EigenCAM at ImageNet scale, on timely-dataflow.
//!
//! Read [`graph`] first: it is the whole pipeline in one place. The paper's steps are the files of
//! the `operators` crate; this crate holds what connects them to the world: jobs, data, models,
//! Parquet output and reports.

pub mod cli;
pub mod graph;
pub mod job;
pub mod ledger;
pub mod models;
pub mod progress;
pub mod run;
pub mod spawn;

/// Version of the output schema (SPEC §8); a change to a definition in SPEC.md bumps it.
pub const SCHEMA_VERSION: u32 = 1;
