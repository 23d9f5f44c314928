//! `qcam` with the deterministic fake model backend instead of libtorch: the same command line,
//! for testing everything around the models (layouts, resume, append, bad input, locks, clusters)
//! in seconds, without libtorch or Python. Its numbers mean nothing.

fn main() -> std::process::ExitCode {
    pipeline::cli::main(std::sync::Arc::new(pipeline::fake::FakeBackend))
}
