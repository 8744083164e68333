//! The `aisle` binary end to end: exit codes, messages, JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aisle_models::Store;

mod ar;
mod assistant;
mod catalog_import;
mod llm;
mod scan;
mod service;
mod sync;
mod ui;

fn data_dir() -> PathBuf {
    std::env::var_os("AISLE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(aisle_firmware_config::default_data_dir)
        .expect("no data directory: set AISLE_DATA_DIR or HOME")
}

/// Runs `aisle` with a clean environment for the variables it reads.
fn aisle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aisle"))
        .args(args)
        .env_remove("AISLE_CONFIG")
        .env_remove("AISLE_DATA_DIR")
        .env_remove("AISLE_LOG")
        .output()
        .expect("run aisle")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The command failed with exit code 1 and said `needle` on stderr.
fn assert_fails_with(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
}

/// Speaks `text` with espeak-ng into `wav` (22.05 kHz mono).
fn speak(text: &str, wav: &Path) {
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(wav)
        .arg(text)
        .status()
        .expect("espeak-ng is installed by the test command");
    assert!(status.success(), "espeak-ng failed on {text:?}");
}

fn real_data_dir_arg() -> String {
    data_dir().to_string_lossy().into_owned()
}

#[test]
fn config_check_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kiosk.toml");
    std::fs::write(
        &file,
        "[device]\nprofile = \"kisok\"\n\n[camera]\nfps = \"thirty\"\n\n[thresholds]\nmatch_confidnce = 0.7\n",
    )
    .expect("write");
    let out = aisle(&["config", "check", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let f = file.display();
    for line in [
        format!("{f}:2:11: `device.profile` must be one of"),
        format!("{f}:5:7: `camera.fps` must be an integer, found a string"),
        format!(
            "{f}:8:1: unknown key `match_confidnce` in `[thresholds]`; did you mean `match_confidence`?"
        ),
    ] {
        assert!(err.contains(&line), "missing `{line}` in:\n{err}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");

    let out = aisle(&["config", "check", file.to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["problems"][1]["line"], 5);

    std::fs::write(&file, "[device]\nprofile = \"ar-tablet\"\n").expect("write");
    let out = aisle(&["config", "check", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn bad_config_paths_fail_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let out = aisle(&[
        "--config",
        missing.to_str().expect("utf-8"),
        "config",
        "show",
    ]);
    assert_fails_with(&out, "nope.toml");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[service]\nbind = \"0.0.0.0:80\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_aisle"))
        .args(["config", "show"])
        .env("AISLE_CONFIG", &bad)
        .output()
        .expect("run");
    assert_fails_with(&out, "bad.toml:2:8: `service.bind`");
}

#[test]
fn config_show_honours_data_dir_and_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("store-b.toml");
    std::fs::write(&cfg, "[device]\nname = \"store-b\"\n").expect("write");
    let data = dir.path().join("data-b");
    let out = aisle(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "config",
        "show",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["device"]["name"], "store-b");
    assert_eq!(v["paths"]["data_dir"], data.to_str().expect("utf-8"));
    assert_eq!(
        v["paths"]["model_dir"],
        data.join("models").to_str().expect("utf-8")
    );
    assert_eq!(v["service"]["bind"], "127.0.0.1:8480");

    let out = aisle(&[
        "--data-dir",
        data.to_str().expect("utf-8"),
        "config",
        "show",
    ]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("[device]") && shown.contains("profile = \"kiosk\""),
        "{shown}"
    );
}

#[test]
fn config_schema_is_the_committed_copy() {
    let out = aisle(&["config", "schema"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), aisle_firmware_config::COMMITTED_SCHEMA);
}

#[test]
fn models_list_shows_every_default_model_verified() {
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "models",
        "list",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let catalog = aisle_models::ModelCatalog::default_set().expect("catalog");
    for name in catalog.names() {
        let row = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(row["state"], "verified", "{row}");
        assert!(
            row["size"].as_u64().unwrap_or(0) > 0
                && row["license"].as_str().is_some_and(|l| !l.is_empty()),
            "{row}"
        );
    }
}

#[test]
fn second_fetch_downloads_nothing() {
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "models",
        "fetch",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        rows.len(),
        aisle_models::ModelCatalog::default_set()
            .expect("catalog")
            .entries
            .len()
    );
    for r in &rows {
        assert_eq!(r["outcome"], "up-to-date", "{r}");
    }
}

/// Copies two small real models into a fresh store under `data/models`.
fn small_data_dir(data: &Path) {
    let real = Store::open(&data_dir().join("models")).expect("real store");
    let store = Store::open(&data.join("models")).expect("store");
    for name in ["imagenet-labels", "silero-vad"] {
        store
            .copy_model_from(&real, name)
            .expect("installed (run `cargo xtask test`)");
    }
}

#[test]
fn verify_fails_naming_a_flipped_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    small_data_dir(&data);
    let d = data.to_str().expect("utf-8");
    let out = aisle(&[
        "--data-dir",
        d,
        "models",
        "verify",
        "imagenet-labels",
        "silero-vad",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let blob = data.join(
        "models/blobs/sha256/7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
    );
    let mut perms = std::fs::metadata(&blob).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("chmod");
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[4242] ^= 0x80;
    std::fs::write(&blob, bytes).expect("write");

    let out = aisle(&[
        "--data-dir",
        d,
        "models",
        "verify",
        "imagenet-labels",
        "silero-vad",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok       imagenet-labels"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "DAMAGED  silero-vad: {}: checksum mismatch: expected sha256 7776b81a",
            blob.display()
        )),
        "{stdout}"
    );
    // Verifying everything also reports the default models that are not installed.
    let out = aisle(&["--data-dir", d, "models", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    let states: Vec<&str> = v["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["state"].as_str())
        .collect();
    assert!(
        states.contains(&"not-installed") && states.contains(&"damaged"),
        "{states:?}"
    );
}

#[test]
fn demo_shows_config_and_verified_store() {
    let out = aisle(&["--data-dir", &real_data_dir_arg(), "demo", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["device"]["name"], "demo-kiosk");
    let models = v["models"].as_array().expect("models");
    assert!(
        !models.is_empty() && models.iter().all(|m| m["state"] == "verified"),
        "{models:?}"
    );

    assert!(
        v["configured_models"]
            .as_array()
            .expect("configured")
            .iter()
            .all(|m| m["ready"] == true),
        "{v}"
    );

    // End to end: the photo's product, the bundled spoken question, a grounded answer.
    let run = &v["run"];
    assert!(run["store_products"].as_u64() > Some(49_000), "{run}");
    let heard = run["transcript"].as_str().expect("transcript");
    assert!(
        aisle_speech::wer::wer("how much is this and where can I find it", heard) <= 0.2,
        "{heard}"
    );
    assert_eq!(run["intents"], serde_json::json!(["price", "location"]));
    assert_eq!(run["products"], serde_json::json!(["DEMO-ESPRESSO"]));
    // The product came from recognising the photo among all 49,689 products.
    assert_eq!(run["scan"]["decision"], "identified", "{run}");
    assert_eq!(run["scan"]["matches"][0]["sku"], "DEMO-ESPRESSO", "{run}");
    let answer = run["answer"].as_str().expect("answer");
    assert!(
        answer.contains("$2.95") && answer.contains("Aisle 26: coffee"),
        "{answer}"
    );
    let stages: Vec<&str> = run["stages_ms"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert!(stages.contains(&"VAD + whisper") && stages.contains(&"end of speech to answer"));
    assert!(
        stages.contains(&"end of speech to first audio"),
        "{stages:?}"
    );
    // The answer spoken: a WAV of the voice, long enough to say it.
    let wav = run["spoken_answer"]["wav"].as_str().expect("wav");
    let audio = aisle_speech::decode_wav(std::path::Path::new(wav)).expect("the spoken answer");
    assert!(audio.duration_s() > 2.0, "{} s", audio.duration_s());

    // A configured model that the store does not hold is named, and the demo fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("kiosk.toml");
    std::fs::write(&cfg, "[models]\nasr = \"whisper-huge\"\n").expect("write");
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "--config",
        cfg.to_str().expect("utf-8"),
        "demo",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("whisper-huge             NOT IN THE STORE"),
        "{}",
        text(&out.stdout)
    );

    // An empty data dir: the demo says what to do and fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = aisle(&["--data-dir", dir.path().to_str().expect("utf-8"), "demo"]);
    assert_fails_with(&out, "aisle models fetch");
}

#[test]
fn transcribe_prints_text_segments_and_timings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("question.wav");
    speak("where can I find the baby food", &wav);
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "transcribe",
        wav.to_str().expect("utf-8"),
        "--json",
        "-v",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The log (stderr is a pipe here): plain text, no terminal colour codes, and the
    // transcript only as its length.
    let log = text(&out.stderr);
    assert!(
        log.contains("transcribed") && log.contains("chars="),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
    assert!(!log.to_lowercase().contains("baby food"), "{log}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let said = v["text"].as_str().expect("text");
    assert!(
        aisle_speech::wer::wer("where can I find the baby food", said) <= 0.2,
        "{said}"
    );
    assert_eq!(v["language"], "en");
    assert!(v["segments"][0]["end_ms"].as_u64() > v["segments"][0]["start_ms"].as_u64());
    assert!(v["real_time_factor"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(v["source"]["sample_rate"], 22050);

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").expect("write");
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "transcribe",
        empty.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&out, "empty.wav: cannot decode audio");

    // `dialogue.language` is the language whisper listens for: an English-only model
    // refuses another, and an unknown code is named.
    for (lang, says) in [
        ("de", "speaks only English"),
        ("xx", "knows no language \"xx\""),
    ] {
        let cfg = dir.path().join(format!("{lang}.toml"));
        std::fs::write(&cfg, format!("[dialogue]\nlanguage = \"{lang}\"\n")).expect("write");
        let out = aisle(&[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--data-dir",
            &real_data_dir_arg(),
            "transcribe",
            wav.to_str().expect("utf-8"),
        ]);
        assert_fails_with(&out, says);
    }
}

/// The real microphone path without a sound card: ALSA's `file` plugin reads raw
/// 16 kHz PCM from a FIFO that this test fills at real-time pace, cpal opens it as the
/// default input device, and `aisle listen` turns it into a transcript. Ctrl-C (SIGINT)
/// ends it cleanly.
#[test]
fn listen_through_cpal_and_alsa_from_a_fifo() {
    use std::io::{BufRead, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const QUESTION: &str = "where can I find the baby food";
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("question.wav");
    speak(QUESTION, &wav);
    let samples = aisle_speech::decode_wav(&wav).expect("decode").samples;

    let fifo = dir.path().join("mic.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    std::fs::create_dir_all(dir.path().join("alsa")).expect("mkdir");
    std::fs::write(
        dir.path().join("alsa/asoundrc"),
        format!(
            "pcm.!default {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n}}\n",
            fifo.display()
        ),
    )
    .expect("asoundrc");

    let mut child = Command::new(env!("CARGO_BIN_EXE_aisle"))
        .args(["--data-dir", &real_data_dir_arg(), "listen", "--json"])
        .env("XDG_CONFIG_HOME", dir.path())
        .env_remove("AISLE_CONFIG")
        .env_remove("AISLE_DATA_DIR")
        .env_remove("AISLE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn aisle listen");

    // Feeder: 1 s of silence, the question, then silence until told to stop, all as
    // signed 16-bit little-endian at 16 kHz, 20 ms per write, paced by the clock.
    let done = Arc::new(AtomicBool::new(false));
    let feeder = {
        let done = done.clone();
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let pcm: Vec<u8> = std::iter::repeat_n(0.0f32, 16_000)
                .chain(samples)
                .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
                .collect();
            let start = Instant::now();
            let silence = [0u8; 640];
            let mut sent = 0usize;
            while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                let chunk = pcm
                    .get(sent..(sent + 640).min(pcm.len()))
                    .filter(|c| !c.is_empty());
                if f.write_all(chunk.unwrap_or(&silence)).is_err() {
                    return;
                }
                sent += 640;
                let due = start + Duration::from_micros(sent as u64 * 1_000_000 / 32_000);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        })
    };

    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let mut final_text = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while final_text.is_none() && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
        if v["event"] == "final" {
            final_text = v["text"].as_str().map(str::to_string);
        }
        lines.push(v);
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = child.wait().expect("wait");
    done.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    lines.extend(rx.try_iter().filter_map(|l| serde_json::from_str(&l).ok()));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let said = final_text.unwrap_or_else(|| panic!("no final transcript: {lines:#?}\n{stderr}"));
    assert!(aisle_speech::wer::wer(QUESTION, &said) <= 0.2, "{said:?}");
    assert!(
        lines[0]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("microphone")),
        "{lines:#?}"
    );
    assert!(
        status.success(),
        "Ctrl-C must end listen cleanly: {status:?}\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["event"] == "stopped" && v["dropped_samples"] == 0),
        "{lines:#?}"
    );
}

/// Spoken multi-turn: two questions in one recording, the second refers back ("it").
#[test]
fn chat_by_voice_answers_each_utterance_in_one_conversation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut samples = vec![0.0f32; 16_000];
    for (i, q) in ["how much is the banana", "and where can I find it"]
        .iter()
        .enumerate()
    {
        let wav = dir.path().join(format!("q{i}.wav"));
        speak(q, &wav);
        samples.extend(aisle_speech::decode_wav(&wav).expect("decode").samples);
        samples.extend(std::iter::repeat_n(0.0f32, 16_000));
    }
    let both = dir.path().join("both.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&both, spec).expect("wav");
    for s in samples {
        w.write_sample((s * 32767.0) as i16).expect("write");
    }
    w.finalize().expect("finalize");
    let out = aisle(&["--data-dir", &real_data_dir_arg(), "catalog", "demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "chat",
        "--voice",
        "--file",
        both.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let turns: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(turns.len(), 2, "{turns:#?}");
    assert_eq!(turns[0]["intent"], "price");
    assert_eq!(turns[1]["intent"], "location");
    assert_eq!(turns[0]["products"][0], "G24852", "{turns:#?}");
    assert_eq!(
        turns[1]["products"][0], "G24852",
        "\"it\" is the banana: {turns:#?}"
    );
    assert!(
        turns[1]["timings_ms"]["end_of_speech_to_answer"]
            .as_f64()
            .is_some()
    );
}

#[test]
fn say_writes_the_spoken_text_and_refuses_what_it_cannot_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("said.wav");
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "--json",
        "say",
        "Banana is $0.69. It is in Aisle 3.",
        "--out",
        wav.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["sample_rate"], 22_050);
    assert_eq!(
        v["sentences"][0]["text"], "Banana is sixty-nine cents.",
        "{v}"
    );
    let audio = aisle_speech::decode_wav(&wav).expect("a WAV");
    assert!((audio.duration_s() - v["duration_s"].as_f64().expect("s")).abs() < 0.01);
    assert!(v["real_time_factor"].as_f64() < Some(1.0), "{v}");

    let data = real_data_dir_arg();
    let d = dir.path().to_str().expect("utf-8");
    for (args, needle) in [
        (vec!["say", ""], "nothing to say"),
        (vec!["say", "🙂"], "nothing to say"),
        (vec!["say", "hello", "--out", d], d),
    ] {
        let mut a = vec!["--data-dir", data.as_str()];
        a.extend(args);
        assert_fails_with(&aisle(&a), needle);
    }
}

/// What a hostile user tried on the release binary, class by class: endless and
/// special files, names that are paths, absurd thread counts, an over-long prompt.
/// Each gets a clear error that names the thing, once, and nothing is written.
#[test]
fn hostile_arguments_and_special_files_are_refused_by_name() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = real_data_dir_arg();
    let fifo = dir.path().join("no-writer.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let fifo = fifo.to_str().expect("utf-8").to_string();
    let out_png = dir.path().join("o.png");
    let out_png = out_png.to_str().expect("utf-8");
    for special in ["/dev/zero", fifo.as_str()] {
        for args in [
            vec!["config", "check", special],
            vec!["--data-dir", &data, "scan", special],
            vec![
                "--data-dir",
                &data,
                "ar",
                "render",
                special,
                "--out",
                out_png,
            ],
            vec![
                "--data-dir",
                dir.path().to_str().expect("utf-8"),
                "catalog",
                "import",
                special,
            ],
            vec!["--data-dir", &data, "ask", "hello", "--session", special],
        ] {
            let t = Instant::now();
            let out = aisle(&args);
            assert_fails_with(&out, "not a regular file");
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{args:?} took {:?}",
                t.elapsed()
            );
            let err = text(&out.stderr);
            assert_eq!(
                err.matches("only regular files").count(),
                1,
                "the cause is said once: {err}"
            );
        }
    }
    // `ar render --out`: never the photo itself, never PNG bytes under another name.
    let photo = dir.path().join("photo.png");
    std::fs::write(&photo, b"not really").expect("write");
    let p = photo.to_str().expect("utf-8");
    let out = aisle(&["--data-dir", &data, "ar", "render", p, "--out", p]);
    assert_fails_with(&out, "is the input photo");
    assert_eq!(std::fs::read(&photo).expect("read"), b"not really");
    let jpg = dir.path().join("x.jpg");
    let out = aisle(&[
        "--data-dir",
        &data,
        "ar",
        "render",
        p,
        "--out",
        jpg.to_str().expect("utf-8"),
    ]);
    assert_fails_with(&out, "name the file *.png");
    // Names that are paths never leave the store.
    let store = dir.path().join("store");
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"weights").expect("write");
    for name in [
        "../../escaped",
        "/tmp/abs",
        "",
        ".",
        "..",
        "a\nb",
        ".hidden",
    ] {
        let out = aisle(&[
            "--data-dir",
            store.to_str().expect("utf-8"),
            "models",
            "add",
            name,
            file.to_str().expect("utf-8"),
        ]);
        assert_fails_with(&out, "is not a model name");
    }
    assert!(!dir.path().join("escaped.json").exists());
    assert!(!std::path::Path::new("/tmp/abs.json").exists());
    // Thread counts: 1 to 256.
    for n in ["0", "100000"] {
        let out = aisle(&[
            "--data-dir",
            &data,
            "transcribe",
            "demo/question.wav",
            "--threads",
            n,
        ]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("give 1 to 256"),
            "{}",
            text(&out.stderr)
        );
    }
    // An over-long decoder prompt is an error, not silently dropped.
    let wav = dir.path().join("q.wav");
    speak("how much is the banana", &wav);
    let prompt = "organic peanut butter, ".repeat(100);
    let out = aisle(&[
        "--data-dir",
        &data,
        "transcribe",
        wav.to_str().expect("utf-8"),
        "--prompt",
        &prompt,
    ]);
    assert_fails_with(&out, "the prompt is too long");
    assert!(text(&out.stderr).contains("whisper model `whisper-tiny-en-ggml`"));
}

/// A conversation kept in a file is bounded like the kiosk's own, and a file that
/// cannot be written loses the conversation, never the answer.
#[test]
fn a_session_file_is_bounded_and_a_failed_save_keeps_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("k.toml");
    std::fs::write(&cfg, "[dialogue]\nmax_history_turns = 2\n").expect("write");
    let session = dir.path().join("s.json");
    let data = real_data_dir_arg();
    for q in [
        "how much is the banana",
        "where is it",
        "is it in stock",
        "any offers on it",
    ] {
        let out = aisle(&[
            "--data-dir",
            &data,
            "--config",
            cfg.to_str().expect("utf-8"),
            "ask",
            q,
            "--session",
            session.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).expect("session")).expect("json");
    assert_eq!(kept["intents"].as_array().map(Vec::len), Some(2), "{kept}");

    let nowhere = dir.path().join("missing-dir/s.json");
    let out = aisle(&[
        "--data-dir",
        &data,
        "ask",
        "how much is the banana",
        "--session",
        nowhere.to_str().expect("utf-8"),
    ]);
    assert!(text(&out.stdout).contains("$1.57"), "{}", text(&out.stdout));
    assert_fails_with(&out, &nowhere.display().to_string());
}

/// `aisle listen --fast` on the bundled question: partials never say a sentence
/// twice ("How much is this? How much is this? How" once did) and one final comes.
#[test]
fn listen_at_full_speed_gives_clean_partials_and_one_final() {
    let out = aisle(&[
        "--data-dir",
        &real_data_dir_arg(),
        "listen",
        "--file",
        "../demo/question.wav",
        "--fast",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    for e in events.iter().filter(|e| e["event"] == "partial") {
        let t = e["text"].as_str().unwrap_or("").to_lowercase();
        let sentences: Vec<&str> = t
            .split(['.', '?', '!'])
            .map(str::trim)
            .filter(|s| s.split_whitespace().count() >= 2)
            .collect();
        for (i, s) in sentences.iter().enumerate() {
            assert!(
                !sentences[i + 1..].contains(s),
                "repeated in a partial: {t:?}"
            );
        }
    }
    let finals: Vec<_> = events.iter().filter(|e| e["event"] == "final").collect();
    assert_eq!(finals.len(), 1, "{events:#?}");
}

/// A whisper model whose header lies about its sizes is refused by name before
/// whisper.cpp sees it (it used to abort the process: "Rust cannot catch foreign
/// exceptions").
#[test]
fn a_whisper_file_whose_header_lies_is_refused_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = real_data_dir_arg();
    let path_of = |model: &str, file: &str| {
        let out = aisle(&["--data-dir", &real, "models", "path", model, file]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let out = aisle(&[
        "--data-dir",
        &real,
        "models",
        "path",
        "whisper-tiny-en-ggml",
        "ggml-model.bin",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let src = text(&out.stdout).trim().to_string();
    let mut bytes = std::fs::read(&src).expect("read");
    bytes[4..8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // n_vocab
    let lying = dir.path().join("ggml-model.bin");
    std::fs::write(&lying, &bytes).expect("write");
    let data = dir.path().join("data");
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "[paths]\nmodel_dir = {:?}\n\n[models]\nasr = \"lying-whisper\"\nvad = \"vad-copy\"\n",
            data.join("models")
        ),
    )
    .expect("config");
    let c = cfg.to_str().expect("utf-8");
    let d = data.to_str().expect("utf-8");
    let vad = [
        path_of("silero-vad", "silero_vad.onnx"),
        path_of("silero-vad", "silero_vad_openvino_16k.onnx"),
    ];
    for (i, f) in vad.iter().enumerate() {
        let name = ["silero_vad.onnx", "silero_vad_openvino_16k.onnx"][i];
        std::fs::copy(f, dir.path().join(name)).expect("copy");
    }
    let v0 = dir.path().join("silero_vad.onnx");
    let v1 = dir.path().join("silero_vad_openvino_16k.onnx");
    // Every call here is on the test's own store and config.
    let on_store = |args: &[&str]| aisle(&[&["--data-dir", d, "--config", c][..], args].concat());
    let out = on_store(&[
        "models",
        "add",
        "vad-copy",
        v0.to_str().expect("utf-8"),
        v1.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = on_store(&[
        "models",
        "add",
        "lying-whisper",
        lying.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = on_store(&["transcribe", "../demo/question.wav"]);
    assert_fails_with(&out, "whisper model `lying-whisper`");
    assert!(
        text(&out.stderr).contains("not a whisper.cpp model"),
        "{}",
        text(&out.stderr)
    );
}
