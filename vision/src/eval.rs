//! Evaluation on Fashion-MNIST (10,000 real product photos in 10 classes): zero-shot
//! accuracy from class names alone, few-shot accuracy with 1, 5 and 10 enrolled
//! photos per class, and open-set rejection with classes held out of the catalog.
//!
//! Fashion-MNIST photos are 28x28 grey, the garment white on black; they are
//! inverted (dark garment on white, as catalogue photos are shot) and upsampled to
//! the model's input by the same preprocessing as every scan.

use std::io::Read;
use std::path::Path;

use image::{GrayImage, RgbImage};
use serde::Serialize;

use crate::encoder::{EncoderError, ImageTextModel};
use crate::matcher::{self, Decision, Entry, Fusion, Query};

pub const CLASSES: [&str; 10] = [
    "T-shirt or top",
    "Trouser",
    "Pullover sweater",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Data {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

fn gunzip(path: &Path) -> Result<Vec<u8>, EvalError> {
    let f = std::fs::File::open(path).map_err(|e| EvalError::Data {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| EvalError::Data {
            path: path.to_path_buf(),
            message: format!("not a gzip file: {e}"),
        })?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Reads an IDX image file (gzip), at most `limit` images.
pub fn read_images(path: &Path, limit: usize) -> Result<Vec<GrayImage>, EvalError> {
    let b = gunzip(path)?;
    let bad = |m: &str| EvalError::Data {
        path: path.to_path_buf(),
        message: m.to_string(),
    };
    if be_u32(&b, 0) != Some(0x0803) {
        return Err(bad("not an IDX3 image file"));
    }
    let (n, rows, cols) = match (be_u32(&b, 4), be_u32(&b, 8), be_u32(&b, 12)) {
        (Some(n), Some(r), Some(c)) => (n, r, c),
        _ => return Err(bad("truncated header")),
    };
    let size = rows * cols;
    if b.len() < 16 + n * size {
        return Err(bad("truncated pixel data"));
    }
    Ok((0..n.min(limit))
        .filter_map(|i| {
            let px = b[16 + i * size..16 + (i + 1) * size].to_vec();
            GrayImage::from_raw(cols as u32, rows as u32, px)
        })
        .collect())
}

/// Reads an IDX label file (gzip), at most `limit` labels.
pub fn read_labels(path: &Path, limit: usize) -> Result<Vec<u8>, EvalError> {
    let b = gunzip(path)?;
    if be_u32(&b, 0) != Some(0x0801) {
        return Err(EvalError::Data {
            path: path.to_path_buf(),
            message: "not an IDX1 label file".into(),
        });
    }
    let n = be_u32(&b, 4).unwrap_or(0);
    Ok(b.get(8..8 + n)
        .unwrap_or(&[])
        .iter()
        .take(limit)
        .copied()
        .collect())
}

/// A Fashion-MNIST photo as a catalogue-style RGB image.
pub fn to_photo(g: &GrayImage) -> RgbImage {
    RgbImage::from_fn(g.width(), g.height(), |x, y| {
        let v = 255 - g.get_pixel(x, y)[0];
        image::Rgb([v, v, v])
    })
}

/// Embeddings of a set of photos.
pub struct Embedded {
    pub visual: Vec<Vec<f32>>,
    pub joint: Vec<Vec<f32>>,
    pub certainty: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Embedded {
    /// Photo `i` as a matcher query (no OCR text).
    pub fn query(&self, i: usize) -> Query<'_> {
        Query {
            visual: &self.visual[i],
            joint: &self.joint[i],
            ocr: None,
            certainty: self.certainty[i],
        }
    }
}

pub fn embed_all(
    model: &dyn ImageTextModel,
    images: &[GrayImage],
    labels: &[u8],
    progress: &mut dyn FnMut(usize),
) -> Result<Embedded, EvalError> {
    let mut visual = Vec::with_capacity(images.len());
    let mut joint = Vec::with_capacity(images.len());
    let mut certainty = Vec::with_capacity(images.len());
    for (i, g) in images.iter().enumerate() {
        let e = model.embed_image(&to_photo(g))?;
        visual.push(e.visual);
        joint.push(e.joint);
        certainty.push(e.certainty);
        progress(i + 1);
    }
    Ok(Embedded {
        visual,
        joint,
        certainty,
        labels: labels.to_vec(),
    })
}

/// The first `k` training photos of each class.
pub fn shots(train: &Embedded, k: usize) -> Vec<Vec<Vec<f32>>> {
    let mut per: Vec<Vec<Vec<f32>>> = vec![Vec::new(); CLASSES.len()];
    for (v, &l) in train.visual.iter().zip(&train.labels) {
        let c = l as usize;
        if c < per.len() && per[c].len() < k {
            per[c].push(v.clone());
        }
    }
    per
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub setting: String,
    /// Top-1 accuracy over known-class photos.
    pub accuracy: f64,
    /// With classes held out: share of their photos answered "unknown".
    pub unknown_rejected: Option<f64>,
    /// With classes held out: share of known-class photos identified correctly
    /// (not rejected, right class).
    pub known_identified: Option<f64>,
}

/// The catalog: one product per class, `refs[c]` its enrolled photos.
pub fn catalog(
    model: &dyn ImageTextModel,
    refs: &[Vec<Vec<f32>>],
    classes: &[usize],
) -> Vec<Entry> {
    classes
        .iter()
        .map(|&c| Entry {
            sku: c.to_string(),
            name: CLASSES[c].to_string(),
            text: model.embed_text(CLASSES[c]),
            references: refs.get(c).cloned().unwrap_or_default(),
        })
        .collect()
}

/// Accuracy (closed set, all 10 classes) and, with `held_out` classes missing from
/// the catalog, open-set rejection at `fusion.threshold`.
pub fn evaluate(
    entries_all: &[Entry],
    entries_open: &[Entry],
    held_out: &[usize],
    test: &Embedded,
    fusion: &Fusion,
    setting: &str,
) -> Row {
    let mut right = 0usize;
    let (mut unknown_n, mut unknown_rej, mut known_n, mut known_ok) = (0usize, 0, 0usize, 0);
    for i in 0..test.labels.len() {
        let q = test.query(i);
        let label = test.labels[i].to_string();
        let closed = matcher::rank(entries_all, &q, fusion, 2);
        if closed.matches.first().is_some_and(|m| m.sku == label) {
            right += 1;
        }
        let open = matcher::rank(entries_open, &q, fusion, 2);
        if held_out.contains(&(test.labels[i] as usize)) {
            unknown_n += 1;
            if open.decision == Decision::Unknown {
                unknown_rej += 1;
            }
        } else {
            known_n += 1;
            if open.decision == Decision::Identified
                && open.matches.first().is_some_and(|m| m.sku == label)
            {
                known_ok += 1;
            }
        }
    }
    let frac = |a: usize, n: usize| (n > 0).then(|| a as f64 / n as f64);
    Row {
        setting: setting.to_string(),
        accuracy: right as f64 / test.labels.len().max(1) as f64,
        unknown_rejected: frac(unknown_rej, unknown_n),
        known_identified: frac(known_ok, known_n),
    }
}

/// Fits the confidence calibration (`bias`, `top`, `margin`, `certainty` of
/// [`Fusion`]) by logistic regression of "the top match is right" on the top fused
/// score, its margin over the second and the image model's certainty, on an
/// open-set catalog (photos of held-out classes are always wrong). Returns the
/// fitted fusion and its mean log-loss.
#[allow(clippy::needless_range_loop)] // small dense matrices read best by index
pub fn calibrate(entries_open: &[Entry], test: &Embedded, fusion: &Fusion) -> (Fusion, f64) {
    let mut xs: Vec<([f64; 4], f64)> = Vec::new();
    for i in 0..test.labels.len() {
        let q = test.query(i);
        let r = matcher::rank(entries_open, &q, fusion, 2);
        if let [a, b, ..] = r.matches.as_slice() {
            let y = if a.sku == test.labels[i].to_string() {
                1.0
            } else {
                0.0
            };
            let x = [
                1.0,
                a.score as f64,
                (a.score - b.score) as f64,
                test.certainty[i] as f64,
            ];
            xs.push((x, y));
        }
    }
    let n = xs.len().max(1) as f64;
    let mut w = [0f64; 4];
    let p = |w: &[f64; 4], x: &[f64; 4]| {
        let z: f64 = w.iter().zip(x).map(|(a, b)| a * b).sum();
        1.0 / (1.0 + (-z).exp())
    };
    // Newton's method on 4 parameters (a small ridge keeps it well posed).
    for _ in 0..50 {
        let mut g = [0f64; 4];
        let mut h = [[0f64; 4]; 4];
        for (x, y) in &xs {
            let pi = p(&w, x);
            for a in 0..4 {
                g[a] += (pi - y) * x[a];
                for b in 0..4 {
                    h[a][b] += pi * (1.0 - pi) * x[a] * x[b];
                }
            }
        }
        for a in 0..4 {
            g[a] = g[a] / n + 1e-4 * w[a];
            for b in 0..4 {
                h[a][b] = h[a][b] / n + if a == b { 1e-4 } else { 0.0 };
            }
        }
        let Some(step) = solve4(h, g) else { break };
        for a in 0..4 {
            w[a] -= step[a];
        }
    }
    let loss = xs
        .iter()
        .map(|(x, y)| {
            let q = p(&w, x).clamp(1e-9, 1.0 - 1e-9);
            -(y * q.ln() + (1.0 - y) * (1.0 - q).ln())
        })
        .sum::<f64>()
        / n;
    (
        Fusion {
            bias: w[0] as f32,
            top: w[1] as f32,
            margin: w[2] as f32,
            certainty: w[3] as f32,
            ..*fusion
        },
        loss,
    )
}

/// Solves a 4x4 linear system by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)]
fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for c in 0..4 {
        let piv = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        for r in c + 1..4 {
            let f = a[r][c] / a[c][c];
            for k in c..4 {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0f64; 4];
    for r in (0..4).rev() {
        let s: f64 = (r + 1..4).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}
