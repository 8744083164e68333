use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode audio: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: audio is too long: {seconds:.0} s (at most {limit_s} s)")]
    TooLong {
        path: PathBuf,
        seconds: f64,
        limit_s: u32,
    },
    #[error(transparent)]
    Model(#[from] aisle_models::ModelError),
    #[error("voice activity model {path}: {message}")]
    Vad { path: PathBuf, message: String },
    #[error("whisper model `{model}` ({path}): {message}")]
    Whisper {
        model: String,
        path: PathBuf,
        message: String,
    },
    #[error("audio input {device}: {message}")]
    Device { device: String, message: String },
    #[error("audio output {device}: {message}")]
    Output { device: String, message: String },
    #[error("resampling {from_hz} Hz to 16 kHz: {message}")]
    Resample { from_hz: u32, message: String },
}

pub type Result<T, E = SpeechError> = std::result::Result<T, E>;
