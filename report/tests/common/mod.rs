//! Shared by the report's integration tests: a synthetic but realistic run folder (every table
//! written with `tables::write_part`, a run.json shaped like a real one, and a small Kaggle-layout
//! image folder for Figure 3), and the venv's Python. Nothing is skipped: a missing prerequisite
//! fails the test with what provides it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use types::{AggregateRow, ErrorRow, ImageRow, Method, PairRow, PerturbationRow, Stage, SubsetRow, WsolRow};
use types::Variant;
use serde_json::json;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    let p = std::env::var_os("QCAM_PYTHON").map(PathBuf::from).unwrap_or(venv);
    assert!(p.exists(), "Python with duckdb and polars missing at {} (run `make setup`)", p.display());
    p
}

/// Runs a script with the venv's Python; panics with its stderr on failure.
pub fn run_python(script: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python()).arg(script).args(args).output().expect("spawning python");
    assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic made-up values: qcam's own SplitMix64 (`types::rng`).
pub struct Rng(types::rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(types::rng::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// (name, float provenance, quantized provenance).
pub const PAIRS: [(&str, &str, &str); 3] = [
    ("alpha_net", "pretrained:torchvision alpha", "pretrained:torchvision alpha int8"),
    ("beta_net", "substitute:dequantized int8 weights", "pretrained:beta qat"),
    ("gamma_net_random", "random:0", "random:0"),
];
pub const IMAGES: usize = 40;
pub const SHARD_SIZE: usize = 20;
/// Subset size per pair: ceil(0.1 · 40).
pub const SUBSET: usize = 4;
pub const CROP: i32 = 224;

pub fn image_id(i: usize) -> String {
    format!("ILSVRC2012_val_{:08}", i + 1)
}

pub fn shard_of(i: usize) -> String {
    format!("val-{:05}", i / SHARD_SIZE)
}

/// Everything written, kept for the tests to compute expectations from directly.
pub struct Synthetic {
    pub images: Vec<ImageRow>,
    pub pairs: Vec<PairRow>,
    pub subset: Vec<SubsetRow>,
    pub perturbation: Vec<PerturbationRow>,
    pub wsol: Vec<WsolRow>,
}

pub struct Tables {
    pub subset: bool,
    pub perturbation: bool,
    /// The `wsol` table, and the baselines' rows of `perturbation`.
    pub baselines: bool,
}

pub const ALL_TABLES: Tables = Tables { subset: true, perturbation: true, baselines: true };
/// What a run by an older qcam left: images, pairs, errors.
pub const OLD_RUN: Tables = Tables { subset: false, perturbation: false, baselines: false };
/// Subset images given the baselines' orders: ceil(0.5 · SUBSET), the best ranks.
pub const BASELINED: usize = 2;

/// The `wsol` rows of one image row: EigenCAM's (the row's own box), a Gaussian map's and the
/// whole crop's, with made-up IoUs that vary per image.
fn wsol_rows(rng: &mut Rng, row: &ImageRow) -> [WsolRow; 3] {
    let wsol = |method, iou: f32, iou_curve: Vec<f32>| WsolRow {
        image_id: row.image_id.clone(),
        shard: row.shard.clone(),
        model: row.model.clone(),
        variant: row.variant,
        method,
        bbox: row.bbox,
        iou,
        iou_curve,
        top1_loc: row.top1_correct && iou >= 0.5,
    };
    let peak = rng.unit();
    let gaussian: Vec<f32> = (0..100).map(|j| peak * (1.0 - j as f32 / 100.0)).collect();
    let full = 0.2 + 0.6 * rng.unit();
    [
        wsol(Method::EigenCam, row.iou, row.iou_curve.clone()),
        wsol(Method::Gaussian, gaussian[20], gaussian),
        wsol(Method::Full, full, vec![full; 100]),
    ]
}

fn image_row(rng: &mut Rng, i: usize, model: &str, variant: &'static str) -> ImageRow {
    let label = rng.below(1000) as i32;
    let mut top5: Vec<i32> = (0..5).map(|_| rng.below(1000) as i32).collect();
    let top1_correct = rng.unit() < 0.7;
    if top1_correct {
        top5[0] = label;
    }
    let top5_correct = top1_correct || rng.unit() < 0.5;
    if top5_correct && !top1_correct {
        top5[3] = label;
    }
    let mut probs: Vec<f32> = (0..5).map(|_| rng.unit() * 0.2).collect();
    probs.sort_by(|a, b| b.total_cmp(a));
    // A 7×7 CAM with a blob, stored min-maxed as SPEC §3 step 4 says.
    let (cy, cx) = (rng.below(7) as f32, rng.below(7) as f32);
    let mut cam: Vec<f32> =
        (0..49).map(|k| (-(((k / 7) as f32 - cy).powi(2) + ((k % 7) as f32 - cx).powi(2)) / 4.0).exp()).collect();
    let (lo, hi) = cam.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    cam.iter_mut().for_each(|v| *v = (*v - lo) / (hi - lo + 1e-7));
    let x0 = rng.below(150) as i32;
    let y0 = rng.below(150) as i32;
    let bbox = [x0, y0, (x0 + 20 + rng.below(70) as i32).min(CROP - 1), (y0 + 20 + rng.below(70) as i32).min(CROP - 1)];
    let peak = rng.unit();
    let iou_curve: Vec<f32> = (0..100).map(|j| peak * (1.0 - (j as f32 / 100.0 - 0.3).abs())).collect();
    let mut hist: Vec<f32> = (0..256).map(|b| if b < 40 { rng.unit() } else { rng.unit() * 0.01 }).collect();
    let zp = 3 + rng.below(5) as usize;
    hist[zp] += 20.0;
    let total: f32 = hist.iter().sum();
    hist.iter_mut().for_each(|h| *h /= total);
    let quantized = variant == "quantized";
    ImageRow {
        image_id: image_id(i),
        shard: shard_of(i),
        label,
        model: model.into(),
        variant: variant.parse().unwrap(),
        top5,
        top5_prob: probs,
        top1_correct,
        top5_correct,
        cam_h: 7,
        cam_w: 7,
        cam,
        bbox,
        iou: iou_curve[20],
        iou_curve,
        act_mean: rng.unit() as f64,
        act_std: 0.5 + rng.unit() as f64,
        act_sparsity: 100.0 * rng.unit() as f64,
        act_entropy: 2.0 + 4.0 * rng.unit() as f64,
        act_hist: hist,
        infer_ms: if quantized { 20.0 + 10.0 * rng.unit() } else { 80.0 + 40.0 * rng.unit() },
        cam_ms: 1.0 + rng.unit(),
    }
}

/// Writes a run folder at `run_dir` (tables in two shards' part files each, as qcam does) whose
/// run.json points at `data_dir`; returns the rows written.
pub fn write_run(run_dir: &Path, data_dir: &Path, which: Tables) -> Synthetic {
    let mut rng = Rng::new(42);
    let mut s = Synthetic { images: vec![], pairs: vec![], subset: vec![], perturbation: vec![], wsol: vec![] };
    for (model, _, _) in PAIRS {
        for i in 0..IMAGES {
            let float = image_row(&mut rng, i, model, "float");
            let mut quantized = image_row(&mut rng, i, model, "quantized");
            // Every fourth image localizes identically in both variants: zero paired differences,
            // tied with each other, as an int8 model that moves no box gives.
            if i % 4 == 0 {
                (quantized.iou, quantized.iou_curve) = (float.iou, float.iou_curve.clone());
            }
            s.images.extend([float, quantized]);
            let rmse = 100.0 * rng.unit();
            // Some pairs look sign-flipped: the flipped distance is then the small one.
            let rmse_flipped = if rng.unit() < 0.3 { rmse * rng.unit() } else { rmse + 50.0 * rng.unit() };
            let top1_agree = rng.unit() < 0.8;
            s.pairs.push(PairRow { image_id: image_id(i), model: model.into(), rmse, rmse_flipped, top1_agree });
        }
        // The subset as qcam writes it (SPEC §4): rmse descending, then image_id.
        let mut ranked: Vec<&PairRow> = s.pairs.iter().filter(|p| p.model == model).collect();
        ranked.sort_by(|a, b| b.rmse.total_cmp(&a.rmse).then(a.image_id.cmp(&b.image_id)));
        for (k, p) in ranked.iter().take(SUBSET).enumerate() {
            let (image_id, rank) = (p.image_id.clone(), k as i32 + 1);
            s.subset.push(SubsetRow { model: model.into(), image_id, rank, rmse: p.rmse });
        }
    }
    for row in &s.subset {
        let mut methods = vec![Method::EigenCam];
        if which.baselines && row.rank as usize <= BASELINED {
            methods.extend([Method::Gaussian, Method::Random]);
        }
        for method in methods {
            for variant in Variant::BOTH {
                let deletion_curve: Vec<f32> = (0..101).map(|j| (1.0 - j as f32 / 100.0).powi(3)).collect();
                let insertion_curve: Vec<f32> = (0..101).map(|j| (j as f32 / 100.0).sqrt()).collect();
                s.perturbation.push(PerturbationRow {
                    image_id: row.image_id.clone(),
                    model: row.model.clone(),
                    variant,
                    method,
                    target: rng.below(1000) as i32,
                    deletion_auc: 0.05 + 0.3 * rng.unit(),
                    insertion_auc: 0.3 + 0.5 * rng.unit(),
                    deletion_curve,
                    insertion_curve,
                });
            }
        }
    }
    if which.baselines {
        let rows: Vec<WsolRow> = s.images.iter().flat_map(|r| wsol_rows(&mut rng, r)).collect();
        s.wsol = rows;
    }
    let errors = vec![ErrorRow::new("ILSVRC2012_val_00099999", "val-00001", Stage::Decode, "synthetic: truncated JPEG")];
    for part in 0..IMAGES / SHARD_SIZE {
        let shard = format!("val-{part:05}");
        let of_shard = |id: &str| shard_of(id[15..].parse::<usize>().unwrap() - 1) == shard;
        let images: Vec<ImageRow> = s.images.iter().filter(|r| r.shard == shard).cloned().collect();
        let pairs: Vec<PairRow> = s.pairs.iter().filter(|r| of_shard(&r.image_id)).cloned().collect();
        tables::write_part(run_dir, &shard, &images).unwrap();
        tables::write_part(run_dir, &shard, &pairs).unwrap();
        let errs: Vec<ErrorRow> = errors.iter().filter(|e| e.shard == shard).cloned().collect();
        tables::write_part(run_dir, &shard, &errs).unwrap();
        if which.baselines {
            let rows: Vec<WsolRow> = s.wsol.iter().filter(|r| r.shard == shard).cloned().collect();
            tables::write_part(run_dir, &shard, &rows).unwrap();
        }
        if which.perturbation {
            let rows: Vec<PerturbationRow> = s.perturbation.iter().filter(|r| of_shard(&r.image_id)).cloned().collect();
            tables::write_part(run_dir, &shard, &rows).unwrap();
        }
    }
    if which.subset {
        // The subset is decided after all shards: one part file, as the run's final step writes it.
        tables::write_part(run_dir, "final", &s.subset).unwrap();
        let aggregates: Vec<AggregateRow> = PAIRS
            .iter()
            .flat_map(|(model, _, _)| ["float", "quantized"].map(|variant| aggregate(model, variant)))
            .collect();
        tables::write_part(run_dir, "epoch-00000", &aggregates).unwrap();
    }
    if !which.perturbation {
        s.perturbation.clear();
    }
    if !which.subset {
        s.subset.clear();
    }
    std::fs::write(run_dir.join("run.json"), serde_json::to_string_pretty(&run_json(data_dir)).unwrap()).unwrap();
    s
}

fn aggregate(model: &str, variant: &'static str) -> AggregateRow {
    AggregateRow {
        epoch: 0,
        model: model.into(),
        variant: variant.parse().unwrap(),
        images: IMAGES as i64,
        top1: 0.7,
        top5: 0.9,
        mean_iou: 0.3,
        act_mean: 0.5,
        act_std: 1.0,
        act_sparsity: 40.0,
        act_entropy: 4.0,
        mean_rmse: 50.0,
        mean_rmse_flipped: 60.0,
        top1_agree: 0.8,
        subset_size: SUBSET as i64,
        subset_mean_rmse: 90.0,
    }
}

/// run.json as qcam writes it (the structure of a real run's), trimmed to a few fields.
fn run_json(data_dir: &Path) -> serde_json::Value {
    let pairs: Vec<serde_json::Value> = PAIRS
        .iter()
        .enumerate()
        .map(|(k, (name, float_w, quant_w))| {
            // The first pair preprocesses like EfficientNet-Lite, the others like torchvision.
            let (mean, std, interp) = match k {
                0 => ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "bicubic"),
                _ => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bilinear"),
            };
            json!({
                "manifest_path": format!("artifacts/models/{name}/manifest.json"),
                "manifest": {
                    "format": 1,
                    "name": name,
                    "architecture": format!("synthetic {name}"),
                    "preprocess": {"resize": 256, "crop": CROP, "interpolation": interp, "mean": mean, "std": std},
                    "cam_layer": {"name": "features.18", "shape": [1280, 7, 7]},
                    "quantization": {"engine": "qnnpack", "method": "qat", "calibration": null},
                    "float": {"file": "float.pt", "bytes": 14_000_000 + k as u64, "sha256": "00", "weights": float_w},
                    "quantized": {"file": "quantized.pt", "bytes": 3_900_000 + k as u64, "sha256": "11", "weights": quant_w},
                    "exporter": {"command": "synthetic"},
                    "sample_top1": {"float": 0.7, "quantized": 0.69, "images": 300}
                }
            })
        })
        .collect();
    json!({
        "schema_version": 1,
        "job": {
            "name": "synthetic",
            "data": {"path": data_dir, "layout": "auto", "shard_size": SHARD_SIZE, "limit": null, "max_pixels": 89478485u64},
            "models": {"dir": "artifacts/models", "pairs": PAIRS.iter().map(|p| p.0).collect::<Vec<_>>()},
            "run": {"batch_size": 16, "workers": 1, "torch_threads": 0, "max_in_flight": 4},
            "cam": {"sign": "mean"},
            "wsol": {"threshold": 0.2},
            "subset": {"top_fraction": 0.1, "epoch_shards": 1},
            "output": {"dir": "runs/synthetic", "overwrite": true}
        },
        "versions": {"qcam": "0.1.0"},
        "pairs": pairs,
        "data_layout": "kaggle",
        "images_listed": IMAGES,
        "shards": IMAGES / SHARD_SIZE,
        "processes": 1,
        "process": 0,
        "workers_per_process": 1,
        "wall_s": 1.0,
        "workers": []
    })
}

/// A Kaggle-layout folder with the run's images: 320×240 pictures (a gradient with a dark
/// rectangle where the box is), labels and boxes in LOC_val_solution.csv.
pub fn write_images(data_dir: &Path) {
    let val = data_dir.join("ILSVRC/Data/CLS-LOC/val");
    std::fs::create_dir_all(&val).unwrap();
    let mut csv = String::from("ImageId,PredictionString\n");
    for i in 0..IMAGES {
        let (x0, y0, x1, y1) = (40 + i as u32 * 3, 30 + i as u32 * 2, 200 + i as u32, 180);
        let img = image::RgbImage::from_fn(320, 240, |x, y| {
            if (x0..=x1).contains(&x) && (y0..=y1).contains(&y) {
                image::Rgb([30, 30, 90])
            } else {
                image::Rgb([(x * 255 / 319) as u8, (y * 255 / 239) as u8, 160])
            }
        });
        img.save(val.join(format!("{}.JPEG", image_id(i)))).unwrap();
        csv.push_str(&format!("{},n01751748 {x0} {y0} {x1} {y1}\n", image_id(i)));
    }
    std::fs::write(data_dir.join("LOC_val_solution.csv"), csv).unwrap();
}

/// Reads a report CSV as rows of (column → text).
pub fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| header.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect())
        .collect()
}

/// `a` equals `b` to `rel` relative (absolute near zero).
pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

pub fn num(row: &BTreeMap<String, String>, column: &str) -> f64 {
    let text = row.get(column).unwrap_or_else(|| panic!("no column {column} in {row:?}"));
    text.parse().unwrap_or_else(|_| panic!("{column} = `{text}` is not a number"))
}

/// Every column of `python_rows` must be in the CSV with the same value, row by row.
pub fn assert_same(table: &str, engine: &str, csv_rows: &[BTreeMap<String, String>], python_rows: &serde_json::Value) {
    let python_rows = python_rows.as_array().unwrap_or_else(|| panic!("{engine} {table}: not a list"));
    assert_eq!(csv_rows.len(), python_rows.len(), "{engine} {table}: row count");
    assert!(!python_rows.is_empty(), "{engine} {table}: no rows to compare");
    for (ours, theirs) in csv_rows.iter().zip(python_rows) {
        for (column, value) in theirs.as_object().unwrap() {
            match value {
                serde_json::Value::String(s) => assert_eq!(&ours[column], s, "{engine} {table} {column}"),
                serde_json::Value::Number(n) => {
                    let (a, b) = (num(ours, column), n.as_f64().unwrap());
                    assert!(close(a, b, 1e-6), "{engine} {table} {} {column}: report {a} vs {b}", ours["model"]);
                }
                // SQL's NULL (an average over no rows) is an empty CSV cell.
                serde_json::Value::Null => assert_eq!(ours[column], "", "{engine} {table} {column}"),
                other => panic!("{engine} {table} {column}: unexpected {other}"),
            }
        }
    }
}

/// Sets run.json's `job.report` (the job file's `[report]` section), or removes it.
pub fn set_report_config(run_dir: &Path, section: Option<serde_json::Value>) {
    let path = run_dir.join("run.json");
    let mut run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let job = run["job"].as_object_mut().unwrap();
    match section {
        Some(s) => job.insert("report".into(), s),
        None => job.remove("report"),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&run).unwrap()).unwrap();
}

/// Every CSV a report wrote, by file name, as bytes.
pub fn report_csvs(run_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(run_dir.join("report"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}
