//! The floor: what the same TorchScript forwards cost with nothing around them.
//!
//! `cargo bench --bench floor -- [--job jobs/demo.toml] [--out floor.json] [options]`
//!
//! Phase 1: every image of the job is decoded and preprocessed first (timed separately, outside
//! the forward loop), cut into the batches qcam itself runs (per shard, `run.batch_size`, a batch
//! never spans a shard) and turned into input tensors; then, per pair, the float and the quantized
//! model run every batch with `tch::CModule::forward_is` and nothing else: no output conversion, no
//! dataflow. Same files, same quantized engine (set before loading and forwarding, as
//! `src/models.rs` does), same batch size, same libtorch intra-op threads as a 1-process × 1-worker
//! `qcam run` (`run.torch_threads`, 0 = all cores). `phase1_forward_s`, the sum over pairs and
//! variants, is the floor for that run's wall time.
//!
//! `--io-images N`: on the first N images, qcam's own `Forward` implementation (input copy,
//! forward, dequantize, outputs to `Vec`) against the bare forward of the same batches, run
//! back to back: the cost of getting tensors in and out.
//!
//! Deletion/insertion (SPEC §5): for the first `--perturb-images K` images of each pair and
//! variant, `operators::perturb::causal_curves` driven by a tch forward (the stage's kernel cost:
//! order, blur, batch assembly, input copy, forward, softmax) against bare forwards of exactly the
//! 202 images it built, in the same batches (the job's `perturbation.steps` and batch size).
//! Alternated `--perturb-reps` times; the best pass of each is kept. The time spent inside
//! `forward_is` during the kept causal_curves pass is recorded too: total / that is the same
//! ratio measured on one timeline, immune to load drift between passes.
//!
//! A whole-sample timer rather than criterion: one phase-1 pass is tens of seconds, and the
//! number wanted is the total over the job's batches, not a per-iteration distribution.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::{CModule, IValue, Kind, Tensor};

use operators::decode::{decode_sample_with, Preprocessor};
use operators::eigencam::{eigencam, SignPolicy};
use operators::infer::Forward;
use types::Variant;
use operators::perturb;
use pipeline::models::PairSpec;
use qcam::torch::{set_qengine, TorchModel};
use types::{Engine, Job};
use sources::{Dataset, Fetcher};

struct Args {
    job: PathBuf,
    data: Option<PathBuf>,
    limit: Option<usize>,
    threads: Option<usize>,
    io_images: usize,
    perturb_images: usize,
    perturb_reps: usize,
    /// Deletion/insertion steps; None = the job's `perturbation.steps`.
    steps: Option<usize>,
    out: Option<PathBuf>,
    skip_phase1: bool,
}

fn parse_args() -> Result<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        job: root.join("jobs/demo.toml"),
        data: None,
        limit: None,
        threads: None,
        io_images: 64,
        perturb_images: 1,
        perturb_reps: 2,
        steps: None,
        out: None,
        skip_phase1: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--job" => a.job = PathBuf::from(val()?),
            "--data" => a.data = Some(PathBuf::from(val()?)),
            "--limit" => a.limit = Some(val()?.parse()?),
            "--threads" => a.threads = Some(val()?.parse()?),
            "--io-images" => a.io_images = val()?.parse()?,
            "--perturb-images" => a.perturb_images = val()?.parse()?,
            "--perturb-reps" => a.perturb_reps = val()?.parse::<usize>()?.max(1),
            "--steps" => a.steps = Some(val()?.parse()?),
            "--out" => a.out = Some(PathBuf::from(val()?)),
            "--skip-phase1" => a.skip_phase1 = true,
            other if other.starts_with('-') => bail!("unknown option {other}"),
            // A name filter from `cargo bench floor`: this bench has one name.
            _ => {}
        }
    }
    Ok(a)
}

#[derive(Serialize)]
struct VariantFloor {
    forward_s: f64,
    ms_per_image: f64,
    /// Process CPU seconds (user + system, all threads) of the same loop: with contention, wall
    /// time counts waiting and CPU time does not (but it does count OpenMP spin-waiting).
    forward_cpu_s: f64,
}

#[derive(Serialize)]
struct PairFloor {
    name: String,
    engine: Engine,
    float: VariantFloor,
    quantized: VariantFloor,
}

#[derive(Serialize)]
struct IoCheck {
    pair: String,
    variant: &'static str,
    images: usize,
    bare_s: f64,
    qcam_forward_s: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct PerturbCase {
    pair: String,
    variant: &'static str,
    image_id: String,
    forwards: usize,
    /// Best of the reps (both columns), seconds for the 2·(steps+1) images of one (image, variant).
    causal_curves_s: f64,
    bare_forward_s: f64,
    ratio: f64,
    /// Within the best causal_curves pass: time inside `forward_is` alone, and total / that. The
    /// same timeline, so machine-load drift cancels (the separate bare pass does not have that).
    inner_forward_s: f64,
    inner_ratio: f64,
    deletion_auc: f32,
    insertion_auc: f32,
}

#[derive(Serialize)]
struct Report {
    job: PathBuf,
    images: usize,
    batch_size: usize,
    batches: Vec<usize>,
    torch_threads: usize,
    decode_s: Vec<(String, f64)>,
    pairs: Vec<PairFloor>,
    phase1_forward_s: f64,
    phase1_forward_cpu_s: f64,
    io: Vec<IoCheck>,
    /// Deletion/insertion settings the cases ran with (the job's).
    perturb_steps: usize,
    perturb_batch: usize,
    perturb: Vec<PerturbCase>,
    /// Σ causal_curves_s / Σ bare_forward_s over the cases.
    perturb_ratio: Option<f64>,
    /// Mean seconds per (image, variant) of deletion+insertion, and of its bare forwards.
    perturb_s_per_image_variant: Option<f64>,
    perturb_bare_s_per_image_variant: Option<f64>,
    /// Σ causal_curves_s / Σ inner_forward_s: the same ratio on one timeline.
    perturb_inner_ratio: Option<f64>,
}

fn set_engine(engine: Engine) -> Result<()> {
    set_qengine(engine).map_err(|e| anyhow::anyhow!("setting the quantized engine: {e}"))
}

fn load_bare(spec: &PairSpec, variant: Variant) -> Result<CModule> {
    if variant == Variant::Quantized {
        set_engine(spec.manifest.quantization.engine)?;
    }
    let path = spec.path(variant);
    let mut m = CModule::load(&path).with_context(|| format!("loading {}", path.display()))?;
    m.set_eval();
    Ok(m)
}

fn forward_logits_act(m: &CModule, x: &Tensor) -> Result<(Tensor, Tensor)> {
    match m.forward_is(&[IValue::Tensor(x.shallow_clone())])? {
        IValue::Tuple(mut v) if v.len() == 2 => match (v.remove(0), v.remove(0)) {
            (IValue::Tensor(l), IValue::Tensor(a)) => Ok((l, a)),
            _ => bail!("forward must return (logits, act)"),
        },
        _ => bail!("forward must return a tuple (logits, act)"),
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (10 ms ticks).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Bare forwards of the given inputs; outputs dropped. Seconds.
fn time_bare(m: &CModule, inputs: &[Tensor]) -> Result<f64> {
    let t = Instant::now();
    for x in inputs {
        let out = tch::no_grad(|| m.forward_is(&[IValue::Tensor(x.shallow_clone())]))?;
        drop(out);
    }
    Ok(t.elapsed().as_secs_f64())
}

fn to_tensor(pixels: &[f32], n: usize, crop: usize) -> Tensor {
    Tensor::from_slice(pixels).reshape([n as i64, 3, crop as i64, crop as i64])
}

fn main() -> Result<()> {
    // The floor runs libtorch under the same process settings as qcam, so the ratio is overhead.
    qcam::torch::prefer_huge_pages();
    let args = parse_args()?;
    let mut job = Job::load(&args.job)?;
    if let Some(d) = &args.data {
        job.data.path = d.clone();
    }
    if args.limit.is_some() {
        job.data.limit = args.limit;
    }
    let threads = args.threads.unwrap_or_else(|| job.torch_threads(1));
    tch::set_num_threads(threads as i32);
    let batch_size = job.run.batch_size;
    // Deletion/insertion runs as the graph runs it: the job's steps and perturbation batch size.
    let steps = args.steps.unwrap_or(job.perturbation.steps);
    let perturb_batch = job.perturb_batch();

    let dataset = Dataset::open(&job.data).context("listing the job's data")?;
    let fetch = Fetcher::new()?;
    let mut samples = Vec::new();
    let mut batches = Vec::new(); // lengths, per shard as qcam cuts them
    for shard in &dataset.shards {
        let got: Vec<_> = shard.open(&fetch).filter_map(|r| r.ok()).collect();
        for start in (0..got.len()).step_by(batch_size) {
            batches.push((got.len() - start).min(batch_size));
        }
        samples.extend(got);
    }
    let n_images = samples.len();
    eprintln!("floor: {n_images} images, {} batches of ≤{batch_size}, {threads} torch threads", batches.len());

    let mut pairs = Vec::new();
    for name in &job.models.pairs {
        let spec = PairSpec::read(&job.models.dir, name)?;
        spec.verify()?;
        pairs.push(spec);
    }

    // Decode + preprocess once per distinct preprocessing (as the graph does), timed on its own.
    let mut decoded: Vec<(String, Vec<Vec<f32>>, Vec<String>)> = Vec::new();
    let mut decode_s = Vec::new();
    for spec in &pairs {
        let key = spec.manifest.preprocess.key();
        if decoded.iter().any(|d| d.0 == key) {
            continue;
        }
        let mut pre = Preprocessor::new(&spec.manifest.preprocess);
        let t = Instant::now();
        let mut pix = Vec::with_capacity(n_images);
        let mut ids = Vec::with_capacity(n_images);
        for s in &samples {
            let im = decode_sample_with(s, &mut pre, job.data.max_pixels)
                .with_context(|| format!("decoding {}", s.image_id))?;
            pix.push(im.pixels);
            ids.push(im.image_id);
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!("floor: decode+preprocess {key}: {secs:.2} s ({:.1} ms/image)", 1e3 * secs / n_images as f64);
        decode_s.push((key.clone(), secs));
        decoded.push((key, pix, ids));
    }
    let images_of = |spec: &PairSpec| {
        let key = spec.manifest.preprocess.key();
        decoded.iter().find(|d| d.0 == key).expect("decoded above")
    };

    let mut pair_floors = Vec::new();
    let mut io = Vec::new();
    let mut cases = Vec::new();
    for spec in &pairs {
        let crop = spec.manifest.preprocess.crop as usize;
        let (_, pix, ids) = images_of(spec);
        let engine = spec.manifest.quantization.engine;
        let make_inputs = |limit: usize| -> Vec<Tensor> {
            let mut out = Vec::new();
            let mut at = 0;
            for &len in &batches {
                if at >= limit {
                    break;
                }
                let len = len.min(limit - at);
                let flat: Vec<f32> = pix[at..at + len].iter().flat_map(|p| p.iter().copied()).collect();
                out.push(to_tensor(&flat, len, crop));
                at += len;
            }
            out
        };

        let mut per_variant = Vec::new();
        for variant in Variant::BOTH {
            let mut loop_cpu_s = 0.0;
            let m = load_bare(spec, variant)?;
            if variant == Variant::Quantized {
                set_engine(engine)?;
            }
            // Warm-up: one batch (first-call allocations, lazy packing).
            let warm = make_inputs(batch_size.min(n_images));
            time_bare(&m, &warm)?;

            let forward_s = if args.skip_phase1 {
                0.0
            } else {
                let inputs = make_inputs(n_images);
                let cpu = process_cpu_s();
                let s = time_bare(&m, &inputs)?;
                loop_cpu_s = process_cpu_s() - cpu;
                eprintln!(
                    "floor: {} {}: {:.2} s for {n_images} images ({:.1} ms/image)",
                    spec.name(),
                    variant.as_str(),
                    s,
                    1e3 * s / n_images as f64
                );
                s
            };
            per_variant.push(VariantFloor {
                forward_s,
                ms_per_image: 1e3 * forward_s / n_images.max(1) as f64,
                forward_cpu_s: loop_cpu_s,
            });

            // qcam's Forward (input copy + forward + dequantize + outputs to Vec) vs bare.
            if args.io_images > 0 {
                let k = args.io_images.min(n_images);
                let inputs = make_inputs(k);
                let qm = TorchModel::load(&spec.path(variant), (variant == Variant::Quantized).then_some(engine), spec.manifest.file(variant).load_options()).map_err(anyhow::Error::msg)?;
                let flats: Vec<(Vec<f32>, usize)> = {
                    let mut v = Vec::new();
                    let mut at = 0;
                    for x in &inputs {
                        let n = x.size()[0] as usize;
                        v.push((pix[at..at + n].iter().flat_map(|p| p.iter().copied()).collect(), n));
                        at += n;
                    }
                    v
                };
                let bare = time_bare(&m, &inputs)?;
                let t = Instant::now();
                for (flat, n) in &flats {
                    qm.forward(flat, *n, crop).map_err(|e| anyhow::anyhow!(e.to_string()))?;
                }
                let q = t.elapsed().as_secs_f64();
                io.push(IoCheck {
                    pair: spec.name().into(),
                    variant: variant.as_str(),
                    images: k,
                    bare_s: bare,
                    qcam_forward_s: q,
                    ratio: q / bare,
                });
            }

            // Deletion/insertion kernel cost vs its bare forwards.
            for (x, id) in pix.iter().zip(ids).take(args.perturb_images) {
                let (logits, act) = tch::no_grad(|| forward_logits_act(&m, &to_tensor(x, 1, crop)))?;
                let logits = Vec::<f32>::try_from(&logits.to_kind(Kind::Float).view(-1))?;
                let act = if matches!(act.kind(), Kind::QUInt8 | Kind::QInt8 | Kind::QInt32) { act.dequantize() } else { act };
                let shape = act.size();
                let act = Vec::<f32>::try_from(&act.to_kind(Kind::Float).contiguous().view(-1))?;
                let (c, h, w) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
                let cam = eigencam(&act, c, h, w, SignPolicy::Mean, crop).cam;
                let target = logits
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                    .0;
                let inner = std::cell::Cell::new(0.0f64);
                let forward = |buf: &[f32], n: usize| -> Result<Vec<f32>, String> {
                    let x = to_tensor(buf, n, crop);
                    let t = Instant::now();
                    let out = tch::no_grad(|| forward_logits_act(&m, &x)).map_err(|e| e.to_string());
                    inner.set(inner.get() + t.elapsed().as_secs_f64());
                    let (l, _) = out?;
                    Vec::<f32>::try_from(&l.to_kind(Kind::Float).contiguous().view(-1)).map_err(|e| e.to_string())
                };
                // Pass A (untimed): capture the exact batches causal_curves builds.
                let mut captured = Vec::new();
                perturb::causal_curves(x, &cam, crop, steps, perturb_batch, target, perturb::KnownScores::NONE, |buf, n| {
                    captured.push(to_tensor(buf, n, crop).copy());
                    forward(buf, n)
                })
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                let (mut best_c, mut best_b, mut best_inner) = (f64::INFINITY, f64::INFINITY, 0.0);
                let mut last = None;
                for _ in 0..args.perturb_reps {
                    inner.set(0.0);
                    let t = Instant::now();
                    let r = perturb::causal_curves(x, &cam, crop, steps, perturb_batch, target, perturb::KnownScores::NONE, forward)
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                    let total = t.elapsed().as_secs_f64();
                    if total < best_c {
                        (best_c, best_inner) = (total, inner.get());
                    }
                    last = Some(r);
                    best_b = best_b.min(time_bare(&m, &captured)?);
                }
                let r = last.expect("at least one rep");
                eprintln!(
                    "floor: {} {} {id}: deletion+insertion {:.2} s, its {} bare forwards {:.2} s (×{:.3}); \
                     forwards inside it {:.2} s (×{:.3})",
                    spec.name(),
                    variant.as_str(),
                    best_c,
                    2 * (steps + 1),
                    best_b,
                    best_c / best_b,
                    best_inner,
                    best_c / best_inner
                );
                cases.push(PerturbCase {
                    pair: spec.name().into(),
                    variant: variant.as_str(),
                    image_id: id.clone(),
                    forwards: 2 * (steps + 1),
                    causal_curves_s: best_c,
                    bare_forward_s: best_b,
                    ratio: best_c / best_b,
                    inner_forward_s: best_inner,
                    inner_ratio: best_c / best_inner,
                    deletion_auc: r.deletion_auc,
                    insertion_auc: r.insertion_auc,
                });
            }
        }
        let quantized = per_variant.pop().expect("two variants");
        let float = per_variant.pop().expect("two variants");
        pair_floors.push(PairFloor { name: spec.name().into(), engine, float, quantized });
    }

    let phase1_forward_s: f64 = pair_floors.iter().map(|p| p.float.forward_s + p.quantized.forward_s).sum();
    let phase1_forward_cpu_s: f64 = pair_floors.iter().map(|p| p.float.forward_cpu_s + p.quantized.forward_cpu_s).sum();
    let (sc, sb): (f64, f64) = cases.iter().fold((0.0, 0.0), |a, c| (a.0 + c.causal_curves_s, a.1 + c.bare_forward_s));
    let report = Report {
        job: args.job.clone(),
        images: n_images,
        batch_size,
        batches,
        torch_threads: threads,
        decode_s,
        pairs: pair_floors,
        phase1_forward_s,
        phase1_forward_cpu_s,
        io,
        perturb_steps: steps,
        perturb_batch,
        perturb_ratio: (!cases.is_empty()).then(|| sc / sb),
        perturb_inner_ratio: (!cases.is_empty()).then(|| sc / cases.iter().map(|c| c.inner_forward_s).sum::<f64>()),
        perturb_s_per_image_variant: (!cases.is_empty()).then(|| sc / cases.len() as f64),
        perturb_bare_s_per_image_variant: (!cases.is_empty()).then(|| sb / cases.len() as f64),
        perturb: cases,
    };
    eprintln!("floor: phase-1 bare forwards {:.2} s ({:.2} images/s)", phase1_forward_s, n_images as f64 / phase1_forward_s);
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(p) => write_out(p, &json)?,
        None => println!("{json}"),
    }
    Ok(())
}

fn write_out(p: &Path, json: &str) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))
}
