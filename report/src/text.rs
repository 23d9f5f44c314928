//! Text on the figures, drawn with the embedded DejaVu Sans. Our own glyph placement: plotters'
//! ab_glyph backend truncates each glyph's offset towards zero, which lifts `.` and `,` a pixel
//! above the baseline of the digits next to them ("0·27").

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

use crate::pixels::Rgb;

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans::regular()).expect("the embedded DejaVu Sans is a valid font")
}

/// Width in pixels of `text` at `size` px.
pub fn text_width(text: &str, size: f32) -> f32 {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(size));
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    width
}

/// Draws `text` with its top (the font's ascent line) at `top` and its left edge at `left`,
/// blending `colour` by glyph coverage; clipped to the picture.
pub fn draw_text(img: &mut Rgb, text: &str, left: f32, top: f32, size: f32, colour: [u8; 3]) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(size));
    let baseline = (top + scaled.ascent()).round();
    let mut caret = left;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(size), point(caret, baseline));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                img.blend(b.min.x as i64 + x as i64, b.min.y as i64 + y as i64, colour, coverage.min(1.0));
            });
        }
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows that hold any ink of `text` drawn alone.
    fn ink_rows(text: &str) -> (usize, usize) {
        let mut img = Rgb::filled(80, 40, [255; 3]);
        draw_text(&mut img, text, 2.0, 5.0, 20.0, [0; 3]);
        let rows: Vec<usize> = (0..img.height).filter(|&y| (0..img.width).any(|x| img.get(x, y)[0] < 128)).collect();
        (*rows.first().expect("some ink"), *rows.last().unwrap())
    }

    #[test]
    fn dot_and_digits_share_the_baseline() {
        let (_, digit_bottom) = ink_rows("1");
        let (dot_top, dot_bottom) = ink_rows(".");
        assert_eq!(dot_bottom, digit_bottom, "'.' sits on the digits' baseline");
        assert!(dot_top > digit_bottom - 5, "a dot is low, not a middle dot");
        let (top, _) = ink_rows("E");
        assert!((5..=10).contains(&top), "capitals start just below `top` (got row {top})");
    }

    #[test]
    fn width_grows_with_text_and_size() {
        let w = text_width("IoU 0.27", 13.0);
        assert!(w > 30.0 && w < 80.0, "{w}");
        assert!(text_width("IoU 0.27", 26.0) > 1.9 * w);
        assert_eq!(text_width("", 13.0), 0.0);
    }
}
