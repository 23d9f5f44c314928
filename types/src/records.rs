//! The records that flow between operators, and the output rows (SPEC §8).

use serde::{Deserialize, Serialize};

use crate::names::names;
use crate::{Method, Variant};

/// An axis-aligned box with inclusive pixel corners, `x0 <= x1`, `y0 <= y1` (SPEC §1, §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoxXyxy {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl BoxXyxy {
    pub const EMPTY: BoxXyxy = BoxXyxy { x0: 0, y0: 0, x1: 0, y1: 0 };

    pub fn new(x0: i32, y0: i32, x1: i32, y1: i32) -> Self {
        BoxXyxy { x0, y0, x1, y1 }
    }

    pub fn to_array(self) -> [i32; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }
}

/// Pillow's own limit on decoded pixels (`Image.MAX_IMAGE_PIXELS`): every ImageNet val image fits,
/// a decompression bomb does not. The default of `data.max_pixels`.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// One undecoded image as a source yields it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Validation id, e.g. `ILSVRC2012_val_00000001`. Never used as a filesystem path.
    pub image_id: String,
    /// The shard this sample was read from; output part files are per shard.
    pub shard: String,
    /// Class index in sorted-wnid order (SPEC §1). Images without a usable label never become
    /// samples: the source reports them as errors.
    pub label: i32,
    /// Ground-truth boxes in the frame of the encoded image.
    pub boxes: Vec<BoxXyxy>,
    /// The encoded file as stored (JPEG, sometimes PNG or CMYK JPEG in ImageNet val).
    pub bytes: Vec<u8>,
}

/// Resampling filter for the shorter-side resize (Pillow's filters, as torchvision uses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

/// A model pair's preprocessing (SPEC §1); taken from its manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    pub resize: u32,
    pub crop: u32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// A stable key so that pairs sharing a preprocessing share one decode branch.
    pub fn key(&self) -> String {
        format!(
            "{}-{}-{:?}-{:?}-{:?}",
            self.resize, self.crop, self.interpolation, self.mean, self.std
        )
    }
}

/// A decoded, preprocessed image, ready for a model of the matching preprocessing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub image_id: String,
    pub shard: String,
    pub label: i32,
    /// Ground-truth boxes mapped into the crop frame; boxes left without area are dropped.
    pub boxes: Vec<BoxXyxy>,
    /// CHW, normalised, `3 × crop × crop`.
    pub pixels: Vec<f32>,
    pub crop: u32,
}

impl Image {
    pub fn meta(&self) -> ImageMeta {
        ImageMeta { image_id: self.image_id.clone(), shard: self.shard.clone(), label: self.label, boxes: self.boxes.clone() }
    }
}

/// What the steps after inference need to know about an image: everything but its pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub image_id: String,
    pub shard: String,
    pub label: i32,
    /// Crop frame.
    pub boxes: Vec<BoxXyxy>,
}

// ---- Output rows (SPEC §8). Their Arrow schemas live in the `tables` crate; serializable because
// in a cluster without a shared folder they travel to the process that writes them. ----

/// One row per (image, model, variant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    pub image_id: String,
    pub shard: String,
    pub label: i32,
    pub model: String,
    pub variant: Variant,
    pub top5: Vec<i32>,
    pub top5_prob: Vec<f32>,
    pub top1_correct: bool,
    pub top5_correct: bool,
    pub cam_h: i32,
    pub cam_w: i32,
    pub cam: Vec<f32>,
    pub bbox: [i32; 4],
    pub iou: f32,
    pub iou_curve: Vec<f32>,
    pub act_mean: f64,
    pub act_std: f64,
    pub act_sparsity: f64,
    pub act_entropy: f64,
    pub act_hist: Vec<f32>,
    pub infer_ms: f32,
    pub cam_ms: f32,
}

/// One row per (image, model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    pub image_id: String,
    pub model: String,
    pub rmse: f32,
    pub rmse_flipped: f32,
    pub top1_agree: bool,
}

/// One row per (model, image) in the top fraction by `rmse` (SPEC §4). `rank` counts from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetRow {
    pub model: String,
    pub image_id: String,
    pub rank: i32,
    pub rmse: f32,
}

/// WSOL (SPEC §6) of one saliency map for one (image, model, variant): the variant's EigenCAM
/// (the same box and curve as its `images` row) and each no-model baseline, so that one
/// `GROUP BY method` sets EigenCAM beside what a map that ignores the image would score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WsolRow {
    pub image_id: String,
    pub shard: String,
    pub model: String,
    pub variant: Variant,
    pub method: Method,
    pub bbox: [i32; 4],
    pub iou: f32,
    pub iou_curve: Vec<f32>,
    /// The variant's top-1 is right and `iou` ≥ 0.5.
    pub top1_loc: bool,
}

/// Deletion and insertion (SPEC §5) for one (image, model, variant, method). Serializable: rows
/// travel from the worker that computed them to the one that writes the pair's part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerturbationRow {
    pub image_id: String,
    pub model: String,
    pub variant: Variant,
    /// Which pixel order: the variant's EigenCAM, or a baseline's (then the same for both variants).
    pub method: Method,
    pub target: i32,
    pub deletion_auc: f32,
    pub insertion_auc: f32,
    pub deletion_curve: Vec<f32>,
    pub insertion_curve: Vec<f32>,
}

/// Running aggregates of one (model, variant) over every image of epochs `0..=epoch` (an epoch is a
/// fixed run of shards, so the same shards give the same rows however the run was split). The
/// pair-level columns (`mean_rmse` … `subset_mean_rmse`) repeat on both variants' rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    pub epoch: i64,
    pub model: String,
    pub variant: Variant,
    pub images: i64,
    pub top1: f64,
    pub top5: f64,
    pub mean_iou: f64,
    pub act_mean: f64,
    pub act_std: f64,
    pub act_sparsity: f64,
    pub act_entropy: f64,
    pub mean_rmse: f64,
    pub mean_rmse_flipped: f64,
    pub top1_agree: f64,
    pub subset_size: i64,
    pub subset_mean_rmse: f64,
}

names! {
    /// Where in the pipeline an image failed.
    pub enum Stage as "stage" {
        Label = "label",
        Read = "read",
        Decode = "decode",
        Infer = "infer",
        /// Deletion/insertion (§5), after selection.
        Perturb = "perturb",
    }
}

/// An image-level failure. `model` is `None` when the failure happened before any model (it then
/// counts against every pair), so `images_in = rows_ok + rows_error` holds per pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    pub image_id: String,
    pub shard: String,
    pub model: Option<String>,
    pub stage: Stage,
    pub message: String,
}

impl ErrorRow {
    pub fn new(image_id: &str, shard: &str, stage: Stage, message: impl Into<String>) -> ErrorRow {
        ErrorRow { image_id: image_id.into(), shard: shard.into(), model: None, stage, message: message.into() }
    }

    pub fn for_model(mut self, model: &str) -> ErrorRow {
        self.model = Some(model.into());
        self
    }
}

