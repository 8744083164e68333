//! The CLIP backend of [`ImageTextModel`], for a store that has CLIP weights:
//! separate image and text encoders as exported to ONNX from OpenCLIP or
//! Hugging Face, the CLIP byte-level BPE tokenizer, CLIP's preprocessing.
//!
//! - Tokenizer: OpenAI CLIP / OpenCLIP `SimpleTokenizer` over
//!   `bpe_simple_vocab_16e6.txt.gz` (48,894 merges, 49,408 tokens): text
//!   lower-cased with whitespace collapsed, split by CLIP's pattern (contractions,
//!   letter runs, single digits, punctuation runs), each piece's UTF-8 bytes
//!   mapped to printable characters and merged by rank, the last symbol marked
//!   `</w>`; `<|startoftext|>` ... `<|endoftext|>`, zero padded to 77, truncated
//!   with the end token kept. Not done: `ftfy` mojibake repair and HTML
//!   unescaping, which only matter for scraped text.
//! - Preprocessing: the centred square resampled bicubically to the input size
//!   (PIL's bicubic, as CLIP's `Resize(BICUBIC)` + `CenterCrop`), normalised with
//!   CLIP's mean and standard deviation.
//! - Graphs: image encoder `[1, 3, S, S]` float -> embedding `[1, D]`; text
//!   encoder `[1, 77]` int64 token ids -> embedding `[1, D]` (the projection at
//!   the end-of-text token is the graph's job, as in both exporters). Both
//!   embeddings are L2-normalised here; the image embedding is both the visual
//!   and the joint embedding.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use ndarray::Array2;

use crate::encoder::{EncoderError, ImageEmbedding, ImageTextModel, l2_normalise};
use crate::onnx::{InputType, OnnxModel, OnnxOptions};
use crate::preprocess::{Filter, Preprocess};

/// CLIP's text context.
pub const CONTEXT: usize = 77;
const MERGES: usize = 49152 - 256 - 2;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{path}: {message}")]
    Vocabulary { path: PathBuf, message: String },
}

/// CLIP's byte-level BPE tokenizer.
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), u32>,
    byte_char: [char; 256],
    pub sot: u32,
    pub eot: u32,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("tokens", &self.encoder.len())
            .finish()
    }
}

/// GPT-2's reversible map from bytes to printable characters, and the bytes in
/// the order the vocabulary lists them (printable ones first, as the Python
/// dict is built).
fn bytes_to_unicode() -> ([char; 256], Vec<u8>) {
    let mut order: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    order.extend(0xA1..=0xAC);
    order.extend(0xAE..=0xFF);
    let printable = order.clone();
    let mut out = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            order.push(b);
            n += 1;
            255 + n
        };
        out[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    (out, order.into_iter().map(|b| b as u8).collect())
}

impl ClipTokenizer {
    /// Loads `bpe_simple_vocab_16e6.txt.gz` (gzip) or its plain text.
    pub fn load(path: &Path) -> Result<Self, ClipError> {
        let err = |message: String| ClipError::Vocabulary {
            path: path.to_path_buf(),
            message,
        };
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .map_err(|e| err(format!("not a readable gzip text: {e}")))?;
            s
        } else {
            String::from_utf8(raw).map_err(|_| err("not UTF-8 text".into()))?
        };
        Self::from_merges(&text).map_err(err)
    }

    /// From the merges text (a header line, then one `a b` merge per line).
    pub fn from_merges(text: &str) -> Result<Self, String> {
        let lines: Vec<&str> = text.split('\n').skip(1).take(MERGES).collect();
        let (byte_char, order) = bytes_to_unicode();
        let mut vocab: Vec<String> = order
            .iter()
            .map(|&b| byte_char[b as usize].to_string())
            .collect();
        vocab.extend(
            order
                .iter()
                .map(|&b| format!("{}</w>", byte_char[b as usize])),
        );
        let mut ranks = HashMap::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let Some((a, b)) = line.split_once(' ') else {
                if line.is_empty() && i + 1 == lines.len() {
                    break;
                }
                return Err(format!("merge line {} is not `a b`: {line:?}", i + 2));
            };
            vocab.push(format!("{a}{b}"));
            ranks.insert((a.to_string(), b.to_string()), i as u32);
        }
        if ranks.is_empty() {
            return Err("no merges".into());
        }
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let encoder: HashMap<String, u32> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let sot = encoder.get("<|startoftext|>").copied().unwrap_or(0);
        let eot = encoder.get("<|endoftext|>").copied().unwrap_or(0);
        Ok(ClipTokenizer {
            encoder,
            ranks,
            byte_char,
            sot,
            eot,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// CLIP's pre-tokenisation: contractions, letter runs, single digits, runs
    /// of other non-space characters (on lower-cased, whitespace-collapsed text).
    fn pieces(text: &str) -> Vec<String> {
        let text = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if c == '\'' {
                let rest: String = chars[i + 1..chars.len().min(i + 3)].iter().collect();
                let n =
                    if rest.starts_with("re") || rest.starts_with("ve") || rest.starts_with("ll") {
                        2
                    } else if rest.starts_with(['s', 't', 'm', 'd']) {
                        1
                    } else {
                        0
                    };
                if n > 0 {
                    out.push(chars[i..=i + n].iter().collect());
                    i += n + 1;
                    continue;
                }
            }
            let start = i;
            if c.is_alphabetic() {
                while i < chars.len() && chars[i].is_alphabetic() {
                    i += 1;
                }
            } else if c.is_numeric() {
                i += 1;
            } else {
                // Punctuation and symbols up to the next space, letter or digit;
                // a contraction inside starts a new piece.
                i += 1;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !chars[i].is_alphabetic()
                    && !chars[i].is_numeric()
                {
                    if chars[i] == '\'' {
                        let rest: String = chars[i + 1..chars.len().min(i + 3)].iter().collect();
                        if rest.starts_with(['s', 't', 'm', 'd'])
                            || rest.starts_with("re")
                            || rest.starts_with("ve")
                            || rest.starts_with("ll")
                        {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            out.push(chars[start..i].iter().collect());
        }
        out
    }

    /// BPE of one piece (already mapped to byte characters).
    fn bpe(&self, piece: &str) -> Vec<String> {
        let chars: Vec<char> = piece.chars().collect();
        let Some((last, head)) = chars.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<String> = head.iter().map(|c| c.to_string()).collect();
        word.push(format!("{last}</w>"));
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|r| (*r, w))
                })
                .min_by_key(|(r, _)| *r)
                .map(|(_, w)| (w[0].clone(), w[1].clone()));
            let Some((a, b)) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }

    /// Token ids of `text`, without the start and end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for piece in Self::pieces(text) {
            let mapped: String = piece
                .as_bytes()
                .iter()
                .map(|&b| self.byte_char[b as usize])
                .collect();
            for t in self.bpe(&mapped) {
                if let Some(&id) = self.encoder.get(&t) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// The model input: start, tokens, end, zero padding to [`CONTEXT`]; a
    /// longer text is cut with the end token kept last.
    pub fn tokenize(&self, text: &str) -> Vec<i64> {
        let mut ids = vec![i64::from(self.sot)];
        ids.extend(self.encode(text).into_iter().map(i64::from));
        ids.push(i64::from(self.eot));
        if ids.len() > CONTEXT {
            ids.truncate(CONTEXT);
            ids[CONTEXT - 1] = i64::from(self.eot);
        }
        ids.resize(CONTEXT, 0);
        ids
    }
}

/// CLIP's image normalisation.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// A CLIP model: image and text encoders plus the tokenizer.
pub struct Clip {
    image: OnnxModel,
    text: OnnxModel,
    tokenizer: ClipTokenizer,
    preprocess: Preprocess,
    fingerprint: String,
    dim: usize,
}

impl Clip {
    /// Loads the two encoders (`image_size` is the square input side, 224 for
    /// ViT-B/32) and checks that they embed into the same space.
    pub fn load(
        image_encoder: &Path,
        text_encoder: &Path,
        tokenizer: ClipTokenizer,
        image_size: u32,
        fingerprint: &str,
        options: &OnnxOptions,
    ) -> Result<Self, EncoderError> {
        let s = image_size as usize;
        let image = OnnxModel::load_typed(
            image_encoder,
            &[("pixel_values", &[1, 3, s, s], InputType::F32)],
            options,
        )?;
        let text = OnnxModel::load_typed(
            text_encoder,
            &[("input_ids", &[1, CONTEXT], InputType::I64)],
            options,
        )?;
        let mut clip = Clip {
            image,
            text,
            tokenizer,
            preprocess: Preprocess {
                size: image_size,
                mean: CLIP_MEAN,
                std: CLIP_STD,
                filter: Filter::Bicubic,
            },
            fingerprint: format!("clip:{fingerprint}"),
            dim: 0,
        };
        let probe = RgbImage::new(image_size, image_size);
        let a = clip.image_vector(&probe)?.0;
        let b = clip.text_vector("a photo")?;
        if a.len() != b.len() || a.is_empty() {
            return Err(EncoderError::Model {
                path: text_encoder.to_path_buf(),
                message: format!(
                    "image embeddings have {} dimensions, text embeddings {}",
                    a.len(),
                    b.len()
                ),
            });
        }
        clip.dim = a.len();
        Ok(clip)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn engine(&self) -> crate::Engine {
        self.image.engine()
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The image embedding (L2-normalised) and (preprocess, embed) microseconds.
    fn image_vector(&self, img: &RgbImage) -> Result<(Vec<f32>, u64, u64), EncoderError> {
        let t0 = Instant::now();
        let x = self.preprocess.tensor(img);
        let t1 = Instant::now();
        let out = self.image.run(&[x.into_dyn().view()])?;
        let mut v = first_row(out, self.image.path())?;
        l2_normalise(&mut v);
        Ok((
            v,
            (t1 - t0).as_micros() as u64,
            t1.elapsed().as_micros() as u64,
        ))
    }

    /// The embedding of an already preprocessed `[1, 3, S, S]` tensor, L2-normalised.
    pub fn pixels_vector(&self, x: ndarray::ArrayViewD<'_, f32>) -> Result<Vec<f32>, EncoderError> {
        let out = self.image.run(&[x])?;
        let mut v = first_row(out, self.image.path())?;
        l2_normalise(&mut v);
        Ok(v)
    }

    /// The embedding of a tokenized text, L2-normalised.
    pub fn text_vector(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
        self.ids_vector(&self.tokenizer.tokenize(text))
    }

    /// The embedding of token ids (`CONTEXT` of them), L2-normalised.
    pub fn ids_vector(&self, ids: &[i64]) -> Result<Vec<f32>, EncoderError> {
        let x = Array2::from_shape_vec((1, ids.len()), ids.to_vec()).map_err(|e| {
            EncoderError::Model {
                path: self.text.path().to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let out = self.text.run_i64(x.into_dyn().view())?;
        let mut v = first_row(out, self.text.path())?;
        l2_normalise(&mut v);
        Ok(v)
    }
}

fn first_row(out: Vec<ndarray::ArrayD<f32>>, path: &Path) -> Result<Vec<f32>, EncoderError> {
    let o = out.into_iter().next().ok_or_else(|| EncoderError::Model {
        path: path.to_path_buf(),
        message: "the encoder returned no output".into(),
    })?;
    let d = o.shape().last().copied().unwrap_or(0);
    Ok(o.iter().take(d).copied().collect())
}

impl ImageTextModel for Clip {
    fn name(&self) -> &str {
        "clip"
    }

    fn visual_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn embed_image(&self, img: &RgbImage) -> Result<ImageEmbedding, EncoderError> {
        let (v, preprocess_us, embed_us) = self.image_vector(img)?;
        Ok(ImageEmbedding {
            visual: v.clone(),
            joint: v,
            classes: Vec::new(),
            // CLIP has no class posterior; zero-shot evidence stands on its own.
            certainty: 1.0,
            preprocess_us,
            embed_us,
        })
    }

    fn embed_text(&self, text: &str) -> Vec<f32> {
        self.text_vector(text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "CLIP text encoder failed; the text matches nothing");
            vec![0.0; self.dim]
        })
    }
}
