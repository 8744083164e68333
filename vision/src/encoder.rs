//! The joint image/text embedding interface and its default backend.
//!
//! [`ImageTextModel`] is what product matching needs from a model: an image's
//! visual embedding (image-to-image similarity with enrolled photos), and an
//! image and a text in one shared space (zero-shot image-to-text). Two
//! implementations: [`EfficientNetConse`] (default; real weights here) and
//! a CLIP ONNX backend (planned: a store with CLIP weights selects it).
//!
//! EfficientNet-Lite0 (ImageNet) gives a 1280-d pooled embedding and 1000 class
//! probabilities. The shared space is all-MiniLM-L6-v2's sentence space: an
//! image's zero-shot embedding is the convex combination of the MiniLM
//! embeddings of its top-T ImageNet class names weighted by their probabilities
//! (ConSE, Norouzi et al., ICLR 2014), and a product's text is embedded by MiniLM.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;
use ndarray::Axis;

use crate::onnx::{OnnxError, OnnxModel, OnnxOptions};
use crate::preprocess::Preprocess;
use crate::text::MiniLm;

/// Number of ImageNet classes ConSE combines.
pub const CONSE_TOP: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{path}: {message}")]
    Model {
        path: std::path::PathBuf,
        message: String,
    },
}

/// What one image gives.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// Visual embedding, L2-normalised.
    pub visual: Vec<f32>,
    /// Embedding in the shared image/text space, L2-normalised.
    pub joint: Vec<f32>,
    /// The model's own reading, best first (label, probability); empty for CLIP.
    pub classes: Vec<(String, f32)>,
    /// How sure the model is of what it sees, 0..1 (top class probability).
    pub certainty: f32,
    pub preprocess_us: u64,
    pub embed_us: u64,
}

/// One joint image/text embedding interface.
pub trait ImageTextModel: Send + Sync {
    fn name(&self) -> &str;
    /// Identifies the weights (cache key for persisted embeddings).
    fn fingerprint(&self) -> String;
    fn embed_image(&self, img: &RgbImage) -> Result<ImageEmbedding, EncoderError>;
    /// A text in the shared space, L2-normalised.
    fn embed_text(&self, text: &str) -> Vec<f32>;
    /// Many texts (a catalog index build); backends batch where they can.
    fn embed_texts(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        texts.iter().map(|t| self.embed_text(t)).collect()
    }
    /// Identifies the visual embedding (enrolled reference photos are kept per
    /// visual model).
    fn visual_fingerprint(&self) -> String;
    /// The visual embedding alone (enrolment), L2-normalised.
    fn embed_visual(&self, img: &RgbImage) -> Result<Vec<f32>, EncoderError> {
        Ok(self.embed_image(img)?.visual)
    }
}

pub fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// EfficientNet-Lite0 as an image classifier and embedder.
#[derive(Debug)]
pub struct EfficientNet {
    model: OnnxModel,
    pre: Preprocess,
    fingerprint: String,
}

/// Output of one forward pass.
#[derive(Debug, Clone)]
pub struct EfficientNetOutput {
    pub embedding: Vec<f32>,
    pub probs: Vec<f32>,
    pub preprocess_us: u64,
    pub embed_us: u64,
}

impl EfficientNet {
    pub const INPUT: u32 = 224;

    /// `fingerprint` identifies the weights (the model file's sha256).
    pub fn load(
        path: &Path,
        fingerprint: &str,
        options: &OnnxOptions,
    ) -> Result<Self, EncoderError> {
        let s = Self::INPUT as usize;
        let model = OnnxModel::load(path, &[("input", &[1, 3, s, s])], options)?;
        let me = EfficientNet {
            model,
            pre: Preprocess::imagenet(Self::INPUT),
            fingerprint: fingerprint.to_string(),
        };
        // Warm up (the first run allocates) and check the outputs are what we expect.
        let probe = RgbImage::from_pixel(Self::INPUT, Self::INPUT, image::Rgb([128, 128, 128]));
        me.run(&probe)?;
        Ok(me)
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.pre
    }

    pub fn onnx(&self) -> &OnnxModel {
        &self.model
    }

    pub fn run(&self, img: &RgbImage) -> Result<EfficientNetOutput, EncoderError> {
        let t0 = Instant::now();
        let x = self.pre.tensor(img);
        let t1 = Instant::now();
        let out = self.run_tensor(x.view().into_dyn())?;
        Ok(EfficientNetOutput {
            preprocess_us: (t1 - t0).as_micros() as u64,
            embed_us: t1.elapsed().as_micros() as u64,
            ..out
        })
    }

    /// Forward pass on an already normalised [1,3,224,224] tensor.
    pub fn run_tensor(
        &self,
        x: ndarray::ArrayViewD<'_, f32>,
    ) -> Result<EfficientNetOutput, EncoderError> {
        let outs = self.model.run(&[x])?;
        let bad = |m: String| EncoderError::Model {
            path: self.model.path().to_path_buf(),
            message: m,
        };
        let mut logits = None;
        let mut embedding = None;
        for o in &outs {
            let flat: Vec<f32> = o.iter().copied().collect();
            match o.len_of(Axis(o.ndim().saturating_sub(1))) {
                1000 => logits = Some(flat),
                1280 => embedding = Some(flat),
                _ => {}
            }
        }
        let (Some(logits), Some(mut embedding)) = (logits, embedding) else {
            return Err(bad(format!(
                "expected outputs [1,1000] and [1,1280], got {:?}",
                outs.iter().map(|o| o.shape().to_vec()).collect::<Vec<_>>()
            )));
        };
        if logits.iter().chain(&embedding).any(|x| !x.is_finite()) {
            return Err(bad("non-finite output".into()));
        }
        l2_normalise(&mut embedding);
        Ok(EfficientNetOutput {
            embedding,
            probs: softmax(&logits),
            preprocess_us: 0,
            embed_us: 0,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// ConSE: ImageNet class probabilities projected into MiniLM's sentence space.
#[derive(Debug, Clone)]
pub struct Conse {
    labels: Vec<String>,
    /// One L2-normalised MiniLM embedding per class.
    label_embeddings: Vec<Vec<f32>>,
}

impl Conse {
    /// Reads the label file (one class per line, synonyms separated by commas).
    pub fn read_labels(path: &Path) -> Result<Vec<String>, EncoderError> {
        let text = std::fs::read_to_string(path).map_err(|e| EncoderError::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        if labels.len() != 1000 || labels.iter().any(String::is_empty) {
            return Err(EncoderError::Model {
                path: path.to_path_buf(),
                message: format!(
                    "expected 1000 non-empty ImageNet labels, found {}",
                    labels.len()
                ),
            });
        }
        Ok(labels)
    }

    /// What MiniLM embeds for a class: its synonyms as a phrase.
    pub fn label_text(label: &str) -> String {
        label.replace(", ", " or ")
    }

    /// Embeds every label (about 1000 MiniLM calls; callers cache the result).
    pub fn build(labels: Vec<String>, minilm: &MiniLm) -> Self {
        let texts: Vec<String> = labels.iter().map(|l| Self::label_text(l)).collect();
        let label_embeddings = texts
            .chunks(64)
            .flat_map(|c| minilm.embed_batch(&c.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        Conse {
            labels,
            label_embeddings,
        }
    }

    pub fn from_parts(labels: Vec<String>, label_embeddings: Vec<Vec<f32>>) -> Option<Self> {
        (labels.len() == label_embeddings.len()).then_some(Conse {
            labels,
            label_embeddings,
        })
    }

    pub fn label_embeddings(&self) -> &[Vec<f32>] {
        &self.label_embeddings
    }

    /// The top `k` classes, best first.
    pub fn top(&self, probs: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..probs.len().min(self.labels.len())).collect();
        idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        idx.into_iter().take(k).map(|i| (i, probs[i])).collect()
    }

    /// The image's point in the sentence space (L2-normalised).
    pub fn project(&self, probs: &[f32]) -> Vec<f32> {
        let top = self.top(probs, CONSE_TOP);
        let z: f32 = top.iter().map(|(_, p)| p).sum();
        let dim = self.label_embeddings.first().map_or(0, Vec::len);
        let mut v = vec![0f32; dim];
        for (i, p) in top {
            let w = if z > 0.0 { p / z } else { 0.0 };
            for (o, e) in v.iter_mut().zip(&self.label_embeddings[i]) {
                *o += w * e;
            }
        }
        l2_normalise(&mut v);
        v
    }

    pub fn label(&self, i: usize) -> &str {
        &self.labels[i]
    }
}

/// The default [`ImageTextModel`]: EfficientNet-Lite0 + ConSE + MiniLM.
pub struct EfficientNetConse<'a> {
    pub net: &'a EfficientNet,
    pub conse: &'a Conse,
    pub minilm: &'a MiniLm,
    fingerprint: String,
}

impl<'a> EfficientNetConse<'a> {
    pub fn new(
        net: &'a EfficientNet,
        conse: &'a Conse,
        minilm: &'a MiniLm,
        minilm_fp: &str,
    ) -> Self {
        let fingerprint = format!("efficientnet-conse:{}:{}", net.fingerprint(), minilm_fp);
        EfficientNetConse {
            net,
            conse,
            minilm,
            fingerprint,
        }
    }
}

impl ImageTextModel for EfficientNetConse<'_> {
    fn name(&self) -> &str {
        "efficientnet-lite0+conse(all-minilm-l6-v2)"
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn embed_image(&self, img: &RgbImage) -> Result<ImageEmbedding, EncoderError> {
        let out = self.net.run(img)?;
        let joint = self.conse.project(&out.probs);
        let classes = self
            .conse
            .top(&out.probs, 5)
            .into_iter()
            .map(|(i, p)| (self.conse.label(i).to_string(), p))
            .collect();
        let certainty = out.probs.iter().copied().fold(0f32, f32::max);
        Ok(ImageEmbedding {
            visual: out.embedding,
            joint,
            classes,
            certainty,
            preprocess_us: out.preprocess_us,
            embed_us: out.embed_us,
        })
    }

    fn embed_text(&self, text: &str) -> Vec<f32> {
        self.minilm.embed(text)
    }

    fn embed_texts(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.minilm.embed_batch(texts)
    }

    fn visual_fingerprint(&self) -> String {
        self.net.fingerprint().to_string()
    }

    fn embed_visual(&self, img: &RgbImage) -> Result<Vec<f32>, EncoderError> {
        Ok(self.net.run(img)?.embedding)
    }
}
