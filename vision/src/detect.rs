//! Object localisation: where in the frame the products are.
//!
//! SSD MobileNetV2 trained on Open Images v4 (24 classes, among them Bottle, Box, Mug,
//! Coffee cup and Book), from MediaPipe Objectron's assets, converted to ONNX by the
//! model store. The graph ends at the raw heads (1917 anchors x 4 box offsets, x 24
//! class logits); anchors, box decoding, scores and non-maximum suppression are here,
//! with MediaPipe's parameters for this model (`ssd_anchors_calculator`: 6 layers,
//! scales 0.2-0.95, strides 16-512, aspect ratios 1, 2, 1/2, 3, 1/3; offsets scaled by
//! 10 (centre) and 5 (size), sigmoid scores, class 0 is background).

use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::Array4;
use serde::Serialize;

use crate::onnx::{OnnxError, OnnxModel, OnnxOptions};
use crate::preprocess::resize_region;

const SIZE: u32 = 300;
const INPUT: &str = "normalized_input_image_tensor";

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
}

/// One object found in the frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectedObject {
    /// Open Images class name ("Bottle", "Coffee cup", ...).
    pub label: String,
    pub score: f32,
    /// `[x, y, width, height]` in image pixels, clipped to the image.
    pub bbox: [f32; 4],
}

#[derive(Debug, Clone)]
pub struct DetectParams {
    /// Lowest class probability kept.
    pub min_score: f32,
    /// Boxes overlapping a better one by more than this (IoU) are dropped, whatever
    /// their class: one object, one box.
    pub max_overlap: f32,
    pub max_objects: usize,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams {
            min_score: 0.3,
            max_overlap: 0.45,
            max_objects: 50,
        }
    }
}

/// The detector, loaded once.
pub struct ObjectDetector {
    model: OnnxModel,
    labels: Vec<String>,
    /// `(cx, cy, h, w)`, normalised.
    anchors: Vec<[f32; 4]>,
    pub params: DetectParams,
}

impl std::fmt::Debug for ObjectDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDetector")
            .field("model", &self.model)
            .field("labels", &self.labels.len())
            .finish()
    }
}

/// MediaPipe's SSD anchors for a 300x300 input (1917 of them).
pub fn ssd_anchors() -> Vec<[f32; 4]> {
    let (layers, min_scale, max_scale) = (6usize, 0.2f32, 0.95f32);
    let scale = |i: usize| min_scale + (max_scale - min_scale) * i as f32 / (layers - 1) as f32;
    let mut out = Vec::with_capacity(1917);
    for (layer, stride) in [16u32, 32, 64, 128, 256, 512].into_iter().enumerate() {
        let shapes: Vec<(f32, f32)> = if layer == 0 {
            vec![(1.0, 0.1), (2.0, scale(0)), (0.5, scale(0))]
        } else {
            let next = if layer == layers - 1 {
                1.0
            } else {
                scale(layer + 1)
            };
            let mut s: Vec<(f32, f32)> = [1.0, 2.0, 0.5, 3.0, 0.3333]
                .iter()
                .map(|&a| (a, scale(layer)))
                .collect();
            s.push((1.0, (scale(layer) * next).sqrt()));
            s
        };
        let cells = SIZE.div_ceil(stride) as usize;
        for y in 0..cells {
            for x in 0..cells {
                for &(aspect, s) in &shapes {
                    let r = aspect.sqrt();
                    out.push([
                        (x as f32 + 0.5) / cells as f32,
                        (y as f32 + 0.5) / cells as f32,
                        s / r,
                        s * r,
                    ]);
                }
            }
        }
    }
    out
}

/// Intersection over union of two `[x, y, w, h]` boxes (0 when they do not overlap).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

impl ObjectDetector {
    /// Loads the ONNX model and its label map (one class per line, background first),
    /// and checks the model's heads against the anchors and labels.
    pub fn load(model: &Path, labels: &Path, options: &OnnxOptions) -> Result<Self, DetectError> {
        let text = std::fs::read_to_string(labels).map_err(|e| DetectError::Model {
            path: labels.to_path_buf(),
            message: format!("cannot read the label map: {e}"),
        })?;
        let labels_list: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        let shape = [1, SIZE as usize, SIZE as usize, 3];
        let onnx = OnnxModel::load(model, &[(INPUT, &shape)], options)?;
        let detector = ObjectDetector {
            model: onnx,
            labels: labels_list,
            anchors: ssd_anchors(),
            params: DetectParams::default(),
        };
        let out = detector.run(&Array4::zeros(shape))?;
        let expect = [
            vec![1, detector.anchors.len(), 4],
            vec![1, detector.anchors.len(), detector.labels.len()],
        ];
        let got: Vec<Vec<usize>> = out.iter().map(|o| o.shape().to_vec()).collect();
        if got != expect {
            return Err(DetectError::Model {
                path: model.to_path_buf(),
                message: format!(
                    "outputs {got:?}, expected box offsets and class logits {expect:?} ({} labels in {})",
                    detector.labels.len(),
                    labels.display()
                ),
            });
        }
        Ok(detector)
    }

    pub fn engine(&self) -> crate::Engine {
        self.model.engine()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    fn run(&self, x: &Array4<f32>) -> Result<Vec<ndarray::ArrayD<f32>>, DetectError> {
        Ok(self.model.run(&[x.view().into_dyn()])?)
    }

    /// The network's input for `img`: stretched to 300x300 (bilinear), RGB in [-1, 1].
    pub fn input(img: &RgbImage) -> Array4<f32> {
        let (w, h) = img.dimensions();
        let small = resize_region(img, (0.0, 0.0, f64::from(w), f64::from(h)), SIZE, SIZE);
        let mut x = Array4::<f32>::zeros((1, SIZE as usize, SIZE as usize, 3));
        if let Some(dst) = x.as_slice_mut() {
            for (d, &s) in dst.iter_mut().zip(small.as_raw()) {
                *d = f32::from(s) / 127.5 - 1.0;
            }
        }
        x
    }

    /// Objects in `img`, best first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<DetectedObject>, DetectError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Ok(vec![]);
        }
        let out = self.run(&Self::input(img))?;
        let (boxes, logits) = (&out[0], &out[1]);
        let classes = self.labels.len();
        let (fw, fh) = (w as f32, h as f32);
        let mut found: Vec<(usize, f32, [f32; 4])> = Vec::new();
        for (i, a) in self.anchors.iter().enumerate() {
            // Class 0 is the background.
            let (class, logit) = (1..classes).map(|c| (c, logits[[0, i, c]])).fold(
                (0, f32::NEG_INFINITY),
                |best, c| if c.1 > best.1 { c } else { best },
            );
            let score = 1.0 / (1.0 + (-logit).exp());
            if score.is_nan() || score < self.params.min_score {
                continue;
            }
            let (ty, tx, th, tw) = (
                boxes[[0, i, 0]],
                boxes[[0, i, 1]],
                boxes[[0, i, 2]],
                boxes[[0, i, 3]],
            );
            let cx = tx / 10.0 * a[3] + a[0];
            let cy = ty / 10.0 * a[2] + a[1];
            let bw = (tw / 5.0).exp() * a[3];
            let bh = (th / 5.0).exp() * a[2];
            let x0 = ((cx - bw / 2.0) * fw).clamp(0.0, fw);
            let y0 = ((cy - bh / 2.0) * fh).clamp(0.0, fh);
            let x1 = ((cx + bw / 2.0) * fw).clamp(0.0, fw);
            let y1 = ((cy + bh / 2.0) * fh).clamp(0.0, fh);
            if x1 - x0 >= 1.0 && y1 - y0 >= 1.0 && (x0 + x1 + y0 + y1).is_finite() {
                found.push((class, score, [x0, y0, x1 - x0, y1 - y0]));
            }
        }
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept: Vec<(usize, f32, [f32; 4])> = Vec::new();
        for f in found {
            if kept.len() >= self.params.max_objects {
                break;
            }
            if kept
                .iter()
                .all(|k| iou(&k.2, &f.2) <= self.params.max_overlap)
            {
                kept.push(f);
            }
        }
        Ok(kept
            .into_iter()
            .map(|(class, score, bbox)| DetectedObject {
                label: self.labels[class].clone(),
                score,
                bbox,
            })
            .collect())
    }
}
