//! Product recognition from camera images (issue #4): image and text embeddings,
//! OCR of labels and price tags, and matching against the catalog with open-set
//! rejection. Implemented so far: the text side of the joint embedding space
//! ([`text::MiniLm`], all-MiniLM-L6-v2), which the assistant also uses to look up
//! products by meaning.

pub mod text;

pub use text::{MiniLm, TextModelError, cosine};
