//! The forward speed-ups change no result beyond float rounding. The reference is made in this
//! test: the same pairs exported as they were before (`exporter/export.py --plain`: traced float
//! files loaded as they are, NCHW input) and run with every deletion/insertion forward
//! (`perturbation.reuse_known_scores = false`): what qcam computed before. Its PTQ pairs are
//! calibrated for the same engine as the shipped ones: the engine is a choice of arithmetic, not a
//! speed-up. Where the CPU has AVX512-VNNI, x86 runs int8 convs on oneDNN and their outputs differ
//! from fbgemm's (resnet18_random int8 CAM correlation 0.989 on an AMD EPYC); without VNNI the two
//! are bit-identical. `scripts/bench.sh` measures that change (floor-compare: top-1 agreement and
//! max |Δ logit| against the fbgemm export), and the manifest and `run.json` name the engine.
//! Against the reference, the shipped export (`make models`: frozen float files,
//! `optimize_for_inference` or channels_last input) run as a job runs it,
//! on the 300 sample images, with deletion/insertion on the top 5% by RMSE (10 steps, so it stays a
//! test of minutes):
//! * top-1 identical, except where the reference has an exact tie for it;
//! * each stored CAM correlates with the reference's at ≥ 0.99999 (Pearson, over its h×w cells);
//! * WSOL IoU within 1e-4;
//! * deletion and insertion AUC within 1e-4, for every image both runs perturbed.
//!
//! Pairs: mobilenet_v2_qnnpack (real int8 QAT weights: its int8 side must be bit for bit the same)
//! and resnet18_random (a PTQ pair: its float side changes kernels).

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use operators::compare::pearson;
use types::{ImageRow, PerturbationRow};

const PAIRS: [&str; 2] = ["mobilenet_v2_qnnpack", "resnet18_random"];

fn job(models: &Path, out: &Path, all_forwards: bool) -> String {
    format!(
        r#"name = "optimized-vs-asexported"
[data]
path = "{}"
shard_size = 100
[models]
dir = "{}"
pairs = [{}]
[run]
batch_size = 16
workers = 2
[subset]
top_fraction = 0.05
[perturbation]
steps = 10
batch_size = 32
reuse_known_scores = {}
[output]
dir = "{}"
"#,
        common::sample_dir().display(),
        models.display(),
        PAIRS.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
        !all_forwards,
        out.display()
    )
}

fn run(dir: &Path, name: &str, models: &Path, all_forwards: bool) -> std::path::PathBuf {
    let out = dir.join(name);
    let job_path = dir.join(format!("{name}.toml"));
    std::fs::write(&job_path, job(models, &out, all_forwards)).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_qcam")).args(["run", job_path.to_str().unwrap()]).status().unwrap();
    assert!(status.success(), "qcam run {name} failed");
    out
}

#[test]
fn optimized_forwards_keep_the_results() {
    let tmp = tempfile::tempdir().unwrap();
    let reference_models = tmp.path().join("models-asexported");
    let (pairs, sample) = (PAIRS.join(","), common::sample_dir());
    // The sample calibrates the PTQ pair and re-estimates its random BatchNorm: the same weights.
    let args: [&OsStr; 9] = [
        "--out".as_ref(),
        reference_models.as_os_str(),
        "--pairs".as_ref(),
        pairs.as_ref(),
        "--random-weights".as_ref(),
        "--data".as_ref(),
        sample.as_os_str(),
        "--no-eval".as_ref(),
        "--plain".as_ref(),
    ];
    common::run_python(&common::repo_root().join("exporter/export.py"), &args);

    let reference = run(tmp.path(), "reference", &reference_models, true);
    let optimized = run(tmp.path(), "optimized", &common::models_dir(), false);

    let key = |r: &ImageRow| (r.image_id.clone(), r.model.clone(), r.variant);
    let before: HashMap<_, ImageRow> = tables::read_rows::<ImageRow>(&reference).unwrap().into_iter().map(|r| (key(&r), r)).collect();
    let after = tables::read_rows::<ImageRow>(&optimized).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.len(), 300 * PAIRS.len() * 2, "every image, pair and variant");
    let image_rows = after.len();
    let (mut ties, mut worst_corr, mut worst_iou) = (0, 1.0f64, 0.0f32);
    for a in &after {
        let b = &before[&key(a)];
        let what = format!("{} {} {}", a.image_id, a.model, a.variant.as_str());
        if a.top5[0] != b.top5[0] {
            // Only an exact tie for the reference's top-1 may go the other way.
            assert!(b.top5_prob.len() > 1 && b.top5_prob[0] == b.top5_prob[1], "{what}: top-1 {} became {}", b.top5[0], a.top5[0]);
            ties += 1;
            continue;
        }
        let corr = pearson(&a.cam, &b.cam);
        assert!(corr >= 0.99999, "{what}: CAM correlation {corr}");
        assert!((a.iou - b.iou).abs() <= 1e-4, "{what}: IoU {} vs {}", a.iou, b.iou);
        worst_corr = worst_corr.min(corr);
        worst_iou = worst_iou.max((a.iou - b.iou).abs());
    }

    let pkey = |r: &PerturbationRow| (r.image_id.clone(), r.model.clone(), r.variant, r.method);
    let before: HashMap<_, PerturbationRow> =
        tables::read_rows::<PerturbationRow>(&reference).unwrap().into_iter().map(|r| (pkey(&r), r)).collect();
    let after = tables::read_rows::<PerturbationRow>(&optimized).unwrap();
    let mut compared = 0;
    let mut worst_auc = 0.0f32;
    for a in &after {
        // The subset is the top 5% by RMSE of 8-bit maps: a rounding step at its edge can swap an
        // image in or out, and a tie can change the target. Those rows have nothing to compare to.
        let Some(b) = before.get(&pkey(a)).filter(|b| b.target == a.target) else { continue };
        let what = format!("{} {} {} {}", a.image_id, a.model, a.variant.as_str(), a.method);
        for (x, y, m) in [(a.deletion_auc, b.deletion_auc, "deletion"), (a.insertion_auc, b.insertion_auc, "insertion")] {
            assert!((x - y).abs() <= 1e-4, "{what}: {m} AUC {x} vs {y}");
            worst_auc = worst_auc.max((x - y).abs());
        }
        compared += 1;
    }
    assert!(compared * 10 >= after.len() * 9, "only {compared} of {} perturbation rows have a reference", after.len());
    eprintln!(
        "optimized vs as exported: {image_rows} image rows ({ties} exact ties), worst CAM correlation {worst_corr:.9}, \
         worst IoU |Δ| {worst_iou:.2e}; {compared} perturbation rows, worst AUC |Δ| {worst_auc:.2e}"
    );
}
