//! TorchScript modules through `jit_shim.cpp`, for the two libtorch calls tch 0.26 does not wrap:
//!
//! * `torch::jit::optimize_for_inference` (oneDNN prepacked convolutions and conv/add/relu fusion):
//!   float forwards up to twice as fast here (benches/PERFORMANCE.md). Its result cannot be saved
//!   (reloading fails with "required keyword attribute 'value' is undefined"), so it runs at load.
//! * The X86 quantized engine: tch's `QEngine` names only FBGEMM and QNNPACK, and x86 is libtorch's
//!   fastest int8 engine on x86 CPUs.
//!
//! tch keeps its module pointer private, so the shim owns the module (load, forward, free) and only
//! tensors cross, as tch's own `at::Tensor*`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};

use operators::infer::InferError;
use tch::Tensor;
use types::{Engine, LoadOptions};

#[repr(C)]
struct QcamModule {
    _opaque: [u8; 0],
}

extern "C" {
    fn qcam_free_error(err: *mut c_char);
    fn qcam_jit_load(path: *const c_char, optimize: c_int, channels_last: c_int, out: *mut *mut QcamModule, err: *mut *mut c_char) -> c_int;
    fn qcam_jit_free(m: *mut QcamModule);
    fn qcam_jit_forward(m: *mut QcamModule, input: *const c_void, logits: *mut *mut c_void, act: *mut *mut c_void, err: *mut *mut c_char) -> c_int;
    fn qcam_set_qengine(engine: c_int, err: *mut *mut c_char) -> c_int;
}

/// The message of a failed shim call (its first line; the caller names the file), freed here.
fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown libtorch error".into();
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd string, freed once, here.
    let s = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { qcam_free_error(err) };
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(&s).trim().to_string()
}

/// A loaded TorchScript module.
pub(crate) struct JitModule(NonNull<QcamModule>);

// SAFETY: the module is never mutated after load, and libtorch runs inference on one module from
// several threads at once (what tch's `CModule` is marked Send + Sync for, too).
unsafe impl Send for JitModule {}
unsafe impl Sync for JitModule {}

impl JitModule {
    pub(crate) fn load(path: &Path, opts: LoadOptions) -> Result<JitModule, String> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| "path contains a NUL byte".to_string())?;
        let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid C string and out-pointers; on failure only `err` is set.
        let rc = unsafe { qcam_jit_load(c_path.as_ptr(), opts.optimize as c_int, opts.channels_last as c_int, &mut out, &mut err) };
        if rc != 0 {
            return Err(take_error(err));
        }
        NonNull::new(out).map(JitModule).ok_or_else(|| "libtorch returned no module".into())
    }

    /// `forward(x) -> (logits, act)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor), InferError> {
        let (mut logits, mut act, mut err) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        // SAFETY: `x` outlives the call; on success the shim hands over two new `at::Tensor*`, which
        // `Tensor::from_ptr` owns from here on (tch frees them on drop).
        let rc = unsafe { qcam_jit_forward(self.0.as_ptr(), x.as_ptr().cast(), &mut logits, &mut act, &mut err) };
        match rc {
            0 => {}
            2 => return Err(InferError::Contract(take_error(err))),
            _ => return Err(InferError::Failed(take_error(err))),
        }
        Ok(unsafe { (Tensor::from_ptr(logits.cast()), Tensor::from_ptr(act.cast())) })
    }
}

impl Drop for JitModule {
    fn drop(&mut self) {
        // SAFETY: allocated by qcam_jit_load, freed once.
        unsafe { qcam_jit_free(self.0.as_ptr()) }
    }
}

/// Sets libtorch's process-wide quantized engine (c10::QEngine: FBGEMM 1, QNNPACK 2, X86 4).
pub(crate) fn set_qengine(engine: Engine) -> Result<(), String> {
    let id = match engine {
        Engine::Fbgemm => 1,
        Engine::Qnnpack => 2,
        Engine::X86 => 4,
    };
    let mut err = ptr::null_mut();
    // SAFETY: plain value in, error string out.
    if unsafe { qcam_set_qengine(id, &mut err) } != 0 {
        return Err(take_error(err));
    }
    Ok(())
}
