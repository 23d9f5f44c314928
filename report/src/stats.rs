//! The report's numbers, each defined once as a function of how many times each image of its
//! group is drawn: all ones gives the estimate the tables print, a bootstrap resample gives one
//! point of its interval (`bootstrap.rs`). Pure; the I/O that fills `ImageEntry` is in
//! `collect.rs`.

use operators::stats::dice;
use operators::wsol::{top1_loc, BoxAccCounts, CURVE_LEN, IOU_DELTAS};
use std::collections::BTreeMap;

use types::{ByVariant, Method, Variant};

use crate::bootstrap::Resampled;

/// One variant's `images` row, as the report uses it (scalars only: a full run has millions).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageObs {
    pub top1_correct: bool,
    pub top5_correct: bool,
    pub infer_ms: f32,
    pub cam_ms: f32,
    pub iou: f32,
    /// `None` when `iou_curve` is not SPEC's 100 points (MaxBoxAccV2 leaves the image out).
    pub box_hits: Option<BoxHits>,
    pub act_mean: f64,
    pub act_std: f64,
    pub act_sparsity: f64,
    pub act_entropy: f64,
    /// Kept for subset images only: Figure 2 and its Dice.
    pub act_hist: Option<Vec<f32>>,
}

/// One `pairs` row (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairObs {
    pub rmse: f32,
    pub rmse_flipped: f32,
}

/// One `perturbation` row (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AucObs {
    pub deletion: f32,
    pub insertion: f32,
}

/// One baseline's `wsol` row (SPEC §6 on a no-model map).
#[derive(Clone, Debug, PartialEq)]
pub struct WsolObs {
    pub iou: f32,
    pub top1_loc: bool,
    pub box_hits: Option<BoxHits>,
}

/// What one no-model baseline scored on one image: its `wsol` and `perturbation` rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineObs {
    pub wsol: ByVariant<Option<WsolObs>>,
    pub auc: ByVariant<Option<AucObs>>,
}

/// Everything a run says about one image of one pair.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageEntry {
    pub variants: ByVariant<Option<ImageObs>>,
    pub pair: Option<PairObs>,
    /// EigenCAM's deletion/insertion.
    pub perturbation: ByVariant<Option<AucObs>>,
    pub in_subset: bool,
    /// The baselines' rows, by method (never `eigencam`: its rows are the fields above).
    pub baselines: BTreeMap<Method, BaselineObs>,
}

/// Which thresholds localize an image at each δ of MaxBoxAccV2 (`iou_curve[j] ≥ δ_k`, SPEC §6),
/// as runs of j: a resample then adds a few numbers per image instead of 300.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxHits {
    /// (k, first j, one past the last j).
    runs: Vec<(u8, u8, u8)>,
}

impl BoxHits {
    pub fn new(iou_curve: &[f32]) -> Option<BoxHits> {
        if iou_curve.len() != CURVE_LEN {
            return None;
        }
        let mut runs = Vec::new();
        for (k, &delta) in IOU_DELTAS.iter().enumerate() {
            let mut start = None;
            // f32 against f32 δ, as BoxAccCounts::add compares.
            for (j, hit) in iou_curve.iter().map(|&v| v >= delta).chain([false]).enumerate() {
                match (hit, start) {
                    (true, None) => start = Some(j),
                    (false, Some(s)) => {
                        runs.push((k as u8, s as u8, j as u8));
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        Some(BoxHits { runs })
    }
}

/// A metric the tables print, named as its CSV column is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    // Per image and variant (`images`).
    Top1Pct,
    Top5Pct,
    Iou,
    Top1LocPct,
    ActMean,
    ActStd,
    ActSparsityPct,
    ActEntropyBits,
    InferMs,
    CamMs,
    TotalMs,
    // Per perturbed image and variant (`perturbation`).
    DeletionAuc,
    InsertionAuc,
    // Per image, of the pair (`pairs`).
    Rmse,
    RmseFlipped,
    FlippedCloserPct,
    // Over a group of images only.
    MaxBoxAccV2Pct,
    SpeedupVsFloat,
    Dice,
}

/// The per-image metrics of an `images` row, the timings last (Table 12 compares the others).
pub const IMAGE_METRICS: [Metric; 11] = [
    Metric::Top1Pct,
    Metric::Top5Pct,
    Metric::Iou,
    Metric::Top1LocPct,
    Metric::ActMean,
    Metric::ActStd,
    Metric::ActSparsityPct,
    Metric::ActEntropyBits,
    Metric::InferMs,
    Metric::CamMs,
    Metric::TotalMs,
];
pub const AUC_METRICS: [Metric; 2] = [Metric::DeletionAuc, Metric::InsertionAuc];
pub const PAIR_METRICS: [Metric; 3] = [Metric::Rmse, Metric::RmseFlipped, Metric::FlippedCloserPct];

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Top1Pct => "top1_pct",
            Metric::Top5Pct => "top5_pct",
            Metric::Iou => "iou",
            Metric::Top1LocPct => "top1_loc_pct",
            Metric::ActMean => "act_mean",
            Metric::ActStd => "act_std",
            Metric::ActSparsityPct => "act_sparsity_pct",
            Metric::ActEntropyBits => "act_entropy_bits",
            Metric::InferMs => "infer_ms",
            Metric::CamMs => "cam_ms",
            Metric::TotalMs => "total_ms",
            Metric::DeletionAuc => "deletion_auc",
            Metric::InsertionAuc => "insertion_auc",
            Metric::Rmse => "rmse",
            Metric::RmseFlipped => "rmse_flipped",
            Metric::FlippedCloserPct => "flipped_closer_pct",
            Metric::MaxBoxAccV2Pct => "maxboxacc_v2_pct",
            Metric::SpeedupVsFloat => "speedup_vs_float",
            Metric::Dice => "dice",
        }
    }

    /// Right or wrong per image (stored as 100 or 0, so a mean is a percentage): McNemar's test
    /// compares the variants, not Wilcoxon's.
    pub fn binary(self) -> bool {
        matches!(self, Metric::Top1Pct | Metric::Top5Pct | Metric::Top1LocPct | Metric::FlippedCloserPct)
    }

    /// Decimals in Markdown.
    pub fn digits(self) -> usize {
        match self {
            Metric::Top1Pct | Metric::Top5Pct | Metric::FlippedCloserPct => 1,
            Metric::Top1LocPct | Metric::MaxBoxAccV2Pct | Metric::ActSparsityPct => 2,
            Metric::InferMs | Metric::CamMs | Metric::TotalMs | Metric::Rmse | Metric::RmseFlipped => 2,
            Metric::SpeedupVsFloat => 2,
            Metric::ActEntropyBits => 3,
            _ => 4,
        }
    }

    /// The metric of one image for one variant (per-image metrics of `images` and
    /// `perturbation`), `None` where the run has no row.
    pub fn of_variant(self, e: &ImageEntry, v: Variant) -> Option<f64> {
        let pct = |b: bool| if b { 100.0 } else { 0.0 };
        match self {
            Metric::DeletionAuc => return e.perturbation[v].map(|a| a.deletion as f64),
            Metric::InsertionAuc => return e.perturbation[v].map(|a| a.insertion as f64),
            _ => {}
        }
        let o = e.variants[v].as_ref()?;
        Some(match self {
            Metric::Top1Pct => pct(o.top1_correct),
            Metric::Top5Pct => pct(o.top5_correct),
            Metric::Iou => o.iou as f64,
            Metric::Top1LocPct => pct(top1_loc(o.top1_correct, o.iou)),
            Metric::ActMean => o.act_mean,
            Metric::ActStd => o.act_std,
            Metric::ActSparsityPct => o.act_sparsity,
            Metric::ActEntropyBits => o.act_entropy,
            Metric::InferMs => o.infer_ms as f64,
            Metric::CamMs => o.cam_ms as f64,
            Metric::TotalMs => o.infer_ms as f64 + o.cam_ms as f64,
            _ => return None,
        })
    }

    /// The metric of one image for one variant under `method`: EigenCAM's is
    /// [`Metric::of_variant`]; a baseline has IoU, top-1 loc and the AUCs.
    pub fn of_method(self, e: &ImageEntry, method: Method, v: Variant) -> Option<f64> {
        if method == Method::EigenCam {
            return self.of_variant(e, v);
        }
        let b = e.baselines.get(&method)?;
        match self {
            Metric::Iou => b.wsol[v].as_ref().map(|w| w.iou as f64),
            Metric::Top1LocPct => b.wsol[v].as_ref().map(|w| if w.top1_loc { 100.0 } else { 0.0 }),
            Metric::DeletionAuc => b.auc[v].map(|a| a.deletion as f64),
            Metric::InsertionAuc => b.auc[v].map(|a| a.insertion as f64),
            _ => None,
        }
    }

    /// The metric of one image's pair row (`pairs`).
    pub fn of_pair(self, e: &ImageEntry) -> Option<f64> {
        let p = e.pair?;
        match self {
            Metric::Rmse => Some(p.rmse as f64),
            Metric::RmseFlipped => Some(p.rmse_flipped as f64),
            // Flipping the int8 CAM's sign would have brought it strictly closer.
            Metric::FlippedCloserPct => Some(if p.rmse_flipped < p.rmse { 100.0 } else { 0.0 }),
            _ => None,
        }
    }
}

/// The mean of one value per image over the images that have it. Sums in f64 whatever the
/// column type, as DuckDB's `avg` does.
pub struct Mean {
    values: Vec<f64>,
    present: Vec<bool>,
}

impl Mean {
    pub fn new(values: impl IntoIterator<Item = Option<f64>>) -> Mean {
        let (values, present) = values.into_iter().map(|v| (v.unwrap_or(0.0), v.is_some())).unzip();
        Mean { values, present }
    }
}

impl Resampled for Mean {
    fn images(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    fn at(&self, counts: &[u32]) -> Option<f64> {
        let (mut sum, mut drawn) = (0.0, 0u64);
        for ((&c, &x), &p) in counts.iter().zip(&self.values).zip(&self.present) {
            if p {
                sum += c as f64 * x;
                drawn += c as u64;
            }
        }
        (drawn > 0).then(|| sum / drawn as f64)
    }
}

/// How many times faster the variant is than float: the float mean time over the variant's.
pub struct Speedup {
    pub float_ms: Mean,
    pub variant_ms: Mean,
}

impl Resampled for Speedup {
    /// Images with the variant's time (the row's own images).
    fn images(&self) -> usize {
        self.variant_ms.images()
    }

    fn at(&self, counts: &[u32]) -> Option<f64> {
        speedup(self.float_ms.at(counts), self.variant_ms.at(counts))
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

/// MaxBoxAccV2 in percent (SPEC §6) over the images with a well-formed IoU curve, through
/// the operator's own `BoxAccCounts` so the formula stays in one place.
pub struct MaxBoxAccV2<'a>(pub Vec<Option<&'a BoxHits>>);

impl Resampled for MaxBoxAccV2<'_> {
    fn images(&self) -> usize {
        self.0.iter().flatten().count()
    }

    fn at(&self, counts: &[u32]) -> Option<f64> {
        // Run starts add, run ends subtract; a prefix sum over j gives each count.
        let mut edges = vec![[0i64; 3]; CURVE_LEN + 1];
        let mut images = 0u64;
        for (&c, hits) in counts.iter().zip(&self.0) {
            let (Some(hits), true) = (hits, c > 0) else { continue };
            images += c as u64;
            for &(k, start, end) in &hits.runs {
                edges[start as usize][k as usize] += c as i64;
                edges[end as usize][k as usize] -= c as i64;
            }
        }
        if images == 0 {
            return None;
        }
        let mut acc = BoxAccCounts { images, hits: Vec::with_capacity(CURVE_LEN) };
        let mut running = [0i64; 3];
        for e in &edges[..CURVE_LEN] {
            for k in 0..3 {
                running[k] += e[k];
            }
            acc.hits.push(running.map(|h| h as u64));
        }
        Some(100.0 * acc.max_box_acc_v2() as f64)
    }
}

/// Element-wise mean of the histograms present, each image weighted by its count; `None` when
/// no drawn image has one. Panics on histograms of different lengths (SPEC §7 fixes 256).
pub fn mean_hist(hists: &[Option<&[f32]>], counts: &[u32]) -> Option<Vec<f64>> {
    let mut sum: Option<Vec<f64>> = None;
    let mut drawn = 0u64;
    for (&c, h) in counts.iter().zip(hists) {
        let (Some(h), true) = (h, c > 0) else { continue };
        let s = sum.get_or_insert_with(|| vec![0.0; h.len()]);
        assert_eq!(s.len(), h.len(), "histograms of {} and {} bins", s.len(), h.len());
        for (s, &x) in s.iter_mut().zip(h.iter()) {
            *s += c as f64 * x as f64;
        }
        drawn += c as u64;
    }
    sum.map(|s| s.into_iter().map(|x| x / drawn as f64).collect())
}

/// Dice of the float and int8 mean histograms (Figure 2).
pub struct DiceOfMeans<'a> {
    pub hists: ByVariant<Vec<Option<&'a [f32]>>>,
}

impl Resampled for DiceOfMeans<'_> {
    /// Images with both histograms.
    fn images(&self) -> usize {
        self.hists.float.iter().zip(&self.hists.quantized).filter(|(f, q)| f.is_some() && q.is_some()).count()
    }

    fn at(&self, counts: &[u32]) -> Option<f64> {
        let f = mean_hist(&self.hists.float, counts)?;
        let q = mean_hist(&self.hists.quantized, counts)?;
        (f.len() == q.len()).then(|| dice(&f, &q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones(n: usize) -> Vec<u32> {
        vec![1; n]
    }

    #[test]
    fn mean_over_present_values_and_draw_counts() {
        let m = Mean::new([Some(1.0), None, Some(2.0), Some(6.0)]);
        assert_eq!((m.at(&ones(4)), m.images()), (Some(3.0), 3));
        // Drawn (2, 5, 0, 1): (2·1 + 1·6) / 3; the absent image's draws do not count.
        assert_eq!(m.at(&[2, 5, 0, 1]), Some(8.0 / 3.0));
        assert_eq!(m.at(&[0, 4, 0, 0]), None);
        assert_eq!(Mean::new([]).at(&[]), None);
    }

    #[test]
    fn mean_histogram_hand_computed() {
        let (a, b) = ([1.0f32, 0.0, 0.0], [0.5f32, 0.5, 0.0]);
        let hists = [Some(&a[..]), Some(&b[..]), None];
        assert_eq!(mean_hist(&hists, &ones(3)), Some(vec![0.75, 0.25, 0.0]));
        // a twice, b once: (2·a + b) / 3.
        assert_eq!(mean_hist(&hists, &[2, 1, 0]), Some(vec![2.5 / 3.0, 0.5 / 3.0, 0.0]));
        assert_eq!(mean_hist(&hists, &[0, 0, 3]), None);
    }

    #[test]
    #[should_panic(expected = "histograms of 2 and 3 bins")]
    fn mean_histogram_refuses_other_lengths() {
        let (a, b) = ([1.0f32, 0.0], [1.0f32, 0.0, 0.0]);
        mean_hist(&[Some(&a[..]), Some(&b[..])], &ones(2));
    }

    #[test]
    fn dice_hand_computed_on_means_and_on_f32_histograms() {
        // min = (0.5, 0.25, 0) → 2·0.75 / (1 + 1) = 0.75.
        let (a, b) = ([0.5, 0.5, 0.0], [0.75, 0.25, 0.0]);
        assert!((dice(&a, &b) - 0.75).abs() < 1e-15);
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(dice(&[0.0; 4], &[0.0; 4]), 0.0);
        // Unequal mass: 2·min(0.2, 0.6) / (0.2 + 0.6 + 0.4) = 0.4 / 1.2.
        assert!((dice(&[0.2, 0.0], &[0.6, 0.4]) - 1.0 / 3.0).abs() < 1e-15);
        // The same bins as f32 (an image's histogram) and as f64 (the report's means).
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        assert_eq!(dice(&f32s(&a), &f32s(&b)), 0.75);
        // Of two images' means: float (1, 0) and (0, 1) → (0.5, 0.5); int8 (1, 0) twice → Dice 0.5.
        let (x, y) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let d = DiceOfMeans { hists: ByVariant::new(vec![Some(&x[..]), Some(&y[..])], vec![Some(&x[..]), Some(&x[..])]) };
        assert_eq!(d.at(&ones(2)), Some(0.5));
        assert_eq!(d.at(&[2, 0]), Some(1.0));
    }

    #[test]
    fn speedup_is_float_over_variant() {
        assert_eq!(speedup(Some(300.0), Some(75.0)), Some(4.0));
        assert_eq!(speedup(Some(300.0), Some(0.0)), None);
        assert_eq!(speedup(None, Some(1.0)), None);
        assert_eq!(speedup(Some(1.0), None), None);
        let s = Speedup { float_ms: Mean::new([Some(100.0), Some(300.0)]), variant_ms: Mean::new([Some(50.0), Some(50.0)]) };
        assert_eq!(s.at(&ones(2)), Some(4.0));
        assert_eq!(s.at(&[2, 0]), Some(2.0));
    }

    fn curve(iou: f32) -> Vec<f32> {
        vec![iou; CURVE_LEN]
    }

    fn obs(top1_correct: bool, iou: f32, iou_curve: &[f32]) -> ImageObs {
        ImageObs {
            top1_correct,
            top5_correct: true,
            infer_ms: 10.0,
            cam_ms: 2.0,
            iou,
            box_hits: BoxHits::new(iou_curve),
            act_mean: 0.5,
            act_std: if top1_correct { 2.0 } else { 4.0 },
            act_sparsity: 50.0,
            act_entropy: 1.0,
            act_hist: None,
        }
    }

    fn entry(o: ImageObs) -> ImageEntry {
        ImageEntry { variants: ByVariant::new(Some(o), None), ..ImageEntry::default() }
    }

    #[test]
    fn per_image_metrics_hand_computed() {
        let (c1, c2) = (curve(0.6), curve(0.2));
        let entries = [
            entry(obs(true, 0.6, &c1)),      // localized: top-1 right and IoU ≥ 0.5
            entry(obs(false, 0.6, &c1)),     // IoU ok but class wrong: not localized
            entry(obs(true, 0.2, &c2)),      // class right, IoU too small
            entry(obs(true, 0.2, &[0.9; 3])), // malformed curve: left out of MaxBoxAccV2
        ];
        let mean = |m: Metric| Mean::new(entries.iter().map(|e| m.of_variant(e, Variant::Float))).at(&ones(4));
        assert_eq!(mean(Metric::Top1Pct), Some(75.0));
        assert_eq!(mean(Metric::Top5Pct), Some(100.0));
        assert_eq!(mean(Metric::TotalMs), Some(12.0));
        assert_eq!(mean(Metric::Top1LocPct), Some(25.0));
        assert!((mean(Metric::Iou).unwrap() - 0.4).abs() < 1e-7);
        assert_eq!(mean(Metric::ActStd), Some(2.5));
        let quantized = Mean::new(entries.iter().map(|e| Metric::Top1Pct.of_variant(e, Variant::Quantized)));
        assert_eq!((quantized.images(), quantized.at(&ones(4))), (0, None));
        // Three curves: δ=0.3 and δ=0.5 hit 2/3, δ=0.7 hits 0 → (2/3 + 2/3 + 0) / 3 = 4/9.
        let mba = MaxBoxAccV2(entries.iter().map(|e| e.variants.float.as_ref().unwrap().box_hits.as_ref()).collect());
        assert_eq!(mba.images(), 3);
        assert!((mba.at(&ones(4)).unwrap() - 400.0 / 9.0).abs() < 1e-4);
        // Only the second image, twice: every δ up to 0.5 hit, 0.7 not → 2/3.
        assert!((mba.at(&[0, 2, 0, 0]).unwrap() - 200.0 / 3.0).abs() < 1e-4);
        assert_eq!(mba.at(&[0, 0, 0, 5]), None);
    }

    #[test]
    fn box_hits_count_as_box_acc_counts_does() {
        // A curve that crosses each δ several times, and the boundaries j = 0 and j = 99.
        let curves: Vec<Vec<f32>> = vec![
            (0..100).map(|j| if j % 7 < 3 { 0.75 } else { 0.35 }).collect(),
            (0..100).map(|j| j as f32 / 99.0).collect(),
            (0..100).map(|j| if j == 0 || j == 99 { 0.5 } else { 0.0 }).collect(),
            vec![0.7; 100],
        ];
        let counts = [3u32, 1, 2, 1];
        let mut want = BoxAccCounts::default();
        for (c, n) in curves.iter().zip(counts) {
            for _ in 0..n {
                want.add(c);
            }
        }
        let hits: Vec<Option<BoxHits>> = curves.iter().map(|c| BoxHits::new(c)).collect();
        let got = MaxBoxAccV2(hits.iter().map(Option::as_ref).collect()).at(&counts).unwrap();
        assert_eq!(got, 100.0 * want.max_box_acc_v2() as f64);
    }

    #[test]
    fn pair_metrics_and_the_strictly_closer_share() {
        let e = |rmse, rmse_flipped| ImageEntry { pair: Some(PairObs { rmse, rmse_flipped }), ..ImageEntry::default() };
        let entries = [e(10.0, 4.0), e(10.0, 10.0), e(3.0, 9.0), e(8.0, 1.0), ImageEntry::default()];
        let mean = |m: Metric| Mean::new(entries.iter().map(|x| m.of_pair(x))).at(&ones(5));
        assert_eq!(mean(Metric::Rmse), Some(31.0 / 4.0));
        assert_eq!(mean(Metric::RmseFlipped), Some(6.0));
        // 10 → 4 and 8 → 1 are closer; a tie is not.
        assert_eq!(mean(Metric::FlippedCloserPct), Some(50.0));
        assert_eq!(Metric::Rmse.of_variant(&entries[0], Variant::Float), None);
    }

    #[test]
    fn auc_metrics_with_or_without_an_images_row() {
        let mut e = ImageEntry::default();
        e.perturbation.quantized = Some(AucObs { deletion: 0.25, insertion: 0.5 });
        assert_eq!(Metric::DeletionAuc.of_variant(&e, Variant::Quantized), Some(0.25));
        assert_eq!(Metric::InsertionAuc.of_variant(&e, Variant::Quantized), Some(0.5));
        assert_eq!(Metric::DeletionAuc.of_variant(&e, Variant::Float), None);
        e.variants.quantized = Some(obs(true, 0.1, &curve(0.1)));
        assert_eq!(Metric::InsertionAuc.of_variant(&e, Variant::Quantized), Some(0.5));
    }
}
