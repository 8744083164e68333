//! Speech recognition with whisper.cpp (whisper-rs) on the ggml file imported from
//! the real CTranslate2 weights.

use std::path::PathBuf;

use aisle_models::VerifiedArtifact;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::error::{Result, SpeechError};

/// One recognised stretch of text, in milliseconds from the start of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// Mean probability of the segment's text tokens.
    pub confidence: f32,
}

/// A loaded whisper model. Decoding state is created per call, so one model can
/// serve several streams. (Reusing one state across utterances was tried: with a
/// per-utterance `audio_ctx` it changes the output, WER 0.201 -> 0.296 on the test
/// questions, so a fresh state per utterance is deliberate.)
pub struct Whisper {
    ctx: WhisperContext,
    path: PathBuf,
    threads: usize,
    /// The language spoken (`dialogue.language`), a whisper language code.
    language: String,
    /// One decode at a time: ggml's thread pool spin-waits, so two decodes sharing
    /// the cores each run several times slower than two in a row.
    decode: std::sync::Mutex<()>,
}

impl Whisper {
    /// Loads `ggml-model.bin` from a verified artifact.
    pub fn load(artifact: &VerifiedArtifact, threads: usize) -> Result<Self> {
        let path = artifact.path("ggml-model.bin")?.to_path_buf();
        whisper_rs::install_logging_hooks();
        let params = WhisperContextParameters {
            use_gpu: false,
            ..WhisperContextParameters::default()
        };
        let ctx =
            WhisperContext::new_with_params(&path, params).map_err(|e| SpeechError::Whisper {
                path: path.clone(),
                message: format!("cannot load: {e}"),
            })?;
        Ok(Self {
            ctx,
            path,
            threads: threads.max(1),
            language: "en".into(),
            decode: std::sync::Mutex::new(()),
        })
    }

    /// Decodes `lang` (a whisper language code such as `en`, `de`) from now on. An
    /// English-only model (`*.en`) takes only `en`.
    pub fn set_language(&mut self, lang: &str) -> Result<()> {
        if whisper_rs::get_lang_id(lang).is_none() {
            return Err(self.err(format!("whisper knows no language {lang:?}")));
        }
        if lang != "en" && !self.ctx.is_multilingual() {
            return Err(self.err(format!(
                "this model speaks only English; language {lang:?} needs a multilingual model (models.asr)"
            )));
        }
        self.language = lang.to_string();
        Ok(())
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    fn err(&self, message: impl Into<String>) -> SpeechError {
        SpeechError::Whisper {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Transcribes one utterance (16 kHz mono). `prompt` biases the decoder towards
    /// its words (product and brand names). `offset_ms` is added to the timings.
    pub fn transcribe(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        offset_ms: u64,
    ) -> Result<Vec<TextSegment>> {
        self.decode(samples, prompt, offset_ms, false)
    }

    /// A partial transcript of speech still in progress: one greedy pass, no
    /// temperature fallback, one segment. Audio cut mid-word can send the decoder
    /// into a loop; the fallback would then re-decode up to five times (2.6 s measured
    /// on a 3 s clip), which a partial cannot afford.
    pub fn transcribe_partial(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        offset_ms: u64,
    ) -> Result<Vec<TextSegment>> {
        self.decode(samples, prompt, offset_ms, true)
    }

    fn decode(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        offset_ms: u64,
        quick: bool,
    ) -> Result<Vec<TextSegment>> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self
            .ctx
            .create_state()
            .map_err(|e| self.err(format!("cannot create state: {e}")))?;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_language(Some(&self.language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        // Encode only as much of the 30 s window as the utterance needs (50 frames/s),
        // with a margin: short questions otherwise pay for 30 s of encoder work.
        let seconds = samples.len() as f64 / 16_000.0;
        let audio_ctx = ((seconds * 50.0).ceil() as i32 + 64).min(1500);
        params.set_audio_ctx(audio_ctx);
        // Shoppers say ~3 words (~4 tokens) a second: a bound on tokens per segment
        // stops a repetition loop early (a partial over 1.2 s of audio once looped
        // "Where can I find the." five times, 4 s of decoding on a loaded machine).
        if quick {
            params.set_max_tokens((seconds * 6.0).ceil() as i32 + 4);
            params.set_temperature_inc(0.0);
            params.set_single_segment(true);
        }
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            params.set_initial_prompt(p);
        }
        // whisper.cpp needs at least 1 s of audio; pad short utterances with silence.
        let padded;
        let input = if samples.len() < 16_000 + 1_600 {
            let mut v = samples.to_vec();
            v.resize(16_000 + 1_600, 0.0);
            padded = v;
            &padded[..]
        } else {
            samples
        };
        let guard = self
            .decode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .full(params, input)
            .map_err(|e| self.err(format!("decoding failed: {e}")))?;
        drop(guard);
        let eot = self.ctx.token_eot();
        let mut out = Vec::new();
        for seg in state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| self.err(e.to_string()))?
                .trim()
                .to_string();
            if text.is_empty() {
                continue;
            }
            let mut sum = 0.0f32;
            let mut n = 0;
            for i in 0..seg.n_tokens() {
                if let Some(tok) = seg.get_token(i)
                    && tok.token_id() < eot
                {
                    sum += tok.token_probability();
                    n += 1;
                }
            }
            // With a shortened encoder window whisper sometimes decodes the same
            // sentence again as a second segment; a verbatim repeat is dropped.
            let same = |a: &str, b: &str| crate::wer::normalise(a) == crate::wer::normalise(b);
            if out
                .last()
                .is_some_and(|prev: &TextSegment| same(&prev.text, &text))
            {
                tracing::debug!("dropped a repeated segment");
                continue;
            }
            out.push(TextSegment {
                // whisper timestamps are in centiseconds.
                start_ms: offset_ms + (seg.start_timestamp().max(0) as u64) * 10,
                end_ms: offset_ms + (seg.end_timestamp().max(0) as u64) * 10,
                text,
                confidence: if n > 0 { sum / n as f32 } else { 0.0 },
            });
        }
        Ok(out)
    }
}
