//! qcam's tch inference returns what Python's torch.jit returns for the same TorchScript file and
//! the same input: logits and CAM-layer activations within 1e-4, and the same quantization
//! parameters for the int8 activation.

mod common;

use std::ffi::OsStr;

use types::Variant;
use pipeline::models::PairSpec;
use qcam::torch::TorchBackend;

/// A few real sample images, preprocessed the pair's way, as one batch.
fn real_batch(spec: &PairSpec, n: usize) -> Vec<f32> {
    let dir = common::sample_dir().join("ILSVRC/Data/CLS-LOC/val");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut pixels = Vec::new();
    for path in files.iter().step_by(37).take(n) {
        let img = operators::decode::decode_rgb8(&std::fs::read(path).unwrap(), 100_000_000).unwrap();
        pixels.extend(operators::decode::preprocess(&img, &spec.manifest.preprocess).0);
    }
    pixels
}

fn check_pair(name: &str) {
    let spec = PairSpec::read(&common::models_dir(), name).unwrap();
    spec.verify().unwrap();
    let n = 4;
    let input = real_batch(&spec, n);
    let tmp = tempfile::tempdir().unwrap();
    let input_path = tmp.path().join("input.f32");
    common::write_f32(&input_path, &input);
    let prefix = tmp.path().join("out");
    let script = common::repo_root().join("tests/reference/torch_outputs.py");
    let engine = spec.engine(Variant::Quantized).expect("int8 has an engine").to_string();
    common::run_python(
        &script,
        &[
            OsStr::new("--manifest"),
            spec.manifest_path.as_os_str(),
            OsStr::new("--input"),
            input_path.as_os_str(),
            OsStr::new("--n"),
            OsStr::new(&n.to_string()),
            OsStr::new("--out"),
            prefix.as_os_str(),
            OsStr::new("--engine"),
            OsStr::new(&engine),
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out.json")).unwrap()).unwrap();

    let pair = spec.load(&TorchBackend::default()).unwrap();
    for variant in Variant::BOTH {
        let v = variant.as_str();
        let ours = pair.get(variant).forward(&input, n, spec.manifest.preprocess.crop as usize).unwrap();
        let logits = common::read_f32(&tmp.path().join(format!("out.{v}.logits.f32")));
        let act = common::read_f32(&tmp.path().join(format!("out.{v}.act.f32")));
        let dl = common::max_abs_diff(&ours.logits, &logits);
        let da = common::max_abs_diff(&ours.act, &act);
        eprintln!("{name} {v}: max|Δlogit| = {dl:.2e}, max|Δact| = {da:.2e}");
        assert!(dl <= 1e-4, "{name} {v}: logits differ from Python by {dl}");
        assert!(da <= 1e-4, "{name} {v}: activations differ from Python by {da}");
        assert_eq!(ours.act_shape.to_vec(), spec.manifest.cam_layer.shape.to_vec(), "{name} {v}: CAM layer shape");
        if variant == Variant::Quantized {
            let q = ours.qparams.expect("int8 activation comes back quantized");
            let scale = meta["quantized"]["q_scale"].as_f64().unwrap() as f32;
            let zp = meta["quantized"]["q_zero_point"].as_i64().unwrap() as i32;
            assert_eq!((q.scale, q.zero_point), (scale, zp), "{name}: activation qparams");
        } else {
            assert!(ours.qparams.is_none());
        }
    }
}

#[test]
fn efficientnet_lite0_matches_python() {
    check_pair("efficientnet_lite0");
}

#[test]
fn mobilenet_v2_qnnpack_matches_python() {
    check_pair("mobilenet_v2_qnnpack");
}

#[test]
fn resnet18_random_matches_python() {
    check_pair("resnet18_random");
}

/// The real QAT MobileNetV2 int8 loaded and run under x86 instead of its qnnpack (`<pair>@<engine>`):
/// qcam's outputs are torch's under that engine, not the pair's own (which the test above checks).
#[test]
fn an_int8_model_runs_under_the_engine_asked_for() {
    check_pair("mobilenet_v2_qnnpack@x86");
}
