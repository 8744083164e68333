//! `aisle bench tts`: the Piper voice through aisle (espeak-ng process + our `ort`)
//! against the same voice through piper-tts (its reference pipeline, in a venv, run as
//! a separate program) and through bare Python onnxruntime fed aisle's phoneme ids,
//! same text and threads; then the whole voice loop: end of a spoken question to the
//! first sample of the spoken answer, stage by stage (grammar and LLM paths).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::kiosk::{AskRequest, Kiosk, Parts};
use aisle_speech::tts::normalize::{normalize, sentences};
use anyhow::{Result, bail};

use crate::speech::{espeak_16k, peak_rss_mib};

const PEER_SCRIPT: &str = include_str!("peer_piper.py");
const PEER_REQUIREMENTS: &[&str] = &["piper-tts==1.3.0", "onnxruntime==1.32.0"];

/// (label, answer): one sentence, and three.
const ANSWERS: &[(&str, &str)] = &[
    ("1 sentence", "Banana is $1.57, in Aisle 24: fresh fruits."),
    (
        "3 sentences",
        "Organic Whole Milk is $4.29. Yes, it is in stock: 18, in Aisle 16: milk. \
         It is on offer: 2 for 1 until Sunday.",
    ),
];

/// (path, spoken question): the grammar reads the first, the LLM the second.
const QUESTIONS: &[(&str, &str)] = &[
    ("grammar", "how much are the bananas and where are they"),
    ("llm", "what's the damage on the sharp cheddar"),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

struct Row {
    label: &'static str,
    first_ms: f64,
    total_ms: f64,
    phonemize_ms: f64,
    audio_s: f64,
    ids: Vec<Vec<i64>>,
    text: String,
}

struct LoopRow {
    path: &'static str,
    heard: String,
    answer: String,
    endpoint_ms: f64,
    answer_ms: f64,
    first_audio_ms: f64,
}

impl LoopRow {
    fn total(&self) -> f64 {
        self.endpoint_ms + self.answer_ms + self.first_audio_ms
    }
}

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json: bool) -> Result<ExitCode> {
    let (runs, threads) = (args.runs.max(1), args.threads.max(1));
    // The peer's venv lives beside the store, the demo catalog in the bench's data.
    let store_dir = cfg.data_dir.clone();
    let dir = tempfile::tempdir()?;
    let mut cfg = crate::isolated(cfg);
    cfg.file.inference.threads = threads as u32;
    if cfg.file.paths.catalog.is_none() {
        aisle_runtime::kiosk::demo_catalog(&cfg)?;
    }
    // The voice alone first, so its peak memory is the voice's (the loop below loads
    // whisper, MiniLM and the LLM beside it).
    let store = aisle_runtime::kiosk::open_store(&cfg)?;
    let t = Instant::now();
    let voice = aisle_runtime::kiosk::voice(&cfg, &store)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;

    let mut rows = Vec::new();
    for (label, text) in ANSWERS {
        voice.speak(text)?; // warm-up
        let (mut firsts, mut totals, mut phon) = (Vec::new(), Vec::new(), Vec::new());
        let mut audio_s = 0.0;
        let mut ids = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let mut first = None;
            let speech = voice.stream(text, |_| {
                first.get_or_insert(t0.elapsed().as_secs_f64() * 1000.0);
                true
            })?;
            totals.push(t0.elapsed().as_secs_f64() * 1000.0);
            firsts.push(first.unwrap_or(f64::NAN));
            phon.push(speech.sentences.iter().map(|s| s.phonemize_ms).sum());
            audio_s = speech.duration_s();
            ids = speech
                .sentences
                .iter()
                .map(|s| voice.config().ids(&s.phonemes.chars().collect::<Vec<_>>()))
                .collect();
        }
        rows.push(Row {
            label,
            first_ms: median(firsts),
            total_ms: median(totals),
            phonemize_ms: median(phon),
            audio_s,
            ids,
            text: sentences(&normalize(text)).join(" "),
        });
    }

    let our_peak = peak_rss_mib();
    drop(voice);

    // The whole loop: a spoken question at real-time pace, heard, answered, spoken.
    let kiosk = Kiosk::load(
        &cfg,
        Parts {
            dialogue_models: true,
            speech: true,
            voice: true,
            speech_threads: Some(threads),
            ..Parts::none()
        },
    )?;
    let voice = kiosk.voice()?.clone();
    let tr = kiosk.transcriber()?.clone();
    let mut loops = Vec::new();
    for (i, (path, q)) in QUESTIONS.iter().enumerate() {
        let wav = espeak_16k(q, dir.path(), &format!("loop{i}"))?;
        let audio = aisle_speech::decode_wav(&wav)?;
        let padded = dir.path().join(format!("loop{i}-padded.wav"));
        let silence = vec![0.0f32; 16_000];
        crate::speech::write_16k(&padded, &[&silence[..], &audio.samples, &silence].concat())?;
        let mut tries: Vec<LoopRow> = Vec::new();
        for _ in 0..runs {
            let mut src = aisle_speech::FileSource::open(&padded, true)?;
            let stop = AtomicBool::new(false);
            let mut heard = None;
            tr.listen(
                &mut src,
                &aisle_speech::ListenConfig::default(),
                &stop,
                &mut |ev| {
                    if let aisle_speech::ListenEvent::Final(u) = ev
                        && heard.is_none()
                    {
                        heard = Some(u);
                        stop.store(true, Ordering::Relaxed);
                    }
                },
            )?;
            let Some(u) = heard else {
                bail!("no final transcript for the {path} question");
            };
            let t = Instant::now();
            let a = kiosk.ask(&AskRequest {
                text: &u.text,
                session: None,
                sku: None,
                image: None,
            })?;
            let answer_ms = t.elapsed().as_secs_f64() * 1000.0;
            let t = Instant::now();
            let mut first = f64::NAN;
            voice.stream(&a.answer.text, |_| {
                first = t.elapsed().as_secs_f64() * 1000.0;
                false
            })?;
            tries.push(LoopRow {
                path,
                heard: u.text.clone(),
                answer: a.answer.text.clone(),
                endpoint_ms: u.endpoint_latency_ms as f64,
                answer_ms,
                first_audio_ms: first,
            });
        }
        // The run with the median total, stage by stage.
        tries.sort_by(|a, b| a.total().total_cmp(&b.total()));
        let mid = tries.len() / 2;
        loops.push(tries.swap_remove(mid));
    }

    let peer: Option<serde_json::Value> = if args.no_peer {
        None
    } else {
        let python = aisle_models::ensure_venv(
            &store_dir.join("tools/bench-venv-tts"),
            PEER_REQUIREMENTS,
            "piper, onnxruntime",
        )?;
        let v = store.verify(&cfg.file.models.tts, &mut |_| {})?;
        let cases: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({ "text": r.text, "ids": r.ids }))
            .collect();
        let cases_path = dir.path().join("cases.json");
        std::fs::write(&cases_path, serde_json::to_vec(&cases)?)?;
        let a: Vec<std::ffi::OsString> = vec![
            v.path("voice.onnx")?.into(),
            v.path("voice.onnx.json")?.into(),
            threads.to_string().into(),
            runs.to_string().into(),
            PathBuf::from(&cases_path).into(),
        ];
        Some(crate::run_peer(
            &python,
            dir.path(),
            "peer_piper.py",
            PEER_SCRIPT,
            &a,
        )?)
    };
    let peer_of = |i: usize, which: &str, key: &str| {
        peer.as_ref()
            .and_then(|p| p["results"][i][which][key].as_f64())
    };
    let peer_peak = peer
        .as_ref()
        .and_then(|p| p["peak_rss_kib"].as_f64())
        .map(|k| k / 1024.0);

    if json {
        let v = serde_json::json!({
            "threads": threads,
            "load_ms": load_ms,
            "peer": "piper-tts 1.3.0 (its espeak-ng library + onnxruntime 1.32.0) and bare onnxruntime 1.32.0 on aisle's phoneme ids; same voice, text, threads; ORT_ENABLE_ALL",
            "synthesis": rows.iter().enumerate().map(|(i, r)| serde_json::json!({
                "label": r.label, "text": r.text, "audio_s": r.audio_s,
                "aisle": { "first_audio_ms": r.first_ms, "total_ms": r.total_ms, "phonemize_ms": r.phonemize_ms, "rtf": r.total_ms / 1000.0 / r.audio_s },
                "piper_tts": { "first_audio_ms": peer_of(i, "piper_tts", "first_ms"), "total_ms": peer_of(i, "piper_tts", "total_ms") },
                "onnxruntime": { "first_audio_ms": peer_of(i, "onnxruntime", "first_ms"), "total_ms": peer_of(i, "onnxruntime", "total_ms") },
            })).collect::<Vec<_>>(),
            "loop": loops.iter().map(|l| serde_json::json!({
                "path": l.path, "heard": l.heard, "answer": l.answer,
                "end_of_speech_to_text_ms": l.endpoint_ms, "answer_ms": l.answer_ms,
                "text_to_first_audio_ms": l.first_audio_ms,
                "end_of_speech_to_first_audio_ms": l.total(),
            })).collect::<Vec<_>>(),
            "peak_rss_mib": { "aisle": our_peak, "peer": peer_peak },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "aisle bench tts: Piper en_US joe (medium, 22,050 Hz), {threads} threads, median of {runs} after a warm-up"
    );
    println!(
        "peers: piper-tts 1.3.0 (reference pipeline: its own espeak-ng library + onnxruntime 1.32.0)\n       onnxruntime 1.32.0 alone on aisle's phoneme ids (the model's own cost); both ORT_ENABLE_ALL\n"
    );
    println!(
        "{:<12} {:>7} | {:>11} {:>11} {:>11} | {:>9} {:>9} {:>9} | {:>7} {:>7}",
        "answer",
        "audio",
        "aisle 1st",
        "piper 1st",
        "ort 1st",
        "aisle",
        "piper",
        "ort",
        "RTF",
        "aisle/pp"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0} ms"));
    for (i, r) in rows.iter().enumerate() {
        let pt = peer_of(i, "piper_tts", "total_ms");
        println!(
            "{:<12} {:>5.1} s | {:>11} {:>11} {:>11} | {:>9} {:>9} {:>9} | {:>7.3} {:>7}",
            r.label,
            r.audio_s,
            f(Some(r.first_ms)),
            f(peer_of(i, "piper_tts", "first_ms")),
            f(peer_of(i, "onnxruntime", "first_ms")),
            f(Some(r.total_ms)),
            f(pt),
            f(peer_of(i, "onnxruntime", "total_ms")),
            r.total_ms / 1000.0 / r.audio_s,
            pt.map_or("-".into(), |p| format!("{:.2}x", r.total_ms / p)),
        );
    }
    println!(
        "  (aisle speaks a first sentence over 60 characters from its first clause: its first\n   audio is that clause's, piper-tts's the whole sentence's; totals do the same work)"
    );
    println!(
        "  (of aisle's time, espeak-ng as a process: {})",
        rows.iter()
            .map(|r| format!("{} {:.0} ms", r.label, r.phonemize_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "peak memory with the voice alone loaded: aisle {}, peer {}\n",
        our_peak.map_or("-".into(), |m| format!("{m:.0} MiB")),
        peer_peak.map_or("-".into(), |m| format!("{m:.0} MiB")),
    );
    println!("the whole loop: end of the spoken question to the first sample of the spoken answer");
    println!(
        "{:<8} {:>14} {:>9} {:>15} {:>12}  heard / answered",
        "path", "speech end→text", "answer", "text→1st audio", "total"
    );
    for l in &loops {
        println!(
            "{:<8} {:>11.0} ms {:>6.1} ms {:>12.0} ms {:>9.0} ms  {:?} / {:?}",
            l.path,
            l.endpoint_ms,
            l.answer_ms,
            l.first_audio_ms,
            l.total(),
            l.heard,
            l.answer
        );
    }
    Ok(ExitCode::SUCCESS)
}
