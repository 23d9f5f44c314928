//! Model pairs as the run sees them: the exporter's manifests, their integrity check, and the
//! [`Backend`] that turns a model file into a [`Forward`]. libtorch lives behind that trait, in the
//! `qcam` binary; the fake backend ([`crate::fake`]) lets the whole run be tested without it.
//!
//! Model files are code (TorchScript). A file is only ever loaded through its manifest, after its
//! size and sha256 match what the manifest recorded.

use std::path::{Path, PathBuf};

use operators::infer::{Forward, PairModels};
use sha2::{Digest, Sha256};
use types::{Engine, LoadOptions, Manifest, Variant};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Logits per image (SPEC §2: `Float[N, 1000]`, ImageNet-1k in sorted-wnid order).
pub const CLASSES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: cannot read manifest: {source}")]
    ReadManifest { file: PathBuf, source: std::io::Error },
    #[error("{file}: invalid manifest: {message}")]
    BadManifest { file: PathBuf, message: String },
    #[error("pair `{name}`: {source}")]
    BadEngine { name: String, source: types::UnknownName },
    #[error("{manifest}: field `{field}`: model file {file} is missing")]
    MissingFile { manifest: PathBuf, field: String, file: PathBuf },
    #[error("{manifest}: field `{field}`: {file} does not match the manifest ({what}); refusing to load it")]
    Mismatch { manifest: PathBuf, field: String, file: PathBuf, what: String },
    #[error("{manifest}: field `{field}`: {file} is not a loadable {format}: {message}")]
    Load { manifest: PathBuf, field: String, file: PathBuf, format: &'static str, message: String },
    #[error("{manifest}: field `{field}`: {file} breaks the model contract (SPEC §2): {message}")]
    Contract { manifest: PathBuf, field: String, file: PathBuf, message: String },
}

/// What runs model files. One per process, shared by its workers.
pub trait Backend: Send + Sync {
    /// Loads one model file. `engine` is the quantized engine its weights are packed for and its
    /// forwards run under (`None` for a float model); `options` the load pass and input format its
    /// manifest entry asks for. The error is one line; the caller names manifest, field and file.
    fn load(&self, file: &Path, engine: Option<Engine>, options: LoadOptions) -> Result<Box<dyn Forward>, String>;

    /// Intra-op threads for this process's forwards (libtorch's pool is process-wide).
    fn set_threads(&self, _threads: usize) {}

    /// What a model file must be, for messages (e.g. `TorchScript model`).
    fn format(&self) -> &'static str {
        "model"
    }

    /// What ran the models, for run.json (e.g. `libtorch 2.13.0 via tch 0.26`).
    fn runtime(&self) -> String;

    /// Seconds the calling thread has waited so far for another model's quantized engine (a
    /// process-wide libtorch setting: models of different engines cannot run at once).
    fn engine_wait_s(&self) -> f64 {
        0.0
    }
}

/// A manifest plus where it was read from, and the quantized engine the pair runs under.
#[derive(Clone, Debug)]
pub struct PairSpec {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// An engine other than the manifest's, chosen with [`PairSpec::under_engine`].
    engine_override: Option<Engine>,
    /// [`PairSpec::name`].
    label: String,
}

impl PairSpec {
    /// Reads `dir/<name>/manifest.json`. `<name>@<engine>` (e.g. `mobilenet_v2_qnnpack@x86`) reads
    /// the pair `<name>` and runs its int8 model under that engine ([`PairSpec::under_engine`]).
    pub fn read(models_dir: &Path, name: &str) -> Result<PairSpec, ModelError> {
        if let Some((pair, engine)) = name.split_once('@') {
            let engine = engine.parse().map_err(|source| ModelError::BadEngine { name: name.into(), source })?;
            return Ok(PairSpec::read(models_dir, pair)?.under_engine(engine));
        }
        let manifest_path = models_dir.join(name).join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|source| ModelError::ReadManifest { file: manifest_path.clone(), source })?;
        let manifest = Manifest::from_json(&text)
            .map_err(|message| ModelError::BadManifest { file: manifest_path.clone(), message })?;
        if manifest.name != name {
            return Err(ModelError::BadManifest {
                file: manifest_path,
                message: format!("field `name`: `{}` but the job asks for `{name}`", manifest.name),
            });
        }
        Ok(PairSpec { label: manifest.name.clone(), manifest, manifest_path, engine_override: None })
    }

    /// The pair's name in tables, run.json and reports: the manifest's, or `<pair>@<engine>` when its
    /// int8 model runs under an engine other than the manifest's, so numbers from another engine
    /// never pass for the pair's own.
    pub fn name(&self) -> &str {
        &self.label
    }

    pub fn path(&self, variant: Variant) -> PathBuf {
        let dir = self.manifest_path.parent().unwrap_or(Path::new("."));
        dir.join(&self.manifest.file(variant).file)
    }

    fn field(variant: Variant) -> String {
        format!("{variant}.file")
    }

    /// The quantized engine a variant's weights are packed for and its forwards run under.
    pub fn engine(&self, variant: Variant) -> Option<Engine> {
        (variant == Variant::Quantized).then_some(self.engine_override.unwrap_or(self.manifest.quantization.engine))
    }

    /// Runs the int8 model under `engine` instead of the manifest's. A model's int8 kernels round
    /// differently under each engine (top-1 changes on 3–12% of images, benches/PERFORMANCE.md), so
    /// the pair is then named `<pair>@<engine>` ([`PairSpec::name`]). The manifest's own engine is
    /// no override. Whether the runtime has the engine shows at load.
    pub fn under_engine(mut self, engine: Engine) -> PairSpec {
        self.engine_override = (engine != self.manifest.quantization.engine).then_some(engine);
        self.label = match self.engine_override {
            Some(e) => format!("{}@{e}", self.manifest.name),
            None => self.manifest.name.clone(),
        };
        self
    }

    /// Checks that both files exist and match the manifest's size and sha256; run before any work.
    pub fn verify(&self) -> Result<(), ModelError> {
        for variant in Variant::BOTH {
            let entry = self.manifest.file(variant);
            let path = self.path(variant);
            let field = Self::field(variant);
            let bytes = std::fs::read(&path).map_err(|_| ModelError::MissingFile {
                manifest: self.manifest_path.clone(),
                field: field.clone(),
                file: path.clone(),
            })?;
            let mismatch = |what: String| ModelError::Mismatch {
                manifest: self.manifest_path.clone(),
                field: field.clone(),
                file: path.clone(),
                what,
            };
            if bytes.len() as u64 != entry.bytes {
                return Err(mismatch(format!("{} bytes, manifest says {}", bytes.len(), entry.bytes)));
            }
            let digest = hex::encode(Sha256::digest(&bytes));
            if !digest.eq_ignore_ascii_case(&entry.sha256) {
                return Err(mismatch(format!("sha256 {digest}, manifest says {}", entry.sha256)));
            }
        }
        Ok(())
    }

    /// Both variants, through `backend`. Call [`PairSpec::verify`] first.
    pub fn load(&self, backend: &dyn Backend) -> Result<PairModels, ModelError> {
        let load = |variant: Variant| {
            let options = self.manifest.file(variant).load_options();
            backend.load(&self.path(variant), self.engine(variant), options).map_err(|message| ModelError::Load {
                manifest: self.manifest_path.clone(),
                field: Self::field(variant),
                file: self.path(variant),
                format: backend.format(),
                message,
            })
        };
        Ok(PairModels { float: load(Variant::Float)?, quantized: load(Variant::Quantized)? })
    }

    /// Runs each variant once on one all-zero image of the manifest's crop: the output must be
    /// `(logits [1, 1000], act [1, C, h, w])` (SPEC §2) with `[C, h, w]` as `cam_layer.shape` says
    /// (the manifest gives it for a 224 crop, so at another crop only `C` is compared). Run at plan
    /// time, so that a model that cannot keep the contract stops the run before any work, with the
    /// manifest and field named, instead of failing every batch.
    pub fn check_contract(&self, models: &PairModels) -> Result<(), ModelError> {
        let crop = self.manifest.preprocess.crop as usize;
        let zeros = vec![0f32; 3 * crop * crop];
        let want = self.manifest.cam_layer.shape;
        for variant in Variant::BOTH {
            let broken = |field: String, message: String| ModelError::Contract {
                manifest: self.manifest_path.clone(),
                field,
                file: self.path(variant),
                message,
            };
            let out = models.get(variant).forward(&zeros, 1, crop).map_err(|e| broken(Self::field(variant), e.to_string()))?;
            if out.classes != CLASSES {
                return Err(broken(Self::field(variant), format!("logits have shape [1, {}], expected [1, {CLASSES}]", out.classes)));
            }
            let agrees = if crop == 224 { out.act_shape == want } else { out.act_shape[0] == want[0] };
            if !agrees {
                return Err(broken(
                    "cam_layer.shape".into(),
                    format!("the activation is {:?} per image at crop {crop}, the manifest says {want:?}", out.act_shape),
                ));
            }
        }
        Ok(())
    }
}
