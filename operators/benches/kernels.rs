//! Per-image cost of every CPU kernel qcam runs around the two forwards, on the shapes the demo
//! pairs produce. No libtorch: `cargo bench -p qcam-operators --bench kernels`.
//!
//! * decode + preprocess: libjpeg-turbo decode of real sample JPEGs, Pillow-exact resize, crop,
//!   normalise (both interpolations the demo pairs use);
//! * EigenCAM on a 1280×7×7 (EfficientNet-Lite0, MobileNetV2) and a 576×7×7 activation: qcam's
//!   path (the 49×49 pixel Gram matrix, one symmetric eigen-decomposition, one power step) against
//!   a direct SVD of the centred 49×C matrix with nalgebra (what numpy does for pytorch-grad-cam,
//!   there with `full_matrices=True`, i.e. a C×C `VT` as well), to show why the Gram path;
//! * upsample (7×7 → 224×224, `cam_full`) and WSOL (`localize`: box at τ = 0.2 and the 100-point
//!   IoU curve; the Gaussian baseline's map swept per image against swept once and scored);
//! * activation statistics (`act_stats`) and the pair RMSE (`rmse` + `flipped_cam`);
//! * deletion/insertion batch assembly: `pixel_order`, `blur`, one batch of 16 deletion / insertion
//!   images, and all 202 images of one (image, variant) with no model.
//!
//! Activations are synthetic (a spatially structured, ReLU6-clipped, ~half-sparse pattern from a
//! fixed seed): the kernels' cost depends on the shape, not on the values. Sample images come from
//! `QCAM_SAMPLE_DATA` (default `<workspace>/../shared/data/imagenet-val-sample`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nalgebra::DMatrix;
use std::hint::black_box;

use operators::decode::{decode_rgb8, Preprocessor, DEFAULT_MAX_PIXELS};
use operators::eigencam::{self, SignPolicy};
use operators::perturb::{self, PerturbPlan};
use operators::stats::{self, QGrid};
use operators::{baselines, compare, wsol};
use types::{BoxXyxy, Interpolation, Preprocess};

const CROP: usize = 224;
const BATCH: usize = 16;
const STEPS: usize = 100;

fn sample_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = std::env::var_os("QCAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/imagenet-val-sample"));
    let val = p.join("ILSVRC/Data/CLS-LOC/val");
    assert!(val.is_dir(), "sample images not found at {} (set QCAM_SAMPLE_DATA)", val.display());
    val
}

/// The first `n` sample JPEGs (sorted), as bytes.
fn sample_jpegs(n: usize) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sample_dir())
        .expect("reading the sample folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    files.sort();
    files.truncate(n);
    files.iter().map(|p| std::fs::read(p).expect("reading a sample JPEG")).collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// C×h×w activation: per-channel gain × a spatial blob + noise − offset, clipped to [0, 6]
/// (ReLU6), so it has a dominant component and roughly half exact zeros, like the real ones.
fn synthetic_act(c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng(seed);
    let blob: Vec<f32> = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32 - h as f32 * 0.4, (i % w) as f32 - w as f32 * 0.6);
            (-(x * x + y * y) / 6.0).exp()
        })
        .collect();
    let mut act = Vec::with_capacity(c * h * w);
    for _ in 0..c {
        let gain = 4.0 * r.next();
        let offset = 1.5 * r.next();
        for &b in &blob {
            act.push((gain * b + r.next() - offset).clamp(0.0, 6.0));
        }
    }
    act
}

/// pytorch-grad-cam's `get_2d_projection` done with nalgebra: centre the (h·w) × C matrix and take
/// `p = M v₁` from a direct SVD (thin: nalgebra has no `full_matrices=True`, so this is already
/// cheaper than numpy's call). f64, as qcam's Gram path.
fn projection_via_svd(act: &[f32], c: usize, n: usize) -> Vec<f64> {
    let mut m = DMatrix::<f64>::zeros(n, c);
    for ch in 0..c {
        let col = &act[ch * n..(ch + 1) * n];
        let mean = col.iter().map(|&a| a as f64).sum::<f64>() / n as f64;
        for (i, &a) in col.iter().enumerate() {
            m[(i, ch)] = a as f64 - mean;
        }
    }
    let svd = m.clone().svd(false, true);
    let vt = svd.v_t.expect("asked for V");
    let top = svd.singular_values.imax();
    (&m * vt.row(top).transpose()).iter().copied().collect()
}

fn bench_decode(cr: &mut Criterion) {
    let jpegs = sample_jpegs(8);
    let mut g = cr.benchmark_group("decode_preprocess");
    g.throughput(Throughput::Elements(jpegs.len() as u64));
    for (name, interpolation, mean, std) in [
        ("bilinear_imagenet", Interpolation::Bilinear, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("bicubic_lite", Interpolation::Bicubic, [0.5; 3], [0.5; 3]),
    ] {
        let p = Preprocess { resize: 256, crop: CROP as u32, interpolation, mean, std };
        let mut pre = Preprocessor::new(&p);
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new("8_images", name), |b| {
            b.iter(|| {
                for bytes in &jpegs {
                    let rgb = decode_rgb8(bytes, DEFAULT_MAX_PIXELS).expect("sample decodes");
                    black_box(pre.run_into(&rgb, &mut out));
                }
            })
        });
    }
    g.finish();
    let mut g = cr.benchmark_group("decode_only");
    g.throughput(Throughput::Elements(jpegs.len() as u64));
    g.bench_function("8_images", |b| {
        b.iter(|| {
            for bytes in &jpegs {
                black_box(decode_rgb8(bytes, DEFAULT_MAX_PIXELS).expect("sample decodes"));
            }
        })
    });
}

fn bench_eigencam(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("eigencam");
    for c in [1280usize, 576] {
        let act = synthetic_act(c, 7, 7, 0x5eed + c as u64);
        // Both routes must give the same projection (up to sign) before their speed means anything.
        let a = eigencam::principal_projection(&act, c, 7, 7, SignPolicy::None);
        let b = projection_via_svd(&act, c, 49);
        let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y).sum();
        let s = dot.signum();
        let err = a.iter().zip(&b).map(|(&x, &y)| (x as f64 - s * y).abs()).fold(0.0, f64::max);
        let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
        assert!(err <= 1e-4 * scale, "Gram and SVD projections differ by {err} (scale {scale})");

        let shape = format!("{c}x7x7");
        g.bench_function(BenchmarkId::new("projection_gram49", &shape), |bch| {
            bch.iter(|| black_box(eigencam::principal_projection(black_box(&act), c, 7, 7, SignPolicy::Mean)))
        });
        g.bench_function(BenchmarkId::new("projection_svd_direct", &shape), |bch| {
            bch.iter(|| black_box(projection_via_svd(black_box(&act), c, 49)))
        });
        g.bench_function(BenchmarkId::new("eigencam_full_to_224", &shape), |bch| {
            bch.iter(|| black_box(eigencam::eigencam(black_box(&act), c, 7, 7, SignPolicy::Mean, CROP)))
        });
    }
}

fn bench_upsample_wsol(cr: &mut Criterion) {
    let act = synthetic_act(1280, 7, 7, 7);
    let e = eigencam::eigencam(&act, 1280, 7, 7, SignPolicy::Mean, CROP);
    let gt = [BoxXyxy::new(40, 30, 150, 170), BoxXyxy::new(120, 100, 210, 220)];
    let mut g = cr.benchmark_group("upsample_wsol");
    g.bench_function("cam_full_7_to_224", |b| b.iter(|| black_box(eigencam::cam_full(black_box(&e.cam_lo), 7, 7, CROP))));
    g.bench_function("localize_224", |b| b.iter(|| black_box(wsol::localize(black_box(&e.cam), CROP, &gt, 0.2))));
    // The Gaussian baseline's WSOL per image: swept each time, and swept once then only scored.
    let gauss = baselines::gaussian(CROP, 0.25);
    g.bench_function("gaussian_localize_224_sweep_each", |b| b.iter(|| black_box(wsol::localize(black_box(&gauss.map), CROP, &gt, 0.2))));
    g.bench_function("gaussian_localize_224_swept_once", |b| b.iter(|| black_box(gauss.localize(black_box(&gt), 0.2))));
    g.bench_function("rmse_and_flipped_224", |b| {
        b.iter(|| {
            let flipped = compare::flipped_cam(&e.p, 7, 7, CROP);
            black_box((compare::rmse(&e.cam, &flipped), compare::rmse(&e.cam, black_box(&e.cam))))
        })
    });
}

fn bench_stats(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("act_stats");
    for c in [1280usize, 576] {
        let act = synthetic_act(c, 7, 7, 11);
        let grid = QGrid { scale: 6.0 / 255.0, zero_point: 0 };
        g.throughput(Throughput::Elements(act.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{c}x7x7")), |b| {
            b.iter(|| black_box(stats::act_stats(black_box(&act), grid)))
        });
    }
}

fn bench_perturb(cr: &mut Criterion) {
    let mut r = Rng(99);
    let x: Vec<f32> = (0..3 * CROP * CROP).map(|_| 2.0 * r.next() - 1.0).collect();
    let act = synthetic_act(1280, 7, 7, 3);
    let cam = eigencam::eigencam(&act, 1280, 7, 7, SignPolicy::Mean, CROP).cam;
    let plan = PerturbPlan::new(CROP, STEPS);
    let order = perturb::pixel_order(&cam);
    let blurred = perturb::blur(&x, CROP);
    let mut buf = Vec::with_capacity(BATCH * x.len());

    let mut g = cr.benchmark_group("perturb");
    g.bench_function("pixel_order_224", |b| b.iter(|| black_box(perturb::pixel_order(black_box(&cam)))));
    g.bench_function("blur_3x224x224", |b| b.iter(|| black_box(perturb::blur(black_box(&x), CROP))));
    g.throughput(Throughput::Elements(BATCH as u64));
    // A middle batch (points 48..64): one copy of the start image, then 16 copy+patch steps.
    g.bench_function("fill_deletion_batch16", |b| {
        b.iter(|| {
            buf.clear();
            perturb::fill_deletion(&x, &order, &plan, 48..48 + BATCH, &mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("fill_insertion_batch16", |b| {
        b.iter(|| {
            buf.clear();
            perturb::fill_insertion(&x, &blurred, &order, &plan, 48..48 + BATCH, &mut buf);
            black_box(buf.len())
        })
    });
    // Everything causal_curves does for one (image, variant) except the model: order, blur,
    // 13 batches of assembly (2 · 101 images) and 202 softmaxes over 1000 logits.
    let logits = vec![0.5f32; BATCH * 1000];
    g.throughput(Throughput::Elements(2 * plan.points() as u64));
    g.bench_function("causal_curves_no_model_202_images", |b| {
        b.iter(|| {
            black_box(
                perturb::causal_curves(&x, &cam, CROP, STEPS, BATCH, 7, perturb::KnownScores::NONE, |_, n| Ok(logits[..n * 1000].to_vec()))
                    .expect("curves"),
            )
        })
    });
}

fn config() -> Criterion {
    // Short by default so `make bench` stays minutes, not tens of minutes, on a small machine;
    // criterion_group! applies criterion's own flags on top (`-- --measurement-time 10`).
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = bench_decode, bench_eigencam, bench_upsample_wsol, bench_stats, bench_perturb
}
criterion_main!(kernels);
