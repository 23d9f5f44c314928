//! Figures 2 and 3 as PNGs. Everything is drawn into an RGB buffer (Figure 2's axes by plotters'
//! bitmap backend) with an embedded font, so no system font or fontconfig is needed, and encoded
//! with `image`. Text with digits is placed by `text.rs`; plotters only draws tick labels and words.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use types::BoxXyxy;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::pixels::{draw_box, overlay, Rgb};
use crate::text::{draw_text, text_width};

/// Log-scale floor of Figure 2: an empty bin is drawn here rather than at −∞.
pub const HIST_FLOOR: f64 = 1e-6;
/// CAM weight in the Figure 3 overlays.
pub const CAM_ALPHA: f32 = 0.5;

const FONT: &str = "sans-serif";
const GT_COLOUR: [u8; 3] = [0, 230, 0];
const CAM_BOX_COLOUR: [u8; 3] = [255, 255, 255];

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ok = register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok();
        assert!(ok, "the embedded DejaVu Sans is a valid font");
    });
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e}")
}

fn save_png(img: &Rgb, path: &Path) -> Result<()> {
    image::save_buffer(path, &img.data, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("{}", path.display()))
}

/// A histogram as a step line: bin `b` spans [b, b+1); values below `floor` sit on the floor.
pub fn step_points(hist: &[f64], floor: f64) -> Vec<(f64, f64)> {
    hist.iter()
        .enumerate()
        .flat_map(|(b, &p)| {
            let y = p.max(floor);
            [(b as f64, y), (b as f64 + 1.0, y)]
        })
        .collect()
}

/// One panel of Figure 2: a pair's mean activation histograms over its subset.
pub struct HistPanel {
    pub model: String,
    pub weights: String,
    pub images: usize,
    pub float: Vec<f64>,
    pub quantized: Vec<f64>,
    pub dice: f64,
}

/// Room above each Figure 2 panel for its title.
const TITLE_H2: usize = 36;

pub fn figure2(panels: &[HistPanel], path: &Path) -> Result<()> {
    fonts();
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(cols).max(1);
    let (pw, ph) = (620usize, 400usize);
    let mut img = Rgb::filled(cols * pw, rows * ph, [255; 3]);
    {
        let size = ((cols * pw) as u32, (rows * ph) as u32);
        let root = BitMapBackend::with_buffer(&mut img.data, size).into_drawing_area();
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(panels) {
            let bins = p.float.len().max(p.quantized.len()) as f64;
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .margin_top(TITLE_H2 as u32)
                .x_label_area_size(40)
                .y_label_area_size(62)
                .build_cartesian_2d(0f64..bins, (HIST_FLOOR..1f64).log_scale())
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(format!("activation bin (int8 level) · {} subset images", p.images))
                .y_desc("mean share of activations")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(WHITE)
                .draw()
                .map_err(plot_err)?;
            // float wide underneath, int8 narrow on top: both stay visible where they coincide.
            for (hist, colour, width, name) in [(&p.float, BLUE, 4, "float"), (&p.quantized, RED, 1, "int8")] {
                chart
                    .draw_series(LineSeries::new(step_points(hist, HIST_FLOOR), colour.stroke_width(width)))
                    .map_err(plot_err)?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(width.max(2))));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    for (i, p) in panels.iter().enumerate() {
        let title = format!("{} ({}): Dice {:.3}", p.model, p.weights, p.dice);
        let (x, y) = ((i % cols * pw) as f32, (i / cols * ph) as f32);
        let left = x + (pw as f32 - text_width(&title, 17.0)) / 2.0;
        draw_text(&mut img, &title, left.max(x), y + 10.0, 17.0, [0; 3]);
    }
    save_png(&img, path)
}

/// One variant's CAM of a Figure 3 row, already at crop resolution.
pub struct CamTile {
    pub cam: Vec<f32>,
    pub bbox: BoxXyxy,
    pub iou: f32,
    pub top1_correct: bool,
}

/// One row of Figure 3.
pub struct Fig3Panel {
    pub caption: String,
    /// The crop as displayed, crop × crop.
    pub image: Rgb,
    pub gt: Vec<BoxXyxy>,
    pub float: Option<CamTile>,
    pub quantized: Option<CamTile>,
}

const PAD: usize = 10;
const TITLE_H: usize = 34;
const HEADER_H: usize = 22;
const CAPTION_H: usize = 22;

pub fn figure3(title: &str, rows: &[Fig3Panel], path: &Path) -> Result<()> {
    let tile = rows.first().map_or(224, |r| r.image.width);
    let width = 3 * tile + 4 * PAD;
    let height = TITLE_H + HEADER_H + rows.len() * (CAPTION_H + tile + PAD) + PAD;
    let mut canvas = Rgb::filled(width, height, [255; 3]);
    let mut texts: Vec<(String, usize, usize, u32)> = vec![(title.to_string(), PAD, 7, 18)];
    for (j, head) in ["image, ground truth (green)", "float EigenCAM, its box (white)", "int8 EigenCAM, its box (white)"]
        .into_iter()
        .enumerate()
    {
        texts.push((head.to_string(), PAD + j * (tile + PAD), TITLE_H, 14));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TITLE_H + HEADER_H + i * (CAPTION_H + tile + PAD);
        texts.push((row.caption.clone(), PAD, y + 3, 13));
        let y = y + CAPTION_H;
        let mut image = row.image.clone();
        for &b in &row.gt {
            draw_box(&mut image, b, GT_COLOUR, 2);
        }
        canvas.paste(&image, PAD, y);
        for (j, cam) in [&row.float, &row.quantized].into_iter().enumerate() {
            let x = PAD + (j + 1) * (tile + PAD);
            let Some(cam) = cam else {
                texts.push(("(no CAM in the images table)".into(), x + 8, y + tile / 2, 13));
                continue;
            };
            let mut tile_img = overlay(&row.image, &cam.cam, CAM_ALPHA);
            for &b in &row.gt {
                draw_box(&mut tile_img, b, GT_COLOUR, 1);
            }
            draw_box(&mut tile_img, cam.bbox, CAM_BOX_COLOUR, 2);
            canvas.paste(&tile_img, x, y);
            let verdict = if cam.top1_correct { "top-1 right" } else { "top-1 wrong" };
            texts.push((format!("IoU {:.2} · {verdict}", cam.iou), x + 4, y + tile - 18, 13));
        }
    }
    for (text, x, y, size) in &texts {
        let (x, y, size) = (*x as f32, *y as f32, *size as f32);
        // Labels on a CAM tile get a light backing so they read on any colour.
        if y > (TITLE_H + HEADER_H) as f32 && x > PAD as f32 {
            let w = text_width(text, size);
            canvas.shade((x as i64 - 3, y as i64 - 2), ((x + w) as i64 + 3, (y + size) as i64 + 3), [255; 3], 0.75);
        }
        draw_text(&mut canvas, text, x, y, size, [0; 3]);
    }
    save_png(&canvas, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_points_span_each_bin_and_floor_empty_ones() {
        let pts = step_points(&[0.5, 0.0, 0.25], 1e-6);
        assert_eq!(pts, vec![(0.0, 0.5), (1.0, 0.5), (1.0, 1e-6), (2.0, 1e-6), (2.0, 0.25), (3.0, 0.25)]);
    }

    #[test]
    fn figure2_writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f2.png");
        let mut h = vec![0.0; 256];
        h[3] = 1.0;
        let panel = |m: &str| HistPanel {
            model: m.into(),
            weights: "real/real".into(),
            images: 3,
            float: h.clone(),
            quantized: h.clone(),
            dice: 1.0,
        };
        figure2(&[panel("a"), panel("b"), panel("c")], &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (1240, 800)); // 2 columns × 2 rows of panels
        // Something besides the white background was drawn (text, axes, lines).
        assert!(img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000);
    }
}
