//! On-device text to speech: a Piper (VITS) voice run on ONNX Runtime through the
//! workspace's own `ort`, phonemes from espeak-ng (a separate process), text
//! normalised for retail answers. Speech is made sentence by sentence so the first
//! sentence can play while the rest is synthesised.

pub mod normalize;
pub mod phonemize;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aisle_onnx::{Engine, Input, OnnxError, OnnxModel, OnnxOptions};
use ndarray::{Array1, Array2};
use serde::Deserialize;

pub use phonemize::Espeak;

/// A first sentence longer than this is spoken from its first clause on.
const FIRST_CHUNK_CHARS: usize = 60;

/// The longest text spoken in one request (an answer is a few hundred characters).
pub const MAX_TEXT_CHARS: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("voice {model} does not match its config {config}: {message}")]
    Mismatch {
        model: PathBuf,
        config: PathBuf,
        message: String,
    },
    #[error("phonemiser {program}: {message}")]
    Phonemizer { program: PathBuf, message: String },
    #[error("the text is {chars} characters long; at most {limit} can be spoken at once")]
    TooLong { chars: usize, limit: usize },
    #[error("nothing to say: the text has no speakable words")]
    Empty,
    #[error("voice {path}: the model gave {message}")]
    Output { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    audio: AudioSection,
    espeak: EspeakSection,
    #[serde(default)]
    inference: Option<InferenceSection>,
    #[serde(default)]
    phoneme_type: Option<String>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    num_symbols: i64,
    #[serde(default)]
    num_speakers: u32,
}

#[derive(Debug, Deserialize)]
struct AudioSection {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakSection {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceSection {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A voice's `.onnx.json`, checked.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    pub sample_rate: u32,
    pub espeak_voice: String,
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
    pub num_symbols: i64,
    ids: HashMap<char, Vec<i64>>,
}

const PAD: char = '_';
const BOS: char = '^';
const EOS: char = '$';

impl VoiceConfig {
    pub fn load(path: &Path) -> Result<Self, TtsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TtsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, TtsError> {
        let bad = |message: String| TtsError::Config {
            path: path.to_path_buf(),
            message,
        };
        let f: ConfigFile = serde_json::from_str(text)
            .map_err(|e| bad(format!("not a Piper voice config: {e}")))?;
        if let Some(t) = &f.phoneme_type {
            if t != "espeak" {
                return Err(bad(format!(
                    "phoneme_type is `{t}`; only espeak voices are supported"
                )));
            }
        }
        if !(8_000..=48_000).contains(&f.audio.sample_rate) {
            return Err(bad(format!(
                "audio.sample_rate {} is outside 8000..=48000",
                f.audio.sample_rate
            )));
        }
        if f.num_speakers > 1 {
            return Err(bad(format!(
                "num_speakers is {}; only single-speaker voices are supported",
                f.num_speakers
            )));
        }
        if f.espeak.voice.is_empty()
            || !f
                .espeak
                .voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(format!(
                "espeak.voice `{}` is not a voice name",
                f.espeak.voice
            )));
        }
        if !(1..=100_000).contains(&f.num_symbols) {
            return Err(bad(format!(
                "num_symbols {} is out of range",
                f.num_symbols
            )));
        }
        let mut ids = HashMap::new();
        for (k, v) in f.phoneme_id_map {
            let mut chars = k.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(bad(format!(
                    "phoneme_id_map key `{k}` is not a single character"
                )));
            };
            if v.is_empty() || v.iter().any(|id| *id < 0 || *id >= f.num_symbols) {
                return Err(bad(format!(
                    "phoneme_id_map `{k}`: ids {v:?} are not within 0..{}",
                    f.num_symbols
                )));
            }
            ids.insert(c, v);
        }
        for c in [PAD, BOS, EOS] {
            if !ids.contains_key(&c) {
                return Err(bad(format!("phoneme_id_map has no `{c}`")));
            }
        }
        let inf = f.inference.unwrap_or(InferenceSection {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        });
        for (name, v) in [
            ("noise_scale", inf.noise_scale),
            ("length_scale", inf.length_scale),
            ("noise_w", inf.noise_w),
        ] {
            if !v.is_finite() || !(0.0..=10.0).contains(&v) || (name == "length_scale" && v == 0.0)
            {
                return Err(bad(format!("inference.{name} {v} is out of range")));
            }
        }
        Ok(VoiceConfig {
            sample_rate: f.audio.sample_rate,
            espeak_voice: f.espeak.voice,
            noise_scale: inf.noise_scale,
            length_scale: inf.length_scale,
            noise_w: inf.noise_w,
            num_symbols: f.num_symbols,
            ids,
        })
    }

    /// Phonemes to ids as Piper does: BOS, PAD, then each phoneme followed by PAD,
    /// then EOS. Phonemes the voice does not know are skipped.
    pub fn ids(&self, phonemes: &[char]) -> Vec<i64> {
        let mut out = Vec::with_capacity(phonemes.len() * 2 + 3);
        let get = |c: char| self.ids.get(&c).map(Vec::as_slice).unwrap_or(&[]);
        out.extend_from_slice(get(BOS));
        out.extend_from_slice(get(PAD));
        for p in phonemes {
            if let Some(ids) = self.ids.get(p) {
                out.extend_from_slice(ids);
                out.extend_from_slice(get(PAD));
            }
        }
        out.extend_from_slice(get(EOS));
        out
    }

    fn max_id(&self) -> i64 {
        self.ids.values().flatten().copied().max().unwrap_or(0)
    }
}

/// How a voice runs.
#[derive(Debug, Clone)]
pub struct VoiceOptions {
    pub threads: usize,
    /// `libonnxruntime.so` from the model store.
    pub ort_library: PathBuf,
    /// The espeak-ng program (`espeak-ng` on the PATH by default).
    pub espeak: PathBuf,
}

/// One synthesised sentence.
#[derive(Debug, Clone)]
pub struct SpokenSentence {
    pub text: String,
    /// The phonemes read (IPA, Piper's symbols).
    pub phonemes: String,
    /// Mono samples in -1..=1 at [`Voice::sample_rate`].
    pub samples: Vec<f32>,
    pub phonemize_ms: f64,
    pub synth_ms: f64,
}

/// A whole answer spoken.
#[derive(Debug, Clone)]
pub struct Speech {
    pub sample_rate: u32,
    pub sentences: Vec<SpokenSentence>,
}

impl Speech {
    pub fn samples(&self) -> Vec<f32> {
        self.sentences
            .iter()
            .flat_map(|s| s.samples.iter().copied())
            .collect()
    }

    pub fn duration_s(&self) -> f64 {
        self.sentences
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>() as f64
            / f64::from(self.sample_rate)
    }

    pub fn synth_ms(&self) -> f64 {
        self.sentences
            .iter()
            .map(|s| s.phonemize_ms + s.synth_ms)
            .sum()
    }
}

/// A Piper voice, loaded once.
pub struct Voice {
    model: OnnxModel,
    config: VoiceConfig,
    espeak: Espeak,
    model_path: PathBuf,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("model", &self.model_path)
            .field("sample_rate", &self.config.sample_rate)
            .finish()
    }
}

impl Voice {
    /// Loads `model` (the `.onnx`) with its `config` (the `.onnx.json`) and checks
    /// they belong together by running every phoneme id the config names once.
    pub fn load(model: &Path, config: &Path, options: &VoiceOptions) -> Result<Self, TtsError> {
        let cfg = VoiceConfig::load(config)?;
        let onnx = OnnxModel::load_typed(
            model,
            &[
                ("input", &[1, 1], aisle_onnx::InputType::I64),
                ("input_lengths", &[1], aisle_onnx::InputType::I64),
                ("scales", &[3], aisle_onnx::InputType::F32),
            ],
            &OnnxOptions {
                engine: Engine::OnnxRuntime,
                threads: options.threads,
                ort_library: Some(options.ort_library.clone()),
            },
        )?;
        let mut espeak = Espeak::new(&cfg.espeak_voice);
        espeak.program = options.espeak.clone();
        let voice = Voice {
            model: onnx,
            espeak,
            model_path: model.to_path_buf(),
            config: cfg,
        };
        // The highest id the config uses must exist in the model's embedding table.
        let probe = vec![
            voice.config.ids(&[])[0],
            voice.config.max_id(),
            voice.config.max_id(),
            *voice.config.ids(&[]).last().unwrap_or(&0),
        ];
        voice.run(&probe).map_err(|e| TtsError::Mismatch {
            model: model.to_path_buf(),
            config: config.to_path_buf(),
            message: match e {
                TtsError::Onnx(OnnxError::Run { message, .. }) => message,
                other => other.to_string(),
            },
        })?;
        Ok(voice)
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// The text as it will be read, cut into sentences.
    pub fn prepare(&self, text: &str) -> Result<Vec<String>, TtsError> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(TtsError::TooLong {
                chars,
                limit: MAX_TEXT_CHARS,
            });
        }
        let mut sentences = normalize::sentences(&normalize::normalize(text));
        if sentences.is_empty() {
            return Err(TtsError::Empty);
        }
        // A long first sentence starts at its first clause, so the first audio comes
        // sooner; the clause's own punctuation gives the pause a comma would.
        if let Some((head, rest)) = normalize::first_clause(&sentences[0], FIRST_CHUNK_CHARS) {
            sentences.splice(0..1, [head, rest]);
        }
        Ok(sentences)
    }

    fn synthesize(
        &self,
        sentence: &str,
        phonemes: &[char],
        phonemize_ms: f64,
    ) -> Result<SpokenSentence, TtsError> {
        let ids = self.config.ids(phonemes);
        let t1 = Instant::now();
        // BOS, PAD, EOS alone: nothing the voice could say.
        let samples = if ids.len() <= 3 {
            Vec::new()
        } else {
            self.run(&ids)?
        };
        Ok(SpokenSentence {
            text: sentence.to_string(),
            phonemes: phonemes.iter().collect(),
            samples,
            phonemize_ms,
            synth_ms: t1.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Speaks `text`, calling `each` with every sentence as soon as it is made;
    /// `each` returns false to stop (barge-in). The whole answer is phonemised by one
    /// espeak-ng process first (its time is counted on the first sentence).
    pub fn stream(
        &self,
        text: &str,
        mut each: impl FnMut(&SpokenSentence) -> bool,
    ) -> Result<Speech, TtsError> {
        let sentences = self.prepare(text)?;
        let t0 = Instant::now();
        let phonemes = self.espeak.phonemize_many(&sentences)?;
        let mut phonemize_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut spoken = Vec::new();
        for (s, p) in sentences.iter().zip(&phonemes) {
            let out = self.synthesize(s, p, std::mem::take(&mut phonemize_ms))?;
            let go_on = each(&out);
            spoken.push(out);
            if !go_on {
                break;
            }
        }
        if spoken.iter().all(|s| s.samples.is_empty()) {
            return Err(TtsError::Empty);
        }
        Ok(Speech {
            sample_rate: self.config.sample_rate,
            sentences: spoken,
        })
    }

    /// Speaks `text` whole.
    pub fn speak(&self, text: &str) -> Result<Speech, TtsError> {
        self.stream(text, |_| true)
    }

    fn run(&self, ids: &[i64]) -> Result<Vec<f32>, TtsError> {
        let input =
            Array2::from_shape_vec((1, ids.len()), ids.to_vec()).map_err(|e| TtsError::Output {
                path: self.model_path.clone(),
                message: e.to_string(),
            })?;
        let lengths = Array1::from_vec(vec![ids.len() as i64]);
        let scales = Array1::from_vec(vec![
            self.config.noise_scale,
            self.config.length_scale,
            self.config.noise_w,
        ]);
        let out = self.model.run_inputs(&[
            Input::I64(input.view().into_dyn()),
            Input::I64(lengths.view().into_dyn()),
            Input::F32(scales.view().into_dyn()),
        ])?;
        let audio = out.into_iter().next().ok_or_else(|| TtsError::Output {
            path: self.model_path.clone(),
            message: "no output".into(),
        })?;
        let mut samples: Vec<f32> = audio.into_iter().collect();
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(TtsError::Output {
                path: self.model_path.clone(),
                message: "non-finite samples".into(),
            });
        }
        // Piper scales each sentence to full range.
        let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let gain = if peak < 1e-8 { 0.0 } else { 1.0 / peak };
        for s in &mut samples {
            *s = (*s * gain).clamp(-1.0, 1.0);
        }
        Ok(samples)
    }
}

/// 16-bit PCM, little-endian (what WAV files and the WebSocket carry).
pub fn pcm16(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A mono 16-bit WAV file in memory.
pub fn wav_bytes(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data = pcm16(samples);
    let mut out = Vec::with_capacity(44 + data.len());
    let len = data.len() as u32;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&data);
    out
}
