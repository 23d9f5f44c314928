//! `qcam report` on a synthetic run, checked against analyses that do not share its code: Tables 3
//! and 10 against DuckDB (report/analysis/*.sql) and Polars (report/analysis/tables.py) over the
//! same Parquet, and the other tables against sums over the rows the test wrote.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use common::{assert_same, close, num, read_csv, write_images, write_run, Synthetic, ALL_TABLES, IMAGES, PAIRS, SUBSET};
use types::ImageRow;

const REL: f64 = 1e-6;

fn setup(tmp: &Path) -> (std::path::PathBuf, Synthetic) {
    let (run_dir, data_dir) = (tmp.join("run"), tmp.join("data"));
    write_images(&data_dir);
    let s = write_run(&run_dir, &data_dir, ALL_TABLES);
    (run_dir, s)
}

#[test]
fn tables_3_and_10_equal_duckdb_and_polars() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, _) = setup(tmp.path());
    let markdown = report::report(&run_dir).unwrap();
    assert!(markdown.contains("### Table 3"), "{markdown}");
    assert!(markdown.contains("the top 10 % of each pair's images by RMSE"), "{markdown}");

    let script = common::workspace_root().join("report/analysis/tables.py");
    let stdout = common::run_python(&script, &[OsStr::new(run_dir.as_os_str())]);
    let python: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let out = run_dir.join("report");
    let table03 = read_csv(&out.join("table03_rmse.csv"));
    let table10 = read_csv(&out.join("table10_perturbation.csv"));
    assert_eq!(table03.len(), PAIRS.len());
    assert_eq!(table10.len(), 2 * PAIRS.len());
    for engine in ["duckdb", "polars"] {
        assert_same("table03", engine, &table03, &python[engine]["table03"]);
        assert_same("table10", engine, &table10, &python[engine]["table10"]);
    }
    // The Python side really compared the subset columns (a join that matched nothing would give nulls).
    for row in python["duckdb"]["table03"].as_array().unwrap() {
        assert_eq!(row["subset_images"], SUBSET, "{row}");
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    assert!(!v.is_empty());
    v.iter().sum::<f64>() / v.len() as f64
}

fn csv_row<'a>(rows: &'a [BTreeMap<String, String>], keys: &[(&str, &str)]) -> &'a BTreeMap<String, String> {
    rows.iter()
        .find(|r| keys.iter().all(|(k, v)| r[*k] == *v))
        .unwrap_or_else(|| panic!("no row {keys:?} in {rows:?}"))
}

#[test]
fn per_variant_tables_equal_sums_over_the_rows_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, s) = setup(tmp.path());
    let markdown = report::report(&run_dir).unwrap();
    let out = run_dir.join("report");
    let in_subset = |r: &ImageRow| s.subset.iter().any(|x| x.model == r.model && x.image_id == r.image_id);
    let t01 = read_csv(&out.join("table01_classification.csv"));
    let t04 = read_csv(&out.join("table04_activations.csv"));
    let t06 = read_csv(&out.join("table06_subset_accuracy.csv"));
    let t08 = read_csv(&out.join("table08_timing.csv"));
    let t11 = read_csv(&out.join("table11_wsol.csv"));
    let dice = read_csv(&out.join("figure02_dice.csv"));
    for (model, float_w, quant_w) in PAIRS {
        fn kind(w: &str) -> &str {
            match w.split_once(':').unwrap().0 {
                "pretrained" => "real",
                other => other,
            }
        }
        let mut total_ms = BTreeMap::new();
        for (variant, w) in [("float", float_w), ("quantized", quant_w)] {
            let rows: Vec<&ImageRow> = s.images.iter().filter(|r| r.model == model && r.variant.as_str() == variant).collect();
            let sub: Vec<&ImageRow> = rows.iter().copied().filter(|r| in_subset(r)).collect();
            assert_eq!((rows.len(), sub.len()), (IMAGES, SUBSET));
            let key = [("model", model), ("variant", variant)];

            let r = csv_row(&t01, &key);
            assert_eq!(r["weights"], kind(w), "provenance of {model} {variant}");
            let top1 = 100.0 * mean(rows.iter().map(|r| r.top1_correct as u8 as f64));
            assert!(close(num(r, "top1_pct"), top1, REL), "{model} {variant} top-1");

            let r = csv_row(&t04, &key);
            for (column, f) in [
                ("act_entropy_bits", (|r: &ImageRow| r.act_entropy) as fn(&ImageRow) -> f64),
                ("act_std", |r| r.act_std),
                ("act_sparsity_pct", |r| r.act_sparsity),
            ] {
                assert!(close(num(r, column), mean(sub.iter().map(|r| f(r))), REL), "{model} {variant} {column}");
            }

            let r = csv_row(&t06, &key);
            let top5 = 100.0 * mean(sub.iter().map(|r| r.top5_correct as u8 as f64));
            assert!(close(num(r, "top5_pct"), top5, REL), "{model} {variant} subset top-5");

            let r = csv_row(&t08, &key);
            let total = mean(rows.iter().map(|r| r.infer_ms as f64 + r.cam_ms as f64));
            assert!(close(num(r, "total_ms"), total, REL), "{model} {variant} total ms");
            total_ms.insert(variant, total);
            if variant == "quantized" {
                assert!(close(num(r, "speedup_vs_float"), total_ms["float"] / total, REL), "{model} speed-up");
            }

            for (scope, set) in [("all", &rows), ("subset", &sub)] {
                let r = csv_row(&t11, &[("model", model), ("variant", variant), ("scope", scope)]);
                let curves: Vec<Vec<f32>> = set.iter().map(|r| r.iou_curve.clone()).collect();
                let mba = 100.0 * operators::wsol::max_box_acc_v2(&curves) as f64;
                assert!(close(num(r, "maxboxacc_v2_pct"), mba, 1e-5), "{model} {variant} {scope} MaxBoxAccV2");
                let loc = 100.0 * mean(set.iter().map(|r| operators::wsol::top1_loc(r.top1_correct, r.iou) as u8 as f64));
                assert!(close(num(r, "top1_loc_pct"), loc, REL), "{model} {variant} {scope} top-1 loc");
                assert!(close(num(r, "mean_iou"), mean(set.iter().map(|r| r.iou as f64)), REL));
            }
        }
        // Figure 2's Dice, from the f32 histograms through the operator's own formula.
        let hist = |variant: &str| -> Vec<f32> {
            let sub: Vec<&ImageRow> =
                s.images.iter().filter(|r| r.model == model && r.variant.as_str() == variant && in_subset(r)).collect();
            (0..256).map(|b| (sub.iter().map(|r| r.act_hist[b] as f64).sum::<f64>() / sub.len() as f64) as f32).collect()
        };
        let expected = operators::stats::dice(&hist("float"), &hist("quantized"));
        let r = csv_row(&dice, &[("model", model)]);
        assert!(close(num(r, "dice"), expected, 1e-5), "{model} Dice {} vs {expected}", r["dice"]);
        assert!(expected < 0.999, "the synthetic histograms differ, so Dice is informative");
    }

    // Figures: Figure 2 once, Figure 3 per pair with its top-5 rows drawn from the real pixels.
    assert!(!markdown.contains("skipped"), "{markdown}");
    let f2 = image::open(out.join("figure02_histograms.png")).unwrap();
    assert_eq!((f2.width(), f2.height()), (1240, 800));
    for (model, _, _) in PAIRS {
        let f3 = image::open(out.join(format!("figure03_{model}.png"))).unwrap().to_rgb8();
        // 4 rows (the subset has 4 images, fewer than top-5) of 3 tiles of 224 px.
        assert_eq!((f3.width(), f3.height()), (3 * 224 + 40, 34 + 22 + 4 * (22 + 224 + 10) + 10), "{model}");
        assert!(markdown.contains(&format!("![Figure 3: {model}](figure03_{model}.png)")));
    }
    let written = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(written, markdown);
}

/// The README shows the exact SQL and Polars code that this test runs.
#[test]
fn readme_shows_the_code_that_is_tested() {
    let root = common::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let analysis = root.join("report/analysis");
    for sql in ["table3.sql", "table10.sql"] {
        let text = std::fs::read_to_string(analysis.join(sql)).unwrap();
        assert!(readme.contains(&text), "README does not show {sql} as it is");
    }
    let py = std::fs::read_to_string(analysis.join("tables.py")).unwrap();
    let polars = &py[py.find("def with_polars").unwrap()..py.find("\n\n\nif __name__").unwrap()];
    assert!(readme.contains(polars), "README does not show with_polars as it is");
}
