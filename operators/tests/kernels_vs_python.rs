//! The numeric kernels against independent Python references on real data
//! (`tests/reference/kernels_reference.py`: pytorch-grad-cam, OpenCV, numpy, torch).
//!
//! The script runs once per test binary (real EfficientNet-Lite0 activations of real ImageNet
//! validation images). Python is found through `QCAM_PYTHON` (default `<workspace>/.venv/bin/python`),
//! the images through `QCAM_SAMPLE_DATA` (default `<workspace>/../shared/data/imagenet-val-sample`).
//! Either missing makes the tests fail, never pass silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use operators::compare::{flipped_cam, pearson, rmse};
use operators::eigencam::{cam_full, cam_lo, eigencam, principal_projection, upsample_bilinear, SignPolicy};
use operators::stats::{act_stats, dice, QGrid};
use operators::baselines::{full_localization, gaussian, gaussian_map, random_order};
use operators::wsol::{components, localize, max_box_acc_v2, CURVE_LEN};
use types::BoxXyxy;
use serde_json::Value;

struct Reference {
    dir: PathBuf,
    meta: Value,
}

impl Reference {
    /// A float32 array the script wrote, with its shape.
    fn array(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let shape: Vec<usize> = self.meta["arrays"][name]
            .as_array()
            .unwrap_or_else(|| panic!("reference array {name} missing from meta.json"))
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let bytes = std::fs::read(self.dir.join(format!("{name}.f32"))).unwrap();
        let data: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}: size does not match shape {shape:?}");
        (data, shape)
    }
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let root = common::workspace_root();
        let python = common::python();
        let data = common::sample_data();
        common::sample_val_dir();
        let script = root.join("tests/reference/kernels_reference.py");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels_reference");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("could not run {} {}: {e}", python.display(), script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        Reference { dir, meta }
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

/// What is compared: pytorch-grad-cam's `get_2d_projection` keeps numpy's arbitrary SVD sign, so
/// our `none` projection is first aligned to it by the sign of their dot product; the aligned
/// projection must then match value by value (relative max |Δ|) and with Pearson ≥ 0.999, and so
/// must cam_lo and the 224×224 cam built from it (grad-cam: `np.maximum(P, 0)` +
/// `scale_cam_image`, and the `EigenCAM` class itself on `model.bn2`). The sign policies are
/// checked without alignment in `sign_policies_match_numpy_rules`.
#[test]
fn eigencam_matches_grad_cam_on_real_activations() {
    let r = reference();
    let (acts, shape) = r.array("acts");
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let (gc_proj, _) = r.array("gc_proj");
    let (gc_lo, _) = r.array("gc_cam_lo");
    let (gc_cam, _) = r.array("gc_cam");
    let (hw, crop) = (h * w, 224);
    let (mut worst_corr, mut worst_p, mut worst_lo, mut worst_cam) = (1.0f64, 0.0f32, 0.0f32, 0.0f32);
    for i in 0..shape[0] {
        let act = &acts[i * c * hw..(i + 1) * c * hw];
        let gp = &gc_proj[i * hw..(i + 1) * hw];
        let scale = max_abs(gp);
        assert!(scale > 0.0, "image {i}: degenerate reference projection");

        let p = principal_projection(act, c, h, w, SignPolicy::None);
        let s = if p.iter().zip(gp).map(|(a, b)| a * b).sum::<f32>() < 0.0 { -1.0 } else { 1.0 };
        let aligned: Vec<f32> = p.iter().map(|x| s * x).collect();
        let corr = pearson(&aligned, gp);
        let dp = max_abs_diff(&aligned, gp) / scale;
        assert!(corr >= 0.999, "image {i}: projection correlation {corr}");
        assert!(dp <= 1e-4, "image {i}: projection max |Δ| / max |p| = {dp}");

        let lo = cam_lo(&aligned);
        let glo = &gc_lo[i * hw..(i + 1) * hw];
        let (corr_lo, d_lo) = (pearson(&lo, glo), max_abs_diff(&lo, glo));
        assert!(corr_lo >= 0.999 && d_lo <= 1e-4, "image {i}: cam_lo corr {corr_lo}, max |Δ| {d_lo}");

        let cam = cam_full(&lo, h, w, crop);
        let gcam = &gc_cam[i * crop * crop..(i + 1) * crop * crop];
        let (corr_cam, d_cam) = (pearson(&cam, gcam), max_abs_diff(&cam, gcam));
        assert!(corr_cam >= 0.999 && d_cam <= 1e-4, "image {i}: cam corr {corr_cam}, max |Δ| {d_cam}");

        let (lo_p, hi_p) = aligned.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        eprintln!(
            "eigencam image {i}: corr p {corr:.9} max|Δp|/max|p| {dp:.2e} | cam_lo corr {corr_lo:.9} max|Δ| {d_lo:.2e} \
             | cam corr {corr_cam:.9} max|Δ| {d_cam:.2e} | |min p|-|max p| = {:.3e} (grad-cam sign)",
            lo_p.abs() - hi_p.abs()
        );
        worst_corr = worst_corr.min(corr.min(corr_lo).min(corr_cam));
        worst_p = worst_p.max(dp);
        worst_lo = worst_lo.max(d_lo);
        worst_cam = worst_cam.max(d_cam);
    }
    eprintln!("eigencam worst: corr {worst_corr:.9}, rel max|Δp| {worst_p:.2e}, cam_lo max|Δ| {worst_lo:.2e}, cam max|Δ| {worst_cam:.2e}");
}

/// The `maxabs` and `mean` policies leave no sign freedom, so they are compared without alignment:
/// `maxabs` against grad-cam's `get_2d_projection_with_sign_correction` and a numpy version of the
/// rule, `mean` against a numpy version of its rule, on real activations (last activation, its
/// negation, the signed last-block output) and random non-square ones, chosen so that numpy's raw
/// SVD sign comes out both ways and both branches of each rule are exercised.
#[test]
fn sign_policies_match_numpy_rules() {
    let r = reference();
    let (mut flips_maxabs, mut flips_mean, mut cases, mut worst) = (0, 0, 0, 0.0f32);
    for name in r.meta["sign_cases"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (acts, shape) = r.array(&format!("sign_{name}_act"));
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        let hw = h * w;
        let get = |what: &str| r.array(&format!("sign_{name}_{what}")).0;
        let (raw, gc_maxabs, np_maxabs, np_mean) = (get("raw"), get("gc_maxabs"), get("np_maxabs"), get("np_mean"));
        for k in 0..shape[0] {
            let act = &acts[k * c * hw..(k + 1) * c * hw];
            let sl = |v: &[f32]| v[k * hw..(k + 1) * hw].to_vec();
            let scale = max_abs(&sl(&raw));
            // Did the numpy rule flip numpy's raw sign? (Counted to prove both branches were tested.)
            let flipped = |corrected: &[f32]| corrected.iter().zip(&sl(&raw)).map(|(a, b)| a * b).sum::<f32>() < 0.0;

            let pa = eigencam(act, c, h, w, SignPolicy::MaxAbs, 224).p;
            let d_gc = max_abs_diff(&pa, &sl(&gc_maxabs)) / scale;
            let d_np = max_abs_diff(&pa, &sl(&np_maxabs)) / scale;
            assert!(d_gc <= 1e-4 && d_np <= 1e-4, "{name} {k}: maxabs differs from grad-cam ({d_gc}) / numpy ({d_np})");
            flips_maxabs += flipped(&sl(&np_maxabs)) as usize;

            let pm = principal_projection(act, c, h, w, SignPolicy::Mean);
            let d_mean = max_abs_diff(&pm, &sl(&np_mean)) / scale;
            assert!(d_mean <= 1e-4, "{name} {k}: mean policy differs from numpy ({d_mean})");
            flips_mean += flipped(&sl(&np_mean)) as usize;
            worst = worst.max(d_gc).max(d_np).max(d_mean);
            cases += 1;
        }
    }
    eprintln!(
        "sign policies over {cases} cases: numpy flipped its raw sign {flips_maxabs}× (maxabs), {flips_mean}× (mean); \
         worst rel max|Δp| {worst:.2e}"
    );
    assert!(flips_maxabs > 0 && flips_maxabs < cases, "maxabs: only one branch of the rule was exercised");
    assert!(flips_mean > 0 && flips_mean < cases, "mean: only one branch of the rule was exercised");
}

#[test]
fn upsample_matches_cv2_inter_linear() {
    let r = reference();
    for case in r.meta["resize"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let g = |k: &str| case[k].as_u64().unwrap() as usize;
        let (src, _) = r.array(&format!("rs_{name}_src"));
        let (want, _) = r.array(&format!("rs_{name}_dst"));
        let got = upsample_bilinear(&src, g("h"), g("w"), g("out_h"), g("out_w"));
        // 1e-5 on maps in [0, 1]; the N(0, 9) case is scaled by its magnitude (f32 rounding in cv2).
        let tol = 1e-5 * max_abs(&src).max(1.0);
        let d = max_abs_diff(&got, &want);
        eprintln!("resize {name} {}x{} -> {}x{}: max |Δ| {d:.2e}", g("h"), g("w"), g("out_h"), g("out_w"));
        assert!(d <= tol, "{name}: max |Δ| {d} > {tol}");
    }
}

fn boxes(v: &Value) -> Vec<BoxXyxy> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b: Vec<i32> = b.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect();
            BoxXyxy::new(b[0], b[1], b[2], b[3])
        })
        .collect()
}

/// Against `cv2.connectedComponentsWithStats(connectivity=8)` per threshold (cut = ⌊j·max g/100⌋),
/// numpy IoU with inclusive corners and wsolevaluation's MaxBoxAccV2 formula; plus the union-find
/// sweep of `localize` against plain per-threshold labelling (`components`).
#[test]
fn wsol_matches_cv2_components() {
    let r = reference();
    let mut curves = Vec::new();
    let mut worst = 0.0f32;
    for case in r.meta["wsol"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let size = case["size"].as_u64().unwrap() as usize;
        let gt = boxes(&case["gt"]);
        let (cam, _) = r.array(&format!("wsol_{name}"));
        let loc = localize(&cam, size, &gt, 0.2);

        let want_box = boxes(&Value::Array(vec![case["box"].clone()]))[0];
        assert_eq!(loc.bbox, want_box, "{name}: box at τ = 0.2");
        let want_iou = case["iou"].as_f64().unwrap() as f32;
        assert!((loc.iou - want_iou).abs() <= 1e-6, "{name}: iou {} vs {}", loc.iou, want_iou);
        assert_eq!(
            components(&cam, size, 0.2).len() as u64,
            case["n_components_tau02"].as_u64().unwrap(),
            "{name}: component count at τ = 0.2"
        );
        let want_curve: Vec<f32> = case["curve"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(loc.iou_curve.len(), CURVE_LEN);
        let d = max_abs_diff(&loc.iou_curve, &want_curve);
        worst = worst.max(d);
        assert!(d <= 1e-6, "{name}: iou curve max |Δ| {d}\n got {:?}\nwant {:?}", loc.iou_curve, want_curve);

        // The sweep equals labelling each threshold from scratch.
        for j in 0..CURVE_LEN {
            let brute = components(&cam, size, j as f32 / 100.0)
                .iter()
                .flat_map(|c| gt.iter().map(move |&t| operators::wsol::iou(c.bbox, t)))
                .fold(0.0f32, f32::max);
            assert_eq!(loc.iou_curve[j], brute, "{name}: j = {j}");
        }
        eprintln!(
            "wsol {name}: box {:?} iou {:.4} components@0.2 {} curve max|Δ| {d:.1e}",
            loc.bbox.to_array(),
            loc.iou,
            case["n_components_tau02"]
        );
        curves.push(loc.iou_curve);
    }
    let want = r.meta["max_box_acc_v2"].as_f64().unwrap() as f32;
    let got = max_box_acc_v2(&curves);
    eprintln!("MaxBoxAccV2 over {} maps: {got} (reference {want}); worst curve max|Δ| {worst:.1e}", curves.len());
    assert!((got - want).abs() <= 1e-6, "MaxBoxAccV2 {got} vs {want}");
}

/// The no-model baselines against `tests/reference/baselines_np.py` (numpy, from their
/// definitions) and OpenCV: the Gaussian map value for value, its WSOL box, IoU and curve under
/// several ground truths (cv2 components per threshold, as for CAMs), the whole-crop box's IoU, the
/// Gaussian's stable order, and the random order drawn again in plain Python.
#[test]
fn baselines_match_numpy_and_cv2() {
    let r = reference();
    for case in r.meta["baselines"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (crop, sigma) = (case["crop"].as_u64().unwrap() as usize, case["sigma"].as_f64().unwrap());
        let (want_map, _) = r.array(name);
        let map = gaussian_map(crop, sigma);
        assert_eq!(max_abs_diff(&map, &want_map), 0.0, "{name}: map");
        let (want_order, _) = r.array(&format!("{name}_order"));
        let order: Vec<f32> = gaussian(crop, sigma).order.iter().map(|&i| i as f32).collect();
        assert_eq!(order, want_order, "{name}: stable descending order");
        for (k, c) in case["cases"].as_array().unwrap().iter().enumerate() {
            let gt = boxes(&c["gt"]);
            // The run's path: swept once per (crop, σ, threshold), scored per image.
            let loc = gaussian(crop, sigma).localize(&gt, 0.2);
            assert_eq!(loc.bbox, boxes(&Value::Array(vec![c["box"].clone()]))[0], "{name} #{k}: box");
            assert!((loc.iou - c["iou"].as_f64().unwrap() as f32).abs() <= 1e-6, "{name} #{k}: iou {}", loc.iou);
            let want_curve: Vec<f32> = c["curve"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            assert!(max_abs_diff(&loc.iou_curve, &want_curve) <= 1e-6, "{name} #{k}: curve");
            let full = full_localization(crop, &gt);
            assert!((full.iou - c["full_iou"].as_f64().unwrap() as f32).abs() <= 1e-6, "{name} #{k}: full-crop iou");
            eprintln!("baseline {name} #{k}: gaussian box {:?} iou {:.4}, full iou {:.4}", loc.bbox.to_array(), loc.iou, full.iou);
        }
    }
    for case in r.meta["random_orders"].as_array().unwrap() {
        let (n, seed, key) = (case["n"].as_u64().unwrap() as usize, case["seed"].as_u64().unwrap(), case["key"].as_str().unwrap());
        let order = random_order(n, seed, key);
        let head: Vec<u64> = case["head"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(order.iter().take(head.len()).map(|&i| i as u64).collect::<Vec<_>>(), head, "random order of {key:?}, seed {seed}");
        let weighted: u64 = order.iter().enumerate().map(|(k, &i)| (k as u64 + 1) * i as u64).sum();
        assert_eq!(weighted, case["weighted_sum"].as_u64().unwrap(), "random order of {key:?}, seed {seed}: all of it");
    }
}

#[test]
fn act_stats_match_numpy() {
    let r = reference();
    let (acts, shape) = r.array("acts");
    let per = shape[1] * shape[2] * shape[3];
    let (mut worst_moment, mut worst_entropy, mut worst_dice) = (0.0f64, 0.0f64, 0.0f64);
    for st in r.meta["stats"].as_array().unwrap() {
        let i = st["image"].as_u64().unwrap() as usize;
        let quant = st["variant"] == "quant";
        let grid = QGrid { scale: st["scale"].as_f64().unwrap() as f32, zero_point: st["zero_point"].as_i64().unwrap() as i32 };
        let act_q;
        let act: &[f32] = if quant {
            act_q = r.array(&format!("stats_q{i}")).0;
            &act_q
        } else {
            &acts[i * per..(i + 1) * per]
        };
        let s = act_stats(act, grid);
        let f = |k: &str| st[k].as_f64().unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
        assert!(rel(s.mean, f("mean")) <= 1e-9, "image {i}: mean {} vs {}", s.mean, f("mean"));
        assert!(rel(s.std, f("std")) <= 1e-9, "image {i}: std {} vs {}", s.std, f("std"));
        // (serde_json parses floats to within an ulp, not always exactly.)
        assert!((s.sparsity - f("sparsity")).abs() <= 1e-12, "image {i}: sparsity {} vs {}", s.sparsity, f("sparsity"));
        assert!((s.entropy - f("entropy")).abs() <= 1e-9, "image {i}: entropy {} vs {}", s.entropy, f("entropy"));
        // Histograms compared as counts, exactly.
        let counts = |h: &mut dyn Iterator<Item = f64>| h.map(|p| (p * per as f64).round() as u64).collect::<Vec<_>>();
        let got = counts(&mut s.hist.iter().map(|&p| p as f64));
        let want = counts(&mut st["hist"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
        assert_eq!(got, want, "image {i} ({}) grid {grid:?}: histogram", st["variant"]);
        if quant {
            // On its own grid a dequantized tensor bins to exactly its integer representation.
            let int_repr = counts(&mut st["int_repr_hist"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
            assert_eq!(got, int_repr, "image {i}: quantized histogram is not torch's int_repr histogram");
            let hf = act_stats(&acts[i * per..(i + 1) * per], grid).hist;
            let d = dice(&hf, &s.hist);
            let dw = f("dice_vs_float");
            assert!((d - dw).abs() <= 1e-6, "image {i}: dice {d} vs {dw}");
            worst_dice = worst_dice.max((d - dw).abs());
            eprintln!("stats image {i}: quant entropy {:.4} bits, sparsity {:.2}%, dice(float, quant) {d:.6}", s.entropy, s.sparsity);
        }
        worst_moment = worst_moment.max(rel(s.mean, f("mean"))).max(rel(s.std, f("std")));
        worst_entropy = worst_entropy.max((s.entropy - f("entropy")).abs());
    }
    eprintln!("stats worst: rel mean/std {worst_moment:.1e}, entropy |Δ| {worst_entropy:.1e}, dice |Δ| {worst_dice:.1e}");
}

#[test]
fn rmse_matches_numpy() {
    let r = reference();
    let (gc_cam, shape) = r.array("gc_cam");
    let (gc_flipped, _) = r.array("gc_cam_flipped");
    let (gc_proj, _) = r.array("gc_proj");
    let (acts, ashape) = r.array("acts");
    let (c, h, w) = (ashape[1], ashape[2], ashape[3]);
    let (n, px) = (shape[0], shape[1] * shape[2]);
    let cam = |k: usize| &gc_cam[k * px..(k + 1) * px];
    for i in 0..n {
        let want = r.meta["rmse_next"][i].as_f64().unwrap() as f32;
        let got = rmse(cam(i), cam((i + 1) % n));
        assert!((got - want).abs() <= 1e-5 * want.max(1.0), "image {i}: rmse {got} vs {want}");
        let flipped_ref = &gc_flipped[i * px..(i + 1) * px];
        let want_f = r.meta["rmse_flipped_self"][i].as_f64().unwrap() as f32;
        let got_f = rmse(cam(i), flipped_ref);
        assert!((got_f - want_f).abs() <= 1e-5 * want_f.max(1.0), "image {i}: rmse_flipped {got_f} vs {want_f}");

        // Our flipped map (from −p, p aligned to grad-cam's sign) is grad-cam's map of −P.
        let act = &acts[i * c * h * w..(i + 1) * c * h * w];
        let gp = &gc_proj[i * h * w..(i + 1) * h * w];
        let p = principal_projection(act, c, h, w, SignPolicy::None);
        let s = if p.iter().zip(gp).map(|(a, b)| a * b).sum::<f32>() < 0.0 { -1.0 } else { 1.0 };
        let aligned: Vec<f32> = p.iter().map(|x| s * x).collect();
        let d = max_abs_diff(&flipped_cam(&aligned, h, w, shape[1]), flipped_ref);
        assert!(d <= 1e-4, "image {i}: flipped cam max |Δ| {d}");
        eprintln!("rmse image {i}: vs next {got:.4} (numpy {want:.4}); flipped {got_f:.4} (numpy {want_f:.4}); flipped cam max|Δ| {d:.1e}");
    }
}
