//! Synthetic product labels: black text on a white card drawn onto a photo with
//! a real TrueType font, for OCR tests and the OCR benchmark (real photos, real
//! text, known ground truth).

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// DejaVu Sans Bold from Debian's `fonts-dejavu-core`.
pub const DEJAVU_SANS_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FontError {
    pub path: PathBuf,
    pub message: String,
}

/// A TrueType font to draw labels with.
pub struct LabelFont(FontVec);

impl LabelFont {
    pub fn load(path: &Path) -> Result<Self, FontError> {
        let err = |message: String| FontError {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        FontVec::try_from_vec(bytes)
            .map(LabelFont)
            .map_err(|e| err(format!("not a TrueType font: {e}")))
    }

    /// DejaVu Sans Bold (Debian `fonts-dejavu-core`, installed by set-up).
    pub fn dejavu() -> Result<Self, FontError> {
        Self::load(Path::new(DEJAVU_SANS_BOLD))
    }
}

/// Width of `text` at `px` pixels high.
pub fn text_width(font: &LabelFont, text: &str, px: f32) -> f32 {
    let f = font.0.as_scaled(PxScale::from(px));
    let mut w = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let g = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, g);
        }
        w += f.h_advance(g);
        prev = Some(g);
    }
    w
}

/// Draws `text` with its top-left corner at (`x`, `y`), `px` high, in `colour`.
pub fn draw_text(
    font: &LabelFont,
    img: &mut RgbImage,
    (x, y): (f32, f32),
    text: &str,
    px: f32,
    colour: [u8; 3],
) {
    let font = &font.0;
    let f = font.as_scaled(PxScale::from(px));
    let mut pen = x;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            pen += f.kern(p, id);
        }
        let glyph =
            id.with_scale_and_position(PxScale::from(px), ab_glyph::point(pen, y + f.ascent()));
        pen += f.h_advance(id);
        prev = Some(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                let (px_, py_) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                if px_ < 0 || py_ < 0 || px_ >= img.width() as i64 || py_ >= img.height() as i64 {
                    return;
                }
                let p = img.get_pixel_mut(px_ as u32, py_ as u32);
                for ch in 0..3 {
                    let v = f32::from(p[ch]) * (1.0 - cov) + f32::from(colour[ch]) * cov;
                    p[ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            });
        }
    }
}

/// A white card with `lines` of black text, `px` high, at (`x`, `y`); returns
/// the card's `[x, y, w, h]`.
pub fn draw_label(
    font: &LabelFont,
    img: &mut RgbImage,
    (x, y): (u32, u32),
    lines: &[&str],
    px: f32,
) -> [u32; 4] {
    let pad = (px * 0.5).round() as u32;
    let line_h = (px * 1.3).round() as u32;
    let w = lines
        .iter()
        .map(|l| text_width(font, l, px).ceil() as u32)
        .max()
        .unwrap_or(0)
        + 2 * pad;
    let h = line_h * lines.len() as u32 + 2 * pad;
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, Rgb([250, 250, 245]));
        }
    }
    for (i, l) in lines.iter().enumerate() {
        draw_text(
            font,
            img,
            ((x + pad) as f32, (y + pad + i as u32 * line_h) as f32),
            l,
            px,
            [20, 20, 20],
        );
    }
    [x, y, w, h]
}
