//! Every number the tables print for one pair over one scope (its group of images), with
//! intervals from one set of bootstrap draws, and the paired float-vs-int8 tests.
//!
//! A group's draws index its images in image_id order and are shared by all its statistics: both
//! variants of an image, and the pair's own row, move together, so the intervals of the two
//! variants and of their difference come from the same resamples. Tables that cover the same
//! group (Tables 1, 8, 11 over all images of a pair) therefore share draws too.

use std::collections::BTreeMap;

use types::{ByVariant, Method, Variant};

use crate::bootstrap::{estimate, Estimate, ReportConfig, Resampled};
use crate::paired::{mcnemar, wilcoxon, TestResult};
use crate::stats::{
    DiceOfMeans, ImageEntry, MaxBoxAccV2, Mean, Metric, Speedup, AUC_METRICS, IMAGE_METRICS, PAIR_METRICS,
};

/// Which images of a pair a group holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every image with an `images` or `pairs` row.
    All,
    /// The run's `subset` table (SPEC §4).
    Subset,
    /// The images deletion/insertion ran on (`perturbation`; the subset unless the job said all).
    Perturbed,
    /// The images deletion/insertion also ran the baselines' orders on (`perturbation.baseline_share`).
    Baselined,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Subset => "subset",
            Scope::Perturbed => "perturbed",
            Scope::Baselined => "baselined",
        }
    }

    fn holds(self, e: &ImageEntry) -> bool {
        match self {
            Scope::All => e.variants.float.is_some() || e.variants.quantized.is_some() || e.pair.is_some(),
            Scope::Subset => e.in_subset,
            Scope::Perturbed => e.perturbation.float.is_some() || e.perturbation.quantized.is_some(),
            Scope::Baselined => e.baselines.values().any(|b| b.auc.float.is_some() || b.auc.quantized.is_some()),
        }
    }

    /// What the paired table compares over this scope. Timings are left out: the images of one
    /// batch share its time (SPEC §8 `infer_ms` is per batch), so they are not paired
    /// observations of one image.
    pub fn compared(self) -> &'static [Metric] {
        match self {
            Scope::All | Scope::Subset => COMPARED,
            Scope::Perturbed => &AUC_METRICS,
            Scope::Baselined => &[],
        }
    }
}

/// The per-image metrics but the timings, which end `IMAGE_METRICS`.
const COMPARED: &[Metric] = IMAGE_METRICS.split_at(IMAGE_METRICS.len() - 3).0;

/// Whose statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Of {
    /// One variant, over the images that variant has.
    Variant(Variant),
    /// The pair's own numbers: its `pairs` rows, and the Dice of its two variants.
    Pair,
    /// One variant over the images both variants have (the paired table's means).
    Paired(Variant),
    /// int8 − float per image, over the images both have.
    Diff,
    /// One variant under a saliency method (EigenCAM or a no-model baseline), over the images
    /// that method has: the baselines table.
    Method(Method, Variant),
}

/// Every estimate of one group.
#[derive(Debug, Default)]
pub struct GroupEstimates {
    /// Images in the group (what the draws index).
    pub images: usize,
    values: BTreeMap<(Of, Metric), Estimate>,
    tests: BTreeMap<Metric, TestResult>,
}

impl GroupEstimates {
    /// `of`'s `metric`, or an empty estimate where the group has none.
    pub fn get(&self, of: Of, metric: Metric) -> Estimate {
        self.values.get(&(of, metric)).copied().unwrap_or_default()
    }

    /// The paired test of `metric` (Wilcoxon or McNemar by its kind); `None` without pairs.
    pub fn test(&self, metric: Metric) -> Option<TestResult> {
        self.tests.get(&metric).copied()
    }
}

/// A group's statistics under their keys, before they are estimated.
struct Plan<'a> {
    keys: Vec<(Of, Metric)>,
    stats: Vec<Box<dyn Resampled + 'a>>,
}

impl<'a> Plan<'a> {
    fn add(&mut self, of: Of, metric: Metric, stat: impl Resampled + 'a) {
        self.keys.push((of, metric));
        self.stats.push(Box::new(stat));
    }
}

/// Estimates of one pair (`model`, its images in image_id order) over one scope.
pub fn estimate_group(
    config: &ReportConfig,
    model: &str,
    scope: Scope,
    images: &BTreeMap<String, ImageEntry>,
) -> GroupEstimates {
    let entries: Vec<&ImageEntry> = images.values().filter(|e| scope.holds(e)).collect();
    let of_variant = |m: Metric, v: Variant| Mean::new(entries.iter().map(|e| m.of_variant(e, v)));
    let of_method = |m: Metric, method: Method, v: Variant| Mean::new(entries.iter().map(|e| m.of_method(e, method, v)));
    let mut plan = Plan { keys: Vec::new(), stats: Vec::new() };
    if scope == Scope::Baselined {
        // EigenCAM and every baseline's deletion/insertion on the same images, on the same draws.
        for v in Variant::BOTH {
            for method in [Method::EigenCam].into_iter().chain(Method::ORDER_BASELINES) {
                for m in AUC_METRICS {
                    plan.add(Of::Method(method, v), m, of_method(m, method, v));
                }
            }
        }
    }
    let own_metrics: &[Metric] = match scope {
        Scope::Perturbed => &AUC_METRICS,
        Scope::Baselined => &[],
        Scope::All | Scope::Subset => &IMAGE_METRICS,
    };
    for v in Variant::BOTH {
        for &m in own_metrics {
            plan.add(Of::Variant(v), m, of_variant(m, v));
        }
    }
    if scope == Scope::All {
        // The WSOL baselines over the same images and draws as EigenCAM's Table 11 row.
        for v in Variant::BOTH {
            for method in Method::WSOL_BASELINES {
                plan.add(Of::Method(method, v), Metric::Iou, of_method(Metric::Iou, method, v));
                plan.add(Of::Method(method, v), Metric::Top1LocPct, of_method(Metric::Top1LocPct, method, v));
                let hits = entries.iter().map(|e| e.baselines.get(&method)?.wsol[v].as_ref()?.box_hits.as_ref());
                plan.add(Of::Method(method, v), Metric::MaxBoxAccV2Pct, MaxBoxAccV2(hits.collect()));
            }
        }
    }
    if matches!(scope, Scope::All | Scope::Subset) {
        for v in Variant::BOTH {
            let hits = entries.iter().map(|e| e.variants[v].as_ref().and_then(|o| o.box_hits.as_ref()));
            plan.add(Of::Variant(v), Metric::MaxBoxAccV2Pct, MaxBoxAccV2(hits.collect()));
            let float_ms = of_variant(Metric::TotalMs, Variant::Float);
            let speedup = Speedup { float_ms, variant_ms: of_variant(Metric::TotalMs, v) };
            plan.add(Of::Variant(v), Metric::SpeedupVsFloat, speedup);
        }
        for m in PAIR_METRICS {
            plan.add(Of::Pair, m, Mean::new(entries.iter().map(|e| m.of_pair(e))));
        }
        let hists = ByVariant::from_fn(|v| {
            entries.iter().map(|e| e.variants[v].as_ref().and_then(|o| o.act_hist.as_deref())).collect::<Vec<_>>()
        });
        plan.add(Of::Pair, Metric::Dice, DiceOfMeans { hists });
    }
    let mut tests = BTreeMap::new();
    for &m in scope.compared() {
        let both: Vec<Option<(f64, f64)>> = entries
            .iter()
            .map(|e| Some((m.of_variant(e, Variant::Float)?, m.of_variant(e, Variant::Quantized)?)))
            .collect();
        plan.add(Of::Paired(Variant::Float), m, Mean::new(both.iter().map(|p| p.map(|(f, _)| f))));
        plan.add(Of::Paired(Variant::Quantized), m, Mean::new(both.iter().map(|p| p.map(|(_, q)| q))));
        plan.add(Of::Diff, m, Mean::new(both.iter().map(|p| p.map(|(f, q)| q - f))));
        let pairs = both.iter().flatten();
        let test = if m.binary() {
            mcnemar(pairs.map(|&(f, q)| (f > 0.0, q > 0.0)))
        } else {
            wilcoxon(&pairs.map(|&(f, q)| q - f).collect::<Vec<_>>())
        };
        tests.extend(test.map(|t| (m, t)));
    }
    let stats: Vec<&dyn Resampled> = plan.stats.iter().map(|s| s.as_ref()).collect();
    let key = format!("{model}/{}", scope.as_str());
    let values = plan.keys.into_iter().zip(estimate(config, &key, entries.len(), &stats)).collect();
    GroupEstimates { images: entries.len(), values, tests }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paired::{PMethod, Test};
    use crate::stats::{AucObs, ImageObs, PairObs};

    fn obs(top1_correct: bool, iou: f32, infer_ms: f32) -> ImageObs {
        ImageObs {
            top1_correct,
            top5_correct: true,
            infer_ms,
            cam_ms: 0.0,
            iou,
            box_hits: None,
            act_mean: 0.0,
            act_std: 1.0,
            act_sparsity: 0.0,
            act_entropy: 2.0,
            act_hist: None,
        }
    }

    /// Four images: int8 loses image a's top-1, gains nothing; IoU moves by +0.1, +0.1, −0.2, 0.
    fn images() -> BTreeMap<String, ImageEntry> {
        let rows = [
            ("a", true, false, 0.5, 0.6),
            ("b", true, true, 0.2, 0.3),
            ("c", false, false, 0.4, 0.2),
            ("d", true, true, 0.1, 0.1),
        ];
        rows.iter()
            .map(|&(id, f1, q1, fi, qi)| {
                let e = ImageEntry {
                    variants: ByVariant::new(Some(obs(f1, fi, 40.0)), Some(obs(q1, qi, 10.0))),
                    pair: Some(PairObs { rmse: 10.0, rmse_flipped: 20.0 }),
                    perturbation: ByVariant::new(None, (id == "b").then_some(AucObs { deletion: 0.1, insertion: 0.9 })),
                    in_subset: id != "d",
                    baselines: BTreeMap::new(),
                };
                (id.to_string(), e)
            })
            .collect()
    }

    #[test]
    fn a_group_holds_its_scope_and_pairs_its_variants() {
        let config = ReportConfig::default();
        let all = estimate_group(&config, "m", Scope::All, &images());
        assert_eq!(all.images, 4);
        assert_eq!(all.get(Of::Variant(Variant::Float), Metric::Top1Pct).value, Some(75.0));
        assert_eq!(all.get(Of::Variant(Variant::Quantized), Metric::SpeedupVsFloat).value, Some(4.0));
        assert_eq!(all.get(Of::Pair, Metric::Rmse).value, Some(10.0));
        // Float right and int8 wrong once: b = 1, c = 0 → p = 1.
        let t = all.test(Metric::Top1Pct).unwrap();
        assert_eq!((t.test, t.n, t.nonzero, t.statistic, t.p_value), (Test::McNemar, 4, 1, 0.0, 1.0));
        let d = all.get(Of::Diff, Metric::Top1Pct);
        assert_eq!((d.value, d.n), (Some(-25.0), 4));
        // IoU differences (f32 → f64, then subtracted): mean ≈ 0, one zero among four.
        let iou = all.test(Metric::Iou).unwrap();
        assert_eq!((iou.test, iou.nonzero, iou.p_method), (Test::Wilcoxon, 3, PMethod::ExactFlips));
        let diff = all.get(Of::Diff, Metric::Iou);
        let by_hand = [0.6f32 - 0.5, 0.3 - 0.2, 0.2 - 0.4, 0.0].iter().map(|&x| x as f64).sum::<f64>() / 4.0;
        assert!((diff.value.unwrap() - by_hand).abs() < 1e-7, "{diff:?}");
        assert!(diff.lo.unwrap() <= diff.value.unwrap() && diff.value.unwrap() <= diff.hi.unwrap());

        let subset = estimate_group(&config, "m", Scope::Subset, &images());
        assert_eq!((subset.images, subset.get(Of::Variant(Variant::Float), Metric::Top1Pct).value), (3, Some(200.0 / 3.0)));
        let perturbed = estimate_group(&config, "m", Scope::Perturbed, &images());
        assert_eq!(perturbed.images, 1);
        assert_eq!(perturbed.get(Of::Variant(Variant::Quantized), Metric::InsertionAuc).value, Some(0.9f32 as f64));
        // Float has no AUC row: nothing to pair.
        assert_eq!(perturbed.get(Of::Diff, Metric::InsertionAuc).value, None);
        assert_eq!(perturbed.test(Metric::InsertionAuc), None);
        assert_eq!(perturbed.get(Of::Variant(Variant::Float), Metric::Top1Pct), Estimate::default());
    }

    #[test]
    fn table_12_compares_every_per_image_metric_but_the_timings() {
        assert_eq!(COMPARED.len(), 8);
        assert!([Metric::InferMs, Metric::CamMs, Metric::TotalMs].iter().all(|t| !COMPARED.contains(t)));
        assert_eq!(Scope::Perturbed.compared(), AUC_METRICS);
    }

    #[test]
    fn the_draws_are_the_groups_and_repeat() {
        let config = ReportConfig { resamples: 50, ..ReportConfig::default() };
        let a = estimate_group(&config, "m", Scope::All, &images());
        let b = estimate_group(&config, "m", Scope::All, &images());
        let other = estimate_group(&config, "n", Scope::All, &images());
        let iou = |g: &GroupEstimates| g.get(Of::Variant(Variant::Float), Metric::Iou);
        assert_eq!(iou(&a), iou(&b));
        assert_eq!(iou(&a).value, iou(&other).value);
        assert_ne!((iou(&a).lo, iou(&a).hi), (iou(&other).lo, iou(&other).hi), "another pair draws anew");
    }
}
