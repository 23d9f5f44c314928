//! Acceptance (SPEC §1): `decode_rgb8` + `preprocess` against Pillow + torchvision on the 300-image
//! sample, for bilinear (ImageNet mean/std) and bicubic (mean = std = 0.5). Runs the reference script
//! once; checks, and prints, each stage: decode (RGB8 levels vs Pillow's `convert('RGB')`, required
//! bit-exact on every image), resize (given Pillow's decoded pixels, vs `PIL.Image.resize`, required
//! bit-exact) and the whole normalised tensor (required equal to torchvision's within 1e-5).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use image::RgbImage;
use operators::decode::*;
use types::{Interpolation, Preprocess};

struct Config {
    name: &'static str,
    p: Preprocess,
}

fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "bilinear",
            p: Preprocess {
                resize: 256,
                crop: 224,
                interpolation: Interpolation::Bilinear,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
            },
        },
        Config {
            name: "bicubic",
            p: Preprocess {
                resize: 256,
                crop: 224,
                interpolation: Interpolation::Bicubic,
                mean: [0.5; 3],
                std: [0.5; 3],
            },
        },
    ]
}

fn config_arg(c: &Config) -> String {
    let j = |v: &[f32; 3]| v.map(|x| x.to_string()).join(",");
    let interp = match c.p.interpolation {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
    };
    format!(
        "{}:{}:{}:{}:{}:{}",
        c.name,
        interp,
        c.p.resize,
        c.p.crop,
        j(&c.p.mean),
        j(&c.p.std)
    )
}

/// |Δ| statistics with a fine histogram for percentiles.
struct AbsStats {
    n: u64,
    sum: f64,
    max: f64,
    hist: Vec<u64>,
    bin: f64,
}

impl AbsStats {
    fn new(bin: f64, top: f64) -> Self {
        AbsStats {
            n: 0,
            sum: 0.0,
            max: 0.0,
            hist: vec![0; (top / bin) as usize + 2],
            bin,
        }
    }
    fn add(&mut self, d: f64) {
        let d = d.abs();
        self.n += 1;
        self.sum += d;
        self.max = self.max.max(d);
        let i = ((d / self.bin) as usize).min(self.hist.len() - 1);
        self.hist[i] += 1;
    }
    fn merge(&mut self, o: &AbsStats) {
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
        for (a, b) in self.hist.iter_mut().zip(&o.hist) {
            *a += b;
        }
    }
    fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
    /// Upper edge of the bin holding the q-quantile.
    fn quantile(&self, q: f64) -> f64 {
        let target = (q * self.n as f64).ceil() as u64;
        let mut acc = 0;
        for (i, &c) in self.hist.iter().enumerate() {
            acc += c;
            if acc >= target {
                return (i + 1) as f64 * self.bin;
            }
        }
        self.max
    }
    fn frac_nonzero(&self) -> f64 {
        1.0 - self.hist[0] as f64 / self.n.max(1) as f64
    }
}

/// One thread's share of the per-image comparisons.
struct Part {
    resize: AbsStats,
    resize_exact: usize,
    resize_images: usize,
    full: AbsStats,
    from_pil: AbsStats,
    worst: Vec<(f64, String)>,
    time: Duration,
}

impl Part {
    fn new() -> Self {
        Part {
            resize: AbsStats::new(1.0, 256.0),
            resize_exact: 0,
            resize_images: 0,
            full: AbsStats::new(1e-4, 20.0),
            from_pil: AbsStats::new(1e-6, 1.0),
            worst: Vec::new(),
            time: Duration::ZERO,
        }
    }
    fn merge(&mut self, o: Part) {
        self.resize.merge(&o.resize);
        self.resize_exact += o.resize_exact;
        self.resize_images += o.resize_images;
        self.full.merge(&o.full);
        self.from_pil.merge(&o.from_pil);
        self.worst.extend(o.worst);
        self.time += o.time;
    }
}

#[test]
fn preprocess_matches_torchvision_on_the_sample() {
    let images = sample_images();
    let cfgs = configs();
    let tmp = TempDir::new("decode-vs-tv");
    let out = tmp.path().to_str().unwrap().to_string();
    let val = sample_val_dir();
    let mut args = vec![
        "tensors".to_string(),
        "--images".into(),
        val.to_str().unwrap().into(),
        "--out".into(),
        out.clone(),
    ];
    for c in &cfgs {
        args.push("--config".into());
        args.push(config_arg(c));
    }
    let t0 = Instant::now();
    run_reference(&args.iter().map(String::as_str).collect::<Vec<_>>());
    println!("reference script: {:.1}s", t0.elapsed().as_secs_f64());

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("manifest.json")).unwrap()).unwrap();
    let entries = manifest["images"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        images.len(),
        "reference saw a different image set"
    );
    let decoded_ref = std::fs::read(tmp.path().join("decoded.u8")).unwrap();

    // Decode once (timed), compare with Pillow.
    let mut ours_dec: Vec<RgbImage> = Vec::with_capacity(images.len());
    let mut pil_dec: Vec<RgbImage> = Vec::with_capacity(images.len());
    let mut dec_stats = AbsStats::new(1.0, 256.0);
    let mut dec_time = Duration::ZERO;
    let mut dec_exact_images = 0;
    for (path, e) in images.iter().zip(entries) {
        // Same image, by name: the two sides may resolve a symlinked data folder differently.
        assert_eq!(
            Path::new(e["file"].as_str().unwrap()).file_name(),
            path.file_name(),
            "reference order differs"
        );
        let bytes = std::fs::read(path).unwrap();
        let t = Instant::now();
        let img = decode_rgb8(&bytes, DEFAULT_MAX_PIXELS)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        dec_time += t.elapsed();
        let (w, h) = (
            e["w"].as_u64().unwrap() as u32,
            e["h"].as_u64().unwrap() as u32,
        );
        assert_eq!(img.dimensions(), (w, h), "{}", path.display());
        let off = e["decoded_offset"].as_u64().unwrap() as usize;
        let pil = RgbImage::from_raw(w, h, decoded_ref[off..off + (w * h * 3) as usize].to_vec())
            .unwrap();
        let mut exact = true;
        for (a, b) in img.as_raw().iter().zip(pil.as_raw()) {
            let d = f64::from(*a) - f64::from(*b);
            exact &= d == 0.0;
            dec_stats.add(d);
        }
        dec_exact_images += exact as usize;
        ours_dec.push(img);
        pil_dec.push(pil);
    }
    let n = images.len() as f64;
    println!(
        "decode vs Pillow (RGB8 levels, {} images): mean |d| {:.4}, max {}, p99 {}, {:.2}% of values differ, {} images bit-exact; decode {:.2} ms/image",
        images.len(),
        dec_stats.mean(),
        dec_stats.max,
        dec_stats.quantile(0.99) - 1.0,
        100.0 * dec_stats.frac_nonzero(),
        dec_exact_images,
        dec_time.as_secs_f64() * 1e3 / n
    );

    let mut failures = Vec::new();
    // libjpeg-turbo's algorithm (through mozjpeg) as in Pillow: every image must be bit-exact.
    if dec_exact_images != images.len() || dec_stats.max > 0.0 {
        failures.push(format!(
            "decode not bit-exact vs Pillow: {} of {} images exact, max |d| {} levels",
            dec_exact_images,
            images.len(),
            dec_stats.max
        ));
    }
    for c in &cfgs {
        let p = &c.p;
        let resized_ref = std::fs::read(tmp.path().join(format!("resized_{}.u8", c.name))).unwrap();
        let tensors_ref = read_f32_le(&tmp.path().join(format!("tensors_{}.f32", c.name)));
        let plane = (p.crop * p.crop * 3) as usize;
        assert_eq!(tensors_ref.len(), plane * images.len());
        let ci = cfgs.iter().position(|x| x.name == c.name).unwrap();
        let (resized_ref, tensors_ref) = (&resized_ref, &tensors_ref);

        // Per image, on all cores (the crate is built without optimisation in `cargo test`):
        // resize only (our resampler on Pillow's decoded pixels vs PIL.Image.resize), then the whole
        // tensor from our decode and from Pillow's decode.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let parts: Vec<Part> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (entries, ours_dec, pil_dec, resized_ref, tensors_ref) =
                        (&entries, &ours_dec, &pil_dec, &resized_ref, &tensors_ref);
                    scope.spawn(move || {
                        let mut part = Part::new();
                        let mut pre = Preprocessor::new(p);
                        let mut buf = Vec::new();
                        for (i, e) in entries.iter().enumerate().skip(t).step_by(threads) {
                            let r = &e["resized"][ci];
                            let (rw, rh) = (
                                r["w"].as_u64().unwrap() as u32,
                                r["h"].as_u64().unwrap() as u32,
                            );
                            let f = crop_frame(pil_dec[i].width(), pil_dec[i].height(), p);
                            assert_eq!(
                                (f.resized_w, f.resized_h),
                                (rw, rh),
                                "resized size of {}",
                                e["id"]
                            );
                            // Whole-image resize on every 5th image (the crop window of every image is
                            // checked below: from Pillow's pixels the tensor must match exactly).
                            if i % 5 == 0 {
                                let off = r["offset"].as_u64().unwrap() as usize;
                                let want = &resized_ref[off..off + (rw * rh * 3) as usize];
                                let got = resize_rgb8(&pil_dec[i], rw, rh, p.interpolation);
                                let mut exact = true;
                                for (a, b) in got.as_raw().iter().zip(want) {
                                    let d = f64::from(*a) - f64::from(*b);
                                    exact &= d == 0.0;
                                    part.resize.add(d);
                                }
                                part.resize_exact += exact as usize;
                                part.resize_images += 1;
                            }

                            let want = &tensors_ref[i * plane..(i + 1) * plane];
                            let t0 = Instant::now();
                            pre.run_into(&ours_dec[i], &mut buf);
                            part.time += t0.elapsed();
                            let mut s = 0.0;
                            for (a, b) in buf.iter().zip(want) {
                                let d = f64::from(*a) - f64::from(*b);
                                part.full.add(d);
                                s += d.abs();
                            }
                            part.worst
                                .push((s / plane as f64, e["id"].as_str().unwrap().to_string()));
                            pre.run_into(&pil_dec[i], &mut buf);
                            for (a, b) in buf.iter().zip(want) {
                                part.from_pil.add(f64::from(*a) - f64::from(*b));
                            }
                        }
                        part
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = Part::new();
        for part in parts {
            all.merge(part);
        }
        let Part {
            resize: rs_stats,
            resize_exact: rs_exact,
            resize_images: rs_images,
            full,
            from_pil,
            mut worst,
            time: pre_time,
        } = all;
        println!(
            "[{}] resize vs PIL.Image.resize (same input, RGB8 levels): mean |d| {:.6}, max {}, {:.4}% of values differ, {}/{} images bit-exact",
            c.name,
            rs_stats.mean(),
            rs_stats.max,
            100.0 * rs_stats.frac_nonzero(),
            rs_exact,
            rs_images
        );
        worst.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!(
            "[{}] normalised tensor vs torchvision: mean |d| {:.5}, max {:.4}, p99 {:.4} (p99.9 {:.4}; percentiles are 1e-4 bin upper edges); preprocess {:.2} ms/image (this build's opt-level)",
            c.name,
            full.mean(),
            full.max,
            full.quantile(0.99),
            full.quantile(0.999),
            pre_time.as_secs_f64() * 1e3 / n
        );
        println!(
            "[{}]   from Pillow's decoded pixels: mean |d| {:.2e}, max {:.2e}",
            c.name,
            from_pil.mean(),
            from_pil.max
        );
        println!("[{}]   worst images by mean |d|: {:?}", c.name, &worst[..5]);
        // Decode and resize are bit-exact, so the tensor is too (same float32 op order).
        if full.max > 1e-5 {
            failures.push(format!(
                "[{}] tensor vs torchvision: mean |d| {}, max {} > 1e-5",
                c.name,
                full.mean(),
                full.max
            ));
        }
        // Given identical decoded pixels the pipeline is exact up to float op order (none here).
        if from_pil.max > 1e-5 {
            failures.push(format!(
                "[{}] from Pillow's pixels max |d| {} > 1e-5",
                c.name, from_pil.max
            ));
        }
        if rs_stats.max > 0.0 {
            failures.push(format!(
                "[{}] resize not bit-exact vs Pillow (max {})",
                c.name, rs_stats.max
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
