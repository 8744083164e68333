//! On-device speech: audio in, transcript out.
//!
//! Key design decision: only voiced audio reaches whisper. Every input (file or
//! microphone) is first brought to 16 kHz mono, then the real Silero VAD marks speech
//! frame by frame and a pure segmenter cuts utterances; whisper decodes each utterance
//! on its own, with an encoder window sized to it. Silence and noise therefore give an
//! empty transcript instead of a hallucination, and short questions do not pay for
//! 30 s of encoder work.
//!
//! Architecture invariant: models come in as verified artifacts of the model store and
//! are planned once ([`Transcriber::load`]); nothing is loaded per utterance. No raw
//! audio is written anywhere by this crate.

pub mod asr;
pub mod audio;
mod error;
pub mod listen;
pub mod play;
pub mod resample;
pub mod source;
pub mod tts;
pub mod vad;
pub mod wer;
pub mod wire;

use std::path::Path;
use std::time::Instant;

use aisle_models::Store;

pub use asr::{TextSegment, Whisper};
pub use audio::{DecodedAudio, decode_wav, decode_wav_bytes};
pub use error::{Result, SpeechError};
pub use listen::{Ending, ListenConfig, ListenEvent, ListenSummary, Utterance, ending};
pub use play::Speaker;
pub use source::{AudioSource, FileSource, MicSource, input_devices};
pub use tts::{Speech, TtsError, Voice, VoiceOptions};
pub use vad::{Segment, Segmenter, SileroVad, VadConfig};

/// A final transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<TextSegment>,
    pub language: String,
    /// Voiced stretches that were decoded (16 kHz sample offsets).
    pub speech: Vec<Segment>,
    pub audio_ms: u64,
    pub processing_ms: u64,
    /// Mean token probability over the transcript (0 when empty).
    pub confidence: f32,
}

impl Transcript {
    /// Processing time over audio time.
    pub fn real_time_factor(&self) -> f64 {
        if self.audio_ms == 0 {
            return 0.0;
        }
        self.processing_ms as f64 / self.audio_ms as f64
    }
}

/// VAD + whisper, loaded once.
pub struct Transcriber {
    vad: SileroVad,
    whisper: Whisper,
    vad_cfg: VadConfig,
}

impl Transcriber {
    /// Verifies and loads the named models from the store.
    pub fn load(
        store: &Store,
        asr_model: &str,
        vad_model: &str,
        vad_cfg: VadConfig,
        threads: usize,
    ) -> Result<Self> {
        let vad = SileroVad::load(&store.verify(vad_model, &mut |_| {})?)?;
        let whisper = Whisper::load(&store.verify(asr_model, &mut |_| {})?, threads)?;
        Ok(Self {
            vad,
            whisper,
            vad_cfg,
        })
    }

    /// Recognises `lang` (`dialogue.language`) instead of English.
    pub fn set_language(&mut self, lang: &str) -> Result<()> {
        self.whisper.set_language(lang)
    }

    /// Encodes whisper's whole 30 s window for every utterance (benchmarks: the
    /// same work as a peer), instead of the utterance plus a margin.
    pub fn set_full_window(&mut self, full: bool) {
        self.whisper.set_full_window(full);
    }

    /// Beam search with this many beams (1: greedy, the default).
    pub fn set_beam_size(&self, beams: usize) {
        self.whisper.set_beam_size(beams);
    }

    /// Voiced segments of a 16 kHz clip.
    pub fn speech_segments(&self, samples: &[f32]) -> Result<Vec<Segment>> {
        let probs = self.vad.probabilities(samples)?;
        let mut seg = Segmenter::new(self.vad_cfg);
        let mut found: Vec<Segment> = probs.iter().filter_map(|&p| seg.push(p)).collect();
        found.extend(seg.finish(samples.len()));
        let mut merged = vad::merge(found);
        for s in &mut merged {
            s.end = s.end.min(samples.len());
        }
        merged.retain(|s| s.end > s.start);
        Ok(merged)
    }

    /// Transcribes a 16 kHz mono clip.
    pub fn transcribe(&self, samples: &[f32], prompt: Option<&str>) -> Result<Transcript> {
        let t0 = Instant::now();
        let speech = self.speech_segments(samples)?;
        let vad_ms = t0.elapsed().as_millis();
        let mut segments = Vec::new();
        for s in &speech {
            segments.extend(self.whisper.transcribe(
                &samples[s.start..s.end],
                prompt,
                s.start_ms(),
            )?);
        }
        tracing::debug!(
            vad_ms,
            asr_ms = t0.elapsed().as_millis() - vad_ms,
            segments = speech.len(),
            "transcribed"
        );
        let text = join_text(&segments);
        let confidence = mean_confidence(&segments);
        Ok(Transcript {
            text,
            segments,
            language: self.whisper.language().to_string(),
            speech,
            audio_ms: samples.len() as u64 * 1000 / 16_000,
            processing_ms: t0.elapsed().as_millis() as u64,
            confidence,
        })
    }

    /// Decodes and transcribes an audio file.
    pub fn transcribe_file(
        &self,
        path: &Path,
        prompt: Option<&str>,
    ) -> Result<(DecodedAudio, Transcript)> {
        let audio = decode_wav(path)?;
        let transcript = self.transcribe(&audio.samples, prompt)?;
        Ok((audio, transcript))
    }
}

fn join_text(segments: &[TextSegment]) -> String {
    segments
        .iter()
        .map(|s| s.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn mean_confidence(segments: &[TextSegment]) -> f32 {
    if segments.is_empty() {
        0.0
    } else {
        segments.iter().map(|s| s.confidence).sum::<f32>() / segments.len() as f32
    }
}

/// "1.9 s", "950 ms".
pub fn format_ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}
