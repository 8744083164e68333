//! `aisle say`: text spoken in the store's voice, to the speaker or a WAV file.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aisle_firmware_config::DeviceConfig;
use aisle_speech::tts::{Speech, wav_bytes};
use aisle_speech::{Speaker, Voice};
use anyhow::{Context, Result};

pub fn load_voice(cfg: &DeviceConfig) -> Result<Voice> {
    let store = crate::vision_cmd::open_store(cfg)?;
    Ok(aisle_runtime::kiosk::voice(cfg, &store)?)
}

/// Writes `bytes` to `path` through a temporary file beside it (never a torn file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Speaks `text` on `device` as it is synthesised (the first sentence plays while
/// the rest is made) until done or `stop` is set (barge-in). Returns the speech and
/// the milliseconds to the first audio.
pub fn speak_to(
    voice: &Voice,
    text: &str,
    device: &str,
    stop: &Arc<AtomicBool>,
) -> Result<(Speech, f64)> {
    let t0 = std::time::Instant::now();
    let mut speaker: Option<Speaker> = None;
    let mut first_ms = 0.0;
    let mut failed: Option<anyhow::Error> = None;
    let speech = voice.stream(text, |s| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if speaker.is_none() {
            match Speaker::open(device, voice.sample_rate(), stop.clone()) {
                Ok(sp) => speaker = Some(sp),
                Err(e) => {
                    failed = Some(e.into());
                    return false;
                }
            }
            first_ms = t0.elapsed().as_secs_f64() * 1e3;
        }
        if let Some(sp) = speaker.as_mut()
            && let Err(e) = sp.push(&s.samples)
        {
            failed = Some(e.into());
            return false;
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(sp) = speaker {
        sp.finish()?;
    }
    Ok((speech, first_ms))
}

pub fn say(
    cfg: &DeviceConfig,
    text: &str,
    out: Option<&Path>,
    device: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let voice = load_voice(cfg)?;
    let (speech, first_ms) = match out {
        Some(path) => {
            let t0 = std::time::Instant::now();
            let mut first_ms = 0.0;
            let speech = voice.stream(text, |_| {
                if first_ms == 0.0 {
                    first_ms = t0.elapsed().as_secs_f64() * 1e3;
                }
                true
            })?;
            write_atomic(path, &wav_bytes(&speech.samples(), speech.sample_rate))?;
            (speech, first_ms)
        }
        None => speak_to(
            &voice,
            text,
            device.unwrap_or(&cfg.file.audio.output.device),
            &Arc::new(AtomicBool::new(false)),
        )?,
    };
    let rtf = speech.synth_ms() / 1000.0 / speech.duration_s().max(1e-9);
    if json {
        let v = serde_json::json!({
            "out": out.map(|p| p.display().to_string()),
            "sample_rate": speech.sample_rate,
            "duration_s": speech.duration_s(),
            "first_audio_ms": first_ms,
            "synth_ms": speech.synth_ms(),
            "real_time_factor": rtf,
            "sentences": speech.sentences.iter().map(|s| serde_json::json!({
                "text": s.text,
                "phonemes": s.phonemes,
                "samples": s.samples.len(),
                "phonemize_ms": s.phonemize_ms,
                "synth_ms": s.synth_ms,
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &speech.sentences {
            outln!("  \"{}\"  ({:.0} ms)", s.text, s.phonemize_ms + s.synth_ms);
        }
        outln!(
            "{:.1} s of speech at {} Hz{}; first audio after {:.0} ms, real-time factor {:.3}",
            speech.duration_s(),
            speech.sample_rate,
            out.map(|p| format!(" written to {}", p.display()))
                .unwrap_or_default(),
            first_ms,
            rtf
        );
    }
    Ok(ExitCode::SUCCESS)
}
