//! Paired two-sided tests of int8 against float on the same images, as scipy and statsmodels
//! compute them by default: Wilcoxon's signed-rank test for a continuous metric
//! (`scipy.stats.wilcoxon(int8, float)`) and McNemar's exact test for a right/wrong one
//! (`statsmodels`' `mcnemar(table, exact=True)`). No maintained crate has either test, so the
//! ranks, the signed-rank null distribution and the decision between its three ways of
//! computing p are here; the normal and binomial CDFs come from statrs.

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

/// Up to this many pairs, and without zero or tied differences, the signed-rank p is exact
/// (scipy's `method='auto'`).
pub const WILCOXON_EXACT_MAX: usize = 50;
/// Up to this many pairs, zero or tied differences still get an exact p: all 2^n sign flips of
/// the mid-ranks (what scipy's permutation test enumerates when 2^n ≤ its 9,999 resamples).
pub const WILCOXON_FLIPS_MAX: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    Wilcoxon,
    McNemar,
}

impl Test {
    pub fn as_str(self) -> &'static str {
        match self {
            Test::Wilcoxon => "wilcoxon",
            Test::McNemar => "mcnemar",
        }
    }
}

/// How p was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PMethod {
    /// Wilcoxon: the exact null distribution of the signed-rank sum. McNemar: the exact binomial.
    Exact,
    /// Wilcoxon with zero or tied differences, n ≤ 13: every sign flip of the mid-ranks.
    ExactFlips,
    /// Wilcoxon otherwise: normal approximation with the tie correction of the variance and no
    /// continuity correction.
    Normal,
    /// Wilcoxon with every difference zero: nothing to rank, p = 1 for any n.
    AllZero,
}

impl PMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PMethod::Exact => "exact",
            PMethod::ExactFlips => "exact_flips",
            PMethod::Normal => "normal",
            PMethod::AllZero => "all_zero",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    pub test: Test,
    /// Pairs tested (images with both variants).
    pub n: usize,
    /// Wilcoxon: non-zero differences (the ranked ones). McNemar: discordant pairs, b + c.
    pub nonzero: usize,
    /// Wilcoxon: min(W+, W−), scipy's two-sided statistic. McNemar: min(b, c), statsmodels'.
    pub statistic: f64,
    pub p_value: f64,
    pub p_method: PMethod,
}

/// Wilcoxon's signed-rank test on paired differences (int8 − float), two-sided, zeros dropped
/// before ranking (`zero_method='wilcox'`), ties given their mean rank. `None` without pairs.
///
/// p as scipy's default `method='auto'` decides, on n counted with the zeros: exact when
/// n ≤ 50 with no zero and no tie; the exact sign-flip distribution of the mid-ranks when
/// n ≤ 13 otherwise; else the normal approximation. Every difference zero gives p = 1: scipy
/// agrees up to n = 13 and returns NaN (0/0) above, where no evidence of a difference is still
/// what the data say.
pub fn wilcoxon(d: &[f64]) -> Option<TestResult> {
    let n = d.len();
    if n == 0 {
        return None;
    }
    let mut nonzero: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    let m = nonzero.len();
    let result = |statistic, p_value, p_method| TestResult {
        test: Test::Wilcoxon,
        n,
        nonzero: m,
        statistic,
        p_value,
        p_method,
    };
    if m == 0 {
        return Some(result(0.0, 1.0, PMethod::AllZero));
    }
    // Doubled mid-ranks (integers) and the tie groups' sizes.
    let mut ranks2 = vec![0u64; m];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < m {
        let mut end = start + 1;
        while end < m && nonzero[end].abs() == nonzero[start].abs() {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean, (start + 1 + end) / 2.
        ranks2[start..end].fill((start + 1 + end) as u64);
        ties.push((end - start) as f64);
        start = end;
    }
    let plus2: u64 = nonzero.iter().zip(&ranks2).filter(|(x, _)| **x > 0.0).map(|(_, r)| r).sum();
    let total2: u64 = ranks2.iter().sum();
    let (w_plus, w_minus) = (plus2 as f64 / 2.0, (total2 - plus2) as f64 / 2.0);
    let statistic = w_plus.min(w_minus);
    let tied = ties.iter().any(|&t| t > 1.0);
    let exact = if n <= WILCOXON_EXACT_MAX && m == n && !tied {
        Some(PMethod::Exact)
    } else if n <= WILCOXON_FLIPS_MAX {
        Some(PMethod::ExactFlips)
    } else {
        None
    };
    if let Some(method) = exact {
        return Some(result(statistic, sign_flip_p(&ranks2, plus2), method));
    }
    let mf = m as f64;
    let mean = mf * (mf + 1.0) * 0.25;
    let tie_term: f64 = ties.iter().map(|t| t * t * t - t).sum();
    let se = ((mf * (mf + 1.0) * (2.0 * mf + 1.0) - tie_term / 2.0) / 24.0).sqrt();
    let z = (w_plus - mean) / se;
    Some(result(statistic, 2.0 * Normal::standard().cdf(-z.abs()), PMethod::Normal))
}

/// Two-sided p of the observed doubled rank sum `obs2` among all 2^m sign assignments:
/// `min(1, 2 · min(P(S ≤ obs), P(S ≥ obs)))`. Counted in integers (m ≤ 50 keeps every count
/// below 2^53), so p is exact up to the one division.
fn sign_flip_p(ranks2: &[u64], obs2: u64) -> f64 {
    let total: u64 = ranks2.iter().sum();
    let mut ways = vec![0u64; total as usize + 1];
    ways[0] = 1;
    let mut reach = 0;
    for &r in ranks2 {
        let r = r as usize;
        reach += r;
        for s in (r..=reach).rev() {
            ways[s] += ways[s - r];
        }
    }
    let all = 2f64.powi(ranks2.len() as i32);
    let obs = obs2 as usize;
    let below: u64 = ways[..=obs].iter().sum();
    let above: u64 = ways[obs..].iter().sum();
    (2.0 * below.min(above) as f64 / all).min(1.0)
}

/// McNemar's exact test on paired right/wrong outcomes, two-sided: with `b` pairs only float got
/// right and `c` only int8 did, p = min(1, 2 · P(X ≤ min(b, c))) for X ~ Binomial(b + c, 1/2).
/// No discordant pair gives p = 1 (statsmodels' value), and so does |b − c| ≤ 1. `None` without
/// pairs.
pub fn mcnemar(pairs: impl IntoIterator<Item = (bool, bool)>) -> Option<TestResult> {
    let (mut n, mut b, mut c) = (0, 0u64, 0u64);
    for (float, int8) in pairs {
        n += 1;
        b += (float && !int8) as u64;
        c += (!float && int8) as u64;
    }
    if n == 0 {
        return None;
    }
    let k = b.min(c);
    // |b − c| ≤ 1 (no discordant pair included) puts the median of X at k or below, so p is 1
    // exactly; said here because the incomplete beta behind the CDF lands an ulp or two short.
    let p_value = if b.abs_diff(c) <= 1 {
        1.0
    } else {
        let binomial = Binomial::new(0.5, b + c).expect("p = 1/2 is a probability");
        (2.0 * binomial.cdf(k)).min(1.0)
    };
    Some(TestResult {
        test: Test::McNemar,
        n,
        nonzero: (b + c) as usize,
        statistic: k as f64,
        p_value,
        p_method: PMethod::Exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    fn pairs(b: usize, c: usize, agree: usize) -> Vec<(bool, bool)> {
        let mut v = vec![(true, false); b];
        v.extend(vec![(false, true); c]);
        v.extend(vec![(true, true); agree]);
        v
    }

    #[test]
    fn mcnemar_hand_computed() {
        // b = 3, c = 0: 2 · P(X ≤ 0 | 3) = 2 / 8.
        let r = mcnemar(pairs(3, 0, 10)).unwrap();
        assert_eq!((r.n, r.nonzero, r.statistic), (13, 3, 0.0));
        assert!(close(r.p_value, 0.25), "{r:?}");
        // b = 5, c = 1: 2 · (1 + 6) / 64.
        assert!(close(mcnemar(pairs(5, 1, 0)).unwrap().p_value, 14.0 / 64.0));
        // Symmetric in b and c; 2 · P(X ≤ 2 | 4) = 2 · 11/16 > 1 → 1; 2 · P(X ≤ 0 | 1) = 1.
        assert_eq!(mcnemar(pairs(2, 2, 0)).unwrap().p_value, 1.0);
        assert_eq!(mcnemar(pairs(1, 0, 4)).unwrap().p_value, 1.0);
        // b = 3, c = 1: 2 · (1 + 4) / 16.
        assert!(close(mcnemar(pairs(3, 1, 0)).unwrap().p_value, 10.0 / 16.0));
        assert!(close(mcnemar(pairs(0, 3, 0)).unwrap().p_value, 0.25));
        // No discordant pair.
        let r = mcnemar(pairs(0, 0, 7)).unwrap();
        assert_eq!((r.nonzero, r.statistic, r.p_value), (0, 0.0, 1.0));
        assert_eq!(mcnemar(Vec::new()), None);
    }

    #[test]
    fn wilcoxon_exact_hand_computed() {
        // Ranks 1, 2, 3 all positive: W− = 0; P(W+ = 6) = 1/8, two-sided 1/4.
        let r = wilcoxon(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((r.statistic, r.p_method, r.nonzero), (0.0, PMethod::Exact, 3));
        assert!(close(r.p_value, 0.25));
        // d = (−1, 2, 3): W+ = 5, W− = 1; P(W+ ≥ 5) = P(W+ ∈ {5, 6}) = 2/8 → 0.5.
        let r = wilcoxon(&[-1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!(close(r.p_value, 0.5));
    }

    #[test]
    fn wilcoxon_ties_and_zeros_hand_computed() {
        // |d| all tied: mid-rank 2 each, W+ = 4, W− = 2. The doubled rank sum S takes 0, 4, 8, 12
        // with 1, 3, 3, 1 of 8 flips; S = 8: P(S ≥ 8) = 4/8 → p = 1 (scipy: 1.0).
        let r = wilcoxon(&[1.0, 1.0, -1.0]).unwrap();
        assert_eq!((r.statistic, r.p_value, r.p_method), (2.0, 1.0, PMethod::ExactFlips));
        // A zero is dropped before ranking: (0, 0, 1) ranks one positive difference, W− = 0,
        // P(W+ ≥ 1) = 1/2 → p = 1.
        let r = wilcoxon(&[0.0, 0.0, 1.0]).unwrap();
        assert_eq!((r.n, r.nonzero, r.statistic, r.p_value), (3, 1, 0.0, 1.0));
        // (0, 1, 2, 3, 4): ranks 1..4 all positive, P = 1/16 each side → 1/8.
        let r = wilcoxon(&[0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(r.p_method, PMethod::ExactFlips);
        assert!(close(r.p_value, 0.125));
    }

    #[test]
    fn wilcoxon_all_zero_and_empty() {
        for n in [1, 13, 14, 60] {
            let r = wilcoxon(&vec![0.0; n]).unwrap();
            assert_eq!((r.n, r.nonzero, r.statistic, r.p_value, r.p_method), (n, 0, 0.0, 1.0, PMethod::AllZero));
        }
        assert_eq!(wilcoxon(&[]), None);
    }

    #[test]
    fn wilcoxon_normal_hand_computed() {
        // 1..=60, all positive: W+ = 1830, mean 915, variance 60·61·121/24 = 18452.5, no ties.
        let d: Vec<f64> = (1..=60).map(f64::from).collect();
        let r = wilcoxon(&d).unwrap();
        assert_eq!((r.statistic, r.p_method), (0.0, PMethod::Normal));
        let z = 915.0 / 18452.5f64.sqrt();
        assert!(close(r.p_value, 2.0 * Normal::standard().cdf(-z)));
        assert!(r.p_value < 1e-10 && r.p_value > 1e-12, "{}", r.p_value);
        // 51 pairs and no tie is past the exact range; a zero among 20 pairs is past the flips'.
        assert_eq!(wilcoxon(&d[..51]).unwrap().p_method, PMethod::Normal);
        assert_eq!(wilcoxon(&d[..50]).unwrap().p_method, PMethod::Exact);
        let mut with_zero = d[..20].to_vec();
        with_zero[3] = 0.0;
        assert_eq!(wilcoxon(&with_zero).unwrap().p_method, PMethod::Normal);
        assert_eq!(wilcoxon(&with_zero[..13]).unwrap().p_method, PMethod::ExactFlips);
    }
}
