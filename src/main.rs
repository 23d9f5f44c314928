fn main() -> std::process::ExitCode {
    qcam::cli::main()
}
