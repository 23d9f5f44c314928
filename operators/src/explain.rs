//! After inference, per image of a pair: EigenCAM for both variants (§3), their comparison (§4),
//! WSOL (§6) and activation statistics (§7), assembled into the `images` and `pairs` rows, and the
//! WSOL of the no-model baselines beside EigenCAM's (`wsol` rows). The numeric work lives in the
//! step files; this one only sequences it.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::baselines;
use crate::compare;
use crate::eigencam::{self, EigenCam, SignPolicy};
use crate::infer::{softmax, top_k, Inferred, VariantOut};
use crate::stats::{self, QGrid};
use crate::wsol;
use crate::wsol::Localization;
use types::{ImageRow, Method, PairRow, Variant, WsolRow};

/// The job's knobs that change what is computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainConfig {
    pub sign: SignPolicy,
    pub wsol_threshold: f32,
    pub crop: usize,
    /// σ of the centred Gaussian baseline, as a share of the crop side.
    pub gaussian_sigma: f64,
}

/// Both variants' rows plus the pair row, for one image, and the `wsol` rows: per variant,
/// EigenCAM's then each baseline's.
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    pub images: [ImageRow; 2],
    pub pair: PairRow,
    pub wsol: Vec<WsolRow>,
}

/// The `wsol` rows of one image: each variant's EigenCAM localization and the baselines', which
/// depend on the image only through its boxes (and on the variant only through top-1 loc).
fn wsol_rows(images: &[ImageRow; 2], own: [&Localization; 2], cfg: &ExplainConfig, boxes: &[types::BoxXyxy]) -> Vec<WsolRow> {
    let g = baselines::gaussian(cfg.crop, cfg.gaussian_sigma);
    let gaussian = g.localize(boxes, cfg.wsol_threshold);
    let full = baselines::full_localization(cfg.crop, boxes);
    let mut rows = Vec::with_capacity(6);
    for (image, own) in images.iter().zip(own) {
        for (method, loc) in [(Method::EigenCam, own), (Method::Gaussian, &gaussian), (Method::Full, &full)] {
            rows.push(WsolRow {
                image_id: image.image_id.clone(),
                shard: image.shard.clone(),
                model: image.model.clone(),
                variant: image.variant,
                method,
                bbox: loc.bbox.to_array(),
                iou: loc.iou,
                iou_curve: loc.iou_curve.clone(),
                top1_loc: wsol::top1_loc(image.top1_correct, loc.iou),
            });
        }
    }
    rows
}

fn cam_of(out: &VariantOut, cfg: &ExplainConfig) -> (EigenCam, f32) {
    let [c, h, w] = out.act_shape;
    let start = Instant::now();
    let cam = eigencam::eigencam(&out.act, c, h, w, cfg.sign, cfg.crop);
    (cam, start.elapsed().as_secs_f32() * 1e3)
}

/// The quantized variant's grid bins both variants (§7). A float-only pair (no qparams) falls back
/// to a grid spanning the float activation's own range, so its statistics stay defined.
fn grid_of(inf: &Inferred) -> QGrid {
    if let Some(q) = inf.quantized.qparams {
        return QGrid { scale: q.scale, zero_point: q.zero_point };
    }
    let (lo, hi) = inf.quantized.act.iter().fold((0f32, 0f32), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    let scale = ((hi - lo) / 255.0).max(f32::MIN_POSITIVE);
    QGrid { scale, zero_point: (-lo / scale).round() as i32 }
}

pub fn explain(inf: &Inferred, cfg: &ExplainConfig) -> Explained {
    let grid = grid_of(inf);
    let (cam_f, ms_f) = cam_of(&inf.float, cfg);
    let (cam_q, ms_q) = cam_of(&inf.quantized, cfg);
    let [_, h, w] = inf.quantized.act_shape;
    let flipped_q = compare::flipped_cam(&cam_q.p, h, w, cfg.crop);
    let pair = PairRow {
        image_id: inf.meta.image_id.clone(),
        model: inf.model.clone(),
        rmse: compare::rmse(&cam_q.cam, &cam_f.cam),
        rmse_flipped: compare::rmse(&flipped_q, &cam_f.cam),
        top1_agree: argmax(&inf.float.logits) == argmax(&inf.quantized.logits),
    };
    let row = |variant: Variant, cam: &EigenCam, cam_ms: f32| {
        let out = inf.variant(variant);
        // Rank logits, not probabilities: softmax in f32 can merge nearly equal logits into a
        // tie that the logits do not have.
        let probs = softmax(&out.logits);
        let top5: Vec<(usize, f32)> = top_k(&out.logits, 5).into_iter().map(|(c, _)| (c, probs[c])).collect();
        let label = inf.meta.label;
        let loc = wsol::localize(&cam.cam, cfg.crop, &inf.meta.boxes, cfg.wsol_threshold);
        let st = stats::act_stats(&out.act, grid);
        let [_, h, w] = out.act_shape;
        let image = ImageRow {
            image_id: inf.meta.image_id.clone(),
            shard: inf.meta.shard.clone(),
            label,
            model: inf.model.clone(),
            variant,
            top1_correct: top5.first().is_some_and(|t| t.0 as i32 == label),
            top5_correct: top5.iter().any(|t| t.0 as i32 == label),
            top5: top5.iter().map(|t| t.0 as i32).collect(),
            top5_prob: top5.iter().map(|t| t.1).collect(),
            cam_h: h as i32,
            cam_w: w as i32,
            cam: cam.cam_lo.clone(),
            bbox: loc.bbox.to_array(),
            iou: loc.iou,
            iou_curve: loc.iou_curve.clone(),
            act_mean: st.mean,
            act_std: st.std,
            act_sparsity: st.sparsity,
            act_entropy: st.entropy,
            act_hist: st.hist,
            infer_ms: out.infer_ms,
            cam_ms,
        };
        (image, loc)
    };
    let (float, loc_f) = row(Variant::Float, &cam_f, ms_f);
    let (quantized, loc_q) = row(Variant::Quantized, &cam_q, ms_q);
    let images = [float, quantized];
    let wsol = wsol_rows(&images, [&loc_f, &loc_q], cfg, &inf.meta.boxes);
    Explained { images, pair, wsol }
}

fn argmax(v: &[f32]) -> usize {
    top_k(v, 1).first().map(|t| t.0).unwrap_or(0)
}
