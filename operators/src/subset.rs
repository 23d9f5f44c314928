//! SPEC §4: the top fraction of images by RMSE per model pair, and the running aggregates, kept
//! with differential dataflow.
//!
//! Every explained (image, pair) enters a collection keyed by pair as one [`Scored`] record, at the
//! time of the epoch it belongs to. Two reductions over that collection give the subset and the
//! aggregates. Differential maintains both as epochs close: an appended shard changes them by its
//! own records only, and once the input is complete the result is exact. A reduction sees its
//! values sorted, and [`Scored`] sorts in subset order, so the ranking and every sum are the same
//! however the input was split across workers, processes or runs.

use serde::{Deserialize, Serialize};

use differential_dataflow::VecCollection;

use types::{AggregateRow, ImageRow, PairRow, Variant};

/// `k = ceil(fraction · n)`, taking the fraction as the decimal it was written as: in binary
/// `0.05 · 300` is `15.000000000000002`, whose plain ceiling would be 16.
pub fn subset_size(n: usize, fraction: f64) -> usize {
    let x = fraction * n as f64;
    let nearest = x.round();
    let k = if (x - nearest).abs() <= 1e-9 * nearest.max(1.0) { nearest } else { x.ceil() };
    (k.max(0.0) as usize).min(n)
}

/// Sort key putting larger RMSE first. RMSE is never negative, and for non-negative floats the bit
/// pattern orders like the value.
pub fn descending(rmse: f32) -> u32 {
    u32::MAX - rmse.max(0.0).to_bits()
}

/// One variant's share of a [`Scored`] record. Floats are kept as bits so the record is `Ord`,
/// which differential needs; the accessors turn them back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VariantScore {
    pub top1_correct: bool,
    pub top5_correct: bool,
    /// The variant's top-1 class on the unperturbed image: deletion/insertion scores it (§5).
    pub target: i32,
    /// Its probability, NaN when there is none: the score of the unperturbed image, which
    /// deletion/insertion then need not compute again.
    target_prob: u32,
    iou: u32,
    /// act_mean, act_std, act_sparsity, act_entropy.
    act: [u64; 4],
    pub cam_h: u32,
    pub cam_w: u32,
    /// The stored h×w map (§3 step 4); deletion/insertion upsamples it (step 5).
    cam_lo: Vec<u32>,
}

impl VariantScore {
    pub fn of(row: &ImageRow) -> VariantScore {
        VariantScore {
            top1_correct: row.top1_correct,
            top5_correct: row.top5_correct,
            target: row.top5.first().copied().unwrap_or(-1),
            target_prob: row.top5_prob.first().copied().unwrap_or(f32::NAN).to_bits(),
            iou: row.iou.to_bits(),
            act: [row.act_mean, row.act_std, row.act_sparsity, row.act_entropy].map(f64::to_bits),
            cam_h: row.cam_h as u32,
            cam_w: row.cam_w as u32,
            cam_lo: row.cam.iter().map(|v| v.to_bits()).collect(),
        }
    }

    pub fn target_prob(&self) -> Option<f32> {
        Some(f32::from_bits(self.target_prob)).filter(|p| p.is_finite())
    }

    pub fn iou(&self) -> f32 {
        f32::from_bits(self.iou)
    }

    pub fn act(&self) -> [f64; 4] {
        self.act.map(f64::from_bits)
    }

    pub fn cam_lo(&self) -> Vec<f32> {
        self.cam_lo.iter().map(|&b| f32::from_bits(b)).collect()
    }
}

/// What selection, the aggregates and deletion/insertion need of one explained (image, pair).
/// Field order is sort order: RMSE descending, then image id ascending (SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scored {
    order: u32,
    pub image_id: String,
    pub shard: String,
    rmse_flipped: u32,
    pub top1_agree: bool,
    /// Float, then quantized.
    pub variants: [VariantScore; 2],
}

impl Scored {
    /// From one image's pair row and its two image rows (float first). `None` when the rows do not
    /// describe one (image, pair), or the RMSE is not a number (it then cannot be ranked).
    pub fn of(pair: &PairRow, images: [&ImageRow; 2]) -> Option<Scored> {
        let [f, q] = images;
        let same = |r: &ImageRow| r.image_id == pair.image_id && r.model == pair.model;
        if !(same(f) && same(q) && f.variant == Variant::Float && q.variant == Variant::Quantized) {
            return None;
        }
        if !pair.rmse.is_finite() {
            return None;
        }
        Some(Scored {
            order: descending(pair.rmse),
            image_id: pair.image_id.clone(),
            shard: f.shard.clone(),
            rmse_flipped: pair.rmse_flipped.to_bits(),
            top1_agree: pair.top1_agree,
            variants: [VariantScore::of(f), VariantScore::of(q)],
        })
    }

    pub fn rmse(&self) -> f32 {
        f32::from_bits(u32::MAX - self.order)
    }

    pub fn rmse_flipped(&self) -> f32 {
        f32::from_bits(self.rmse_flipped)
    }

    pub fn variant(&self, variant: Variant) -> &VariantScore {
        &self.variants[variant as usize]
    }
}

/// Sums over a pair's images, from which [`Totals::rows`] takes the means. `Ord` (floats as bits)
/// because differential stores it as a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Totals {
    pub images: u64,
    pub subset_size: u64,
    /// Per variant: top-1 and top-5 correct counts.
    correct: [[u64; 2]; 2],
    /// Per variant: iou, act_mean, act_std, act_sparsity, act_entropy.
    sums: [[u64; 5]; 2],
    /// rmse, rmse_flipped, top1_agree, subset rmse.
    pair_sums: [u64; 4],
}

impl Totals {
    /// Sums over `sorted` (in [`Scored`] order, so additions happen in one fixed order and the
    /// result does not depend on how the input was split); the first `k` form the subset.
    pub fn of<'a>(sorted: impl IntoIterator<Item = &'a Scored>, k: usize) -> Totals {
        let mut t = Totals::default();
        let mut sums = [[0f64; 5]; 2];
        let mut pair = [0f64; 4];
        for (i, s) in sorted.into_iter().enumerate() {
            t.images += 1;
            for (v, vs) in s.variants.iter().enumerate() {
                t.correct[v][0] += vs.top1_correct as u64;
                t.correct[v][1] += vs.top5_correct as u64;
                let [mean, std, sparsity, entropy] = vs.act();
                for (acc, x) in sums[v].iter_mut().zip([vs.iou() as f64, mean, std, sparsity, entropy]) {
                    *acc += x;
                }
            }
            pair[0] += s.rmse() as f64;
            pair[1] += s.rmse_flipped() as f64;
            pair[2] += s.top1_agree as u64 as f64;
            if i < k {
                pair[3] += s.rmse() as f64;
                t.subset_size += 1;
            }
        }
        t.sums = sums.map(|v| v.map(f64::to_bits));
        t.pair_sums = pair.map(f64::to_bits);
        t
    }

    /// The `aggregates` rows of this state, one per variant.
    pub fn rows(&self, epoch: u64, model: &str) -> [AggregateRow; 2] {
        let n = self.images.max(1) as f64;
        let mean = |bits: u64| f64::from_bits(bits) / n;
        let pair = self.pair_sums;
        Variant::BOTH.map(|variant| {
            let v = variant as usize;
            let s = self.sums[v];
            AggregateRow {
                epoch: epoch as i64,
                model: model.to_string(),
                variant,
                images: self.images as i64,
                top1: self.correct[v][0] as f64 / n,
                top5: self.correct[v][1] as f64 / n,
                mean_iou: mean(s[0]),
                act_mean: mean(s[1]),
                act_std: mean(s[2]),
                act_sparsity: mean(s[3]),
                act_entropy: mean(s[4]),
                mean_rmse: mean(pair[0]),
                mean_rmse_flipped: mean(pair[1]),
                top1_agree: mean(pair[2]),
                subset_size: self.subset_size as i64,
                subset_mean_rmse: f64::from_bits(pair[3]) / self.subset_size.max(1) as f64,
            }
        })
    }
}

/// A record of the ranking: 1-based rank and whether it lies in the subset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ranked {
    pub rank: u32,
    pub in_subset: bool,
    pub scored: Scored,
}

/// The ranking per pair: the subset's `k = subset_size(n, fraction)` records, or every record when
/// `rank_all` (deletion/insertion on all images still needs them dealt out).
pub fn select<'s>(
    scored: VecCollection<'s, u64, (String, Scored)>,
    fraction: f64,
    rank_all: bool,
) -> VecCollection<'s, u64, (String, Ranked)> {
    scored.reduce_named("Select", move |_pair, input, output| {
        let n: isize = input.iter().map(|(_, r)| *r).sum();
        let k = subset_size(n.max(0) as usize, fraction);
        let keep = if rank_all { usize::MAX } else { k };
        // Multiplicities other than one would mean an image entered twice; rank each copy.
        let copies = input.iter().flat_map(|(s, r)| std::iter::repeat_n(*s, (*r).max(0) as usize));
        for (i, s) in copies.take(keep).enumerate() {
            output.push((Ranked { rank: i as u32 + 1, in_subset: i < k, scored: s.clone() }, 1));
        }
    })
}

/// The running [`Totals`] per pair.
pub fn aggregate<'s>(
    scored: VecCollection<'s, u64, (String, Scored)>,
    fraction: f64,
) -> VecCollection<'s, u64, (String, Totals)> {
    scored.reduce_named("Aggregate", move |_pair, input, output| {
        let n: isize = input.iter().map(|(_, r)| *r).sum();
        let copies = input.iter().flat_map(|(s, r)| std::iter::repeat_n(*s, (*r).max(0) as usize));
        output.push((Totals::of(copies, subset_size(n.max(0) as usize, fraction)), 1));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_size_reads_the_fraction_as_written() {
        assert_eq!(subset_size(300, 0.05), 15); // plain f64 ceil gives 16
        assert_eq!(subset_size(50_000, 0.05), 2500);
        assert_eq!(subset_size(301, 0.05), 16); // 15.05 rounds up
        assert_eq!(subset_size(19, 0.05), 1);
        assert_eq!(subset_size(1, 0.05), 1);
        assert_eq!(subset_size(0, 0.05), 0);
        assert_eq!(subset_size(10, 1.0), 10);
    }

    #[test]
    fn descending_orders_larger_rmse_first() {
        let mut v = [0.0f32, 3.5, 1e-6, 200.0, 3.25];
        v.sort_by_key(|&x| descending(x));
        assert_eq!(v, [200.0, 3.5, 3.25, 1e-6, 0.0]);
    }
}
