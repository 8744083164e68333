//! `aisle scan`, `aisle catalog enroll`: product recognition at the CLI edge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aisle_firmware_config::{DeviceConfig, OnnxEngine};
use aisle_models::Store;
use aisle_runtime::catalog::Catalog;
use aisle_runtime::scan::{ScanReport, Scanner, VisionModels, VisionSpec};
use aisle_vision::{Decision, Engine, OnnxOptions};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn engine(e: OnnxEngine) -> Engine {
    match e {
        OnnxEngine::Onnxruntime => Engine::OnnxRuntime,
        OnnxEngine::Tract => Engine::Tract,
    }
}

/// Threads per model: the configured count, or every core.
pub fn threads(cfg: &DeviceConfig) -> usize {
    match cfg.file.inference.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}

/// ONNX options for `engine`, the ONNX Runtime library taken from the model store.
pub fn onnx_options(cfg: &DeviceConfig, engine: Engine) -> Result<OnnxOptions> {
    let threads = threads(cfg);
    Ok(match engine {
        Engine::Tract => OnnxOptions::tract(threads),
        Engine::OnnxRuntime => {
            let name = &cfg.file.inference.onnxruntime_library;
            let store = Store::open(&cfg.model_dir)?;
            let lib = store
                .verify(name, &mut |_| {})
                .with_context(|| {
                    format!(
                        "ONNX Runtime library `{name}` (set inference.image_engine = \"tract\" to run without it)"
                    )
                })?;
            let file = lib
                .manifest
                .files
                .first()
                .map(|f| f.name.clone())
                .unwrap_or_default();
            OnnxOptions::onnxruntime(threads, lib.path(&file)?.to_path_buf())
        }
    })
}

pub fn vision_spec(cfg: &DeviceConfig, engine_override: Option<Engine>) -> Result<VisionSpec> {
    let engine = engine_override.unwrap_or(engine(cfg.file.inference.image_engine));
    Ok(VisionSpec {
        image_model: cfg.file.models.image_embedding.clone(),
        text_model: cfg.file.models.text_embedding.clone(),
        labels_model: "imagenet-labels".into(),
        options: onnx_options(cfg, engine)?,
        cache_dir: cache_dir(cfg),
    })
}

pub fn cache_dir(cfg: &DeviceConfig) -> PathBuf {
    cfg.data_dir.join("cache").join("vision")
}

pub fn load_models(cfg: &DeviceConfig, engine_override: Option<Engine>) -> Result<VisionModels> {
    let spec = vision_spec(cfg, engine_override)?;
    let store = Store::open(&cfg.model_dir)?;
    Ok(VisionModels::load(&store, &spec)?)
}

/// The scanner over `cat`, with a progress bar while product texts are embedded
/// (the first time, or after the catalog or a model changed).
pub fn scanner<'m>(
    cfg: &DeviceConfig,
    models: &'m VisionModels,
    cat: &Catalog,
    quiet: bool,
) -> Result<Scanner<'m>> {
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("embedding product texts");
    let mut logged = false;
    let mut s = Scanner::build(models, cat, &cache_dir(cfg), &mut |done, total| {
        if !logged {
            tracing::info!(
                products = total,
                "building the product embedding index (cached afterwards)"
            );
            logged = true;
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    s.fusion.threshold = cfg.file.thresholds.match_confidence as f32;
    Ok(s)
}

pub fn print_report(r: &ScanReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    match (r.decision, r.matches.first()) {
        (Decision::Identified, Some(m)) => outln!(
            "{}: identified {} ({}), confidence {:.2}",
            r.image,
            m.name,
            m.sku,
            r.confidence
        ),
        _ => outln!(
            "{}: unknown product (best guess below the confidence threshold: {:.2})",
            r.image,
            r.confidence
        ),
    }
    for (i, m) in r.matches.iter().enumerate() {
        outln!(
            "  {}. {:<10} {:<40} score {:>6.2}  photo {}  zero-shot {:.2}  [{}]",
            i + 1,
            m.sku,
            truncate(&m.name, 40),
            m.score,
            m.signals
                .visual
                .map_or("  -  ".to_string(), |v| format!("{v:.2}")),
            m.signals.zero_shot,
            m.contributed.join(", ")
        );
    }
    outln!(
        "  seen: {}",
        r.seen
            .iter()
            .take(3)
            .map(|(l, p)| format!("{} {:.2}", l.split(',').next().unwrap_or(l), p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let t = &r.timings;
    outln!(
        "  timings: decode {:.1} ms, preprocess {:.1} ms, embed {:.1} ms, search {:.1} ms, total {:.1} ms",
        t.decode_us as f64 / 1000.0,
        t.preprocess_us as f64 / 1000.0,
        t.embed_us as f64 / 1000.0,
        t.search_us as f64 / 1000.0,
        t.total_us as f64 / 1000.0
    );
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn scan(
    cfg: &DeviceConfig,
    image: &Path,
    top: usize,
    engine_override: Option<Engine>,
    json: bool,
) -> Result<ExitCode> {
    let cat = crate::store_cmd::ready_catalog(cfg)?;
    let models = load_models(cfg, engine_override)?;
    let scanner = scanner(cfg, &models, &cat, json)?;
    let report = scanner.scan_path(image, top.max(1))?;
    print_report(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn enroll(cfg: &DeviceConfig, sku: &str, photos: &[PathBuf], json: bool) -> Result<ExitCode> {
    let mut cat = crate::store_cmd::ready_catalog(cfg)?;
    let models = load_models(cfg, None)?;
    let mut scanner = scanner(cfg, &models, &cat, json)?;
    let added = scanner.enroll(&mut cat, sku, photos)?;
    let total = cat
        .reference_photos(models.net.fingerprint())?
        .iter()
        .filter(|p| p.sku == sku)
        .count();
    if json {
        outln!(
            "{}",
            serde_json::json!({ "sku": sku, "photos": photos.len(), "added": added, "enrolled": total })
        );
    } else {
        outln!(
            "{sku}: {added} new reference photo(s) of {} given; {total} enrolled (only embeddings are stored)",
            photos.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
