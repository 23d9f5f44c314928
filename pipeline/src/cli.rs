//! The `qcam` command line. Thin: each subcommand parses its flags and calls one library function.
//! The binary chooses the model backend: libtorch in `qcam`, the fake one in `qcam-fake`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use crate::models::Backend;
use crate::plan::{ClusterOptions, RunOptions};

#[derive(Parser)]
#[command(name = "qcam", version, about = "Quantization-aware EigenCAM evaluation of float vs int8 CNNs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file: decode → dual inference → EigenCAM → compare → WSOL → stats → Parquet.
    Run {
        /// The job file (jobs/*.toml).
        job: PathBuf,
        /// Data folder (overrides the job's data.path).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output folder, or an `s3://` / `gs://` URL (overrides the job's output.dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exported model pairs folder (overrides the job's models.dir).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Worker threads per process (overrides the job's run.workers).
        #[arg(short = 'w', long)]
        workers: Option<usize>,
        /// Only the first N images, by id (overrides the job's data.limit).
        #[arg(long)]
        limit: Option<usize>,
        /// Replace an existing output folder.
        #[arg(long, conflicts_with_all = ["resume", "append"])]
        overwrite: bool,
        /// Continue an interrupted run in the output folder: finished shards are kept, partial ones
        /// redone, and selection and deletion/insertion completed.
        #[arg(long)]
        resume: bool,
        /// Add the shards the data now has to a finished run in the output folder: only the new
        /// shards are computed; subset, aggregates and deletion/insertion are brought up to date.
        #[arg(long)]
        append: bool,
        /// Soak test: run the job this many times in one process, into the same folder, and fail
        /// if the tables ever differ or memory or open files grow (writes soak.json).
        #[arg(long, default_value_t = 1, conflicts_with_all = ["resume", "append", "hostfile"])]
        repeat: usize,
        /// This process's index in a multi-process run.
        #[arg(short = 'p', long, requires = "hostfile")]
        process: Option<usize>,
        /// Hostfile: one `host:port` per line, one line per process.
        #[arg(long = "hostfile")]
        hostfile: Option<PathBuf>,
    },
    /// Pack a dataset (Kaggle or ILSVRC layout, or shards) into WebDataset-style tar shards plus an
    /// index.json: the unit of distribution for clusters and object stores.
    Shard {
        /// The dataset folder (or URL of a shard folder).
        data: PathBuf,
        /// Output folder for shard-NNNNN.tar and index.json.
        #[arg(long)]
        out: PathBuf,
        /// Images per shard.
        #[arg(long, default_value_t = 1000)]
        shard_size: usize,
        /// Only the first N images (sorted by id).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Start N processes of one command on loopback, as one timely cluster, and wait for them all:
    /// `qcam spawn -n 2 -- run jobs/demo.toml`.
    Spawn {
        /// Number of processes.
        #[arg(short = 'n', long, default_value_t = 2)]
        processes: usize,
        /// The qcam command each process runs (it gets `--process i --hostfile FILE` appended).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print the report of a finished run: a folder, or an `s3://` / `gs://` URL.
    Report {
        run_dir: PathBuf,
        /// For a run in an object store: the local folder its tables are copied to and the report
        /// is written in (its tables there are replaced). Default: under `$XDG_CACHE_HOME/qcam/runs`.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

/// Runs the command line with `backend` running the models. Call first thing in `main`, while the
/// process has one thread.
pub fn main(backend: Arc<dyn Backend>) -> ExitCode {
    crate::tune_allocator();
    // One line per panic, naming the thread: a lost peer is "timely:recv-1 … socket closed", not
    // a backtrace. Worker panics are also caught and end the run with their message.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
        eprintln!("qcam: thread {thread} failed: {message}{at}");
    }));
    let cli = Cli::parse();
    match dispatch(cli.command, backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qcam: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command, backend: Arc<dyn Backend>) -> anyhow::Result<()> {
    match command {
        Command::Run { job, data, out, models, workers, limit, overwrite, resume, append, repeat, process, hostfile } => {
            let cluster = match hostfile {
                Some(h) => Some(ClusterOptions { process: process.unwrap_or(0), addresses: read_hostfile(&h)? }),
                None => None,
            };
            // Process 0 holds the run folder and commits it last: it reports.
            let reports = cluster.as_ref().is_none_or(|c| c.process == 0);
            let resume = resume || append;
            let opts = RunOptions { data, out, models_dir: models, workers, limit, overwrite, resume, cluster };
            let out =
                if repeat > 1 { crate::soak::soak(&job, &opts, repeat, backend)? } else { crate::run::run(&job, &opts, backend)? };
            if reports {
                println!("{}", crate::remote::report(&out, None)?);
            }
            Ok(())
        }
        Command::Shard { data, out, shard_size, limit } => {
            let cfg = types::DataConfig::at(data, limit);
            let dataset = sources::Dataset::open(&cfg)?;
            let dims = |bytes: &[u8]| operators::decode::image_dimensions(bytes).ok();
            let index = sources::write_shards(&dataset, &out, shard_size, dims)?;
            let errors: usize = index.shards.iter().map(|s| s.errors.len()).sum();
            println!(
                "qcam shard: {} images in {} shards ({} listed as errors) -> {}",
                index.total,
                index.shards.len(),
                errors,
                out.display()
            );
            Ok(())
        }
        Command::Spawn { processes, command } => crate::spawn::spawn_local(processes, &command),
        Command::Report { run_dir, cache } => {
            let dir = tables::RunDir::parse(&run_dir)?;
            println!("{}", crate::remote::report(&dir, cache.as_deref())?);
            Ok(())
        }
    }
}

fn read_hostfile(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    check_hostfile(&hosts).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(hosts)
}

/// timely's TCP transport is unauthenticated and each process binds exactly its hostfile address.
/// A file mixing loopback with other addresses is a mistake either way: the loopback processes
/// cannot be reached, or a private cluster was about to listen on a wider network than meant.
fn check_hostfile(hosts: &[String]) -> Result<(), String> {
    if hosts.is_empty() {
        return Err("no host:port lines".into());
    }
    let mut loopback = Vec::new();
    for (line, h) in hosts.iter().enumerate() {
        let (host, port) = h.rsplit_once(':').ok_or_else(|| format!("entry {} `{h}` is not host:port", line + 1))?;
        port.parse::<u16>().map_err(|_| format!("entry {} `{h}`: bad port", line + 1))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let is_loopback = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        };
        loopback.push(is_loopback);
    }
    if loopback.iter().any(|&l| l) && loopback.iter().any(|&l| !l) {
        return Err("mixes loopback and non-loopback addresses; use one or the other".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_hostfile;

    fn hosts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hostfile_rules() {
        assert!(check_hostfile(&hosts(&["127.0.0.1:2101", "localhost:2102", "[::1]:2103"])).is_ok());
        assert!(check_hostfile(&hosts(&["10.0.0.1:2101", "node-b:2101"])).is_ok());
        let err = check_hostfile(&hosts(&["127.0.0.1:2101", "10.0.0.2:2101"])).unwrap_err();
        assert!(err.contains("mixes loopback"), "{err}");
        assert!(check_hostfile(&hosts(&["10.0.0.1"])).unwrap_err().contains("host:port"));
        assert!(check_hostfile(&hosts(&["10.0.0.1:http"])).unwrap_err().contains("bad port"));
        assert!(check_hostfile(&[]).is_err());
    }
}
