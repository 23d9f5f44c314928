//! What the exporter writes beside a pair's two TorchScript files (`manifest.json`), and what every
//! run records of it in `run.json`: preprocessing, CAM layer, quantization and weight provenance.

use std::fmt;
use std::path::PathBuf;

use crate::names::names;
use crate::{Preprocess, Variant};
use serde::{Deserialize, Serialize};

/// Format 2 added what the exporter did to each file and how it is loaded (`ModelFile::frozen`,
/// `optimize_for_inference`, `channels_last`); format-1 manifests still read, as plain files.
pub const MANIFEST_FORMAT: u32 = 2;
const OLDEST_FORMAT: u32 = 1;

names! {
    /// Quantized kernels' backend. The weights are packed for one of them at load time.
    pub enum Engine as "quantized engine" {
        Qnnpack = "qnnpack",
        Fbgemm = "fbgemm",
        X86 = "x86",
    }
}

/// Where a variant's weights came from; every output carries it so random weights are never
/// mistaken for real ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    Pretrained(String),
    Substitute(String),
    Random(String),
}

impl Provenance {
    pub fn parse(s: &str) -> Result<Provenance, String> {
        match s.split_once(':') {
            Some(("pretrained", rest)) => Ok(Provenance::Pretrained(rest.into())),
            Some(("substitute", rest)) => Ok(Provenance::Substitute(rest.into())),
            Some(("random", rest)) => Ok(Provenance::Random(rest.into())),
            _ => Err(format!("`{s}` is not pretrained:<what>, substitute:<how> or random:<seed>")),
        }
    }

    /// One word for tables: real, substitute or random.
    pub fn kind(&self) -> &'static str {
        match self {
            Provenance::Pretrained(_) => "real",
            Provenance::Substitute(_) => "substitute",
            Provenance::Random(_) => "random",
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Pretrained(s) => write!(f, "pretrained:{s}"),
            Provenance::Substitute(s) => write!(f, "substitute:{s}"),
            Provenance::Random(s) => write!(f, "random:{s}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamLayer {
    pub name: String,
    /// `[C, h, w]` for a 224 crop.
    pub shape: [usize; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub dataset: String,
    pub count: usize,
    pub image_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    pub engine: Engine,
    /// `qat`, `ptq-static-eager`, `ptq-static-fx`, ...
    pub method: String,
    pub calibration: Option<Calibration>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative to the manifest's folder.
    pub file: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// `pretrained:<what>`, `substitute:<how>` or `random:<seed>`.
    pub weights: String,
    /// Saved after `torch.jit.freeze`: parameters folded into the graph (BatchNorm into the convs).
    #[serde(default)]
    pub frozen: bool,
    /// Load with libtorch's `optimize_for_inference` (oneDNN). Its result cannot be saved, so every
    /// consumer of the file (qcam and the Python references) runs it after loading.
    #[serde(default)]
    pub optimize_for_inference: bool,
    /// Feed the input in channels_last memory format (the same values, laid out NHWC).
    #[serde(default)]
    pub channels_last: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleTop1 {
    pub float: f64,
    pub quantized: f64,
    pub images: usize,
}

/// What the exporter wrote next to a pair's two TorchScript files (`manifest.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub architecture: String,
    pub preprocess: Preprocess,
    pub cam_layer: CamLayer,
    pub quantization: Quantization,
    pub float: ModelFile,
    pub quantized: ModelFile,
    /// Versions and the command that produced the files.
    pub exporter: serde_json::Map<String, serde_json::Value>,
    /// Top-1 on the shared sample measured in Python at export time: a cross-check, not a result.
    #[serde(default)]
    pub sample_top1: Option<SampleTop1>,
}

/// How a model file is loaded and fed, as its manifest entry says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LoadOptions {
    /// Run libtorch's `optimize_for_inference` after loading.
    pub optimize: bool,
    /// Give forwards their input in channels_last memory format.
    pub channels_last: bool,
}

impl ModelFile {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { optimize: self.optimize_for_inference, channels_last: self.channels_last }
    }
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !(OLDEST_FORMAT..=MANIFEST_FORMAT).contains(&m.format) {
            return Err(format!("field `format`: {} is not one of the supported {OLDEST_FORMAT}..={MANIFEST_FORMAT}", m.format));
        }
        for (field, f) in [("float.weights", &m.float), ("quantized.weights", &m.quantized)] {
            Provenance::parse(&f.weights).map_err(|e| format!("field `{field}`: {e}"))?;
        }
        if m.preprocess.crop == 0 || m.preprocess.resize < m.preprocess.crop {
            return Err("field `preprocess`: need 0 < crop <= resize".into());
        }
        if m.preprocess.std.iter().any(|&s| s <= 0.0) {
            return Err("field `preprocess.std`: must be positive".into());
        }
        Ok(m)
    }

    pub fn file(&self, variant: Variant) -> &ModelFile {
        match variant {
            Variant::Float => &self.float,
            Variant::Quantized => &self.quantized,
        }
    }

    pub fn provenance(&self, variant: Variant) -> Provenance {
        Provenance::parse(&self.file(variant).weights).expect("checked when the manifest was read")
    }
}

