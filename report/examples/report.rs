//! `qcam report` without building the `qcam` binary (which links libtorch):
//! `cargo run -p qcam-report --release --example report -- RUN_DIR`.

fn main() -> anyhow::Result<()> {
    let run_dir = std::env::args_os().nth(1).ok_or_else(|| anyhow::anyhow!("usage: report RUN_DIR"))?;
    print!("{}", report::report(std::path::Path::new(&run_dir))?);
    Ok(())
}
