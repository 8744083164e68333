//! `aisle catalog ...`, `aisle ask`, `aisle chat`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::catalog::{self, CatalogDb, ImportOptions, format_price};
use aisle_runtime::dialogue::Session;
use aisle_runtime::kiosk::{self, AskRequest, Kiosk, Parts};
use anyhow::{Context, Result, bail};

pub fn open_catalog(cfg: &DeviceConfig) -> Result<CatalogDb> {
    Ok(CatalogDb::open(&kiosk::catalog_path(cfg))?)
}

pub fn import(
    cfg: &DeviceConfig,
    file: &Path,
    skip_bad_rows: bool,
    json: bool,
) -> Result<ExitCode> {
    let mut cat = open_catalog(cfg)?;
    let opts = ImportOptions {
        skip_bad_rows,
        default_currency: cfg.file.device.currency.clone(),
    };
    let report = catalog::import_file(&mut cat, file, &opts)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{}: {} row(s), {} product(s): {} added, {} updated, {} unchanged{}",
            file.display(),
            report.rows,
            report.products,
            report.added,
            report.updated,
            report.unchanged,
            if report.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} bad row(s) skipped", report.skipped.len())
            }
        );
        for p in &report.skipped {
            outln!("  skipped line {}: {}", p.line, p.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn demo_store(cfg: &DeviceConfig, quiet: bool) -> Result<CatalogDb> {
    let (cat, report) = kiosk::demo_catalog(cfg)?;
    if let Some(r) = report
        && !quiet
    {
        eprintln!(
            "demo store: {} products ({} added, {} updated, {} unchanged)",
            r.products, r.added, r.updated, r.unchanged
        );
    }
    Ok(cat)
}

pub fn show(cfg: &DeviceConfig, sku: &str, json: bool) -> Result<ExitCode> {
    let cat = open_catalog(cfg)?;
    let Some(p) = cat.product(sku)? else {
        bail!("no product with sku {sku:?} in {}", cat.path().display());
    };
    let stock = cat.stock(sku)?;
    let promos = cat.promotions(sku)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "product": p, "stock": stock, "promotions": promos })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{} {}", p.sku, p.name);
    outln!("  price     {}", format_price(p.price_cents, &p.currency));
    outln!("  aisle     {}", p.aisle);
    if let Some(d) = &p.department {
        outln!("  department {d}");
    }
    outln!("  tags      {}", p.tags.join(", "));
    outln!("  allergens {}", p.allergens.join(", "));
    for v in &stock {
        outln!(
            "  stock     {}{}",
            v.quantity,
            if v.variant.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.variant)
            }
        );
    }
    for pr in &promos {
        outln!(
            "  promotion {} ({} to {})",
            pr.description,
            pr.starts,
            pr.ends
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn search(cfg: &DeviceConfig, text: &str, top: usize, json: bool) -> Result<ExitCode> {
    let cat = open_catalog(cfg)?;
    let products = cat.products()?;
    let index = catalog::ProductIndex::build(&products);
    let hits = index.search(text, top);
    if json {
        let rows: Vec<_> = hits
            .iter()
            .map(|m| serde_json::json!({ "sku": m.sku, "name": products[m.doc].name, "score": m.score }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for m in &hits {
            outln!("{:.2}  {:<10} {}", m.score, m.sku, products[m.doc].name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_session(path: Option<&Path>) -> Result<Session> {
    let Some(p) = path else {
        return Ok(Session::default());
    };
    match aisle_firmware_config::read_bounded_text(p, 1 << 20) {
        Ok(t) if t.trim().is_empty() => Ok(Session::default()),
        Ok(t) => serde_json::from_str(&t).with_context(|| {
            format!(
                "{}: not a session file written by `aisle ask --session`",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Session::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read session file {}", p.display())),
    }
}

fn save_session(path: &Path, s: &Session) -> Result<()> {
    crate::say_cmd::write_atomic(path, &serde_json::to_vec_pretty(s)?).with_context(|| {
        format!(
            "the answer above was given, but the conversation could not be kept in {}",
            path.display()
        )
    })
}

pub struct AskInput<'a> {
    pub text: Option<&'a str>,
    pub audio: Option<&'a Path>,
    pub image: Option<&'a Path>,
    pub sku: Option<&'a str>,
    pub session: Option<&'a Path>,
    /// Speak the answer too.
    pub speak: bool,
}

pub fn ask(cfg: &DeviceConfig, input: &AskInput, json: bool) -> Result<ExitCode> {
    if input.image.is_some() && input.sku.is_some() {
        bail!("give the product as --image PHOTO or --sku SKU, not both");
    }
    let t_total = std::time::Instant::now();
    // A bad photo fails before any model work.
    let photo = input
        .image
        .map(|p| aisle_vision::load_image(p, &aisle_vision::ImageLimits::default()))
        .transpose()?;
    if input.text.is_some() && input.audio.is_some() {
        bail!("give the question as TEXT or --audio WAV, not both");
    }
    if input.text.is_none() && input.audio.is_none() {
        bail!("give a question: TEXT or --audio WAV");
    }
    let t0 = std::time::Instant::now();
    let parts = Parts {
        speech: input.audio.is_some(),
        vision: photo.is_some(),
        voice: input.speak,
        ..Parts::dialogue()
    };
    let kiosk = Kiosk::load_with(cfg, parts, &mut crate::vision_cmd::index_bar(json))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (question, transcript, asr_ms) = match (input.text, input.audio) {
        (Some(t), _) => (t.to_string(), None, None),
        (None, Some(wav)) => {
            let bytes =
                std::fs::read(wav).with_context(|| format!("cannot read {}", wav.display()))?;
            let (_, t) = kiosk.transcribe_wav(&bytes, wav, None)?;
            (t.text.clone(), Some(t.text), Some(t.processing_ms as f64))
        }
        (None, None) => unreachable!("checked above"),
    };
    let mut session = load_session(input.session)?;
    let mut asked = kiosk.ask_kept(
        &AskRequest {
            text: &question,
            session: None,
            sku: input.sku,
            image: photo.as_ref(),
        },
        &mut session,
    )?;
    if let (Some(r), Some(path)) = (asked.scan.as_mut(), input.image) {
        r.image = path.display().to_string();
    }
    asked.transcript = transcript.clone();
    asked.timings.insert("load".into(), load_ms.into());
    asked.timings.insert("transcribe".into(), asr_ms.into());
    asked.timings.insert(
        "total".into(),
        (t_total.elapsed().as_secs_f64() * 1000.0).into(),
    );
    let (answer, scan) = (&asked.answer, &asked.scan);
    if json {
        outln!("{}", serde_json::to_string_pretty(&asked.to_json())?);
    } else {
        if let Some(r) = &scan {
            match (r.decision, r.matches.first()) {
                (aisle_vision::Decision::Identified, Some(m)) => outln!(
                    "seen: {} ({}), confidence {:.2}",
                    m.name,
                    m.sku,
                    r.confidence
                ),
                _ => outln!("seen: an unknown product (confidence {:.2})", r.confidence),
            }
        }
        if let Some(t) = &transcript {
            outln!("heard: {t}");
        }
        outln!("{}", answer.text);
        outln!(
            "  [{} via {}; products {}; answered in {:.1} ms]",
            answer
                .intents
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join("+"),
            answer.path,
            if answer.products.is_empty() {
                "-".to_string()
            } else {
                answer.products.join(", ")
            },
            answer.elapsed_us as f64 / 1000.0
        );
    }
    // After the answer is out: a session file that cannot be written loses nothing.
    if let Some(p) = input.session {
        save_session(p, &session)?;
    }
    if input.speak {
        let (speech, first_ms) = crate::say_cmd::speak_to(
            kiosk.voice()?,
            &answer.text,
            &cfg.file.audio.output.device,
            &std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )?;
        tracing::info!(
            first_audio_ms = first_ms,
            seconds = speech.duration_s(),
            "answer spoken"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `aisle chat --voice`: each final utterance from the microphone (or a WAV file at
/// real-time pace) is answered; partials are shown while the shopper speaks.
pub fn chat_voice(
    cfg: &DeviceConfig,
    input: &crate::speech_cmd::ListenInput,
    speak: bool,
    json: bool,
) -> Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let kiosk = Kiosk::load(
        cfg,
        Parts {
            speech: true,
            voice: speak,
            ..Parts::dialogue()
        },
    )?;
    // The answer being spoken: set its flag to stop it (the shopper speaks again).
    let mut speaking: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)> = None;
    // A speaker that cannot be opened is reported once; answers stay in text.
    let speaker_failed = Arc::new(AtomicBool::new(false));
    let transcriber = kiosk.transcriber()?.clone();
    let mut source = crate::speech_cmd::open_source(cfg, input)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
        }
    }
    if !json {
        eprintln!(
            "aisle chat: listening on {} (Ctrl-C ends)",
            source.describe()
        );
    }
    // The conversation lasts as long as the chat, however far the speech
    // processing falls behind the audio.
    let mut session = Session::default();
    let mut failure: Option<anyhow::Error> = None;
    let mut on_event = |ev: aisle_speech::ListenEvent| {
        use std::io::Write as _;
        let line = match ev {
            aisle_speech::ListenEvent::SpeechStart { .. } => {
                // Barge-in: the shopper talks over the answer, which stops at once.
                if let Some((hush, _)) = &speaking {
                    hush.store(true, Ordering::Relaxed);
                }
                return;
            }
            aisle_speech::ListenEvent::Partial { text, .. } if !json => {
                eprintln!("  ... {text}");
                return;
            }
            aisle_speech::ListenEvent::Final(u) => {
                let t = std::time::Instant::now();
                let asked = kiosk.ask_kept(
                    &AskRequest {
                        text: &u.text,
                        ..Default::default()
                    },
                    &mut session,
                );
                let a = match asked {
                    Ok(a) => a.answer,
                    Err(e) => {
                        failure.get_or_insert(e.into());
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                let answer_ms = t.elapsed().as_secs_f64() * 1000.0;
                if speak
                    && !speaker_failed.load(Ordering::Relaxed)
                    && let Ok(voice) = kiosk.voice()
                {
                    if let Some((hush, h)) = speaking.take() {
                        hush.store(true, Ordering::Relaxed);
                        let _ = h.join();
                    }
                    let hush = Arc::new(AtomicBool::new(false));
                    let (voice, text, device, flag, failed) = (
                        voice.clone(),
                        a.text.clone(),
                        cfg.file.audio.output.device.clone(),
                        hush.clone(),
                        speaker_failed.clone(),
                    );
                    let h = std::thread::spawn(move || {
                        if let Err(e) = crate::say_cmd::speak_to(&voice, &text, &device, &flag) {
                            failed.store(true, Ordering::Relaxed);
                            tracing::warn!(error = %format!("{e:#}"), "answers will not be spoken");
                        }
                    });
                    speaking = Some((hush, h));
                }
                if json {
                    kiosk::answer_json(
                        &a,
                        Some(&u.text),
                        &serde_json::json!({
                            "end_of_speech_to_text": u.endpoint_latency_ms,
                            "answer": answer_ms,
                            "end_of_speech_to_answer": u.endpoint_latency_ms as f64 + answer_ms,
                        }),
                    )
                    .to_string()
                } else {
                    format!(
                        "you:   {}
aisle: {}
       [{:.0} ms from end of speech]",
                        u.text,
                        a.text,
                        u.endpoint_latency_ms as f64 + answer_ms
                    )
                }
            }
            _ => return,
        };
        if let Err(e) = writeln!(std::io::stdout(), "{line}") {
            failure.get_or_insert(e.into());
            stop.store(true, Ordering::Relaxed);
        }
    };
    let cfg_listen = aisle_speech::ListenConfig::default();
    transcriber.listen(source.as_mut(), &cfg_listen, &stop, &mut on_event)?;
    // The last answer is heard out (Ctrl-C stops it).
    if let Some((hush, h)) = speaking.take() {
        if stop.load(Ordering::Relaxed) {
            hush.store(true, Ordering::Relaxed);
        }
        let _ = h.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn chat(cfg: &DeviceConfig, json: bool) -> Result<ExitCode> {
    let kiosk = Kiosk::load(cfg, Parts::dialogue())?;
    let mut session = Session::default();
    if !json {
        eprintln!(
            "aisle chat: ask about products in this store ({} products). Empty line or Ctrl-D ends.",
            kiosk.product_count()?
        );
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading the question")?;
        if line.trim().is_empty() {
            break;
        }
        let a = kiosk
            .ask_kept(
                &AskRequest {
                    text: &line,
                    ..Default::default()
                },
                &mut session,
            )?
            .answer;
        if json {
            outln!(
                "{}",
                kiosk::answer_json(
                    &a,
                    None,
                    &serde_json::json!({ "answer": a.elapsed_us as f64 / 1000.0 })
                )
            );
        } else {
            outln!("{}", a.text);
        }
    }
    Ok(ExitCode::SUCCESS)
}
