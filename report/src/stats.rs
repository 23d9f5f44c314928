//! The report's numbers: streaming accumulators (one pass over tables of any size) and the few
//! formulas on top of them. Pure; the I/O that feeds them is in `collect.rs`.

use operators::wsol::{top1_loc, BoxAccCounts, CURVE_LEN};

/// A running mean. Sums in f64 whatever the column type, as DuckDB's `avg` does.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mean {
    pub n: usize,
    pub sum: f64,
}

impl Mean {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
    }

    /// A share: true counts 1.
    pub fn add_bool(&mut self, b: bool) {
        self.add(if b { 1.0 } else { 0.0 })
    }

    /// `None` without observations, so an empty group prints as absent rather than 0.
    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The mean of a share, in percent.
    pub fn pct(&self) -> Option<f64> {
        self.value().map(|v| 100.0 * v)
    }
}

/// Element-wise mean of equal-length vectors (the activation histograms of SPEC §7).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeanVec {
    pub n: usize,
    pub sum: Vec<f64>,
}

impl MeanVec {
    pub fn add(&mut self, v: &[f32]) {
        if self.n == 0 {
            self.sum = vec![0.0; v.len()];
        }
        assert_eq!(v.len(), self.sum.len(), "histograms of {} and {} bins", self.sum.len(), v.len());
        self.n += 1;
        for (s, &x) in self.sum.iter_mut().zip(v) {
            *s += x as f64;
        }
    }

    pub fn value(&self) -> Option<Vec<f64>> {
        (self.n > 0).then(|| self.sum.iter().map(|s| s / self.n as f64).collect())
    }
}

/// Dice of two mean histograms (SPEC §7): `Σ_b 2·min(h1_b, h2_b) / (Σ h1 + Σ h2)`, 0 when both are
/// empty. The same formula as `operators::stats::dice`, on the f64 means the report holds.
pub fn dice(h1: &[f64], h2: &[f64]) -> f64 {
    assert_eq!(h1.len(), h2.len(), "dice of histograms with {} and {} bins", h1.len(), h2.len());
    let num: f64 = h1.iter().zip(h2).map(|(&a, &b)| 2.0 * a.min(b)).sum();
    let den: f64 = h1.iter().chain(h2).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// How many times faster `variant_ms` is than `float_ms` (float / variant); `None` if either is
/// missing or the variant took no time.
pub fn speedup(float_ms: Option<f64>, variant_ms: Option<f64>) -> Option<f64> {
    match (float_ms, variant_ms) {
        (Some(f), Some(v)) if v > 0.0 => Some(f / v),
        _ => None,
    }
}

/// One `images` row, as the accumulators need it.
#[derive(Clone, Copy, Debug)]
pub struct ImageObs<'a> {
    pub top1_correct: bool,
    pub top5_correct: bool,
    pub infer_ms: f32,
    pub cam_ms: f32,
    pub iou: f32,
    pub iou_curve: &'a [f32],
    pub act_entropy: f64,
    pub act_std: f64,
    pub act_sparsity: f64,
    pub act_hist: &'a [f32],
}

/// Everything the report says about one (model, variant) over a set of images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageAcc {
    pub top1: Mean,
    pub top5: Mean,
    pub infer_ms: Mean,
    pub cam_ms: Mean,
    /// infer + cam per image.
    pub total_ms: Mean,
    pub iou: Mean,
    pub top1_loc: Mean,
    pub box_acc: BoxAccCounts,
    /// Rows whose `iou_curve` is not SPEC's 100 points (left out of MaxBoxAccV2, counted here).
    pub bad_curves: usize,
    pub act_entropy: Mean,
    pub act_std: Mean,
    pub act_sparsity: Mean,
    pub act_hist: MeanVec,
}

impl ImageAcc {
    pub fn add(&mut self, o: &ImageObs) {
        self.top1.add_bool(o.top1_correct);
        self.top5.add_bool(o.top5_correct);
        self.infer_ms.add(o.infer_ms as f64);
        self.cam_ms.add(o.cam_ms as f64);
        self.total_ms.add(o.infer_ms as f64 + o.cam_ms as f64);
        self.iou.add(o.iou as f64);
        self.top1_loc.add_bool(top1_loc(o.top1_correct, o.iou));
        if o.iou_curve.len() == CURVE_LEN {
            self.box_acc.add(o.iou_curve);
        } else {
            self.bad_curves += 1;
        }
        self.act_entropy.add(o.act_entropy);
        self.act_std.add(o.act_std);
        self.act_sparsity.add(o.act_sparsity);
        self.act_hist.add(o.act_hist);
    }

    pub fn images(&self) -> usize {
        self.top1.n
    }

    /// MaxBoxAccV2 in percent (SPEC §6), `None` without images.
    pub fn max_box_acc_v2_pct(&self) -> Option<f64> {
        (self.box_acc.images > 0).then(|| 100.0 * self.box_acc.max_box_acc_v2() as f64)
    }
}

/// One `pairs` row: the CAM distance and its sign-flipped twin (SPEC §4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RmseAcc {
    pub rmse: Mean,
    pub rmse_flipped: Mean,
    /// Share of pairs where flipping the int8 CAM's sign would have brought it closer.
    pub flipped_closer: Mean,
}

impl RmseAcc {
    pub fn add(&mut self, rmse: f32, rmse_flipped: f32) {
        self.rmse.add(rmse as f64);
        self.rmse_flipped.add(rmse_flipped as f64);
        self.flipped_closer.add_bool(rmse_flipped < rmse);
    }
}

/// One `perturbation` row (SPEC §5).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AucAcc {
    pub deletion: Mean,
    pub insertion: Mean,
}

impl AucAcc {
    pub fn add(&mut self, deletion_auc: f32, insertion_auc: f32) {
        self.deletion.add(deletion_auc as f64);
        self.insertion.add(insertion_auc as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_share_hand_computed() {
        let mut m = Mean::default();
        assert_eq!(m.value(), None);
        for x in [1.0, 2.0, 6.0] {
            m.add(x);
        }
        assert_eq!(m.value(), Some(3.0));
        let mut s = Mean::default();
        for b in [true, false, false, true] {
            s.add_bool(b);
        }
        assert_eq!(s.pct(), Some(50.0));
    }

    #[test]
    fn mean_histogram_hand_computed() {
        let mut h = MeanVec::default();
        assert_eq!(h.value(), None);
        h.add(&[1.0, 0.0, 0.0]);
        h.add(&[0.5, 0.5, 0.0]);
        assert_eq!(h.value(), Some(vec![0.75, 0.25, 0.0]));
    }

    #[test]
    #[should_panic(expected = "histograms of 2 and 3 bins")]
    fn mean_histogram_refuses_other_lengths() {
        let mut h = MeanVec::default();
        h.add(&[1.0, 0.0]);
        h.add(&[1.0, 0.0, 0.0]);
    }

    #[test]
    fn dice_hand_computed_and_as_the_operator_defines_it() {
        // min = (0.5, 0.25, 0) → 2·0.75 / (1 + 1) = 0.75.
        let (a, b) = ([0.5, 0.5, 0.0], [0.75, 0.25, 0.0]);
        assert!((dice(&a, &b) - 0.75).abs() < 1e-15);
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(dice(&[0.0; 4], &[0.0; 4]), 0.0);
        // Unequal mass: 2·min(0.2, 0.6) / (0.2 + 0.6 + 0.4) = 0.4 / 1.2.
        assert!((dice(&[0.2, 0.0], &[0.6, 0.4]) - 1.0 / 3.0).abs() < 1e-15);
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let ours = dice(&a, &b);
        let theirs = operators::stats::dice(&f32s(&a), &f32s(&b));
        assert!((ours - theirs).abs() < 1e-7, "{ours} vs {theirs}");
    }

    #[test]
    fn speedup_is_float_over_variant() {
        assert_eq!(speedup(Some(300.0), Some(75.0)), Some(4.0));
        assert_eq!(speedup(Some(300.0), Some(0.0)), None);
        assert_eq!(speedup(None, Some(1.0)), None);
        assert_eq!(speedup(Some(1.0), None), None);
    }

    fn curve(iou: f32) -> Vec<f32> {
        vec![iou; CURVE_LEN]
    }

    fn obs<'a>(top1_correct: bool, iou: f32, iou_curve: &'a [f32], act_hist: &'a [f32]) -> ImageObs<'a> {
        ImageObs {
            top1_correct,
            top5_correct: true,
            infer_ms: 10.0,
            cam_ms: 2.0,
            iou,
            iou_curve,
            act_entropy: 1.0,
            act_std: if top1_correct { 2.0 } else { 4.0 },
            act_sparsity: 50.0,
            act_hist,
        }
    }

    #[test]
    fn image_accumulator_hand_computed() {
        let (c1, c2, h1, h2) = (curve(0.6), curve(0.2), [1.0f32, 0.0], [0.0f32, 1.0]);
        let mut acc = ImageAcc::default();
        acc.add(&obs(true, 0.6, &c1, &h1)); // localized: top-1 right and IoU ≥ 0.5
        acc.add(&obs(false, 0.6, &c1, &h2)); // IoU ok but class wrong: not localized
        acc.add(&obs(true, 0.2, &c2, &h1)); // class right, IoU too small
        acc.add(&obs(true, 0.2, &[0.9; 3], &h1)); // malformed curve: counted, not used
        assert_eq!(acc.images(), 4);
        assert_eq!(acc.top1.pct(), Some(75.0));
        assert_eq!(acc.top5.pct(), Some(100.0));
        assert_eq!(acc.total_ms.value(), Some(12.0));
        assert_eq!(acc.top1_loc.pct(), Some(25.0));
        assert!((acc.iou.value().unwrap() - 0.4).abs() < 1e-7);
        assert_eq!(acc.act_std.value(), Some(2.5));
        assert_eq!(acc.act_hist.value(), Some(vec![0.75, 0.25]));
        assert_eq!(acc.bad_curves, 1);
        // Three curves: δ=0.3 and δ=0.5 hit 2/3, δ=0.7 hits 0 → (2/3 + 2/3 + 0) / 3 = 4/9.
        assert!((acc.max_box_acc_v2_pct().unwrap() - 400.0 / 9.0).abs() < 1e-4);
        assert_eq!(ImageAcc::default().max_box_acc_v2_pct(), None);
    }

    #[test]
    fn flipped_sign_share_counts_strictly_closer() {
        let mut r = RmseAcc::default();
        r.add(10.0, 4.0); // closer flipped
        r.add(10.0, 10.0); // a tie is not closer
        r.add(3.0, 9.0);
        r.add(8.0, 1.0); // closer
        assert_eq!(r.rmse.value(), Some(31.0 / 4.0));
        assert_eq!(r.rmse_flipped.value(), Some(6.0));
        assert_eq!(r.flipped_closer.pct(), Some(50.0));
    }

    #[test]
    fn auc_means() {
        let mut a = AucAcc::default();
        a.add(0.25, 0.5);
        a.add(0.75, 1.0);
        assert_eq!((a.deletion.value(), a.insertion.value()), (Some(0.5), Some(0.75)));
    }
}
