//! Shared by the operators integration tests: locating the sample data and the project's
//! Python, running `tests/reference/preprocess_torchvision.py`, and a self-removing temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `QCAM_SAMPLE_DATA`, default `<workspace root>/../shared/data/imagenet-val-sample`; panics when
/// missing (a test that needs it must fail, never silently pass).
pub fn sample_data() -> PathBuf {
    let p = std::env::var_os("QCAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data/imagenet-val-sample"));
    assert!(
        p.is_dir(),
        "sample data not found at {} (set QCAM_SAMPLE_DATA to the imagenet-val-sample directory)",
        p.display()
    );
    p
}

pub fn sample_val_dir() -> PathBuf {
    let d = sample_data().join("ILSVRC/Data/CLS-LOC/val");
    assert!(d.is_dir(), "{} missing", d.display());
    d
}

/// Sorted `*.JPEG` files of the sample.
pub fn sample_images() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sample_val_dir())
        .expect("read sample dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.JPEG in the sample");
    v
}

/// `QCAM_PYTHON`, default `<workspace root>/.venv/bin/python`; panics with a clear message if absent.
pub fn python() -> PathBuf {
    let p = std::env::var_os("QCAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python with torch/torchvision/Pillow not found at {} (run scripts/setup.sh or set QCAM_PYTHON); \
         the torchvision/Pillow comparison cannot run",
        p.display()
    );
    p
}

/// Run the reference script with `args`; panics with its output on failure.
pub fn run_reference(args: &[&str]) {
    let script = workspace_root().join("tests/reference/preprocess_torchvision.py");
    assert!(script.is_file(), "{} missing", script.display());
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("spawn the reference Python");
    assert!(
        out.status.success(),
        "reference script failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::time::{SystemTime, UNIX_EPOCH};
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("qcam-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn read_f32_le(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Standard CRC-32 (for patching PNG chunks in tests).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Rewrite the frame size in a JPEG's SOFn header (no pixels change, so the header lies).
pub fn patch_jpeg_dims(bytes: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let mut i = 2;
    while i + 4 <= b.len() {
        assert_eq!(b[i], 0xFF, "marker expected at {i}");
        let code = b[i + 1];
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if matches!(code, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            b[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            b[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return b;
        }
        i += 2 + len;
    }
    panic!("no SOF marker");
}

/// Rewrite a PNG's IHDR size, with a valid CRC.
pub fn patch_png_dims(bytes: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}
