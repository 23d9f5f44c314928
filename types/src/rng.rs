//! The only randomness qcam has: bootstrap resamples (report) and the random pixel order of the
//! deletion/insertion baseline. Both are reproducible outside qcam, number for number: SplitMix64
//! seeded with `seed ^ fnv1a64(key)`, where the key names the group or the image.

/// SplitMix64 (Steele, Lea & Flood 2014; Vigna's `splitmix64.c`): one u64 of state, passes
/// BigCrush, and is five lines in any language, so a test can redraw our numbers in Python. Its
/// output is fixed by its definition, unlike a general-purpose crate's sampling routines, which
/// may change between versions.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(state: u64) -> SplitMix64 {
        SplitMix64(state)
    }

    /// The stream of `key` under `seed`: streams of different keys are independent.
    pub fn keyed(seed: u64, key: &str) -> SplitMix64 {
        SplitMix64(seed ^ fnv1a64(key))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..n` by Lemire's multiply-shift, without rejection: one output per index
    /// (simple to reproduce), at a bias below `n / 2^64`.
    pub fn below(&mut self, n: usize) -> usize {
        scale(self.next_u64(), n)
    }
}

fn scale(x: u64, n: usize) -> usize {
    ((x as u128 * n as u128) >> 64) as usize
}

/// 64-bit FNV-1a of a key: a stable hash (std's `Hasher`s are not promised to be).
pub fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_stream() {
        // rand_xoshiro's `reference` test, from Vigna's splitmix64.c.
        let mut rng = SplitMix64::new(1477776061723855037);
        let expected =
            [1985237415132408290, 2979275885539914483, 13511426838097143398, 8488337342461049707, 15141737807933549159];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn fnv1a64_reference_values() {
        // The FNV test suite's values.
        assert_eq!(fnv1a64(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn an_index_is_the_high_half_of_the_product() {
        // x = 2^63 is half-way: index n/2; x = 2^64 − 1 is the last index.
        for (x, n, want) in [(1 << 63, 10, 5), (u64::MAX, 10, 9), (0, 10, 0), (1 << 63, 1, 0), (3 << 62, 4, 3)] {
            assert_eq!(scale(x, n), want, "x={x} n={n}");
        }
        let mut rng = SplitMix64::new(7);
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
