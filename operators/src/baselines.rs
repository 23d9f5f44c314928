//! The no-model baselines (job section `[baselines]`): maps and pixel orders that ignore the image,
//! so the report can set EigenCAM beside what they score. A WSOL or deletion/insertion number is
//! worth something only by how far it beats these.
//!
//! * `gaussian`: a centred isotropic Gaussian, min-max scaled to [0, 1] like a CAM (SPEC §3), and
//!   scored exactly as a CAM is: WSOL as [`wsol::localize`] (the map swept once per run,
//!   [`Gaussian::localize`]), deletion/insertion through [`pixel_order`] (its many exact ties,
//!   pixels at one distance, go by row-major index).
//! * `full`: the whole crop as the box, at every threshold (WSOL).
//! * `random`: a uniformly random pixel order per image (deletion/insertion), seeded so that a
//!   rerun and a Python reader draw the same one.

use std::cell::RefCell;
use std::rc::Rc;

use types::rng::SplitMix64;
use types::BoxXyxy;

use crate::perturb::pixel_order;
use crate::wsol::{self, Localization, MapBoxes, CURVE_LEN};

/// The centred Gaussian on a `crop × crop` grid, `σ = sigma · crop`, centre `((crop − 1)/2,
/// (crop − 1)/2)`, min-max scaled to [0, 1]; row-major. Computed in f64, stored as f32 as a CAM is.
pub fn gaussian_map(crop: usize, sigma: f64) -> Vec<f32> {
    let c = (crop as f64 - 1.0) / 2.0;
    let s = sigma * crop as f64;
    let g: Vec<f64> = (0..crop * crop)
        .map(|i| {
            let (x, y) = ((i % crop) as f64 - c, (i / crop) as f64 - c);
            (-(x * x + y * y) / (2.0 * s * s)).exp()
        })
        .collect();
    let (lo, hi) = g.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = hi - lo;
    g.iter().map(|&v| if span > 0.0 { ((v - lo) / span) as f32 } else { 1.0 }).collect()
}

/// The whole crop, inclusive corners (SPEC §6).
pub fn full_box(crop: usize) -> BoxXyxy {
    let last = crop as i32 - 1;
    BoxXyxy::new(0, 0, last, last)
}

/// WSOL of the whole-crop box: the same box at every threshold, so the curve is flat at its IoU
/// (all zero without ground truth, as a CAM's).
pub fn full_localization(crop: usize, gt: &[BoxXyxy]) -> Localization {
    let bbox = full_box(crop);
    let iou = wsol::max_iou(bbox, gt);
    Localization { bbox, iou, iou_curve: vec![iou; CURVE_LEN] }
}

/// The centred Gaussian baseline of one (crop, σ): its map (WSOL) and its deletion/insertion
/// order, most central first, ties by row-major index.
#[derive(Debug)]
pub struct Gaussian {
    pub crop: usize,
    pub map: Vec<f32>,
    pub order: Vec<u32>,
    /// The map's components, swept for the last WSOL threshold asked: every image has the same
    /// map, so only the scoring against its boxes is per image.
    swept: RefCell<Option<(u32, MapBoxes)>>,
}

impl Gaussian {
    /// WSOL of the map, exactly as a CAM's ([`wsol::localize`]), against one image's boxes.
    pub fn localize(&self, gt: &[BoxXyxy], threshold: f32) -> Localization {
        let bits = threshold.to_bits();
        match &mut *self.swept.borrow_mut() {
            Some((t, swept)) if *t == bits => swept.localize(gt),
            slot => slot.insert((bits, MapBoxes::of(&self.map, self.crop, threshold))).1.localize(gt),
        }
    }
}

thread_local! {
    /// The last Gaussian made on this thread: every image of a run uses the same one, so WSOL and
    /// deletion/insertion share it rather than each rebuild and sort 50 k pixels per image.
    static GAUSSIAN: RefCell<Option<(GaussianKey, Rc<Gaussian>)>> = const { RefCell::new(None) };
}

/// (crop, σ's bits): what a cached [`Gaussian`] was made for.
type GaussianKey = (usize, u64);

/// The Gaussian baseline for (`crop`, `sigma`), made once per thread.
pub fn gaussian(crop: usize, sigma: f64) -> Rc<Gaussian> {
    let key = (crop, sigma.to_bits());
    GAUSSIAN.with_borrow_mut(|cache| match cache {
        Some((k, g)) if *k == key => g.clone(),
        _ => {
            let map = gaussian_map(crop, sigma);
            let order = pixel_order(&map);
            cache.insert((key, Rc::new(Gaussian { crop, map, order, swept: RefCell::new(None) }))).1.clone()
        }
    })
}

/// A uniformly random order of `pixels` indices for one image: Fisher–Yates (Durstenfeld: for i
/// from n − 1 down to 1, swap i with `j = below(i + 1)`) driven by SplitMix64 seeded with
/// `seed ^ fnv1a64(image_id)` ([`types::rng`]). The same image gets the same order in every
/// variant, pair, worker and rerun.
pub fn random_order(pixels: usize, seed: u64, image_id: &str) -> Vec<u32> {
    assert!(pixels <= u32::MAX as usize, "{pixels} pixels, more than u32 indexes");
    let mut rng = SplitMix64::keyed(seed, image_id);
    let mut order: Vec<u32> = (0..pixels as u32).collect();
    for i in (1..pixels).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gaussian_peaks_in_the_middle_and_is_symmetric() {
        let m = gaussian_map(5, 0.25);
        assert_eq!(m[12], 1.0, "odd crop: the centre pixel is the maximum");
        assert_eq!(m[0], 0.0, "the corners are the minimum");
        for (a, b) in [(0, 4), (0, 20), (7, 17), (11, 13), (2, 10)] {
            assert_eq!(m[a], m[b], "pixels {a} and {b} are as far from the centre");
        }
        // By hand: σ = 1.25, pixel (1, 2) is 1 from the centre: (e^(−1/3.125) − e^(−8/3.125)) / (1 − e^(−8/3.125)).
        let (near, far) = ((-1.0f64 / 3.125).exp(), (-8.0f64 / 3.125).exp());
        assert_eq!(m[11], ((near - far) / (1.0 - far)) as f32);
        // An even crop has four central maxima.
        let m = gaussian_map(4, 0.3);
        assert!([5, 6, 9, 10].iter().all(|&i| m[i] == 1.0));
    }

    #[test]
    fn the_shared_gaussian_is_the_map_and_order_made_alone_and_follows_its_key() {
        let a = gaussian(6, 0.25);
        let map = gaussian_map(6, 0.25);
        assert_eq!((&a.map, &a.order), (&map, &pixel_order(&map)));
        assert!(Rc::ptr_eq(&a, &gaussian(6, 0.25)), "the same key is made once");
        let b = gaussian(6, 0.3);
        assert_eq!(b.map, gaussian_map(6, 0.3), "another σ is another map");
        assert_eq!(gaussian(5, 0.3).order.len(), 25, "another crop is another grid");
    }

    #[test]
    fn the_shared_gaussian_localizes_as_its_map_does_and_follows_the_threshold() {
        let g = gaussian(24, 0.25);
        let cases = [vec![BoxXyxy::new(2, 3, 17, 20)], vec![], vec![BoxXyxy::new(0, 0, 5, 5), BoxXyxy::new(8, 6, 15, 18)]];
        // 0.2 again after 0.7: the cache is swept again for each change of threshold.
        for threshold in [0.2f32, 0.7, 0.2] {
            for gt in &cases {
                assert_eq!(g.localize(gt, threshold), wsol::localize(&g.map, 24, gt, threshold), "τ {threshold}, gt {gt:?}");
            }
        }
        assert_ne!(g.localize(&cases[0], 0.2).bbox, g.localize(&cases[0], 0.7).bbox, "the box depends on the threshold");
    }

    #[test]
    fn the_gaussian_order_starts_central_and_breaks_ties_by_index() {
        let order = &gaussian(4, 0.3).order;
        assert_eq!(&order[..4], &[5, 6, 9, 10]);
        assert_eq!(&order[12..], &[0, 3, 12, 15]);
    }

    #[test]
    fn the_full_box_scores_its_iou_at_every_threshold() {
        // Ground truth (0,0)-(4,9) in a 10×10 crop: 50 of 100 pixels.
        let loc = full_localization(10, &[BoxXyxy::new(0, 0, 4, 9)]);
        assert_eq!((loc.bbox, loc.iou), (BoxXyxy::new(0, 0, 9, 9), 0.5));
        assert!(loc.iou_curve.iter().all(|&v| v == 0.5) && loc.iou_curve.len() == CURVE_LEN);
        assert_eq!(full_localization(10, &[]).iou_curve, vec![0.0; CURVE_LEN]);
    }

    #[test]
    fn a_random_order_is_a_permutation_that_repeats_per_image() {
        let a = random_order(1000, 7, "ILSVRC2012_val_00000001");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_eq!(a, random_order(1000, 7, "ILSVRC2012_val_00000001"));
        assert_ne!(a, random_order(1000, 7, "ILSVRC2012_val_00000002"));
        assert_ne!(a, random_order(1000, 8, "ILSVRC2012_val_00000001"));
        // Fisher–Yates by hand for n = 3: i = 2 swaps with below(3), then i = 1 with below(2).
        let mut rng = SplitMix64::keyed(7, "x");
        let mut want = [0u32, 1, 2];
        want.swap(2, rng.below(3));
        want.swap(1, rng.below(2));
        assert_eq!(random_order(3, 7, "x"), want);
    }
}
