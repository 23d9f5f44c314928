//! The Parquet that qcam writes opens in DuckDB and Polars (the real PyPI packages) with SPEC §8's
//! column names and types (the subset, WSOL and deletion/insertion tables included), and both readers
//! count the rows qcam wrote.

mod common;

use std::ffi::OsStr;

use pipeline::plan::RunOptions;
use pipeline::run::run;
use qcam::torch::TorchBackend;
use tables::read_table;

#[test]
fn duckdb_and_polars_read_the_spec_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let job = tmp.path().join("job.toml");
    let text = format!(
        "name = \"readers\"\n[data]\npath = \"{}\"\nlimit = 24\nshard_size = 10\n[models]\ndir = \"{}\"\npairs = [\"mobilenet_v2_qnnpack\"]\n[perturbation]\nsteps = 10\n[output]\ndir = \"{}\"\n",
        common::sample_dir().display(),
        common::models_dir().display(),
        out.display()
    );
    std::fs::write(&job, text).unwrap();
    run(&job, &RunOptions::default(), std::sync::Arc::new(TorchBackend::default())).unwrap();

    let script = common::repo_root().join("tests/reference/open_with_duckdb_polars.py");
    let stdout = common::run_python(&script, &[OsStr::new(out.as_os_str())]);
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // k = ceil(0.05 · 24) = 2 subset images, each perturbed under both variants with EigenCAM's
    // order, and ceil(0.2 · 2) = 1 of them under the two baselines' too; WSOL per image and variant
    // for EigenCAM and the two WSOL baselines.
    let tables = [("images", 24 * 2), ("pairs", 24), ("wsol", 24 * 2 * 3), ("subset", 2), ("perturbation", 2 * 2 + 2 * 2)];
    for (table, expected) in tables {
        let ours: usize = read_table(&out, table).unwrap().iter().map(|b| b.num_rows()).sum();
        assert_eq!(ours, expected, "{table} rows written");
        assert_eq!(summary[table]["duckdb"], expected, "{table} rows seen by DuckDB");
        assert_eq!(summary[table]["polars"], expected, "{table} rows seen by Polars");
    }
    assert_eq!(summary["malformed_image_rows"], 0);
    assert_eq!(summary["malformed_perturbation_rows"], 0);
    assert_eq!(summary["malformed_wsol_rows"], 0);
    // The Gaussian map and the whole crop give every image the same box: one each per pair.
    assert_eq!(summary["baseline_boxes"], serde_json::json!({"full": 1, "gaussian": 1}));
    assert!(summary["max_hist_sum_error"].as_f64().unwrap() < 1e-5, "{summary}");
}
