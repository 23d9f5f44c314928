//! Decode against Pillow's `Image.open(..).convert('RGB')` on synthetic files made by Pillow in
//! `tests/reference/preprocess_torchvision.py fixtures`: baseline/progressive/4:4:4 JPEG, grayscale
//! JPEG, CMYK JPEG (Adobe, inverted), PNGs (RGB, RGBA, palette, gray) and a real 10000x10000 JPEG.

mod decode_common;

use decode_common::*;
use operators::decode::*;

#[test]
fn decode_matches_pillow_on_fixtures() {
    let tmp = TempDir::new("decode-fixtures");
    run_reference(&["fixtures", "--out", tmp.path().to_str().unwrap()]);
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("fixtures.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for e in list.as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        seen.push(name.to_string());
        let bytes = std::fs::read(tmp.path().join(format!("{name}.bin"))).unwrap();
        let (w, h) = (
            e["w"].as_u64().unwrap() as u32,
            e["h"].as_u64().unwrap() as u32,
        );
        if e["header_only"].as_bool() == Some(true) {
            // The 10000x10000 JPEG: rejected from its header with the default limit.
            let got = decode_rgb8(&bytes, DEFAULT_MAX_PIXELS);
            println!(
                "{name}: {} bytes -> {:?}",
                bytes.len(),
                got.as_ref().map(|i| i.dimensions())
            );
            if got
                != Err(DecodeError::TooLarge {
                    width: w,
                    height: h,
                    max_pixels: DEFAULT_MAX_PIXELS,
                })
            {
                failures.push(format!(
                    "{name}: expected TooLarge, got {:?}",
                    got.map(|i| i.dimensions())
                ));
            }
            continue;
        }
        let want = std::fs::read(tmp.path().join(format!("{name}.rgb"))).unwrap();
        let got = match decode_rgb8(&bytes, DEFAULT_MAX_PIXELS) {
            Ok(i) => i,
            Err(err) => {
                failures.push(format!("{name}: {err}"));
                continue;
            }
        };
        assert_eq!(got.dimensions(), (w, h), "{name}");
        let (mut sum, mut max, mut nz) = (0u64, 0u8, 0usize);
        for (a, b) in got.as_raw().iter().zip(&want) {
            let d = a.abs_diff(*b);
            sum += u64::from(d);
            max = max.max(d);
            nz += (d != 0) as usize;
        }
        let mean = sum as f64 / want.len() as f64;
        println!(
            "{name} ({}): mean |d| {mean:.4} levels, max {max}, {:.2}% of values differ",
            e["mode"].as_str().unwrap(),
            100.0 * nz as f64 / want.len() as f64
        );
        // PNG is lossless: exact. JPEG: zune-jpeg vs libjpeg-turbo differ in IDCT/upsampling rounding
        // (and CMYK in the ÷255 rounding) by a level or two at a few pixels, never more.
        let (max_ok, mean_ok) = if name.starts_with("png") {
            (0, 0.0)
        } else {
            (4, 0.5)
        };
        if max > max_ok || mean > mean_ok {
            failures.push(format!(
                "{name}: mean {mean:.4} (<= {mean_ok}), max {max} (<= {max_ok})"
            ));
        }
    }
    for must in ["gray", "cmyk", "png_rgb", "huge_gray", "rgb_progressive"] {
        assert!(seen.iter().any(|s| s == must), "fixture {must} missing");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
