//! Unit tests of `operators::decode` that need no Python: geometry against hand-computed torchvision
//! values, box mapping, preprocessing on synthetic images, and decode error paths.

mod common;

use image::{ImageEncoder, RgbImage};
use operators::decode::*;
use types::{BoxXyxy, Interpolation, Preprocess};

fn imagenet(interp: Interpolation) -> Preprocess {
    Preprocess {
        resize: 256,
        crop: 224,
        interpolation: interp,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    }
}

fn frame(w: u32, h: u32) -> CropFrame {
    crop_frame(w, h, &imagenet(Interpolation::Bilinear))
}

#[test]
fn crop_frame_matches_torchvision_by_hand() {
    // 500x375: 256*500/375 = 341.33 -> 341; left = round(117/2 = 58.5) = 58 (half to even); top = 16.
    assert_eq!(
        frame(500, 375),
        CropFrame {
            orig_w: 500,
            orig_h: 375,
            resized_w: 341,
            resized_h: 256,
            left: 58,
            top: 16,
            crop: 224
        }
    );
    // Portrait: axes swap.
    let f = frame(375, 500);
    assert_eq!(
        (f.resized_w, f.resized_h, f.left, f.top),
        (256, 341, 16, 58)
    );
    // Truncation, not rounding: 256*500/333 = 384.38 -> 384; 256*333/500 = 170.5 never arises here.
    assert_eq!(resized_size(500, 333, 256), (384, 256));
    assert_eq!(resized_size(333, 500, 256), (256, 384));
    // 256*667/500 = 341.504 -> 341 (truncates even above .5).
    assert_eq!(resized_size(667, 500, 256), (341, 256));
    // Square.
    assert_eq!(
        frame(300, 300),
        CropFrame {
            orig_w: 300,
            orig_h: 300,
            resized_w: 256,
            resized_h: 256,
            left: 16,
            top: 16,
            crop: 224
        }
    );
    // round(59.5) = 60 (half to even goes up here): 343 - 224 = 119.
    let f = frame(343, 256);
    assert_eq!((f.resized_w, f.left), (343, 60));
    // round(58.5) = 58, round(57.5) = 58.
    assert_eq!(frame(341, 256).left, 58);
    assert_eq!(frame(339, 256).left, 58);
    assert_eq!(frame(340, 256).left, 58);
}

#[test]
fn crop_frame_pads_like_torchvision_center_crop() {
    let p = Preprocess {
        resize: 100,
        crop: 224,
        ..imagenet(Interpolation::Bilinear)
    };
    // 200x100 stays 200x100; both axes smaller than 224: pads (224-200)//2 = 12 left, (224-100)//2 = 62 top.
    let f = crop_frame(200, 100, &p);
    assert_eq!(
        (f.resized_w, f.resized_h, f.left, f.top),
        (200, 100, -12, -62)
    );
    // Odd shortfall: (224-223)//2 = 0 on the leading side (the extra pad column goes right).
    let p = Preprocess {
        resize: 223,
        crop: 224,
        ..p
    };
    let f = crop_frame(300, 223, &p);
    assert_eq!((f.resized_w, f.resized_h, f.top), (300, 223, 0));
    assert_eq!(f.left, 38); // round((300-224)/2) = 38: the non-padded axis crops as usual
}

#[test]
fn map_box_hand_cases() {
    let f = frame(500, 375); // sx = 341/500, sy = 256/375, left 58, top 16
                             // Inside: floor(68.2)-58, floor(34.13)-16, floor(272.8)-58, floor(204.8)-16.
    assert_eq!(
        map_box(BoxXyxy::new(100, 50, 400, 300), &f),
        Some(BoxXyxy::new(10, 18, 214, 188))
    );
    // Whole image: clipped to the crop.
    assert_eq!(
        map_box(BoxXyxy::new(0, 0, 499, 374), &f),
        Some(BoxXyxy::new(0, 0, 223, 223))
    );
    // Partially outside on the left: x0 clipped, the rest kept.
    assert_eq!(
        map_box(BoxXyxy::new(0, 50, 200, 300), &f),
        Some(BoxXyxy::new(0, 18, 78, 188))
    );
    // Entirely left of the crop (x1' = floor(54.56) - 58 = -4): dropped, not collapsed onto x = 0.
    assert_eq!(map_box(BoxXyxy::new(0, 0, 80, 374), &f), None);
    // Entirely right (x0' = floor(490*0.682 = 334.18) - 58 = 276 > 223): dropped.
    assert_eq!(map_box(BoxXyxy::new(490, 0, 499, 374), &f), None);
    // Entirely below (y0' = floor(370*256/375 = 252.6) - 16 = 236): dropped.
    assert_eq!(map_box(BoxXyxy::new(0, 370, 499, 374), &f), None);
    // Overlapping the crop by exactly one pixel column (x1' = floor(86*0.682 = 58.65) - 58 = 0): kept,
    // inclusive corners x0' == x1' == 0 still cover one column.
    assert_eq!(
        map_box(BoxXyxy::new(0, 50, 86, 300), &f),
        Some(BoxXyxy::new(0, 18, 0, 188))
    );
    // ...and one column further left it no longer overlaps.
    assert_eq!(map_box(BoxXyxy::new(0, 50, 85, 300), &f), None);
    // A one-pixel box inside stays a one-pixel box.
    assert_eq!(
        map_box(BoxXyxy::new(250, 200, 250, 200), &f),
        Some(BoxXyxy::new(112, 120, 112, 120))
    );
    // Malformed (x1 < x0): dropped.
    assert_eq!(map_box(BoxXyxy::new(300, 50, 200, 300), &f), None);
    // Exact rational: 343 -> 343 (no resize) keeps integer corners exact.
    let g = frame(343, 256);
    assert_eq!(
        map_box(BoxXyxy::new(60, 16, 283, 239), &g),
        Some(BoxXyxy::new(0, 0, 223, 223))
    );
}

#[test]
fn map_box_with_padding_shifts_by_the_pad() {
    let p = Preprocess {
        resize: 100,
        crop: 224,
        ..imagenet(Interpolation::Bilinear)
    };
    let f = crop_frame(200, 100, &p); // left -12, top -62, no scaling
    assert_eq!(
        map_box(BoxXyxy::new(0, 0, 199, 99), &f),
        Some(BoxXyxy::new(12, 62, 211, 161))
    );
}

fn norm(v: u8, c: usize, p: &Preprocess) -> f32 {
    (v as f32 / 255.0 - p.mean[c]) / p.std[c]
}

fn synthetic(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 + y) as u8, (y * 3) as u8, (x ^ y) as u8])
    })
}

#[test]
fn preprocess_identity_resize_is_plain_crop_and_normalise() {
    for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let p = imagenet(interp);
        let img = synthetic(256, 256);
        let (t, f) = preprocess(&img, &p);
        assert_eq!(
            (f.left, f.top, f.resized_w, f.resized_h),
            (16, 16, 256, 256)
        );
        assert_eq!(t.len(), 3 * 224 * 224);
        for c in 0..3 {
            for y in 0..224 {
                for x in 0..224 {
                    let v = img.get_pixel(x + 16, y + 16).0[c];
                    assert_eq!(t[c * 224 * 224 + (y * 224 + x) as usize], norm(v, c, &p));
                }
            }
        }
    }
}

#[test]
fn preprocess_pads_with_normalised_zero() {
    let p = Preprocess {
        resize: 50,
        crop: 64,
        ..imagenet(Interpolation::Bilinear)
    };
    let img = synthetic(100, 50); // no resize; left = round(36/2) = 18, top = -(14/2) = -7
    let (t, f) = preprocess(&img, &p);
    assert_eq!((f.left, f.top), (18, -7));
    for c in 0..3 {
        for y in 0..64u32 {
            for x in 0..64u32 {
                let got = t[c * 64 * 64 + (y * 64 + x) as usize];
                let sy = y as i32 - 7;
                let want = if (0..50).contains(&sy) {
                    norm(img.get_pixel(x + 18, sy as u32).0[c], c, &p)
                } else {
                    norm(0, c, &p)
                };
                assert_eq!(got, want, "c{c} y{y} x{x}");
            }
        }
    }
}

#[test]
fn resize_keeps_flat_images_flat_and_window_equals_full() {
    for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let flat = RgbImage::from_pixel(123, 77, image::Rgb([0, 128, 255]));
        let r = resize_rgb8(&flat, 40, 300, interp);
        assert!(r.pixels().all(|p| p.0 == [0, 128, 255]));
        // preprocess computes only the crop window: it must equal resizing fully, then cropping.
        let img = synthetic(500, 375);
        let p = imagenet(interp);
        let (t, f) = preprocess(&img, &p);
        let full = resize_rgb8(&img, f.resized_w, f.resized_h, interp);
        for c in 0..3 {
            for y in 0..224u32 {
                for x in 0..224u32 {
                    let v = full.get_pixel(x + f.left as u32, y + f.top as u32).0[c];
                    assert_eq!(t[c * 224 * 224 + (y * 224 + x) as usize], norm(v, c, &p));
                }
            }
        }
    }
}

fn a_sample_jpeg() -> Vec<u8> {
    std::fs::read(&common::sample_images()[0]).unwrap()
}

#[test]
fn decodes_a_real_jpeg() {
    let b = a_sample_jpeg();
    let (w, h) = image_dimensions(&b).unwrap();
    let img = decode_rgb8(&b, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(img.dimensions(), (w, h));
    // Exactly at the limit decodes; one pixel under is rejected.
    let n = u64::from(w) * u64::from(h);
    assert!(decode_rgb8(&b, n).is_ok());
    assert_eq!(
        decode_rgb8(&b, n - 1),
        Err(DecodeError::TooLarge {
            width: w,
            height: h,
            max_pixels: n - 1
        })
    );
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let b = a_sample_jpeg();
    for cut in [b.len() / 2, b.len() - 2, 600, 100, 3] {
        match decode_rgb8(&b[..cut], DEFAULT_MAX_PIXELS) {
            Err(DecodeError::Corrupt(_)) => {}
            other => panic!(
                "cut at {cut}: expected Corrupt, got {:?}",
                other.map(|i| i.dimensions())
            ),
        }
    }
}

#[test]
fn garbage_is_an_error() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let rnd: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert!(matches!(
        decode_rgb8(&rnd, DEFAULT_MAX_PIXELS),
        Err(DecodeError::Corrupt(_))
    ));
    assert!(matches!(
        decode_rgb8(&[], DEFAULT_MAX_PIXELS),
        Err(DecodeError::Corrupt(_))
    ));
    // JPEG magic followed by garbage: still an error, never a panic.
    let mut j = vec![0xFF, 0xD8, 0xFF];
    j.extend_from_slice(&rnd);
    assert!(decode_rgb8(&j, DEFAULT_MAX_PIXELS).is_err());
    // PNG signature followed by garbage.
    let mut p = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    p.extend_from_slice(&rnd);
    assert!(decode_rgb8(&p, DEFAULT_MAX_PIXELS).is_err());
    // Flipping bytes inside the scan of a real file must not panic (it may or may not decode).
    let mut b = a_sample_jpeg();
    let n = b.len();
    for i in (n / 3..n - 2).step_by(97) {
        b[i] ^= 0x5A;
    }
    let _ = decode_rgb8(&b, DEFAULT_MAX_PIXELS);
    assert!(matches!(
        decode_rgb8(b"GIF89a....", DEFAULT_MAX_PIXELS),
        Err(DecodeError::Unsupported(_))
    ));
}

fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

#[test]
fn png_content_decodes_whatever_the_name() {
    let img = synthetic(37, 23);
    let b = png_bytes(&img);
    assert_eq!(sniff_format(&b), Ok(SniffedFormat::Png));
    assert_eq!(decode_rgb8(&b, DEFAULT_MAX_PIXELS).unwrap(), img);
    // Truncated PNG.
    assert!(matches!(
        decode_rgb8(&b[..b.len() / 2], DEFAULT_MAX_PIXELS),
        Err(DecodeError::Corrupt(_))
    ));
}

#[test]
fn huge_headers_are_rejected_before_decoding() {
    let j = common::patch_jpeg_dims(&a_sample_jpeg(), 10_000, 10_000);
    assert_eq!(
        decode_rgb8(&j, DEFAULT_MAX_PIXELS),
        Err(DecodeError::TooLarge {
            width: 10_000,
            height: 10_000,
            max_pixels: DEFAULT_MAX_PIXELS
        })
    );
    let p = common::patch_png_dims(&png_bytes(&synthetic(8, 8)), 10_000, 10_000);
    assert_eq!(
        decode_rgb8(&p, DEFAULT_MAX_PIXELS),
        Err(DecodeError::TooLarge {
            width: 10_000,
            height: 10_000,
            max_pixels: DEFAULT_MAX_PIXELS
        })
    );
}

#[test]
fn decode_sample_maps_boxes_and_drops_empty_ones() {
    let b = a_sample_jpeg();
    let (w, h) = image_dimensions(&b).unwrap();
    let s = types::Sample {
        image_id: "x".into(),
        shard: "s".into(),
        label: 3,
        boxes: vec![
            BoxXyxy::new(0, 0, w as i32 - 1, h as i32 - 1),
            BoxXyxy::new(0, 0, 1, 1),
        ],
        bytes: b,
    };
    let p = imagenet(Interpolation::Bilinear);
    let im = decode_sample(&s, &p, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(im.crop, 224);
    assert_eq!(im.pixels.len(), 3 * 224 * 224);
    assert_eq!(im.boxes, vec![BoxXyxy::new(0, 0, 223, 223)]); // the corner box falls outside the crop
    assert_eq!(im.label, 3);
}

/// A 1×1 image is valid input (ImageNet has none, but nothing forbids it): it scales up to 256×256
/// and every crop pixel is that one colour, normalised. Its only box, the pixel itself
/// (0,0,0,0 inclusive), maps to resized pixel 0, i.e. crop pixel −16 on both axes, and is dropped
/// (SPEC §1 maps corners, not pixel extents).
#[test]
fn one_pixel_image_fills_the_crop_with_its_colour() {
    let img = RgbImage::from_pixel(1, 1, image::Rgb([200, 100, 30]));
    for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
        let p = imagenet(interp);
        let s = types::Sample {
            image_id: "one".into(),
            shard: "s".into(),
            label: 0,
            boxes: vec![BoxXyxy::new(0, 0, 0, 0)],
            bytes: png_bytes(&img),
        };
        let im = decode_sample(&s, &p, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(frame(1, 1), CropFrame { orig_w: 1, orig_h: 1, resized_w: 256, resized_h: 256, left: 16, top: 16, crop: 224 });
        assert_eq!(im.pixels.len(), 3 * 224 * 224);
        for (c, v) in [200u8, 100, 30].into_iter().enumerate() {
            let plane = &im.pixels[c * 224 * 224..(c + 1) * 224 * 224];
            assert!(plane.iter().all(|&x| x == norm(v, c, &p)), "{interp:?} channel {c}");
        }
        assert_eq!(im.boxes, vec![]);
    }
}
