//! Percentile bootstrap over images: the interval printed next to every mean of the report.
//!
//! The draws are reproducible outside qcam, number for number (README, "How to read an
//! interval"): group key `K` (`<pair>/<scope>`), stream seed `seed ^ fnv1a64(K)`, SplitMix64 from
//! that state, and resample `r`'s `n` indices are the next `n` outputs `x` mapped to
//! `(x · n) >> 64` (128-bit product). No global RNG and no clock: the same run and configuration
//! give the same intervals, byte for byte. The generator is `types::rng`.

pub use types::ReportConfig;
use types::rng::SplitMix64;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("field `report.confidence`: {0} is not in (0, 1)")]
    Confidence(f64),
    #[error("field `report`: {0}")]
    Parse(String),
}

/// What serde cannot check: the confidence is a probability strictly between 0 and 1.
pub fn validate(config: &ReportConfig) -> Result<(), ConfigError> {
    if config.confidence > 0.0 && config.confidence < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::Confidence(config.confidence))
    }
}

/// The `report` section of a job as run.json records it; `None` (an older run, or a job
/// without the section) gives the defaults.
pub fn config_from_job(section: Option<&serde_json::Value>) -> Result<ReportConfig, ConfigError> {
    let config = match section {
        None => ReportConfig::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| ConfigError::Parse(e.to_string()))?,
    };
    validate(&config)?;
    Ok(config)
}

/// The resamples of one group of `n` images, as how many times each image is drawn.
pub(crate) struct Draws {
    rng: SplitMix64,
    n: usize,
}

impl Draws {
    pub(crate) fn new(seed: u64, key: &str, n: usize) -> Draws {
        Draws { rng: SplitMix64::keyed(seed, key), n }
    }

    /// The next resample's multiplicities (`counts.len() == n`).
    pub(crate) fn next_counts(&mut self, counts: &mut [u32]) {
        assert_eq!(counts.len(), self.n);
        counts.fill(0);
        for _ in 0..self.n {
            counts[self.rng.below(self.n)] += 1;
        }
    }
}

/// numpy's default (`linear`) quantile of sorted values, `q` in [0, 1]: what
/// `scipy.stats.bootstrap(method='percentile')` takes of its bootstrap distribution.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = q * last as f64;
    let (i, t) = (h.floor() as usize, h - h.floor());
    let (a, b) = (sorted[i.min(last)], sorted[(i + 1).min(last)]);
    // numpy's _lerp: from the nearer end, so t = 1 gives b exactly.
    Some(if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t })
}

/// A mean (or other statistic over images) and its percentile interval; `None` where there is
/// nothing to estimate from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    pub value: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// Images the statistic is over.
    pub n: usize,
}

/// A statistic over the images of a group, as a function of how many times each image is drawn
/// (all ones for the estimate itself). `None`: not defined on this draw (no image has the value).
pub(crate) trait Resampled {
    fn at(&self, counts: &[u32]) -> Option<f64>;
    /// Images of the group that have the values it is computed from.
    fn images(&self) -> usize;
}

/// Every statistic of one group from one set of draws: the images move together across
/// statistics, so both variants of an image (and the pair's own numbers) are resampled as one.
/// A resample on which a statistic is undefined is left out of that statistic's distribution.
pub(crate) fn estimate(config: &ReportConfig, key: &str, n: usize, stats: &[&dyn Resampled]) -> Vec<Estimate> {
    let ones = vec![1u32; n];
    let values: Vec<Option<f64>> = stats.iter().map(|s| s.at(&ones)).collect();
    let mut dists: Vec<Vec<f64>> = vec![Vec::with_capacity(config.resamples); stats.len()];
    if n > 0 {
        let mut draws = Draws::new(config.seed, key, n);
        let mut counts = vec![0u32; n];
        for _ in 0..config.resamples {
            draws.next_counts(&mut counts);
            for (s, dist) in stats.iter().zip(&mut dists) {
                dist.extend(s.at(&counts));
            }
        }
    }
    // scipy's alpha, computed the same way, so the quantile positions match to the last bit.
    let alpha = (1.0 - config.confidence) / 2.0;
    values
        .into_iter()
        .zip(dists)
        .zip(stats)
        .map(|((value, mut dist), s)| {
            dist.sort_by(f64::total_cmp);
            let bound = |q| value.and(quantile_sorted(&dist, q));
            Estimate { value, lo: bound(alpha), hi: bound(1.0 - alpha), n: s.images() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_to_n_and_repeat_with_the_seed() {
        let draw = |seed, key| {
            let mut d = Draws::new(seed, key, 5);
            let mut c = vec![0; 5];
            (0..3).map(|_| { d.next_counts(&mut c); c.clone() }).collect::<Vec<_>>()
        };
        let a = draw(1, "m/all");
        assert!(a.iter().all(|c| c.iter().sum::<u32>() == 5));
        assert_eq!(a, draw(1, "m/all"));
        assert_ne!(a, draw(2, "m/all"));
        assert_ne!(a, draw(1, "m/subset"));
    }

    #[test]
    fn quantile_is_numpys_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&v, 0.25), Some(2.0));
        // h = 0.1 · 4 = 0.4: 1 + 0.4 · (2 − 1).
        assert!((quantile_sorted(&v, 0.1).unwrap() - 1.4).abs() < 1e-15);
        assert_eq!(quantile_sorted(&v, 1.0), Some(5.0));
        assert_eq!(quantile_sorted(&[3.0], 0.975), Some(3.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    struct MeanOf(Vec<f64>);
    impl Resampled for MeanOf {
        fn images(&self) -> usize {
            self.0.len()
        }

        fn at(&self, counts: &[u32]) -> Option<f64> {
            let n: u32 = counts.iter().sum();
            (n > 0).then(|| counts.iter().zip(&self.0).map(|(&c, x)| c as f64 * x).sum::<f64>() / n as f64)
        }
    }

    #[test]
    fn constant_data_give_a_point_interval_and_no_images_give_nothing() {
        let config = ReportConfig::default();
        let constant = MeanOf(vec![2.5; 7]);
        let point = Estimate { value: Some(2.5), lo: None, hi: None, n: 7 };
        assert_eq!(estimate(&config, "k", 7, &[&constant]), [Estimate { lo: Some(2.5), hi: Some(2.5), ..point }]);
        assert_eq!(estimate(&config, "k", 0, &[&MeanOf(vec![])]), [Estimate::default()]);
        let off = ReportConfig { resamples: 0, ..ReportConfig::default() };
        assert_eq!(estimate(&off, "k", 7, &[&constant]), [point]);
    }

    #[test]
    fn interval_holds_the_mean_of_skewed_data() {
        let data = MeanOf((0..40).map(|i| if i % 10 == 0 { 10.0 } else { 0.0 }).collect());
        let [e] = estimate(&ReportConfig::default(), "k", 40, &[&data])[..] else { unreachable!() };
        let (lo, hi) = (e.lo.unwrap(), e.hi.unwrap());
        assert_eq!(e.value, Some(1.0));
        assert!((0.0..1.0).contains(&lo) && 1.0 < hi && hi <= 10.0, "{e:?}");
    }

    #[test]
    fn config_defaults_and_refusals() {
        assert_eq!(config_from_job(None), Ok(ReportConfig::default()));
        let partial = serde_json::json!({"resamples": 200});
        assert_eq!(config_from_job(Some(&partial)).unwrap().resamples, 200);
        assert_eq!(config_from_job(Some(&partial)).unwrap().seed, 0x5143_414D);
        let unknown = serde_json::json!({"resample": 200});
        assert!(matches!(config_from_job(Some(&unknown)), Err(ConfigError::Parse(m)) if m.contains("resample")));
        let bad = serde_json::json!({"confidence": 95});
        assert_eq!(config_from_job(Some(&bad)), Err(ConfigError::Confidence(95.0)));
    }
}
