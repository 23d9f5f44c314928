//! Model pairs: the exporter's manifests, integrity checks, and TorchScript loading with tch.
//!
//! TorchScript files are code. A model is only ever loaded through its manifest, after its size and
//! sha256 match what the manifest recorded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use operators::infer::{BatchOutput, Forward, QParams, Variant};
pub use tables::manifest::{Calibration, CamLayer, Engine, Manifest, ModelFile, Provenance, Quantization, SampleTop1};
use sha2::{Digest, Sha256};
use tch::{IValue, Kind, Tensor};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: cannot read manifest: {source}")]
    ReadManifest { file: PathBuf, source: std::io::Error },
    #[error("{file}: invalid manifest: {message}")]
    BadManifest { file: PathBuf, message: String },
    #[error("{manifest}: field `{field}`: model file {file} is missing")]
    MissingFile { manifest: PathBuf, field: String, file: PathBuf },
    #[error("{manifest}: field `{field}`: {file} does not match the manifest ({what}); refusing to load it")]
    Mismatch { manifest: PathBuf, field: String, file: PathBuf, what: String },
    #[error("{manifest}: field `{field}`: {file} is not a loadable TorchScript model: {message}")]
    Load { manifest: PathBuf, field: String, file: PathBuf, message: String },
    #[error("{manifest}: field `{field}`: {file} breaks the model contract (SPEC §2): {message}")]
    Contract { manifest: PathBuf, field: String, file: PathBuf, message: String },
}

/// Logits per image (SPEC §2: `Float[N, 1000]`, ImageNet-1k in sorted-wnid order).
pub const CLASSES: usize = 1000;

/// A manifest plus where it was read from.
#[derive(Clone, Debug)]
pub struct PairSpec {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
}

impl PairSpec {
    /// Reads `dir/<name>/manifest.json`.
    pub fn read(models_dir: &Path, name: &str) -> Result<PairSpec, ModelError> {
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
        Ok(PairSpec { manifest, manifest_path })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn path(&self, variant: Variant) -> PathBuf {
        let dir = self.manifest_path.parent().unwrap_or(Path::new("."));
        dir.join(&self.manifest.file(variant).file)
    }

    /// Checks that both files exist and match the manifest's size and sha256; run before any work.
    pub fn verify(&self) -> Result<(), ModelError> {
        for variant in Variant::BOTH {
            let entry = self.manifest.file(variant);
            let path = self.path(variant);
            let field = format!("{}.file", variant.as_str());
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

    /// Loads both variants. Call [`PairSpec::verify`] first.
    pub fn load(&self) -> Result<LoadedPair, ModelError> {
        let load = |variant: Variant, engine: Option<Engine>| {
            TorchModel::load(&self.path(variant), engine).map_err(|message| ModelError::Load {
                manifest: self.manifest_path.clone(),
                field: format!("{}.file", variant.as_str()),
                file: self.path(variant),
                message,
            })
        };
        let float = load(Variant::Float, None)?;
        let quantized = load(Variant::Quantized, Some(self.manifest.quantization.engine))?;
        Ok(LoadedPair { float, quantized })
    }

    /// Both variants, loaded once per process and shared by its workers. tch marks `CModule`
    /// Send + Sync (TorchScript inference is safe from several threads), and a second copy of a
    /// pair per worker costs hundreds of MB (measured: 1 process × 2 workers peaked at 1.64 GB
    /// with a copy each). Held weakly, so the models go when the run's workers drop them.
    pub fn load_shared(&self) -> Result<Arc<LoadedPair>, ModelError> {
        static LOADED: Mutex<Vec<((PathBuf, PathBuf), Weak<LoadedPair>)>> = Mutex::new(Vec::new());
        let key = (self.path(Variant::Float), self.path(Variant::Quantized));
        // Held while loading: the other workers wait for this copy instead of loading their own.
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|(_, w)| w.strong_count() > 0);
        if let Some(pair) = loaded.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(pair);
        }
        let pair = Arc::new(self.load()?);
        loaded.push((key, Arc::downgrade(&pair)));
        Ok(pair)
    }

    /// Loads both variants and runs each once on one all-zero image of the manifest's crop: the
    /// output must be `(logits [1, 1000], act [1, C, h, w])` (SPEC §2) with `[C, h, w]` as
    /// `cam_layer.shape` says (the manifest gives it for a 224 crop, so at another crop only `C`
    /// is compared). Run at plan time, so that a model that cannot keep the contract stops the run
    /// before any work, with the manifest and field named, instead of failing every batch.
    pub fn check_contract(&self) -> Result<(), ModelError> {
        let pair = self.load()?;
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
            let file_field = format!("{}.file", variant.as_str());
            let out = pair.variant(variant).run(&zeros, 1, crop).map_err(|m| broken(file_field.clone(), m))?;
            if out.classes != CLASSES {
                return Err(broken(file_field, format!("logits have shape [1, {}], expected [1, {CLASSES}]", out.classes)));
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

pub struct LoadedPair {
    pub float: TorchModel,
    pub quantized: TorchModel,
}

impl LoadedPair {
    pub fn variant(&self, variant: Variant) -> &TorchModel {
        match variant {
            Variant::Float => &self.float,
            Variant::Quantized => &self.quantized,
        }
    }
}

/// One variant of a pair that the workers of a process share.
pub struct SharedModel {
    pair: Arc<LoadedPair>,
    variant: Variant,
}

impl SharedModel {
    pub fn new(pair: Arc<LoadedPair>, variant: Variant) -> SharedModel {
        SharedModel { pair, variant }
    }
}

impl Forward for SharedModel {
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, String> {
        self.pair.variant(self.variant).forward(pixels, n, crop)
    }

    fn logits(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Vec<f32>, f32), String> {
        self.pair.variant(self.variant).logits(pixels, n, crop)
    }
}

/// The libtorch engine a manifest's engine runs on. tch can only name FBGEMM and QNNPACK. The
/// exporter writes fbgemm for its PTQ models, and the tests compare these results with Python's
/// under the same engine.
pub fn qengine(engine: Engine) -> tch::QEngine {
    match engine {
        Engine::Qnnpack => tch::QEngine::QNNPACK,
        Engine::Fbgemm | Engine::X86 => tch::QEngine::FBGEMM,
    }
}

/// libtorch's quantized engine is one process-wide setting, and it matters twice: weights are
/// prepacked for the engine current at load, and some quantized ops dispatch on the engine current
/// at forward (measured: an fbgemm model run under qnnpack returns garbage). The gate lets any
/// number of threads run models of the same engine at once, and switches engine only when no
/// quantized forward is in flight.
struct EngineGate {
    state: Mutex<(Option<Engine>, usize)>,
    idle: Condvar,
}

static ENGINE_GATE: EngineGate = EngineGate { state: Mutex::new((None, 0)), idle: Condvar::new() };

struct EngineTicket;

impl EngineGate {
    fn enter(&self, engine: Engine) -> Result<EngineTicket, String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.0 != Some(engine) && st.1 > 0 {
            st = self.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.0 != Some(engine) {
            qengine(engine).set().map_err(|e| e.to_string())?;
            st.0 = Some(engine);
        }
        st.1 += 1;
        Ok(EngineTicket)
    }
}

impl Drop for EngineTicket {
    fn drop(&mut self) {
        let mut st = ENGINE_GATE.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 -= 1;
        if st.1 == 0 {
            ENGINE_GATE.idle.notify_all();
        }
    }
}

pub struct TorchModel {
    module: tch::CModule,
    path: PathBuf,
    /// The quantized engine this model needs at load and at every forward; `None` for float.
    engine: Option<Engine>,
}

impl TorchModel {
    /// Loads a TorchScript file; the error is the first line of libtorch's (the caller names the file).
    pub fn load(path: &Path, engine: Option<Engine>) -> Result<TorchModel, String> {
        let _ticket = engine.map(|e| ENGINE_GATE.enter(e)).transpose()?;
        let mut module = tch::CModule::load(path).map_err(|e| first_line(&e.to_string()))?;
        module.set_eval();
        Ok(TorchModel { module, path: path.to_path_buf(), engine })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The forward itself: `(logits, act)` tensors as the model returns them; when the forward
    /// started (after the input copy and any wait for the engine), which the timings count from;
    /// and the engine ticket, held until the caller has dequantized.
    fn forward_raw(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Tensor, Tensor, Instant, Option<EngineTicket>), String> {
        let expected = n * 3 * crop * crop;
        if pixels.len() != expected {
            return Err(format!("input holds {} values, expected {expected}", pixels.len()));
        }
        let x = Tensor::from_slice(pixels).reshape([n as i64, 3, crop as i64, crop as i64]);
        let ticket = self.engine.map(|e| ENGINE_GATE.enter(e)).transpose()?;
        let start = Instant::now();
        let out = tch::no_grad(|| self.module.forward_is(&[IValue::Tensor(x)]))
            .map_err(|e| format!("forward failed: {}", first_line(&e.to_string())))?;
        match out {
            IValue::Tuple(mut items) if items.len() == 2 => {
                let act = items.pop().unwrap();
                let logits = items.pop().unwrap();
                match (logits, act) {
                    (IValue::Tensor(l), IValue::Tensor(a)) => Ok((l, a, start, ticket)),
                    _ => Err("forward must return (Tensor logits, Tensor act)".into()),
                }
            }
            IValue::Tuple(items) => Err(format!("forward returned a tuple of {} items, expected (logits, act)", items.len())),
            _ => Err("forward must return a tuple (logits, act)".into()),
        }
    }

    fn run(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, String> {
        let (logits, act, start, _ticket) = self.forward_raw(pixels, n, crop)?;
        let (act, qparams) = if matches!(act.kind(), Kind::QUInt8 | Kind::QInt8 | Kind::QInt32) {
            let q = QParams { scale: act.q_scale() as f32, zero_point: act.q_zero_point() as i32 };
            (act.dequantize(), Some(q))
        } else {
            (act, None)
        };
        let ms = start.elapsed().as_secs_f32() * 1e3;
        let lsize = logits.size();
        if lsize.len() != 2 || lsize[0] != n as i64 {
            return Err(format!("logits have shape {lsize:?}, expected [{n}, classes]"));
        }
        let asize = act.size();
        if asize.len() != 4 || asize[0] != n as i64 {
            return Err(format!("activation has shape {asize:?}, expected [{n}, C, h, w]"));
        }
        let to_vec = |t: Tensor| -> Result<Vec<f32>, String> {
            Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1)).map_err(|e| e.to_string())
        };
        // SPEC §2: NaN activations become 0. NaN logits are left for the caller to report.
        let act = act.nan_to_num(0.0, None, None);
        Ok(BatchOutput {
            n,
            classes: lsize[1] as usize,
            logits: to_vec(logits)?,
            act_shape: [asize[1] as usize, asize[2] as usize, asize[3] as usize],
            act: to_vec(act)?,
            qparams,
            ms,
        })
    }
}

impl Forward for TorchModel {
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, String> {
        self.run(pixels, n, crop)
    }

    fn logits(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Vec<f32>, f32), String> {
        let (logits, _, start, _ticket) = self.forward_raw(pixels, n, crop)?;
        let size = logits.size();
        if size.len() != 2 || size[0] != n as i64 {
            return Err(format!("logits have shape {size:?}, expected [{n}, classes]"));
        }
        let logits = Vec::<f32>::try_from(&logits.to_kind(Kind::Float).contiguous().view(-1)).map_err(|e| e.to_string())?;
        Ok((logits, start.elapsed().as_secs_f32() * 1e3))
    }
}

fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim().to_string()
}

/// Asks libtorch's CPU allocator to back tensors of 2 MB and more with transparent huge pages
/// (`THP_MEM_ALLOC_ENABLE`, read by c10's `alloc_cpu` once, at the first allocation). Every batch
/// allocates fresh activations of tens of MB, and with 4 KiB pages the kernel's page faults and
/// zeroing took a fifth of a run's CPU time: with huge pages the floor's system time fell from
/// 15.6–19.9 s to 9.0–9.7 s and its forwards got 5–8% faster (benches/PERFORMANCE.md). A value
/// the user set, `0` included, is kept. Call it first thing, before any tensor exists and while
/// the process has one thread.
pub fn prefer_huge_pages() {
    if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
        std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
    }
}

/// Keeps glibc's allocator from growing a run's resident memory with every new thread. Each run
/// starts new worker threads; glibc gives new threads new arenas, and its dynamic mmap threshold
/// soon serves the multi-MB activation buffers of every batch from them, where freed memory stays
/// resident: RSS stepped up at unpredictable runs of a soak (444 → 527 → 546 MB over 30 runs).
/// One arena kept the same soak at 337 → 368 MB, flat after run 5, with fewer page faults (91 k
/// against 120–138 k per 48-image run). A `MALLOC_ARENA_MAX` the user set is kept. Call before any
/// thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called while the process has one thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

/// Sets libtorch's intra-op threads (process-wide) and keeps inter-op work on the caller's thread.
pub fn set_torch_threads(threads: usize) {
    tch::set_num_threads(threads as i32);
}
