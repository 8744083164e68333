//! The configuration file's types: the wire format of `aisle.toml`.
//!
//! Every section has a default, so an empty file is a valid configuration and a
//! file only states what differs. The JSON Schema (`aisle config schema`) is derived
//! from these types; `schema/aisle-config.schema.json` is the committed copy.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole `aisle.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// What kind of device this is.
    pub device: Device,
    /// Where data and models live.
    pub paths: Paths,
    /// The camera the shopper shows products to.
    pub camera: Camera,
    /// Microphone and speaker.
    pub audio: Audio,
    /// Which model from the store serves each task.
    pub models: ModelChoice,
    /// Decision thresholds.
    pub thresholds: Thresholds,
    /// How the vision models run.
    pub inference: Inference,
    /// The conversation with the shopper.
    pub dialogue: Dialogue,
    /// What may be kept, and for how long.
    pub privacy: Privacy,
    /// The local HTTP/WebSocket service.
    pub service: Service,
    /// Signed releases: where this kiosk syncs models and catalog from.
    pub sync: Sync,
}

/// Device form factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A fixed kiosk with a camera, microphone and touch screen.
    #[default]
    Kiosk,
    /// A hand-held tablet that draws AR overlays on its camera view.
    ArTablet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Device {
    /// `kiosk` or `ar-tablet`.
    pub profile: Profile,
    /// A name for this device, shown in logs and to the fleet.
    pub name: String,
    /// BCP 47 locale of the store, e.g. `en-US`.
    pub locale: String,
    /// ISO 4217 currency code used for prices.
    pub currency: String,
}

impl Default for Device {
    fn default() -> Self {
        Self {
            profile: Profile::Kiosk,
            name: "aisle-kiosk".into(),
            locale: "en-US".into(),
            currency: "USD".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    /// Data directory (models, catalog, caches). Default: `$AISLE_DATA_DIR`, else
    /// `$XDG_DATA_HOME/aisle`, else `~/.local/share/aisle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Model store directory. Default: `<data_dir>/models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Store catalog to import at start (CSV or JSON Lines). Default: the bundled demo store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<PathBuf>,
}

/// Where camera frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CameraSource {
    /// A V4L2 camera device.
    #[default]
    Device,
    /// One still image, re-used as every frame.
    Image,
    /// A folder of frames, played in name order.
    Folder,
    /// No camera.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Camera {
    /// `device`, `image`, `folder` or `none`.
    pub source: CameraSource,
    /// Camera device when `source = "device"`.
    pub device: String,
    /// Image file (`source = "image"`) or folder of frames (`source = "folder"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Capture width in pixels.
    #[schemars(range(min = 64, max = 7680))]
    pub width: u32,
    /// Capture height in pixels.
    #[schemars(range(min = 64, max = 4320))]
    pub height: u32,
    /// Frames per second.
    #[schemars(range(min = 1, max = 120))]
    pub fps: u32,
}

impl Default for Camera {
    fn default() -> Self {
        Self {
            source: CameraSource::Device,
            device: "/dev/video0".into(),
            path: None,
            width: 1280,
            height: 720,
            fps: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Audio {
    /// Microphone or a WAV file.
    pub input: AudioInput,
    /// The speaker spoken answers play on (`aisle say`, `ask --speak`, `chat --voice`).
    pub output: AudioOutput,
}

/// Where spoken answers are played.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioOutput {
    /// cpal output device name; `default` picks the host's default device.
    pub device: String,
}

impl Default for AudioOutput {
    fn default() -> Self {
        Self {
            device: "default".into(),
        }
    }
}

/// Where the shopper's voice comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AudioSource {
    /// A cpal input device.
    #[default]
    Microphone,
    /// A WAV file (tests, demos).
    Wav,
    /// No audio input.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioInput {
    /// `microphone`, `wav` or `none`.
    pub source: AudioSource,
    /// cpal input device name; `default` picks the host's default device.
    pub device: String,
    /// WAV file when `source = "wav"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl Default for AudioInput {
    fn default() -> Self {
        Self {
            source: AudioSource::Microphone,
            device: "default".into(),
            path: None,
        }
    }
}

/// Model names refer to entries in the model store (`aisle models list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelChoice {
    /// Speech recognition.
    pub asr: String,
    /// Voice activity detection.
    pub vad: String,
    /// On-device LLM for the dialogue fallback.
    pub llm: String,
    /// Sentence embeddings for product search.
    pub text_embedding: String,
    /// Image embeddings for product recognition.
    pub image_embedding: String,
    /// Text detection on labels and price tags.
    pub ocr_detection: String,
    /// Text recognition on labels and price tags.
    pub ocr_recognition: String,
    /// Text-line orientation (upside-down labels), used when `inference.ocr_orientation`.
    pub ocr_orientation: String,
    /// CLIP's BPE vocabulary, used when `inference.image_text = "clip"`.
    pub clip_tokenizer: String,
    /// Object localisation for AR overlays (where each product is in the frame).
    pub object_detection: String,
    /// The voice spoken answers are read in (a Piper voice).
    pub tts: String,
}

impl Default for ModelChoice {
    fn default() -> Self {
        Self {
            asr: "whisper-tiny-en-ggml".into(),
            vad: "silero-vad".into(),
            llm: "smollm2-135m-instruct".into(),
            text_embedding: "all-minilm-l6-v2".into(),
            image_embedding: "efficientnet-lite0-onnx".into(),
            ocr_detection: "ppocr-v4-det".into(),
            ocr_recognition: "ppocr-v4-rec".into(),
            ocr_orientation: "ppocr-mobile-v2-cls".into(),
            clip_tokenizer: "clip-bpe-vocab".into(),
            object_detection: "ssd-mobilenetv2-oidv4".into(),
            tts: "piper-en-us-joe-medium".into(),
        }
    }
}

/// An ONNX execution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnnxEngine {
    /// ONNX Runtime, loaded at run time from the model store (1.2-5x faster here).
    #[default]
    Onnxruntime,
    /// tract, pure Rust: no native library needed.
    Tract,
}

/// Which joint image/text model recognises products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImageText {
    /// EfficientNet-Lite0 (`models.image_embedding`) + ConSE into the
    /// all-MiniLM-L6-v2 sentence space (`models.text_embedding`).
    #[default]
    Conse,
    /// A CLIP model: `models.image_embedding` names a store entry with
    /// `image_encoder.onnx` and `text_encoder.onnx` (`aisle models add`).
    Clip,
}

/// How the vision models run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Inference {
    /// The image/text model: `conse` (default, weights installed here) or `clip`.
    pub image_text: ImageText,
    /// Input side of the CLIP image encoder, pixels (224 for ViT-B/32).
    #[schemars(range(min = 8, max = 1024))]
    pub clip_image_size: u32,
    /// Engine for the image embedding model.
    pub image_engine: OnnxEngine,
    /// Engine for the OCR models.
    pub ocr_engine: OnnxEngine,
    /// Read label and price-tag text (PP-OCRv4) during scans.
    pub ocr: bool,
    /// Turn upside-down text lines before reading them (one small model per line).
    pub ocr_orientation: bool,
    /// Threads per model (0 = all cores).
    #[schemars(range(min = 0, max = 256))]
    pub threads: u32,
    /// Beams of whisper's search for a final transcript: 1 is greedy (the fastest);
    /// 5 is whisper's reference decoder (fewer word errors, about twice the decode
    /// time: `aisle bench speech` measures both). Partial transcripts stay greedy.
    #[schemars(range(min = 1, max = 8))]
    pub speech_beams: u32,
    /// Model-store entry holding `libonnxruntime.so`.
    pub onnxruntime_library: String,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            image_text: ImageText::Conse,
            clip_image_size: 224,
            image_engine: OnnxEngine::Onnxruntime,
            ocr_engine: OnnxEngine::Onnxruntime,
            ocr: true,
            ocr_orientation: true,
            threads: 0,
            speech_beams: 1,
            onnxruntime_library: "onnxruntime".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Speech probability above which a frame counts as voiced.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub vad: f64,
    /// Shortest speech segment kept, in milliseconds.
    #[schemars(range(min = 0, max = 10000))]
    pub vad_min_speech_ms: u32,
    /// Silence that ends an utterance, in milliseconds.
    #[schemars(range(min = 0, max = 10000))]
    pub vad_min_silence_ms: u32,
    /// Audio kept before the detected start of speech, in milliseconds.
    #[schemars(range(min = 0, max = 2000))]
    pub vad_pre_roll_ms: u32,
    /// Calibrated confidence below which a scan answers "unknown product".
    #[schemars(range(min = 0.0, max = 1.0))]
    pub match_confidence: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            vad: 0.5,
            vad_min_speech_ms: 250,
            vad_min_silence_ms: 500,
            vad_pre_roll_ms: 200,
            match_confidence: 0.6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Dialogue {
    /// Language the assistant speaks (BCP 47).
    pub language: String,
    /// Ask the on-device LLM when the intent grammar does not match.
    pub llm_fallback: bool,
    /// Turns of history kept in a conversation.
    #[schemars(range(min = 1, max = 100))]
    pub max_history_turns: u32,
    /// Idle time after which a conversation is forgotten, in seconds.
    #[schemars(range(min = 5, max = 86400))]
    pub session_timeout_s: u32,
}

impl Default for Dialogue {
    fn default() -> Self {
        Self {
            language: "en".into(),
            llm_fallback: true,
            max_history_turns: 20,
            session_timeout_s: 120,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Privacy {
    /// Write raw microphone audio to disk (debugging only).
    pub persist_audio: bool,
    /// Write raw camera frames to disk (debugging only).
    pub persist_images: bool,
    /// Replace transcripts in logs with their length.
    pub redact_transcripts_in_logs: bool,
    /// Show a consent prompt before the microphone or camera is used.
    pub consent_prompt: bool,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            persist_audio: false,
            persist_images: false,
            redact_transcripts_in_logs: true,
            consent_prompt: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Service {
    /// Address the HTTP/WebSocket API listens on, `IP:PORT`.
    pub bind: String,
    /// Allow `bind` to be a non-loopback address (exposes the API to the network).
    pub allow_non_loopback: bool,
    /// File holding the bearer token staff tools send (`Authorization: Bearer ...`) to
    /// the `/v1/staff/` endpoints; without it those endpoints are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staff_token_file: Option<PathBuf>,
    /// `http://` URL that each staff call is also POSTed to (JSON: kiosk, time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staff_webhook: Option<String>,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8480".into(),
            allow_non_loopback: false,
            staff_token_file: None,
            staff_webhook: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Sync {
    /// Where releases are published: `s3://bucket/prefix` (S3-compatible storage) or
    /// `file:///path`. Empty: this kiosk does not sync.
    pub endpoint: String,
    /// The `root.json` this kiosk trusts first (from `aisle release init`); later
    /// roots are trusted only when signed by this one's keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_root: Option<PathBuf>,
    /// Seconds between syncs inside `aisle serve` (0: only `aisle sync`).
    pub interval_s: u32,
    /// Up to this many seconds added to each interval at random, so a fleet does
    /// not sync all at once.
    pub jitter_s: u32,
    /// The S3 endpoint URL of a server that is not AWS (else `AWS_ENDPOINT_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// The S3 region (else `AWS_REGION`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Allow a plain-HTTP S3 endpoint (a test server or a store's own LAN server).
    pub s3_allow_http: bool,
    /// A release that fails to come up this many times within
    /// `failed_start_window_s` is rolled back to the previous one.
    pub max_failed_starts: u32,
    pub failed_start_window_s: u32,
}

impl Default for Sync {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            trust_root: None,
            interval_s: 900,
            jitter_s: 120,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            max_failed_starts: 3,
            failed_start_window_s: 600,
        }
    }
}
