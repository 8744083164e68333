//! The cpal output path without a sound card: ALSA's `file` plugin (over the `null`
//! device) writes what a real output stream plays to a file, which must be the
//! synthesised answer sample for sample. Its own test binary: the ALSA configuration
//! is set for this process before anything opens a device.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use aisle_models::Store;
use aisle_speech::Speaker;
use aisle_speech::tts::{Voice, VoiceOptions, pcm16};

fn data_dir() -> PathBuf {
    std::env::var_os("AISLE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(aisle_firmware_config::default_data_dir)
        .expect("no data directory: set AISLE_DATA_DIR or HOME")
}

#[test]
fn a_spoken_answer_reaches_the_output_device_sample_for_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let captured = dir.path().join("played.raw");
    std::fs::create_dir_all(dir.path().join("alsa")).expect("mkdir");
    std::fs::write(
        dir.path().join("alsa/asoundrc"),
        format!(
            "pcm.!default {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
            captured.display()
        ),
    )
    .expect("asoundrc");
    // SAFETY of intent: this binary has one test and sets the variable before any
    // thread or ALSA call exists. (`set_var` is unsafe in edition 2024 only because of
    // threads reading the environment concurrently.)
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("XDG_CONFIG_HOME", dir.path());
    }

    let store = Store::open(&data_dir().join("models")).expect("store");
    let v = store
        .verify("piper-en-us-joe-medium", &mut |_| {})
        .expect("voice installed by the test command");
    let ort = store
        .verify("onnxruntime", &mut |_| {})
        .expect("onnxruntime");
    let voice = Voice::load(
        v.path("voice.onnx").expect("onnx"),
        v.path("voice.onnx.json").expect("json"),
        &VoiceOptions {
            threads: 2,
            ort_library: ort.first_file().expect("lib").0.to_path_buf(),
            espeak: "espeak-ng".into(),
        },
    )
    .expect("voice");
    let speech = voice
        .speak("Banana is $0.69. It is in Aisle 3.")
        .expect("speak");
    let samples = speech.samples();

    let mut speaker = Speaker::open(
        "default",
        voice.sample_rate(),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("the file plugin opens as the default output");
    assert_eq!(speaker.device_hz(), 22_050, "the voice's own rate is taken");
    // In one push: ALSA's null device consumes faster than real time, so a second
    // push could find the ring drained and silence between (a real device plays at
    // its rate while the next sentence is queued).
    speaker.push(&samples).expect("push");
    assert!(speaker.finish().expect("finish"), "played to the end");

    let raw = std::fs::read(&captured).expect("captured");
    let played: Vec<i16> = raw
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let want: Vec<i16> = pcm16(&samples)
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // Playback starts with the queued audio: it is the first thing written (the
    // stream may write silence after it, until it is closed).
    let got = &played[..want.len().min(played.len())];
    assert_eq!(got.len(), want.len(), "the whole answer was played");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap_or(0);
    assert!(
        worst <= 2,
        "played samples differ from the synthesised ones by up to {worst}"
    );
}
