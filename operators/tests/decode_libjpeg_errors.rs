//! libjpeg's fatal errors come back as `DecodeError`s, never as a crash, an abort or a message on
//! stderr: the mozjpeg crate unwinds out of libjpeg's `error_exit` with `resume_unwind`, which does
//! not run the panic hook, and `decode_rgb8` catches it. A counting panic hook (this file holds a
//! single test, so the hook sees only this test's thread) checks that nothing reaches it while
//! damaged headers and scans are decoded.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use operators::decode::*;

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn damaged_jpegs_are_errors_and_print_nothing() {
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let real = std::fs::read(&common::sample_images()[0]).unwrap();
    let sos = real
        .windows(2)
        .position(|p| p == [0xFF, 0xDA])
        .expect("SOS marker");

    // Every header byte (up to and including the SOS segment) XOR-ed in turn: each result is either
    // a decoded image or an error; count the kinds.
    let (mut ok, mut corrupt, mut unsupported, mut too_large) = (0, 0, 0, 0);
    let mut libjpeg_msgs = std::collections::BTreeSet::new();
    for i in 2..(sos + 14).min(real.len()) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut b = real.clone();
            b[i] ^= flip;
            match decode_rgb8(&b, DEFAULT_MAX_PIXELS) {
                Ok(img) => {
                    assert!(img.width() > 0 && img.height() > 0);
                    ok += 1
                }
                Err(DecodeError::Corrupt(m)) => {
                    if m.starts_with("JPEG: ") && !m.contains("truncated") {
                        libjpeg_msgs.insert(m);
                    }
                    corrupt += 1
                }
                Err(DecodeError::Unsupported(m)) => {
                    libjpeg_msgs.insert(m);
                    unsupported += 1
                }
                Err(DecodeError::TooLarge { .. }) => too_large += 1,
            }
        }
    }
    println!(
        "header flips: {ok} decoded, {corrupt} corrupt, {unsupported} unsupported, {too_large} too large"
    );
    for m in libjpeg_msgs.iter().take(12) {
        println!("  {m}");
    }
    assert!(corrupt > 0, "no damaged header was rejected");
    assert!(
        libjpeg_msgs.iter().any(|m| m.contains("JPEG")),
        "libjpeg's own errors never surfaced"
    );

    // A damaged Huffman table: libjpeg raises "Bogus Huffman table definition" (fatal).
    let dht = real
        .windows(2)
        .position(|p| p == [0xFF, 0xC4])
        .expect("DHT marker");
    let mut b = real.clone();
    for v in &mut b[dht + 5..dht + 5 + 16] {
        *v = 0xFF; // code counts summing far past 256
    }
    let r = decode_rgb8(&b, DEFAULT_MAX_PIXELS);
    println!("bogus DHT: {:?}", r.as_ref().map(|i| i.dimensions()));
    assert!(matches!(r, Err(DecodeError::Corrupt(_))), "{r:?}");

    // image_dimensions goes through the same guard.
    assert!(image_dimensions(&b).is_err());
    assert_eq!(
        image_dimensions(&real).unwrap(),
        decode_rgb8(&real, DEFAULT_MAX_PIXELS).unwrap().dimensions()
    );

    let _ = std::panic::take_hook();
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "a panic reached the panic hook (it would print to stderr)"
    );
}
