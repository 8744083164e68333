//! Importers: turn the layouts real weights come in into the ones our engines load.

pub mod ct2;
pub mod efficientnet;
pub mod npy;
pub mod tflite;
pub mod whisper;
