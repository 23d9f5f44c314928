//! Decode against Pillow's `Image.open(..).convert('RGB')` on synthetic files made by Pillow in
//! `tests/reference/preprocess_torchvision.py fixtures`: baseline 4:2:0/4:2:2/4:4:4 JPEGs (odd sizes,
//! restart markers), progressive, grayscale, CMYK (Adobe inverted, and without the Adobe marker),
//! PNGs (RGB, RGBA, palette, gray) and a real 10000x10000 JPEG; plus a YCCK JPEG (which Pillow cannot
//! write) made here with mozjpeg and converted by Pillow through the script's `convert`. All exact.

mod common;

use common::*;
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
        // PNG is lossless and JPEG goes through libjpeg-turbo's own decoder, as in Pillow: exact.
        if max > 0 {
            failures.push(format!("{name}: not bit-exact (mean {mean:.4}, max {max})"));
        }
    }
    for must in [
        "gray",
        "gray_progressive_odd",
        "cmyk",
        "cmyk_no_adobe",
        "cmyk_progressive",
        "rgb_444",
        "rgb_422_odd",
        "rgb_420_odd",
        "rgb_restart",
        "png_rgb",
        "huge_gray",
        "rgb_progressive",
    ] {
        assert!(seen.iter().any(|s| s == must), "fixture {must} missing");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Adobe YCCK (APP14 transform 2): libjpeg converts YCC→RGB and inverts to CMYK; Pillow then reads it
/// as inverted CMYK like any 4-component JPEG. Encoded here (Pillow writes no YCCK), decoded by both.
#[test]
fn ycck_jpeg_matches_pillow() {
    let (w, h) = (53usize, 37usize);
    let mut cmyk = Vec::with_capacity(w * h * 4);
    let mut x = 0x9E37_79B9u32;
    for y in 0..h {
        for xx in 0..w {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x % 31) as usize;
            cmyk.extend_from_slice(&[
                (xx * 4 + n) as u8,
                (y * 6 + n) as u8,
                ((xx + y) * 3) as u8,
                (200 - (xx + y) - n) as u8,
            ]);
        }
    }
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    c.set_size(w, h);
    c.set_color_space(mozjpeg::ColorSpace::JCS_YCCK);
    c.set_quality(90.0);
    let mut c = c.start_compress(Vec::new()).unwrap();
    c.write_scanlines(&cmyk).unwrap();
    let bytes = c.finish().unwrap();
    assert!(
        bytes.windows(2).any(|p| p == [0xFF, 0xEE]),
        "no Adobe APP14 marker"
    );

    let tmp = TempDir::new("decode-ycck");
    let file = tmp.path().join("ycck.jpg");
    std::fs::write(&file, &bytes).unwrap();
    run_reference(&["convert", file.to_str().unwrap()]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("ycck.jpg.json")).unwrap()).unwrap();
    assert_eq!(meta["mode"], "CMYK");
    let want = std::fs::read(tmp.path().join("ycck.jpg.rgb")).unwrap();
    let got = decode_rgb8(&bytes, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(got.dimensions(), (w as u32, h as u32));
    let differ = got
        .as_raw()
        .iter()
        .zip(&want)
        .filter(|(a, b)| a != b)
        .count();
    println!("ycck: {differ} of {} values differ", want.len());
    assert_eq!(differ, 0, "YCCK decode differs from Pillow");
}
