//! Pixels for Figure 3: the crop as a person sees it, CAM overlays and boxes, all on plain RGB8
//! buffers (pure), plus finding the images again through the run's data source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use types::{BoxXyxy, Sample};
use sources::{DataConfig, Dataset, Fetcher};

use crate::run_info::resolve_data_path;

/// An RGB8 picture, row-major, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Rgb {
        Rgb { width, height, data: colour.repeat(width * height) }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let k = 3 * (y * self.width + x);
        [self.data[k], self.data[k + 1], self.data[k + 2]]
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let k = 3 * (y as usize * self.width + x as usize);
            self.data[k..k + 3].copy_from_slice(&c);
        }
    }

    /// `(1 − alpha) · pixel + alpha · c`, clipped to the picture.
    pub fn blend(&mut self, x: i64, y: i64, c: [u8; 3], alpha: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let k = 3 * (y as usize * self.width + x as usize);
            for (v, &t) in self.data[k..k + 3].iter_mut().zip(&c) {
                *v = ((1.0 - alpha) * *v as f32 + alpha * t as f32).round().clamp(0.0, 255.0) as u8;
            }
        }
    }

    /// Blends `c` over the rectangle `[x0, x1) × [y0, y1)`.
    pub fn shade(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], alpha: f32) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.blend(x, y, c, alpha);
            }
        }
    }

    /// Copies `tile` with its top-left corner at (x, y), clipped to this picture.
    pub fn paste(&mut self, tile: &Rgb, x: usize, y: usize) {
        for ty in 0..tile.height {
            for tx in 0..tile.width {
                self.set((x + tx) as i64, (y + ty) as i64, tile.get(tx, ty));
            }
        }
    }
}

/// The normalised CHW crop back to 8-bit RGB for display: `x · std + mean`, scaled to 0..255.
pub fn unnormalise(chw: &[f32], crop: usize, mean: [f32; 3], std: [f32; 3]) -> Rgb {
    assert_eq!(chw.len(), 3 * crop * crop, "a 3×{crop}×{crop} tensor has {} values", 3 * crop * crop);
    let plane = crop * crop;
    let mut out = Rgb::filled(crop, crop, [0; 3]);
    for i in 0..plane {
        for c in 0..3 {
            let v = (chw[c * plane + i] * std[c] + mean[c]) * 255.0;
            out.data[3 * i + c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The usual "jet" colormap (blue → cyan → yellow → red) at `t` in [0, 1].
pub fn jet(t: f32) -> [u8; 3] {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let ramp = |centre: f32| (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)].map(|v| (v * 255.0).round() as u8)
}

/// `(1 − alpha) · image + alpha · jet(cam)` per pixel; `cam` is the crop-frame map in [0, 1].
pub fn overlay(image: &Rgb, cam: &[f32], alpha: f32) -> Rgb {
    assert_eq!(cam.len(), image.width * image.height, "CAM and image sizes differ");
    let mut out = image.clone();
    for (i, &t) in cam.iter().enumerate() {
        let c = jet(t);
        for k in 0..3 {
            let v = (1.0 - alpha) * image.data[3 * i + k] as f32 + alpha * c[k] as f32;
            out.data[3 * i + k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Outline of an inclusive-corner box (SPEC §6), `thickness` pixels drawn inwards, clipped.
pub fn draw_box(img: &mut Rgb, b: BoxXyxy, colour: [u8; 3], thickness: i64) {
    let (x0, y0, x1, y1) = (b.x0 as i64, b.y0 as i64, b.x1 as i64, b.y1 as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let inside = x - x0 >= thickness && x1 - x >= thickness && y - y0 >= thickness && y1 - y >= thickness;
            if !inside {
                img.set(x, y, colour);
            }
        }
    }
}

/// Finds the samples `wanted` (image ids by shard name) in the run's data source. Reads only the
/// shards named; whatever cannot be found or read is left out and reported.
pub fn find_samples(
    data: &DataConfig,
    run_dir: &Path,
    wanted: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(HashMap<String, Sample>, Vec<String>), String> {
    let mut cfg = data.clone();
    cfg.path = resolve_data_path(&cfg.path, run_dir, Path::exists);
    let dataset = Dataset::open(&cfg).map_err(|e| format!("the run's data source is not readable here ({e})"))?;
    let fetcher = Fetcher::new().map_err(|e| e.to_string())?;
    let mut found = HashMap::new();
    let mut problems = Vec::new();
    for shard in dataset.shards.iter().filter(|s| wanted.contains_key(&s.name)) {
        let ids = &wanted[&shard.name];
        for item in shard.open(&fetcher) {
            match item {
                Ok(sample) if ids.contains(&sample.image_id) => {
                    found.insert(sample.image_id.clone(), sample);
                }
                Ok(_) => {}
                Err(e) if ids.contains(&e.image_id) => problems.push(format!("{}: {}", e.image_id, e.message)),
                Err(_) => {}
            }
        }
    }
    for id in wanted.values().flatten().filter(|id| !found.contains_key(*id)) {
        if !problems.iter().any(|p| p.starts_with(&format!("{id}:"))) {
            problems.push(format!("{id}: not in the data source"));
        }
    }
    Ok((found, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnormalise_inverts_the_normalisation() {
        // One 1×1 crop: channel values chosen so x·std + mean = 0, 0.5, 1 (and one out of range).
        let (mean, std) = ([0.5, 0.5, 0.5], [0.5, 0.25, 0.5]);
        let img = unnormalise(&[-1.0, 0.0, 1.0], 1, mean, std);
        assert_eq!(img.get(0, 0), [0, 128, 255]); // 127.5 rounds up
        let img = unnormalise(&[3.0, -9.0, 0.0], 1, mean, std);
        assert_eq!(img.get(0, 0), [255, 0, 128]);
    }

    #[test]
    fn jet_runs_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(0.25), [0, 128, 255]);
        assert_eq!(jet(-3.0), jet(0.0));
        assert_eq!(jet(f32::NAN), jet(0.0));
    }

    #[test]
    fn overlay_blends_half_and_half() {
        let img = Rgb::filled(2, 1, [100, 100, 100]);
        let out = overlay(&img, &[0.0, 1.0], 0.5);
        assert_eq!(out.get(0, 0), [50, 50, 114]); // (100 + 0)/2, (100 + 0)/2, (100 + 128)/2
        assert_eq!(out.get(1, 0), [114, 50, 50]);
    }

    #[test]
    fn box_outline_is_inclusive_and_clipped() {
        let mut img = Rgb::filled(6, 5, [0; 3]);
        draw_box(&mut img, BoxXyxy::new(1, 1, 4, 3), [9; 3], 1);
        let lit: Vec<(usize, usize)> =
            (0..5).flat_map(|y| (0..6).map(move |x| (x, y))).filter(|&(x, y)| img.get(x, y) == [9; 3]).collect();
        // The 4×3 rectangle's border: 4 + 4 + 1 + 1 pixels, interior (2,2),(3,2) dark.
        assert_eq!(lit.len(), 10, "{lit:?}");
        assert!(img.get(2, 2) == [0; 3] && img.get(3, 2) == [0; 3]);
        assert!(img.get(1, 1) == [9; 3] && img.get(4, 3) == [9; 3] && img.get(5, 3) == [0; 3]);
        // A box partly outside draws its visible part without panicking.
        draw_box(&mut img, BoxXyxy::new(-3, -3, 10, 10), [7; 3], 2);
        assert_eq!(img.get(0, 0), [0; 3]); // interior of the big box, 3 px in from its edge
    }

    #[test]
    fn shade_blends_inside_the_rectangle_only() {
        let mut img = Rgb::filled(4, 3, [0; 3]);
        img.shade((1, 1), (3, 2), [200, 100, 0], 0.75);
        assert_eq!(img.get(1, 1), [150, 75, 0]);
        assert_eq!(img.get(2, 1), [150, 75, 0]);
        assert_eq!(img.get(3, 1), [0; 3]);
        assert_eq!(img.get(1, 2), [0; 3]);
        img.shade((-5, -5), (9, 9), [0; 3], 1.0); // clipped, no panic
    }

    #[test]
    fn paste_clips() {
        let mut canvas = Rgb::filled(3, 3, [0; 3]);
        canvas.paste(&Rgb::filled(2, 2, [5; 3]), 2, 2);
        assert_eq!(canvas.get(2, 2), [5; 3]);
        assert_eq!(canvas.get(1, 1), [0; 3]);
    }
}
