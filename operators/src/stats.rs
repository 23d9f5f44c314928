//! Activation statistics (SPEC §7): moments, sparsity and an 8-bit histogram of the activation
//! the CAM is computed from, binned on the quantized variant's grid so that float and int8
//! activations of a pair are compared level by level.

use serde::{Deserialize, Serialize};

/// Number of histogram bins: the quint8 levels.
pub const BINS: usize = 256;
/// Guard inside the entropy's logarithm (SPEC §7).
pub const ENTROPY_EPS: f64 = 1e-10;

/// A per-tensor affine quantization grid: level q ↔ value `(q − zero_point) · scale`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QGrid {
    pub scale: f32,
    pub zero_point: i32,
}

impl QGrid {
    /// Bin of a value: `clamp(round((a − lo) / s), 0, 255)`, `lo = (0 − zp) · s`.
    ///
    /// Computed in f64 (so a dequantized int8 value lands back exactly on its integer level) and
    /// rounded half-to-even like `np.round` and torch's `quantize_per_tensor` (nearbyint).
    pub fn bin(&self, a: f32) -> u8 {
        let s = self.scale as f64;
        let lo = -(self.zero_point as f64) * s;
        let x = ((a as f64 - lo) / s).round_ties_even();
        // NaN (not expected: replaced upstream) falls into bin 0 via the saturating cast.
        x.clamp(0.0, (BINS - 1) as f64) as u8
    }
}

/// Statistics of one activation tensor (all C·h·w values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActStats {
    pub mean: f64,
    /// Population standard deviation (ddof = 0).
    pub std: f64,
    /// Percentage of exact zeros.
    pub sparsity: f64,
    /// Shannon entropy of `hist`, in bits.
    pub entropy: f64,
    /// Bin counts / n over the grid's 256 levels (sums to 1).
    pub hist: Vec<f32>,
}

/// Statistics of `act` binned on `grid`. An empty tensor gives zeros everywhere (and an all-zero
/// histogram) rather than NaN.
pub fn act_stats(act: &[f32], grid: QGrid) -> ActStats {
    let n = act.len();
    if n == 0 {
        return ActStats { mean: 0.0, std: 0.0, sparsity: 0.0, entropy: 0.0, hist: vec![0.0; BINS] };
    }
    let mut counts = [0u64; BINS];
    let (mut sum, mut zeros) = (0.0f64, 0u64);
    for &a in act {
        counts[grid.bin(a) as usize] += 1;
        sum += a as f64;
        zeros += (a == 0.0) as u64;
    }
    let mean = sum / n as f64;
    // Two-pass variance: no cancellation for activations with a large mean.
    let var = act.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let probs: Vec<f64> = counts.iter().map(|&k| k as f64 / n as f64).collect();
    let entropy = -probs.iter().map(|&p| p * (p + ENTROPY_EPS).log2()).sum::<f64>();
    ActStats {
        mean,
        std: var.sqrt(),
        sparsity: 100.0 * zeros as f64 / n as f64,
        entropy,
        hist: probs.iter().map(|&p| p as f32).collect(),
    }
}

/// Dice overlap of two histograms: `Σ_b 2·min(h1_b, h2_b) / (Σ h1 + Σ h2)`; 0 when both are empty.
/// Summed in f64 whether the bins are an image's f32 histogram or the report's f64 means.
pub fn dice<T: Copy + Into<f64>>(h1: &[T], h2: &[T]) -> f64 {
    assert_eq!(h1.len(), h2.len(), "dice of histograms with {} and {} bins", h1.len(), h2.len());
    let num: f64 = h1.iter().zip(h2).map(|(&a, &b)| 2.0 * a.into().min(b.into())).sum();
    let den: f64 = h1.iter().chain(h2).map(|&a| a.into()).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_round_half_to_even_and_clamp() {
        let g = QGrid { scale: 0.5, zero_point: 10 }; // lo = −5, levels −5, −4.5, …, 122.5
        assert_eq!(g.bin(-5.0), 0);
        assert_eq!(g.bin(0.0), 10); // the zero point
        assert_eq!(g.bin(122.5), 255);
        assert_eq!(g.bin(1000.0), 255);
        assert_eq!(g.bin(-1000.0), 0);
        // Half-way between levels: (a − lo)/s = k + 0.5 exactly → even k.
        assert_eq!(g.bin(-4.75), 0); // 0.5 → 0
        assert_eq!(g.bin(-4.25), 2); // 1.5 → 2
        assert_eq!(g.bin(-3.75), 2); // 2.5 → 2
        assert_eq!(g.bin(0.25), 10); // 10.5 → 10
        assert_eq!(g.bin(0.75), 12); // 11.5 → 12
        // Every dequantized level maps back to itself.
        let g = QGrid { scale: 0.0123, zero_point: 37 };
        for q in 0..256i32 {
            assert_eq!(g.bin((q - 37) as f32 * 0.0123f32) as i32, q);
        }
    }

    #[test]
    fn stats_hand_computed() {
        // Values 0, 0, 1, 3 on the grid s = 1, zp = 0: bins 0,0,1,3.
        let s = act_stats(&[0.0, 0.0, 1.0, 3.0], QGrid { scale: 1.0, zero_point: 0 });
        assert_eq!(s.mean, 1.0);
        assert!((s.std - (6.0f64 / 4.0).sqrt()).abs() < 1e-12); // deviations −1, −1, 0, 2
        assert_eq!(s.sparsity, 50.0);
        assert_eq!((s.hist[0], s.hist[1], s.hist[2], s.hist[3]), (0.5, 0.25, 0.0, 0.25));
        assert_eq!(s.hist.iter().sum::<f32>(), 1.0);
        // H = −(0.5 log2 0.5 + 2 · 0.25 log2 0.25) = 1.5 bits (up to the 1e-10 guard).
        assert!((s.entropy - 1.5).abs() < 1e-8, "{}", s.entropy);
        // A constant tensor: one bin, zero entropy, zero std.
        let s = act_stats(&[2.0; 10], QGrid { scale: 1.0, zero_point: 0 });
        assert_eq!((s.std, s.sparsity, s.hist[2]), (0.0, 0.0, 1.0));
        assert!(s.entropy.abs() < 1e-8);
        let s = act_stats(&[], QGrid { scale: 1.0, zero_point: 0 });
        assert_eq!((s.mean, s.std, s.entropy, s.sparsity), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn dice_hand_computed() {
        let a = [0.5f32, 0.5, 0.0];
        let b = [0.25f32, 0.25, 0.5];
        // 2·(0.25 + 0.25 + 0) / (1 + 1) = 0.5
        assert_eq!(dice(&a, &b), 0.5);
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(dice(&[0.0; 4], &[0.0; 4]), 0.0);
    }
}
