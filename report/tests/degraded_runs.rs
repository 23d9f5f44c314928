//! A report never fails for what a run lacks: an older run without subset and perturbation tables,
//! an empty subset, or a data source that is no longer reachable each become a line saying so.

mod common;

use std::ffi::OsStr;

use common::{assert_same, read_csv, write_images, write_run, Tables, ALL_TABLES, OLD_RUN, PAIRS};

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn old_run_without_subset_or_perturbation() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    write_run(&run_dir, &tmp.path().join("no-data"), OLD_RUN);
    let md = report::report(&run_dir).unwrap();
    for title in ["Tables 4–5", "Figure 2", "Tables 6–7", "Table 10", "Figure 3"] {
        let at = md.find(&format!("### {title}")).unwrap_or_else(|| panic!("no section {title}:\n{md}"));
        assert!(md[at..].lines().nth(2).unwrap().starts_with("Absent: "), "{title}:\n{md}");
    }
    assert!(md.contains("this run has no `subset` table"), "{md}");
    assert!(md.contains("this run has no `perturbation` table"), "{md}");
    assert_eq!(
        files(&run_dir.join("report")),
        [
            "report.md",
            "table01_classification.csv",
            "table03_rmse.csv",
            "table08_timing.csv",
            "table11_wsol.csv",
            "table12_paired.csv"
        ]
    );
    // Table 12 compares what the run has: all images, no subset or perturbed rows.
    let t12 = read_csv(&run_dir.join("report/table12_paired.csv"));
    assert!(t12.len() == 8 * PAIRS.len() && t12.iter().all(|r| r["scope"] == "all"), "{t12:?}");
    // Table 3 still gives the all-image columns; the subset ones are empty.
    let t3 = read_csv(&run_dir.join("report/table03_rmse.csv"));
    assert_eq!(t3.len(), PAIRS.len());
    for r in &t3 {
        assert!(!r["mean_rmse"].is_empty() && r["subset_mean_rmse"].is_empty() && r["subset_images"] == "0", "{r:?}");
    }
    // DuckDB and Polars, reading the same run, agree: NULL subset averages, no Table 10 rows.
    let script = common::workspace_root().join("report/analysis/tables.py");
    let python: serde_json::Value =
        serde_json::from_str(&common::run_python(&script, &[OsStr::new(run_dir.as_os_str())])).unwrap();
    for engine in ["duckdb", "polars"] {
        assert_same("table03", engine, &t3, &python[engine]["table03"]);
        assert_eq!(python[engine]["table10"], serde_json::json!([]), "{engine}");
    }
    // WSOL over all images only.
    let t11 = read_csv(&run_dir.join("report/table11_wsol.csv"));
    assert!(t11.iter().all(|r| r["scope"] == "all") && t11.len() == 2 * PAIRS.len());
}

#[test]
fn figure3_skipped_when_the_data_is_gone_and_stale_figures_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, data_dir) = (tmp.path().join("run"), tmp.path().join("data"));
    write_images(&data_dir);
    write_run(&run_dir, &data_dir, ALL_TABLES);
    report::report(&run_dir).unwrap();
    assert!(run_dir.join("report/figure03_alpha_net.png").is_file());

    std::fs::remove_dir_all(&data_dir).unwrap();
    let md = report::report(&run_dir).unwrap();
    assert!(md.contains("Figure 3 skipped: the run's data source is not readable here"), "{md}");
    assert!(!run_dir.join("report/figure03_alpha_net.png").exists(), "a stale Figure 3 survived");
    // Everything else is still there.
    assert!(run_dir.join("report/figure02_histograms.png").is_file());
    assert!(run_dir.join("report/table10_perturbation.csv").is_file());
}

#[test]
fn empty_subset_table_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    write_run(&run_dir, &tmp.path().join("no-data"), Tables { subset: false, perturbation: true, baselines: false });
    tables::write_part::<types::SubsetRow>(&run_dir, "final", &[]).unwrap();
    let md = report::report(&run_dir).unwrap();
    assert!(md.contains("Absent: the `subset` table of this run is empty."), "{md}");
    assert!(run_dir.join("report/table10_perturbation.csv").is_file());
}
