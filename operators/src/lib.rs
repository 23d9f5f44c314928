//! The paper's steps, one file each. Every file holds pure kernels (plain slices and small structs in,
//! plain data out, unit-tested against independent references) and, where the step is a dataflow
//! operator, a thin timely wrapper around them. Nothing here links libtorch: inference reaches the
//! graph through the [`infer::Forward`] trait, which the `qcam` crate implements with tch.

pub mod infer;
pub mod decode;
pub mod eigencam;
pub mod compare;
pub mod wsol;
pub mod stats;
pub mod explain;
pub mod subset;
pub mod perturb;
pub mod pool;
pub mod par;
pub mod baselines;


#[cfg(test)]
mod test_rng;
