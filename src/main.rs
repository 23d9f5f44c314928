fn main() -> std::process::ExitCode {
    qcam::torch::prefer_huge_pages();
    pipeline::cli::main(std::sync::Arc::new(qcam::torch::TorchBackend::default()))
}
