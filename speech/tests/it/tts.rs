//! The Piper voice on real weights: answers spoken, then heard back by our own whisper;
//! hostile text; voice files that are damaged or do not belong together.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use aisle_models::Store;
use aisle_speech::tts::{TtsError, Voice, VoiceOptions, normalize::normalize};
use aisle_speech::wer::word_errors;

use crate::{data_dir, serial, work_dir};

struct Files {
    model: PathBuf,
    config: PathBuf,
    options: VoiceOptions,
}

fn files() -> &'static Files {
    static F: OnceLock<Files> = OnceLock::new();
    F.get_or_init(|| {
        let store = Store::open(&data_dir().join("models")).expect("store");
        let v = store
            .verify("piper-en-us-joe-medium", &mut |_| {})
            .expect("the voice is installed by the test command");
        let ort = store
            .verify("onnxruntime", &mut |_| {})
            .expect("onnxruntime");
        Files {
            model: v.path("voice.onnx").expect("voice.onnx").to_path_buf(),
            config: v.path("voice.onnx.json").expect("json").to_path_buf(),
            options: VoiceOptions {
                threads: 2,
                ort_library: ort.first_file().expect("lib").0.to_path_buf(),
                espeak: "espeak-ng".into(),
            },
        }
    })
}

/// Loaded once per test binary.
fn voice() -> &'static Voice {
    static V: OnceLock<Voice> = OnceLock::new();
    V.get_or_init(|| {
        let f = files();
        Voice::load(&f.model, &f.config, &f.options).expect("voice loads")
    })
}

/// 16 kHz for whisper.
fn to_16k(samples: &[f32], rate: u32) -> Vec<f32> {
    aisle_speech::resample::to_16k(samples, rate).expect("resample")
}

const ANSWERS: [&str; 20] = [
    "Banana is $1.57.",
    "Organic Whole Milk is $4.29, in Aisle 16.",
    "Yes, the sourdough bread is in stock: 12 left.",
    "Sorry, the oat milk is out of stock today.",
    "The coffee beans are on offer: 20% off until Sunday.",
    "Buy 2 for 1 on sparkling water this week.",
    "The peanut butter is in Aisle 7, next to the jam.",
    "Greek yogurt costs $5.99 for 500 g.",
    "The olive oil is $12.49 for 1 L.",
    "Paper towels are $8.99 for a 6 roll pack.",
    "The cheddar cheese is cheaper by $1.20.",
    "Yes, the rice crackers are gluten free.",
    "The chocolate bar contains milk and nuts.",
    "Frozen peas are in Aisle 22, in the freezer section.",
    "The orange juice is $3.49 and there are 40 in stock.",
    "Try the almond milk instead, it is $3.99.",
    "The pasta sauce is on sale for $2.50.",
    "A member of staff is on the way to help you.",
    "The strawberries are $4.00 per box.",
    "Dark roast coffee is in Aisle 26, top shelf.",
];

/// whisper base (multilingual, English set): the better of our two ears, so the
/// round trip measures the voice more than tiny.en's own slips ("aisle" as "I'll").
fn ear() -> &'static aisle_speech::Transcriber {
    static T: OnceLock<aisle_speech::Transcriber> = OnceLock::new();
    T.get_or_init(|| {
        let store = Store::open(&data_dir().join("models")).expect("store");
        let mut t = aisle_speech::Transcriber::load(
            &store,
            "whisper-base-ggml",
            "silero-vad",
            aisle_speech::VadConfig::default(),
            2,
        )
        .expect("whisper base is installed by the test command");
        t.set_language("en").expect("en");
        t
    })
}

#[test]
fn spoken_answers_are_heard_back_by_whisper() {
    let _g = serial();
    let v = voice();
    let t = ear();
    let (mut edits, mut words) = (0, 0);
    println!("{:<58} {:>5}  heard", "answer (as read)", "WER");
    for a in ANSWERS {
        let speech = v.speak(a).expect("speaks");
        assert_eq!(speech.sample_rate, 22_050);
        let samples = speech.samples();
        let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.3, "{a}: near silence (peak {peak})");
        // About 60-250 ms per word: speech, not a click and not a drone.
        let per_word = speech.duration_s() / normalize(a).split_whitespace().count() as f64;
        assert!(
            (0.15..0.8).contains(&per_word),
            "{a}: {per_word:.2} s per word"
        );
        let heard = t
            .transcribe(&to_16k(&samples, 22_050), None)
            .expect("transcribe");
        // The same normalisation on both sides: "$1.57" heard is "one dollar fifty-seven".
        let reference = normalize(a);
        let (e, n) = word_errors(&reference, &normalize(&heard.text));
        println!(
            "{reference:<58} {:>5.2}  {}",
            e as f64 / n as f64,
            heard.text
        );
        edits += e;
        words += n;
    }
    let wer = edits as f64 / words as f64;
    println!("round-trip WER over {} sentences: {wer:.3}", ANSWERS.len());
    assert!(wer <= 0.15, "round-trip WER {wer:.3} is above 0.15");
}

#[test]
fn sentences_stream_one_by_one_and_stop_on_barge_in() {
    let v = voice();
    let text = "Banana is $1.57. It is in Aisle 24. Anything else?";
    let mut seen = Vec::new();
    let all = v
        .stream(text, |s| {
            seen.push(s.text.clone());
            true
        })
        .expect("speaks");
    assert_eq!(
        seen,
        [
            "Banana is one dollar fifty-seven.",
            "It is in Aisle twenty-four.",
            "Anything else?"
        ]
    );
    assert_eq!(all.sentences.len(), 3);
    // Barge-in after the first sentence: nothing more is synthesised.
    let cut = v.stream(text, |_| false).expect("speaks");
    assert_eq!(cut.sentences.len(), 1);
    assert!(cut.duration_s() < all.duration_s() * 0.6);
}

#[test]
fn hostile_text_gets_a_clear_error_or_sensible_speech() {
    let v = voice();
    assert!(matches!(v.speak(""), Err(TtsError::Empty)));
    assert!(matches!(v.speak("   \n\t "), Err(TtsError::Empty)));
    assert!(matches!(v.speak("🙂🛒☕"), Err(TtsError::Empty)));
    let long = "word ".repeat(2_000);
    match v.speak(&long) {
        Err(e @ TtsError::TooLong { .. }) => assert!(e.to_string().contains("10000 characters")),
        other => panic!("10,000 characters: {other:?}"),
    }
    for text in [
        "<speak><prosody rate='x-fast'>Banana</prosody> is <break time='3s'/> here</speak>",
        "A number with 40 digits: 1234567890123456789012345678901234567890.",
        "牛奶在哪里？ Milk is in Aisle 3.",
        "Price\u{0}\u{7}\u{1b}[31m is $2.",
        &"a".repeat(3_000),
        "...!!!???,,,",
    ] {
        let t0 = Instant::now();
        match v.speak(text) {
            Ok(s) => {
                assert!(s.duration_s() < 600.0, "{text:?}: {} s", s.duration_s());
                assert!(s.samples().iter().all(|x| x.is_finite()));
            }
            Err(e) => assert!(
                matches!(e, TtsError::Empty | TtsError::TooLong { .. }),
                "{text:?}: {e}"
            ),
        }
        assert!(
            t0.elapsed().as_secs() < 120,
            "{text:?} took {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn damaged_or_mismatched_voice_files_are_refused_naming_the_file() {
    let f = files();
    let dir = work_dir().join("bad-voice");
    std::fs::create_dir_all(&dir).expect("dir");
    // A voice file cut short.
    let bytes = std::fs::read(&f.model).expect("read");
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let e = Voice::load(&cut, &f.config, &f.options).expect_err("truncated");
    assert!(e.to_string().contains("cut.onnx"), "{e}");
    // A config whose ids the model does not have.
    let json = std::fs::read_to_string(&f.config).expect("json");
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
    v["num_symbols"] = 1000.into();
    v["phoneme_id_map"]["a"] = serde_json::json!([900]);
    let wrong = dir.join("wrong.onnx.json");
    std::fs::write(&wrong, v.to_string()).expect("write");
    let e = Voice::load(&f.model, &wrong, &f.options).expect_err("mismatch");
    let msg = e.to_string();
    assert!(
        msg.contains("wrong.onnx.json") && msg.contains("does not match"),
        "{msg}"
    );
    // Configs that are not voice configs at all.
    for (name, text) in [
        ("empty.json", ""),
        ("array.json", "[1,2]"),
        ("no-pad.json", &json.replace("\"_\"", "\"~\"")),
        ("rate.json", &json.replace("22050", "5")),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        let e = Voice::load(&f.model, &p, &f.options).expect_err(name);
        assert!(e.to_string().contains(name), "{name}: {e}");
    }
}
