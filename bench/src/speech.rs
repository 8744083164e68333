//! `aisle bench speech`: aisle (Silero VAD + whisper.cpp) against faster-whisper
//! (CTranslate2) on the same tiny.en weights, the same 16 kHz audio and thread count.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_speech::wer::word_errors;
use anyhow::{Context, Result, bail};

use crate::load_transcriber;

const PEER_SCRIPT: &str = include_str!("peer_faster_whisper.py");
const PEER_REQUIREMENT: &str = "faster-whisper==1.2.1";

/// (label, text): questions of about 2, 3, 5 and 15 seconds.
const CLIPS: &[(&str, &str)] = &[
    ("2 s", "how much is a dozen eggs"),
    (
        "3 s",
        "where can I find gluten free pasta and how much is it",
    ),
    (
        "5 s",
        "is there a cheaper brand of olive oil and where can I find the baby food",
    ),
    (
        "15 s",
        "I am looking for something for breakfast without sugar. Do you have oat milk in stock, \
         and how much is the organic peanut butter? Also, where are the frozen vegetables?",
    ),
];

/// Product-name questions for measuring what the decoder prompt gains.
const PRODUCT_QUESTIONS: &[&str] = &[
    "how much is the organic peanut butter",
    "where can I find gluten free pasta",
    "is the almond milk on sale",
    "do you have whole wheat flour",
    "do you have any vegan cheese",
    "is the chocolate cake gluten free",
    "what aisle are the breakfast cereals in",
    "do you have oat milk in stock",
];
const PRODUCT_PROMPT: &str = "Organic peanut butter, gluten free pasta, almond milk, whole wheat flour, \
     vegan cheese, chocolate cake, breakfast cereals, oat milk.";

pub fn espeak_16k(text: &str, dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(format!("{name}.22k.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .context("cannot run espeak-ng (installed by `cargo xtask setup`)")?;
    if !status.success() {
        bail!("espeak-ng failed on {text:?}");
    }
    let audio = aisle_speech::decode_wav(&raw)?;
    let path = dir.join(format!("{name}.wav"));
    write_16k(&path, &audio.samples)?;
    Ok(path)
}

pub fn write_16k(path: &Path, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Live mode: a question with 1 s of silence either side, fed at real-time pace through
/// the same loop as the microphone. Returns the median end-of-speech-to-final latency,
/// the median final decode time, the speculative share and the last text.
struct LiveRow {
    audio_ms: f64,
    latency_ms: f64,
    decode_ms: f64,
    speculative: usize,
    finals: usize,
    text: String,
}

fn live_row(
    transcriber: &aisle_speech::Transcriber,
    clip: &Path,
    dir: &Path,
    runs: usize,
) -> Result<LiveRow> {
    let audio = aisle_speech::decode_wav(clip)?;
    let silence = vec![0.0f32; 16_000];
    let padded = dir.join(format!(
        "live-{}",
        clip.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("clip.wav")
    ));
    write_16k(&padded, &[&silence[..], &audio.samples, &silence].concat())?;
    let (mut lat, mut dec, mut spec, mut finals, mut text) =
        (Vec::new(), Vec::new(), 0, 0, String::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    for _ in 0..runs {
        let mut src = aisle_speech::FileSource::open(&padded, true)?;
        let mut texts = Vec::new();
        transcriber.listen(
            &mut src,
            &aisle_speech::ListenConfig::default(),
            &stop,
            &mut |ev| {
                if let aisle_speech::ListenEvent::Final(u) = ev {
                    lat.push(u.endpoint_latency_ms as f64);
                    dec.push(u.decode_ms as f64);
                    spec += u.speculative as usize;
                    finals += 1;
                    texts.push(u.text);
                }
            },
        )?;
        text = texts.join(" | ");
    }
    if lat.is_empty() {
        bail!(
            "live mode produced no final transcript for {}",
            clip.display()
        );
    }
    Ok(LiveRow {
        audio_ms: audio.duration_s() * 1000.0,
        latency_ms: median(lat),
        decode_ms: median(dec),
        speculative: spec,
        finals,
        text,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn peer_python(cfg: &DeviceConfig) -> Result<PathBuf> {
    let venv = cfg.data_dir.join("tools/bench-venv");
    Ok(aisle_models::ensure_venv(
        &venv,
        &[PEER_REQUIREMENT],
        "faster_whisper",
    )?)
}

/// The CTranslate2 model as a directory with the file names faster-whisper expects.
fn ct2_dir(cfg: &DeviceConfig, dir: &Path) -> Result<PathBuf> {
    let store = Store::open(&cfg.model_dir)?;
    let model = store.verify("whisper-tiny-en-ct2", &mut |_| {})?;
    let out = dir.join("whisper-tiny-en-ct2");
    std::fs::create_dir_all(&out)?;
    for (name, path) in model.files() {
        std::os::unix::fs::symlink(path, out.join(name))?;
    }
    Ok(out)
}

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json: bool) -> Result<ExitCode> {
    let (runs, threads, with_peer) = (args.runs.max(1), args.threads, !args.no_peer);
    let dir = tempfile::tempdir()?;
    let mut clips = Vec::new();
    for (i, (label, text)) in CLIPS.iter().enumerate() {
        clips.push((
            *label,
            *text,
            espeak_16k(text, dir.path(), &format!("clip{i}"))?,
        ));
    }
    let load_start = Instant::now();
    let transcriber = load_transcriber(cfg, Some(threads))?;
    let load_ms = load_start.elapsed().as_secs_f64() * 1000.0;

    // aisle: median of `runs` after one warm-up, per clip.
    let mut ours = Vec::new();
    for (_, _, path) in &clips {
        let audio = aisle_speech::decode_wav(path)?;
        transcriber.transcribe(&audio.samples, None)?;
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let t = transcriber.transcribe(&audio.samples, None)?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            text = t.text;
        }
        ours.push((median(times), audio.duration_s() * 1000.0, text));
    }
    // Live mode at real-time pace, for the short questions a shopper asks.
    let mut live = Vec::new();
    for (label, _, path) in clips.iter().filter(|c| c.0 != "15 s") {
        live.push((*label, live_row(&transcriber, path, dir.path(), runs)?));
    }
    let our_peak = peak_rss_mib();
    let min_silence = cfg.file.thresholds.vad_min_silence_ms as f64;

    // Vocabulary biasing: WER on product-name questions without and with the prompt.
    let (mut plain, mut biased, mut words) = (0, 0, 0);
    for (i, q) in PRODUCT_QUESTIONS.iter().enumerate() {
        let audio = aisle_speech::decode_wav(&espeak_16k(q, dir.path(), &format!("p{i}"))?)?;
        let (e, n) = word_errors(q, &transcriber.transcribe(&audio.samples, None)?.text);
        let (eb, _) = word_errors(
            q,
            &transcriber
                .transcribe(&audio.samples, Some(PRODUCT_PROMPT))?
                .text,
        );
        plain += e;
        biased += eb;
        words += n;
    }

    let peer: Option<serde_json::Value> = if with_peer {
        let python = peer_python(cfg)?;
        let model = ct2_dir(cfg, dir.path())?;
        let mut args = vec![
            model.into_os_string(),
            threads.to_string().into(),
            runs.to_string().into(),
        ];
        args.extend(clips.iter().map(|c| c.2.clone().into_os_string()));
        Some(crate::run_peer(
            &python,
            dir.path(),
            "peer_faster_whisper.py",
            PEER_SCRIPT,
            &args,
        )?)
    } else {
        None
    };

    let peer_ms = |i: usize| peer.as_ref().and_then(|p| p["results"][i]["ms"].as_f64());
    if json {
        let rows: Vec<_> = clips
            .iter()
            .enumerate()
            .map(|(i, (label, reference, _))| {
                let (ms, audio_ms, text) = &ours[i];
                serde_json::json!({
                    "clip": label, "audio_ms": audio_ms, "reference": reference,
                    "aisle_ms": ms, "aisle_rtf": ms / audio_ms, "aisle_text": text,
                    "peer_ms": peer_ms(i), "peer_text": peer.as_ref().map(|p| p["results"][i]["text"].clone()),
                    "ratio": peer_ms(i).map(|p| ms / p),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "threads": threads, "runs": runs, "model_load_ms": load_ms,
                "clips": rows,
                "aisle_peak_rss_mib": our_peak,
                "peer": "faster-whisper (CTranslate2), same tiny.en weights",
                "peer_peak_rss_mib": peer.as_ref().and_then(|p| p["peak_rss_kib"].as_f64()).map(|k| k / 1024.0),
                "prompt_biasing": { "words": words, "wer_without": plain as f64 / words as f64, "wer_with": biased as f64 / words as f64 },
                "live": live.iter().map(|(label, r)| {
                    let i = clips.iter().position(|c| c.0 == *label).unwrap_or(0);
                    serde_json::json!({
                        "clip": label, "audio_ms": r.audio_ms,
                        "end_of_speech_to_final_ms": r.latency_ms, "final_decode_ms": r.decode_ms,
                        "speculative_finals": r.speculative, "finals": r.finals, "text": r.text,
                        "peer_min_silence_plus_decode_ms": peer_ms(i).map(|p| p + min_silence),
                    })
                }).collect::<Vec<_>>(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "speech benchmark: {threads} thread(s), median of {runs} run(s) after a warm-up; model load {load_ms:.0} ms"
    );
    outln!("end of speech to final text (whole file available; VAD + decode):");
    outln!(
        "  {:<6} {:>9} {:>11} {:>10} {:>14} {:>12}",
        "clip",
        "audio ms",
        "aisle ms",
        "aisle RTF",
        "faster-whisper",
        "aisle/peer"
    );
    for (i, (label, _, _)) in clips.iter().enumerate() {
        let (ms, audio_ms, _) = &ours[i];
        let (p, ratio) = match peer_ms(i) {
            Some(p) => (format!("{p:.0} ms"), format!("{:.2}x", ms / p)),
            None => ("-".into(), "-".into()),
        };
        outln!(
            "  {label:<6} {audio_ms:>9.0} {ms:>11.0} {:>10.2} {p:>14} {ratio:>12}",
            ms / audio_ms
        );
    }
    outln!(
        "live (aisle listen, real-time pace, 1 s silence around the question): end of speech to final text"
    );
    outln!(
        "  {:<6} {:>9} {:>11} {:>12} {:>12} {:>22} {:>11}",
        "clip",
        "audio ms",
        "aisle ms",
        "final decode",
        "speculative",
        "peer: silence+decode",
        "aisle/peer"
    );
    for (label, r) in &live {
        let i = clips.iter().position(|c| c.0 == *label).unwrap_or(0);
        let (p, ratio) = match peer_ms(i) {
            Some(p) => (
                format!("{:.0} ms", p + min_silence),
                format!("{:.2}x", r.latency_ms / (p + min_silence)),
            ),
            None => ("-".into(), "-".into()),
        };
        outln!(
            "  {label:<6} {:>9.0} {:>11.0} {:>12.0} {:>12} {p:>22} {ratio:>11}",
            r.audio_ms,
            r.latency_ms,
            r.decode_ms,
            format!("{}/{}", r.speculative, r.finals)
        );
    }
    outln!(
        "  (peer column: faster-whisper's decode time plus the same {min_silence:.0} ms end-of-speech wait, its best case behind a VAD endpointer)"
    );
    let peer_peak = peer
        .as_ref()
        .and_then(|p| p["peak_rss_kib"].as_f64())
        .map(|k| k / 1024.0);
    outln!(
        "peak memory: aisle {} MiB, faster-whisper {} MiB",
        our_peak
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "?".into()),
        peer_peak
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "-".into())
    );
    outln!(
        "decoder prompt with product names: WER {:.3} -> {:.3} on {} product questions ({words} words)",
        plain as f64 / words as f64,
        biased as f64 / words as f64,
        PRODUCT_QUESTIONS.len()
    );
    for (i, (label, reference, _)) in clips.iter().enumerate() {
        outln!("  reference: {reference}");
        outln!("  aisle:     {}", ours[i].2);
        if let Some((_, r)) = live.iter().find(|(l, _)| l == label) {
            outln!("  live:      {}", r.text);
        }
        if let Some(p) = &peer {
            outln!(
                "  peer:      {}",
                p["results"][i]["text"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
