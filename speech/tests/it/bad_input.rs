//! Silence, noise, broken and unusual files: an empty transcript, a clear error naming
//! the file, or a correct transcript. Never a panic.

use std::path::{Path, PathBuf};

use aisle_speech::wer::wer;
use aisle_speech::{SpeechError, decode_wav};

use crate::{read_i16, speak, transcriber, work_dir};

const QUESTION: &str = "what is the price of the orange juice";

pub fn write_wav(name: &str, rate: u32, channels: u16, bits: u16, frames: &[f32]) -> PathBuf {
    let path = work_dir().join(name);
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create");
    for &f in frames {
        for _ in 0..channels {
            match bits {
                8 => w.write_sample((f * 127.0) as i8).expect("write"),
                _ => w.write_sample((f * 32767.0) as i16).expect("write"),
            }
        }
    }
    w.finalize().expect("finalize");
    path
}

/// Deterministic white noise.
pub fn noise(n: usize, amplitude: f32) -> Vec<f32> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * amplitude
        })
        .collect()
}

/// The spoken question as f32 at 22.05 kHz.
fn question_samples() -> (Vec<f32>, u32) {
    let (s, rate) = read_i16(&speak(QUESTION, "base-question.wav"));
    (s.iter().map(|&v| v as f32 / 32768.0).collect(), rate)
}

/// Linear interpolation to another rate (a test fixture, not the product's resampler).
fn stretch(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    let n = (samples.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * from as f64 / to as f64;
            let j = x as usize;
            let f = (x - j as f64) as f32;
            let a = samples[j.min(samples.len() - 1)];
            let b = samples[(j + 1).min(samples.len() - 1)];
            a + (b - a) * f
        })
        .collect()
}

fn transcript_of(path: &Path) -> String {
    transcriber()
        .transcribe_file(path, None)
        .expect("transcribes")
        .1
        .text
}

#[test]
fn silence_and_noise_give_empty_transcripts() {
    let _serial = crate::serial();
    let silence = write_wav("silence.wav", 16_000, 1, 16, &vec![0.0; 16_000 * 5]);
    let (_, t) = transcriber()
        .transcribe_file(&silence, None)
        .expect("silence");
    assert_eq!((t.text.as_str(), t.speech.len()), ("", 0));
    let hiss = write_wav("noise.wav", 16_000, 1, 16, &noise(16_000 * 5, 0.3));
    let (_, t) = transcriber().transcribe_file(&hiss, None).expect("noise");
    assert_eq!(t.text, "", "white noise must not be transcribed");
}

#[test]
fn unusual_formats_transcribe_correctly() {
    let _serial = crate::serial();
    let (q, rate) = question_samples();
    let cases = [
        (
            "stereo-44k.wav",
            write_wav("stereo-44k.wav", 44_100, 2, 16, &stretch(&q, rate, 44_100)),
        ),
        ("mono-8bit.wav", write_wav("mono-8bit.wav", rate, 1, 8, &q)),
        (
            "mono-48k.wav",
            write_wav("mono-48k.wav", 48_000, 1, 16, &stretch(&q, rate, 48_000)),
        ),
        (
            "mono-8k.wav",
            write_wav("mono-8k.wav", 8_000, 1, 16, &stretch(&q, rate, 8_000)),
        ),
    ];
    for (name, path) in cases {
        let text = transcript_of(&path);
        let w = wer(QUESTION, &text);
        assert!(w <= 0.3, "{name}: {text:?} (WER {w:.2})");
    }
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let _serial = crate::serial();
    let dir = work_dir();
    let good = std::fs::read(speak(QUESTION, "for-breaking.wav")).expect("read");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.wav", Vec::new()),
        ("header-only.wav", good[..30].to_vec()),
        ("text.wav", b"RIFF this is not audio at all".to_vec()),
        (
            "jpeg.wav",
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'],
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = transcriber().transcribe_file(&path, None).expect_err(name);
        assert!(matches!(err, SpeechError::Decode { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let missing = dir.join("missing.wav");
    let err = decode_wav(&missing).expect_err("missing");
    assert!(err.to_string().contains("missing.wav"), "{err}");
}

#[test]
fn truncated_and_lying_headers_keep_what_is_there() {
    let _serial = crate::serial();
    let good = std::fs::read(speak(QUESTION, "for-truncating.wav")).expect("read");
    // Cut the data short: the header still claims the full length.
    let cut = work_dir().join("truncated.wav");
    std::fs::write(&cut, &good[..good.len() * 9 / 10]).expect("write");
    let audio = decode_wav(&cut).expect("decodes what is there");
    assert!(audio.truncated);
    let text = transcript_of(&cut);
    assert!(wer(QUESTION, &text) <= 0.35, "truncated: {text:?}");
    // A header claiming far more data than the file holds (a lie, not a long file).
    let mut lying = good.clone();
    let data_pos = lying
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    lying[data_pos + 4..data_pos + 8].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let path = work_dir().join("lying.wav");
    std::fs::write(&path, &lying).expect("write");
    match transcriber().transcribe_file(&path, None) {
        Ok((audio, t)) => {
            assert!(audio.truncated);
            assert!(wer(QUESTION, &t.text) <= 0.3, "lying header: {:?}", t.text);
        }
        Err(e) => assert!(e.to_string().contains("lying.wav"), "{e}"),
    }
}

#[test]
fn ten_minute_file_transcribes_only_the_question() {
    let _serial = crate::serial();
    let (q, rate) = question_samples();
    let q16 = stretch(&q, rate, 16_000);
    let mut long = noise(16_000 * 600, 0.002);
    let at = 16_000 * 300;
    for (i, s) in q16.iter().enumerate() {
        long[at + i] += s;
    }
    let path = write_wav("ten-minutes.wav", 16_000, 1, 16, &long);
    drop(long);
    let (audio, t) = transcriber()
        .transcribe_file(&path, None)
        .expect("long file");
    assert!((audio.duration_s() - 600.0).abs() < 0.1);
    assert_eq!(t.speech.len(), 1, "{:?}", t.speech);
    let seg = &t.segments[0];
    assert!(seg.start_ms >= 299_000 && seg.end_ms <= 306_000, "{seg:?}");
    assert!(wer(QUESTION, &t.text) <= 0.25, "{:?}", t.text);
}

#[test]
fn files_over_the_length_limit_are_refused_by_name() {
    let _serial = crate::serial();
    // 21:40 of 8 kHz 8-bit silence: 10 MB on disk, over the 20-minute limit.
    let path = write_wav("too-long.wav", 8_000, 1, 8, &vec![0.0; 8_000 * 1300]);
    match decode_wav(&path) {
        Err(e @ SpeechError::TooLong { .. }) => {
            assert!(e.to_string().contains("too-long.wav"), "{e}")
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
}

/// Real-world WAVs hound refuses: ffmpeg writing to a pipe leaves the data size at
/// 0xFFFFFFFF, some writers leave a trailing odd byte. Both decode to the same samples
/// as the clean file. Float WAVs with NaN or infinite samples are refused by name.
#[test]
fn pipe_written_and_odd_length_wavs_decode_and_non_finite_samples_are_refused() {
    let clean = write_wav("clean.wav", 16_000, 1, 16, &noise(8_000, 0.3));
    let bytes = std::fs::read(&clean).expect("read");
    let want = aisle_speech::decode_wav(&clean).expect("clean").samples;
    // The data chunk's size field: "data" then 4 bytes, at 36 for hound's files.
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 4;

    let mut piped = bytes.clone();
    piped[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = work_dir().join("piped.wav");
    std::fs::write(&path, &piped).expect("write");
    assert_eq!(
        aisle_speech::decode_wav(&path).expect("piped").samples,
        want
    );
    let label = std::path::Path::new("piped bytes");
    assert_eq!(
        aisle_speech::decode_wav_bytes(&piped, label)
            .expect("bytes")
            .samples,
        want
    );

    let mut odd = bytes.clone();
    let size = u32::from_le_bytes(odd[at..at + 4].try_into().expect("4")) + 1;
    odd[at..at + 4].copy_from_slice(&size.to_le_bytes());
    odd.push(0);
    let path = work_dir().join("odd.wav");
    std::fs::write(&path, &odd).expect("write");
    assert_eq!(aisle_speech::decode_wav(&path).expect("odd").samples, want);

    for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
        let path = work_dir().join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for (i, s) in noise(16_000, 0.3).into_iter().enumerate() {
            w.write_sample(if i == 4_000 { bad } else { s })
                .expect("write");
        }
        w.finalize().expect("finalize");
        let e = aisle_speech::decode_wav(&path).expect_err(name).to_string();
        assert!(e.contains(name) && e.contains("finite"), "{e}");
    }
}
