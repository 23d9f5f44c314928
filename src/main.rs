fn main() -> std::process::ExitCode {
    pipeline::cli::main(std::sync::Arc::new(qcam::torch::TorchBackend::default()))
}
