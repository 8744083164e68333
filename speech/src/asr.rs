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
    /// The model's name in the store (errors name it, not the blob).
    model: String,
    path: PathBuf,
    threads: usize,
    /// The language spoken (`dialogue.language`), a whisper language code.
    language: String,
    /// One decode at a time: ggml's thread pool spin-waits, so two decodes sharing
    /// the cores each run several times slower than two in a row.
    decode: std::sync::Mutex<()>,
    /// Encode the whole 30 s window, as whisper was trained (benchmarks: the same
    /// work as a peer that does), instead of the utterance plus a margin.
    full_window: bool,
    /// Beams of the decoder's search (1: greedy); settable on a shared transcriber.
    beam_size: std::sync::atomic::AtomicUsize,
}

/// Encoder frames (50 a second) kept past the utterance when the encoder window is
/// trimmed to it. 64 (1.3 s) lost words at the ends of questions. In `aisle bench
/// speech` (espeak-ng, tiny.en): WER 0.263 -> 0.222 on 90 questions (where 200 was
/// chosen, among 64/100/150/200/250) and 0.336 -> 0.296 on 30 requests held out;
/// faster-whisper int8 on the same weights and files: 0.243 and 0.292.
const ENCODER_MARGIN_FRAMES: i32 = 200;

impl Whisper {
    /// Loads `ggml-model.bin` from a verified artifact.
    pub fn load(artifact: &VerifiedArtifact, threads: usize) -> Result<Self> {
        let path = artifact.path("ggml-model.bin")?.to_path_buf();
        let model = artifact.manifest.name.clone();
        // whisper.cpp trusts the header: a file whose sizes lie (n_vocab = 0x7fffffff)
        // aborts the process from C++. Its layout is checked against its own header and
        // its length here first.
        let bad = |message: String| SpeechError::Whisper {
            model: model.clone(),
            path: path.clone(),
            message,
        };
        let file = aisle_models::ggml::read_whisper_ggml(&path)
            .map_err(|e| bad(format!("not a whisper.cpp model: {e}")))?;
        let problems = aisle_models::ggml::layout_mismatches(&file);
        if !problems.is_empty() {
            let shown: Vec<&str> = problems.iter().take(4).map(String::as_str).collect();
            return Err(bad(format!(
                "not a whisper.cpp model its header describes: {}{}",
                shown.join("; "),
                if problems.len() > 4 { "; ..." } else { "" }
            )));
        }
        drop(file);
        whisper_rs::install_logging_hooks();
        let params = WhisperContextParameters {
            use_gpu: false,
            ..WhisperContextParameters::default()
        };
        let ctx =
            WhisperContext::new_with_params(&path, params).map_err(|e| SpeechError::Whisper {
                model: artifact.manifest.name.clone(),
                path: path.clone(),
                message: format!("cannot load: {e}"),
            })?;
        Ok(Self {
            ctx,
            model: artifact.manifest.name.clone(),
            path,
            threads: threads.max(1),
            language: "en".into(),
            decode: std::sync::Mutex::new(()),
            full_window: false,
            beam_size: std::sync::atomic::AtomicUsize::new(1),
        })
    }

    /// Encodes the whole 30 s window for every utterance (see the field).
    pub fn set_full_window(&mut self, full: bool) {
        self.full_window = full;
    }

    /// Beam search with this many beams for final transcripts (1: greedy, the
    /// default; at most 8). Partials stay greedy.
    pub fn set_beam_size(&self, beams: usize) {
        self.beam_size
            .store(beams.clamp(1, 8), std::sync::atomic::Ordering::Relaxed);
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
            model: self.model.clone(),
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
        // Partials are decoded often and replaced soon: always greedy.
        let beams = self.beam_size.load(std::sync::atomic::Ordering::Relaxed);
        let mut params = FullParams::new(if beams > 1 && !quick {
            SamplingStrategy::BeamSearch {
                beam_size: beams as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        });
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
        if !self.full_window {
            let audio_ctx = ((seconds * 50.0).ceil() as i32 + ENCODER_MARGIN_FRAMES).min(1500);
            params.set_audio_ctx(audio_ctx);
        }
        // Shoppers say ~3 words (~4 tokens) a second: a bound on tokens per segment
        // stops a repetition loop early (a partial over 1.2 s of audio once looped
        // "Where can I find the." five times, 4 s of decoding on a loaded machine).
        if quick {
            params.set_max_tokens((seconds * 6.0).ceil() as i32 + 4);
            params.set_temperature_inc(0.0);
            params.set_single_segment(true);
        }
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            // whisper keeps at most half its text context of prompt and silently
            // drops the rest: a longer prompt is an error, not a quiet truncation.
            let max = (self.ctx.n_text_ctx() / 2).max(1) as usize;
            let n = self
                .ctx
                .tokenize(p, 4 * max)
                .map(|t| t.len())
                .unwrap_or(usize::MAX);
            if n > max {
                return Err(self.err(format!(
                    "the prompt is too long: more than {max} tokens (about {} words) are dropped by whisper; shorten it",
                    max * 3 / 4
                )));
            }
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
        let mut heard: Vec<Vec<String>> = Vec::new();
        let mut words = 0usize;
        let budget = (seconds * 4.5).ceil() as usize + 4;
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
            // sentence again and again (seen on synthesised answers: one sentence 3 to
            // 17 times, with variants). A sentence close to one already heard in this
            // utterance is dropped, and so is text past what anyone says in this much
            // audio (4.5 words a second).
            let Some(text) = dedup_sentences(&text, &mut heard, &mut words, budget) else {
                tracing::debug!("dropped a repeated or over-long segment");
                continue;
            };
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

/// `text` without the sentences that nearly repeat one in `heard` (word error rate
/// 0.34 or less against it) and cut where the utterance's word `budget` runs out;
/// `None` when nothing is left.
fn dedup_sentences(
    text: &str,
    heard: &mut Vec<Vec<String>>,
    words: &mut usize,
    budget: usize,
) -> Option<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut start = 0;
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let mut pieces = Vec::new();
    for (i, c) in &bytes {
        if matches!(c, '.' | '?' | '!') {
            let end = i + c.len_utf8();
            pieces.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    for piece in pieces {
        let norm = crate::wer::normalise(piece);
        if norm.is_empty() {
            continue;
        }
        let near = heard.iter().any(|h| {
            let (e, n) = crate::wer::word_errors(&h.join(" "), &norm.join(" "));
            n > 0 && (e as f64) / (n as f64) <= 0.34
        });
        if near {
            continue;
        }
        if *words + norm.len() > budget {
            // The first words up to the budget, then nothing more.
            let room = budget.saturating_sub(*words);
            if room > 0 {
                let head: Vec<&str> = piece.split_whitespace().take(room).collect();
                *words += room;
                kept.push(head.join(" "));
            }
            break;
        }
        *words += norm.len();
        heard.push(norm);
        kept.push(piece.trim().to_string());
    }
    (!kept.is_empty()).then(|| kept.join(" "))
}

#[cfg(test)]
mod tests {
    use super::dedup_sentences;

    #[test]
    fn repeated_sentences_and_runaway_text_are_dropped() {
        let mut heard = Vec::new();
        let mut words = 0;
        let t = "Yes, the rice crackers are gluten-free. Yes, these rice crackers are gluten-free. Yes?";
        assert_eq!(
            dedup_sentences(t, &mut heard, &mut words, 40).as_deref(),
            Some("Yes, the rice crackers are gluten-free. Yes?")
        );
        // A later segment repeating an earlier one is dropped whole.
        assert_eq!(
            dedup_sentences(
                "Yes, the rice crackers are gluten free.",
                &mut heard,
                &mut words,
                40
            ),
            None
        );
        // Two different questions stay.
        let (mut heard, mut words) = (Vec::new(), 0);
        let t = "How much is the banana? And where can I find it?";
        assert_eq!(
            dedup_sentences(t, &mut heard, &mut words, 40).as_deref(),
            Some(t)
        );
        // Past the word budget, text is cut.
        let (mut heard, mut words) = (Vec::new(), 0);
        assert_eq!(
            dedup_sentences(
                "One two three. Four five six. Seven eight.",
                &mut heard,
                &mut words,
                6
            )
            .as_deref(),
            Some("One two three. Four five six.")
        );
        // A runaway sentence keeps its first words.
        let (mut heard, mut words) = (Vec::new(), 0);
        assert_eq!(
            dedup_sentences(
                "free free free free free free free",
                &mut heard,
                &mut words,
                3
            )
            .as_deref(),
            Some("free free free")
        );
    }
}
