//! `operators::perturb` against RISE's `CausalMetric` written out in Python
//! (`tests/reference/perturb_rise.py`) with the real EfficientNet-Lite0 on real ImageNet images.
//!
//! Flow, run once per test binary: Python `prep` writes each image's normalised input, bn2
//! activation and logits; Rust computes the EigenCAM map (`SignPolicy::Mean`), its pixel order and
//! the deletion/insertion images for steps = 100 (first image, image comparison only) and steps = 20
//! (every image, also run through the model; fewer steps keep the test short on a small CPU); Python `score` builds RISE's own images, scores RISE's
//! curves with the model and also runs the model on Rust's images; Rust then runs `causal_curves` with
//! a forward closure that checks it is handed exactly the images written and answers with those
//! logits. Python comes from `QCAM_PYTHON` (default `<workspace>/.venv/bin/python`), images from
//! `QCAM_SAMPLE_DATA` (default `<workspace>/../shared/data/imagenet-val-sample`); either missing
//! fails the tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use operators::eigencam::{eigencam, SignPolicy};
use operators::infer::top_k;
use operators::perturb::*;
use serde_json::{json, Value};

const N_IMAGES: usize = 3;
const CROP: usize = 224;
const FULL_STEPS: usize = 100;
const MODEL_STEPS: usize = 20;
const BATCH: usize = 16; // not a divisor of 21: batches straddle deletion and insertion

/// Image assemblies compared per image: the SPEC's 100 steps on the first image (pure arithmetic, but
/// ~120 MB of images each), the 20-step run that also goes through the model on all of them.
fn runs(k: usize) -> Vec<(&'static str, usize)> {
    if k == 0 { vec![("full", FULL_STEPS), ("model", MODEL_STEPS)] } else { vec![("model", MODEL_STEPS)] }
}

struct Fixture {
    dir: PathBuf,
    result: Value,
    cams: Vec<Vec<f32>>,
    xs: Vec<Vec<f32>>,
    targets: Vec<usize>,
}

fn read_f32(path: &Path, len: usize) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len(), 4 * len, "{}: {} bytes, expected {len} f32", path.display(), bytes.len());
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn write_le<T: Copy>(path: &Path, data: &[T], to_le: impl Fn(T) -> [u8; 4]) {
    let mut bytes = Vec::with_capacity(4 * data.len());
    for &v in data {
        bytes.extend_from_slice(&to_le(v));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn run_python(python: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let script = common::workspace_root().join("tests/reference/perturb_rise.py");
    let out = Command::new(python)
        .arg(&script)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap_or_else(|e| panic!("could not run {} {}: {e}", python.display(), script.display()));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed ({}):\n{}", script.display(), out.status, String::from_utf8_lossy(&out.stdout));
}

fn images(x: &[f32], cam: &[f32], steps: usize) -> (Vec<f32>, Vec<f32>) {
    let plan = PerturbPlan::new(CROP, steps);
    let order = pixel_order(cam);
    let (mut del, mut ins) = (Vec::new(), Vec::new());
    fill_deletion(x, &order, &plan, 0..plan.points(), &mut del);
    fill_insertion(x, &blur(x, CROP), &order, &plan, 0..plan.points(), &mut ins);
    (del, ins)
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        let python = common::python();
        let data = common::sample_data();
        common::sample_val_dir();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("perturb_rise");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = std::time::Instant::now();
        run_python(&python, &[&"prep", &dir, &data, &N_IMAGES.to_string()]);
        eprintln!("{:7.2}s python prep done", t0.elapsed().as_secs_f64());

        let prep: Value = serde_json::from_slice(&std::fs::read(dir.join("prep.json")).unwrap()).unwrap();
        let shape: Vec<usize> = prep["act_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (c, h, w) = (shape[0], shape[1], shape[2]);
        let (mut cams, mut xs, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..N_IMAGES {
            let x = read_f32(&dir.join(format!("x_{k}.f32")), 3 * CROP * CROP);
            let act = read_f32(&dir.join(format!("act_{k}.f32")), c * h * w);
            let logits = read_f32(&dir.join(format!("logits_{k}.f32")), 1000);
            let cam = eigencam(&act, c, h, w, SignPolicy::Mean, CROP).cam;
            write_le(&dir.join(format!("cam_{k}.f32")), &cam, f32::to_le_bytes);
            write_le(&dir.join(format!("order_{k}.u32")), &pixel_order(&cam), u32::to_le_bytes);
            for (name, steps) in runs(k) {
                let (del, ins) = images(&x, &cam, steps);
                write_le(&dir.join(format!("rust_{name}_del_{k}.f32")), &del, f32::to_le_bytes);
                write_le(&dir.join(format!("rust_{name}_ins_{k}.f32")), &ins, f32::to_le_bytes);
            }
            targets.push(top_k(&logits, 1)[0].0);
            cams.push(cam);
            xs.push(x);
        }
        let run = |name: &str, steps| {
            let images: Vec<usize> = (0..N_IMAGES).filter(|&k| runs(k).iter().any(|r| r.0 == name)).collect();
            json!({"name": name, "steps": steps, "step": PerturbPlan::new(CROP, steps).step, "images": images})
        };
        let rust = json!({
            "taps": BLUR_TAPS,
            "runs": [run("full", FULL_STEPS), run("model", MODEL_STEPS)],
            "model_run": run("model", MODEL_STEPS),
        });
        std::fs::write(dir.join("rust.json"), rust.to_string()).unwrap();
        eprintln!("{:7.2}s rust images written", t0.elapsed().as_secs_f64());
        run_python(&python, &[&"score", &dir]);
        eprintln!("{:7.2}s python score done", t0.elapsed().as_secs_f64());
        let result = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
        // The perturbed stacks (~200 MB) are no longer needed (the curves test rebuilds its images);
        // the logits and results stay for inspection.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("rust_full_") || name.starts_with("rust_model_") {
                let _ = std::fs::remove_file(p);
            }
        }
        Fixture { dir, result, cams, xs, targets }
    })
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("result.json lacks {key}: {v}"))
}

/// The SPEC's taps are RISE's `gkern(11, 5)` (scipy `gaussian_filter` of a delta), and the pixel
/// order equals numpy's stable `argsort(-cam)` on real EigenCAM maps (which have many exact ties).
#[test]
fn kernel_and_order_match_rise() {
    let f = fixture();
    let dk = num(&f.result, "kernel_vs_spec_taps");
    assert!(dk <= 1e-8, "gkern(11, 5) differs from BLUR_TAPS ⊗ BLUR_TAPS by {dk}");
    assert_eq!(num(&f.result, "off_diagonal_kernel_max"), 0.0);
    for (k, r) in f.result["images"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["order_mismatches"], 0, "image {k}: pixel order differs from numpy's stable argsort");
        eprintln!("image {k}: kernel |Δ| {dk:.1e}, order identical, {} pixels tied at cam = 0", r["ties_at_zero"]);
    }
}

/// Every perturbed image, deletion and insertion, steps 100 and 20, against RISE's loop; the
/// insertion start image is the blur itself, compared with torch's `conv2d` separately.
#[test]
fn perturbed_images_match_rise() {
    let f = fixture();
    let mut worst: f64 = 0.0;
    for (k, r) in f.result["images"].as_array().unwrap().iter().enumerate() {
        for (name, steps) in runs(k) {
            for mode in ["del", "ins"] {
                let pts = &r[format!("{name}_{mode}_points")];
                assert_eq!(pts, &json!([steps + 1, steps + 1]), "image {k} {name} {mode}: RISE and SPEC point counts");
                let d = num(r, &format!("{name}_{mode}_max_abs"));
                assert!(d <= 1e-6, "image {k} {name} {mode}: images differ by {d}");
                worst = worst.max(d);
                eprintln!("image {k} {name} {mode}: {} images, max |Δ| {d:.2e}", steps + 1);
            }
            let db = num(r, &format!("{name}_blur_max_abs"));
            assert!(db <= 1e-5, "image {k}: blur vs torch conv2d max |Δ| {db}");
            eprintln!("image {k} blur vs F.conv2d: max |Δ| {db:.2e}");
        }
    }
    eprintln!("perturbed images worst max |Δ| {worst:.2e}");
}

/// `causal_curves` with model scores of its own images against RISE's curves and AUCs.
#[test]
fn curves_and_auc_match_rise() {
    let f = fixture();
    let (mut worst_auc, mut worst_curve): (f64, f64) = (0.0, 0.0);
    for (k, r) in f.result["images"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["target"], f.targets[k], "image {k}: predicted class");
        let points = MODEL_STEPS + 1;
        let logits = read_f32(&f.dir.join(format!("rust_logits_{k}.f32")), 2 * points * 1000);
        let (del, ins) = images(&f.xs[k], &f.cams[k], MODEL_STEPS);
        let written: Vec<f32> = [del, ins].concat();
        let len = 3 * CROP * CROP;
        let mut at = 0;
        let c = causal_curves(&f.xs[k], &f.cams[k], CROP, MODEL_STEPS, BATCH, f.targets[k], KnownScores::NONE, |px, n| {
            // The driver's batches must be the images the fill functions made, in order.
            assert_eq!(px, &written[at * len..(at + n) * len], "image {k}: batch at {at} differs from the written images");
            let out = logits[at * 1000..(at + n) * 1000].to_vec();
            at += n;
            Ok(out)
        })
        .unwrap();
        assert_eq!(at, 2 * points);
        for (mode, ours, our_auc) in [("del", &c.deletion, c.deletion_auc), ("ins", &c.insertion, c.insertion_auc)] {
            let rise: Vec<f64> = r[format!("rise_{mode}")].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(rise.len(), ours.len());
            let dc = ours.iter().zip(&rise).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            let da = (our_auc as f64 - num(r, &format!("rise_{mode}_auc"))).abs();
            assert!(da <= 0.005, "image {k} {mode}: AUC {our_auc} vs RISE {}", num(r, &format!("rise_{mode}_auc")));
            assert!(dc <= 1e-3, "image {k} {mode}: curves differ by {dc}");
            eprintln!("image {k} {mode}: AUC {our_auc:.6} (RISE {:.6}), |Δ AUC| {da:.2e}, curve max |Δ| {dc:.2e}", num(r, &format!("rise_{mode}_auc")));
            worst_auc = worst_auc.max(da);
            worst_curve = worst_curve.max(dc);
        }
        assert!((c.insertion[MODEL_STEPS] - c.deletion[0]).abs() < 1e-6, "image {k}: insertion must end at the unperturbed image");
        // With the unperturbed and all-zero images' scores taken from RISE's own forwards (its
        // deletion curve's first and last points), the driver skips those three forwards and the
        // curves still agree with the ones it ran in full.
        let rise_del: Vec<f32> = r["rise_del"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let known = KnownScores { unperturbed: Some(rise_del[0]), blank: Some(rise_del[MODEL_STEPS]) };
        let mut ran = Vec::new();
        let mut at = 0;
        let skipped = causal_curves(&f.xs[k], &f.cams[k], CROP, MODEL_STEPS, BATCH, f.targets[k], known, |px, n| {
            // The images run are the written ones without deletion's first and last: find each one.
            let mut out = Vec::with_capacity(n * 1000);
            for img in px.chunks_exact(len) {
                while &written[at * len..(at + 1) * len] != img {
                    at += 1;
                }
                ran.push(at);
                out.extend_from_slice(&logits[at * 1000..(at + 1) * 1000]);
            }
            Ok(out)
        })
        .unwrap();
        let want: Vec<usize> = (1..MODEL_STEPS).chain(points..2 * points - 1).collect();
        assert_eq!(ran, want, "image {k}: the points run with known scores");
        for (a, b) in skipped.deletion.iter().chain(&skipped.insertion).zip(c.deletion.iter().chain(&c.insertion)) {
            assert!((a - b).abs() <= 1e-4, "image {k}: skipped-forward curve {a} vs full {b}");
        }
        assert!((skipped.deletion_auc - c.deletion_auc).abs() <= 1e-4 && (skipped.insertion_auc - c.insertion_auc).abs() <= 1e-4);
    }
    eprintln!("curves worst: |Δ AUC| {worst_auc:.2e}, curve max |Δ| {worst_curve:.2e}");
}
