//! The first job end to end on the 300 real sample images: every image of every pair lands in the
//! tables, and qcam's decode + preprocessing gives the same top-1 as torchvision's preprocessing on
//! the same TorchScript models for at least 99% of images.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;

use arrow::array::{Array, Int32Array};
use pipeline::plan::RunOptions;
use pipeline::run::run;
use qcam::torch::TorchBackend;
use tables::{column, read_table, ListCol, Utf8Col};

const PAIRS: [&str; 3] = ["efficientnet_lite0", "mobilenet_v2_qnnpack", "resnet18_random"];

fn job_text(sample: &std::path::Path, models: &std::path::Path, out: &std::path::Path) -> String {
    format!(
        r#"name = "baseline-test"
[data]
path = "{}"
shard_size = 64
[models]
dir = "{}"
pairs = [{}]
[run]
batch_size = 16
[perturbation]
scope = "none"   # this test is about classification; deletion/insertion has its own
[output]
dir = "{}"
"#,
        sample.display(),
        models.display(),
        PAIRS.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
        out.display()
    )
}

/// (model, variant) → image_id → top-1, from the images table.
fn top1_by_image(out: &std::path::Path) -> HashMap<(String, String), HashMap<String, i32>> {
    let mut map: HashMap<(String, String), HashMap<String, i32>> = HashMap::new();
    for batch in read_table(out, "images").unwrap() {
        let ids = column::<Utf8Col>(&batch, "image_id");
        let model = column::<Utf8Col>(&batch, "model");
        let variant = column::<Utf8Col>(&batch, "variant");
        let top5 = column::<ListCol>(&batch, "top5");
        for i in 0..batch.num_rows() {
            let first = top5.value(i).as_any().downcast_ref::<Int32Array>().unwrap().value(0);
            map.entry((model.value(i).into(), variant.value(i).into()))
                .or_default()
                .insert(ids.value(i).into(), first);
        }
    }
    map
}

#[test]
fn baseline_on_the_sample_matches_torchvision() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, job_text(&common::sample_dir(), &common::models_dir(), &out)).unwrap();
    run(&job, &RunOptions::default(), std::sync::Arc::new(TorchBackend::default())).unwrap();

    let images = 300;
    let rows: usize = read_table(&out, "images").unwrap().iter().map(|b| b.num_rows()).sum();
    let pair_rows: usize = read_table(&out, "pairs").unwrap().iter().map(|b| b.num_rows()).sum();
    let errors: usize = read_table(&out, "errors").unwrap().iter().map(|b| b.num_rows()).sum();
    assert_eq!(errors, 0, "the sample has no bad images");
    assert_eq!(rows, images * PAIRS.len() * 2);
    assert_eq!(pair_rows, images * PAIRS.len());

    let ours = top1_by_image(&out);
    let image_dir = common::sample_dir().join("ILSVRC/Data/CLS-LOC/val");
    let script = common::repo_root().join("tests/reference/torchvision_predictions.py");
    let mut low = Vec::new();
    for pair in PAIRS {
        let manifest = common::pair_dir(pair).join("manifest.json");
        let reference = tmp.path().join(format!("{pair}.json"));
        common::run_python(
            &script,
            &[
                OsStr::new("--manifest"),
                manifest.as_os_str(),
                OsStr::new("--images"),
                image_dir.as_os_str(),
                OsStr::new("--out"),
                reference.as_os_str(),
            ],
        );
        let theirs: HashMap<String, HashMap<String, Vec<i32>>> =
            serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
        for variant in ["float", "quantized"] {
            let ours = &ours[&(pair.to_string(), variant.to_string())];
            assert_eq!(ours.len(), images);
            let agree = theirs.iter().filter(|(id, v)| ours[id.as_str()] == v[variant][0]).count();
            let share = agree as f64 / images as f64;
            eprintln!("{pair} {variant}: top-1 agreement with torchvision preprocessing {agree}/{images} = {:.1}%", 100.0 * share);
            if share < 0.99 {
                low.push(format!("{pair} {variant}: {agree}/{images}"));
            }
        }
    }
    assert!(low.is_empty(), "top-1 agreement with torchvision below 99%: {low:?}");
}

#[test]
fn a_config_error_stops_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let job = tmp.path().join("job.toml");
    let text = job_text(&common::sample_dir(), &common::models_dir(), &out).replace("[run]", "[run]\nbatch_sise = 3");
    std::fs::write(&job, text).unwrap();
    let err = format!("{:#}", run(&job, &RunOptions::default(), std::sync::Arc::new(TorchBackend::default())).unwrap_err());
    assert!(err.contains("job.toml") && err.contains("batch_sise"), "{err}");
    assert!(!out.exists(), "no output may be created for a bad job");
}
