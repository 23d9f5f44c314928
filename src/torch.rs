//! The libtorch backend: TorchScript files loaded and run with tch, and through a small C++ shim
//! ([`jit`]) where tch falls short. The pipeline only sees [`pipeline::models::Backend`] and
//! [`Forward`]; everything libtorch-specific (the quantized engine, threads) is here.

mod jit;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use operators::infer::{BatchOutput, Forward, InferError, QParams};
use pipeline::models::Backend;
use tch::{Kind, Tensor};
use types::{Engine, LoadOptions};

/// Runs TorchScript files with libtorch. Workers of a process share one loaded copy of each file:
/// tch marks `CModule` Send + Sync (TorchScript inference is safe from several threads), and a
/// copy per worker costs hundreds of MB (measured: 1 process × 2 workers peaked at 1.64 GB with a
/// copy each). Held weakly, so a model goes when the run's workers drop it.
#[derive(Default)]
pub struct TorchBackend {
    loaded: Mutex<Vec<(LoadKey, Weak<TorchModel>)>>,
}

/// One loaded copy per file, engine (weights are packed for the engine current at load) and load
/// pass.
type LoadKey = (PathBuf, Option<Engine>, LoadOptions);

impl Backend for TorchBackend {
    fn load(&self, file: &Path, engine: Option<Engine>, options: LoadOptions) -> Result<Box<dyn Forward>, String> {
        // Held while loading: the other workers wait for this copy instead of loading their own.
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|(_, w)| w.strong_count() > 0);
        let key = (file.to_path_buf(), engine, options);
        if let Some(model) = loaded.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(Box::new(Shared(model)));
        }
        let model = Arc::new(TorchModel::load(file, engine, options)?);
        loaded.push((key, Arc::downgrade(&model)));
        Ok(Box::new(Shared(model)))
    }

    fn set_threads(&self, threads: usize) {
        tch::set_num_threads(threads as i32);
    }

    fn format(&self) -> &'static str {
        "TorchScript model"
    }

    fn runtime(&self) -> String {
        format!("libtorch {} via tch 0.26", env!("QCAM_LIBTORCH_VERSION"))
    }

    fn engine_wait_s(&self) -> f64 {
        engine_wait_s()
    }
}

/// One loaded model that the workers of a process share.
struct Shared(Arc<TorchModel>);

impl Forward for Shared {
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, InferError> {
        self.0.forward(pixels, n, crop)
    }

    fn logits(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Vec<f32>, f32), InferError> {
        self.0.logits(pixels, n, crop)
    }
}

/// Sets libtorch's process-wide quantized engine (through the shim: tch cannot name X86). For code
/// outside the gate below, such as benches that run one model at a time.
pub fn set_qengine(engine: Engine) -> Result<(), String> {
    jit::set_qengine(engine)
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

thread_local! {
    /// Nanoseconds this thread has waited at the gate for another engine's forwards. Per thread,
    /// because each worker runs its forwards on its own thread and run.json reports each worker.
    static ENGINE_WAIT_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Seconds the calling thread has waited for a quantized engine other threads' models held: how
/// much workers running pairs of different engines cost each other.
pub fn engine_wait_s() -> f64 {
    ENGINE_WAIT_NS.get() as f64 / 1e9
}

struct EngineTicket;

impl EngineGate {
    fn enter(&self, engine: Engine) -> Result<EngineTicket, String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 != Some(engine) && st.1 > 0 {
            let start = Instant::now();
            while st.0 != Some(engine) && st.1 > 0 {
                st = self.idle.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            ENGINE_WAIT_NS.set(ENGINE_WAIT_NS.get() + start.elapsed().as_nanos() as u64);
        }
        if st.0 != Some(engine) {
            jit::set_qengine(engine)?;
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
    module: jit::JitModule,
    path: PathBuf,
    /// The quantized engine this model needs at load and at every forward; `None` for float.
    engine: Option<Engine>,
}

impl TorchModel {
    /// Loads a TorchScript file (in eval mode, with `options`' load pass); the error is the first
    /// line of libtorch's (the caller names the file). `engine`: the quantized engine to pack its
    /// weights for and to run it under; `None` for float models.
    pub fn load(path: &Path, engine: Option<Engine>, options: LoadOptions) -> Result<TorchModel, String> {
        let _ticket = engine.map(|e| ENGINE_GATE.enter(e)).transpose()?;
        let module = jit::JitModule::load(path, options)?;
        Ok(TorchModel { module, path: path.to_path_buf(), engine })
    }

    /// The bare forward `x -> (logits, act)` with nothing around it: no engine gate (the caller has
    /// set the engine), no copies. For benches that compare qcam's forwards with it.
    pub fn forward_tensors(&self, x: &Tensor) -> Result<(Tensor, Tensor), InferError> {
        self.module.forward(x)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The forward itself: `(logits, act)` tensors as the model returns them; when the forward
    /// started (after the input copy and any wait for the engine), which the timings count from;
    /// and the engine ticket, held until the caller has dequantized.
    fn forward_raw(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Tensor, Tensor, Instant, Option<EngineTicket>), InferError> {
        let expected = n * 3 * crop * crop;
        if pixels.len() != expected {
            return Err(InferError::Input { got: pixels.len(), expected });
        }
        let x = Tensor::from_slice(pixels).reshape([n as i64, 3, crop as i64, crop as i64]);
        let ticket = self.engine.map(|e| ENGINE_GATE.enter(e)).transpose().map_err(InferError::Failed)?;
        let start = Instant::now();
        let (logits, act) = self.module.forward(&x)?;
        Ok((logits, act, start, ticket))
    }

    fn run(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, InferError> {
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
            return Err(InferError::Contract(format!("logits have shape {lsize:?}, expected [{n}, classes]")));
        }
        let asize = act.size();
        if asize.len() != 4 || asize[0] != n as i64 {
            return Err(InferError::Contract(format!("activation has shape {asize:?}, expected [{n}, C, h, w]")));
        }
        let to_vec = |t: Tensor| -> Result<Vec<f32>, InferError> {
            Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1)).map_err(|e| InferError::Failed(e.to_string()))
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
    fn forward(&self, pixels: &[f32], n: usize, crop: usize) -> Result<BatchOutput, InferError> {
        self.run(pixels, n, crop)
    }

    fn logits(&self, pixels: &[f32], n: usize, crop: usize) -> Result<(Vec<f32>, f32), InferError> {
        let (logits, _, start, _ticket) = self.forward_raw(pixels, n, crop)?;
        let size = logits.size();
        if size.len() != 2 || size[0] != n as i64 {
            return Err(InferError::Contract(format!("logits have shape {size:?}, expected [{n}, classes]")));
        }
        let logits = Vec::<f32>::try_from(&logits.to_kind(Kind::Float).contiguous().view(-1)).map_err(|e| InferError::Failed(e.to_string()))?;
        Ok((logits, start.elapsed().as_secs_f32() * 1e3))
    }
}
