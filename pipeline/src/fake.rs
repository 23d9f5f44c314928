//! A deterministic fake model pair, so that everything around the models (worker and process
//! layouts, resume, append, re-sharding, bad input, locks, clusters) is tested in seconds without
//! libtorch or Python. Its numbers mean nothing; the real-model parity tests live in the `qcam`
//! crate.
//!
//! A fake "model file" is a small JSON [`FakeSpec`]. The model average-pools each channel of the
//! crop over `stride × stride` blocks, mixes the three pooled planes into `channels` rectified
//! activations with seeded weights, and scores 1000 classes from their spatial means. Its
//! quantized side rounds the activation to a uint8 grid, as an int8 model's CAM layer does, so the
//! two CAMs differ a little, as real pairs' do. Every image is computed on its own, so the output
//! never depends on the batch it came in.

use std::path::Path;
use std::time::Instant;

use operators::infer::{BatchOutput, Forward, InferError, QParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use types::{Engine, Interpolation, LoadOptions, Preprocess};

use crate::models::{Backend, CLASSES, MANIFEST_FILE};

/// What a fake model file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeSpec {
    pub seed: u64,
    pub channels: usize,
    /// Pixels per CAM cell along each side.
    pub stride: usize,
    /// Quantize the activation to `(scale, zero_point)` uint8 levels.
    pub quantized: Option<(f32, i32)>,
    /// Return NaN logits for an image whose pixels are all equal (a flat image): the one way a
    /// test can make one image fail inference.
    #[serde(default)]
    pub nan_on_flat: bool,
    /// Milliseconds each forward takes at least: a stand-in for a real model's latency, so a test
    /// can stop a run part-way.
    #[serde(default)]
    pub forward_ms: u64,
}

/// Runs fake model files.
pub struct FakeBackend;

impl Backend for FakeBackend {
    fn load(&self, file: &Path, _engine: Option<Engine>, _options: LoadOptions) -> Result<Box<dyn Forward>, String> {
        let text = std::fs::read(file).map_err(|e| e.to_string())?;
        let spec: FakeSpec = serde_json::from_slice(&text).map_err(|e| format!("not a fake model: {e}"))?;
        Ok(Box::new(FakeModel::new(spec)))
    }

    fn runtime(&self) -> String {
        "fake (qcam-fake, no libtorch)".into()
    }
}

/// xorshift64*, for the weights.
fn weights(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub struct FakeModel {
    spec: FakeSpec,
    /// `channels × 3` mixing weights and `channels` biases.
    mix: Vec<f32>,
    bias: Vec<f32>,
    /// `CLASSES × channels`.
    head: Vec<f32>,
}

impl FakeModel {
    pub fn new(spec: FakeSpec) -> FakeModel {
        let c = spec.channels;
        FakeModel {
            mix: weights(spec.seed, 3 * c),
            bias: weights(spec.seed ^ 1, c).into_iter().map(|b| 0.2 * b).collect(),
            head: weights(spec.seed ^ 2, CLASSES * c),
            spec,
        }
    }

    /// One image: `(logits, act)`.
    fn image(&self, x: &[f32], crop: usize) -> (Vec<f32>, Vec<f32>) {
        let (c, s) = (self.spec.channels, self.spec.stride.max(1));
        let cells = (crop / s).max(1);
        let plane = crop * crop;
        let mut act = vec![0f32; c * cells * cells];
        for cy in 0..cells {
            for cx in 0..cells {
                let mut pooled = [0f32; 3];
                for (k, p) in pooled.iter_mut().enumerate() {
                    let mut sum = 0f64;
                    for y in cy * s..((cy + 1) * s).min(crop) {
                        sum += x[k * plane + y * crop + cx * s..k * plane + y * crop + ((cx + 1) * s).min(crop)].iter().map(|&v| v as f64).sum::<f64>();
                    }
                    *p = (sum / (s * s) as f64) as f32;
                }
                for ch in 0..c {
                    let v = self.bias[ch] + (0..3).map(|k| self.mix[ch * 3 + k] * pooled[k]).sum::<f32>();
                    act[ch * cells * cells + cy * cells + cx] = v.max(0.0);
                }
            }
        }
        if let Some((scale, zp)) = self.spec.quantized {
            for a in act.iter_mut() {
                let q = ((*a / scale).round() as i32 + zp).clamp(0, 255);
                *a = (q - zp) as f32 * scale;
            }
        }
        let means: Vec<f32> = act.chunks(cells * cells).map(|ch| ch.iter().sum::<f32>() / (cells * cells) as f32).collect();
        let mut logits: Vec<f32> = self.head.chunks(c).map(|w| w.iter().zip(&means).map(|(a, b)| a * b).sum()).collect();
        if self.spec.nan_on_flat && x.iter().all(|&v| v == x[0]) {
            logits.iter_mut().for_each(|l| *l = f32::NAN);
        }
        (logits, act)
    }
}

impl Forward for FakeModel {
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, InferError> {
        let expected = n * 3 * crop * crop;
        if pixels.len() != expected {
            return Err(InferError::Input { got: pixels.len(), expected });
        }
        let start = Instant::now();
        if self.spec.forward_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.spec.forward_ms));
        }
        let cells = (crop / self.spec.stride.max(1)).max(1);
        let (mut logits, mut act) = (Vec::with_capacity(n * CLASSES), Vec::new());
        for x in pixels.chunks(3 * crop * crop) {
            let (l, a) = self.image(x, crop);
            logits.extend(l);
            act.extend(a);
        }
        Ok(BatchOutput {
            n,
            classes: CLASSES,
            logits,
            act_shape: [self.spec.channels, cells, cells],
            act,
            qparams: self.spec.quantized.map(|(scale, zero_point)| QParams { scale, zero_point }),
            ms: start.elapsed().as_secs_f32() * 1e3,
        })
    }
}

/// Writes a fake pair `name` into `models_dir` the way the exporter writes a real one: two model
/// files and a `manifest.json` with their sizes and sha256. `crop` sets the preprocessing
/// (`resize = crop · 8 / 7`, ImageNet's mean and std).
pub fn write_pair(models_dir: &Path, name: &str, float: &FakeSpec, quantized: &FakeSpec, crop: u32) -> std::io::Result<()> {
    let dir = models_dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let mut files = serde_json::Map::new();
    for (variant, spec) in [("float", float), ("quantized", quantized)] {
        let bytes = serde_json::to_vec_pretty(spec).expect("a spec serializes");
        let file = format!("{variant}.fake.json");
        std::fs::write(dir.join(&file), &bytes)?;
        files.insert(
            variant.into(),
            serde_json::json!({
                "file": file,
                "bytes": bytes.len(),
                "sha256": hex::encode(Sha256::digest(&bytes)),
                "weights": format!("random:{}", spec.seed),
            }),
        );
    }
    let cells = (224 / float.stride.max(1)).max(1);
    let pre = Preprocess {
        resize: crop * 8 / 7,
        crop,
        interpolation: Interpolation::Bilinear,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    let mut manifest = serde_json::json!({
        "format": types::MANIFEST_FORMAT,
        "name": name,
        "architecture": "fake",
        "preprocess": pre,
        "cam_layer": {"name": "fake", "shape": [float.channels, cells, cells]},
        "quantization": {"engine": "fbgemm", "method": "fake", "calibration": null},
        "exporter": {"tool": "pipeline::fake::write_pair"},
    });
    let map = manifest.as_object_mut().expect("an object");
    map.extend(files);
    std::fs::write(dir.join(MANIFEST_FILE), serde_json::to_vec_pretty(&manifest).expect("serializes"))
}

/// A float/quantized pair of fake specs with the given seed.
pub fn specs(seed: u64) -> (FakeSpec, FakeSpec) {
    let float = FakeSpec { seed, channels: 8, stride: 8, quantized: None, nan_on_flat: false, forward_ms: 0 };
    let quantized = FakeSpec { quantized: Some((0.02, 0)), ..float.clone() };
    (float, quantized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_scores_the_same_alone_or_in_a_batch() {
        let m = FakeModel::new(specs(3).1);
        let crop = 32;
        let a: Vec<f32> = (0..3 * crop * crop).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let b: Vec<f32> = a.iter().map(|v| -v).collect();
        let alone = m.forward(&a, 1, crop).unwrap();
        let both = m.forward(&[a.clone(), b].concat(), 2, crop).unwrap();
        assert_eq!(alone.logits, both.logits_of(0));
        assert_eq!(alone.act, both.act_of(0));
        assert_eq!(alone.act_shape, [8, 4, 4]);
        // Quantized activations sit on the declared grid.
        assert!(alone.act.iter().all(|v| (v / 0.02 - (v / 0.02).round()).abs() < 1e-3));
    }

    #[test]
    fn a_flat_image_gets_nan_logits_when_asked() {
        let spec = FakeSpec { nan_on_flat: true, ..specs(1).0 };
        let out = FakeModel::new(spec).forward(&vec![0.5; 3 * 16 * 16], 1, 16).unwrap();
        assert!(out.logits.iter().all(|l| l.is_nan()));
    }
}
