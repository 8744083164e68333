//! `aisle serve`: the kiosk's HTTP and WebSocket API over one loaded [`Kiosk`].
//!
//! The listener is bound before the models load, so `/health` answers 503 while they
//! do and 200 once the kiosk can answer. Every request's inference runs on tokio's
//! blocking pool behind a bounded queue per pipeline (a full queue is a 503 with
//! `Retry-After`, never a hang) and a time limit; a panic inside one request is that
//! request's 500 and the service keeps serving. Every failure has one JSON shape:
//! `{"error": {"code": "...", "message": "..."}}`.

mod camera;
mod metrics;
mod openapi;
mod queue;
mod staff;
mod ui;
mod voice;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use aisle_firmware_config::DeviceConfig;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::kiosk::{AskRequest, Kiosk, KioskError, Parts};
pub use metrics::Metrics;
use queue::{Queue, QueueError};

/// Largest image body (a camera frame or photo).
pub const MAX_IMAGE_BYTES: usize = 20 << 20;
/// Largest WAV body: 2 minutes of 48 kHz stereo 32-bit audio, with room.
pub const MAX_AUDIO_BYTES: usize = 50 << 20;
/// Largest JSON body.
pub const MAX_JSON_BYTES: usize = 64 << 10;
/// Longest a request may take before it is answered 504.
pub const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The service's shared state: the kiosk once loaded, the queues, the metrics.
pub struct Service {
    cfg: DeviceConfig,
    /// The kiosk requests are answered by; a new release swaps in a new one (a
    /// request keeps the one it started with).
    kiosk: RwLock<Option<Arc<Kiosk>>>,
    failed: OnceLock<String>,
    /// The release the kiosk in use was loaded from (None: no release activated).
    pub(crate) release: Mutex<Option<u64>>,
    /// The last sync's outcome, for `/health` and `/metrics`.
    pub(crate) last_sync: Mutex<Option<aisle_release::SyncState>>,
    /// What a kiosk loads (everything, unless an embedder says otherwise).
    parts: Parts,
    /// The bearer token of the staff endpoints (`service.staff_token_file`).
    staff_token: Option<String>,
    /// Draws `/v1/overlay` pictures; without one only JSON overlays are served.
    painter: Option<Arc<dyn aisle_ar::Paint>>,
    pub(crate) queues: Queues,
    /// The screens' live camera streams.
    pub(crate) cameras: camera::Streams,
    pub metrics: Metrics,
}

pub(crate) struct Queues {
    /// Text answers (grammar and LLM; the LLM itself runs one generation at a time).
    pub dialogue: Queue,
    /// Scans and overlays.
    pub vision: Queue,
    /// whisper: one decode at a time.
    pub speech: Queue,
}

impl Service {
    /// The service over `cfg`; `painter` draws overlay pictures (the `aisle` binary
    /// passes bevy's, from `aisle-ar-render`).
    pub fn new(cfg: DeviceConfig, painter: Option<Arc<dyn aisle_ar::Paint>>) -> Arc<Self> {
        Self::with_parts(cfg, painter, Parts::all())
    }

    /// A service whose kiosks load only `parts` (a text-only kiosk, or tests).
    pub fn with_parts(
        cfg: DeviceConfig,
        painter: Option<Arc<dyn aisle_ar::Paint>>,
        parts: Parts,
    ) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Self {
            staff_token: staff::read_token(cfg.file.service.staff_token_file.as_deref()),
            painter,
            cfg,
            kiosk: RwLock::new(None),
            failed: OnceLock::new(),
            release: Mutex::new(None),
            last_sync: Mutex::new(None),
            parts,
            queues: Queues {
                dialogue: Queue::new("dialogue", cores.max(2), 64),
                vision: Queue::new("vision", 1, 8),
                speech: Queue::new("speech", 1, 4),
            },
            cameras: camera::Streams::default(),
            metrics: Metrics::default(),
        })
    }

    /// Loads the kiosk (on the calling thread; `serve` does it on the blocking pool).
    pub fn load(&self) {
        let t = Instant::now();
        // A release that keeps failing to come up (crashes included) goes back to
        // the previous one.
        match crate::sync::record_start(&self.cfg) {
            Ok(Some(v)) => tracing::error!(
                release = v,
                "the active release kept failing at start: rolled back"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "the start could not be recorded"),
        }
        let mut tries = 0;
        loop {
            tries += 1;
            // The model store as the active release says (heals a sync cut short).
            let release = match crate::sync::reconcile(&self.cfg) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "the active release could not be put in place");
                    None
                }
            };
            match Kiosk::load(&crate::sync::effective(&self.cfg), self.parts) {
                Ok(k) => {
                    tracing::info!(
                        ms = t.elapsed().as_millis() as u64,
                        ?release,
                        "kiosk loaded: ready"
                    );
                    aisle_release::sync::started_ok(&crate::sync::paths(&self.cfg));
                    *lock(&self.release) = release;
                    self.ready_with(Arc::new(k));
                    return;
                }
                Err(e) if tries == 1 && release.is_some() => {
                    // The release does not load: the previous one, once.
                    tracing::error!(error = %e, ?release, "the active release does not load; rolling back");
                    let back = aisle_models::Store::open(&self.cfg.model_dir)
                        .map_err(aisle_release::ReleaseError::from)
                        .and_then(|store| {
                            aisle_release::sync::rollback(&crate::sync::paths(&self.cfg), &store)
                        });
                    if let Err(e2) = back {
                        tracing::error!(error = %e2, "no release to roll back to");
                        let _ = self.failed.set(format!("{e}"));
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the kiosk could not load");
                    let _ = self.failed.set(format!("{e}"));
                    return;
                }
            }
        }
    }

    /// Serves an already loaded kiosk (tests and embedders that built one).
    pub fn with_kiosk(
        cfg: DeviceConfig,
        kiosk: Arc<Kiosk>,
        painter: Option<Arc<dyn aisle_ar::Paint>>,
    ) -> Arc<Self> {
        let s = Self::new(cfg, painter);
        s.ready_with(kiosk);
        s
    }

    /// The first kiosk: staff's webhook starts listening to its events (later
    /// kiosks carry the same event stream on, see [`Kiosk::adopt`]).
    fn ready_with(&self, kiosk: Arc<Kiosk>) {
        if let Some(url) = &self.cfg.file.service.staff_webhook {
            staff::start_webhook(url.clone(), kiosk.subscribe());
        }
        *self.kiosk.write().unwrap_or_else(|p| p.into_inner()) = Some(kiosk);
    }

    /// The kiosk now in use (a new release may replace it; the caller keeps this one).
    pub fn kiosk(&self) -> Option<Arc<Kiosk>> {
        self.kiosk.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in a kiosk loaded from a new release between requests: requests in
    /// flight finish on the old one, later ones get the new one; conversations and
    /// demand counts move over.
    pub fn swap(&self, mut new: Kiosk, release: Option<u64>) {
        match self.kiosk() {
            Some(old) => {
                new.adopt(&old);
                *self.kiosk.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(new));
            }
            None => self.ready_with(Arc::new(new)),
        }
        *lock(&self.release) = release;
    }

    /// One sync (blocking: run it off the async workers); a newly active release
    /// is loaded and swapped in. Returns the sync's state.
    pub fn sync_and_swap(&self) -> Result<aisle_release::SyncState, crate::sync::SyncError> {
        self.sync_and_swap_from(&crate::sync::remote(&self.cfg, None)?)
    }

    /// [`Service::sync_and_swap`] from a release location opened by the caller.
    pub fn sync_and_swap_from(
        &self,
        remote: &aisle_release::Remote,
    ) -> Result<aisle_release::SyncState, crate::sync::SyncError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| aisle_release::ReleaseError::Other(format!("sync runtime: {e}")))?;
        let demand = self
            .kiosk()
            .map(|k| serde_json::to_value(k.demand()).unwrap_or_default())
            .unwrap_or_default();
        let st = rt.block_on(crate::sync::sync_from(
            &self.cfg, self.parts, remote, demand,
        ))?;
        *lock(&self.last_sync) = Some(st.clone());
        if st.active != *lock(&self.release) {
            let t = Instant::now();
            match Kiosk::load(&crate::sync::effective(&self.cfg), self.parts) {
                Ok(k) => {
                    self.swap(k, st.active);
                    tracing::info!(
                        release = ?st.active,
                        ms = t.elapsed().as_millis() as u64,
                        "new release swapped in"
                    );
                }
                Err(e) => {
                    // The release passed its health check but the full kiosk
                    // does not load: back to the previous one, which runs now.
                    tracing::error!(error = %e, release = ?st.active, "the new release does not load; rolling back");
                    let store = aisle_models::Store::open(&self.cfg.model_dir)?;
                    aisle_release::sync::rollback(&crate::sync::paths(&self.cfg), &store)?;
                }
            }
        }
        Ok(st)
    }

    fn ready(&self) -> Result<Arc<Kiosk>, ApiError> {
        match (self.kiosk(), self.failed.get()) {
            (Some(k), _) => Ok(k),
            (None, Some(e)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "load_failed",
                format!("the kiosk could not load: {e}"),
            )),
            (None, None) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "loading",
                "the models are still loading; try again shortly",
            )
            .retry_after(2)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds nothing: the routes over `service`.
pub fn router(service: Arc<Service>) -> Router {
    ui::routes(Router::new())
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/kiosk", get(kiosk_info))
        .route("/v1/ask", post(ask))
        .route("/v1/scan", post(scan))
        .route("/v1/overlay", post(overlay))
        .route(
            "/v1/camera/{stream}",
            post(camera::frame).delete(camera::end),
        )
        .route("/v1/call-staff", post(call_staff))
        .route("/v1/transcribe", post(transcribe))
        .route("/v1/say", post(say))
        .route("/v1/products/{sku}", get(product))
        .route("/v1/search", get(search))
        .route("/v1/sessions/{id}", delete(end_session))
        .route("/v1/voice", get(voice::upgrade))
        .route("/v1/staff/events", get(staff::events))
        .route("/v1/staff/demand", get(staff::demand))
        .route("/v1/staff/catalog", post(staff::import))
        .route("/v1/staff/products/{sku}/photos", post(staff::enroll))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            metrics::track,
        ))
        .with_state(service)
}

/// Serves on `listener` until `shutdown` resolves, then drains requests in flight.
/// The kiosk loads on the blocking pool meanwhile (`/health` is 503 until it has).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if service.kiosk().is_none() {
        let s = service.clone();
        tokio::task::spawn_blocking(move || s.load());
    }
    // Signed releases: a sync every `sync.interval_s` (plus jitter), the first
    // one an interval after start.
    let syncer = {
        let s = service.clone();
        let cfg = &s.cfg.file.sync;
        let (interval, jitter) = (u64::from(cfg.interval_s), u64::from(cfg.jitter_s));
        let on = !cfg.endpoint.is_empty() && interval > 0;
        tokio::spawn(async move {
            if !on {
                return;
            }
            loop {
                let mut b = [0u8; 8];
                let r = getrandom::fill(&mut b)
                    .map(|()| u64::from_le_bytes(b))
                    .unwrap_or(0);
                let wait = interval * 1000 + if jitter > 0 { r % (jitter * 1000) } else { 0 };
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if s.kiosk().is_none() {
                    continue;
                }
                let s2 = s.clone();
                match tokio::task::spawn_blocking(move || s2.sync_and_swap()).await {
                    Ok(Ok(st)) => {
                        tracing::info!(state = %st.state, active = ?st.active, error = ?st.error, "sync")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "sync"),
                    Err(e) => tracing::error!(error = %e, "sync task"),
                }
            }
        })
    };
    // Sessions are erased when they expire, not only when next touched.
    let sweeper = {
        let s = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                if let Some(k) = s.kiosk() {
                    k.sessions().expire();
                    let idle = u64::from(k.config().file.dialogue.session_timeout_s);
                    s.cameras.expire(Duration::from_secs(idle));
                }
            }
        })
    };
    let app = router(service);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    sweeper.abort();
    syncer.abort();
    served
}

/// An API failure: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn retry_after(mut self, s: u32) -> Self {
        self.retry_after = Some(s);
        self
    }
}

/// Every failure's body.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `too_large`, `unprocessable`, `busy`, ...
    pub code: String,
    /// For people: names the field or input and the problem.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<KioskError> for ApiError {
    fn from(e: KioskError) -> Self {
        let message = format!("{e}");
        match &e {
            KioskError::UnknownSku(_) => Self::new(StatusCode::NOT_FOUND, "unknown_sku", message),
            KioskError::NotLoaded(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_loaded", message)
            }
            _ if e.is_client_error() => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
            }
            _ => {
                tracing::error!(error = %message, "request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full(name) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("the {name} queue is full; try again shortly"),
            )
            .retry_after(1),
            QueueError::TimedOut(name) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("waited too long for the {name} queue; try again shortly"),
            )
            .retry_after(2),
        }
    }
}

/// Reads a request body of at most `max` bytes: a larger `Content-Length` is refused
/// before any of it is read (413), as is a chunked body that grows past `max`.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    max: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the {what} is larger than the {} this endpoint accepts",
                size(max)
            ),
        )
    };
    let claimed = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if claimed.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let b = axum::body::to_bytes(body, max).await.map_err(|e| {
        let length_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if length_limit {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the {what}: {e}"))
        }
    })?;
    if b.is_empty() {
        return Err(ApiError::bad_request(format!("the {what} is empty")));
    }
    Ok(b)
}

/// "20 MB", "64 KB".
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MB", bytes >> 20)
    } else {
        format!("{} KB", bytes >> 10)
    }
}

/// Runs `work` on the blocking pool behind `queue`, within the time limit; a panic
/// becomes a 500 for this request alone.
async fn run_blocking<T: Send + 'static>(
    queue: &Queue,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = queue.acquire(REQUEST_TIME_LIMIT).await?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout(REQUEST_TIME_LIMIT, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a request's task panicked");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed inside the kiosk; it keeps serving",
            ))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s",
                REQUEST_TIME_LIMIT.as_secs()
            ),
        )),
    }
}

async fn health(State(s): State<Arc<Service>>) -> Response {
    match s.ready() {
        Ok(k) => Json(serde_json::json!({
            "status": "ok",
            "device": k.config().file.device.name,
            "products": k.product_count().ok(),
            "llm": k.has_llm(),
            "release": *lock(&s.release),
            "sync": lock(&s.last_sync).as_ref().map(|st| serde_json::json!({
                "state": st.state, "active": st.active, "offered": st.offered,
                "last_sync": st.last_sync, "error": st.error,
            })),
        }))
        .into_response(),
        Err(e) => {
            let status = if e.code == "loading" {
                "loading"
            } else {
                "failed"
            };
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": status, "error": { "code": e.code, "message": e.message } })),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(2u32));
            r
        }
    }
}

/// What the kiosk screen shows before anything is used: the device, and the privacy
/// notice and consent rule from `privacy`.
async fn kiosk_info(State(s): State<Arc<Service>>) -> Response {
    let f = &s.cfg.file;
    let p = &f.privacy;
    let mut notice = vec![
        "Your voice and the camera view are processed on this kiosk only; nothing is sent anywhere.".to_string(),
        "Your questions are not kept: a conversation is erased when you finish or after a short pause.".to_string(),
    ];
    if p.persist_audio || p.persist_images {
        notice.push(format!(
            "Debugging is on: {} kept on this kiosk for staff.",
            match (p.persist_audio, p.persist_images) {
                (true, true) => "recordings and camera pictures are",
                (true, false) => "recordings are",
                _ => "camera pictures are",
            }
        ));
    }
    Json(serde_json::json!({
        "device": f.device.name,
        "profile": f.device.profile,
        "locale": f.device.locale,
        "currency": f.device.currency,
        "language": f.dialogue.language,
        "ready": s.kiosk().is_some(),
        "session_timeout_s": f.dialogue.session_timeout_s,
        "privacy": {
            "consent_prompt": p.consent_prompt,
            "persist_audio": p.persist_audio,
            "persist_images": p.persist_images,
            "notice": notice,
        },
    }))
    .into_response()
}

async fn openapi_json() -> Response {
    Json(openapi::document()).into_response()
}

async fn metrics_text(State(s): State<Arc<Service>>) -> Response {
    let text = s.metrics.render(&s);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint does not take {method}"),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// `POST /v1/ask`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    /// The question, as typed or heard.
    pub text: String,
    /// The conversation to continue (from the last answer); a new one when absent,
    /// unknown or expired.
    #[serde(default)]
    pub session: Option<String>,
    /// The product in front of the camera ("how much is this").
    #[serde(default)]
    pub sku: Option<String>,
}

/// `POST /v1/say`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SayBody {
    /// What to say (an answer's text: prices, sizes and aisles are read as a shopper
    /// expects; product codes and web addresses are not read out).
    #[schemars(length(min = 1, max = 4000))]
    pub text: String,
}

/// `POST /v1/say`: the text spoken in the store's voice, as a WAV.
async fn say(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let b = read_body(&headers, b, MAX_JSON_BYTES, "request body").await?;
    let req: SayBody = parse_json(&b)?;
    let speech = run_blocking(&s.queues.speech, move || Ok(k.say(&req.text)?)).await?;
    s.metrics.stage("tts", speech.synth_ms() / 1000.0);
    let wav = aisle_speech::tts::wav_bytes(&speech.samples(), speech.sample_rate);
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}

fn parse_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(b).is_err() {
        return Err(ApiError::bad_request("the request body is not UTF-8 text"));
    }
    let bad = |e: serde_json::Error| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
    };
    // An object, always: serde would also read a struct from an array.
    let v: serde_json::Value = serde_json::from_slice(b).map_err(bad)?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(v).map_err(bad)
}

async fn ask(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let b = read_body(&headers, b, MAX_JSON_BYTES, "request body").await?;
    let req: AskBody = parse_json(&b)?;
    if req.text.chars().count() > crate::dialogue::MAX_QUESTION_CHARS * 4 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the question is longer than {} characters",
                crate::dialogue::MAX_QUESTION_CHARS * 4
            ),
        ));
    }
    let asked = run_blocking(&s.queues.dialogue, move || {
        Ok(k.ask(&AskRequest {
            text: &req.text,
            session: req.session.as_deref(),
            sku: req.sku.as_deref(),
            image: None,
        })?)
    })
    .await?;
    s.metrics
        .stage("answer", asked.answer.elapsed_us as f64 / 1e6);
    Ok(Json(asked.to_json()).into_response())
}

#[derive(Debug, Deserialize)]
struct ScanQuery {
    top: Option<usize>,
}

/// A numeric query parameter: `default` when absent, a 400 naming it when outside
/// `range` (the range `/openapi.json` states).
fn in_range(
    v: Option<usize>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} must be between {} and {}",
            range.start(),
            range.end()
        ))),
    }
}

/// A query string that does not parse: our error shape, not the framework's.
fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

async fn scan(
    State(s): State<Arc<Service>>,
    q: Result<Query<ScanQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let q = query(q)?;
    let b = read_body(&headers, b, MAX_IMAGE_BYTES, "image").await?;
    let top = in_range(q.top, "top", 5, 1..=50)?;
    let r = run_blocking(&s.queues.vision, move || {
        Ok(k.scan_bytes(&b, "request body", top)?)
    })
    .await?;
    s.metrics.stage("scan", r.timings.total_us as f64 / 1e6);
    Ok(Json(r).into_response())
}

async fn overlay(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let b = read_body(&headers, b, MAX_IMAGE_BYTES, "camera frame").await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let (frame, img) = run_blocking(&s.queues.vision, move || {
        let img = k.decode_image(&b, "request body")?;
        let frame = k.overlay(&img)?;
        Ok((frame, img))
    })
    .await?;
    if wants_json {
        return Ok(Json(frame).into_response());
    }
    let Some(painter) = s.painter.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "no_pictures",
            "this service draws no overlay pictures: ask with Accept: application/json",
        ));
    };
    let png = run_blocking(&s.queues.vision, move || {
        let picture = painter.paint(&img, &frame.overlay).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render",
                format!("cannot draw the overlay: {e}"),
            )
        })?;
        let mut png = Vec::new();
        image::DynamicImage::ImageRgba8(picture)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "render", e.to_string())
            })?;
        Ok(png)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

async fn transcribe(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let b = read_body(&headers, b, MAX_AUDIO_BYTES, "WAV").await?;
    let v = run_blocking(&s.queues.speech, move || {
        let label = std::path::Path::new("request body");
        let (audio, t) = k.transcribe_wav(&b, label, None)?;
        Ok(crate::kiosk::transcript_json(label, &audio, &t))
    })
    .await?;
    s.metrics
        .stage("transcribe", v.processing_ms as f64 / 1000.0);
    Ok(Json(v).into_response())
}

async fn product(
    State(s): State<Arc<Service>>,
    Path(sku): Path<String>,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let info = run_blocking(&s.queues.dialogue, move || Ok(k.product(&sku)?)).await?;
    Ok(Json(info).into_response())
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    top: Option<usize>,
}

async fn search(
    State(s): State<Arc<Service>>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    let q = query(q)?;
    let text =
        q.q.filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("give the search text as ?q="))?;
    let top = in_range(q.top, "top", 10, 1..=100)?;
    let hits = run_blocking(&s.queues.dialogue, move || Ok(k.search(&text, top)?)).await?;
    Ok(Json(hits).into_response())
}

/// `POST /v1/call-staff`: the screen's "Call staff" button.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallStaffBody {
    /// The conversation the shopper is in, if any (not sent to staff: it only keeps
    /// the session alive).
    #[serde(default)]
    pub session: Option<String>,
}

async fn call_staff(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    // An empty body is allowed here (no session).
    let b = match read_body(&headers, b, MAX_JSON_BYTES, "request body").await {
        Ok(b) => b,
        Err(e) if e.code == "bad_request" && e.message.ends_with("is empty") => Bytes::new(),
        Err(e) => return Err(e),
    };
    let req: CallStaffBody = if b.is_empty() {
        CallStaffBody::default()
    } else {
        parse_json(&b)?
    };
    if let Some(id) = &req.session {
        k.sessions().touch(id);
    }
    let at = k.call_staff();
    Ok(Json(serde_json::json!({ "called": true, "at": at })).into_response())
}

async fn end_session(
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    if k.end_session(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "no such session (it may have expired)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a request's work is that request's 500; the worker slot comes
    /// back and the next request is served.
    #[tokio::test]
    async fn a_panicking_request_is_its_own_500() {
        let q = Queue::new("test", 1, 0);
        let boom = run_blocking(&q, || -> Result<(), ApiError> { panic!("bad frame") }).await;
        let e = boom.expect_err("a panic is an error");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(e.message.contains("keeps serving"), "{}", e.message);
        let ok = run_blocking(&q, || Ok(7))
            .await
            .expect("served after the panic");
        assert_eq!(ok, 7);
        let body = ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "no")
            .retry_after(3)
            .into_response();
        assert_eq!(body.headers()[header::RETRY_AFTER], "3");
    }
}
