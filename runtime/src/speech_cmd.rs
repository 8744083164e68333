//! `aisle transcribe`.

use std::path::Path;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_speech::{Transcriber, VadConfig};
use anyhow::{Context, Result};

pub fn vad_config(cfg: &DeviceConfig) -> VadConfig {
    let t = &cfg.file.thresholds;
    VadConfig {
        threshold: t.vad as f32,
        min_speech_ms: t.vad_min_speech_ms,
        min_silence_ms: t.vad_min_silence_ms,
        pre_roll_ms: t.vad_pre_roll_ms,
    }
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

pub fn load_transcriber(cfg: &DeviceConfig, threads: Option<usize>) -> Result<Transcriber> {
    let store = Store::open(&cfg.model_dir)
        .with_context(|| format!("cannot open model store {}", cfg.model_dir.display()))?;
    let m = &cfg.file.models;
    Ok(Transcriber::load(
        &store,
        &m.asr,
        &m.vad,
        vad_config(cfg),
        threads.unwrap_or_else(default_threads),
    )?)
}

pub fn transcribe(
    cfg: &DeviceConfig,
    file: &Path,
    prompt: Option<&str>,
    threads: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let transcriber = load_transcriber(cfg, threads)?;
    let (audio, t) = transcriber.transcribe_file(file, prompt)?;
    // Transcripts are what the shopper said: logged only as their length.
    tracing::info!(file = %file.display(), chars = t.text.len(), rtf = t.real_time_factor(), "transcribed");
    if json {
        let segments: Vec<_> = t
            .segments
            .iter()
            .map(|s| serde_json::json!({ "start_ms": s.start_ms, "end_ms": s.end_ms, "text": s.text, "confidence": s.confidence }))
            .collect();
        let speech: Vec<_> = t
            .speech
            .iter()
            .map(|s| serde_json::json!({ "start_ms": s.start_ms(), "end_ms": s.end_ms() }))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file,
                "text": t.text,
                "segments": segments,
                "language": t.language,
                "confidence": t.confidence,
                "audio_ms": t.audio_ms,
                "processing_ms": t.processing_ms,
                "real_time_factor": t.real_time_factor(),
                "speech": speech,
                "source": { "sample_rate": audio.source_rate, "channels": audio.channels, "bits": audio.bits, "truncated": audio.truncated },
            }))?
        );
    } else {
        outln!("{}", t.text);
        for s in &t.segments {
            outln!(
                "  [{:>6} - {:>6} ms] {} (confidence {:.2})",
                s.start_ms,
                s.end_ms,
                s.text,
                s.confidence
            );
        }
        outln!(
            "  {:.1} s of audio, {} voiced segment(s), real-time factor {:.2}",
            t.audio_ms as f64 / 1000.0,
            t.speech.len(),
            t.real_time_factor()
        );
    }
    Ok(ExitCode::SUCCESS)
}
