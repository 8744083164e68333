//! Sentence embeddings with all-MiniLM-L6-v2 (BERT, 6 layers, 384-d), run in plain Rust
//! from the model's safetensors: BERT's uncased WordPiece tokenizer from `vocab.txt`,
//! the encoder on ndarray (matrix products through matrixmultiply), mean pooling, L2
//! normalisation, exactly as sentence-transformers does.
//!
//! Why not tract: the model ships as safetensors only (no ONNX graph), and the encoder
//! is twelve matrix products per layer; a direct implementation is small, loads in
//! a fraction of a second and needs no conversion step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aisle_models::VerifiedArtifact;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use unicode_normalization::UnicodeNormalization;

pub const DIM: usize = 384;
const HEADS: usize = 12;
const MAX_TOKENS: usize = 128;
const EPS: f32 = 1e-12;

#[derive(Debug, thiserror::Error)]
pub enum TextModelError {
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] aisle_models::ModelError),
}

type Result<T, E = TextModelError> = std::result::Result<T, E>;

struct Linear {
    /// [out, in], as stored.
    w: Array2<f32>,
    b: Array1<f32>,
}

impl Linear {
    fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        x.dot(&self.w.t()) + &self.b
    }
}

struct LayerNorm {
    g: Array1<f32>,
    b: Array1<f32>,
}

impl LayerNorm {
    fn forward(&self, x: &mut Array2<f32>) {
        for mut row in x.rows_mut() {
            let n = row.len() as f32;
            let mean = row.sum() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + EPS).sqrt();
            for (i, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * inv * self.g[i] + self.b[i];
            }
        }
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: LayerNorm,
    up: Linear,
    down: Linear,
    ln2: LayerNorm,
}

/// The sentence encoder, loaded once.
pub struct MiniLm {
    vocab: HashMap<String, u32>,
    word: Array2<f32>,
    pos: Array2<f32>,
    typ: Array1<f32>,
    ln: LayerNorm,
    layers: Vec<Layer>,
    path: PathBuf,
}

/// erf with |error| < 1.5e-7 (Abramowitz and Stegun 7.1.26), for exact GELU.
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let x = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y as f32
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

impl MiniLm {
    /// Loads `model.safetensors` and `vocab.txt` from a verified artifact.
    pub fn load(artifact: &VerifiedArtifact) -> Result<Self> {
        let weights = artifact.path("model.safetensors")?.to_path_buf();
        let vocab_path = artifact.path("vocab.txt")?.to_path_buf();
        let bytes = std::fs::read(&weights).map_err(|source| TextModelError::Io {
            path: weights.clone(),
            source,
        })?;
        let fmt = |message: String| TextModelError::Format {
            path: weights.clone(),
            message,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| fmt(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| fmt(format!("tensor {name} is missing")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
                return Err(fmt(format!(
                    "tensor {name}: expected F32 {shape:?}, found {:?} {:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let mat = |name: &str, r: usize, c: usize| -> Result<Array2<f32>> {
            Array2::from_shape_vec((r, c), get(name, &[r, c])?)
                .map_err(|e| fmt(format!("{name}: {e}")))
        };
        let vec1 = |name: &str, n: usize| -> Result<Array1<f32>> {
            Ok(Array1::from_vec(get(name, &[n])?))
        };
        let linear = |p: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                w: mat(&format!("{p}.weight"), out, inp)?,
                b: vec1(&format!("{p}.bias"), out)?,
            })
        };
        let norm = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                g: vec1(&format!("{p}.weight"), DIM)?,
                b: vec1(&format!("{p}.bias"), DIM)?,
            })
        };
        let mut layers = Vec::with_capacity(6);
        for i in 0..6 {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: linear(&format!("{p}.attention.self.query"), DIM, DIM)?,
                k: linear(&format!("{p}.attention.self.key"), DIM, DIM)?,
                v: linear(&format!("{p}.attention.self.value"), DIM, DIM)?,
                o: linear(&format!("{p}.attention.output.dense"), DIM, DIM)?,
                ln1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"), 4 * DIM, DIM)?,
                down: linear(&format!("{p}.output.dense"), DIM, 4 * DIM)?,
                ln2: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let vocab_text =
            std::fs::read_to_string(&vocab_path).map_err(|source| TextModelError::Io {
                path: vocab_path.clone(),
                source,
            })?;
        let vocab: HashMap<String, u32> = vocab_text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let word = mat("embeddings.word_embeddings.weight", 30_522, DIM)?;
        if vocab.len() != word.nrows() {
            return Err(TextModelError::Format {
                path: vocab_path,
                message: format!("{} tokens, the model has {}", vocab.len(), word.nrows()),
            });
        }
        let typ = mat("embeddings.token_type_embeddings.weight", 2, DIM)?;
        Ok(Self {
            vocab,
            word,
            pos: mat("embeddings.position_embeddings.weight", 512, DIM)?,
            typ: typ.row(0).to_owned(),
            ln: norm("embeddings.LayerNorm")?,
            layers,
            path: weights,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn id(&self, t: &str) -> u32 {
        self.vocab.get(t).copied().unwrap_or(100) // [UNK]
    }

    /// BERT uncased tokenization: clean, lower case, strip accents, split on
    /// whitespace and punctuation, WordPiece; `[CLS] ... [SEP]`, at most 128 ids.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut words: Vec<String> = Vec::new();
        let mut cur = String::new();
        let flush = |cur: &mut String, words: &mut Vec<String>| {
            if !cur.is_empty() {
                words.push(std::mem::take(cur));
            }
        };
        for c in text
            .nfd()
            .filter(|c| !is_mark(*c))
            .flat_map(char::to_lowercase)
        {
            if c.is_whitespace() || c.is_control() {
                flush(&mut cur, &mut words);
            } else if is_punct(c) || is_cjk(c) {
                flush(&mut cur, &mut words);
                words.push(c.to_string());
            } else {
                cur.push(c);
            }
        }
        flush(&mut cur, &mut words);
        let mut ids = vec![self.id("[CLS]")];
        'words: for w in words {
            let chars: Vec<char> = w.chars().collect();
            if chars.len() > 100 {
                ids.push(self.id("[UNK]"));
                continue;
            }
            let mut pieces = Vec::new();
            let mut start = 0;
            while start < chars.len() {
                let mut end = chars.len();
                let mut found = None;
                while start < end {
                    let sub: String = chars[start..end].iter().collect();
                    let sub = if start > 0 { format!("##{sub}") } else { sub };
                    if let Some(&id) = self.vocab.get(&sub) {
                        found = Some(id);
                        break;
                    }
                    end -= 1;
                }
                match found {
                    Some(id) => {
                        pieces.push(id);
                        start = end;
                    }
                    None => {
                        ids.push(self.id("[UNK]"));
                        continue 'words;
                    }
                }
            }
            ids.extend(pieces);
        }
        ids.truncate(MAX_TOKENS - 1);
        ids.push(self.id("[SEP]"));
        ids
    }

    /// The unit-length sentence embedding of `text`.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        self.embed_batch(&[text])
            .pop()
            .unwrap_or_else(|| vec![0.0; DIM])
    }

    /// Embeddings of several texts in one pass: their tokens are stacked into one
    /// matrix so every linear layer is one large matrix product (no padding);
    /// attention and pooling stay within each text. Same result as [`Self::embed`]
    /// on each, several times faster for short texts.
    pub fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect();
        let mut spans = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for ids in &seqs {
            spans.push(total..total + ids.len());
            total += ids.len();
        }
        let mut x = Array2::<f32>::zeros((total, DIM));
        for (ids, span) in seqs.iter().zip(&spans) {
            for (i, &id) in ids.iter().enumerate() {
                let mut row = x.row_mut(span.start + i);
                row += &self.word.row(id as usize);
                row += &self.pos.row(i);
                row += &self.typ;
            }
        }
        self.ln.forward(&mut x);
        let hd = DIM / HEADS;
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            let q = l.q.forward(x.view());
            let k = l.k.forward(x.view());
            let v = l.v.forward(x.view());
            let mut ctx = Array2::<f32>::zeros((total, DIM));
            for span in &spans {
                for h in 0..HEADS {
                    let rows = span.clone();
                    let cols = h * hd..(h + 1) * hd;
                    let qs = q.slice(s![rows.clone(), cols.clone()]);
                    let ks = k.slice(s![rows.clone(), cols.clone()]);
                    let vs = v.slice(s![rows.clone(), cols.clone()]);
                    let mut scores = qs.dot(&ks.t()) * scale;
                    for mut row in scores.rows_mut() {
                        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                        row.mapv_inplace(|v| (v - m).exp());
                        let sum = row.sum();
                        row /= sum;
                    }
                    ctx.slice_mut(s![rows, cols]).assign(&scores.dot(&vs));
                }
            }
            let mut h1 = l.o.forward(ctx.view()) + &x;
            l.ln1.forward(&mut h1);
            let mut up = l.up.forward(h1.view());
            up.mapv_inplace(gelu);
            let mut h2 = l.down.forward(up.view()) + &h1;
            l.ln2.forward(&mut h2);
            x = h2;
        }
        spans
            .into_iter()
            .map(|span| {
                let mut mean = x
                    .slice(s![span, ..])
                    .mean_axis(Axis(0))
                    .unwrap_or_else(|| Array1::zeros(DIM));
                let norm = mean.dot(&mean).sqrt().max(1e-12);
                mean /= norm;
                mean.to_vec()
            })
            .collect()
    }
}

fn is_mark(c: char) -> bool {
    // Combining diacritical marks (what NFD splits off accented Latin letters).
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 2e-6, "erf({x}) = {}", erf(x));
        }
    }
}
