//! Results never depend on the worker layout: every table (timing columns aside) of the 300 sample
//! images with three pairs, from `images` to `perturbation`, is identical for 1 thread, 2 threads,
//! and 2 processes on loopback started through `qcam spawn`, and the row counts are exact.

mod common;

use std::path::Path;

use common::{assert_same_rows, canonical, run_qcam};

const PAIRS: [&str; 3] = ["efficientnet_lite0", "mobilenet_v2_qnnpack", "resnet18_random"];

fn write_job(dir: &Path) -> std::path::PathBuf {
    // torch_threads is pinned so every layout runs the same libtorch kernels; only the timely
    // layout varies between the three runs.
    let text = format!(
        r#"name = "layout-test"
[data]
path = "{}"
shard_size = 40
[models]
dir = "{}"
pairs = [{}]
[run]
batch_size = 8
torch_threads = 1
[subset]
top_fraction = 0.02
epoch_shards = 2
[perturbation]
steps = 5
[output]
dir = "{}"
"#,
        common::sample_dir().display(),
        common::models_dir().display(),
        PAIRS.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
        dir.join("unused").display()
    );
    let job = dir.join("job.toml");
    std::fs::write(&job, text).unwrap();
    job
}

#[test]
fn tables_are_identical_across_threads_and_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let job = write_job(tmp.path());
    let job = job.to_str().unwrap();
    let one = tmp.path().join("one-thread");
    let two = tmp.path().join("two-threads");
    let procs = tmp.path().join("two-processes");
    run_qcam(&["run", job, "--out", one.to_str().unwrap(), "-w", "1"]);
    run_qcam(&["run", job, "--out", two.to_str().unwrap(), "-w", "2"]);
    run_qcam(&["spawn", "-n", "2", "--", "run", job, "--out", procs.to_str().unwrap(), "-w", "1"]);

    let images = 300;
    for table in ["images", "pairs"] {
        let reference = canonical(&one, table);
        let per_image = if table == "images" { PAIRS.len() * 2 } else { PAIRS.len() };
        assert_eq!(reference.len(), images * per_image, "{table}: rows = images × pairs{}", if table == "images" { " × 2" } else { "" });
        for other in [&two, &procs] {
            assert_same_rows(&reference, other, table, &format!("in {}", other.display()));
        }
    }
    // Selection, aggregates and deletion/insertion: k = ceil(0.02 · 300) = 6 per pair.
    for (table, rows) in [("subset", 6 * PAIRS.len()), ("aggregates", 300usize.div_ceil(40).div_ceil(2) * PAIRS.len() * 2), ("perturbation", 6 * PAIRS.len() * 2)] {
        let reference = canonical(&one, table);
        assert_eq!(reference.len(), rows, "{table} rows");
        for other in [&two, &procs] {
            assert_same_rows(&reference, other, table, &format!("in {}", other.display()));
        }
    }
    // Part files: one per shard, whoever wrote them.
    let parts = |dir: &Path| std::fs::read_dir(dir.join("images")).unwrap().count();
    assert_eq!(parts(&one), 300usize.div_ceil(40));
    assert_eq!(parts(&procs), parts(&one));
}
