//! qcam's vocabulary, shared by every crate and owned by none of the steps: which side of a pair a
//! value belongs to, the records that flow through the graph, the rows of the output tables
//! (SPEC §8), the model manifest the exporter writes, and the run record. Plain data and serde only:
//! no kernels, no timely, no Arrow, no libtorch.

mod job;
mod manifest;
mod method;
mod names;
mod records;
mod run;
mod variant;
pub mod rng;

pub use job::*;
pub use manifest::*;
pub use method::Method;
pub use names::UnknownName;
pub use records::*;
pub use run::*;
pub use variant::{ByVariant, Variant};
