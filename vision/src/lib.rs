//! Product recognition from camera images (issue #4): image and text embeddings,
//! OCR of labels and price tags, and matching against the catalog with open-set
//! rejection.
//!
//! - [`onnx`]: ONNX execution, tract or ONNX Runtime, chosen per model.
//! - [`preprocess`]: bounded image decoding and exact, fast model preprocessing.
//! - [`encoder`]: the joint image/text embedding interface; EfficientNet-Lite0 +
//!   ConSE into all-MiniLM-L6-v2's sentence space ([`text::MiniLm`]).
//! - [`ocr`]: PP-OCRv4 text detection and recognition (labels, price tags).
//! - [`detect`]: object localisation (SSD MobileNetV2, Open Images classes).
//! - [`ann`]: approximate search (IVF) for catalogs of 1M+ products.
//! - [`clip`]: the CLIP backend (ONNX encoders, BPE tokenizer) for stores with CLIP weights.
//! - [`matcher`]: fusion of photo, zero-shot and OCR evidence, calibrated
//!   confidence, open-set rejection.

pub mod ann;
pub mod clip;
pub mod detect;
pub mod encoder;
pub mod eval;
pub mod frames;
pub mod matcher;
pub mod ocr;
pub use aisle_onnx as onnx;
pub mod preprocess;
pub mod synth;
pub mod text;
pub mod vectors;

pub use detect::{DetectError, DetectedObject, ObjectDetector};
pub use encoder::{Conse, EfficientNet, EfficientNetConse, ImageEmbedding, ImageTextModel};
pub use frames::{FrameInput, FrameOptions, FrameReader, FramesError};
pub use matcher::{Decision, Entry, Fusion, Ranking, Signals};
pub use ocr::{Ocr, OcrError, OcrOutput, TextLine};
pub use onnx::{Engine, OnnxError, OnnxModel, OnnxOptions};
pub use preprocess::{ImageError, ImageLimits, Preprocess, decode_image, load_image};
pub use text::{MiniLm, TextModelError, cosine};
