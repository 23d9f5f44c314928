//! SPEC §1: decode an encoded ImageNet file to 8-bit RGB, preprocess it exactly as torchvision's
//! `ImageClassification` / `Resize(resize) → CenterCrop(crop) → ToTensor → Normalize` does on a PIL
//! image, and map ground-truth boxes into the crop frame. Pure functions, no I/O.
//!
//! # Decode
//! [`decode_rgb8`] sniffs the content (never the file name): JPEG (`FF D8 FF`) goes to libjpeg-turbo's
//! decoder (the C code vendored by `mozjpeg-sys`, through the `mozjpeg` crate), PNG (the 8-byte
//! signature) to `png` through `image` (ImageNet has a PNG named `.JPEG`). JPEGs are decoded with
//! the settings Pillow's `JpegDecode.c` uses outside draft mode, which are libjpeg's defaults:
//! accurate integer IDCT (`JDCT_ISLOW`), fancy chroma upsampling, default block smoothing, and
//! libjpeg's own guess of the file's colour space (JFIF/Adobe markers, component ids). Pillow links
//! libjpeg-turbo, whose decoder mozjpeg shares, so the pixels are bit-identical to
//! `Image.open(..).convert('RGB')` (all 300 sample images and the synthetic fixtures: baseline
//! 4:2:0/4:2:2/4:4:4, odd sizes, restart markers, progressive, grayscale, CMYK, YCCK). The SIMD
//! kernels (built when `nasm` is present) and the portable C give the same pixels. Conversions to
//! RGB follow Pillow:
//! * 3 components: libjpeg's `JCS_RGB` output (YCbCr→RGB, or RGB as stored);
//! * grayscale (JPEG `L`, PNG `L`/`LA`) replicates the luma to R=G=B; alpha is dropped, never composited;
//! * CMYK/YCCK JPEGs: libjpeg outputs `JCS_CMYK` (YCCK through its own YCC→RGB and `255-x`); Pillow
//!   (any version since 0.6) reads every 4-component JPEG as Adobe-*inverted* CMYK (`rawmode
//!   "CMYK;I"`) whatever the APP14 marker says, and `convert('RGB')` is `Convert.c: cmyk2rgb`,
//!   `R = clip(nk - MULDIV255(C, nk))` with `C = 255 - raw_c`, `nk = raw_k`, done here exactly;
//! * other component counts are [`DecodeError::Unsupported`], as Pillow refuses them;
//! * 16-bit PNGs: RGB/RGBA/LA keep the high byte (Pillow's `;16B` raw modes), 16-bit gray is clipped
//!   to 255 (Pillow opens it as `I;16` and its `I;16 → RGB` conversion clips).
//!
//! EXIF orientation is ignored, as `PIL.Image.open` ignores it.
//!
//! libjpeg's fatal errors (`error_exit`) unwind out of the C code (the `mozjpeg` crate's error
//! manager calls `resume_unwind`, which skips the panic hook, so nothing is printed); they are caught
//! here and become [`DecodeError::Corrupt`] with libjpeg's message ([`DecodeError::Unsupported`]
//! for its "Unsupported ..." ones, e.g. 12-bit or lossless JPEGs). Its warnings (corrupt data, junk
//! before a marker) are ignored, as Pillow ignores them.
//!
//! Memory is bounded: the header is parsed first (`jpeg_read_header` / the PNG header) and
//! `width × height > max_pixels` is rejected with [`DecodeError::TooLarge`] before the frame, or any
//! of libjpeg's frame-sized buffers (`jpeg_start_decompress`), is allocated. A JPEG must be
//! structurally complete: its marker stream is walked (segments by length, entropy-coded data to the
//! next marker) and must reach EOI; the `mozjpeg` source manager would otherwise fake an EOI at the end
//! of the data and libjpeg would fill the rest of a truncated scan with grey, where Pillow raises
//! "image file is truncated". Bytes that are neither JPEG nor PNG are [`DecodeError::Corrupt`]
//! unless they carry another known format's signature (GIF, BMP, WebP, TIFF), which is
//! [`DecodeError::Unsupported`].
//!
//! # Resize
//! [`resize_rgb8`] is a line-by-line port of Pillow's `ImagingResample` (`libImaging/Resample.c`) for
//! 8-bit images: the same `precompute_coeffs` (support scaled by the downscale factor = antialias,
//! `xmin = (int)(center - support + 0.5)`), the same 22-bit fixed-point coefficients rounded half away
//! from zero, horizontal pass first into an 8-bit clipped intermediate, then the vertical pass, with
//! `+2^21` rounding and clipping to 0..=255 after each. Bilinear is Pillow's triangle filter
//! (support 1), bicubic is Pillow's cubic with `a = -0.5` (support 2). Given the same decoded pixels the
//! output is bit-identical to `PIL.Image.resize` (verified over the sample in
//! `tests/decode_vs_torchvision.rs`). `fast_image_resize` was not used because it normalises the
//! coefficients to 16-bit integers with a variable precision (Pillow-SIMD style), which rounds
//! differently from Pillow by ±1 level at some pixels.
//!
//! [`preprocess`] resamples only the pixels inside the centre crop (each output pixel depends only on
//! its own coefficients, so this is bit-identical to resizing the whole image and cropping), and
//! normalises through a 256-entry table per channel built with torchvision's own float32 operation
//! order, `(v / 255 - mean) / std`.

use std::io::Cursor;

use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, ImageError, RgbImage};

use types::{BoxXyxy, Image, Interpolation, Preprocess, Sample};

/// The default for [`decode_rgb8`]'s `max_pixels`: Pillow's own decompression-bomb threshold
/// `PIL.Image.MAX_IMAGE_PIXELS` (89,478,485 ≈ 89.5 MP, "about 100 MP"), so anything Pillow opens
/// without a `DecompressionBombWarning` we decode, and a 10,000 × 10,000 image (exactly 100 MP) is
/// rejected. ImageNet val images are all far smaller.
pub use types::DEFAULT_MAX_PIXELS;

/// Why an encoded image could not be turned into RGB8.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header declares more pixels than allowed; nothing was allocated for the frame.
    #[error("image is {width}x{height}, more than the limit of {max_pixels} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Truncated, garbage or otherwise malformed bytes.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// A well-formed image in a format or colour type we do not handle.
    #[error("unsupported image: {0}")]
    Unsupported(String),
}

/// The geometry of one image's preprocessing: original size, resized size and the crop offsets.
///
/// Crop pixel `(cx, cy)` shows resized pixel `(cx + left, cy + top)`; when the resized image is
/// smaller than the crop on an axis, torchvision pads with zeros first and `left`/`top` is negative
/// (minus the leading pad, `(crop - resized) // 2`), and crop pixels outside the resized image are
/// the padding value 0 (normalised to `-mean/std`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CropFrame {
    pub orig_w: u32,
    pub orig_h: u32,
    pub resized_w: u32,
    pub resized_h: u32,
    pub left: i32,
    pub top: i32,
    pub crop: u32,
}

// ------------------------------------------------------------------------------------------------
// Decode

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The container format, judged by content only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SniffedFormat {
    Jpeg,
    Png,
}

/// Identify the format from the leading bytes (the file name is never consulted).
pub fn sniff_format(bytes: &[u8]) -> Result<SniffedFormat, DecodeError> {
    if bytes.len() >= 3 && bytes[..3] == [0xFF, 0xD8, 0xFF] {
        return Ok(SniffedFormat::Jpeg);
    }
    if bytes.len() >= 8 && bytes[..8] == PNG_SIGNATURE {
        return Ok(SniffedFormat::Png);
    }
    let known = [
        (&b"GIF8"[..], "GIF"),
        (&b"BM"[..], "BMP"),
        (&b"II*\0"[..], "TIFF"),
        (&b"MM\0*"[..], "TIFF"),
    ];
    for (magic, name) in known {
        if bytes.starts_with(magic) {
            return Err(DecodeError::Unsupported(format!(
                "{name} images are not supported"
            )));
        }
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Err(DecodeError::Unsupported(
            "WebP images are not supported".into(),
        ));
    }
    if bytes.is_empty() {
        return Err(DecodeError::Corrupt("empty input".into()));
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(DecodeError::Corrupt(format!(
        "neither JPEG nor PNG (leading bytes {})",
        head.join(" ")
    )))
}

fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "zero dimension {width}x{height}"
        )));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

fn from_image_error(e: ImageError) -> DecodeError {
    match e {
        ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Walk a JPEG's marker stream and require it to reach EOI: segments are skipped by their length,
/// entropy-coded data up to the next real marker (`FF 00` stuffing, `FF D0..D7` restarts and `FF`
/// fill bytes stay inside the scan). Anything ending early is truncated.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), DecodeError> {
    let truncated = |at: usize| {
        DecodeError::Corrupt(format!(
            "truncated JPEG: {} bytes end at offset {at} before the EOI marker",
            bytes.len()
        ))
    };
    let n = bytes.len();
    let mut i = 2; // past SOI
    let mut seen_sos = false;
    loop {
        // Find the next marker: 0xFF (possibly several fill bytes) followed by a non-zero code.
        if i >= n {
            return Err(truncated(n));
        }
        if bytes[i] != 0xFF {
            if seen_sos {
                // entropy-coded data (or junk between segments, which libjpeg also skips)
                i += 1;
                continue;
            }
            return Err(DecodeError::Corrupt(format!(
                "JPEG: expected a marker at offset {i}, found {:02x}",
                bytes[i]
            )));
        }
        let mut j = i + 1;
        while j < n && bytes[j] == 0xFF {
            j += 1;
        }
        if j >= n {
            return Err(truncated(n));
        }
        let code = bytes[j];
        i = j + 1;
        match code {
            0x00 | 0xD0..=0xD7 => {
                // stuffed 0xFF or restart marker: still inside entropy-coded data
                if !seen_sos {
                    return Err(DecodeError::Corrupt(format!(
                        "JPEG: stray marker {code:02x} before the first scan"
                    )));
                }
            }
            0xD9 => {
                return if seen_sos {
                    Ok(())
                } else {
                    Err(DecodeError::Corrupt("JPEG: EOI before any scan".into()))
                };
            }
            0x01 | 0xD8 => {} // TEM / a second SOI: no length; libjpeg tolerates them
            _ => {
                if i + 2 > n {
                    return Err(truncated(n));
                }
                let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
                if len < 2 {
                    return Err(DecodeError::Corrupt(format!(
                        "JPEG: marker {code:02x} with bad length {len}"
                    )));
                }
                if i + len > n {
                    return Err(truncated(n));
                }
                i += len;
                if code == 0xDA {
                    seen_sos = true;
                }
            }
        }
    }
}

/// Decode a JPEG or PNG (by content) to 8-bit RGB the way Pillow's `Image.open(..).convert('RGB')`
/// does; reject images with more than `max_pixels` pixels from their header, before allocating.
pub fn decode_rgb8(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    match sniff_format(bytes)? {
        SniffedFormat::Jpeg => decode_jpeg(bytes, max_pixels),
        SniffedFormat::Png => decode_png(bytes, max_pixels),
    }
}

/// Read only the header and return `(width, height)`; cheap, allocates nothing per pixel.
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    match sniff_format(bytes)? {
        SniffedFormat::Jpeg => with_libjpeg(|| {
            let dec = jpeg_header(bytes)?;
            Ok((dec.width() as u32, dec.height() as u32))
        }),
        SniffedFormat::Png => {
            let dec = PngDecoder::new(Cursor::new(bytes)).map_err(from_image_error)?;
            Ok(dec.dimensions())
        }
    }
}

/// Run libjpeg work, turning its fatal errors into [`DecodeError`]s. The `mozjpeg` crate's error
/// manager reports a libjpeg `error_exit` by unwinding (`std::panic::resume_unwind` through the
/// `C-unwind` frames, which skips the panic hook, so nothing is printed) with the formatted libjpeg
/// message as payload; its warnings (`emit_message`) are silenced, as Pillow ignores them too.
/// Everything libjpeg allocated is freed by `Decompress`'s `Drop` during the unwind.
fn with_libjpeg<T>(f: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg error");
            let msg = msg.strip_prefix("libjpeg fatal error: ").unwrap_or(msg);
            // libjpeg's "Unsupported JPEG process/data precision/color conversion ..." are
            // well-formed files we cannot decode; anything else is a damaged stream.
            Err(if msg.starts_with("Unsupported") {
                DecodeError::Unsupported(format!("JPEG: {msg}"))
            } else {
                DecodeError::Corrupt(format!("JPEG: {msg}"))
            })
        }
    }
}

/// Parse the JPEG header (markers up to the first SOS; no frame allocation). Call inside
/// [`with_libjpeg`].
fn jpeg_header(bytes: &[u8]) -> Result<mozjpeg::Decompress<&[u8]>, DecodeError> {
    mozjpeg::Decompress::new_mem(bytes).map_err(corrupt_jpeg)
}

/// Pillow's `CMYK → RGB` (`libImaging/Convert.c: cmyk2rgb`) applied to libjpeg's raw CMYK output,
/// which Pillow first inverts (`rawmode "CMYK;I"`): with `c = 255 - raw_c`, `nk = 255 - (255 -
/// raw_k) = raw_k`, `R = clip(nk - MULDIV255(c, nk))`, `MULDIV255(a, b) = (t + (t >> 8)) >> 8` with
/// `t = a·b + 128`.
#[inline]
fn cmyk_inverted_to_rgb(raw: &[u8], out: &mut [u8]) {
    for (px, o) in raw.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let nk = u32::from(px[3]);
        for c in 0..3 {
            let t = (255 - u32::from(px[c])) * nk + 128;
            let m = ((t >> 8) + t) >> 8;
            o[c] = nk.saturating_sub(m) as u8;
        }
    }
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    with_libjpeg(|| {
        // Header first: jpeg_read_header parses the markers up to the first SOS; libjpeg allocates
        // its frame-sized buffers only in jpeg_start_decompress, after the size check.
        let mut dec = jpeg_header(bytes)?;
        let (w, h) = (dec.width() as u32, dec.height() as u32);
        check_size(w, h, max_pixels)?;
        check_jpeg_complete(bytes)?;
        // Pillow's decoder settings (JpegDecode.c, no draft mode): libjpeg's defaults, i.e. the
        // accurate integer IDCT and fancy (triangle) chroma upsampling; block smoothing stays at
        // its default (it only acts on incomplete progressive coefficients). jpeg_color_space is
        // left to libjpeg's own JFIF/Adobe/component-id guess, as Pillow passes no jpegmode.
        dec.dct_method(mozjpeg::DctMethod::IntegerSlow);
        dec.do_fancy_upsampling(true);
        let ncomp = dec.components().len();
        // Per component count: libjpeg's output space, its bytes per pixel, and the conversion of
        // one output row to RGB, as Pillow decodes and then `convert('RGB')`s that kind of file.
        let (space, bpp, to_rgb): (mozjpeg::ColorSpace, usize, fn(&[u8], &mut [u8])) = match ncomp {
            // Pillow: mode RGB, out_color_space JCS_RGB (YCbCr→RGB by libjpeg).
            3 => (mozjpeg::ColorSpace::JCS_RGB, 3, |row, out| out.copy_from_slice(row)),
            // Pillow: mode L (JCS_GRAYSCALE); convert('RGB') replicates the luma.
            1 => (mozjpeg::ColorSpace::JCS_GRAYSCALE, 1, |row, out| {
                for (o, &g) in out.chunks_exact_mut(3).zip(row) {
                    o.fill(g);
                }
            }),
            // Pillow: mode CMYK with rawmode "CMYK;I" whatever the Adobe marker says; libjpeg
            // outputs JCS_CMYK from CMYK or YCCK (its own YCC→RGB then 255-x), then Pillow's
            // cmyk2rgb.
            4 => (mozjpeg::ColorSpace::JCS_CMYK, 4, cmyk_inverted_to_rgb),
            // Pillow: "cannot handle N-layer images".
            n => return Err(DecodeError::Unsupported(format!("JPEG with {n} components"))),
        };
        let mut started = dec.to_colorspace(space).map_err(corrupt_jpeg)?;
        check_output_size(started.width(), started.height(), w, h)?;
        let wu = w as usize;
        let mut out = vec![0u8; wu * h as usize * 3];
        let mut row = vec![0u8; wu * bpp];
        for orow in out.chunks_exact_mut(wu * 3) {
            started.read_scanlines_into::<u8>(&mut row).map_err(corrupt_jpeg)?;
            to_rgb(&row, orow);
        }
        // jpeg_finish_decompress, as Pillow's decoder calls it after the last scanline.
        started.finish().map_err(corrupt_jpeg)?;
        Ok(RgbImage::from_raw(w, h, out).expect("buffer sized from the header"))
    })
}

/// A libjpeg failure reported through the `mozjpeg` crate's `io::Error`s: a damaged stream.
fn corrupt_jpeg(e: std::io::Error) -> DecodeError {
    DecodeError::Corrupt(format!("JPEG: {e}"))
}

fn check_output_size(ow: usize, oh: usize, w: u32, h: u32) -> Result<(), DecodeError> {
    if (ow, oh) != (w as usize, h as usize) {
        return Err(DecodeError::Corrupt(format!(
            "JPEG: libjpeg output {ow}x{oh} differs from the header's {w}x{h}"
        )));
    }
    Ok(())
}

fn gray_to_rgb(w: u32, h: u32, src: &[u8], stride: usize) -> RgbImage {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in src.chunks_exact(stride) {
        out.extend_from_slice(&[px[0], px[0], px[0]]);
    }
    RgbImage::from_raw(w, h, out).expect("sized from the source")
}

fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    let dec = PngDecoder::new(Cursor::new(bytes)).map_err(from_image_error)?;
    let (w, h) = dec.dimensions();
    check_size(w, h, max_pixels)?;
    let ct = dec.color_type();
    let total = usize::try_from(dec.total_bytes()).map_err(|_| DecodeError::TooLarge {
        width: w,
        height: h,
        max_pixels,
    })?;
    let mut buf = vec![0u8; total];
    dec.read_image(&mut buf).map_err(from_image_error)?;
    let npx = w as usize * h as usize;
    let u16s = |buf: &[u8]| -> Vec<u16> {
        buf.chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect()
    };
    let rgb = |v: Vec<u8>| RgbImage::from_raw(w, h, v).expect("sized from the header");
    Ok(match ct {
        ColorType::Rgb8 => rgb(buf),
        ColorType::Rgba8 => rgb(buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()),
        ColorType::L8 => gray_to_rgb(w, h, &buf, 1),
        ColorType::La8 => gray_to_rgb(w, h, &buf, 2),
        ColorType::L16 => {
            let v: Vec<u8> = u16s(&buf).iter().map(|&g| g.min(255) as u8).collect();
            gray_to_rgb(w, h, &v, 1)
        }
        ColorType::La16 => {
            let v: Vec<u8> = u16s(&buf)
                .chunks_exact(2)
                .map(|p| (p[0] >> 8) as u8)
                .collect();
            gray_to_rgb(w, h, &v, 1)
        }
        ColorType::Rgb16 | ColorType::Rgba16 => {
            let ch = if ct == ColorType::Rgb16 { 3 } else { 4 };
            let s = u16s(&buf);
            let mut out = Vec::with_capacity(npx * 3);
            for p in s.chunks_exact(ch) {
                out.extend_from_slice(&[(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]);
            }
            rgb(out)
        }
        other => {
            return Err(DecodeError::Unsupported(format!(
                "PNG colour type {other:?}"
            )))
        }
    })
}

// ------------------------------------------------------------------------------------------------
// Geometry

/// torchvision's `Resize(int)` output size: the shorter side becomes `resize`, the longer
/// `int(resize * long / short)` (truncation; Python's true division, correctly rounded like f64's).
pub fn resized_size(orig_w: u32, orig_h: u32, resize: u32) -> (u32, u32) {
    let (short, long) = if orig_w <= orig_h {
        (orig_w, orig_h)
    } else {
        (orig_h, orig_w)
    };
    let new_long = ((f64::from(resize) * f64::from(long)) / f64::from(short.max(1))) as u32;
    if orig_w <= orig_h {
        (resize, new_long)
    } else {
        (new_long, resize)
    }
}

/// torchvision's `CenterCrop` offset on one axis: `round((size - crop) / 2)` (half to even) or, when
/// the image is smaller than the crop, minus the leading zero pad `(crop - size) // 2`.
fn center_offset(size: u32, crop: u32) -> i32 {
    if crop > size {
        -(((crop - size) / 2) as i32)
    } else {
        (f64::from(size - crop) / 2.0).round_ties_even() as i32
    }
}

/// The preprocessing geometry of a `orig_w × orig_h` image.
pub fn crop_frame(orig_w: u32, orig_h: u32, p: &Preprocess) -> CropFrame {
    let (resized_w, resized_h) = resized_size(orig_w, orig_h, p.resize);
    CropFrame {
        orig_w,
        orig_h,
        resized_w,
        resized_h,
        left: center_offset(resized_w, p.crop),
        top: center_offset(resized_h, p.crop),
        crop: p.crop,
    }
}

/// Map one inclusive-corner box of the original image into the crop frame (SPEC §1):
/// `x' = floor(x · w'/W) − left`, `y' = floor(y · h'/H) − top`, then clip to `[0, crop−1]`.
///
/// The floor is taken of the exact rational `x·w'/W` (integer arithmetic), so a corner that lands
/// exactly on an integer is not pushed down by a float product like `255.99999999999997`.
///
/// "No area" rule: the mapped box is the set of crop pixels `x0'..=x1'` × `y0'..=y1'`; it is kept iff
/// its intersection with the crop, `max(x0',0)..=min(x1',crop−1)` (and likewise in y), is non-empty,
/// and the clipped box is that intersection. So a box that maps entirely left of, right of, above or
/// below the crop is dropped (clamping its corners would have collapsed it to a line on the border),
/// while a box that overlaps the crop by a single pixel column or row is kept (inclusive corners:
/// `x0' == x1'` still covers one pixel). A malformed box with `x1 < x0` or `y1 < y0` is dropped.
pub fn map_box(b: BoxXyxy, frame: &CropFrame) -> Option<BoxXyxy> {
    let map = |v: i32, resized: u32, orig: u32, off: i32| -> i64 {
        (i64::from(v) * i64::from(resized)).div_euclid(i64::from(orig.max(1))) - i64::from(off)
    };
    let x0 = map(b.x0, frame.resized_w, frame.orig_w, frame.left);
    let x1 = map(b.x1, frame.resized_w, frame.orig_w, frame.left);
    let y0 = map(b.y0, frame.resized_h, frame.orig_h, frame.top);
    let y1 = map(b.y1, frame.resized_h, frame.orig_h, frame.top);
    let hi = i64::from(frame.crop) - 1;
    let (cx0, cx1) = (x0.max(0), x1.min(hi));
    let (cy0, cy1) = (y0.max(0), y1.min(hi));
    if cx0 > cx1 || cy0 > cy1 {
        return None;
    }
    Some(BoxXyxy::new(cx0 as i32, cy0 as i32, cx1 as i32, cy1 as i32))
}

// ------------------------------------------------------------------------------------------------
// Pillow-exact resampling

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn filter_support(interp: Interpolation) -> f64 {
    match interp {
        Interpolation::Bilinear => 1.0,
        Interpolation::Bicubic => 2.0,
    }
}

#[inline]
fn filter(interp: Interpolation, x: f64) -> f64 {
    let x = x.abs();
    match interp {
        Interpolation::Bilinear => {
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }
        Interpolation::Bicubic => {
            const A: f64 = -0.5;
            if x < 1.0 {
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            } else {
                0.0
            }
        }
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size → out_size` (box = whole
/// input): per output index the first input index, the tap count, and `ksize` fixed-point weights.
struct Coeffs {
    bounds: Vec<(u32, u32)>,
    ksize: usize,
    k: Vec<i32>,
}

impl Coeffs {
    fn new(in_size: u32, out_size: u32, interp: Interpolation) -> Coeffs {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter_support(interp) * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(out_size as usize);
        let mut k = vec![0i32; ksize * out_size as usize];
        let mut w = vec![0f64; ksize];
        for xx in 0..out_size as usize {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; clamped to 0 right after, as in Pillow.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let n = (xmax - xmin).max(0) as usize;
            let mut ww = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                let v = filter(interp, (x as f64 + xmin as f64 - center + 0.5) * ss);
                *wx = v;
                ww += v;
            }
            let row = &mut k[xx * ksize..xx * ksize + ksize];
            for x in 0..n {
                let v = if ww != 0.0 { w[x] / ww } else { w[x] };
                let f = v * f64::from(1u32 << PRECISION_BITS);
                row[x] = if v < 0.0 {
                    (-0.5 + f) as i32
                } else {
                    (0.5 + f) as i32
                };
            }
            bounds.push((xmin as u32, n as u32));
        }
        Coeffs { bounds, ksize, k }
    }

    #[inline]
    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        (
            start as usize,
            &self.k[i * self.ksize..i * self.ksize + n as usize],
        )
    }
}

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resample the RGB8 `src` (`src_w × src_h`) to an `out_w × out_h` image the way
/// `PIL.Image.resize((out_w, out_h), BILINEAR|BICUBIC)` does, but compute only output columns
/// `cols` and rows `rows`; writes `rows.len() × cols.len()` RGB pixels to `out`.
#[allow(clippy::too_many_arguments)]
fn resample_window(
    src: &[u8],
    src_w: u32,
    src_h: u32,
    out_w: u32,
    out_h: u32,
    cols: std::ops::Range<u32>,
    rows: std::ops::Range<u32>,
    interp: Interpolation,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let cw = cols.len();
    let rh = rows.len();
    out.clear();
    out.resize(cw * rh * 3, 0);
    if cw == 0 || rh == 0 {
        return;
    }
    let src_stride = src_w as usize * 3;
    let need_h = out_w != src_w;
    let need_v = out_h != src_h;

    // Source rows the vertical pass reads (all of `rows` when there is no vertical pass).
    let vcoeffs = need_v.then(|| Coeffs::new(src_h, out_h, interp));
    let (sy0, sy1) = match &vcoeffs {
        Some(c) => {
            let first = c.bounds[rows.start as usize].0;
            let (ls, ln) = c.bounds[rows.end as usize - 1];
            (first, ls + ln)
        }
        None => (rows.start, rows.end),
    };

    // Horizontal pass: source rows sy0..sy1, output columns `cols`, into `tmp` (8-bit, clipped).
    let tmp_rows = (sy1 - sy0) as usize;
    tmp.clear();
    tmp.resize(tmp_rows * cw * 3, 0);
    if need_h {
        let hc = Coeffs::new(src_w, out_w, interp);
        let taps: Vec<(usize, &[i32])> = cols.clone().map(|x| hc.taps(x as usize)).collect();
        for (ty, trow) in tmp.chunks_exact_mut(cw * 3).enumerate() {
            let srow = &src[(sy0 as usize + ty) * src_stride..][..src_stride];
            for (o, &(start, k)) in trow.chunks_exact_mut(3).zip(&taps) {
                let (mut r, mut g, mut b) = (
                    1i32 << (PRECISION_BITS - 1),
                    1 << (PRECISION_BITS - 1),
                    1 << (PRECISION_BITS - 1),
                );
                let s = &srow[start * 3..(start + k.len()) * 3];
                for (px, &kx) in s.chunks_exact(3).zip(k) {
                    r += i32::from(px[0]) * kx;
                    g += i32::from(px[1]) * kx;
                    b += i32::from(px[2]) * kx;
                }
                o[0] = clip8(r);
                o[1] = clip8(g);
                o[2] = clip8(b);
            }
        }
    } else {
        for (ty, trow) in tmp.chunks_exact_mut(cw * 3).enumerate() {
            let srow = &src[(sy0 as usize + ty) * src_stride..][..src_stride];
            trow.copy_from_slice(&srow[cols.start as usize * 3..cols.end as usize * 3]);
        }
    }

    // Vertical pass: output rows `rows` from tmp (whose row 0 is source row sy0).
    let tstride = cw * 3;
    match &vcoeffs {
        Some(vc) => {
            let mut acc = vec![0i32; tstride];
            for (oy, orow) in rows.clone().zip(out.chunks_exact_mut(tstride)) {
                let (start, k) = vc.taps(oy as usize);
                acc.fill(1 << (PRECISION_BITS - 1));
                for (j, &ky) in k.iter().enumerate() {
                    let trow = &tmp[(start + j - sy0 as usize) * tstride..][..tstride];
                    for (a, &v) in acc.iter_mut().zip(trow) {
                        *a += i32::from(v) * ky;
                    }
                }
                for (o, &a) in orow.iter_mut().zip(&acc) {
                    *o = clip8(a);
                }
            }
        }
        None => out.copy_from_slice(tmp),
    }
}

/// `PIL.Image.resize((out_w, out_h), BILINEAR|BICUBIC)` on an RGB image, bit for bit.
pub fn resize_rgb8(img: &RgbImage, out_w: u32, out_h: u32, interp: Interpolation) -> RgbImage {
    let (mut tmp, mut out) = (Vec::new(), Vec::new());
    resample_window(
        img.as_raw(),
        img.width(),
        img.height(),
        out_w,
        out_h,
        0..out_w,
        0..out_h,
        interp,
        &mut tmp,
        &mut out,
    );
    RgbImage::from_raw(out_w, out_h, out).expect("sized above")
}

// ------------------------------------------------------------------------------------------------
// Preprocess

/// Reusable preprocessing state for one [`Preprocess`]: the normalisation tables and scratch buffers
/// (keep one per worker and call [`Preprocessor::run`] per image).
#[derive(Clone, Debug)]
pub struct Preprocessor {
    p: Preprocess,
    /// `lut[c][v] = (v as f32 / 255 - mean[c]) / std[c]`, torchvision's float32 op order.
    lut: [[f32; 256]; 3],
    tmp: Vec<u8>,
    window: Vec<u8>,
}

impl Preprocessor {
    pub fn new(p: &Preprocess) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, t) in table.iter_mut().enumerate() {
                *t = (v as f32 / 255.0 - p.mean[c]) / p.std[c];
            }
        }
        Preprocessor {
            p: p.clone(),
            lut,
            tmp: Vec::new(),
            window: Vec::new(),
        }
    }

    pub fn params(&self) -> &Preprocess {
        &self.p
    }

    /// CHW normalised `3 × crop × crop` tensor and the geometry used.
    pub fn run(&mut self, img: &RgbImage) -> (Vec<f32>, CropFrame) {
        let mut out = Vec::new();
        let frame = self.run_into(img, &mut out);
        (out, frame)
    }

    /// As [`Preprocessor::run`], writing into `out` (resized to `3 × crop × crop`).
    pub fn run_into(&mut self, img: &RgbImage, out: &mut Vec<f32>) -> CropFrame {
        let frame = crop_frame(img.width(), img.height(), &self.p);
        let crop = self.p.crop as usize;
        let plane = crop * crop;
        out.clear();
        // Padding (if any) is pixel value 0 before ToTensor/Normalize.
        for c in 0..3 {
            out.extend(std::iter::repeat_n(self.lut[c][0], plane));
        }
        // Resized-image window that falls inside the crop.
        let x0 = frame.left.max(0) as u32;
        let x1 = (i64::from(frame.left) + crop as i64).min(i64::from(frame.resized_w)) as u32;
        let y0 = frame.top.max(0) as u32;
        let y1 = (i64::from(frame.top) + crop as i64).min(i64::from(frame.resized_h)) as u32;
        if x0 >= x1 || y0 >= y1 {
            return frame;
        }
        resample_window(
            img.as_raw(),
            img.width(),
            img.height(),
            frame.resized_w,
            frame.resized_h,
            x0..x1,
            y0..y1,
            self.p.interpolation,
            &mut self.tmp,
            &mut self.window,
        );
        let ww = (x1 - x0) as usize;
        let cx0 = (i64::from(x0) - i64::from(frame.left)) as usize;
        let cy0 = (i64::from(y0) - i64::from(frame.top)) as usize;
        let (r_plane, rest) = out.split_at_mut(plane);
        let (g_plane, b_plane) = rest.split_at_mut(plane);
        let [lr, lg, lb] = &self.lut;
        for (wy, wrow) in self.window.chunks_exact(ww * 3).enumerate() {
            let base = (cy0 + wy) * crop + cx0;
            let r = &mut r_plane[base..base + ww];
            let g = &mut g_plane[base..base + ww];
            let b = &mut b_plane[base..base + ww];
            for (i, px) in wrow.chunks_exact(3).enumerate() {
                r[i] = lr[px[0] as usize];
                g[i] = lg[px[1] as usize];
                b[i] = lb[px[2] as usize];
            }
        }
        frame
    }
}

/// One-shot [`Preprocessor::run`]: torchvision's `Resize → CenterCrop → ToTensor → Normalize` on a
/// PIL RGB image. Returns the CHW tensor (`3 × crop × crop`) and the geometry.
pub fn preprocess(img: &RgbImage, p: &Preprocess) -> (Vec<f32>, CropFrame) {
    Preprocessor::new(p).run(img)
}

/// Decode, preprocess and map the boxes of one sample.
pub fn decode_sample(
    sample: &Sample,
    p: &Preprocess,
    max_pixels: u64,
) -> Result<Image, DecodeError> {
    decode_sample_with(sample, &mut Preprocessor::new(p), max_pixels)
}

/// [`decode_sample`] with a reusable [`Preprocessor`].
pub fn decode_sample_with(
    sample: &Sample,
    pre: &mut Preprocessor,
    max_pixels: u64,
) -> Result<Image, DecodeError> {
    Ok(Decoded::of(sample, max_pixels)?.preprocess(pre))
}

/// A sample decoded to RGB, without its encoded bytes: what every preprocessing of it starts
/// from, so a job whose pairs preprocess differently decodes each JPEG once.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub image_id: String,
    pub shard: String,
    pub label: i32,
    /// Ground-truth boxes in the frame of the decoded image.
    pub boxes: Vec<BoxXyxy>,
    pub rgb: RgbImage,
}

impl Decoded {
    pub fn of(sample: &Sample, max_pixels: u64) -> Result<Decoded, DecodeError> {
        Ok(Decoded {
            rgb: decode_rgb8(&sample.bytes, max_pixels)?,
            image_id: sample.image_id.clone(),
            shard: sample.shard.clone(),
            label: sample.label,
            boxes: sample.boxes.clone(),
        })
    }

    /// Preprocess, and map the boxes into the crop frame.
    pub fn preprocess(&self, pre: &mut Preprocessor) -> Image {
        let (pixels, frame) = pre.run(&self.rgb);
        Image {
            image_id: self.image_id.clone(),
            shard: self.shard.clone(),
            label: self.label,
            boxes: self.boxes.iter().filter_map(|&b| map_box(b, &frame)).collect(),
            pixels,
            crop: frame.crop,
        }
    }
}
