"""The no-model baselines, written from their definitions (README, Output: `wsol`, `perturbation`)
with numpy and plain Python, not from qcam's code: the centred Gaussian map, the whole-crop box,
and the seeded random pixel order (SplitMix64 + FNV-1a + Fisher-Yates)."""
import numpy as np

M64 = (1 << 64) - 1


def gaussian_map(crop, sigma):
    """exp(-d^2 / (2 (sigma*crop)^2)) about ((crop-1)/2, (crop-1)/2), min-max scaled, as float32."""
    c = (crop - 1) / 2.0
    s = sigma * crop
    y, x = np.mgrid[0:crop, 0:crop].astype(np.float64)
    g = np.exp(-((x - c) * (x - c) + (y - c) * (y - c)) / (2.0 * s * s))
    return ((g - g.min()) / (g.max() - g.min())).astype(np.float32)


def full_box(crop):
    return [0, 0, crop - 1, crop - 1]


def fnv1a64(key):
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def random_order(n, seed, key):
    """Fisher-Yates from the end; index j = (x * (i+1)) >> 64 for SplitMix64's next output x."""
    state = (seed ^ fnv1a64(key)) & M64
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        j = (z * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return np.array(order, dtype=np.int64)


def rank_map(order):
    """A map whose stable descending argsort is `order` (first pixel highest)."""
    m = np.empty(len(order), dtype=np.float64)
    m[order] = np.arange(len(order), 0, -1)
    return m
