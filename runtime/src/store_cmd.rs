//! `aisle catalog ...`, `aisle ask`, `aisle chat`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_runtime::catalog::{self, Catalog, ImportOptions, format_price};
use aisle_runtime::dialogue::{Answer, Engine, Session};
use anyhow::{Context, Result, bail};

pub fn catalog_path(cfg: &DeviceConfig) -> PathBuf {
    cfg.data_dir.join("catalog").join("store.sqlite")
}

pub fn open_catalog(cfg: &DeviceConfig) -> Result<Catalog> {
    Ok(Catalog::open(&catalog_path(cfg))?)
}

/// The catalog, with something in it: the configured catalog file or the demo store.
pub fn ready_catalog(cfg: &DeviceConfig) -> Result<Catalog> {
    let mut cat = open_catalog(cfg)?;
    if cat.product_count()? == 0 {
        match &cfg.file.paths.catalog {
            Some(file) => {
                let opts = ImportOptions {
                    default_currency: cfg.file.device.currency.clone(),
                    ..Default::default()
                };
                catalog::import_file(&mut cat, file, &opts)?;
            }
            None => bail!(
                "the store catalog is empty ({}): run `aisle catalog import FILE` or `aisle catalog demo`",
                cat.path().display()
            ),
        }
    }
    Ok(cat)
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

pub fn demo_store(cfg: &DeviceConfig, quiet: bool) -> Result<Catalog> {
    let mut cat = open_catalog(cfg)?;
    let store = Store::open(&cfg.model_dir)
        .with_context(|| format!("cannot open model store {}", cfg.model_dir.display()))?;
    if let Some(r) = catalog::demo::ensure(&mut cat, &store)
        .context("building the demo store needs the `grocery-products` model: run `aisle models fetch grocery-products`")?
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
    match std::fs::read_to_string(p) {
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
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("cannot write session file {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write session file {}", path.display()))?;
    Ok(())
}

/// The text embedding model for lookup by meaning, when the store has it.
pub fn load_meaning(cfg: &DeviceConfig) -> Option<aisle_vision::MiniLm> {
    let name = &cfg.file.models.text_embedding;
    let store = Store::open(&cfg.model_dir).ok()?;
    let loaded = store
        .verify(name, &mut |_| {})
        .map_err(anyhow::Error::from)
        .and_then(|a| Ok(aisle_vision::MiniLm::load(&a)?));
    match loaded {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(model = %name, error = %e, "no lookup by meaning");
            None
        }
    }
}

/// The models the dialogue engine can use; each is optional (the grammar answers
/// without them), and one that cannot be loaded is reported, not fatal.
pub struct DialogueModels {
    pub meaning: Option<aisle_vision::MiniLm>,
    pub llm: Option<aisle_runtime::llm::Llm>,
}

impl DialogueModels {
    pub fn load(cfg: &DeviceConfig) -> Self {
        Self {
            meaning: load_meaning(cfg),
            llm: cfg
                .file
                .dialogue
                .llm_fallback
                .then(|| load_llm(cfg))
                .flatten(),
        }
    }

    pub fn engine<'a>(&'a self, cat: &'a Catalog) -> Result<Engine<'a>> {
        let mut engine = Engine::new(cat)?;
        if let Some(m) = &self.meaning {
            engine = engine.with_meaning(m);
        }
        if let Some(l) = &self.llm {
            engine = engine.with_llm(l);
        }
        Ok(engine)
    }
}

/// Context the LLM gets: the cached prompt (~420 tokens) and a question fit easily.
pub const LLM_CONTEXT: u32 = 1024;

/// The configured LLM (`models.llm`), verified; `None` with a warning when it or the
/// engine library is missing.
pub fn load_llm(cfg: &DeviceConfig) -> Option<aisle_runtime::llm::Llm> {
    let loaded = llm_model_path(cfg).and_then(|path| {
        Ok(aisle_runtime::llm::Llm::load(
            &path,
            crate::speech_cmd::default_threads(),
            LLM_CONTEXT,
        )?)
    });
    match loaded {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(model = %cfg.file.models.llm, error = %e, "no LLM fallback");
            None
        }
    }
}

/// The verified GGUF file of the configured LLM (`models.llm`).
pub fn llm_model_path(cfg: &DeviceConfig) -> Result<PathBuf> {
    let name = &cfg.file.models.llm;
    let store = Store::open(&cfg.model_dir)
        .with_context(|| format!("cannot open model store {}", cfg.model_dir.display()))?;
    let a = store.verify(name, &mut |_| {})?;
    let gguf = a
        .manifest
        .files
        .iter()
        .find(|f| f.name.ends_with(".gguf"))
        .with_context(|| format!("model {name} has no .gguf file"))?;
    Ok(a.path(&gguf.name)?.to_path_buf())
}

pub struct AskInput<'a> {
    pub text: Option<&'a str>,
    pub audio: Option<&'a Path>,
    pub image: Option<&'a Path>,
    pub sku: Option<&'a str>,
    pub session: Option<&'a Path>,
}

pub fn answer_json(
    a: &Answer,
    transcript: Option<&str>,
    timings: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "answer": a.text,
        "intent": a.intent,
        "intents": a.intents,
        "products": a.products,
        "facts": a.facts,
        "path": a.path,
        "llm": a.llm,
        "staff_requested": a.staff_requested,
        "transcript": transcript,
        "timings_ms": timings,
    })
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
    let (question, transcript, asr_ms) = match (input.text, input.audio) {
        (Some(t), None) => (t.to_string(), None, None),
        (None, Some(wav)) => {
            let t0 = std::time::Instant::now();
            let tr = crate::speech_cmd::load_transcriber(cfg, None)?;
            let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let (_, t) = tr.transcribe_file(wav, None)?;
            (
                t.text.clone(),
                Some(t.text),
                Some((load_ms, t.processing_ms as f64)),
            )
        }
        (Some(_), Some(_)) => bail!("give the question as TEXT or --audio WAV, not both"),
        (None, None) => bail!("give a question: TEXT or --audio WAV"),
    };
    let t0 = std::time::Instant::now();
    let cat = ready_catalog(cfg)?;
    let models = DialogueModels::load(cfg);
    let engine = models.engine(&cat)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut session = load_session(input.session)?;
    if let Some(sku) = input.sku
        && cat.product(sku)?.is_none()
    {
        bail!("no product with sku {sku:?} in {}", cat.path().display());
    }
    // The product in the photo, if recognised; an unknown product leaves the
    // question without one (the assistant then asks which product is meant).
    let t_scan = std::time::Instant::now();
    let scan = match (&photo, input.image) {
        (Some(img), Some(path)) => {
            let vision = crate::vision_cmd::load_models(cfg, None)?;
            let scanner = crate::vision_cmd::scanner(cfg, &vision, &cat, json)?;
            let mut r = scanner.scan_image(img, 3)?;
            r.image = path.display().to_string();
            Some(r)
        }
        _ => None,
    };
    let scan_ms = scan
        .as_ref()
        .map(|_| t_scan.elapsed().as_secs_f64() * 1000.0);
    let scanned: Option<String> = match &scan {
        Some(r) if r.decision == aisle_vision::Decision::Identified => {
            r.matches.first().map(|m| m.sku.clone())
        }
        Some(_) => None,
        None => input.sku.map(str::to_string),
    };
    let answer = engine.ask(&question, &mut session, scanned.as_deref())?;
    if let Some(p) = input.session {
        save_session(p, &session)?;
    }
    let timings = serde_json::json!({
        "speech_model_load": asr_ms.map(|a| a.0),
        "transcribe": asr_ms.map(|a| a.1),
        "catalog_load": load_ms,
        "scan": scan_ms,
        "answer": answer.elapsed_us as f64 / 1000.0,
        "total": t_total.elapsed().as_secs_f64() * 1000.0,
    });
    if json {
        let mut v = answer_json(&answer, transcript.as_deref(), &timings);
        v["scan"] = serde_json::to_value(&scan)?;
        outln!("{}", serde_json::to_string_pretty(&v)?);
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
    Ok(ExitCode::SUCCESS)
}

/// `aisle chat --voice`: each final utterance from the microphone (or a WAV file at
/// real-time pace) is answered; partials are shown while the shopper speaks.
pub fn chat_voice(
    cfg: &DeviceConfig,
    input: &crate::speech_cmd::ListenInput,
    json: bool,
) -> Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let cat = ready_catalog(cfg)?;
    let models = DialogueModels::load(cfg);
    let engine = models.engine(&cat)?;
    let transcriber = crate::speech_cmd::load_transcriber(cfg, None)?;
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
    let mut session = Session::default();
    let mut failure: Option<anyhow::Error> = None;
    let mut on_event = |ev: aisle_speech::ListenEvent| {
        use std::io::Write as _;
        let line = match ev {
            aisle_speech::ListenEvent::Partial { text, .. } if !json => {
                eprintln!("  ... {text}");
                return;
            }
            aisle_speech::ListenEvent::Final(u) => {
                let t = std::time::Instant::now();
                let a = match engine.ask(&u.text, &mut session, None) {
                    Ok(a) => a,
                    Err(e) => {
                        failure.get_or_insert(e.into());
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                let answer_ms = t.elapsed().as_secs_f64() * 1000.0;
                if json {
                    answer_json(
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
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn chat(cfg: &DeviceConfig, json: bool) -> Result<ExitCode> {
    let cat = ready_catalog(cfg)?;
    let models = DialogueModels::load(cfg);
    let engine = models.engine(&cat)?;
    let mut session = Session::default();
    if !json {
        eprintln!(
            "aisle chat: ask about products in this store ({} products). Empty line or Ctrl-D ends.",
            cat.product_count()?
        );
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading the question")?;
        if line.trim().is_empty() {
            break;
        }
        let a = engine.ask(&line, &mut session, None)?;
        if json {
            outln!(
                "{}",
                answer_json(
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
