//! From the config to loaded parts: which model, which engine, how many threads.
//! The one place this wiring lives; every face goes through [`super::Kiosk`] or these.

use std::path::PathBuf;

use aisle_firmware_config::{DeviceConfig, ImageText, OnnxEngine};
use aisle_models::Store;
use aisle_speech::{Transcriber, VadConfig, Voice, VoiceOptions};
use aisle_vision::detect::ObjectDetector;
use aisle_vision::{Engine, MiniLm, OnnxOptions};

use super::{KioskError, Result};
use crate::catalog::{self, CatalogDb, ImportOptions};
use crate::llm::Llm;
use crate::scan::{ClipSpec, OcrSpec, VisionModels, VisionSpec};

/// Context the LLM gets: the cached prompt (~420 tokens) and a question fit easily.
pub const LLM_CONTEXT: u32 = 1024;

fn context(what: impl Into<String>) -> impl FnOnce(KioskError) -> KioskError {
    let what = what.into();
    move |e| KioskError::Load {
        what,
        source: Box::new(e),
    }
}

/// The catalog database: the active release's once a sync activated one, else
/// `<data_dir>/catalog/store.sqlite`.
pub fn catalog_path(cfg: &DeviceConfig) -> PathBuf {
    crate::sync::active_catalog(cfg)
        .unwrap_or_else(|| cfg.data_dir.join("catalog").join("store.sqlite"))
}

pub fn vision_cache_dir(cfg: &DeviceConfig) -> PathBuf {
    cfg.data_dir.join("cache").join("vision")
}

/// The catalog, with something in it: the configured catalog file (`paths.catalog`)
/// imported on first use, else what `aisle catalog import` or `demo` put there.
pub fn ready_catalog(cfg: &DeviceConfig) -> Result<CatalogDb> {
    let mut cat = CatalogDb::open(&catalog_path(cfg))?;
    if cat.product_count()? == 0 {
        match &cfg.file.paths.catalog {
            Some(file) => {
                let opts = ImportOptions {
                    default_currency: cfg.file.device.currency.clone(),
                    ..Default::default()
                };
                catalog::import_file(&mut cat, file, &opts)?;
            }
            None => return Err(KioskError::EmptyCatalog(cat.path().to_path_buf())),
        }
    }
    Ok(cat)
}

/// Threads per model (`inference.threads`; 0 is every core).
pub fn threads(cfg: &DeviceConfig) -> usize {
    match cfg.file.inference.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}

pub fn engine(e: OnnxEngine) -> Engine {
    match e {
        OnnxEngine::Onnxruntime => Engine::OnnxRuntime,
        OnnxEngine::Tract => Engine::Tract,
    }
}

/// ONNX options for `engine`, the ONNX Runtime library taken from the model store.
pub fn onnx_options(cfg: &DeviceConfig, store: &Store, engine: Engine) -> Result<OnnxOptions> {
    let threads = threads(cfg);
    Ok(match engine {
        Engine::Tract => OnnxOptions::tract(threads),
        Engine::OnnxRuntime => {
            let name = &cfg.file.inference.onnxruntime_library;
            let lib = store
                .verify(name, &mut |_| {})
                .map_err(KioskError::from)
                .map_err(context(format!(
                    "ONNX Runtime library `{name}` (set inference.image_engine = \"tract\" to run without it)"
                )))?;
            OnnxOptions::onnxruntime(threads, lib.first_file()?.0.to_path_buf())
        }
    })
}

pub fn vision_spec(
    cfg: &DeviceConfig,
    store: &Store,
    engine_override: Option<Engine>,
) -> Result<VisionSpec> {
    let image_engine = engine_override.unwrap_or(engine(cfg.file.inference.image_engine));
    let i = &cfg.file.inference;
    let m = &cfg.file.models;
    Ok(VisionSpec {
        image_model: m.image_embedding.clone(),
        text_model: m.text_embedding.clone(),
        labels_model: "imagenet-labels".into(),
        options: onnx_options(cfg, store, image_engine)?,
        cache_dir: vision_cache_dir(cfg),
        clip: match i.image_text {
            ImageText::Conse => None,
            ImageText::Clip => Some(ClipSpec {
                tokenizer: m.clip_tokenizer.clone(),
                image_size: i.clip_image_size,
            }),
        },
        ocr: if i.ocr {
            let ocr_engine = engine_override.unwrap_or(engine(i.ocr_engine));
            Some(OcrSpec {
                detection: m.ocr_detection.clone(),
                recognition: m.ocr_recognition.clone(),
                orientation: i.ocr_orientation.then(|| m.ocr_orientation.clone()),
                options: onnx_options(cfg, store, ocr_engine)?,
            })
        } else {
            None
        },
    })
}

pub fn vision_models(
    cfg: &DeviceConfig,
    store: &Store,
    engine_override: Option<Engine>,
) -> Result<VisionModels> {
    let spec = vision_spec(cfg, store, engine_override)?;
    Ok(VisionModels::load(store, &spec)?)
}

pub fn vad_config(cfg: &DeviceConfig) -> VadConfig {
    let t = &cfg.file.thresholds;
    VadConfig {
        threshold: t.vad as f32,
        min_speech_ms: t.vad_min_speech_ms,
        min_silence_ms: t.vad_min_silence_ms,
        pre_roll_ms: t.vad_pre_roll_ms,
    }
}

/// VAD + whisper (`models.asr`, `models.vad`) recognising `dialogue.language`, on
/// `threads` or `inference.threads`.
pub fn transcriber(
    cfg: &DeviceConfig,
    store: &Store,
    threads: Option<usize>,
) -> Result<Transcriber> {
    let m = &cfg.file.models;
    let n = threads.unwrap_or_else(|| self::threads(cfg));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > cores {
        tracing::warn!(
            threads = n,
            cores,
            "more decoder threads than cores: whisper's threads spin-wait, so this is slower, not faster"
        );
    }
    let mut t = Transcriber::load(store, &m.asr, &m.vad, vad_config(cfg), n)?;
    t.set_language(&cfg.file.dialogue.language)?;
    t.set_beam_size(cfg.file.inference.speech_beams as usize);
    Ok(t)
}

/// The voice named by `models.tts`, on ONNX Runtime with `inference.threads`.
pub fn voice(cfg: &DeviceConfig, store: &Store) -> Result<Voice> {
    let name = &cfg.file.models.tts;
    let a = store
        .verify(name, &mut |_| {})
        .map_err(KioskError::from)
        .map_err(context(format!("voice `{name}` (models.tts)")))?;
    let options = onnx_options(cfg, store, Engine::OnnxRuntime)?;
    let ort_library = options
        .ort_library
        .ok_or_else(|| KioskError::NotLoaded("the ONNX Runtime library the voice runs on"))?;
    // A Piper voice is one `.onnx` and its `.onnx.json`, whatever they are named.
    let pick = |json: bool| {
        a.files()
            .find(|(n, _)| n.ends_with(".onnx.json") == json && (json || n.ends_with(".onnx")))
            .map(|(_, p)| p.to_path_buf())
            .ok_or_else(|| {
                KioskError::Setup(format!(
                    "voice `{name}` (models.tts) has no {} file",
                    if json { ".onnx.json" } else { ".onnx" }
                ))
            })
    };
    let v = Voice::load(
        &pick(false)?,
        &pick(true)?,
        &VoiceOptions {
            threads: threads(cfg),
            ort_library,
            espeak: PathBuf::from("espeak-ng"),
        },
    )
    .map_err(KioskError::from)
    .map_err(context(format!("voice `{name}` (models.tts)")))?;
    Ok(v)
}

/// The detector named by `models.object_detection`, on the configured image engine.
pub fn detector(
    cfg: &DeviceConfig,
    store: &Store,
    engine_override: Option<Engine>,
) -> Result<ObjectDetector> {
    let e = engine_override.unwrap_or(engine(cfg.file.inference.image_engine));
    let options = onnx_options(cfg, store, e)?;
    let name = &cfg.file.models.object_detection;
    let a = store
        .verify(name, &mut |_| {})
        .map_err(KioskError::from)
        .map_err(context(format!(
            "object detector `{name}` (models.object_detection)"
        )))?;
    Ok(ObjectDetector::load(
        a.path("model.onnx")?,
        a.path("labels.txt")?,
        &options,
    )?)
}

/// MiniLM as the dialogue engine's lookup by meaning.
pub struct MiniLmEmbed(pub MiniLm);

impl aisle_dialogue::models::Embed for MiniLmEmbed {
    fn embed(&self, text: &str) -> Vec<f32> {
        self.0.embed(text)
    }
}

/// The text embedding model for lookup by meaning; `None` with a warning when the
/// store lacks it (the grammar answers without it).
pub fn minilm(cfg: &DeviceConfig, store: &Store) -> Option<MiniLm> {
    let name = &cfg.file.models.text_embedding;
    let loaded = store
        .verify(name, &mut |_| {})
        .map_err(KioskError::from)
        .and_then(|a| Ok(MiniLm::load(&a)?));
    match loaded {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(model = %name, error = %e, "no lookup by meaning");
            None
        }
    }
}

/// The configured LLM (`models.llm`) on `inference.threads`; `None` with a warning
/// when it or the engine library is missing.
pub fn llm(cfg: &DeviceConfig, store: &Store) -> Option<Llm> {
    let loaded = llm_model_path(cfg, store)
        .and_then(|path| Ok(Llm::load(&path, threads(cfg), LLM_CONTEXT)?));
    match loaded {
        Ok(m) => {
            tracing::info!(library = %m.library.display(), model = %m.model.display(), "LLM loaded");
            Some(m)
        }
        Err(e) => {
            tracing::warn!(model = %cfg.file.models.llm, error = %e, "no LLM fallback");
            None
        }
    }
}

/// The verified GGUF file of the configured LLM (`models.llm`).
pub fn llm_model_path(cfg: &DeviceConfig, store: &Store) -> Result<PathBuf> {
    let name = &cfg.file.models.llm;
    let a = store.verify(name, &mut |_| {})?;
    let gguf = a
        .manifest
        .files
        .iter()
        .find(|f| f.name.ends_with(".gguf"))
        .ok_or_else(|| KioskError::BadRequest(format!("model {name} has no .gguf file")))?;
    Ok(a.path(&gguf.name)?.to_path_buf())
}

/// Progress of the product index build, logged (the CLI draws a bar instead).
pub fn index_progress(quiet: bool) -> impl FnMut(usize, usize) {
    let mut logged = false;
    move |done, total| {
        if !logged {
            if !quiet {
                tracing::info!(
                    products = total,
                    "building the product embedding index (cached afterwards)"
                );
            }
            logged = true;
        }
        tracing::debug!(done, total, "product texts embedded");
    }
}

/// The model store of `cfg`.
pub fn open_store(cfg: &DeviceConfig) -> Result<Store> {
    Store::open(&cfg.model_dir).map_err(|source| KioskError::Store {
        path: cfg.model_dir.clone(),
        source,
    })
}

/// The demo store's catalog in `cfg`'s data directory, built from the model store's
/// real grocery names on first use (and refreshed when they change); the import
/// report when it was (re)built.
pub fn demo_catalog(
    cfg: &DeviceConfig,
) -> Result<(CatalogDb, Option<crate::catalog::ImportReport>)> {
    let mut cat = CatalogDb::open(&catalog_path(cfg))?;
    let store = open_store(cfg)?;
    let report = crate::catalog::demo::ensure(&mut cat, &store).map_err(KioskError::from).map_err(context(
        "building the demo store needs the `grocery-products` model: run `aisle models fetch grocery-products`",
    ))?;
    Ok((cat, report))
}

/// The scanner over `cat` with `models` (its text index built or read from the cache,
/// `progress(done, total)` while product texts are embedded), at the configured
/// match threshold.
pub fn scanner(
    cfg: &DeviceConfig,
    models: std::sync::Arc<VisionModels>,
    cat: &CatalogDb,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<crate::scan::Scanner> {
    let mut s = crate::scan::Scanner::build(models, cat, &vision_cache_dir(cfg), progress)?;
    s.fusion.threshold = cfg.file.thresholds.match_confidence as f32;
    Ok(s)
}
