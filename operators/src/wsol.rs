//! Weakly-supervised object localization from a CAM (SPEC §6): threshold the 8-bit map, take
//! 8-connected components, box them, and score boxes against ground truth with IoU
//! (wsolevaluation's MaxBoxAccV2 protocol, but with connected components instead of contours and
//! inclusive box corners throughout).

use serde::{Deserialize, Serialize};

use types::BoxXyxy;

/// Thresholds of the IoU curve: τ = j/100, j = 0..99.
pub const CURVE_LEN: usize = 100;
/// The IoU thresholds δ that MaxBoxAccV2 averages over.
pub const IOU_DELTAS: [f32; 3] = [0.3, 0.5, 0.7];
/// IoU needed for a correct localization in top-1 loc.
pub const TOP1_LOC_IOU: f32 = 0.5;

/// `g = floor(255 · cam)` as uint8 (wsolevaluation's `(scoremap * 255).astype(np.uint8)`); the
/// product is taken in f32 as numpy does for a float32 map, and saturates outside [0, 1].
pub fn to_levels_floor(cam: &[f32]) -> Vec<u8> {
    // `as u8` truncates and saturates (NaN → 0): for a product ≥ 0 truncation is the floor, and
    // one in (−1, 0) floors to −1, which the clamp made 0 anyway. Spelled this way it needs no
    // `floorf` call per pixel (x86-64's baseline has no SSE4.1 rounding).
    cam.iter().map(|&x| (255.0f32 * x) as u8).collect()
}

/// The cut `floor(τ · max_g)`: the mask is `g > cut`.
///
/// The small slack absorbs the representation error of decimal thresholds: 0.7 as f32 is
/// 0.69999999, so `0.7f32 · 100` would floor to 69 instead of 70. Thresholds with more than four
/// decimals that land within 1e-4 below an integer are therefore rounded up (none are used).
pub fn cut_level(tau: f64, max_g: u8) -> u8 {
    (tau * max_g as f64 + 1e-4).floor().clamp(0.0, 255.0) as u8
}

/// The cut of curve point j (τ = j/100) in exact integer arithmetic; equals `cut_level(j/100, m)`.
fn curve_cut(j: usize, max_g: u8) -> u8 {
    (j * max_g as usize / 100) as u8
}

/// One 8-connected component of a thresholded map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub pixels: u32,
    /// Inclusive corners; x is the column, y the row.
    pub bbox: BoxXyxy,
}

/// 8-connected components of a row-major `width × height` mask, in the order a row-major scan
/// first meets them (the usual labelling order, and what ties in size are broken by).
pub fn components_of_mask(mask: &[bool], width: usize, height: usize) -> Vec<Component> {
    assert_eq!(mask.len(), width * height, "mask length {} is not {}×{}", mask.len(), width, height);
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut n, mut bx) = (0u32, BoxXyxy::new(i32::MAX, i32::MAX, i32::MIN, i32::MIN));
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % width) as i32, (i / width) as i32);
            n += 1;
            bx = BoxXyxy::new(bx.x0.min(x), bx.y0.min(y), bx.x1.max(x), bx.y1.max(y));
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as i32 || ny >= height as i32 {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(Component { pixels: n, bbox: bx });
    }
    out
}

/// Components of `g > floor(τ · max g)` for a `size × size` CAM in [0, 1].
pub fn components(cam: &[f32], size: usize, tau: f32) -> Vec<Component> {
    let g = to_levels_floor(cam);
    let cut = cut_level(tau as f64, g.iter().copied().max().unwrap_or(0));
    let mask: Vec<bool> = g.iter().map(|&v| v > cut).collect();
    components_of_mask(&mask, size, size)
}

/// The largest component by pixel count; among equal sizes the first in row-major scan order.
pub fn largest(components: &[Component]) -> Option<Component> {
    // Only a strictly larger component replaces the current best, so ties keep the earliest.
    components.iter().fold(None, |best: Option<Component>, c| match best {
        Some(b) if b.pixels >= c.pixels => Some(b),
        _ => Some(*c),
    })
}

/// Intersection over union with inclusive corners: area = (x1 − x0 + 1)(y1 − y0 + 1).
pub fn iou(a: BoxXyxy, b: BoxXyxy) -> f32 {
    let area = |r: BoxXyxy| ((r.x1 - r.x0 + 1).max(0) as i64) * ((r.y1 - r.y0 + 1).max(0) as i64);
    let iw = (a.x1.min(b.x1) - a.x0.max(b.x0) + 1).max(0) as i64;
    let ih = (a.y1.min(b.y1) - a.y0.max(b.y0) + 1).max(0) as i64;
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union <= 0 {
        return 0.0;
    }
    (inter as f64 / union as f64) as f32
}

/// Best IoU of one box against any ground-truth box (0 when there are none).
pub fn max_iou(b: BoxXyxy, gt: &[BoxXyxy]) -> f32 {
    gt.iter().map(|&t| iou(b, t)).fold(0.0, f32::max)
}

/// One CAM's localization result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Localization {
    /// Largest component's box at τ = `threshold`; `BoxXyxy::EMPTY` when the mask is empty.
    pub bbox: BoxXyxy,
    /// Its max IoU over the ground truth; 0 when there is no component or no ground truth (the
    /// empty box is *not* scored as the 1×1 box at the origin).
    pub iou: f32,
    /// `iou_curve[j]` at τ = j/100: max IoU over all components × all ground-truth boxes; all zero
    /// without ground truth.
    pub iou_curve: Vec<f32>,
}

/// Localize a `size × size` CAM in [0, 1] against ground-truth boxes in the same frame.
///
/// The masks at decreasing cuts are nested, so one sweep does everything: pixels join a
/// union-find level by level (255 down to 1), each root keeping its component's box, size and
/// first pixel in scan order; the live components are scored whenever the cut of a curve point is
/// reached, and the box is taken at the cut of `threshold`. The result equals labelling every mask
/// on its own (`components_of_mask`, kept as the reference the tests compare with).
pub fn localize(cam: &[f32], size: usize, gt: &[BoxXyxy], threshold: f32) -> Localization {
    let mut score_at = [0.0f32; 256];
    // Without ground truth the curve is all zero: no cut needs scoring.
    let swept = sweep(cam, size, threshold, !gt.is_empty(), |cut, uf| {
        score_at[cut as usize] = uf.live_boxes().map(|b| max_iou(b, gt)).fold(0.0, f32::max);
    });
    swept.localization(gt, |cut| score_at[cut as usize])
}

/// What [`localize`] finds in a map before it looks at any ground truth: the box at `threshold`
/// and the live components' boxes at each cut of the curve. A map every image shares (the Gaussian
/// baseline) is swept once and scored against each image's boxes with [`MapBoxes::localize`], for
/// the same result as [`localize`]. Meant for maps of few components: it keeps every live box of
/// up to 100 cuts.
#[derive(Clone, Debug, PartialEq)]
pub struct MapBoxes {
    swept: Swept,
    /// Per cut the curve needs: the cut and its live boxes, a range of `boxes`.
    cuts: Vec<(u8, std::ops::Range<usize>)>,
    boxes: Vec<BoxXyxy>,
}

impl MapBoxes {
    pub fn of(cam: &[f32], size: usize, threshold: f32) -> MapBoxes {
        let (mut cuts, mut boxes) = (Vec::new(), Vec::new());
        let swept = sweep(cam, size, threshold, true, |cut, uf| {
            let from = boxes.len();
            boxes.extend(uf.live_boxes());
            cuts.push((cut, from..boxes.len()));
        });
        MapBoxes { swept, cuts, boxes }
    }

    /// [`localize`] of the swept map against `gt`.
    pub fn localize(&self, gt: &[BoxXyxy]) -> Localization {
        let mut score_at = [0.0f32; 256];
        for (cut, range) in &self.cuts {
            score_at[*cut as usize] = self.boxes[range.clone()].iter().map(|&b| max_iou(b, gt)).fold(0.0, f32::max);
        }
        self.swept.localization(gt, |cut| score_at[cut as usize])
    }
}

/// The ground-truth-free result of a sweep: the map's top level and the box at the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Swept {
    max_g: u8,
    /// `None` when the mask at the threshold is empty (or the map is all zero).
    bbox: Option<BoxXyxy>,
}

impl Swept {
    /// The curve from `score_at(cut)` (the best IoU of the live components at that cut), and the box
    /// scored against `gt`.
    fn localization(&self, gt: &[BoxXyxy], score_at: impl Fn(u8) -> f32) -> Localization {
        let mut iou_curve = vec![0.0f32; CURVE_LEN];
        if self.max_g == 0 {
            return Localization { bbox: BoxXyxy::EMPTY, iou: 0.0, iou_curve };
        }
        for (j, v) in iou_curve.iter_mut().enumerate() {
            *v = score_at(curve_cut(j, self.max_g));
        }
        match self.bbox {
            Some(b) => Localization { bbox: b, iou: max_iou(b, gt), iou_curve },
            None => Localization { bbox: BoxXyxy::EMPTY, iou: 0.0, iou_curve },
        }
    }
}

/// The sweep behind [`localize`]: pixels join the union-find level by level, and `at_cut(cut, uf)`
/// sees the components of the mask `g > cut` at every cut of the curve (when `curve`).
fn sweep(cam: &[f32], size: usize, threshold: f32, curve: bool, mut at_cut: impl FnMut(u8, &BoxUnionFind)) -> Swept {
    assert_eq!(cam.len(), size * size, "cam length {} is not {}²", cam.len(), size);
    let g = to_levels_floor(cam);
    let max_g = g.iter().copied().max().unwrap_or(0);
    if max_g == 0 {
        return Swept { max_g, bbox: None };
    }
    let mut needed = [false; 256];
    if curve {
        for j in 0..CURVE_LEN {
            needed[curve_cut(j, max_g) as usize] = true;
        }
    }
    let box_cut = cut_level(threshold as f64, max_g) as usize;
    // A cut ≥ max_g leaves the mask empty: no box.
    let mut bbox = None;
    let by_level = pixels_by_level(&g, size);
    BoxUnionFind::with(size, |uf| {
        for cut in (0..max_g as usize).rev() {
            // State after this level's additions = the mask g > cut.
            for &xy in by_level.level(cut + 1) {
                uf.activate((xy & 0xffff) as usize, (xy >> 16) as usize);
            }
            if needed[cut] {
                at_cut(cut as u8, uf);
            }
            if cut == box_cut {
                bbox = uf.largest();
            }
        }
    });
    Swept { max_g, bbox }
}

/// Pixels bucketed by level (a counting sort), each as `x | y << 16`.
struct LevelBuckets {
    start: [usize; 257],
    xy: Vec<u32>,
}

impl LevelBuckets {
    fn level(&self, level: usize) -> &[u32] {
        &self.xy[self.start[level]..self.start[level + 1]]
    }
}

fn pixels_by_level(g: &[u8], size: usize) -> LevelBuckets {
    assert!(size < 1 << 16, "maps up to 65535 pixels a side");
    let mut start = [0usize; 257];
    for &v in g {
        start[v as usize + 1] += 1;
    }
    for l in 0..256 {
        start[l + 1] += start[l];
    }
    let mut xy = vec![0u32; g.len()];
    let mut fill = start;
    for (y, row) in g.chunks_exact(size).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            xy[fill[v as usize]] = x as u32 | (y as u32) << 16;
            fill[v as usize] += 1;
        }
    }
    LevelBuckets { start, xy }
}

/// Union-find over the pixels of a `size × size` map, on a grid padded by one inactive pixel all
/// round so the 8 neighbours of any pixel are fixed offsets with no bounds checks. Each root keeps
/// its component's box, pixel count and first pixel in row-major scan order (the tie-break of
/// [`largest`]); `live` lists the roots.
struct BoxUnionFind {
    /// Padded row length, `size + 2`.
    stride: usize,
    /// `INACTIVE` until the pixel is added. Apart from `node` because the neighbour tests read it
    /// for three adjacent pixels at a time.
    parent: Vec<u32>,
    node: Vec<Node>,
    /// Current roots.
    live: Vec<u32>,
}

/// What a root knows of its component, in one cache line's half: adding a pixel or joining two
/// components touches one or two lines instead of four arrays (a sweep is bound by these misses).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Node {
    bbox: BoxXyxy,
    pixels: u32,
    first: u32,
    /// The root's position in `live` (for O(1) removal).
    pos: u32,
}

const INACTIVE: u32 = u32::MAX;
const UNSET: Node = Node { bbox: BoxXyxy::EMPTY, pixels: 0, first: 0, pos: 0 };

thread_local! {
    /// Each thread's union-find, reused by its sweeps: a 224² map's arrays are 1.8 MB, and
    /// allocating and filling them for every map was a tenth of a sweep.
    static UNION_FIND: std::cell::RefCell<BoxUnionFind> = std::cell::RefCell::new(BoxUnionFind::new(0));
}

impl BoxUnionFind {
    fn new(size: usize) -> Self {
        let stride = size + 2;
        let n = stride * stride;
        BoxUnionFind { stride, parent: vec![INACTIVE; n], node: vec![UNSET; n], live: Vec::new() }
    }

    /// Runs `f` on an empty union-find for a `size × size` map: the thread's own, or a new one when
    /// a sweep is already using it. Only `parent` and `live` need clearing: a pixel's node is
    /// written when it is added, before anything reads it.
    fn with<R>(size: usize, f: impl FnOnce(&mut BoxUnionFind) -> R) -> R {
        UNION_FIND.with(|cell| match cell.try_borrow_mut() {
            Ok(mut uf) => {
                if uf.stride == size + 2 {
                    uf.parent.fill(INACTIVE);
                    uf.live.clear();
                } else {
                    *uf = BoxUnionFind::new(size);
                }
                f(&mut uf)
            }
            Err(_) => f(&mut BoxUnionFind::new(size)),
        })
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] as usize != i {
            let gp = self.parent[self.parent[i] as usize];
            self.parent[i] = gp; // path halving
            i = gp as usize;
        }
        i
    }

    fn activate(&mut self, x: usize, y: usize) {
        let s = self.stride;
        let i = (y + 1) * s + x + 1;
        // The 8 neighbours in ring order. Ring neighbours touch each other, so a run of active ones
        // was joined when the later of them was added: one find per run is enough.
        let ring = [i - s - 1, i - s, i - s + 1, i + 1, i + s + 1, i + s, i + s - 1, i - 1];
        let mut active = [false; 8];
        for (a, &j) in active.iter_mut().zip(&ring) {
            *a = self.parent[j] != INACTIVE;
        }
        let (xi, yi) = (x as i32, y as i32);
        let mut root = None;
        for k in 0..8 {
            // A run starts where an active neighbour follows an inactive one; all eight active
            // make one run with no start, taken at 0.
            if active[k] && (!active[(k + 7) % 8] || (k == 0 && active.iter().all(|&a| a))) {
                let rj = self.find(ring[k]);
                root = Some(match root {
                    None => {
                        // The pixel joins its first neighbour's component directly (a single pixel
                        // is never the larger side): its own node is never written.
                        self.parent[i] = rj as u32;
                        let n = &mut self.node[rj];
                        let b = n.bbox;
                        n.bbox = BoxXyxy::new(b.x0.min(xi), b.y0.min(yi), b.x1.max(xi), b.y1.max(yi));
                        n.pixels += 1;
                        n.first = n.first.min((y * (s - 2) + x) as u32);
                        rj
                    }
                    Some(r) if r != rj => self.union_roots(r, rj),
                    Some(r) => r,
                });
            }
        }
        if root.is_none() {
            self.parent[i] = i as u32;
            self.node[i] = Node { bbox: BoxXyxy::new(xi, yi, xi, yi), pixels: 1, first: (y * (s - 2) + x) as u32, pos: self.live.len() as u32 };
            self.live.push(i as u32);
        }
    }

    /// Joins two distinct roots (the smaller component under the larger); returns the new root.
    fn union_roots(&mut self, a: usize, b: usize) -> usize {
        let (na, nb) = (self.node[a], self.node[b]);
        let (keep, gone, k, g) = if na.pixels >= nb.pixels { (a, b, na, nb) } else { (b, a, nb, na) };
        self.parent[gone] = keep as u32;
        let (p, q) = (k.bbox, g.bbox);
        self.node[keep] = Node {
            bbox: BoxXyxy::new(p.x0.min(q.x0), p.y0.min(q.y0), p.x1.max(q.x1), p.y1.max(q.y1)),
            pixels: k.pixels + g.pixels,
            first: k.first.min(g.first),
            pos: k.pos,
        };
        let at = g.pos as usize;
        self.live.swap_remove(at);
        if at < self.live.len() {
            self.node[self.live[at] as usize].pos = at as u32;
        }
        keep
    }

    fn live_boxes(&self) -> impl Iterator<Item = BoxXyxy> + '_ {
        self.live.iter().map(|&r| self.node[r as usize].bbox)
    }

    /// The largest live component's box; among equal sizes the first in scan order.
    fn largest(&self) -> Option<BoxXyxy> {
        self.live
            .iter()
            .map(|&r| &self.node[r as usize])
            .min_by_key(|n| (std::cmp::Reverse(n.pixels), n.first))
            .map(|n| n.bbox)
    }
}

/// Running counts for MaxBoxAccV2; mergeable, so partial results can be combined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxAccCounts {
    pub images: u64,
    /// `hits[j][k]`: images with `iou_curve[j] ≥ IOU_DELTAS[k]`.
    pub hits: Vec<[u64; 3]>,
}

impl Default for BoxAccCounts {
    fn default() -> Self {
        BoxAccCounts { images: 0, hits: vec![[0; 3]; CURVE_LEN] }
    }
}

impl BoxAccCounts {
    pub fn add(&mut self, iou_curve: &[f32]) {
        assert_eq!(iou_curve.len(), CURVE_LEN, "an IoU curve has {} points", CURVE_LEN);
        self.images += 1;
        for (h, &v) in self.hits.iter_mut().zip(iou_curve) {
            for (k, &d) in IOU_DELTAS.iter().enumerate() {
                // f32 against f32 δ: an IoU of exactly 7/10 rounds to the same f32 as 0.7 and counts.
                if v >= d {
                    h[k] += 1;
                }
            }
        }
    }

    pub fn merge(&mut self, other: &BoxAccCounts) {
        self.images += other.images;
        for (h, o) in self.hits.iter_mut().zip(&other.hits) {
            for k in 0..3 {
                h[k] += o[k];
            }
        }
    }

    /// Per δ, the best over τ of the fraction of images localized at IoU ≥ δ (0 without images).
    pub fn box_acc(&self) -> [f32; 3] {
        let mut out = [0.0f32; 3];
        if self.images == 0 {
            return out;
        }
        for (k, o) in out.iter_mut().enumerate() {
            let best = self.hits.iter().map(|h| h[k]).max().unwrap_or(0);
            *o = (best as f64 / self.images as f64) as f32;
        }
        out
    }

    /// Mean of `box_acc` over δ ∈ {0.3, 0.5, 0.7}, as a fraction (wsolevaluation reports percent).
    pub fn max_box_acc_v2(&self) -> f32 {
        let b = self.box_acc();
        ((b[0] as f64 + b[1] as f64 + b[2] as f64) / 3.0) as f32
    }
}

/// MaxBoxAccV2 of a set of IoU curves (fraction in [0, 1]; 0 for an empty set).
pub fn max_box_acc_v2(iou_curves: &[Vec<f32>]) -> f32 {
    let mut acc = BoxAccCounts::default();
    for c in iou_curves {
        acc.add(c);
    }
    acc.max_box_acc_v2()
}

/// Top-1 localization: the class is right and the box at `wsol.threshold` has IoU ≥ 0.5.
pub fn top1_loc(top1_correct: bool, iou: f32) -> bool {
    top1_correct && iou >= TOP1_LOC_IOU
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_from(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        (rows.iter().flat_map(|r| r.bytes().map(|b| b == b'#')).collect(), w, h)
    }

    #[test]
    fn eight_connectivity_joins_diagonals() {
        let (m, w, h) = mask_from(&[
            "#....", //
            ".#...",
            "..#..",
            ".....",
            "...##",
        ]);
        let c = components_of_mask(&m, w, h);
        assert_eq!(
            c,
            vec![
                Component { pixels: 3, bbox: BoxXyxy::new(0, 0, 2, 2) },
                Component { pixels: 2, bbox: BoxXyxy::new(3, 4, 4, 4) },
            ]
        );
        // An anti-diagonal (top-right to bottom-left) joins too, and a U shape is one component.
        let (m, w, h) = mask_from(&["..#", ".#.", "#..", "#.#", "###"]);
        assert_eq!(components_of_mask(&m, w, h), vec![Component { pixels: 8, bbox: BoxXyxy::new(0, 0, 2, 4) }]);
    }

    #[test]
    fn ties_pick_first_in_scan_order() {
        let (m, w, h) = mask_from(&[
            "...##", // B: 2 px, met first
            "##...", // A: 4 px, met before C
            "##...",
            "...##", // C: 4 px, ties with A and loses
            "...##",
        ]);
        let c = components_of_mask(&m, w, h);
        assert_eq!(c.iter().map(|c| c.pixels).collect::<Vec<_>>(), vec![2, 4, 4]);
        assert_eq!(largest(&c).unwrap().bbox, BoxXyxy::new(0, 1, 1, 2));
        assert_eq!(largest(&[]), None);
    }

    #[test]
    fn iou_inclusive_hand_computed() {
        // 3×3 boxes overlapping in a 2×2 block: 4 / (9 + 9 − 4).
        assert_eq!(iou(BoxXyxy::new(0, 0, 2, 2), BoxXyxy::new(1, 1, 3, 3)), 4.0 / 14.0);
        // Same single pixel: 1.
        assert_eq!(iou(BoxXyxy::new(5, 5, 5, 5), BoxXyxy::new(5, 5, 5, 5)), 1.0);
        // Touching edges share a column under the inclusive convention: 1·3 / (6 + 6 − 3).
        assert_eq!(iou(BoxXyxy::new(0, 0, 1, 2), BoxXyxy::new(1, 0, 2, 2)), 3.0 / 9.0);
        // Disjoint.
        assert_eq!(iou(BoxXyxy::new(0, 0, 1, 1), BoxXyxy::new(2, 2, 3, 3)), 0.0);
        // Containment: 2×2 inside 4×4.
        assert_eq!(iou(BoxXyxy::new(1, 1, 2, 2), BoxXyxy::new(0, 0, 3, 3)), 4.0 / 16.0);
        assert_eq!(max_iou(BoxXyxy::new(0, 0, 2, 2), &[]), 0.0);
    }

    #[test]
    fn levels_and_cuts() {
        assert_eq!(to_levels_floor(&[0.0, 1.0, 0.5, 0.999, 1.5, -0.2]), vec![0, 255, 127, 254, 255, 0]);
        // The saturating cast is the floor-then-clamp of the definition: on every level's edges
        // (k/255 and the floats beside it), outside [0, 1], and for NaN and infinities (0, 255, 0).
        let floor_clamp = |x: f32| (255.0f32 * x).floor().clamp(0.0, 255.0) as u8;
        let mut xs = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, -1e-30, -0.004, -1.0, 1.0 + 1e-7, 7.0];
        for k in 0..=256 {
            let e = k as f32 / 255.0;
            xs.extend([e, f32::from_bits(e.to_bits() + 1), f32::from_bits(e.to_bits().saturating_sub(1))]);
        }
        assert_eq!(to_levels_floor(&xs), xs.iter().map(|&x| floor_clamp(x)).collect::<Vec<_>>());
        assert_eq!(to_levels_floor(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]), vec![0, 255, 0]);
        assert_eq!(cut_level(0.2, 255), 51);
        assert_eq!(cut_level(0.7f32 as f64, 100), 70); // 0.7f32 = 0.69999999
        assert_eq!(cut_level(0.29, 100), 29); // 0.29 · 100 = 28.999999999999996 in f64
        for m in 0..=255u8 {
            for j in 0..CURVE_LEN {
                assert_eq!(curve_cut(j, m), cut_level(j as f64 / 100.0, m), "j={j} m={m}");
            }
        }
    }

    /// A 6×6 map with three levels; the masks at each cut are worked out by hand.
    #[test]
    fn localize_hand_case() {
        // g levels (after floor(255·cam)):
        //   255 block at rows 0–1, cols 0–1; 100 block at rows 4–5, cols 3–5 (6 px);
        //   50 pixel at (row 2, col 2), diagonal to the 255 block.
        let mut cam = vec![0.0f32; 36];
        for (r, c) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            cam[r * 6 + c] = 1.0;
        }
        for r in 4..6 {
            for c in 3..6 {
                cam[r * 6 + c] = 100.5 / 255.0;
            }
        }
        cam[2 * 6 + 2] = 50.5 / 255.0;
        let g = to_levels_floor(&cam);
        assert_eq!((g[0], g[4 * 6 + 3], g[14]), (255, 100, 50));

        let gt = [BoxXyxy::new(0, 0, 2, 2), BoxXyxy::new(3, 4, 5, 5)];
        // τ = 0.2: cut 51 → the 2×2 block (4 px) and the 6-px block; the larger is the 6-px one.
        let loc = localize(&cam, 6, &gt, 0.2);
        assert_eq!(loc.bbox, BoxXyxy::new(3, 4, 5, 5));
        assert_eq!(loc.iou, 1.0);
        // Curve: cut(j) = floor(2.55 j).
        //  cut < 50 (j ≤ 19): 255-block + the 50 pixel form a 5-px component box (0,0,2,2) → IoU 1
        //  with gt[0]; the 6-px block also scores 1. → 1.
        //  50 ≤ cut < 100 (j 20..=39): 2×2 block box (0,0,1,1) → 4/9; 6-px block → 1. → 1.
        //  100 ≤ cut < 255 (j ≥ 40): only the 2×2 block → 4/9.
        for j in 0..CURVE_LEN {
            let want = if j < 40 { 1.0 } else { 4.0 / 9.0 };
            assert_eq!(loc.iou_curve[j], want, "j={j}");
        }
        // Only gt[0]: j ≤ 19 → 1 (the joined component), then 4/9.
        let loc = localize(&cam, 6, &gt[..1], 0.2);
        assert_eq!(loc.iou, 0.0); // the 6-px box misses gt[0]
        for j in 0..CURVE_LEN {
            assert_eq!(loc.iou_curve[j], if j < 20 { 1.0 } else { 4.0 / 9.0 }, "j={j}");
        }
        // No ground truth: the box is still found, IoU and curve are zero.
        let loc = localize(&cam, 6, &[], 0.2);
        assert_eq!((loc.bbox, loc.iou), (BoxXyxy::new(3, 4, 5, 5), 0.0));
        assert_eq!(loc.iou_curve, vec![0.0; CURVE_LEN]);
    }

    #[test]
    fn all_zero_map_has_no_box() {
        let gt = [BoxXyxy::new(0, 0, 0, 0)]; // would score 1 if the empty box were taken literally
        let loc = localize(&[0.0; 16], 4, &gt, 0.2);
        assert_eq!((loc.bbox, loc.iou), (BoxXyxy::EMPTY, 0.0));
        assert_eq!(loc.iou_curve, vec![0.0; CURVE_LEN]);
        assert!(components(&[0.0; 16], 4, 0.0).is_empty());
        // Levels below 1/255 floor to 0 too.
        assert_eq!(localize(&[0.003; 16], 4, &gt, 0.2).iou_curve, vec![0.0; CURVE_LEN]);
    }

    #[test]
    fn max_box_acc_v2_hand_computed() {
        // Three images; curves piecewise constant.
        // img0: 0.8 for j < 50, then 0.4.   img1: 0.6 everywhere.   img2: 0.2 for j < 10, then 0.55.
        let c0: Vec<f32> = (0..100).map(|j| if j < 50 { 0.8 } else { 0.4 }).collect();
        let c1 = vec![0.6f32; 100];
        let c2: Vec<f32> = (0..100).map(|j| if j < 10 { 0.2 } else { 0.55 }).collect();
        // δ=0.3: j ≥ 10 all three → 1.   δ=0.5: 10 ≤ j < 50 all three → 1.
        // δ=0.7: only img0 for j < 50 → 1/3.   Mean = (1 + 1 + 1/3)/3 = 7/9.
        let curves = vec![c0, c1, c2];
        assert!((max_box_acc_v2(&curves) - 7.0 / 9.0).abs() < 1e-6);
        let mut a = BoxAccCounts::default();
        a.add(&curves[0]);
        let mut b = BoxAccCounts::default();
        b.add(&curves[1]);
        b.add(&curves[2]);
        a.merge(&b);
        assert_eq!(a.box_acc(), [1.0, 1.0, 1.0 / 3.0]);
        // Exactly δ counts (≥): an IoU of 7/10 computed as f64 then f32.
        let mut e = BoxAccCounts::default();
        e.add(&vec![(7.0f64 / 10.0) as f32; 100]);
        assert_eq!(e.box_acc(), [1.0, 1.0, 1.0]);
        assert_eq!(max_box_acc_v2(&[]), 0.0);
        assert!(top1_loc(true, 0.5) && !top1_loc(false, 0.9) && !top1_loc(true, 0.49));
    }

    /// The one-sweep `localize` against labelling each mask on its own (`components_of_mask`, a
    /// flood fill), on maps with few levels so that ties in size, many components and merges at
    /// every cut all occur.
    #[test]
    fn sweep_equals_per_cut_labelling() {
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        for case in 0..200 {
            let size = 3 + (next() % 30) as usize;
            let levels = 2 + (next() % 6) as u32;
            let cam: Vec<f32> = (0..size * size).map(|_| (next() % levels as u64) as f32 / (levels - 1) as f32).collect();
            let box_at = |k: u64| (k % size as u64) as i32;
            let (a, b, c, d) = (box_at(next()), box_at(next()), box_at(next()), box_at(next()));
            let gt = vec![BoxXyxy::new(a.min(b), c.min(d), a.max(b), c.max(d))];
            let threshold = [0.0f32, 0.2, 0.5, 0.99][case % 4];
            let loc = localize(&cam, size, &gt, threshold);

            let g = to_levels_floor(&cam);
            let max_g = g.iter().copied().max().unwrap();
            let mask_at = |cut: u8| g.iter().map(|&v| v > cut).collect::<Vec<_>>();
            let want = largest(&components_of_mask(&mask_at(cut_level(threshold as f64, max_g)), size, size));
            assert_eq!(loc.bbox, want.map_or(BoxXyxy::EMPTY, |c| c.bbox), "case {case}: box");
            assert_eq!(loc.iou, want.map_or(0.0, |c| max_iou(c.bbox, &gt)), "case {case}: iou");
            for j in 0..CURVE_LEN {
                let comps = components_of_mask(&mask_at(curve_cut(j, max_g)), size, size);
                let best = comps.iter().map(|c| max_iou(c.bbox, &gt)).fold(0.0, f32::max);
                assert_eq!(loc.iou_curve[j], best, "case {case}: curve point {j}");
            }
            // Swept once, then scored per image: the same result for these boxes, for none, and
            // for a second image's two boxes.
            let swept = MapBoxes::of(&cam, size, threshold);
            assert_eq!(swept.localize(&gt), loc, "case {case}: swept once");
            let two = vec![gt[0], BoxXyxy::new(0, 0, box_at(next()), box_at(next()))];
            for other in [vec![], two] {
                assert_eq!(swept.localize(&other), localize(&cam, size, &other, threshold), "case {case}: gt {other:?}");
            }
        }
        let zero = MapBoxes::of(&[0.0; 16], 4, 0.2);
        assert_eq!(zero.localize(&[BoxXyxy::new(0, 0, 0, 0)]), localize(&[0.0; 16], 4, &[BoxXyxy::new(0, 0, 0, 0)], 0.2));
    }
}
