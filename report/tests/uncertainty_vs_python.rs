//! The report's intervals and paired tests against implementations that share none of its code:
//! every interval against `scipy.stats.bootstrap(method='percentile')` on the same draws (redrawn in
//! Python from the README's recipe), Table 12's tests against `scipy.stats.wilcoxon` and statsmodels'
//! `mcnemar(exact=True)`, also on hand-made cases of every branch; reruns are byte-identical; DuckDB
//! and Polars read the new CSVs with the documented types.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{close, read_csv, report_csvs, set_report_config, write_run, Rng, ALL_TABLES, PAIRS};
use report::paired::{mcnemar, wilcoxon, PMethod, Test};
use serde_json::{json, Value};

/// A synthetic run (no image folder: Figure 3 is not what these tests look at).
fn run(tmp: &Path, config: Option<Value>) -> PathBuf {
    let run_dir = tmp.join("run");
    write_run(&run_dir, &tmp.join("no-data"), ALL_TABLES);
    set_report_config(&run_dir, config);
    run_dir
}

fn python_json(script: &str, arg: &Path) -> Value {
    let script = common::workspace_root().join("report/analysis").join(script);
    serde_json::from_str(&common::run_python(&script, &[OsStr::new(arg.as_os_str())])).unwrap()
}

/// The CSV row whose key columns (those of model, variant, scope, metric, method the Python row
/// has) match.
fn matching<'a>(rows: &'a [BTreeMap<String, String>], theirs: &Value) -> &'a BTreeMap<String, String> {
    let keys: Vec<(&str, &str)> = ["model", "variant", "scope", "metric", "method"]
        .into_iter()
        .filter_map(|k| Some((k, theirs.get(k)?.as_str()?)))
        .collect();
    let found: Vec<_> = rows.iter().filter(|r| keys.iter().all(|(k, v)| r[*k] == *v)).collect();
    assert_eq!(found.len(), 1, "{keys:?}: {} rows", found.len());
    found[0]
}

#[test]
fn every_interval_and_paired_test_equals_scipy_and_statsmodels() {
    let tmp = tempfile::tempdir().unwrap();
    // Not the defaults, so the knobs are seen to reach the draws and the quantiles.
    let run_dir = run(tmp.path(), Some(json!({"resamples": 1000, "seed": 20260101, "confidence": 0.9})));
    let md = report::report(&run_dir).unwrap();
    assert!(md.contains("90 % percentile bootstrap interval over images (1000 resamples, seed 20260101)"), "{md}");
    let python = python_json("uncertainty.py", &run_dir);
    let (mut intervals, mut inside, mut tests) = (0, 0, BTreeMap::new());
    for (stem, rows) in python.as_object().unwrap() {
        let csv = read_csv(&run_dir.join("report").join(format!("{stem}.csv")));
        let rows = rows.as_array().unwrap();
        assert_eq!(csv.len(), rows.len(), "{stem}: rows");
        assert!(!rows.is_empty(), "{stem}: nothing compared");
        for theirs in rows {
            let ours = matching(&csv, theirs);
            for (column, value) in theirs.as_object().unwrap() {
                let cell = ours.get(column).unwrap_or_else(|| panic!("{stem}: no column {column}"));
                let at = format!("{stem} {theirs} {column}");
                match value {
                    Value::String(s) => assert_eq!(cell, s, "{at}"),
                    // MaxBoxAccV2 is an f32 in the operator; everything else an f64.
                    Value::Number(n) => {
                        let rel = if column.starts_with("maxboxacc") { 1e-6 } else { 1e-9 };
                        let (a, b) = (common::num(ours, column), n.as_f64().unwrap());
                        assert!(close(a, b, rel) || (a - b).abs() < 1e-12, "{at}: report {a} vs {b}");
                    }
                    other => panic!("{at}: unexpected {other}"),
                }
                if let Some(base) = column.strip_suffix("_lo") {
                    intervals += 1;
                    let hi = common::num(ours, &format!("{base}_hi"));
                    let (lo, v) = (common::num(ours, column), common::num(ours, base));
                    inside += (lo < v && v < hi) as usize;
                }
            }
            if let Some(Value::String(method)) = theirs.get("p_method") {
                *tests.entry(method.clone()).or_insert(0) += 1;
            }
        }
    }
    // The comparison covered real intervals (not all degenerate) and every kind of p the synthetic run
    // gives: exact (n ≤ 50, no zero), exact flips (subset of 4 with a zero IoU difference), normal (40
    // pairs with zeros), McNemar's exact.
    assert!(intervals > 200 && inside > intervals / 2, "{intervals} intervals, {inside} strictly around their value");
    for method in ["exact", "exact_flips", "normal"] {
        assert!(tests.get(method).is_some_and(|&n| n > 0), "no `{method}` p compared: {tests:?}");
    }
    let t12 = read_csv(&run_dir.join("report/table12_paired.csv"));
    assert_eq!(t12.len(), PAIRS.len() * (8 + 8 + 2));
    assert!(t12.iter().any(|r| r["test"] == "mcnemar") && t12.iter().any(|r| r["test"] == "wilcoxon"));
    // Table 13: every variant × method of every pair, compared above; the baselines' AUCs over the
    // baselined images only, EigenCAM's beside them on the same images.
    let t13 = read_csv(&run_dir.join("report/table13_baselines.csv"));
    assert_eq!(t13.len(), PAIRS.len() * 2 * 4);
    for r in &t13 {
        let wsol = r["method"] != "random";
        let auc = r["method"] != "full";
        assert_eq!(r["images"] == common::IMAGES.to_string(), wsol, "{r:?}");
        assert_eq!(r["auc_images"] == common::BASELINED.to_string(), auc, "{r:?}");
    }
}

/// Differences of a shape the report meets: continuous values, some repeated, some zero.
fn diffs(rng: &mut Rng, n: usize, zero_every: usize, levels: u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if zero_every > 0 && i % zero_every == 0 {
                return 0.0;
            }
            let x = if levels > 0 { (rng.below(levels) + 1) as f64 / 8.0 } else { rng.unit() as f64 - 0.3 };
            if rng.unit() < 0.4 { -x } else { x }
        })
        .collect()
}

#[test]
fn wilcoxon_and_mcnemar_equal_scipy_and_statsmodels_on_every_branch() {
    let mut rng = Rng::new(5);
    let mut cases: Vec<(Vec<f64>, PMethod)> = vec![
        (vec![1.0, 2.0, 3.0], PMethod::Exact),
        (diffs(&mut rng, 20, 0, 0), PMethod::Exact),
        (diffs(&mut rng, 50, 0, 0), PMethod::Exact),
        (diffs(&mut rng, 51, 0, 0), PMethod::Normal),
        (diffs(&mut rng, 13, 4, 3), PMethod::ExactFlips), // zeros and ties
        (diffs(&mut rng, 12, 0, 2), PMethod::ExactFlips), // ties only
        (diffs(&mut rng, 14, 5, 0), PMethod::Normal),     // one zero too many for the flips
        (diffs(&mut rng, 40, 3, 5), PMethod::Normal),     // zeros and heavy ties
        (diffs(&mut rng, 400, 7, 0), PMethod::Normal),
        (vec![0.0, 0.0, 0.0, 0.25], PMethod::ExactFlips),
        (vec![0.0; 10], PMethod::AllZero),
        (vec![0.0; 13], PMethod::AllZero),
    ];
    // Where scipy and the report differ on purpose: every difference zero beyond 13 pairs.
    cases.push((vec![0.0; 60], PMethod::AllZero));
    let discordant: Vec<(usize, usize)> =
        vec![(3, 0), (0, 3), (0, 0), (5, 1), (1, 0), (2, 1), (10, 10), (30, 12), (200, 150), (900, 1000), (0, 25)];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    let d: Vec<&Vec<f64>> = cases.iter().map(|(d, _)| d).collect();
    std::fs::write(&file, json!({"wilcoxon": d, "mcnemar": discordant}).to_string()).unwrap();
    let scipy = python_json("paired_reference.py", &file);

    for ((d, method), theirs) in cases.iter().zip(scipy["wilcoxon"].as_array().unwrap()) {
        let ours = wilcoxon(d).unwrap();
        let at = format!("n={} {method:?} {theirs}", d.len());
        assert_eq!((ours.test, ours.p_method, ours.n), (Test::Wilcoxon, *method, d.len()), "{at}");
        assert_eq!(ours.statistic, theirs["statistic"].as_f64().unwrap(), "{at}");
        match theirs["pvalue"].as_f64() {
            Some(p) => assert!(close(ours.p_value, p, 1e-9), "{at}: p {} vs {p}", ours.p_value),
            None => {
                // Only where every difference is zero beyond 13 pairs: scipy's 0/0, the report's 1.
                assert!(d.len() > 13 && d.iter().all(|&x| x == 0.0), "{at}: scipy has no p");
                assert_eq!(ours.p_value, 1.0, "{at}");
            }
        }
    }
    for (&(b, c), theirs) in discordant.iter().zip(scipy["mcnemar"].as_array().unwrap()) {
        let (only_float, only_int8) = (std::iter::repeat_n((true, false), b), std::iter::repeat_n((false, true), c));
        let pairs = only_float.chain(only_int8).chain([(true, true); 12]);
        let ours = mcnemar(pairs).unwrap();
        let at = format!("b={b} c={c} {theirs}");
        let statistic = theirs["statistic"].as_f64().unwrap();
        assert_eq!((ours.n, ours.nonzero, ours.statistic), (b + c + 12, b + c, statistic), "{at}");
        for reference in ["pvalue", "binomtest"] {
            let p = theirs[reference].as_f64().unwrap();
            assert!(close(ours.p_value, p, 1e-9), "{at}: p {} vs {reference} {p}", ours.p_value);
        }
    }
}

#[test]
fn rerun_is_byte_identical_and_the_seed_moves_only_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = run(tmp.path(), None);
    let md = report::report(&run_dir).unwrap();
    assert!(md.contains("95 % percentile bootstrap interval over images (1000 resamples, seed 1363362125)"), "{md}");
    let first = report_csvs(&run_dir);
    assert!(first.len() >= 10 && first.contains_key("table12_paired.csv"), "{:?}", first.keys());
    report::report(&run_dir).unwrap();
    assert_eq!(report_csvs(&run_dir), first, "a rerun changed a CSV");
    // The defaults written out give the same bytes as no section at all.
    set_report_config(&run_dir, Some(json!({"resamples": 1000, "seed": 0x5143_414D_u64, "confidence": 0.95})));
    report::report(&run_dir).unwrap();
    assert_eq!(report_csvs(&run_dir), first);

    set_report_config(&run_dir, Some(json!({"seed": 1})));
    report::report(&run_dir).unwrap();
    let t1 = |csvs: &BTreeMap<String, Vec<u8>>| {
        let path = tmp.path().join("t1.csv");
        std::fs::write(&path, &csvs["table01_classification.csv"]).unwrap();
        read_csv(&path)
    };
    let (before, after) = (t1(&first), t1(&report_csvs(&run_dir)));
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((&a["top1_pct"], &a["infer_ms"]), (&b["top1_pct"], &b["infer_ms"]));
    }
    assert!(before.iter().zip(&after).any(|(a, b)| a["top1_pct_lo"] != b["top1_pct_lo"]), "another seed, same intervals");
}

#[test]
fn a_bad_report_section_is_refused_with_its_field() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = run(tmp.path(), Some(json!({"confidence": 1.5})));
    let err = format!("{:#}", report::report(&run_dir).unwrap_err());
    assert!(err.contains("run.json") && err.contains("report.confidence") && err.contains("1.5"), "{err}");
    set_report_config(&run_dir, Some(json!({"resample": 10})));
    let err = format!("{:#}", report::report(&run_dir).unwrap_err());
    assert!(err.contains("unknown field `resample`"), "{err}");
}

#[test]
fn duckdb_and_polars_read_the_csvs_with_the_documented_types() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = run(tmp.path(), Some(json!({"resamples": 200})));
    report::report(&run_dir).unwrap();
    let out = run_dir.join("report");
    let python = python_json("read_report_csvs.py", &out);
    let csvs = report_csvs(&run_dir);
    assert_eq!(python["files"].as_object().unwrap().len(), csvs.len());
    for name in csvs.keys() {
        let rows = read_csv(&out.join(name)).len();
        let seen = &python["files"][name];
        assert_eq!((seen["duckdb"].as_u64(), seen["polars"].as_u64()), (Some(rows as u64), Some(rows as u64)), "{name}");
    }
    // Each file's estimates came in as (name, name_lo, name_hi) DOUBLE triples, the README's 32
    // (3 + 6 + 3 + 1 + 2 + 4 + 2 + 3 + 3 + 5); Table 12 as its README schema.
    assert_eq!(python["interval_columns"].as_u64(), Some(32), "{python}");
    assert_eq!(python["table12_columns"].as_u64(), Some(19), "{python}");
}
