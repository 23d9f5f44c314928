//! SPEC §5: the deletion and insertion metrics (RISE's `CausalMetric`, Petsiuk et al. 2018).
//!
//! Pixels are replaced in order of decreasing saliency, `step` at a time, and the model's
//! probability of its own unperturbed prediction is recorded after each step. Deletion starts from
//! the normalised input and replaces pixels with 0 (the mean colour after mean/std normalisation);
//! insertion starts from a blurred copy and puts the original pixels back. The area under each curve
//! (trapezoid on [0, 1]) is the score: low deletion AUC and high insertion AUC mean a faithful map.
//!
//! Everything here is a pure function over CHW `f32` slices (`3 × crop × crop`, one image); the
//! model is injected as a closure so the crate stays free of libtorch.
//!
//! Relation to RISE's published `evaluation.py`: same substrates, same kernel (its `gkern(11, 5)` is
//! the outer product of [`BLUR_TAPS`]), same "score, then replace the next `step` pixels" loop and
//! the same AUC formula. Two differences, both deliberate:
//! * RISE runs `n = ceil(crop² / step)` steps; the SPEC runs `steps`. They agree whenever
//!   `ceil(crop² / ceil(crop² / steps)) == steps` (true for crop 224 with steps 100: step 502,
//!   n = 100), see [`PerturbPlan::rise_steps`]. When they differ the SPEC repeats the all-replaced
//!   image at its last points and divides by `steps`.
//! * RISE orders pixels by `np.flip(np.argsort(cam))`, which leaves ties in an unspecified order
//!   (reversed, for a stable sort); the SPEC breaks ties by ascending row-major index. EigenCAM maps
//!   have large exact-zero regions, so this decides which background pixels go first.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::eigencam::cam_full;
use crate::infer::{softmax, Forward, PairModels};
use crate::subset::Scored;
use crate::baselines;
use crate::pool::{JobPool, Next};
use types::{ErrorRow, Image, Method, PerturbationRow, Stage, Variant};

/// RISE's blur: `scipy.ndimage.gaussian_filter` (σ = 5, mode "reflect", truncate 4) of an 11×11
/// delta, which is the outer product of these 1-D taps (the Gaussian's tails folded back into the
/// window by the reflection, hence the flat profile). Symmetric, so correlation = convolution.
#[allow(clippy::excessive_precision)] // digits as the SPEC prints them
pub const BLUR_TAPS: [f32; 11] = [
    0.08795814, 0.08889612, 0.09047420, 0.09219112, 0.09348939, 0.09398206, 0.09348939, 0.09219112, 0.09047420,
    0.08889612, 0.08795814,
];

/// Channels of the images perturbed (RGB).
pub const CHANNELS: usize = 3;

/// Pixels (row-major indices into the crop×crop map) in order of decreasing saliency; equal values
/// keep ascending index (a stable descending sort, what `np.argsort(-cam, kind="stable")` gives).
/// NaN ranks after every number (numpy's argsort also puts NaN last), so a broken map never
/// claims salience; -0.0 ties with 0.0 as in numpy rather than sorting below it as `total_cmp` would.
pub fn pixel_order(cam: &[f32]) -> Vec<u32> {
    assert!(cam.len() <= u32::MAX as usize, "cam has {} pixels, more than u32 indexes", cam.len());
    let key = |v: f32| (v.is_nan(), v + 0.0); // + 0.0 turns -0.0 into 0.0
    let mut order: Vec<u32> = (0..cam.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (na, va) = key(cam[a as usize]);
        let (nb, vb) = key(cam[b as usize]);
        na.cmp(&nb).then_with(|| if na { std::cmp::Ordering::Equal } else { vb.total_cmp(&va) }).then(a.cmp(&b))
    });
    order
}

/// RISE's insertion substrate: each channel of `x` (CHW, `3 × crop × crop`) convolved with the
/// 11×11 kernel `BLUR_TAPS ⊗ BLUR_TAPS`, zero padding 5 (`F.conv2d(x, k, padding=5)` with a
/// per-channel diagonal kernel). Done separably (rows, then columns) with f32 accumulation; the
/// result agrees with torch's direct 2-D convolution to float rounding (~1e-7 on normalised input).
pub fn blur(x: &[f32], crop: usize) -> Vec<f32> {
    let n = crop * crop;
    assert_eq!(x.len(), CHANNELS * n, "blur: input length {} is not 3·{crop}²", x.len());
    const R: usize = BLUR_TAPS.len() / 2;
    let mut rows = vec![0.0f32; x.len()];
    let mut out = vec![0.0f32; x.len()];
    for c in 0..CHANNELS {
        let src = &x[c * n..(c + 1) * n];
        let tmp = &mut rows[c * n..(c + 1) * n];
        // Horizontal pass; out-of-range taps are simply skipped (= zero padding).
        for y in 0..crop {
            let s = &src[y * crop..(y + 1) * crop];
            let t = &mut tmp[y * crop..(y + 1) * crop];
            for (xo, o) in t.iter_mut().enumerate() {
                let lo = xo.saturating_sub(R);
                let hi = (xo + R + 1).min(crop);
                let mut acc = 0.0f32;
                for xi in lo..hi {
                    acc += BLUR_TAPS[xi + R - xo] * s[xi];
                }
                *o = acc;
            }
        }
        // Vertical pass, whole rows at a time so the inner loop is contiguous.
        let dst = &mut out[c * n..(c + 1) * n];
        for y in 0..crop {
            let lo = y.saturating_sub(R);
            let hi = (y + R + 1).min(crop);
            let d = &mut dst[y * crop..(y + 1) * crop];
            for yi in lo..hi {
                let k = BLUR_TAPS[yi + R - y];
                for (o, &t) in d.iter_mut().zip(&tmp[yi * crop..(yi + 1) * crop]) {
                    *o += k * t;
                }
            }
        }
    }
    out
}

/// How many pixels are replaced at each point of a curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerturbPlan {
    pub crop: usize,
    /// Intervals of the curve; it has `steps + 1` points.
    pub steps: usize,
    /// Pixels replaced per interval: `ceil(crop² / steps)`.
    pub step: usize,
}

impl PerturbPlan {
    pub fn new(crop: usize, steps: usize) -> Self {
        assert!(crop > 0 && steps > 0, "perturbation plan needs crop > 0 and steps > 0 (got {crop}, {steps})");
        PerturbPlan { crop, steps, step: (crop * crop).div_ceil(steps) }
    }

    pub fn pixels(&self) -> usize {
        self.crop * self.crop
    }

    /// Points on each curve, the unperturbed image included.
    pub fn points(&self) -> usize {
        self.steps + 1
    }

    /// Pixels replaced in the image scored at point `i`.
    pub fn replaced_at(&self, i: usize) -> usize {
        i.saturating_mul(self.step).min(self.pixels())
    }

    /// RISE's own step count for the same `step`, `ceil(crop² / step)`; equals `steps` unless
    /// `steps` does not divide the image evenly enough (e.g. crop 4, steps 6: step 3, RISE 6 → ok;
    /// crop 4, steps 7: step 3, RISE 6 ≠ 7).
    pub fn rise_steps(&self) -> usize {
        self.pixels().div_ceil(self.step)
    }
}

/// Sets the given pixels of one CHW image to `fill`'s values (all channels), or to 0 without `fill`.
fn patch(img: &mut [f32], fill: Option<&[f32]>, pixels: &[u32], n: usize) {
    for c in 0..CHANNELS {
        let plane = &mut img[c * n..(c + 1) * n];
        match fill {
            None => pixels.iter().for_each(|&k| plane[k as usize] = 0.0),
            Some(f) => {
                let src = &f[c * n..(c + 1) * n];
                pixels.iter().for_each(|&k| plane[k as usize] = src[k as usize]);
            }
        }
    }
}

/// Appends the images of points `points` to `out`: `start` with the first `replaced_at(i)` pixels
/// of `order` taken from `fill` (0 without). Each image after the first is the previous one copied
/// and patched with the next `step` pixels, so a batch costs one copy per image, not a rebuild.
fn fill_points(
    start: &[f32],
    fill: Option<&[f32]>,
    order: &[u32],
    plan: &PerturbPlan,
    points: Range<usize>,
    out: &mut Vec<f32>,
) {
    let n = plan.pixels();
    let len = CHANNELS * n;
    assert_eq!(start.len(), len, "image length {} is not 3·{}²", start.len(), plan.crop);
    assert!(fill.is_none_or(|f| f.len() == len), "substrate length differs from the image's");
    assert_eq!(order.len(), n, "pixel order has {} entries for {n} pixels", order.len());
    assert!(points.end <= plan.points(), "points {points:?} beyond the plan's {}", plan.points());
    if points.is_empty() {
        return;
    }
    out.reserve(points.len() * len);
    let first = out.len();
    out.extend_from_slice(start);
    patch(&mut out[first..], fill, &order[..plan.replaced_at(points.start)], n);
    for i in points.start + 1..points.end {
        let prev = out.len() - len;
        out.extend_from_within(prev..);
        let new = &order[plan.replaced_at(i - 1)..plan.replaced_at(i)];
        patch(&mut out[prev + len..], fill, new, n);
    }
}

/// Deletion images for `points` (each `3 × crop × crop`), appended to `out`: `x` with the first
/// `replaced_at(i)` pixels of `order` set to 0 in all channels.
pub fn fill_deletion(x: &[f32], order: &[u32], plan: &PerturbPlan, points: Range<usize>, out: &mut Vec<f32>) {
    fill_points(x, None, order, plan, points, out);
}

/// Insertion images for `points`, appended to `out`: `blurred` (= [`blur`]`(x)`) with the first
/// `replaced_at(i)` pixels of `order` restored from `x`.
pub fn fill_insertion(
    x: &[f32],
    blurred: &[f32],
    order: &[u32],
    plan: &PerturbPlan,
    points: Range<usize>,
    out: &mut Vec<f32>,
) {
    fill_points(blurred, Some(x), order, plan, points, out);
}

/// Trapezoid area of a curve of `steps + 1` equally spaced points on [0, 1]:
/// `(Σ y − y₀/2 − y_last/2) / steps` (RISE's `auc`, whose divisor `len − 1` is the same number).
pub fn auc(curve: &[f32], steps: usize) -> f32 {
    assert!(steps > 0 && curve.len() == steps + 1, "auc: {} points for {steps} steps", curve.len());
    let sum: f64 = curve.iter().map(|&y| y as f64).sum();
    ((sum - curve[0] as f64 / 2.0 - curve[steps] as f64 / 2.0) / steps as f64) as f32
}

/// Both curves of one image under one variant, and their areas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Causal {
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
    pub deletion_auc: f32,
    pub insertion_auc: f32,
}

/// Scores of curve points whose images the caller has already run, so [`causal_curves`] need not:
/// three points of every pair of curves are one of two images.
/// * `unperturbed`: the score of `x` itself, deletion's first point and insertion's last (phase 1
///   computed it: the variant's top-1 probability);
/// * `blank`: the score of the all-zero image, deletion's last point, the same for every image of a
///   model (so computed once per model).
///
/// Points that replace every pixel are all of one of these images, so when `steps` does not divide
/// the image evenly (several such points), all of them are known.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KnownScores {
    pub unperturbed: Option<f32>,
    pub blank: Option<f32>,
}

impl KnownScores {
    /// Nothing known: every point is run.
    pub const NONE: KnownScores = KnownScores { unperturbed: None, blank: None };
}

/// Runs deletion and insertion for one image `x` (normalised CHW, `3 × crop × crop`) under the map
/// `cam` (crop×crop), scoring class `target` (the variant's prediction on the unperturbed `x`).
///
/// `forward(pixels, n)` gets `n ≤ batch` consecutive images and must return their **logits**,
/// `n × classes` row-major; the score is the softmax probability of `target`. The `2·(steps + 1)`
/// points' images, less those whose score `known` gives, go out in order, deletion points first
/// then insertion points, packed into full batches (a batch may hold the tail of deletion and the
/// head of insertion), so `forward` runs `ceil(images / batch)` times.
#[allow(clippy::too_many_arguments)] // the kernel's inputs, each a plain value
pub fn causal_curves<F: FnMut(&[f32], usize) -> Result<Vec<f32>, String>>(
    x: &[f32],
    cam: &[f32],
    crop: usize,
    steps: usize,
    batch: usize,
    target: usize,
    known: KnownScores,
    forward: F,
) -> Result<Causal, String> {
    if cam.len() != crop * crop {
        return Err(format!("causal_curves: cam of {} values for crop {crop}", cam.len()));
    }
    causal_curves_in_order(x, &pixel_order(cam), crop, steps, batch, target, known, forward)
}

/// [`causal_curves`] with the pixel order given instead of a map: a permutation of `0..crop²`,
/// most salient first (the baselines' orders, [`crate::baselines`]).
#[allow(clippy::too_many_arguments)] // the kernel's inputs, each a plain value
pub fn causal_curves_in_order<F: FnMut(&[f32], usize) -> Result<Vec<f32>, String>>(
    x: &[f32],
    order: &[u32],
    crop: usize,
    steps: usize,
    batch: usize,
    target: usize,
    known: KnownScores,
    mut forward: F,
) -> Result<Causal, String> {
    if batch == 0 {
        return Err("causal_curves: batch must be at least 1".into());
    }
    if x.len() != CHANNELS * crop * crop || order.len() != crop * crop {
        return Err(format!("causal_curves: image {} / order {} values for crop {crop}", x.len(), order.len()));
    }
    let plan = PerturbPlan::new(crop, steps);
    let blurred = blur(x, crop);
    let points = plan.points();
    // The points still to run: deletion `del`, then insertion `0..ins`. The rest are known: at
    // every point from `full` on, all pixels are replaced (deletion: the all-zero image;
    // insertion: `x` again), and deletion's point 0 is `x`.
    let full = (0..points).find(|&i| plan.replaced_at(i) == plan.pixels()).unwrap_or(points);
    let del = usize::from(known.unperturbed.is_some())..if known.blank.is_some() { full } else { points };
    let ins = if known.unperturbed.is_some() { full } else { points };
    let total = del.len() + ins;
    let mut scores = Vec::with_capacity(total);
    let mut buf = Vec::with_capacity(batch.min(total) * x.len());
    let mut at = 0;
    while at < total {
        let end = (at + batch).min(total);
        buf.clear();
        // Index j < del.len() is deletion point del.start + j, otherwise insertion point j − del.len().
        let d = del.len();
        fill_deletion(x, order, &plan, del.start + at.min(d)..del.start + end.min(d), &mut buf);
        fill_insertion(x, &blurred, order, &plan, at.max(d) - d..end.max(d) - d, &mut buf);
        let n = end - at;
        let logits = forward(&buf, n)?;
        if logits.is_empty() || logits.len() % n != 0 {
            return Err(format!("forward returned {} logits for {n} images", logits.len()));
        }
        let classes = logits.len() / n;
        if target >= classes {
            return Err(format!("target class {target} out of range for {classes} classes"));
        }
        scores.extend(logits.chunks_exact(classes).map(|row| softmax(row)[target]));
        at = end;
    }
    let ran_insertion = scores.split_off(del.len());
    let (unperturbed, blank) = (known.unperturbed.unwrap_or(f32::NAN), known.blank.unwrap_or(f32::NAN));
    let mut deletion = vec![unperturbed; del.start];
    deletion.extend(scores);
    deletion.resize(points, blank);
    let mut insertion = ran_insertion;
    insertion.resize(points, unperturbed);
    Ok(Causal {
        deletion_auc: auc(&deletion, steps),
        insertion_auc: auc(&insertion, steps),
        deletion,
        insertion,
    })
}

/// One image of one pair to perturb under one pixel order (both variants): a ranked record of the
/// selection, dealt to a worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PerturbJob {
    pub shard: String,
    pub model: String,
    pub rank: u32,
    /// The job's place in its pair's deal order (rank, then method): jobs go to workers round
    /// robin by it, so a worker's share is a count of jobs, not of images.
    pub deal: u32,
    pub scored: Scored,
    /// EigenCAM's order or a baseline's.
    pub method: Method,
}

/// The job's knobs for this stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerturbConfig {
    pub steps: usize,
    /// Perturbed images per forward pass.
    pub batch: usize,
    pub crop: usize,
    /// The Gaussian baseline's σ, as a share of the crop side.
    pub gaussian_sigma: f64,
    /// Seeds the random baseline's orders.
    pub seed: u64,
    /// Take the known points' scores ([`KnownScores`]) instead of running their forwards.
    pub reuse_known: bool,
}

/// The all-zero image's logits under each variant of one pair: deletion's last point for every
/// image of the pair ([`KnownScores::blank`]), so run once, at first use, and kept.
#[derive(Debug, Default)]
pub struct BlankLogits([std::cell::OnceCell<Vec<f32>>; 2]);

impl BlankLogits {
    fn get(&self, model: &dyn Forward, variant: Variant, crop: usize, forward_s: &std::cell::Cell<f64>) -> Result<&[f32], String> {
        let cell = &self.0[variant as usize];
        if cell.get().is_none() {
            let (logits, ms) = model.logits(&vec![0.0; CHANNELS * crop * crop], 1, crop).map_err(|e| e.to_string())?;
            forward_s.set(forward_s.get() + ms as f64 / 1e3);
            let _ = cell.set(logits);
        }
        Ok(cell.get().expect("set above"))
    }
}

/// Deletion and insertion for both variants of one image under `job.method`: EigenCAM's order on
/// each variant's own map (upsampled from the stored h×w map exactly as §3 step 5 does), a
/// baseline's the same for both; every variant scores its own unperturbed top-1. Rows come float
/// then int8. The points whose images are the unperturbed one (its score is phase 1's top-1
/// probability) or the all-zero one (`blank`) are not run again; without `blank`, every point is.
/// `forward_s` adds up the seconds spent in the model's forwards, so the stage's overhead around
/// them can be measured on one timeline (benches).
pub fn perturb_image(
    models: &PairModels,
    image: &Image,
    job: &PerturbJob,
    cfg: &PerturbConfig,
    blank: Option<&BlankLogits>,
    forward_s: &std::cell::Cell<f64>,
) -> Result<Vec<PerturbationRow>, String> {
    let method = job.method;
    let (gaussian, random);
    let shared: Option<&[u32]> = match method {
        Method::EigenCam => None,
        Method::Gaussian => {
            gaussian = baselines::gaussian(cfg.crop, cfg.gaussian_sigma);
            Some(&gaussian.order)
        }
        Method::Random => {
            random = baselines::random_order(cfg.crop * cfg.crop, cfg.seed, &image.image_id);
            Some(&random)
        }
        Method::Full => return Err("the whole-crop box has no pixel order".into()),
    };
    let row = |variant: Variant| -> Result<PerturbationRow, String> {
        let score = job.scored.variant(variant);
        let target = usize::try_from(score.target).map_err(|_| format!("{} has no top-1 class", variant.as_str()))?;
        let own;
        let order = match shared {
            Some(order) => order,
            None => {
                own = pixel_order(&cam_full(&score.cam_lo(), score.cam_h as usize, score.cam_w as usize, cfg.crop));
                &own
            }
        };
        let model = models.get(variant);
        let forward = |pixels: &[f32], n: usize| {
            let (logits, ms) = model.logits(pixels, n, cfg.crop).map_err(|e| e.to_string())?;
            forward_s.set(forward_s.get() + ms as f64 / 1e3);
            Ok(logits)
        };
        let known = match blank {
            Some(b) => {
                let logits = b.get(model, variant, cfg.crop, forward_s)?;
                KnownScores { unperturbed: score.target_prob(), blank: logits.get(target).map(|_| softmax(logits)[target]) }
            }
            None => KnownScores::NONE,
        };
        let c = causal_curves_in_order(&image.pixels, order, cfg.crop, cfg.steps, cfg.batch, target, known, forward)
            .map_err(|e| format!("{} {}: {e}", method.as_str(), variant.as_str()))?;
        Ok(PerturbationRow {
            image_id: image.image_id.clone(),
            model: job.model.clone(),
            variant,
            method,
            target: score.target,
            deletion_auc: c.deletion_auc,
            insertion_auc: c.insertion_auc,
            deletion_curve: c.deletion,
            insertion_curve: c.insertion,
        })
    };
    Variant::BOTH.into_iter().map(row).collect()
}

/// Where a worker's deletion/insertion time went: all of the operator's activations (images
/// re-read and decoded included), and the model forwards inside them.
#[derive(Debug, Default)]
pub struct StageTime {
    pub busy_s: std::cell::Cell<f64>,
    pub forward_s: std::cell::Cell<f64>,
}

/// Where a worker's deletion/insertion operator sits in its process's [`JobPool`].
#[derive(Clone)]
pub struct Seat {
    pub pool: Arc<JobPool<PerturbJob>>,
    /// The pair's place in the plan: pairs are drained in this order.
    pub branch: usize,
    pub worker: usize,
}

/// The deletion/insertion operator of one pair's branch. Jobs arrive once selection is final and go
/// into the process's pool ([`Seat`]); each activation takes the next job of the pair that any
/// worker of the process was dealt, loads its image and yields
/// its two rows or one error row, so the workers of a process finish together and each stays
/// responsive between jobs.
pub fn perturb<'s, L>(
    jobs: StreamVec<'s, u64, PerturbJob>,
    models: Rc<PairModels>,
    mut load: L,
    cfg: PerturbConfig,
    time: Rc<StageTime>,
    seat: Seat,
) -> StreamVec<'s, u64, Result<Vec<PerturbationRow>, ErrorRow>>
where
    L: FnMut(&PerturbJob) -> Result<Rc<Image>, ErrorRow> + 'static,
{
    let scope = jobs.scope();
    jobs.unary_frontier(Pipeline, "Perturb", move |_cap, info| {
        let activator = scope.activator_for(info.address);
        // The least capability this worker holds; jobs of other workers are emitted at it, too.
        let mut held: Option<Capability<u64>> = None;
        let blank = cfg.reuse_known.then(BlankLogits::default);
        let Seat { pool, branch, worker } = seat;
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let Some(&t) = cap.least() else { return };
                pool.put(branch, t, data.drain(..));
                if held.as_ref().is_none_or(|h| t < *h.time()) {
                    held = cap.retain_least(output.output_index());
                }
            });
            let Some(cap) = held.as_ref() else { return };
            pool.hold(branch, worker, true);
            match pool.take(branch, worker, *cap.time()) {
                Next::Job(t, job) => {
                    let start = std::time::Instant::now();
                    let image = load(&job);
                    let fail = |message: String| ErrorRow::new(&job.scored.image_id, &job.shard, Stage::Perturb, message).for_model(&job.model);
                    let rows = image.and_then(|im| perturb_image(&models, &im, &job, &cfg, blank.as_ref(), &time.forward_s).map_err(fail));
                    output.session(&cap.delayed(&t)).give(rows);
                    time.busy_s.set(time.busy_s.get() + start.elapsed().as_secs_f64());
                    activator.activate();
                }
                // Another worker is still on an earlier pair this worker holds: look again shortly
                // (each of its jobs takes seconds) rather than spin.
                Next::EarlierBranch => activator.activate_after(std::time::Duration::from_millis(20)),
                // Nothing to take: wait for more input, or let go once no more can come.
                Next::Empty if frontier.frontier().is_empty() => {
                    held = None;
                    pool.hold(branch, worker, false);
                }
                Next::Empty => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_taps_sum_to_one() {
        // A normalised kernel: blurring a constant image leaves the interior unchanged.
        let s: f64 = BLUR_TAPS.iter().map(|&t| t as f64).sum();
        assert!((s - 1.0).abs() < 1e-7, "taps sum to {s}");
    }

    #[test]
    fn fill_points_continues_from_a_later_start() {
        // Starting a range at point 2 must equal the third image of a range starting at 0.
        let plan = PerturbPlan::new(4, 3);
        let x: Vec<f32> = (0..48).map(|v| v as f32 + 1.0).collect();
        let order = pixel_order(&(0..16).map(|v| ((v * 7) % 16) as f32).collect::<Vec<_>>());
        let (mut all, mut tail) = (Vec::new(), Vec::new());
        fill_deletion(&x, &order, &plan, 0..4, &mut all);
        fill_deletion(&x, &order, &plan, 2..4, &mut tail);
        assert_eq!(&all[96..], &tail[..]);
        assert_eq!(tail.iter().filter(|&&v| v == 0.0).count(), 3 * (12 + 16));
    }
}
