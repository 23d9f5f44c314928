//! Hand-computed checks of `operators::perturb` (no Python): pixel order, the step plan, the
//! deletion/insertion images, the blur kernel, the AUC and the batching driver.

use operators::perturb::*;

const T: [f64; 11] = [
    0.08795814, 0.08889612, 0.09047420, 0.09219112, 0.09348939, 0.09398206, 0.09348939, 0.09219112, 0.09047420,
    0.08889612, 0.08795814,
];

#[test]
fn pixel_order_descends_with_row_major_ties() {
    assert_eq!(pixel_order(&[0.5, 0.9, 0.5, 0.1, 0.9, 0.0]), vec![1, 4, 0, 2, 3, 5]);
    // NaN after everything (even −∞), −0.0 tied with 0.0 by index, as numpy's stable argsort(−cam).
    let cam = [f32::NAN, 0.2, -0.0, 0.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY];
    assert_eq!(pixel_order(&cam), vec![6, 1, 2, 3, 5, 0, 4]);
    assert_eq!(pixel_order(&[]), Vec::<u32>::new());
}

#[test]
fn plan_matches_spec_and_rise() {
    let p = PerturbPlan::new(224, 100);
    assert_eq!((p.step, p.points(), p.rise_steps()), (502, 101, 100));
    assert_eq!([p.replaced_at(0), p.replaced_at(1), p.replaced_at(99), p.replaced_at(100)], [0, 502, 49698, 50176]);
    let p = PerturbPlan::new(4, 3);
    assert_eq!((p.step, p.points(), p.rise_steps()), (6, 4, 3));
    assert_eq!((0..4).map(|i| p.replaced_at(i)).collect::<Vec<_>>(), vec![0, 6, 12, 16]);
    // Where the SPEC and RISE part: 16 pixels in 7 steps of 3 — RISE stops after ceil(16/3) = 6 steps,
    // the SPEC repeats the fully replaced image at its last point.
    let p = PerturbPlan::new(4, 7);
    assert_eq!((p.step, p.rise_steps()), (3, 6));
    assert_eq!((0..8).map(|i| p.replaced_at(i)).collect::<Vec<_>>(), vec![0, 3, 6, 9, 12, 15, 16, 16]);
    // crop 224 with 20 steps (the model test): 2509 per step, 20 steps for RISE too.
    let p = PerturbPlan::new(224, 20);
    assert_eq!((p.step, p.rise_steps(), p.replaced_at(19), p.replaced_at(20)), (2509, 20, 47671, 50176));
}

/// cam with ties: order 10 | 5 6 9 | 15 | 0 1 2 3 4 7 8 11 12 13 14, so with step 6 the replaced sets
/// are {10,5,6,9,15,0}, then +{1,2,3,4,7,8}, then all 16.
const CAM: [f32; 16] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.25];
const SETS: [&[usize]; 4] = [&[], &[0, 5, 6, 9, 10, 15], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15], &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
]];

fn x_tiny() -> Vec<f32> {
    (0..3).flat_map(|c| (0..16).map(move |k| (100 * c + k + 1) as f32)).collect()
}

#[test]
fn deletion_and_insertion_images_by_hand() {
    let plan = PerturbPlan::new(4, 3);
    let x = x_tiny();
    let order = pixel_order(&CAM);
    assert_eq!(order, vec![10, 5, 6, 9, 15, 0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14]);
    let substrate: Vec<f32> = x.iter().map(|v| -v).collect(); // any substrate: insertion must not care

    let mut del = Vec::new();
    fill_deletion(&x, &order, &plan, 0..4, &mut del);
    let mut ins = vec![7.0f32; 5]; // appends: what was there stays
    fill_insertion(&x, &substrate, &order, &plan, 0..4, &mut ins);
    assert_eq!(&ins[..5], &[7.0; 5]);
    let ins = &ins[5..];
    assert_eq!((del.len(), ins.len()), (4 * 48, 4 * 48));
    for (i, set) in SETS.iter().enumerate() {
        for c in 0..3 {
            for k in 0..16 {
                let v = (100 * c + k + 1) as f32;
                let (want_del, want_ins) = if set.contains(&k) { (0.0, v) } else { (v, -v) };
                assert_eq!(del[i * 48 + c * 16 + k], want_del, "deletion point {i} channel {c} pixel {k}");
                assert_eq!(ins[i * 48 + c * 16 + k], want_ins, "insertion point {i} channel {c} pixel {k}");
            }
        }
    }
    // A sub-range gives the same images as the matching slice of the full range.
    let mut mid = Vec::new();
    fill_insertion(&x, &substrate, &order, &plan, 1..3, &mut mid);
    assert_eq!(&mid[..], &ins[48..144]);
    let mut none = Vec::new();
    fill_deletion(&x, &order, &plan, 2..2, &mut none);
    assert!(none.is_empty());
}

#[test]
fn blur_of_delta_is_kernel_outer_product_with_zero_padding() {
    let crop = 15;
    let n = crop * crop;
    // Delta in the middle of channel 1: the full 11×11 kernel, nothing else anywhere.
    let mut x = vec![0.0f32; 3 * n];
    x[n + 7 * crop + 7] = 1.0;
    let b = blur(&x, crop);
    for c in 0..3 {
        for y in 0..crop {
            for xx in 0..crop {
                let (dy, dx) = (y as i64 - 7 + 5, xx as i64 - 7 + 5);
                let inside = c == 1 && (0..11).contains(&dy) && (0..11).contains(&dx);
                let want = if inside { T[dy as usize] * T[dx as usize] } else { 0.0 };
                let got = b[c * n + y * crop + xx] as f64;
                // f32 taps and product: a few ulps of relative error; outside the kernel exactly 0.
                assert!((got - want).abs() <= 3e-7 * want, "c {c} ({y},{xx}): {got} vs {want}");
            }
        }
    }
    // Delta in the corner of channel 2: only the kernel's lower-right quarter lands inside.
    let mut x = vec![0.0f32; 3 * n];
    x[2 * n] = 1.0;
    let b = blur(&x, crop);
    for y in 0..crop {
        for xx in 0..crop {
            let want = if y <= 5 && xx <= 5 { T[y + 5] * T[xx + 5] } else { 0.0 };
            assert!((b[2 * n + y * crop + xx] as f64 - want).abs() <= 3e-7 * want, "corner ({y},{xx})");
        }
    }
    let mass: f64 = b.iter().map(|&v| v as f64).sum();
    let half: f64 = T[5..].iter().sum();
    assert!((mass - half * half).abs() < 1e-7, "corner mass {mass} vs {}", half * half); // ≈ 0.2987, padding adds 0
    // A constant image keeps its value where the kernel fits and fades at the border (zero padding).
    let b = blur(&vec![2.0f32; 3 * n], crop);
    let full: f64 = T.iter().sum();
    assert!((b[7 * crop + 7] as f64 - 2.0 * full * full).abs() < 2e-6);
    assert!((b[0] as f64 - 2.0 * half * half).abs() < 1e-6, "corner of constant: {}", b[0]);
}

#[test]
fn auc_trapezoid_by_hand() {
    let linear: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
    assert!((auc(&linear, 100) - 0.5).abs() < 1e-7);
    assert!((auc(&[1.0; 101], 100) - 1.0).abs() < 1e-7);
    assert_eq!(auc(&[0.0, 1.0, 0.0], 2), 0.5);
    assert_eq!(auc(&[1.0, 0.5, 0.25], 2), 0.5625); // (1.75 − 0.5 − 0.125) / 2
}

/// The driver on a 4×4 image of ones with a fake model whose logits are `[mean(image), 0]`, so the
/// score is σ(mean). Deletion means are 1 − replaced/16; insertion means mix 1 (restored) with
/// blur(ones) = S(y)·S(x), S = the 4 taps covering the crop from row y, written out from the taps.
#[test]
fn causal_curves_batches_and_scores_by_hand() {
    let crop = 4;
    let x = vec![1.0f32; 48];
    let sig = |m: f64| 1.0 / (1.0 + (-m).exp());
    let s = |y: usize| -> f64 { (0..4).map(|j| T[j + 5 - y]).sum() };
    let want_del: Vec<f64> = [0.0, 6.0, 12.0, 16.0].iter().map(|r| sig(1.0 - r / 16.0)).collect();
    let want_ins: Vec<f64> = SETS
        .iter()
        .map(|set| sig((0..16).map(|k| if set.contains(&k) { 1.0 } else { s(k / 4) * s(k % 4) }).sum::<f64>() / 16.0))
        .collect();
    for batch in [1, 3, 5, 8, 100] {
        let mut calls = 0;
        let r = causal_curves(&x, &CAM, crop, 3, batch, 0, KnownScores::NONE, |px, n| {
            calls += 1;
            assert_eq!(px.len(), n * 48);
            Ok(px.chunks_exact(48).flat_map(|img| [img.iter().sum::<f32>() / 48.0, 0.0]).collect())
        })
        .unwrap();
        assert_eq!(calls, 8usize.div_ceil(batch), "batch {batch}");
        for (got, want) in r.deletion.iter().zip(&want_del).chain(r.insertion.iter().zip(&want_ins)) {
            assert!((*got as f64 - want).abs() < 1e-6, "batch {batch}: {got} vs {want}");
        }
        let trap = |v: &[f64]| (v.iter().sum::<f64>() - v[0] / 2.0 - v[3] / 2.0) / 3.0;
        assert!((r.deletion_auc as f64 - trap(&want_del)).abs() < 1e-6);
        assert!((r.insertion_auc as f64 - trap(&want_ins)).abs() < 1e-6);
    }
    // Errors come back as errors, not panics.
    assert!(causal_curves(&x, &CAM, crop, 3, 0, 0, KnownScores::NONE, |_, _| Ok(vec![])).is_err());
    assert!(causal_curves(&x, &CAM, crop, 3, 4, 0, KnownScores::NONE, |_, _| Ok(vec![0.0; 3])).is_err()); // 3 logits for 4 images
    assert!(causal_curves(&x, &CAM, crop, 3, 4, 2, KnownScores::NONE, |_, n| Ok(vec![0.0; 2 * n])).is_err()); // class 2 of 2
    assert!(causal_curves(&x, &CAM, crop, 3, 4, 0, KnownScores::NONE, |_, _| Err("boom".into())).unwrap_err().contains("boom"));
    assert!(causal_curves(&x[..47], &CAM, crop, 3, 4, 0, KnownScores::NONE, |_, n| Ok(vec![0.0; 2 * n])).is_err());
}

/// With the unperturbed and the all-zero image's scores given, the driver runs every other point,
/// no more, and returns the same curves as when it runs them all. The fake model's logits depend on
/// every pixel and channel (weighted sums), so a point put in the wrong place shows. Covers steps
/// that divide the image evenly and steps that do not (crop 4, steps 7: points 6 and 7 both replace
/// all 16 pixels), batch sizes that split the runs anywhere, and each score given alone.
#[test]
fn known_scores_skip_exactly_their_forwards() {
    let crop = 4;
    let len = 3 * crop * crop;
    let x: Vec<f32> = (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
    let model = |px: &[f32], n: usize| -> Vec<f32> {
        assert_eq!(px.len(), n * len);
        px.chunks_exact(len)
            .flat_map(|img| {
                let a: f32 = img.iter().enumerate().map(|(i, v)| v * (1.0 + (i % 5) as f32 / 4.0)).sum();
                let b: f32 = img.iter().enumerate().map(|(i, v)| v * ((i % 3) as f32 - 1.0)).sum();
                [a / 10.0, b / 10.0, 0.3]
            })
            .collect()
    };
    let score = |img: &[f32], class: usize| operators::infer::softmax(&model(img, 1))[class];
    for (steps, target) in [(3, 0), (7, 1), (16, 2), (1, 0)] {
        let points = steps + 1;
        let full_points = (0..points).filter(|&i| PerturbPlan::new(crop, steps).replaced_at(i) == crop * crop).count();
        let all = causal_curves(&x, &CAM, crop, steps, 5, target, KnownScores::NONE, |px, n| Ok(model(px, n))).unwrap();
        let unperturbed = score(&x, target);
        let blank = score(&vec![0.0; len], target);
        let cases = [
            (KnownScores { unperturbed: Some(unperturbed), blank: Some(blank) }, 1 + 2 * full_points),
            (KnownScores { unperturbed: Some(unperturbed), blank: None }, 1 + full_points),
            (KnownScores { unperturbed: None, blank: Some(blank) }, full_points),
        ];
        for (known, skipped) in cases {
            for batch in [1, 2, 3, 7, 64] {
                let mut ran = 0;
                let got = causal_curves(&x, &CAM, crop, steps, batch, target, known, |px, n| {
                    ran += n;
                    Ok(model(px, n))
                })
                .unwrap();
                let what = format!("steps {steps}, batch {batch}, {known:?}");
                assert_eq!(ran, 2 * points - skipped, "{what}: forwards run");
                for (g, w) in got.deletion.iter().zip(&all.deletion).chain(got.insertion.iter().zip(&all.insertion)) {
                    assert!((g - w).abs() <= 1e-6, "{what}: {:?} vs {:?}", got, all);
                }
                assert!((got.deletion_auc - all.deletion_auc).abs() <= 1e-6, "{what}");
                assert!((got.insertion_auc - all.insertion_auc).abs() <= 1e-6, "{what}");
            }
        }
    }
}
