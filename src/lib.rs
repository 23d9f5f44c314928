//! qcam: explain and compare float and int8 CNNs with EigenCAM at ImageNet scale, on timely-dataflow.
//!
//! This crate is the `qcam` binary's libtorch backend ([`torch`]); the run itself is the `pipeline`
//! crate (start with `pipeline::graph`), the paper's steps are the `operators` crate.

pub mod torch;

pub use pipeline;
