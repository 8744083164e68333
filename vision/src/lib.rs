//! Product recognition from camera images (issue #4): image and text embeddings,
//! OCR of labels and price tags, and matching against the catalog with open-set
//! rejection. Nothing is implemented yet; the crate exists so that the crate graph
//! (`firmware-config -> models -> vision -> runtime`) is in place from the start.
