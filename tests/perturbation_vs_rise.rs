//! The graph's deletion/insertion stage (SPEC §5) against RISE's `CausalMetric` in Python
//! (`tests/reference/perturbation_table_rise.py`) on real images with the real MobileNetV2 int8 and
//! its float stand-in, 100 steps: for every row of the `perturbation` table (EigenCAM's order and
//! the baselines', the Gaussian map and the seeded random order, each rebuilt in numpy) the target
//! class equals the variant's argmax in torch, and both AUCs agree within 0.005 (the issue's bound).

mod common;

use std::process::Command;

#[test]
fn perturbation_table_matches_rise() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let job = tmp.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"name = "rise-test"
[data]
path = "{}"
limit = 60
shard_size = 50
[models]
dir = "{}"
pairs = ["mobilenet_v2_qnnpack"]
[run]
batch_size = 16
[perturbation]
steps = 100
batch_size = 32
[output]
dir = "{}"
"#,
            common::sample_dir().display(),
            common::models_dir().display(),
            out.display()
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_qcam")).args(["run", job.to_str().unwrap()]).status().unwrap();
    assert!(status.success());

    let result = tmp.path().join("rise.json");
    let script = common::repo_root().join("tests/reference/perturbation_table_rise.py");
    let (sample, models) = (common::sample_dir(), common::models_dir());
    let args = [out.as_os_str(), sample.as_os_str(), models.as_os_str(), result.as_os_str()];
    common::run_python(&script, &args);
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    let rows = result["rows"].as_array().unwrap();
    let count = |method: &str| rows.iter().filter(|r| r["method"] == method).count();
    assert_eq!(count("eigencam"), 3 * 2, "k = ceil(0.05 · 60) images × 2 variants");
    // The default baselines (gaussian, random) on ceil(0.2 · 3) = 1 image, the best-ranked.
    assert_eq!((count("gaussian"), count("random"), rows.len()), (2, 2, 10));
    let mut worst: f64 = 0.0;
    for r in rows {
        let what = format!("{} {} {}", r["image_id"], r["variant"], r["method"]);
        assert_eq!(r["qcam_target"], r["rise_target"], "{what}: target");
        assert_eq!(r["rise_del_points"].as_u64(), Some(101), "{what}: RISE ran the SPEC's 100 steps");
        for m in ["deletion", "insertion"] {
            let short = &m[..3];
            let d = (r[format!("qcam_{m}_auc")].as_f64().unwrap() - r[format!("rise_{short}_auc")].as_f64().unwrap()).abs();
            assert!(d <= 0.005, "{what}: {m} AUC differs by {d}");
            worst = worst.max(d);
        }
    }
    eprintln!("perturbation vs RISE: worst AUC |Δ| = {worst:.2e} over {} rows", rows.len());
}
