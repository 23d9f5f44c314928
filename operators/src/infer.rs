//! Dual-model inference: the contract between the graph and whatever runs the TorchScript files.
//!
//! The graph only sees [`Forward`]; the `qcam` crate implements it with tch. Keeping libtorch out of
//! this crate keeps every kernel testable without it and leaves the runtime replaceable.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use types::{ErrorRow, Image, ImageMeta, Stage, Variant};

/// Affine quantisation parameters of a quantized activation (`real = (q - zero_point) · scale`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// One forward pass over a batch of `n` images (SPEC §2), already brought to plain f32.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutput {
    pub n: usize,
    pub classes: usize,
    /// `n × classes`, row-major.
    pub logits: Vec<f32>,
    /// `(C, h, w)` of one image's CAM-layer activation.
    pub act_shape: [usize; 3],
    /// `n × C × h × w`, dequantized, NaN replaced by 0.
    pub act: Vec<f32>,
    /// Present when the activation came back quantized.
    pub qparams: Option<QParams>,
    /// Wall time of the forward pass, milliseconds, for the whole batch.
    pub ms: f32,
}

impl BatchOutput {
    pub fn logits_of(&self, i: usize) -> &[f32] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }

    pub fn act_len(&self) -> usize {
        self.act_shape.iter().product()
    }

    pub fn act_of(&self, i: usize) -> &[f32] {
        let len = self.act_len();
        &self.act[i * len..(i + 1) * len]
    }
}

/// Why a forward pass gave no usable output. Written into `errors` rows, so the messages are
/// plain and name what was expected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InferError {
    #[error("input holds {got} values, expected {expected}")]
    Input { got: usize, expected: usize },
    /// The runtime failed inside the model; the first line of its message.
    #[error("forward failed: {0}")]
    Failed(String),
    /// The model answered, but not as the contract says (SPEC §2).
    #[error("{0}")]
    Contract(String),
}

/// Runs one model. Implementations own their thread and engine settings.
pub trait Forward {
    /// `pixels` is `n × 3 × crop × crop`, CHW per image.
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, InferError>;

    /// Logits only (`n × classes`), and the milliseconds the forward took. Deletion/insertion needs
    /// nothing else, so an implementation can skip converting the activation, several MB a batch.
    fn logits(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Vec<f32>, f32), InferError> {
        self.forward(pixels, n, crop).map(|out| (out.logits, out.ms))
    }
}

/// The two models of a pair, as the graph runs them.
pub struct PairModels {
    pub float: Box<dyn Forward>,
    pub quantized: Box<dyn Forward>,
}

impl PairModels {
    pub fn get(&self, variant: Variant) -> &dyn Forward {
        match variant {
            Variant::Float => self.float.as_ref(),
            Variant::Quantized => self.quantized.as_ref(),
        }
    }
}

/// One image's output from one variant.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantOut {
    pub logits: Vec<f32>,
    /// `C × h × w`, dequantized, NaN replaced by 0.
    pub act: Vec<f32>,
    pub act_shape: [usize; 3],
    pub qparams: Option<QParams>,
    /// This image's share of its batch's forward time.
    pub infer_ms: f32,
}

/// Both variants' outputs for one image of one pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    pub meta: ImageMeta,
    pub model: String,
    pub float: VariantOut,
    pub quantized: VariantOut,
}

impl Inferred {
    pub fn variant(&self, variant: Variant) -> &VariantOut {
        match variant {
            Variant::Float => &self.float,
            Variant::Quantized => &self.quantized,
        }
    }
}

/// Runs one batch through both variants. A failed forward fails the batch's images for this pair
/// only; NaN logits fail that image only. Either way each image yields exactly one result.
pub fn infer_batch(models: &PairModels, model: &str, images: &[Rc<Image>]) -> Vec<Result<Inferred, ErrorRow>> {
    let fail_all = |message: String| {
        images
            .iter()
            .map(|im| Err(ErrorRow::new(&im.image_id, &im.shard, Stage::Infer, message.clone()).for_model(model)))
            .collect()
    };
    let Some(first) = images.first() else { return Vec::new() };
    let crop = first.crop as usize;
    if images.iter().any(|im| im.crop as usize != crop) {
        return fail_all("images of one batch have different crop sizes".into());
    }
    let mut pixels = Vec::with_capacity(images.len() * 3 * crop * crop);
    for im in images {
        pixels.extend_from_slice(&im.pixels);
    }
    let mut outs = Vec::with_capacity(2);
    for variant in Variant::BOTH {
        match models.get(variant).forward(&pixels, images.len(), crop) {
            Ok(out) if out.n == images.len() => outs.push(out),
            Ok(out) => return fail_all(format!("{} model returned {} results for {} images", variant.as_str(), out.n, images.len())),
            Err(e) => return fail_all(format!("{} model: {e}", variant.as_str())),
        }
    }
    let per_image = |out: &BatchOutput, i: usize| VariantOut {
        logits: out.logits_of(i).to_vec(),
        act: out.act_of(i).to_vec(),
        act_shape: out.act_shape,
        qparams: out.qparams,
        infer_ms: out.ms / out.n as f32,
    };
    images
        .iter()
        .enumerate()
        .map(|(i, im)| {
            let (f, q) = (per_image(&outs[0], i), per_image(&outs[1], i));
            for (variant, v) in [(Variant::Float, &f), (Variant::Quantized, &q)] {
                if v.logits.iter().any(|l| !l.is_finite()) {
                    let msg = format!("{} model produced non-finite logits", variant.as_str());
                    return Err(ErrorRow::new(&im.image_id, &im.shard, Stage::Infer, msg).for_model(model));
                }
            }
            Ok(Inferred { meta: im.meta(), model: model.to_string(), float: f, quantized: q })
        })
        .collect()
}

/// The inference operator of one pair's branch. Each timestamp is one batch (the source never
/// lets a batch span shards), so a batch runs once the frontier shows it complete: its
/// composition, and so its numerics, never depend on how messages were split.
pub fn infer<'s>(
    images: StreamVec<'s, u64, Rc<Image>>,
    model: String,
    models: Rc<PairModels>,
) -> StreamVec<'s, u64, Result<Inferred, ErrorRow>> {
    images.unary_frontier(Pipeline, &format!("Infer[{model}]"), move |_cap, _info| {
        // Batches waiting for their timestamp to complete, oldest first.
        let mut pending: Vec<(Capability<u64>, Vec<Rc<Image>>)> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    match pending.iter_mut().find(|(c, _)| c.time() == cap.time()) {
                        Some((_, batch)) => batch.append(data),
                        None => pending.push((cap, std::mem::take(data))),
                    }
                }
            });
            pending.sort_by_key(|(cap, _)| *cap.time());
            pending.retain_mut(|(cap, batch)| {
                if frontier.less_equal(cap.time()) {
                    return true;
                }
                batch.sort_by(|a, b| a.image_id.cmp(&b.image_id));
                output.session(cap).give_iterator(infer_batch(&models, &model, batch).into_iter());
                false
            });
        }
    })
}

/// Softmax of one logit row, computed stably in f64 (probabilities are compared across variants).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

/// The `k` largest entries, highest first; equal values keep the lower class index first
/// (what `torch.topk` does on CPU for distinct values, and a fixed rule for ties).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.into_iter().map(|i| (i, values[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_hand_values() {
        // e^0, e^1, e^2 over their sum: 0.09003057, 0.24472847, 0.66524096
        let p = softmax(&[0.0, 1.0, 2.0]);
        for (got, want) in p.iter().zip([0.09003057f32, 0.24472847, 0.66524096]) {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
        // Large logits must not overflow.
        let p = softmax(&[1000.0, 1000.0]);
        assert_eq!(p, vec![0.5, 0.5]);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        let t = top_k(&[0.1, 0.7, 0.2, 0.7, -1.0], 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3, 2]);
    }
}
