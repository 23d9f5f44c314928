//! The bad-input corpus (issue 6), made by the tests themselves: every kind of broken input a
//! real ImageNet run can meet, each with one stated outcome.
//!
//! | input | outcome |
//! |---|---|
//! | truncated JPEG | `errors` row, stage `decode`, "truncated JPEG" |
//! | random bytes named `.JPEG` | `errors` row, stage `decode`, "neither JPEG nor PNG" |
//! | PNG named `.JPEG` | decoded by content, rows as any image; pixels = Pillow's |
//! | CMYK JPEG, grayscale JPEG | decoded, rows; pixels = Pillow's `convert('RGB')` |
//! | 1×1 image | decoded (scaled up to the crop), rows; its only box is dropped (SPEC §1) |
//! | 10,000×10,000 image | `errors` row, stage `decode`, refused from its header by `data.max_pixels` before any frame is allocated (memory: `operators/tests/decode_alloc.rs`) |
//! | missing label | `errors` row, stage `label`, "no label" |
//! | box outside the image | dropped (SPEC §1), rows with IoU 0 and an all-zero IoU curve |
//! | box past the image edges | clipped to the crop (SPEC §1), IoU against the whole crop |
//! | XML that does not parse | `errors` row, stage `label`, "annotation does not parse" |
//! | truncated tar shard | the samples it lost are `errors` rows, stage `read`, "truncated"; those before the cut are read |
//! | shard bytes that do not match the index | the sample whose digest fails is an `errors` row, stage `read`; the others are read |
//! | index `sha256` of a whole shard wrong, samples intact | read as usual: per-sample digests check content as it streams |
//! | NaN logits (one image) | `errors` row of that pair only, stage `infer`; the other pair has rows for it |
//! | NaN in activations | SPEC §2: NaN becomes 0; rows, with those zeros in `act_sparsity` |
//! | model file missing, not TorchScript, wrong arity, wrong shape | the run stops before any work (no output folder), naming the manifest and its field |
//! | job with an unknown key or a bad value | the run stops before any work, naming the job file and the key or field |
//!
//! Image-level outcomes are checked per (image, pair) against this table, and so are the counts
//! `run.json` reports: `images_in = rows_ok + rows_error` for every pair, where an error without a
//! model counts against every pair.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use arrow::array::{Array, Float32Array, Int32Array};
use sha2::{Digest, Sha256};
use tables::{column, read_table, F32Col, F64Col, ListCol, Utf8Col};

const MOBILENET: &str = "mobilenet_v2_qnnpack";
/// The test pair: float gives NaN logits for a nearly white image, quantized gives NaN in channel 0
/// of every activation (tests/reference/bad_models.py). Its preprocessing (bicubic, mean = std =
/// 0.5) differs from MobileNet's, so the two pairs decode in two branches.
const TINY: &str = "tiny_nan";
const SRC_ID: &str = "ILSVRC2012_val_00000001";
const SRC_WNID: &str = "n01751748";

/// What must become of one image in one pair.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// A `pairs` row and two `images` rows.
    Rows,
    /// One `errors` row with this stage and a message containing `text`; `own` says whether the
    /// row names the pair (an `infer` failure) or no model (it then counts against every pair).
    Error { stage: &'static str, own: bool, text: &'static str },
}

const fn err(stage: &'static str, text: &'static str) -> Want {
    Want::Error { stage, own: false, text }
}

const TRUNCATED: Want = err("decode", "truncated JPEG");
const TOO_LARGE: Want = err("decode", "image is 10000x10000, more than the limit of 89478485 pixels");
const NO_LABEL: Want = err("label", "no label: not in LOC_val_solution.csv");
const BAD_XML: Want = err("label", "annotation does not parse");
const NAN_LOGITS: Want = Want::Error { stage: "infer", own: true, text: "float model produced non-finite logits" };

/// The corpus, in id order (folder layouts sort by id; shards of 5 cut it after c05 and c10).
const IDS: [&str; 15] = [
    "c01_good",
    "c02_good",
    "c03_good",
    "c04_truncated",
    "c05_random_bytes",
    "c06_png_named_jpeg",
    "c07_cmyk",
    "c08_gray",
    "c09_1x1",
    "c10_10000x10000",
    "c11_missing_label",
    "c12_box_outside",
    "c13_box_clipped",
    "c14_bad_xml",
    "c15_white",
];

/// Outcomes of a run over the corpus folder.
fn folder_outcome(id: &str, pair: &str) -> Want {
    match id {
        "c04_truncated" => TRUNCATED,
        "c05_random_bytes" => err("decode", "neither JPEG nor PNG"),
        "c10_10000x10000" => TOO_LARGE,
        "c11_missing_label" => NO_LABEL,
        "c14_bad_xml" => BAD_XML,
        "c15_white" if pair == TINY => NAN_LOGITS,
        _ => Want::Rows,
    }
}

/// Outcomes of a run over the corpus packed in shards of 5, after the test cut shard 0 inside
/// c03's image and flipped a byte of c07's image in shard 1 (shard 2 keeps its bytes but its
/// index entry gets a wrong whole-file sha256). Labels were judged when packing: the index lists
/// c11 and c14 as errors with their stage and message.
fn shard_outcome(id: &str, pair: &str) -> Want {
    match id {
        "c03_good" | "c04_truncated" | "c05_random_bytes" => err("read", "truncated"),
        "c07_cmyk" => err("read", "does not match its sha256 in the index"),
        _ => folder_outcome(id, pair),
    }
}

/// What the tests share: the corpus folder, the made models, the reference decodes. Built once
/// per test binary under cargo's target tmp dir.
struct Corpus {
    /// Kaggle layout.
    data: PathBuf,
    /// bad_models.py's output: `<mode>.pt`.
    models: PathBuf,
    /// bad_images.py's output: `<kind>.JPEG`, `<kind>.rgb`, `meta.json`.
    images: PathBuf,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_input");
        let _ = std::fs::remove_dir_all(&root);
        let c = Corpus { data: root.join("data"), models: root.join("models"), images: root.join("images") };
        let sample = common::sample_dir();
        let sample_images = sample.join("ILSVRC/Data/CLS-LOC/val");
        let src = sample_images.join(format!("{SRC_ID}.JPEG"));
        let reference = common::repo_root().join("tests/reference");
        common::run_python(&reference.join("bad_images.py"), &[src.as_os_str(), c.images.as_os_str()]);
        common::run_python(&reference.join("bad_models.py"), &[c.models.as_os_str()]);

        let images = c.data.join("ILSVRC/Data/CLS-LOC/val");
        let annotations = c.data.join("ILSVRC/Annotations/CLS-LOC/val");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&annotations).unwrap();
        std::fs::copy(sample.join("LOC_synset_mapping.txt"), c.data.join("LOC_synset_mapping.txt")).unwrap();
        let solution = std::fs::read_to_string(sample.join("LOC_val_solution.csv")).unwrap();
        let prediction = |id: &str| -> String {
            let line = solution.lines().find(|l| l.starts_with(&format!("{id},"))).unwrap();
            line.split_once(',').unwrap().1.to_string()
        };
        let src_bytes = std::fs::read(&src).unwrap();
        let made = |kind: &str| std::fs::read(c.images.join(format!("{kind}.JPEG"))).unwrap();
        let random: Vec<u8> = {
            // A fixed LCG: reproducible bytes that carry no image signature.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            (0..5000)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect()
        };
        assert!(operators::decode::sniff_format(&random).is_err(), "the random bytes must not look like an image");
        let mut csv = String::from("ImageId,PredictionString\n");
        let mut add = |id: &str, bytes: &[u8], label: Option<String>| {
            std::fs::write(images.join(format!("{id}.JPEG")), bytes).unwrap();
            if let Some(label) = label {
                csv.push_str(&format!("{id},{label}\n"));
            }
        };
        let src_label = Some(prediction(SRC_ID));
        for (id, real) in [("c01_good", SRC_ID), ("c02_good", "ILSVRC2012_val_00000006"), ("c03_good", "ILSVRC2012_val_00000007")] {
            add(id, &std::fs::read(sample_images.join(format!("{real}.JPEG"))).unwrap(), Some(prediction(real)));
        }
        add("c04_truncated", &src_bytes[..src_bytes.len() / 2], src_label.clone());
        add("c05_random_bytes", &random, src_label.clone());
        add("c06_png_named_jpeg", &made("png"), src_label.clone());
        add("c07_cmyk", &made("cmyk"), src_label.clone());
        add("c08_gray", &made("gray"), src_label.clone());
        add("c09_1x1", &made("one_by_one"), Some(format!("{SRC_WNID} 0 0 0 0")));
        add("c10_10000x10000", &made("huge"), Some(format!("{SRC_WNID} 0 0 9999 9999")));
        add("c11_missing_label", &src_bytes, None);
        // The source is 496x368: this box lies wholly beyond its right and bottom edges.
        add("c12_box_outside", &src_bytes, Some(format!("{SRC_WNID} 5000 5000 6000 6000")));
        // This one overhangs every edge: clipped, it is the whole crop.
        add("c13_box_clipped", &src_bytes, Some(format!("{SRC_WNID} -50 -50 5000 5000")));
        add("c14_bad_xml", &src_bytes, None);
        add("c15_white", &made("white"), Some(format!("{SRC_WNID} 0 0 299 299")));
        std::fs::write(c.data.join("LOC_val_solution.csv"), csv).unwrap();
        // Not in the CSV, so its label comes from the XML, which is cut off mid-element.
        std::fs::write(
            annotations.join("c14_bad_xml.xml"),
            format!("<annotation><object><name>{SRC_WNID}</name><bndbox><xmin>1</xmin>"),
        )
        .unwrap();
        c
    })
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Writes `models_dir/<name>/` with the two files and a manifest whose sizes and sha256 match
/// them, so the integrity check passes and only the contract can fail. A `None` file is listed
/// in the manifest but not written.
fn write_pair(models_dir: &Path, name: &str, float: Option<&Path>, quantized: Option<&Path>, cam_shape: [usize; 3]) {
    let dir = models_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let entry = |file: &str, src: Option<&Path>| {
        let (bytes, sha256) = match src {
            Some(src) => {
                std::fs::copy(src, dir.join(file)).unwrap();
                (std::fs::metadata(src).unwrap().len(), sha256_hex(src))
            }
            None => (1, "0".repeat(64)),
        };
        serde_json::json!({ "file": file, "bytes": bytes, "sha256": sha256, "weights": "random:0" })
    };
    let manifest = serde_json::json!({
        "format": 1,
        "name": name,
        "architecture": "tests/reference/bad_models.py",
        "preprocess": { "resize": 256, "crop": 224, "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5] },
        "cam_layer": { "name": "act", "shape": cam_shape },
        "quantization": { "engine": "qnnpack", "method": "none", "calibration": null },
        "float": entry("float.pt", float),
        "quantized": entry("quantized.pt", quantized),
        "exporter": { "script": "tests/reference/bad_models.py" },
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

fn job_text(data: &Path, models: &Path, pairs: &[&str], out: &Path) -> String {
    format!(
        "name = \"bad-input\"\n[data]\npath = \"{}\"\nshard_size = 5\n[models]\ndir = \"{}\"\npairs = [{}]\n\
         [run]\nbatch_size = 4\n[perturbation]\nscope = \"none\"\n[output]\ndir = \"{}\"\n",
        data.display(),
        models.display(),
        pairs.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
        out.display()
    )
}

fn qcam(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qcam")).args(args).output().unwrap()
}

fn run_job(job: &Path) -> Output {
    qcam(&["run".as_ref(), job.as_os_str()])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Models folder with MobileNet (the exported pair, linked) and the NaN-making test pair.
fn two_pairs(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(common::pair_dir(MOBILENET), models.join(MOBILENET)).unwrap();
    let made = &corpus().models;
    write_pair(&models, TINY, Some(&made.join("nan_logits_bright.pt")), Some(&made.join("nan_act_channel0.pt")), [12, 7, 7]);
    models
}

/// The corpus job over both pairs of `two_pairs`, written into `dir`: (job file, output folder).
fn two_pair_job(dir: &Path) -> (PathBuf, PathBuf) {
    let models = two_pairs(dir);
    let out = dir.join("out");
    let job = dir.join("job.toml");
    std::fs::write(&job, job_text(&corpus().data, &models, &[MOBILENET, TINY], &out)).unwrap();
    (job, out)
}

/// One (image, pair) outcome as the tables show it.
#[derive(Debug, Default)]
struct Seen {
    pair_rows: usize,
    image_rows: Vec<String>,
    errors: Vec<(String, String, bool)>,
}

/// Checks every (image, pair) of a run against `want`, and `run.json`'s counts against the counts
/// the table of outcomes implies.
fn check_run(out: &Path, pairs: &[&str], want: impl Fn(&str, &str) -> Want) {
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    for batch in read_table(out, "pairs").unwrap() {
        let (ids, model) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "model"));
        for i in 0..batch.num_rows() {
            seen.entry((ids.value(i).into(), model.value(i).into())).or_default().pair_rows += 1;
        }
    }
    for batch in read_table(out, "images").unwrap() {
        let (ids, model) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "model"));
        let variant = column::<Utf8Col>(&batch, "variant");
        for i in 0..batch.num_rows() {
            seen.entry((ids.value(i).into(), model.value(i).into())).or_default().image_rows.push(variant.value(i).into());
        }
    }
    for batch in read_table(out, "errors").unwrap() {
        let (ids, model) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "model"));
        let (stage, message) = (column::<Utf8Col>(&batch, "stage"), column::<Utf8Col>(&batch, "message"));
        for i in 0..batch.num_rows() {
            let row = (stage.value(i).to_string(), message.value(i).to_string());
            if model.is_null(i) {
                for pair in pairs {
                    let e = seen.entry((ids.value(i).into(), pair.to_string())).or_default();
                    e.errors.push((row.0.clone(), row.1.clone(), false));
                }
            } else {
                seen.entry((ids.value(i).into(), model.value(i).into())).or_default().errors.push((row.0, row.1, true));
            }
        }
    }
    let expected: BTreeSet<(String, String)> =
        IDS.iter().flat_map(|id| pairs.iter().map(move |p| (id.to_string(), p.to_string()))).collect();
    let got: BTreeSet<(String, String)> = seen.keys().cloned().collect();
    assert_eq!(got, expected, "every (image, pair) and nothing else appears in the tables");

    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for ((id, pair), s) in &seen {
        let w = want(id, pair);
        let c = counts.entry(pair.clone()).or_default();
        match w {
            Want::Rows => {
                c.0 += 1;
                assert!(s.errors.is_empty(), "{id} / {pair}: unexpected errors {:?}", s.errors);
                assert_eq!(s.pair_rows, 1, "{id} / {pair}: one pairs row");
                let mut variants = s.image_rows.clone();
                variants.sort();
                assert_eq!(variants, ["float", "quantized"], "{id} / {pair}: one images row per variant");
            }
            Want::Error { stage, own, text } => {
                c.1 += 1;
                assert_eq!((s.pair_rows, s.image_rows.len()), (0, 0), "{id} / {pair}: an error, so no rows");
                assert_eq!(s.errors.len(), 1, "{id} / {pair}: exactly one error row, got {:?}", s.errors);
                let (got_stage, message, got_own) = &s.errors[0];
                assert_eq!((got_stage.as_str(), *got_own), (stage, own), "{id} / {pair}: {message}");
                assert!(message.contains(text), "{id} / {pair}: `{message}` should contain `{text}`");
            }
        }
    }

    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    for pair in pairs {
        let record = run["pairs"].as_array().unwrap().iter().find(|p| p["manifest"]["name"] == *pair).unwrap();
        let (ok, errors) = counts[*pair];
        assert_eq!(ok + errors, IDS.len());
        let reported = [&record["images_in"], &record["rows_ok"], &record["rows_error"]];
        let want = [serde_json::json!(IDS.len()), serde_json::json!(ok), serde_json::json!(errors)];
        assert_eq!(reported, [&want[0], &want[1], &want[2]], "run.json counts of {pair}");
    }
}

/// Rows of the images table for one image: (model, variant, box, iou, iou_curve, act_sparsity).
type ImageFacts = (String, String, Vec<i32>, f32, Vec<f32>, f64);

fn image_facts(out: &Path, image_id: &str) -> Vec<ImageFacts> {
    let mut rows = Vec::new();
    for batch in read_table(out, "images").unwrap() {
        let ids = column::<Utf8Col>(&batch, "image_id");
        for i in (0..batch.num_rows()).filter(|&i| ids.value(i) == image_id) {
            let list_i32 = |name: &str| {
                column::<ListCol>(&batch, name).value(i).as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec()
            };
            let list_f32 = |name: &str| {
                column::<ListCol>(&batch, name).value(i).as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec()
            };
            rows.push((
                column::<Utf8Col>(&batch, "model").value(i).to_string(),
                column::<Utf8Col>(&batch, "variant").value(i).to_string(),
                list_i32("box"),
                column::<F32Col>(&batch, "iou").value(i),
                list_f32("iou_curve"),
                column::<F64Col>(&batch, "act_sparsity").value(i),
            ));
        }
    }
    rows
}

#[test]
fn corpus_images_are_what_they_claim_and_decode_like_pillow() {
    use operators::decode::{decode_rgb8, DecodeError, DEFAULT_MAX_PIXELS};
    let c = corpus();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(c.images.join("meta.json")).unwrap()).unwrap();
    // What Pillow sees in each file: the corpus is only worth something if these hold.
    let pillow = |kind: &str| (meta[kind]["format"].as_str().unwrap(), meta[kind]["mode"].as_str().unwrap());
    assert_eq!(pillow("png"), ("PNG", "RGB"));
    assert_eq!(pillow("cmyk"), ("JPEG", "CMYK"));
    assert_eq!(pillow("gray"), ("JPEG", "L"));
    assert_eq!(meta["one_by_one"]["size"], serde_json::json!([1, 1]));
    assert_eq!(meta["huge"]["size"], serde_json::json!([10000, 10000]));
    for kind in ["src", "png", "cmyk", "gray", "one_by_one", "white"] {
        let ours = decode_rgb8(&std::fs::read(c.images.join(format!("{kind}.JPEG"))).unwrap(), DEFAULT_MAX_PIXELS)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let size = &meta[kind]["size"];
        assert_eq!(serde_json::json!([ours.width(), ours.height()]), *size, "{kind}");
        let theirs = std::fs::read(c.images.join(format!("{kind}.rgb"))).unwrap();
        assert!(ours.as_raw() == &theirs, "{kind}: pixels differ from Pillow's convert('RGB')");
    }
    let huge = std::fs::read(c.images.join("huge.JPEG")).unwrap();
    assert_eq!(
        decode_rgb8(&huge, DEFAULT_MAX_PIXELS),
        Err(DecodeError::TooLarge { width: 10_000, height: 10_000, max_pixels: 89_478_485 })
    );
}

#[test]
fn image_problems_become_error_rows_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = two_pair_job(tmp.path());
    let result = run_job(&job);
    assert!(result.status.success(), "qcam run failed:\n{}", stderr(&result));
    check_run(&out, &[MOBILENET, TINY], folder_outcome);

    // The box wholly outside the image is dropped, not clamped onto the border: no ground truth
    // is left, so IoU is 0 at every threshold (a 1-pixel border box would score above 0 at τ = 0).
    let outside = image_facts(&out, "c12_box_outside");
    assert_eq!(outside.len(), 4);
    for (model, variant, _, iou, curve, _) in &outside {
        assert_eq!(*iou, 0.0, "{model} {variant}");
        assert!(curve.iter().all(|&v| v == 0.0), "{model} {variant}: {curve:?}");
    }
    // The overhanging box is clipped to the whole 224×224 crop, so IoU = area(predicted box) / 224²
    // (SPEC §6, inclusive corners); no component at all gives box (0,0,0,0) and IoU 0.
    let clipped = image_facts(&out, "c13_box_clipped");
    assert_eq!(clipped.len(), 4);
    for (model, variant, b, iou, _, _) in &clipped {
        let want = if b == &[0, 0, 0, 0] { 0.0 } else { ((b[2] - b[0] + 1) * (b[3] - b[1] + 1)) as f32 / (224.0 * 224.0) };
        assert!((iou - want).abs() < 1e-6, "{model} {variant}: box {b:?}, iou {iou}, want {want}");
    }
    // SPEC §2: NaN activations become 0. The test pair's activations are ≥ 1 everywhere but in
    // its quantized variant's NaN channel 0, i.e. 1 channel of 12: act_sparsity = 100/12 %.
    for id in IDS.iter().filter(|id| folder_outcome(id, TINY) == Want::Rows) {
        for (model, variant, _, _, _, sparsity) in image_facts(&out, id).into_iter().filter(|r| r.0 == TINY) {
            let want = if variant == "quantized" { 100.0 / 12.0 } else { 0.0 };
            assert!((sparsity - want).abs() < 1e-9, "{id} {model} {variant}: act_sparsity {sparsity}, want {want}");
        }
    }
}

#[test]
fn shard_problems_fail_exactly_the_samples_they_hit() {
    let c = corpus();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let packed = qcam(&["shard".as_ref(), c.data.as_os_str(), "--out".as_ref(), shards.as_os_str(), "--shard-size".as_ref(), "5".as_ref()]);
    assert!(packed.status.success(), "qcam shard failed:\n{}", stderr(&packed));

    // Shard 0: cut 100 bytes into c03's image member (a tar header is 512 bytes, name first).
    let tar0 = shards.join("shard-00000.tar");
    let bytes = std::fs::read(&tar0).unwrap();
    let at = bytes.windows(12).position(|w| w == b"c03_good.jpg").unwrap();
    std::fs::write(&tar0, &bytes[..at + 512 + 100]).unwrap();
    // Shard 1: flip one byte of c07's image; the file no longer matches its index entry.
    let tar1 = shards.join("shard-00001.tar");
    let mut bytes = std::fs::read(&tar1).unwrap();
    let at = bytes.windows(12).position(|w| w == b"c07_cmyk.jpg").unwrap();
    bytes[at + 512 + 2000] ^= 0x01;
    std::fs::write(&tar1, &bytes).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(shards.join("index.json")).unwrap()).unwrap();
    assert_ne!(index["shards"][1]["sha256"], serde_json::json!(hex::encode(Sha256::digest(&bytes))));
    // Shard 2: bytes intact, but the index records another whole-file sha256.
    assert_eq!(index["shards"][2]["sha256"], serde_json::json!(sha256_hex(&shards.join("shard-00002.tar"))));
    index["shards"][2]["sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(shards.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let models = two_pairs(tmp.path());
    let out = tmp.path().join("out");
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, job_text(&shards, &models, &[MOBILENET, TINY], &out)).unwrap();
    let result = run_job(&job);
    assert!(result.status.success(), "qcam run failed:\n{}", stderr(&result));
    check_run(&out, &[MOBILENET, TINY], shard_outcome);
}

#[test]
fn model_problems_stop_the_run_before_any_work() {
    let made = &corpus().models;
    let tmp = tempfile::tempdir().unwrap();
    let not_torchscript = tmp.path().join("not_torchscript.pt");
    std::fs::write(&not_torchscript, b"this is not a TorchScript archive\n".repeat(10)).unwrap();
    let ok = made.join("ok.pt");
    let m = |mode: &str| made.join(format!("{mode}.pt"));
    // (case, float, quantized, cam_layer.shape, field named, text)
    let cases: Vec<(&str, Option<PathBuf>, Option<PathBuf>, [usize; 3], &str, &str)> = vec![
        ("missing", Some(ok.clone()), None, [12, 7, 7], "quantized.file", "is missing"),
        ("not_torchscript", Some(not_torchscript), Some(ok.clone()), [12, 7, 7], "float.file", "is not a loadable TorchScript model"),
        ("one_tensor", Some(m("one_tensor")), Some(ok.clone()), [12, 7, 7], "float.file", "forward must return a tuple (logits, act)"),
        ("three_tuple", Some(ok.clone()), Some(m("three_tuple")), [12, 7, 7], "quantized.file", "forward returned a tuple of 3 items, expected (logits, act)"),
        ("act_rank3", Some(m("act_rank3")), Some(ok.clone()), [12, 7, 7], "float.file", "activation has shape [1, 12, 49], expected [1, C, h, w]"),
        ("act_16_channels", Some(ok.clone()), Some(m("act_16_channels")), [12, 7, 7], "cam_layer.shape", "the activation is [16, 7, 7] per image at crop 224, the manifest says [12, 7, 7]"),
        ("manifest_shape", Some(ok.clone()), Some(ok.clone()), [12, 14, 14], "cam_layer.shape", "the activation is [12, 7, 7] per image at crop 224, the manifest says [12, 14, 14]"),
        ("logits_100", Some(m("logits_100")), Some(ok.clone()), [12, 7, 7], "float.file", "logits have shape [1, 100], expected [1, 1000]"),
    ];
    for (case, float, quantized, shape, field, text) in cases {
        let models = tmp.path().join(case);
        write_pair(&models, "broken", float.as_deref(), quantized.as_deref(), shape);
        let out = tmp.path().join(format!("{case}.out"));
        let job = tmp.path().join(format!("{case}.toml"));
        std::fs::write(&job, job_text(&corpus().data, &models, &["broken"], &out)).unwrap();
        let result = run_job(&job);
        let err = stderr(&result);
        assert!(!result.status.success(), "{case}: the run should stop:\n{err}");
        let manifest = models.join("broken/manifest.json");
        let prefix = format!("qcam: error: {}: field `{field}`: ", manifest.display());
        assert!(err.contains(&prefix), "{case}: `{prefix}` not in:\n{err}");
        assert!(err.contains(text), "{case}: `{text}` not in:\n{err}");
        assert!(!out.exists(), "{case}: no output folder: the run stopped before any work");
    }
    // And the control: the same pair with both files keeping the contract runs.
    let models = tmp.path().join("control");
    write_pair(&models, "fine", Some(&ok), Some(&ok), [12, 7, 7]);
    let out = tmp.path().join("control.out");
    let job = tmp.path().join("control.toml");
    std::fs::write(&job, job_text(&corpus().data, &models, &["fine"], &out).replace("shard_size = 5", "shard_size = 5\nlimit = 3")).unwrap();
    let result = run_job(&job);
    assert!(result.status.success(), "control: {}", stderr(&result));
    assert_eq!(common::canonical(&out, "pairs").len(), 3);
}

#[test]
fn job_problems_stop_the_run_before_any_work() {
    let c = corpus();
    let tmp = tempfile::tempdir().unwrap();
    let models = common::models_dir();
    let out = tmp.path().join("out");
    let good = job_text(&c.data, &models, &[MOBILENET], &out);
    // (case, job text, what stderr must say after the file name)
    let cases = [
        ("unknown_key", good.replace("batch_size = 4", "batch_size = 4\nturbo = true"), "unknown field `turbo`"),
        ("wrong_type", good.replace("batch_size = 4", "batch_size = \"four\""), "batch_size = \"four\""),
        ("zero_batch", good.replace("batch_size = 4", "batch_size = 0"), "field `run.batch_size`: must be at least 1"),
        ("zero_max_pixels", good.replace("shard_size = 5", "shard_size = 5\nmax_pixels = 0"), "field `data.max_pixels`: must be at least 1"),
        ("bad_sign", good.replace("[output]", "[cam]\nsign = \"sideways\"\n[output]"), "unknown variant `sideways`"),
        ("no_data", good.replace(&c.data.display().to_string(), "/nonexistent/imagenet"), "field `data.path`: /nonexistent/imagenet: data folder does not exist"),
        ("unknown_pair", good.replace(MOBILENET, "no_such_pair"), "field `models.pairs`: pair `no_such_pair`: "),
    ];
    for (case, text, says) in cases {
        assert_ne!(text, good, "{case}: the edit applied");
        let job = tmp.path().join(format!("{case}.toml"));
        std::fs::write(&job, text).unwrap();
        let result = run_job(&job);
        let err = stderr(&result);
        assert!(!result.status.success(), "{case}: the run should stop:\n{err}");
        let prefix = format!("qcam: error: {}: ", job.display());
        assert!(err.starts_with(&prefix), "{case}: `{prefix}` does not start:\n{err}");
        assert!(err.contains(says), "{case}: `{says}` not in:\n{err}");
        assert!(!out.exists(), "{case}: no output folder: the run stopped before any work");
    }
}

/// A multi-process run gathers into process 0's folder, and its one run.json counts the whole
/// folder: every (image, pair) of both processes' shards, once, as rows or errors.
#[test]
fn a_cluster_run_counts_the_whole_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (job, out) = two_pair_job(tmp.path());
    let result = qcam(&["spawn".as_ref(), "-n".as_ref(), "2".as_ref(), "--".as_ref(), "run".as_ref(), job.as_os_str()]);
    assert!(result.status.success(), "qcam spawn failed:\n{}", stderr(&result));
    assert!(!out.join("run.process-1.json").exists());
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["processes"], 2);
    for pair in [MOBILENET, TINY] {
        let ok = IDS.iter().filter(|id| folder_outcome(id, pair) == Want::Rows).count();
        let record = run["pairs"].as_array().unwrap().iter().find(|p| p["manifest"]["name"] == pair).unwrap();
        let reported = [&record["images_in"], &record["rows_ok"], &record["rows_error"]];
        let want = [serde_json::json!(IDS.len()), serde_json::json!(ok), serde_json::json!(IDS.len() - ok)];
        assert_eq!(reported, [&want[0], &want[1], &want[2]], "{pair}");
    }
}
