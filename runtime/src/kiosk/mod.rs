//! The kiosk: everything expensive loaded once from one [`DeviceConfig`] and shared by
//! every face (the CLI commands, `aisle serve`, the AR window, the tests).
//!
//! [`Kiosk`] is `Send + Sync`. It owns the models (`Arc`: MiniLM, the LLM, the vision
//! models, whisper + VAD, the object detector), the catalog database (one connection
//! for writes and revision checks) and the current [`Snapshot`]: the dialogue engine
//! and the scanner over one immutable view of the catalog. Each request takes the
//! snapshot (`Arc`) and works on it without locks; when the database's revision
//! changes (an import here or by another process, an enrolment) the next request
//! builds a new snapshot from the models already loaded and swaps it in. Per-request
//! state (a whisper decoder state, the conversation) is made per call.
//!
//! Conversations live in [`Sessions`] (bounded history, expiry by the injected
//! [`Clock`]); what happens is published on an event bus ([`KioskEvent`]): answers,
//! staff calls, demand signals (a product asked for and not found, or asked while out
//! of stock; counted per hour and product, never with the shopper's words).

mod load;
mod sessions;
mod tracker;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_speech::Transcriber;
use aisle_vision::detect::ObjectDetector;
use serde::Serialize;

use crate::catalog::{CatalogDb, CatalogError, CatalogView, ImportOptions, ImportReport, Product};
use crate::clock::{Clock, SystemClock};
use crate::dialogue::{Answer, Assistant, Session};
use crate::llm::Llm;
use crate::scan::{ScanError, ScanReport, Scanner, VisionModels};

pub use load::{
    LLM_CONTEXT, MiniLmEmbed, catalog_path, demo_catalog, detector, engine, index_progress,
    llm_model_path, minilm, onnx_options, open_store, ready_catalog, scanner, threads, transcriber,
    vad_config, vision_cache_dir, vision_models, vision_spec, voice,
};
pub use sessions::{SessionId, Sessions};
pub use tracker::{Pass, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Speech(#[from] aisle_speech::SpeechError),
    #[error(transparent)]
    Model(#[from] aisle_models::ModelError),
    #[error(transparent)]
    Detect(#[from] aisle_vision::DetectError),
    #[error(transparent)]
    Image(#[from] aisle_vision::ImageError),
    #[error(transparent)]
    Ar(#[from] crate::ar::ArError),
    #[error(transparent)]
    TextModel(#[from] aisle_vision::TextModelError),
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmError),
    #[error(transparent)]
    Tts(#[from] aisle_speech::TtsError),
    #[error("{what}: {source}")]
    Load {
        what: String,
        #[source]
        source: Box<KioskError>,
    },
    #[error("cannot open the model store {path}: {source}")]
    Store {
        path: PathBuf,
        source: aisle_models::ModelError,
    },
    #[error(
        "the store catalog is empty ({0}): run `aisle catalog import FILE` or `aisle catalog demo`"
    )]
    EmptyCatalog(PathBuf),
    #[error("no product with sku {0:?} in the catalog")]
    UnknownSku(String),
    #[error("this kiosk was started without {0}")]
    NotLoaded(&'static str),
    #[error("{0}")]
    BadRequest(String),
    /// The configuration or the model store cannot make a part work.
    #[error("{0}")]
    Setup(String),
}

impl KioskError {
    /// Whether the request was at fault (bad input), not the kiosk.
    pub fn is_client_error(&self) -> bool {
        use aisle_vision::ImageError as I;
        match self {
            Self::UnknownSku(_) | Self::BadRequest(_) => true,
            Self::Tts(aisle_speech::TtsError::TooLong { .. } | aisle_speech::TtsError::Empty) => {
                true
            }
            Self::Image(I::Io { .. }) => false,
            Self::Image(_) | Self::Scan(ScanError::Image(_)) => true,
            Self::Scan(ScanError::UnknownSku(_)) => true,
            Self::Speech(e) => !matches!(e, aisle_speech::SpeechError::Io { .. }),
            Self::Catalog(CatalogError::BadRows { .. } | CatalogError::Format { .. }) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = KioskError> = std::result::Result<T, E>;

/// Which parts to load. The service loads everything; a CLI command only what it
/// uses (`aisle ask TEXT` needs no whisper).
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    /// MiniLM (lookup by meaning) and, when `dialogue.llm_fallback`, the LLM.
    pub dialogue_models: bool,
    pub speech: bool,
    pub vision: bool,
    pub detector: bool,
    /// The voice spoken answers are read in (`models.tts`).
    pub voice: bool,
    /// Image engine instead of `inference.image_engine`.
    pub engine: Option<aisle_vision::Engine>,
    /// Whisper threads instead of `inference.threads`.
    pub speech_threads: Option<usize>,
    /// Product texts embedded while the scanner's index is first built (done, total).
    pub quiet: bool,
}

impl Parts {
    /// Everything: what `aisle serve` loads.
    pub fn all() -> Self {
        Self {
            dialogue_models: true,
            speech: true,
            vision: true,
            detector: true,
            voice: true,
            engine: None,
            speech_threads: None,
            quiet: true,
        }
    }
    /// What a scan needs: the vision models and the catalog's index.
    pub fn vision(engine: Option<aisle_vision::Engine>) -> Self {
        Self {
            vision: true,
            engine,
            quiet: false,
            ..Self::none()
        }
    }
    /// What a question needs: the catalog, MiniLM and the LLM.
    pub fn dialogue() -> Self {
        Self {
            dialogue_models: true,
            ..Self::none()
        }
    }
    /// The catalog and the grammar only.
    pub fn none() -> Self {
        Self {
            dialogue_models: false,
            speech: false,
            vision: false,
            detector: false,
            voice: false,
            engine: None,
            speech_threads: None,
            quiet: true,
        }
    }
}

/// Something the faces may want to know; published on [`Kiosk::subscribe`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum KioskEvent {
    /// A question was answered (no words: its intent, path and products).
    Answer {
        session: String,
        intent: crate::dialogue::Intent,
        path: &'static str,
        products: Vec<String>,
    },
    /// An overlay was laid out for a camera frame: the products with cards.
    Overlay {
        skus: Vec<String>,
        /// "move closer", "not recognised", ... when the layout says so.
        message: Option<String>,
    },
    /// The shopper asked for a member of staff.
    StaffCall {
        kiosk: String,
        /// Unix seconds.
        at: i64,
    },
    /// A product asked for that the store could not serve.
    Demand(DemandSignal),
}

/// What the store could not serve: never the shopper's words.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct DemandSignal {
    /// Unix seconds at the start of the hour.
    pub hour: i64,
    /// `not-found` (no product of the store matched) or `out-of-stock`.
    pub kind: &'static str,
    /// The product, for `out-of-stock`.
    pub sku: Option<String>,
}

/// Demand signals counted per hour and product.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DemandCount {
    #[serde(flatten)]
    pub signal: DemandSignal,
    pub count: u64,
}

/// The engine and scanner over one catalog revision.
pub struct Snapshot {
    pub engine: Assistant,
    pub scanner: Option<Scanner>,
}

impl Snapshot {
    pub fn view(&self) -> &Arc<CatalogView> {
        self.engine.view()
    }
}

/// The answer to one question, as every face reports it.
#[derive(Debug, Clone)]
pub struct Asked {
    pub answer: Answer,
    /// The conversation's id in the kiosk's sessions (`None` for one the caller
    /// keeps, see [`Kiosk::ask_kept`]).
    pub session: Option<SessionId>,
    pub scan: Option<ScanReport>,
    pub transcript: Option<String>,
    /// Milliseconds per stage (`transcribe`, `scan`, `answer`, `total`).
    pub timings: serde_json::Map<String, serde_json::Value>,
}

impl Asked {
    /// The JSON `aisle ask --json` prints and `POST /v1/ask` answers.
    pub fn to_json(&self) -> serde_json::Value {
        let timings = serde_json::Value::Object(self.timings.clone());
        let mut j = AnswerJson::new(&self.answer, self.transcript.as_deref(), &timings);
        j.scan = self.scan.as_ref();
        j.session = self.session.as_ref().map(SessionId::as_str);
        serde_json::to_value(&j).unwrap_or_default()
    }
}

/// An answer as JSON: the same object in `aisle ask --json`, `aisle chat --json`,
/// `POST /v1/ask` and a voice run's `intent-end` (its schema is in `/openapi.json`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AnswerJson<'a> {
    /// What the shopper is told.
    pub answer: &'a str,
    /// The first clause's intent.
    pub intent: crate::dialogue::Intent,
    /// Every clause's intent.
    pub intents: &'a [crate::dialogue::Intent],
    /// Skus the answer is about.
    pub products: &'a [String],
    /// Every fact the answer uses, from the store's data.
    pub facts: &'a [crate::dialogue::Fact],
    /// `grammar`, `llm` or `none`.
    pub path: &'a str,
    /// What the LLM made of the question, when it was asked.
    pub llm: Option<&'a crate::dialogue::fallback::Interpretation>,
    pub staff_requested: bool,
    /// What was heard, for spoken questions.
    pub transcript: Option<&'a str>,
    /// Milliseconds per stage.
    pub timings_ms: &'a serde_json::Value,
    /// The product recognised in the photo sent with the question.
    pub scan: Option<&'a ScanReport>,
    /// The conversation: send it back to continue.
    pub session: Option<&'a str>,
}

impl<'a> AnswerJson<'a> {
    pub fn new(a: &'a Answer, transcript: Option<&'a str>, timings: &'a serde_json::Value) -> Self {
        Self {
            answer: &a.text,
            intent: a.intent,
            intents: &a.intents,
            products: &a.products,
            facts: &a.facts,
            path: a.path,
            llm: a.llm.as_ref(),
            staff_requested: a.staff_requested,
            transcript,
            timings_ms: timings,
            scan: None,
            session: None,
        }
    }
}

/// [`AnswerJson`] without a scan or session, as a JSON value.
pub fn answer_json(
    a: &Answer,
    transcript: Option<&str>,
    timings: &serde_json::Value,
) -> serde_json::Value {
    serde_json::to_value(AnswerJson::new(a, transcript, timings)).unwrap_or_default()
}

/// A transcript as JSON: `aisle transcribe --json` and `POST /v1/transcribe`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TranscriptJson {
    /// The file transcribed (`request body` over the API).
    pub file: PathBuf,
    pub text: String,
    pub segments: Vec<SegmentJson>,
    pub language: String,
    /// Mean token probability.
    pub confidence: f32,
    pub audio_ms: u64,
    pub processing_ms: u64,
    pub real_time_factor: f64,
    /// Voiced stretches found by the VAD.
    pub speech: Vec<SpanJson>,
    pub source: SourceJson,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SegmentJson {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub confidence: f32,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SpanJson {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The audio as sent, before resampling to 16 kHz mono.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SourceJson {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits: u16,
    /// The file ended before its header said.
    pub truncated: bool,
}

pub fn transcript_json(
    file: &Path,
    audio: &aisle_speech::DecodedAudio,
    t: &aisle_speech::Transcript,
) -> TranscriptJson {
    TranscriptJson {
        file: file.to_path_buf(),
        text: t.text.clone(),
        segments: t
            .segments
            .iter()
            .map(|s| SegmentJson {
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                text: s.text.clone(),
                confidence: s.confidence,
            })
            .collect(),
        language: t.language.clone(),
        confidence: t.confidence,
        audio_ms: t.audio_ms,
        processing_ms: t.processing_ms,
        real_time_factor: t.real_time_factor(),
        speech: t
            .speech
            .iter()
            .map(|s| SpanJson {
                start_ms: s.start_ms(),
                end_ms: s.end_ms(),
            })
            .collect(),
        source: SourceJson {
            sample_rate: audio.source_rate,
            channels: audio.channels,
            bits: audio.bits,
            truncated: audio.truncated,
        },
    }
}

/// A question to [`Kiosk::ask`].
#[derive(Debug, Default, Clone)]
pub struct AskRequest<'a> {
    pub text: &'a str,
    /// The conversation to continue; a new one when `None`, unknown or expired.
    pub session: Option<&'a str>,
    /// The product in front of the camera, by sku.
    pub sku: Option<&'a str>,
    /// A photo of the product in front of the camera.
    pub image: Option<&'a image::RgbImage>,
}

/// The loaded kiosk. See the module documentation.
pub struct Kiosk {
    cfg: DeviceConfig,
    clock: Arc<dyn Clock>,
    /// Writes (imports, enrolments) and revision checks.
    catalog: Mutex<CatalogDb>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One snapshot rebuild at a time.
    refreshing: Mutex<()>,
    llm: Option<Arc<Llm>>,
    vision: Option<Arc<VisionModels>>,
    transcriber: Option<Arc<Transcriber>>,
    detector: Option<Arc<ObjectDetector>>,
    voice: Option<Arc<aisle_speech::Voice>>,
    sessions: Sessions,
    events: tokio::sync::broadcast::Sender<KioskEvent>,
    demand: Mutex<std::collections::BTreeMap<DemandSignal, u64>>,
    /// Model load times (name, milliseconds), for `/metrics`.
    load_ms: Vec<(&'static str, f64)>,
    /// Raw inputs kept for debugging so far (names them).
    persisted: std::sync::atomic::AtomicU64,
}

impl Kiosk {
    /// Loads the parts asked for, by the system clock.
    pub fn load(cfg: &DeviceConfig, parts: Parts) -> Result<Self> {
        Self::load_with_clock(
            cfg,
            parts,
            Arc::new(SystemClock),
            &mut load::index_progress(parts.quiet),
        )
    }

    /// [`Self::load`], reporting the product index build to `progress(done, total)`
    /// (the CLI draws a bar).
    pub fn load_with(
        cfg: &DeviceConfig,
        parts: Parts,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Self::load_with_clock(cfg, parts, Arc::new(SystemClock), progress)
    }

    pub fn load_with_clock(
        cfg: &DeviceConfig,
        parts: Parts,
        clock: Arc<dyn Clock>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let store = Store::open(&cfg.model_dir).map_err(|source| KioskError::Store {
            path: cfg.model_dir.clone(),
            source,
        })?;
        let mut load_ms = Vec::new();
        let mut timed = |name: &'static str, t: Instant| {
            load_ms.push((name, t.elapsed().as_secs_f64() * 1000.0));
        };
        let t = Instant::now();
        let catalog = load::ready_catalog(cfg)?;
        timed("catalog", t);
        let (minilm, llm) = if parts.dialogue_models {
            let t = Instant::now();
            let m = load::minilm(cfg, &store)
                .map(|m| Arc::new(load::MiniLmEmbed(m)) as Arc<dyn aisle_dialogue::models::Embed>);
            timed("text_embedding", t);
            let t = Instant::now();
            let l = cfg
                .file
                .dialogue
                .llm_fallback
                .then(|| load::llm(cfg, &store))
                .flatten()
                .map(Arc::new);
            timed("llm", t);
            (m, l)
        } else {
            (None, None)
        };
        let vision = if parts.vision {
            let t = Instant::now();
            let v = Arc::new(vision_models(cfg, &store, parts.engine)?);
            timed("vision", t);
            Some(v)
        } else {
            None
        };
        let transcriber = if parts.speech {
            let t = Instant::now();
            let tr = Arc::new(transcriber(cfg, &store, parts.speech_threads)?);
            timed("speech", t);
            Some(tr)
        } else {
            None
        };
        let detector = if parts.detector {
            let t = Instant::now();
            let d = Arc::new(detector(cfg, &store, parts.engine)?);
            timed("object_detection", t);
            Some(d)
        } else {
            None
        };
        let voice = if parts.voice {
            let t = Instant::now();
            let v = Arc::new(load::voice(cfg, &store)?);
            timed("voice", t);
            Some(v)
        } else {
            None
        };
        let t = Instant::now();
        let view = Arc::new(CatalogView::load(&catalog)?);
        let mut engine = Assistant::over(view.clone()).with_clock(clock.clone());
        if let Some(m) = &minilm {
            engine = engine.with_meaning(m.clone());
        }
        if let Some(l) = &llm {
            engine = engine.with_llm(l.clone());
        }
        let scanner = match &vision {
            Some(v) => Some(build_scanner(cfg, v.clone(), &catalog, &view, progress)?),
            None => None,
        };
        timed("catalog_index", t);
        let (events, _) = tokio::sync::broadcast::channel(256);
        let d = &cfg.file.dialogue;
        Ok(Self {
            sessions: Sessions::new(
                clock.clone(),
                std::time::Duration::from_secs(u64::from(d.session_timeout_s)),
                d.max_history_turns as usize,
            ),
            cfg: cfg.clone(),
            clock,
            catalog: Mutex::new(catalog),
            snapshot: RwLock::new(Arc::new(Snapshot { engine, scanner })),
            refreshing: Mutex::new(()),
            llm,
            vision,
            transcriber,
            detector,
            voice,
            events,
            demand: Mutex::new(Default::default()),
            load_ms,
            persisted: Default::default(),
        })
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// Takes over what a running kiosk accumulated (its live conversations and
    /// demand counts) when a new release replaces it.
    pub fn adopt(&mut self, old: &Kiosk) {
        // One event stream across releases: staff listening (SSE, the webhook)
        // keep hearing the kiosk after a swap.
        self.events = old.events.clone();
        self.sessions.adopt(&old.sessions);
        let counts = std::mem::take(&mut *old.demand.lock().unwrap_or_else(|p| p.into_inner()));
        let mut d = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in counts {
            *d.entry(k).or_default() += n;
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// How long each part took to load, milliseconds.
    pub fn load_times(&self) -> &[(&'static str, f64)] {
        &self.load_ms
    }

    /// `text` spoken whole in the store's voice.
    pub fn say(&self, text: &str) -> Result<aisle_speech::Speech> {
        Ok(self.voice()?.speak(text)?)
    }

    /// The voice answers are spoken in.
    pub fn voice(&self) -> Result<&Arc<aisle_speech::Voice>> {
        self.voice
            .as_ref()
            .ok_or(KioskError::NotLoaded("the voice"))
    }

    pub fn has_llm(&self) -> bool {
        self.llm.is_some()
    }

    pub fn transcriber(&self) -> Result<&Arc<Transcriber>> {
        self.transcriber
            .as_ref()
            .ok_or(KioskError::NotLoaded("speech recognition"))
    }

    pub fn detector(&self) -> Result<&Arc<ObjectDetector>> {
        self.detector
            .as_ref()
            .ok_or(KioskError::NotLoaded("the object detector"))
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<KioskEvent> {
        self.events.subscribe()
    }

    fn publish(&self, e: KioskEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(e);
    }

    fn lock_catalog(&self) -> std::sync::MutexGuard<'_, CatalogDb> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current snapshot; rebuilt first when the database changed since.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let current = self.current();
        let revision = self.lock_catalog().revision()?;
        if revision == current.view().revision() {
            return Ok(current);
        }
        // The first request to see the change rebuilds; the others that see it wait
        // for that rebuild (every answer after an import uses the import).
        self.refresh()
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the snapshot from the database now, waiting for a rebuild in progress
    /// (models are not reloaded; the scanner's text index is cached by content, so
    /// only new products are embedded).
    pub fn refresh(&self) -> Result<Arc<Snapshot>> {
        let one = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        self.rebuild(one)
    }

    fn rebuild(&self, _one: std::sync::MutexGuard<'_, ()>) -> Result<Arc<Snapshot>> {
        let t = Instant::now();
        let current = self.current();
        // A connection of its own: the shared one stays free for revision checks and
        // writes while the new snapshot is read.
        let cat = CatalogDb::open(self.lock_catalog().path())?;
        if cat.revision()? == current.view().revision() {
            return Ok(current); // rebuilt by another request meanwhile
        }
        let view = Arc::new(CatalogView::load(&cat)?);
        let scanner = match &self.vision {
            Some(v) => Some(build_scanner(
                &self.cfg,
                v.clone(),
                &cat,
                &view,
                &mut load::index_progress(false),
            )?),
            None => None,
        };
        let engine = current.engine.rebased(view.clone());
        let snap = Arc::new(Snapshot { engine, scanner });
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snap.clone();
        tracing::info!(
            revision = view.revision(),
            products = view.len(),
            ms = t.elapsed().as_millis() as u64,
            "catalog snapshot swapped in"
        );
        Ok(snap)
    }

    pub fn product(&self, sku: &str) -> Result<ProductInfo> {
        let snap = self.snapshot()?;
        let view = snap.view();
        let p = view
            .product(sku)
            .ok_or_else(|| KioskError::UnknownSku(sku.to_string()))?;
        Ok(ProductInfo {
            product: p.clone(),
            stock: view.stock(sku).to_vec(),
            promotions: view.promotions(sku).to_vec(),
            display: crate::ar::facts(view, sku, &self.clock.today()),
        })
    }

    /// Products by name, best first.
    pub fn search(&self, text: &str, top: usize) -> Result<Vec<SearchHit>> {
        let snap = self.snapshot()?;
        let view = snap.view();
        Ok(view
            .index()
            .search(text, top)
            .into_iter()
            .map(|m| SearchHit {
                sku: m.sku.clone(),
                name: view.products()[m.doc].name.clone(),
                score: m.score,
            })
            .collect())
    }

    /// Recognises the product in a decoded image.
    pub fn scan_image(&self, img: &image::RgbImage, top: usize) -> Result<ScanReport> {
        let snap = self.snapshot()?;
        let scanner = snap
            .scanner
            .as_ref()
            .ok_or(KioskError::NotLoaded("the vision models"))?;
        Ok(scanner.scan_image(img, top)?)
    }

    /// Decodes a camera frame or photo sent to the kiosk (JPEG, PNG, WebP), within
    /// the decoder's limits; kept on disk only when `privacy.persist_images` says so.
    pub fn decode_image(&self, bytes: &[u8], label: &str) -> Result<image::RgbImage> {
        self.persist("images", "img", bytes);
        Ok(aisle_vision::decode_image(
            bytes,
            Path::new(label),
            &aisle_vision::ImageLimits::default(),
        )?)
    }

    /// Raw input written for debugging, only when `privacy.persist_audio` /
    /// `persist_images` say so, under `<data_dir>/debug/`.
    fn persist(&self, kind: &str, ext: &str, bytes: &[u8]) {
        let p = &self.cfg.file.privacy;
        let on = match kind {
            "audio" => p.persist_audio,
            _ => p.persist_images,
        };
        if !on {
            return;
        }
        let dir = self.cfg.data_dir.join("debug").join(kind);
        let name = format!(
            "{}-{}.{ext}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            self.persisted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let written =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(&name), bytes));
        match written {
            Ok(()) => {
                tracing::warn!(file = %dir.join(&name).display(), "raw input kept for debugging (privacy.persist_{kind})")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot keep raw input for debugging")
            }
        }
    }

    /// Logs what was heard: its length only, unless
    /// `privacy.redact_transcripts_in_logs = false`.
    pub fn log_transcript(&self, what: &str, text: &str) {
        if self.cfg.file.privacy.redact_transcripts_in_logs {
            tracing::info!(chars = text.chars().count(), "{what}");
        } else {
            tracing::info!(text, "{what}");
        }
    }

    /// Recognises the product in an encoded image (JPEG, PNG, WebP).
    pub fn scan_bytes(&self, bytes: &[u8], label: &str, top: usize) -> Result<ScanReport> {
        let t0 = Instant::now();
        let img = self.decode_image(bytes, label)?;
        let decode_us = t0.elapsed().as_micros() as u64;
        let mut r = self.scan_image(&img, top)?;
        r.image = label.to_string();
        r.timings.decode_us = decode_us;
        r.timings.total_us += decode_us;
        Ok(r)
    }

    /// Transcribes a WAV held in memory.
    pub fn transcribe_wav(
        &self,
        bytes: &[u8],
        label: &Path,
        prompt: Option<&str>,
    ) -> Result<(aisle_speech::DecodedAudio, aisle_speech::Transcript)> {
        let tr = self.transcriber()?;
        self.persist("audio", "wav", bytes);
        let audio = aisle_speech::decode_wav_bytes(bytes, label)?;
        let t = tr.transcribe(&audio.samples, prompt)?;
        self.log_transcript("transcribed", &t.text);
        Ok((audio, t))
    }

    /// Answers one question in a conversation.
    pub fn ask(&self, req: &AskRequest<'_>) -> Result<Asked> {
        let (id, mut session) = self.sessions.take(req.session);
        let asked = self.answer(req, &mut session, id.as_str());
        // The conversation goes back even when answering failed.
        self.sessions.put(&id, session);
        let mut asked = asked?;
        asked.session = Some(id);
        Ok(asked)
    }

    /// Answers one question in a conversation the caller keeps: a terminal chat (it
    /// lasts as long as the chat, however slowly the speech is processed) or `aisle
    /// ask --session FILE`. No kiosk session is made or expired.
    pub fn ask_kept(&self, req: &AskRequest<'_>, session: &mut Session) -> Result<Asked> {
        let asked = self.answer(req, session, "kept");
        // Kept by the caller (a file, a chat): bounded like the kiosk's own.
        self.sessions.trim(session);
        asked
    }

    fn answer(&self, req: &AskRequest<'_>, session: &mut Session, id: &str) -> Result<Asked> {
        let t0 = Instant::now();
        let snap = self.snapshot()?;
        let mut timings = serde_json::Map::new();
        if let Some(sku) = req.sku
            && snap.view().product(sku).is_none()
        {
            return Err(KioskError::UnknownSku(sku.to_string()));
        }
        let scan = match req.image {
            Some(img) => {
                let t = Instant::now();
                let scanner = snap
                    .scanner
                    .as_ref()
                    .ok_or(KioskError::NotLoaded("the vision models"))?;
                let r = scanner.scan_image(img, 3)?;
                timings.insert("scan".into(), ms(t).into());
                Some(r)
            }
            None => None,
        };
        let scanned: Option<String> = match &scan {
            Some(r) if r.decision == aisle_vision::Decision::Identified => {
                r.matches.first().map(|m| m.sku.clone())
            }
            Some(_) => None,
            None => req.sku.map(str::to_string),
        };
        let answer = snap.engine.ask(req.text, session, scanned.as_deref())?;
        timings.insert("answer".into(), (answer.elapsed_us as f64 / 1000.0).into());
        timings.insert("total".into(), ms(t0).into());
        self.after_answer(id, &answer, snap.view());
        Ok(Asked {
            answer,
            session: None,
            scan,
            transcript: None,
            timings,
        })
    }

    /// The shopper asked for a member of staff (by a question, or the screen's "Call
    /// staff" button): the staff's event stream and webhook hear of it.
    pub fn call_staff(&self) -> i64 {
        let at = unix_now();
        tracing::info!(event = "staff_call", kiosk = %self.cfg.file.device.name, at, "shopper asked for staff");
        self.publish(KioskEvent::StaffCall {
            kiosk: self.cfg.file.device.name.clone(),
            at,
        });
        at
    }

    /// Events and demand signals of one answer.
    fn after_answer(&self, id: &str, a: &Answer, view: &CatalogView) {
        self.publish(KioskEvent::Answer {
            session: id.to_string(),
            intent: a.intent,
            path: a.path,
            products: a.products.clone(),
        });
        if a.staff_requested {
            self.call_staff();
        }
        let hour = unix_now() / 3600 * 3600;
        let mut signals = Vec::new();
        if a.not_found {
            signals.push(DemandSignal {
                hour,
                kind: "not-found",
                sku: None,
            });
        }
        for sku in &a.products {
            if view.product(sku).is_some() && view.total_stock(sku) <= 0 {
                signals.push(DemandSignal {
                    hour,
                    kind: "out-of-stock",
                    sku: Some(sku.clone()),
                });
            }
        }
        if signals.is_empty() {
            return;
        }
        let mut d = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        for s in signals {
            *d.entry(s.clone()).or_default() += 1;
            self.publish(KioskEvent::Demand(s));
        }
    }

    /// Demand signals so far, per hour and product.
    pub fn demand(&self) -> Vec<DemandCount> {
        self.demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, n)| DemandCount {
                signal: s.clone(),
                count: *n,
            })
            .collect()
    }

    /// Imports a catalog file's content (CSV or JSON Lines, as `aisle catalog
    /// import`; `label` names it in messages and its extension gives the format); the
    /// next request sees it.
    pub fn import_catalog(
        &self,
        bytes: &[u8],
        label: &Path,
        skip_bad_rows: bool,
    ) -> Result<ImportReport> {
        let opts = ImportOptions {
            skip_bad_rows,
            default_currency: self.cfg.file.device.currency.clone(),
        };
        let report = crate::catalog::import_bytes(&mut self.lock_catalog(), bytes, label, &opts)?;
        Ok(report)
    }

    /// Enrolls reference photos of `sku` (all or none); the next scan sees them (an
    /// enrolment moves the catalog's revision).
    pub fn enroll(&self, sku: &str, photos: &[(String, image::RgbImage)]) -> Result<usize> {
        let vision = self
            .vision
            .as_ref()
            .ok_or(KioskError::NotLoaded("the vision models"))?;
        let added = {
            let model = vision.model();
            let mut cat = self.lock_catalog();
            crate::scan::store_references(model.as_ref(), &mut cat, sku, photos)?.0
        };
        Ok(added)
    }

    /// Reference photos enrolled for `sku` with the loaded visual model.
    pub fn enrolled_photos(&self, sku: &str) -> Result<usize> {
        let vision = self
            .vision
            .as_ref()
            .ok_or(KioskError::NotLoaded("the vision models"))?;
        let fingerprint = vision.model().visual_fingerprint();
        Ok(self
            .lock_catalog()
            .reference_photos(&fingerprint)?
            .iter()
            .filter(|p| p.sku == sku)
            .count())
    }

    /// Ends a conversation now: nothing of it is kept.
    pub fn end_session(&self, id: &str) -> bool {
        self.sessions.remove(id)
    }

    /// The AR overlay for one camera frame: products located, identified, laid out.
    pub fn overlay(&self, img: &image::RgbImage) -> Result<crate::ar::FrameOverlay> {
        let snap = self.snapshot()?;
        let scanner = snap
            .scanner
            .as_ref()
            .ok_or(KioskError::NotLoaded("the vision models"))?;
        let detector = self.detector()?;
        let frame = crate::ar::overlay_for(
            detector,
            scanner,
            snap.view(),
            img,
            profile(&self.cfg),
            &self.clock.today(),
        )?;
        self.publish(KioskEvent::Overlay {
            skus: frame.overlay.cards.iter().map(|c| c.sku.clone()).collect(),
            message: frame.overlay.message.clone(),
        });
        Ok(frame)
    }

    /// A conversation's session object, for faces that keep their own (the AR
    /// window's taps go through [`Kiosk::ask`] with an id instead).
    pub fn new_session(&self) -> SessionId {
        let (id, s) = self.sessions.take(None);
        self.sessions.put(&id, s);
        id
    }

    /// Products in the catalog now.
    pub fn product_count(&self) -> Result<usize> {
        Ok(self.snapshot()?.view().len())
    }
}

/// The device profile as the overlay layout knows it.
pub fn profile(cfg: &DeviceConfig) -> aisle_ar::Profile {
    match cfg.file.device.profile {
        aisle_firmware_config::Profile::Kiosk => aisle_ar::Profile::Kiosk,
        aisle_firmware_config::Profile::ArTablet => aisle_ar::Profile::ArTablet,
    }
}

fn build_scanner(
    cfg: &DeviceConfig,
    models: Arc<VisionModels>,
    cat: &CatalogDb,
    view: &CatalogView,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Scanner> {
    let photos = {
        let m = models.model();
        cat.reference_photos(&m.visual_fingerprint())?
    };
    let mut s = Scanner::build_from(
        models,
        view.products().to_vec(),
        photos,
        &vision_cache_dir(cfg),
        progress,
    )?;
    s.fusion.threshold = cfg.file.thresholds.match_confidence as f32;
    Ok(s)
}

/// One product with its stock and promotions (`GET /v1/products/{sku}`, `aisle
/// catalog show --json`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProductInfo {
    pub product: Product,
    pub stock: Vec<crate::catalog::Variant>,
    pub promotions: Vec<crate::catalog::Promotion>,
    /// What a screen shows, formatted by the kiosk (the price in the store's currency,
    /// the offer's price while one runs today, the stock level, the aisle's name): a
    /// screen prints these as sent and computes none of them.
    pub display: Option<aisle_ar::ProductFacts>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SearchHit {
    pub sku: String,
    pub name: String,
    pub score: f32,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The kiosk, its engine and its service are shared across threads as they are.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kiosk>();
    send_sync::<Assistant>();
    send_sync::<Snapshot>();
    send_sync::<crate::service::Service>();
};
