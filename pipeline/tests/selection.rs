//! Selection (SPEC §4), the running aggregates and deletion/insertion (§5) in a whole run, and their
//! incremental maintenance: a run over the first 150 sample images followed by `qcam run --append`
//! over all 300 gives the same tables as one run over the 300, while computing only the new shards.
//! The subset is checked against the SPEC's rule applied here to the `pairs` table, and the last
//! epoch's aggregates against means taken here from the `images` and `pairs` tables.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{assert_same_tables, canonical, fake_models, ok as run_qcam, JobSpec};
use tables::{column, read_table, BoolCol, F32Col, F64Col, I32Col, I64Col, Utf8Col};

const PAIR: &str = "fa";
const STEPS: usize = 10;

fn write_job(dir: &Path) -> PathBuf {
    let models = fake_models(dir, 0);
    let spec = JobSpec { pairs: &[PAIR], limit: 300, shard_size: 50, steps: STEPS, ..common::default_spec(dir, &models) };
    spec.write(&dir.join("job.toml"))
}

fn run_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

fn sum_workers(run: &serde_json::Value, field: &str) -> u64 {
    run["workers"].as_array().unwrap().iter().map(|w| w[field].as_u64().unwrap()).sum()
}

#[test]
fn append_equals_one_run_and_selection_follows_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let job = write_job(tmp.path());
    let job = job.to_str().unwrap();
    let full = tmp.path().join("full");
    let inc = tmp.path().join("incremental");
    let (full_s, inc_s) = (full.to_str().unwrap(), inc.to_str().unwrap());
    run_qcam(&["run", job, "--out", full_s]);
    run_qcam(&["run", job, "--out", inc_s, "--limit", "150"]);
    run_qcam(&["run", job, "--out", inc_s, "--append"]);

    // The append computed the three new shards only; the first three were read back.
    let appended = run_json(&inc);
    assert_eq!(sum_workers(&appended, "images_in"), 150);
    assert_eq!(sum_workers(&appended, "images_reused"), 150);

    for table in ["images", "pairs", "wsol", "subset", "aggregates", "perturbation"] {
        assert!(!canonical(&full, table).is_empty(), "{table} is empty");
    }
    assert_same_tables(&full, &inc, "after append");

    // SPEC §4 applied to the pairs table: k = ceil(0.05 · 300) = 15, RMSE descending, ids ascending.
    let mut pairs: Vec<(f32, String)> = Vec::new();
    for b in read_table(&full, "pairs").unwrap() {
        let (id, rmse) = (column::<Utf8Col>(&b, "image_id"), column::<F32Col>(&b, "rmse"));
        pairs.extend((0..b.num_rows()).map(|i| (rmse.value(i), id.value(i).to_string())));
    }
    assert_eq!(pairs.len(), 300);
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut subset: Vec<(i32, String, f32)> = Vec::new();
    for b in read_table(&full, "subset").unwrap() {
        let (id, rank, rmse) = (column::<Utf8Col>(&b, "image_id"), column::<I32Col>(&b, "rank"), column::<F32Col>(&b, "rmse"));
        subset.extend((0..b.num_rows()).map(|i| (rank.value(i), id.value(i).to_string(), rmse.value(i))));
    }
    subset.sort_by_key(|s| s.0);
    assert_eq!(subset.len(), 15, "k = ceil(0.05 · 300)");
    for (i, (rank, id, rmse)) in subset.iter().enumerate() {
        assert_eq!(*rank, i as i32 + 1);
        assert_eq!((id, *rmse), (&pairs[i].1, pairs[i].0), "rank {rank}");
    }

    // Deletion/insertion: both variants of every subset image under EigenCAM's order, and under the
    // two baselines' (gaussian, random) for the best ceil(0.2 · 15) = 3 ranks only; curves of
    // steps + 1 points.
    let mut perturbed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for b in read_table(&full, "perturbation").unwrap() {
        let (id, method) = (column::<Utf8Col>(&b, "image_id"), column::<Utf8Col>(&b, "method"));
        let curves = column::<tables::ListCol>(&b, "deletion_curve");
        for i in 0..b.num_rows() {
            assert_eq!(curves.value(i).len(), STEPS + 1);
            *perturbed.entry((id.value(i).to_string(), method.value(i).to_string())).or_default() += 1;
        }
    }
    let mut want = BTreeMap::new();
    for (rank, id, _) in &subset {
        let methods: &[&str] = if *rank <= 3 { &["eigencam", "gaussian", "random"] } else { &["eigencam"] };
        want.extend(methods.iter().map(|m| ((id.clone(), m.to_string()), 2)));
    }
    assert_eq!(perturbed, want);

    check_aggregates(&full, &pairs, &subset);
}

/// The last epoch's aggregates equal means taken here from the row tables; earlier epochs cover
/// their shards only (2 shards of 50 each).
fn check_aggregates(run: &Path, pairs: &[(f32, String)], subset: &[(i32, String, f32)]) {
    let mut top1: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut iou: BTreeMap<String, f64> = BTreeMap::new();
    let mut entropy: BTreeMap<String, f64> = BTreeMap::new();
    for b in read_table(run, "images").unwrap() {
        let variant = column::<Utf8Col>(&b, "variant");
        let correct = column::<BoolCol>(&b, "top1_correct");
        let i_ = column::<F32Col>(&b, "iou");
        let e = column::<F64Col>(&b, "act_entropy");
        for i in 0..b.num_rows() {
            let v = variant.value(i).to_string();
            let t = top1.entry(v.clone()).or_default();
            t.0 += correct.value(i) as usize;
            t.1 += 1;
            *iou.entry(v.clone()).or_default() += i_.value(i) as f64;
            *entropy.entry(v).or_default() += e.value(i);
        }
    }
    let mean_rmse = pairs.iter().map(|p| p.0 as f64).sum::<f64>() / pairs.len() as f64;
    let subset_rmse = subset.iter().map(|s| s.2 as f64).sum::<f64>() / subset.len() as f64;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let mut epochs = Vec::new();
    for b in read_table(run, "aggregates").unwrap() {
        let epoch = column::<I64Col>(&b, "epoch");
        let images = column::<I64Col>(&b, "images");
        let variant = column::<Utf8Col>(&b, "variant");
        for i in 0..b.num_rows() {
            epochs.push((epoch.value(i), images.value(i)));
            if epoch.value(i) != 2 {
                continue;
            }
            let v = variant.value(i);
            let n = top1[v].1 as f64;
            assert_eq!(images.value(i), 300);
            assert!(close(column::<F64Col>(&b, "top1").value(i), top1[v].0 as f64 / n), "top1 {v}");
            assert!(close(column::<F64Col>(&b, "mean_iou").value(i), iou[v] / n), "iou {v}");
            assert!(close(column::<F64Col>(&b, "act_entropy").value(i), entropy[v] / n), "entropy {v}");
            assert!(close(column::<F64Col>(&b, "mean_rmse").value(i), mean_rmse), "rmse");
            assert!(close(column::<F64Col>(&b, "subset_mean_rmse").value(i), subset_rmse), "subset rmse");
            assert_eq!(column::<I64Col>(&b, "subset_size").value(i), 15);
        }
    }
    epochs.sort();
    assert_eq!(epochs, vec![(0, 100), (0, 100), (1, 200), (1, 200), (2, 300), (2, 300)], "one row per epoch and variant");
}
