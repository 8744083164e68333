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

/// Word error rate, set 1: 90 shoppers' questions written by a rule (each starts
/// with the function words that went missing: "is the", "where can I", "do you",
/// "are there", "can you", "what", "how much") before any was transcribed. The
/// encoder margin (`asr::ENCODER_MARGIN_FRAMES`) was chosen on this set.
const WER_TUNING: &[&str] = &[
    "is the whole wheat bread on sale this week",
    "where can I find the peanut butter",
    "do you have any lactose free milk",
    "are the strawberries organic",
    "can you tell me where the rice is",
    "what is the price of the orange juice",
    "is there a discount on the paper towels",
    "how much are the blueberries",
    "where do you keep the canned tomatoes",
    "do you sell gluten free crackers",
    "is the salmon fresh or frozen",
    "are there any eggs left in stock",
    "can I get help finding the batteries",
    "where is the baby formula",
    "is this cereal sugar free",
    "do you carry almond butter",
    "what aisle is the coffee in",
    "is the cheddar cheese on promotion",
    "how much does the olive oil cost",
    "are the bananas from ecuador",
    "where can I get a shopping basket",
    "is the yogurt low fat",
    "do you have vegan ice cream",
    "what time does the bakery close",
    "is the chicken breast boneless",
    "where are the cleaning supplies",
    "can you check if the avocados are ripe",
    "is there a cheaper pasta sauce",
    "do you stock oat milk",
    "how many apples are in a bag",
    "is the dish soap on the bottom shelf",
    "where would I find birthday candles",
    "do you have smaller bags of flour",
    "are these tortillas made with corn",
    "can I return an opened package",
    "what brand of honey do you recommend",
    "is the tuna packed in water",
    "how much is a pound of ground beef",
    "where are the reusable shopping bags",
    "do you have any decaf tea",
    "are the cherry tomatoes on sale",
    "can you show me the gluten free section",
    "what is the cheapest laundry detergent",
    "is there parking behind the store",
    "how long is the sale on cereal",
    "where is the pharmacy counter",
    "do you sell fresh flowers",
    "are the walnuts raw or roasted",
    "can I pay with my phone here",
    "what kind of bread is made today",
    "is the frozen pizza vegetarian",
    "how much do the lemons cost each",
    "where can I weigh the potatoes",
    "do you have a coupon for diapers",
    "are pets allowed in the store",
    "can you order more coconut water",
    "what is in the trail mix",
    "is the granola nut free",
    "how big is the family size box",
    "where do I find the spices",
    "do you have plant based burgers",
    "are the tortilla chips salted",
    "can I buy just one banana",
    "what does the organic label mean",
    "is the soup ready to eat",
    "how much is the rotisserie chicken",
    "where is the nearest restroom",
    "do you carry kosher salt",
    "are the mangoes ripe yet",
    "can you recommend a red wine",
    "what flavors of yogurt do you have",
    "is the butter salted or unsalted",
    "how cold is the freezer section",
    "where can I find cat litter",
    "do you have any sugar free gum",
    "are the sausages made in house",
    "can I get a receipt by email",
    "what is the limit on eggs",
    "is the hummus made with tahini",
    "how much are the cut flowers",
    "where did you move the pasta",
    "do you have paper plates",
    "are the grapes seedless",
    "can you help me carry this",
    "what is the deal on soda today",
    "is the deli open on sunday",
    "how much does a gallon of milk cost",
    "where is the gluten free flour",
    "do you have brown sugar",
    "are there any samples today",
];
/// Word error rate, set 2: 30 longer requests and statements written afterwards
/// and not used to choose anything.
const WER_HELD_OUT: &[&str] = &[
    "I need two cans of black beans and a bag of rice",
    "could you tell me if the store has fresh basil today",
    "my daughter is allergic to peanuts so which cookies are safe",
    "we are having a party tonight and need ice and cups",
    "the price on the shelf said two dollars but the screen says three",
    "show me something healthy for a quick lunch",
    "I am looking for the same coffee as last week",
    "tell me which milk lasts the longest in the fridge",
    "where exactly are the light bulbs kept",
    "which frozen meals have the least salt",
    "my usual bread is missing from the shelf",
    "please find me a cheaper shampoo",
    "I would like to know when the fish arrives",
    "give me three ideas for a vegetarian dinner",
    "the self checkout will not scan my apples",
    "is it true that the melons are half price",
    "we ran out of toilet paper at home",
    "what goes well with grilled salmon",
    "they told me to ask here about gift cards",
    "show me the nearest exit please",
    "I want the biggest box of cereal you sell",
    "remind me what aisle had the soup",
    "find a snack without any added sugar",
    "the kids want chocolate milk and cookies",
    "tell me the difference between these two yogurts",
    "which of these batteries lasts longer",
    "we need a birthday cake for saturday",
    "could I speak to someone about a refund",
    "let me know if the steak is on sale",
    "help me find a gift under twenty dollars",
];

/// faster-whisper's configurations: int8 (its fastest on CPU), int8 behind its own
/// Silero VAD filter, and float32 (the weights as stored).
const PEER_CONFIGS: &[&str] = &["int8", "int8+vad", "float32", "int8@5"];

/// Beams of the "beam 5" rows on both sides (whisper's reference decoder, and
/// faster-whisper's own default).
const BEAMS: usize = 5;

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

/// Word errors of `transcriber` over `clips` (reference, wav): (errors, words).
fn wer_of(
    transcriber: &aisle_speech::Transcriber,
    clips: &[(&str, PathBuf)],
) -> Result<(usize, usize)> {
    let (mut e, mut n) = (0, 0);
    for (reference, path) in clips {
        let audio = aisle_speech::decode_wav(path)?;
        let (ei, ni) = word_errors(
            reference,
            &transcriber.transcribe(&audio.samples, None)?.text,
        );
        e += ei;
        n += ni;
    }
    Ok((e, n))
}

/// Word errors of texts against references: (errors, words).
fn wer_texts(references: &[(&str, PathBuf)], texts: &[String]) -> (usize, usize) {
    references
        .iter()
        .zip(texts)
        .map(|((r, _), t)| word_errors(r, t))
        .fold((0, 0), |(e, n), (ei, ni)| (e + ei, n + ni))
}

/// Median ms of `runs` transcriptions of each clip after a warm-up, and the text.
fn time_clips(
    transcriber: &aisle_speech::Transcriber,
    clips: &[(&str, &str, PathBuf)],
    runs: usize,
) -> Result<Vec<(f64, f64, String)>> {
    let mut out = Vec::new();
    for (_, _, path) in clips {
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
        out.push((median(times), audio.duration_s() * 1000.0, text));
    }
    Ok(out)
}

/// A peer configuration as the tables name it: "int8@5" is int8 with beam 5.
fn peer_label(c: &str) -> String {
    match c.split_once('@') {
        Some((t, b)) => format!("{t}, beam {b}"),
        None => c.to_string(),
    }
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
    let mut wer_sets: Vec<(&str, Vec<(&str, PathBuf)>)> = Vec::new();
    for (name, qs) in [
        (
            "set 1 (90 questions; the margin was chosen here)",
            WER_TUNING,
        ),
        ("set 2 (30 requests, held out)", WER_HELD_OUT),
    ] {
        let mut v = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            v.push((
                *q,
                espeak_16k(q, dir.path(), &format!("w{}-{i}", wer_sets.len()))?,
            ));
        }
        wer_sets.push((name, v));
    }
    let load_start = Instant::now();
    let mut transcriber = load_transcriber(cfg, Some(threads))?;
    let load_ms = load_start.elapsed().as_secs_f64() * 1000.0;

    // aisle: median of `runs` after one warm-up, per clip.
    let ours = time_clips(&transcriber, &clips, runs)?;
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
    // Word error rates, trimmed encoder window (what aisle runs) and full window
    // (the same encoder work as faster-whisper).
    let mut wer_ours = Vec::new();
    for (_, set) in &wer_sets {
        wer_ours.push(wer_of(&transcriber, set)?);
    }
    transcriber.set_full_window(true);
    let full = time_clips(&transcriber, &clips, runs)?;
    let mut wer_full = Vec::new();
    for (_, set) in &wer_sets {
        wer_full.push(wer_of(&transcriber, set)?);
    }
    transcriber.set_full_window(false);
    // Beam search on both sides: the same search as faster-whisper's "int8@5".
    transcriber.set_beam_size(BEAMS);
    let beam = time_clips(&transcriber, &clips, runs)?;
    let mut wer_beam = Vec::new();
    for (_, set) in &wer_sets {
        wer_beam.push(wer_of(&transcriber, set)?);
    }
    transcriber.set_beam_size(cfg.file.inference.speech_beams as usize);

    let peer: Option<serde_json::Value> = if with_peer {
        let python = peer_python(cfg)?;
        let model = ct2_dir(cfg, dir.path())?;
        let list = |name: &str, paths: Vec<&PathBuf>| -> Result<PathBuf> {
            let p = dir.path().join(name);
            let text: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            std::fs::write(&p, text.join("\n"))?;
            Ok(p)
        };
        let timing = list("timing.txt", clips.iter().map(|c| &c.2).collect())?;
        let wer = list(
            "wer.txt",
            wer_sets
                .iter()
                .flat_map(|(_, v)| v.iter().map(|c| &c.1))
                .collect(),
        )?;
        let args = vec![
            model.into_os_string(),
            threads.to_string().into(),
            runs.to_string().into(),
            PEER_CONFIGS.join(",").into(),
            timing.into_os_string(),
            wer.into_os_string(),
        ];
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
    let peer_cfg = |c: &str| peer.as_ref().map(|p| &p["configs"][c]);
    let peer_ms = |c: &str, i: usize| peer_cfg(c).and_then(|p| p["results"][i]["ms"].as_f64());
    // The peer's word errors per set, per configuration.
    let peer_wer = |c: &str| -> Option<Vec<(usize, usize)>> {
        let texts: Vec<String> = peer_cfg(c)?["wer_texts"]
            .as_array()?
            .iter()
            .map(|t| t.as_str().unwrap_or("").to_string())
            .collect();
        let mut at = 0;
        Some(
            wer_sets
                .iter()
                .map(|(_, set)| {
                    let r = wer_texts(set, texts.get(at..at + set.len()).unwrap_or(&[]));
                    at += set.len();
                    r
                })
                .collect(),
        )
    };
    let rate = |(e, n): (usize, usize)| e as f64 / n.max(1) as f64;
    let wer_rows: Vec<(String, Vec<(usize, usize)>)> = [
        (
            "aisle (trimmed encoder window)".to_string(),
            Some(wer_ours.clone()),
        ),
        (
            "aisle (full 30 s window)".to_string(),
            Some(wer_full.clone()),
        ),
        (format!("aisle, beam {BEAMS}"), Some(wer_beam.clone())),
    ]
    .into_iter()
    .chain(
        PEER_CONFIGS
            .iter()
            .map(|c| (format!("faster-whisper {}", peer_label(c)), peer_wer(c))),
    )
    .filter_map(|(l, v)| v.map(|v| (l, v)))
    .collect();

    if json {
        let rows: Vec<_> = clips
            .iter()
            .enumerate()
            .map(|(i, (label, reference, _))| {
                let (ms, audio_ms, text) = &ours[i];
                serde_json::json!({
                    "clip": label, "audio_ms": audio_ms, "reference": reference,
                    "aisle_ms": ms, "aisle_rtf": ms / audio_ms, "aisle_text": text,
                    "aisle_full_window_ms": full[i].0,
                    "aisle_beam_ms": beam[i].0,
                    "peer_ms": PEER_CONFIGS.iter().map(|c| (c.to_string(), serde_json::json!(peer_ms(c, i)))).collect::<serde_json::Map<_, _>>(),
                    "ratio_to_int8": peer_ms("int8", i).map(|p| ms / p),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "threads": threads, "runs": runs, "model_load_ms": load_ms,
                "clips": rows,
                "aisle_peak_rss_mib": our_peak,
                "peer": "faster-whisper 1.2.1 (CTranslate2), same tiny.en weights, beam 1 (int8@5: beam 5), condition_on_previous_text off",
                "aisle_beams": cfg.file.inference.speech_beams,
                "peer_configs": PEER_CONFIGS,
                "peer_peak_rss_mib": peer.as_ref().and_then(|p| p["peak_rss_kib"].as_f64()).map(|k| k / 1024.0),
                "wer": wer_rows.iter().map(|(l, v)| serde_json::json!({
                    "who": l,
                    "sets": v.iter().zip(&wer_sets).map(|(r, (name, _))| serde_json::json!({"set": name, "errors": r.0, "words": r.1, "wer": rate(*r)})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "prompt_biasing": { "words": words, "wer_without": plain as f64 / words as f64, "wer_with": biased as f64 / words as f64 },
                "live": live.iter().map(|(label, r)| {
                    let i = clips.iter().position(|c| c.0 == *label).unwrap_or(0);
                    serde_json::json!({
                        "clip": label, "audio_ms": r.audio_ms,
                        "end_of_speech_to_final_ms": r.latency_ms, "final_decode_ms": r.decode_ms,
                        "speculative_finals": r.speculative, "finals": r.finals, "text": r.text,
                        "peer_min_silence_plus_decode_ms": peer_ms("int8", i).map(|p| p + min_silence),
                    })
                }).collect::<Vec<_>>(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "speech benchmark: {threads} thread(s), median of {runs} run(s) after a warm-up; model load {load_ms:.0} ms"
    );
    outln!(
        "peer: faster-whisper 1.2.1 on the same tiny.en weights, beam 1, condition_on_previous_text off, {threads} thread(s); int8 is its fastest CPU type, +vad its own Silero VAD filter; \"b5\" rows: beam {BEAMS} on both sides. aisle's own rows: beam {} (inference.speech_beams)",
        cfg.file.inference.speech_beams
    );
    outln!("end of speech to final text (whole file available; VAD + decode):");
    outln!(
        "  {:<6} {:>9} {:>9} {:>10} {:>15} {:>10} {:>10} {:>14} {:>10} {:>11} {:>13} {:>13}",
        "clip",
        "audio ms",
        "aisle ms",
        "aisle RTF",
        "aisle full win",
        "aisle b5",
        "fw int8",
        "fw int8+vad",
        "fw f32",
        "fw int8 b5",
        "aisle/int8",
        "b5/b5"
    );
    let ms_or_dash = |v: Option<f64>| v.map_or("-".to_string(), |m| format!("{m:.0} ms"));
    for (i, (label, _, _)) in clips.iter().enumerate() {
        let (ms, audio_ms, _) = &ours[i];
        outln!(
            "  {label:<6} {audio_ms:>9.0} {ms:>9.0} {:>10.2} {:>15} {:>10} {:>10} {:>14} {:>10} {:>11} {:>13} {:>13}",
            ms / audio_ms,
            format!("{:.0} ms", full[i].0),
            format!("{:.0} ms", beam[i].0),
            ms_or_dash(peer_ms("int8", i)),
            ms_or_dash(peer_ms("int8+vad", i)),
            ms_or_dash(peer_ms("float32", i)),
            ms_or_dash(peer_ms("int8@5", i)),
            peer_ms("int8", i).map_or("-".into(), |p| format!("{:.2}x", ms / p)),
            peer_ms("int8@5", i).map_or("-".into(), |p| format!("{:.2}x", beam[i].0 / p)),
        );
    }
    outln!(
        "  (aisle encodes the utterance plus 4 s of its 30 s window; \"aisle full win\" does the same encoder work as faster-whisper)"
    );
    outln!("word error rate, espeak-ng voice, the same files for all:");
    outln!(
        "  {:<32} {}",
        "",
        wer_sets
            .iter()
            .map(|(n, set)| format!("{:>44}", format!("{n}, {} clips", set.len())))
            .collect::<String>()
    );
    for (label, v) in &wer_rows {
        outln!(
            "  {label:<32} {}",
            v.iter()
                .map(|r| format!("{:>44}", format!("{:.3} ({}/{})", rate(*r), r.0, r.1)))
                .collect::<String>()
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
        let (p, ratio) = match peer_ms("int8", i) {
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
        "  (peer column: faster-whisper int8's decode time plus the same {min_silence:.0} ms end-of-speech wait, its best case behind a VAD endpointer)"
    );
    let peer_peak = peer
        .as_ref()
        .and_then(|p| p["peak_rss_kib"].as_f64())
        .map(|k| k / 1024.0);
    outln!(
        "peak memory: aisle {} MiB, faster-whisper {} MiB (all its configurations in one process)",
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
        if let Some(p) = peer_cfg("int8") {
            outln!(
                "  peer int8: {}",
                p["results"][i]["text"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
