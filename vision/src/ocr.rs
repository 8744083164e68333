//! Reading label and price-tag text: PP-OCRv4 text detection (DB, a probability
//! map of "text here") and recognition (SVTR + CTC over a 6,623-symbol
//! dictionary, Latin and Chinese), as PaddleOCR and RapidOCR run them.
//!
//! Detection: the image fits a fixed 640x640 canvas (aspect kept, zero padding
//! after normalisation), BGR channel order with ImageNet mean/std as PaddleOCR
//! feeds its OpenCV images. The map is thresholded at 0.3, 8-connected regions
//! become boxes, a box whose mean probability is under 0.5 is dropped, and each
//! box is grown by the DB "unclip" distance `area * 1.6 / perimeter`.
//! Recognition: each box is cut from the full-resolution image, resampled to
//! 48 px high (aspect kept, at most [`REC_W`] wide, zero padded right),
//! normalised to [-1, 1], and decoded greedily (CTC: best symbol per step,
//! repeats merged, blank 0 dropped). The dictionary is read from the model file's
//! own metadata (`character`), so a model and its symbols cannot drift apart.
//! Shapes are fixed so both engines (tract needs concrete shapes) run the same
//! graphs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use ndarray::Array4;
use serde::Serialize;
use tract_onnx::prelude::Framework;

use crate::onnx::{OnnxError, OnnxModel, OnnxOptions};
use crate::preprocess::resize_region;

/// Side of the square detection canvas.
pub const DET_SIZE: usize = 640;
/// Height of a text line fed to recognition.
pub const REC_H: usize = 48;
/// Width of the orientation classifier's input (48 px high).
pub const CLS_W: usize = 192;

/// Width of the recognition canvas: lines up to 10x wider than high keep their
/// aspect, longer ones are squeezed (as PaddleOCR does past its maximum width).
pub const REC_W: usize = 480;

const DET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const DET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
}

/// One line of text read in the image.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TextLine {
    pub text: String,
    /// Mean probability of the decoded symbols.
    pub confidence: f32,
    /// `[x, y, width, height]` in image pixels.
    pub bbox: [u32; 4],
}

/// What OCR read in one image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OcrOutput {
    /// In reading order (top to bottom, then left to right).
    pub lines: Vec<TextLine>,
    /// Text regions found before the line cap and the confidence filter.
    pub regions: usize,
    pub detect_us: u64,
    pub recognise_us: u64,
}

impl OcrOutput {
    /// The lines, one per line.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Tunables of the pipeline (PaddleOCR's defaults where it has one).
#[derive(Debug, Clone, Copy)]
pub struct OcrParams {
    /// Pixel probability that counts as text.
    pub pixel_threshold: f32,
    /// Mean probability a region needs to be kept.
    pub box_threshold: f32,
    /// How far a region is grown (DB's unclip ratio).
    pub unclip_ratio: f32,
    /// At most this many lines are recognised, the tallest first (product names
    /// are the largest text on a label).
    pub max_lines: usize,
    /// Lines decoded with a lower mean probability are dropped.
    pub min_confidence: f32,
}

impl Default for OcrParams {
    fn default() -> Self {
        OcrParams {
            pixel_threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            max_lines: 8,
            min_confidence: 0.5,
        }
    }
}

/// PP-OCR detection + recognition, loaded once.
pub struct Ocr {
    det: OnnxModel,
    rec: OnnxModel,
    /// Text-line orientation (0 or 180 degrees), when loaded.
    cls: Option<OnnxModel>,
    /// Symbol of each class; 0 is the CTC blank (empty string).
    symbols: Vec<String>,
    pub params: OcrParams,
}

impl std::fmt::Debug for Ocr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocr")
            .field("det", &self.det)
            .field("rec", &self.rec)
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

/// The recognition dictionary stored in an ONNX file's metadata (`character`).
pub fn read_dictionary(path: &Path) -> Result<Vec<String>, OcrError> {
    let err = |message: String| OcrError::Model {
        path: path.to_path_buf(),
        message,
    };
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| err(format!("not a readable ONNX model: {e:#}")))?;
    let chars = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "character")
        .ok_or_else(|| err("no `character` dictionary in the model's metadata".into()))?;
    let symbols: Vec<String> = chars.value.split('\n').map(str::to_string).collect();
    if symbols.iter().any(String::is_empty) {
        return Err(err("the `character` dictionary has an empty entry".into()));
    }
    Ok(symbols)
}

impl Ocr {
    /// Loads the detection and recognition models, checks the dictionary
    /// against the recogniser's output and warms both up.
    pub fn load(det_path: &Path, rec_path: &Path, options: &OnnxOptions) -> Result<Self, OcrError> {
        Self::load_with_orientation(det_path, rec_path, None, options)
    }

    /// As [`Self::load`], plus PaddleOCR's text-line orientation classifier:
    /// a line it reads as upside down (probability > 0.9) is turned before
    /// recognition.
    pub fn load_with_orientation(
        det_path: &Path,
        rec_path: &Path,
        cls_path: Option<&Path>,
        options: &OnnxOptions,
    ) -> Result<Self, OcrError> {
        let cls = match cls_path {
            Some(p) => {
                let m = OnnxModel::load(p, &[("x", &[1, 3, REC_H, CLS_W])], options)?;
                let probe = Array4::<f32>::zeros((1, 3, REC_H, CLS_W)).into_dyn();
                let out = m.run(&[probe.view()])?;
                if out.first().map(|o| o.len()) != Some(2) {
                    return Err(OcrError::Model {
                        path: p.to_path_buf(),
                        message: "not a two-class (0/180 degrees) orientation classifier".into(),
                    });
                }
                Some(m)
            }
            None => None,
        };
        let dict = read_dictionary(rec_path)?;
        let det = OnnxModel::load(det_path, &[("x", &[1, 3, DET_SIZE, DET_SIZE])], options)?;
        let rec = OnnxModel::load(rec_path, &[("x", &[1, 3, REC_H, REC_W])], options)?;
        // blank, the dictionary, then the space PaddleOCR appends.
        let mut symbols = Vec::with_capacity(dict.len() + 2);
        symbols.push(String::new());
        symbols.extend(dict);
        symbols.push(" ".to_string());
        let probe = Array4::<f32>::zeros((1, 3, REC_H, REC_W)).into_dyn();
        let out = rec.run(&[probe.view()])?;
        let classes = out.first().and_then(|o| o.shape().last().copied());
        if classes != Some(symbols.len()) {
            return Err(OcrError::Model {
                path: rec_path.to_path_buf(),
                message: format!(
                    "the recogniser has {classes:?} classes, its dictionary {} (+ blank and space)",
                    symbols.len() - 2
                ),
            });
        }
        let probe = Array4::<f32>::zeros((1, 3, DET_SIZE, DET_SIZE)).into_dyn();
        det.run(&[probe.view()])?;
        Ok(Ocr {
            det,
            rec,
            cls,
            symbols,
            params: OcrParams::default(),
        })
    }

    pub fn engine(&self) -> crate::Engine {
        self.rec.engine()
    }

    /// Finds and reads the text lines in `img`.
    pub fn read(&self, img: &RgbImage) -> Result<OcrOutput, OcrError> {
        let t0 = Instant::now();
        let (boxes, regions) = self.detect(img)?;
        let t1 = Instant::now();
        let read = self.recognise_all(img, &boxes)?;
        let mut lines = Vec::with_capacity(boxes.len());
        for (b, (text, confidence)) in boxes.into_iter().zip(read) {
            let text = text.trim().to_string();
            if text.is_empty() || confidence < self.params.min_confidence {
                continue;
            }
            lines.push(TextLine {
                text,
                confidence,
                bbox: [
                    b.0.round() as u32,
                    b.1.round() as u32,
                    b.2.round() as u32,
                    b.3.round() as u32,
                ],
            });
        }
        Ok(OcrOutput {
            lines,
            regions,
            detect_us: (t1 - t0).as_micros() as u64,
            recognise_us: t1.elapsed().as_micros() as u64,
        })
    }

    /// Text boxes `(x, y, w, h)` in image pixels, at most `max_lines`, in reading
    /// order; and how many regions were found.
    pub fn detect(&self, img: &RgbImage) -> Result<(Vec<Region>, usize), OcrError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Ok((Vec::new(), 0));
        }
        let scale = DET_SIZE as f64 / f64::from(w.max(h));
        let rw = ((f64::from(w) * scale).round() as usize).clamp(1, DET_SIZE);
        let rh = ((f64::from(h) * scale).round() as usize).clamp(1, DET_SIZE);
        let resized = resize_region(
            img,
            (0.0, 0.0, f64::from(w), f64::from(h)),
            rw as u32,
            rh as u32,
        );
        // ONNX Runtime takes any shape: the canvas is the image rounded up to
        // 32 px (what the network's strides need); tract runs the fixed square.
        let (cw, ch) = if self.shapes_fixed() {
            (DET_SIZE, DET_SIZE)
        } else {
            (rw.div_ceil(32) * 32, rh.div_ceil(32) * 32)
        };
        let mut x = Array4::<f32>::zeros((1, 3, ch, cw));
        let mul: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * DET_STD[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| DET_MEAN[c] / DET_STD[c]);
        fill_bgr(&mut x, 0, &resized, |v, c| f32::from(v) * mul[c] - shift[c]);
        let out = self.det.run(&[x.into_dyn().view()])?;
        let map = out.into_iter().next().ok_or_else(|| OcrError::Model {
            path: self.det.path().to_path_buf(),
            message: "the detector returned no output".into(),
        })?;
        let Some(prob) = map.as_slice() else {
            return Err(OcrError::Model {
                path: self.det.path().to_path_buf(),
                message: "the detector's output is not contiguous".into(),
            });
        };
        if prob.len() != cw * ch {
            return Err(OcrError::Model {
                path: self.det.path().to_path_buf(),
                message: format!("detector output has {} values", prob.len()),
            });
        }
        let mut found = db_boxes(prob, cw, rw, rh, &self.params);
        let regions = found.len();
        // Tallest first, capped, then reading order.
        found.sort_by(|a, b| b.3.total_cmp(&a.3));
        found.truncate(self.params.max_lines);
        let inv = 1.0 / scale;
        let mut boxes: Vec<Region> = found
            .into_iter()
            .filter_map(|(x0, y0, bw, bh)| {
                let x0 = (x0 * inv).max(0.0);
                let y0 = (y0 * inv).max(0.0);
                let x1 = ((x0 + bw * inv).min(f64::from(w))).max(x0);
                let y1 = ((y0 + bh * inv).min(f64::from(h))).max(y0);
                (x1 - x0 >= 1.0 && y1 - y0 >= 1.0).then_some((x0, y0, x1 - x0, y1 - y0))
            })
            .collect();
        boxes.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
        Ok((boxes, regions))
    }

    /// Whether the models run at the fixed load-time shapes (tract) or take any
    /// shape (ONNX Runtime).
    fn shapes_fixed(&self) -> bool {
        self.det.engine() == crate::Engine::Tract
    }

    /// The line in `region` of `img`, 48 px high, at most [`REC_W`] wide.
    fn crop(img: &RgbImage, region: Region) -> RgbImage {
        let (x0, y0, bw, bh) = region;
        // A region much taller than wide is a rotated line: read it turned
        // (PaddleOCR turns crops with height >= 1.5 x width).
        if bh >= 1.5 * bw {
            let native = resize_region(
                img,
                (x0, y0, bw, bh),
                bw.round().max(1.0) as u32,
                bh.round().max(1.0) as u32,
            );
            let turned = image::imageops::rotate270(&native);
            let (tw, th) = turned.dimensions();
            let width = rec_width(f64::from(tw), f64::from(th));
            resize_region(
                &turned,
                (0.0, 0.0, f64::from(tw), f64::from(th)),
                width,
                REC_H as u32,
            )
        } else {
            resize_region(img, region, rec_width(bw, bh), REC_H as u32)
        }
    }

    /// Whether the classifier reads this 48 px line as turned 180 degrees.
    fn upside_down(&self, cls: &OnnxModel, crop: &RgbImage) -> Result<bool, OcrError> {
        let (w, h) = crop.dimensions();
        let width = (w as usize).clamp(1, CLS_W) as u32;
        let small = resize_region(
            crop,
            (0.0, 0.0, f64::from(w), f64::from(h)),
            width,
            REC_H as u32,
        );
        let mut x = Array4::<f32>::zeros((1, 3, REC_H, CLS_W));
        fill_bgr(&mut x, 0, &small, unit_range);
        let out = cls.run(&[x.into_dyn().view()])?;
        let p: Vec<f32> = out
            .first()
            .map(|o| o.iter().copied().collect())
            .unwrap_or_default();
        Ok(p.len() == 2 && p[1] > p[0] && p[1] > 0.9)
    }

    /// Reads the text in one region of `img`: (text, mean symbol probability).
    pub fn recognise(&self, img: &RgbImage, region: Region) -> Result<(String, f32), OcrError> {
        let mut v = self.recognise_all(img, &[region])?;
        Ok(v.pop().unwrap_or_default())
    }

    /// Reads every region, one line at a time: on ONNX Runtime at the line's own
    /// width (rounded up to 8 px; measured here, batching lines padded to the
    /// widest gains nothing on CPU and a short price reads 3x faster alone), on
    /// tract at the fixed width, zero padded on the right.
    pub fn recognise_all(
        &self,
        img: &RgbImage,
        regions: &[Region],
    ) -> Result<Vec<(String, f32)>, OcrError> {
        if regions.is_empty() {
            return Ok(Vec::new());
        }
        let mut crops: Vec<RgbImage> = regions.iter().map(|&r| Self::crop(img, r)).collect();
        if let Some(cls) = &self.cls {
            for crop in &mut crops {
                if self.upside_down(cls, crop)? {
                    *crop = image::imageops::rotate180(crop);
                }
            }
        }
        let batches: Vec<(&[RgbImage], usize)> = crops
            .chunks(1)
            .map(|c| {
                let width = if self.shapes_fixed() {
                    REC_W
                } else {
                    (c[0].width() as usize).div_ceil(8).clamp(8, REC_W / 8) * 8
                };
                (c, width)
            })
            .collect();
        let classes = self.symbols.len();
        let mut out = Vec::with_capacity(crops.len());
        for (batch, width) in batches {
            let mut x = Array4::<f32>::zeros((batch.len(), 3, REC_H, width));
            for (n, crop) in batch.iter().enumerate() {
                fill_bgr(&mut x, n, crop, unit_range);
            }
            let probs = self
                .rec
                .run(&[x.into_dyn().view()])?
                .into_iter()
                .next()
                .ok_or_else(|| OcrError::Model {
                    path: self.rec.path().to_path_buf(),
                    message: "the recogniser returned no output".into(),
                })?;
            let Some(flat) = probs.as_slice() else {
                return Err(OcrError::Model {
                    path: self.rec.path().to_path_buf(),
                    message: "the recogniser's output is not contiguous".into(),
                });
            };
            let per = flat.len() / batch.len();
            for n in 0..batch.len() {
                out.push(ctc_greedy(
                    &flat[n * per..(n + 1) * per],
                    classes,
                    &self.symbols,
                ));
            }
        }
        Ok(out)
    }
}

/// Writes `img` into sample `n` of the NCHW tensor `x` in BGR order (as
/// PaddleOCR feeds its OpenCV images: tensor channel c is the image's 2 - c),
/// each value through `f(value, channel)`; what lies outside the tensor is
/// dropped, the rest of the tensor (the padding) is left as it is.
fn fill_bgr(x: &mut Array4<f32>, n: usize, img: &RgbImage, f: impl Fn(u8, usize) -> f32) {
    let (_, _, th, tw) = x.dim();
    let iw = img.width() as usize;
    if iw == 0 {
        return;
    }
    for (yy, row) in img.as_raw().chunks_exact(iw * 3).enumerate().take(th) {
        for (xx, p) in row.chunks_exact(3).enumerate().take(tw) {
            for c in 0..3 {
                x[[n, c, yy, xx]] = f(p[2 - c], c);
            }
        }
    }
}

/// PaddleOCR's recogniser and classifier normalisation: `x / 127.5 - 1`.
fn unit_range(v: u8, _channel: usize) -> f32 {
    f32::from(v) / 127.5 - 1.0
}

/// `(x, y, width, height)` in image pixels.
pub type Region = (f64, f64, f64, f64);

fn rec_width(w: f64, h: f64) -> u32 {
    let w = (REC_H as f64 * w / h.max(1.0)).ceil();
    (w as u32).clamp(1, REC_W as u32)
}

/// Greedy CTC decoding of `[steps, classes]` probabilities: the best class per
/// step, repeats merged, blanks (class 0) dropped. Returns the text and the mean
/// probability of the kept symbols (0 for no text).
pub fn ctc_greedy(probs: &[f32], classes: usize, symbols: &[String]) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0.0f32, 0usize);
    let mut prev = 0usize;
    for step in probs.chunks_exact(classes.max(1)) {
        let (best, p) =
            step.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, v)| if v > a.1 { (i, v) } else { a },
                );
        if best != 0 && best != prev {
            if let Some(s) = symbols.get(best) {
                text.push_str(s);
                sum += p;
                n += 1;
            }
        }
        prev = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

/// DB post-processing on a probability map `side` pixels wide whose valid part
/// is `valid_w` x `valid_h`: regions of pixels above the threshold (8-connected),
/// scored by their mean probability, grown by the unclip distance. Boxes are
/// `(x, y, w, h)` in map pixels.
pub fn db_boxes(
    prob: &[f32],
    side: usize,
    valid_w: usize,
    valid_h: usize,
    params: &OcrParams,
) -> Vec<Region> {
    let (vw, vh) = (valid_w.min(side), valid_h.min(prob.len() / side.max(1)));
    let mut seen = vec![false; prob.len()];
    let mut stack = Vec::new();
    let mut boxes = Vec::new();
    for y in 0..vh {
        for x in 0..vw {
            let i = y * side + x;
            if seen[i] || prob[i] <= params.pixel_threshold {
                continue;
            }
            seen[i] = true;
            stack.push(i);
            let (mut x0, mut y0, mut x1, mut y1) = (x, y, x, y);
            let (mut sum, mut count) = (0.0f64, 0usize);
            while let Some(j) = stack.pop() {
                let (jy, jx) = (j / side, j % side);
                sum += f64::from(prob[j]);
                count += 1;
                x0 = x0.min(jx);
                x1 = x1.max(jx);
                y0 = y0.min(jy);
                y1 = y1.max(jy);
                for dy in [-1isize, 0, 1] {
                    for dx in [-1isize, 0, 1] {
                        let (ny, nx) = (jy as isize + dy, jx as isize + dx);
                        if ny < 0 || nx < 0 || ny >= vh as isize || nx >= vw as isize {
                            continue;
                        }
                        let k = ny as usize * side + nx as usize;
                        if !seen[k] && prob[k] > params.pixel_threshold {
                            seen[k] = true;
                            stack.push(k);
                        }
                    }
                }
            }
            let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
            if bw.min(bh) < 3.0 || sum / (count as f64) < f64::from(params.box_threshold) {
                continue;
            }
            let d = bw * bh * f64::from(params.unclip_ratio) / (2.0 * (bw + bh));
            let (gx, gy) = (x0 as f64 - d, y0 as f64 - d);
            let (gw, gh) = (bw + 2.0 * d, bh + 2.0 * d);
            if gw.min(gh) < 5.0 {
                continue;
            }
            let gx0 = gx.max(0.0);
            let gy0 = gy.max(0.0);
            let gx1 = (gx + gw).min(vw as f64);
            let gy1 = (gy + gh).min(vh as f64);
            boxes.push((gx0, gy0, gx1 - gx0, gy1 - gy0));
        }
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let symbols: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        // steps: a a blank a b blank
        let steps = [1, 1, 0, 1, 2, 0, 3, 3];
        let mut probs = Vec::new();
        for s in steps {
            let mut row = vec![0.0f32; 4];
            row[s] = 0.9;
            probs.extend(row);
        }
        let (text, conf) = ctc_greedy(&probs, 4, &symbols);
        assert_eq!(text, "aab ");
        assert!((conf - 0.9).abs() < 1e-6);
        assert_eq!(ctc_greedy(&[], 4, &symbols), (String::new(), 0.0));
    }

    #[test]
    fn db_finds_two_separate_lines_and_grows_them() {
        let side = 64;
        let mut prob = vec![0.0f32; side * side];
        for y in 10..16 {
            for x in 5..40 {
                prob[y * side + x] = 0.9;
            }
        }
        for y in 30..38 {
            for x in 8..30 {
                prob[y * side + x] = 0.8;
            }
        }
        // A faint blob under the box threshold and a 2-pixel speck are dropped.
        for y in 50..56 {
            for x in 10..20 {
                prob[y * side + x] = 0.35;
            }
        }
        prob[45 * side + 50] = 0.99;
        prob[45 * side + 51] = 0.99;
        let boxes = db_boxes(&prob, side, side, side, &OcrParams::default());
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        let (x, y, w, h) = boxes[0];
        // 35 x 6 grows by 35*6*1.6/82 = 4.1 on each side.
        assert!((x - (5.0 - 4.097)).abs() < 0.01 && (y - (10.0 - 4.097)).abs() < 0.01);
        assert!((w - (35.0 + 8.195)).abs() < 0.01 && (h - (6.0 + 8.195)).abs() < 0.01);
        // Nothing outside the valid area counts.
        assert!(db_boxes(&prob, side, 4, 4, &OcrParams::default()).is_empty());
    }
}
