//! Pair comparison (SPEC §4): how far the quantized model's CAM is from the float model's, on the
//! 8-bit grey levels a viewer would see.

use serde::{Deserialize, Serialize};

use crate::eigencam::{cam_full, cam_lo};

/// `g = round(255 · cam)` as grey levels. The product is taken in f32 (what numpy does for a
/// float32 map) and rounded half-to-even (`np.round`); values outside [0, 1] saturate.
pub fn to_levels_round(cam: &[f32]) -> Vec<u8> {
    cam.iter().map(|&x| (255.0f32 * x).round_ties_even().clamp(0.0, 255.0) as u8).collect()
}

/// Root-mean-square difference of two grey-level images of the same size.
pub fn rmse_levels(a: &[u8], b: &[u8]) -> f32 {
    assert_eq!(a.len(), b.len(), "rmse of maps of different sizes ({} vs {})", a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    // Integer sum of squares: exact, then one rounding.
    let ss: u64 = a.iter().zip(b).map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64).sum();
    (ss as f64 / a.len() as f64).sqrt() as f32
}

/// `rmse = sqrt(mean((g_b − g_a)²))` with `g = round(255 · cam)` (the crop×crop maps).
pub fn rmse(cam_a: &[f32], cam_b: &[f32]) -> f32 {
    rmse_levels(&to_levels_round(cam_a), &to_levels_round(cam_b))
}

/// The crop-frame CAM recomputed from `−p` (steps 4–5 of §3 with the sign reversed): what the
/// map would have been had the sign policy chosen the other way.
pub fn flipped_cam(p: &[f32], h: usize, w: usize, crop: usize) -> Vec<f32> {
    let neg: Vec<f32> = p.iter().map(|&x| -x).collect();
    cam_full(&cam_lo(&neg), h, w, crop)
}

/// Both RMSE figures of one (float, quantized) pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRmse {
    pub rmse: f32,
    /// RMSE against the quantized CAM rebuilt from `−p_q`: isolates sign disagreements.
    pub rmse_flipped: f32,
}

/// `cam_f`, `cam_q`: the crop×crop maps; `p_q`: the quantized variant's projection (h×w).
pub fn compare_pair(cam_f: &[f32], cam_q: &[f32], p_q: &[f32], h: usize, w: usize, crop: usize) -> PairRmse {
    PairRmse { rmse: rmse(cam_f, cam_q), rmse_flipped: rmse(cam_f, &flipped_cam(p_q, h, w, crop)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_half_to_even() {
        let cam = [0.0f32, 1.0, 0.5, 2.0 / 255.0, -0.1, 1.2];
        assert_eq!(to_levels_round(&cam), vec![0, 255, 128, 2, 0, 255]);
        // k/255 for these k gives an f32 product of exactly k (checked with numpy float32), so the
        // ties go to even as np.round does: 0.5 → 0, 2.5 → 2, 126.5 → 126, 254.5 → 254.
        let ties = [0.5f32, 2.5, 4.5, 126.5, 254.5].map(|k| k / 255.0);
        for &x in &ties {
            assert_eq!((255.0f32 * x).fract(), 0.5, "{x} is not an exact tie");
        }
        assert_eq!(to_levels_round(&ties), vec![0, 2, 4, 126, 254]);
    }

    #[test]
    fn rmse_hand_computed() {
        // levels a = [0, 255, 10, 20], b = [0, 250, 13, 20]: diffs 0, 5, 3, 0 → sqrt(34/4).
        let a = [0.0f32, 1.0, 10.0 / 255.0, 20.0 / 255.0];
        let b = [0.0f32, 250.0 / 255.0, 13.0 / 255.0, 20.0 / 255.0];
        assert_eq!(to_levels_round(&a), vec![0, 255, 10, 20]);
        assert_eq!(to_levels_round(&b), vec![0, 250, 13, 20]);
        assert!((rmse(&a, &b) - (34.0f32 / 4.0).sqrt()).abs() < 1e-6);
        assert_eq!(rmse(&a, &a), 0.0);
        // Opposite extremes: every pixel differs by 255.
        assert!((rmse(&[0.0; 9], &[1.0; 9]) - 255.0).abs() < 1e-6);
    }

    #[test]
    fn flipped_cam_of_antisymmetric_p() {
        // p = [-2, -1, 1, 2] on 2×2; −p = [2, 1, -1, -2] → cam_lo(−p) = [1, 0.5, 0, 0] (×1/(2+1e-7)·2).
        let p = [-2.0f32, -1.0, 1.0, 2.0];
        let cam = flipped_cam(&p, 2, 2, 2);
        let want = [2.0f32, 1.0, 0.0, 0.0].map(|v| v / (2.0 + 1e-7));
        // cam_full min-maxes again: max is 2/(2+1e-7) → divided by (that + 1e-7).
        let mx = want[0];
        for (x, y) in cam.iter().zip(want) {
            assert!((x - y / (mx + 1e-7)).abs() < 1e-6, "{:?}", cam);
        }
        // The flipped map of −p is the unflipped map of p.
        let neg: Vec<f32> = p.iter().map(|x| -x).collect();
        assert_eq!(flipped_cam(&neg, 2, 2, 2), cam_full(&cam_lo(&p), 2, 2, 2));
        let r = compare_pair(&cam_full(&cam_lo(&p), 2, 2, 2), &cam, &neg, 2, 2, 2);
        assert_eq!(r.rmse_flipped, 0.0);
        assert!(r.rmse > 100.0);
    }
}

/// Pearson correlation of two maps of equal length, in f64: how the tests judge whether two CAMs
/// are the same map up to rounding. Two constant maps (e.g. all zero) are the same map: 1.
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "pearson of maps of different lengths");
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 && sbb == 0.0 {
        return 1.0;
    }
    sab / (saa * sbb).sqrt()
}
