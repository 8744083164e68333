//! Speech on real weights: espeak-ng speaks retail questions, the real Silero VAD and
//! whisper tiny.en (imported from CTranslate2) transcribe them.

mod bad_input;
mod listen;
mod questions;
mod tts;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aisle_models::Store;
use aisle_speech::{Transcriber, VadConfig};

pub fn data_dir() -> PathBuf {
    std::env::var_os("AISLE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(aisle_firmware_config::default_data_dir)
        .expect("no data directory: set AISLE_DATA_DIR or HOME")
}

/// Loaded once per test binary.
pub fn transcriber() -> &'static Transcriber {
    static T: OnceLock<Transcriber> = OnceLock::new();
    T.get_or_init(|| {
        let store = Store::open(&data_dir().join("models")).expect("store");
        Transcriber::load(
            &store,
            "whisper-tiny-en-ggml",
            "silero-vad",
            VadConfig::default(),
            2,
        )
        .expect("models installed (the test command fetches them: `cargo xtask test`)")
    })
}

/// Tests here run one at a time: whisper.cpp's thread pool spin-waits, so a decode
/// sharing the 2 cores with another test's work runs several times slower.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A folder for generated audio that lives as long as the test binary.
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// Speaks `text` with espeak-ng into a 22.05 kHz mono WAV.
pub fn speak(text: &str, name: &str) -> PathBuf {
    let path = work_dir().join(name);
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng is installed by the test command");
    assert!(status.success(), "espeak-ng failed on {text:?}");
    path
}

/// Reads a 16-bit mono WAV's samples and rate.
pub fn read_i16(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).expect("wav");
    let rate = r.spec().sample_rate;
    (
        r.samples::<i16>().map(|s| s.expect("sample")).collect(),
        rate,
    )
}
