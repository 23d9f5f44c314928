//! Decode is bounded in memory: a header claiming 10000x10000 is rejected with `TooLarge` before the
//! frame is allocated. A counting global allocator measures the peak bytes live during the call
//! (this file holds a single test so nothing else allocates concurrently).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::ImageEncoder;
use operators::decode::*;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::SeqCst) + l.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated above the level at entry while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = f();
    (r, PEAK.load(Ordering::SeqCst) - base)
}

#[test]
fn huge_headers_allocate_no_frame() {
    let real = std::fs::read(&common::sample_images()[0]).unwrap();
    let jpeg = common::patch_jpeg_dims(&real, 10_000, 10_000);
    let mut small = Vec::new();
    image::codecs::png::PngEncoder::new(&mut small)
        .write_image(&[7u8; 8 * 8 * 3], 8, 8, image::ExtendedColorType::Rgb8)
        .unwrap();
    let png = common::patch_png_dims(&small, 10_000, 10_000);
    // A frame would be 300 MB of RGB8; allow what the header parsers need (a copy of the input etc.).
    let budget = 4 * real.len() + (4 << 20);
    for (name, bytes) in [("jpeg", &jpeg), ("png", &png)] {
        let (r, peak) = peak_during(|| decode_rgb8(bytes, DEFAULT_MAX_PIXELS));
        println!(
            "{name}: {:?}, peak {peak} bytes during the call",
            r.as_ref().map(|i| i.dimensions())
        );
        assert_eq!(
            r,
            Err(DecodeError::TooLarge {
                width: 10_000,
                height: 10_000,
                max_pixels: DEFAULT_MAX_PIXELS
            })
        );
        assert!(peak < budget, "{name}: peak {peak} bytes >= {budget}");
    }
    // The counter works: decoding the real image does allocate its frame.
    let (img, peak) = peak_during(|| decode_rgb8(&real, DEFAULT_MAX_PIXELS).unwrap());
    let frame = (img.width() * img.height() * 3) as usize;
    println!(
        "real {}x{}: peak {peak} bytes (frame {frame})",
        img.width(),
        img.height()
    );
    assert!(peak >= frame);
}
