//! `aisle transcribe` and `aisle listen`.

use std::path::Path;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aisle_speech::{AudioSource, FileSource, ListenConfig, ListenEvent, MicSource, Transcriber};
use anyhow::{Context, Result};

pub fn load_transcriber(cfg: &DeviceConfig, threads: Option<usize>) -> Result<Transcriber> {
    let store = crate::vision_cmd::open_store(cfg)?;
    Ok(aisle_runtime::kiosk::transcriber(cfg, &store, threads)?)
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
        outln!(
            "{}",
            serde_json::to_string_pretty(&aisle_runtime::kiosk::transcript_json(file, &audio, &t))?
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

/// Where `aisle listen` takes audio from: flags first, then `audio.input` in the config.
pub struct ListenInput<'a> {
    pub device: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub realtime: bool,
}

pub fn open_source(cfg: &DeviceConfig, input: &ListenInput) -> Result<Box<dyn AudioSource>> {
    use aisle_firmware_config::AudioSource as Src;
    let a = &cfg.file.audio.input;
    if let Some(file) = input.file {
        return Ok(Box::new(FileSource::open(file, input.realtime)?));
    }
    if let Some(name) = input.device {
        return Ok(Box::new(MicSource::open(Some(name))?));
    }
    match a.source {
        Src::Microphone => {
            let name = (a.device != "default").then_some(a.device.as_str());
            Ok(Box::new(MicSource::open(name)?))
        }
        Src::Wav => {
            let path = a
                .path
                .as_deref()
                .context("audio.input.source is \"wav\" but audio.input.path is not set")?;
            Ok(Box::new(FileSource::open(path, true)?))
        }
        Src::None => anyhow::bail!(
            "audio input is disabled (audio.input.source = \"none\"); pass --device or --file"
        ),
    }
}

pub fn list_devices(json: bool) -> Result<ExitCode> {
    let names = aisle_speech::input_devices()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&names)?);
    } else if names.is_empty() {
        outln!("no input devices");
    } else {
        for n in names {
            outln!("{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn listen(
    cfg: &DeviceConfig,
    input: &ListenInput,
    listen_cfg: ListenConfig,
    threads: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let transcriber = load_transcriber(cfg, threads)?;
    let mut source = open_source(cfg, input)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second handler cannot be installed in one process (tests call this once).
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
        }
    }
    let described = source.describe();
    if json {
        outln!(
            "{}",
            serde_json::json!({ "event": "listening", "source": described })
        );
    } else {
        eprintln!("listening: {described} (Ctrl-C to stop)");
    }
    let mut write_err: Option<std::io::Error> = None;
    let mut print = |ev: ListenEvent| {
        let line = match (&ev, json) {
            (ListenEvent::SpeechStart { at_ms }, true) => {
                serde_json::json!({ "event": "speech_start", "at_ms": at_ms }).to_string()
            }
            (ListenEvent::Partial { at_ms, text }, true) => {
                serde_json::json!({ "event": "partial", "at_ms": at_ms, "text": text }).to_string()
            }
            (ListenEvent::Final(u), true) => serde_json::json!({
                "event": "final",
                "text": u.text,
                "start_ms": u.start_ms,
                "end_ms": u.end_ms,
                "confidence": u.confidence,
                "segments": u.segments.iter().map(|s| serde_json::json!({ "start_ms": s.start_ms, "end_ms": s.end_ms, "text": s.text, "confidence": s.confidence })).collect::<Vec<_>>(),
                "endpoint_latency_ms": u.endpoint_latency_ms,
                "decode_ms": u.decode_ms,
                "speculative": u.speculative,
            })
            .to_string(),
            (ListenEvent::SpeechStart { .. }, false) => return,
            (ListenEvent::Partial { text, .. }, false) => format!("  ... {text}"),
            (ListenEvent::Final(u), false) => format!(
                "> {}\n  [{} - {} ms, confidence {:.2}, final text {} ms after speech ended]",
                u.text, u.start_ms, u.end_ms, u.confidence, u.endpoint_latency_ms
            ),
        };
        if let ListenEvent::Final(u) = &ev {
            // Transcripts never go to logs; only their length and timings.
            tracing::info!(
                chars = u.text.len(),
                endpoint_ms = u.endpoint_latency_ms,
                decode_ms = u.decode_ms,
                "utterance"
            );
        }
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), "{line}") {
            // Reader went away (`| head`): stop listening, report once.
            stop.store(true, Ordering::Relaxed);
            write_err.get_or_insert(e);
        }
    };
    let summary = transcriber.listen(source.as_mut(), &listen_cfg, &stop, &mut print)?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "event": "stopped",
                "utterances": summary.utterances,
                "audio_ms": summary.audio_ms,
                "dropped_samples": summary.dropped_samples,
            })
        );
    } else {
        eprintln!(
            "stopped: {} utterance(s) in {}{}",
            summary.utterances,
            aisle_speech::format_ms(summary.audio_ms),
            if summary.dropped_samples > 0 {
                format!(
                    ", {} samples dropped (decoder fell behind)",
                    summary.dropped_samples
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
