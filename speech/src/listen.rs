//! Live transcription: an [`AudioSource`] in, partial and final transcripts out.
//!
//! One loop, no hidden threads: read what the source has, bring it to 16 kHz mono,
//! run the VAD frame by frame, and decide. Whisper runs only when the loop has caught
//! up with the source (the microphone keeps filling its ring buffer meanwhile):
//! - a *partial* every `partial_every_ms` of an utterance still being spoken;
//! - a *speculative final* as soon as the speaker pauses (a few silent frames): the
//!   utterance is decoded while the endpointer still waits out `min_silence_ms`. If
//!   nobody speaks again, that text is the final one, so the latency from end of speech
//!   to final text is about max(min_silence, decode) instead of their sum.
//! - an *endpoint by what was said*: the speculative text is read as
//!   [`Ending::Finished`] (it ends in `.`, `?` or `!`, or it is question-shaped: a
//!   question word first, three words or more, a content word last), so
//!   `early_endpoint_ms` of silence ends the utterance; [`Ending::Unfinished`] (it ends
//!   in an article, preposition or conjunction, a comma or an ellipsis: "where can I
//!   find the..."), so the shopper may pause up to `hold_ms` in the middle of the
//!   question; or [`Ending::Open`], which ends after the VAD's `min_silence_ms` as
//!   before. Whisper's punctuation and the question's shape are the cues that the
//!   shopper finished rather than paused.
//!
//! Memory is bounded: audio is kept only for the open utterance (at most
//! `max_utterance_ms`, then it is cut) plus the pre-roll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::asr::TextSegment;
use crate::error::Result;
use crate::resample::Resampler16k;
use crate::source::AudioSource;
use crate::vad::{FRAME, Segment};
use crate::{Transcriber, join_text, mean_confidence};

/// Silent frames (32 ms each) after which the speculative decode starts.
const SPECULATE_AFTER_FRAMES: usize = 2;

#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// How often a partial transcript is produced while someone speaks.
    pub partial_every_ms: u32,
    /// Longest utterance; a longer one is cut and finalised.
    pub max_utterance_ms: u32,
    /// Decoder prompt (product and brand names).
    pub prompt: Option<String>,
    /// Silence that ends an utterance whose speculative text is a finished sentence
    /// (0: always wait for the VAD's `min_silence_ms`).
    pub early_endpoint_ms: u32,
    /// Longest pause inside a question whose text so far is unfinished ("where can I
    /// find the ..."): the utterance stays open this long.
    pub hold_ms: u32,
}

/// How the words heard so far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A finished sentence or question: end soon.
    Finished,
    /// Cut mid-phrase: wait longer.
    Unfinished,
    /// Neither: the VAD's silence rule decides.
    Open,
}

/// Words after which a question cannot have ended.
const CONNECTORS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "of", "for", "with", "to", "in", "on", "at", "from",
    "by", "about", "than", "if", "some", "my", "your", "this", "that", "these", "those", "is",
    "are", "was", "any", "um", "uh", "er", "like", "so", "because", "where", "what", "how",
    "which", "do", "does", "can", "could", "there", "i", "you",
];

/// Words a shopper's question starts with.
const QUESTION_WORDS: &[&str] = &[
    "how", "what", "what's", "where", "where's", "which", "who", "when", "why", "is", "are", "do",
    "does", "did", "can", "could", "would", "will", "have", "has", "any", "got", "show", "tell",
    "find", "i'm", "i",
];

/// Reads how `text` (whisper's output so far) ends.
pub fn ending(text: &str) -> Ending {
    let t = text.trim();
    if t.ends_with("...") || t.ends_with(['\u{2026}', ',', '-', ':', ';']) {
        return Ending::Unfinished;
    }
    let words: Vec<String> = t
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last() else {
        return Ending::Open;
    };
    if CONNECTORS.contains(&last.as_str()) {
        return Ending::Unfinished;
    }
    if t.ends_with(['.', '?', '!']) {
        return Ending::Finished;
    }
    if words.len() >= 3 && QUESTION_WORDS.contains(&words[0].as_str()) {
        return Ending::Finished;
    }
    Ending::Open
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            partial_every_ms: 1000,
            max_utterance_ms: 30_000,
            prompt: None,
            early_endpoint_ms: 250,
            hold_ms: 1200,
        }
    }
}

/// A finished utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub text: String,
    /// Segment times are from the start of the stream.
    pub segments: Vec<TextSegment>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
    /// Wall-clock time from the arrival of the last voiced audio to this final text:
    /// the endpointing wait plus whatever decoding was not already done.
    pub endpoint_latency_ms: u64,
    /// Time whisper took on the final text.
    pub decode_ms: u64,
    /// The final text came from the decode started at the pause.
    pub speculative: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenEvent {
    SpeechStart { at_ms: u64 },
    Partial { at_ms: u64, text: String },
    Final(Utterance),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenSummary {
    pub utterances: usize,
    /// Audio consumed, at 16 kHz.
    pub audio_ms: u64,
    /// Samples the microphone dropped because the loop fell behind.
    pub dropped_samples: u64,
}

struct Speculation {
    run: (usize, usize),
    segments: Vec<TextSegment>,
    decode_ms: u64,
    /// How the text ends.
    ending: Ending,
}

/// The open utterance's audio (and the pre-roll before it), by absolute sample index.
struct History {
    base: usize,
    buf: Vec<f32>,
}

impl History {
    fn end(&self) -> usize {
        self.base + self.buf.len()
    }
    fn slice(&self, from: usize, to: usize) -> &[f32] {
        let a = from.clamp(self.base, self.end()) - self.base;
        let b = to.clamp(self.base, self.end()) - self.base;
        &self.buf[a..b.max(a)]
    }
    fn keep_last(&mut self, n: usize) {
        if self.buf.len() > n {
            let cut = self.buf.len() - n;
            self.buf.drain(..cut);
            self.base += cut;
        }
    }
}

impl Transcriber {
    /// Runs until the source ends or `stop` is set, calling `on_event` for every
    /// speech start, partial and final.
    pub fn listen(
        &self,
        source: &mut dyn AudioSource,
        cfg: &ListenConfig,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(ListenEvent),
    ) -> Result<ListenSummary> {
        let channels = source.channels().max(1) as usize;
        let rate = source.sample_rate();
        let mut resampler = Resampler16k::new(rate)?;
        let pad = self.vad_cfg.pre_roll_ms as usize * 16;
        let max_frames = (cfg.max_utterance_ms as usize * 16).div_ceil(FRAME).max(1);
        let partial_frames = (cfg.partial_every_ms as usize * 16).div_ceil(FRAME).max(1);
        let min_speech_frames = (self.vad_cfg.min_speech_ms as usize * 16).div_ceil(FRAME);
        let prompt = cfg.prompt.as_deref();
        let early_frames = (cfg.early_endpoint_ms as usize * 16).div_ceil(FRAME);
        // The VAD's own end-of-utterance silence, for text that is neither finished
        // nor cut mid-phrase; the segmenter itself waits up to the hold.
        let silence_frames = (self.vad_cfg.min_silence_ms as usize * 16)
            .div_ceil(FRAME)
            .max(1);
        let seg_cfg = crate::VadConfig {
            min_silence_ms: self.vad_cfg.min_silence_ms.max(cfg.hold_ms),
            ..self.vad_cfg
        };

        let mut raw = Vec::with_capacity(rate as usize * channels);
        let mut mono = Vec::with_capacity(rate as usize);
        let mut pending: Vec<f32> = Vec::with_capacity(TARGET_CHUNK);
        let mut history = History {
            base: 0,
            buf: Vec::with_capacity(max_frames * FRAME + 2 * pad + FRAME),
        };
        let mut vad = self.vad.stream();
        let mut seg = crate::Segmenter::new(seg_cfg);
        let mut last_voiced_at = Instant::now();
        let mut last_partial_frame = 0usize;
        let mut partial_cost = 0usize;
        let mut spec: Option<Speculation> = None;
        let mut summary = ListenSummary::default();

        // Decodes the open run so far: what was said decides how long a pause ends it.
        let speculate =
            |history: &History, run: (usize, usize), now_frame: usize| -> Result<Speculation> {
                let from = (run.0 * FRAME).saturating_sub(pad);
                let t = Instant::now();
                let audio = history.slice(from, now_frame * FRAME);
                let segments = self.whisper.transcribe(audio, prompt, from as u64 / 16)?;
                let ending = ending(&join_text(&segments));
                tracing::debug!(
                    ?run,
                    now_frame,
                    ?ending,
                    ms = t.elapsed().as_millis(),
                    "speculative decode"
                );
                Ok(Speculation {
                    run,
                    segments,
                    decode_ms: t.elapsed().as_millis() as u64,
                    ending,
                })
            };

        let finalize = |s: Segment,
                        run: Option<(usize, usize)>,
                        history: &History,
                        spec: &mut Option<Speculation>,
                        last_voiced_at: Instant,
                        on_event: &mut dyn FnMut(ListenEvent)|
         -> Result<bool> {
            let reuse = spec.take().filter(|sp| Some(sp.run) == run);
            let (segments, decode_ms, speculative) = match reuse {
                Some(sp) => (sp.segments, sp.decode_ms, true),
                None => {
                    let t = Instant::now();
                    let audio = history.slice(s.start, s.end);
                    let segs = self.whisper.transcribe(audio, prompt, s.start_ms())?;
                    (segs, t.elapsed().as_millis() as u64, false)
                }
            };
            let text = join_text(&segments);
            if text.is_empty() {
                return Ok(false);
            }
            on_event(ListenEvent::Final(Utterance {
                confidence: mean_confidence(&segments),
                text,
                segments,
                start_ms: s.start_ms(),
                end_ms: s.end_ms(),
                endpoint_latency_ms: last_voiced_at.elapsed().as_millis() as u64,
                decode_ms,
                speculative,
            }));
            Ok(true)
        };

        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            raw.clear();
            let more = source.read(&mut raw, Duration::from_millis(50))?;
            let arrived = Instant::now();
            mono.clear();
            if channels == 1 {
                mono.extend_from_slice(&raw);
            } else {
                mono.extend(
                    raw.chunks_exact(channels)
                        .map(|f| f.iter().sum::<f32>() / channels as f32),
                );
            }
            resampler.push(&mono, &mut pending)?;
            if !more {
                resampler.finish(&mut pending)?;
                // The last partial frame, zero-padded.
                let rem = pending.len() % FRAME;
                if rem != 0 {
                    pending.resize(pending.len() + FRAME - rem, 0.0);
                }
            }
            let mut pos = 0;
            while pending.len() - pos >= FRAME {
                let frame = &pending[pos..pos + FRAME];
                pos += FRAME;
                // When this frame's last sample was captured: a backlog read after a
                // decode carries audio that arrived while whisper was busy.
                let behind_us = (pending.len() - pos) as u64 * 1_000_000 / 16_000;
                let frame_arrived = arrived
                    .checked_sub(Duration::from_micros(behind_us))
                    .unwrap_or(arrived);
                history.buf.extend_from_slice(frame);
                let p = vad.frame(frame)?;
                let was_speaking = seg.in_speech();
                let run = seg.current();
                if let Some(s) = seg.push(p)
                    && finalize(s, run, &history, &mut spec, last_voiced_at, on_event)?
                {
                    summary.utterances += 1;
                }
                match seg.current() {
                    Some((start, voiced_end)) => {
                        if voiced_end == seg.frames() {
                            last_voiced_at = frame_arrived;
                        }
                        if !was_speaking {
                            last_partial_frame = start;
                            // Each utterance gets its first partial on time.
                            partial_cost = 0;
                            on_event(ListenEvent::SpeechStart {
                                at_ms: (start * FRAME) as u64 / 16,
                            });
                        }
                        // How long a pause ends this utterance, by what was said. A loop
                        // that never caught up with its source (a file read at full speed)
                        // has not decoded yet: it does now, before the VAD's silence ends it.
                        if seg.trailing_silence() >= silence_frames
                            && spec.as_ref().is_none_or(|sp| sp.run != (start, voiced_end))
                            && voiced_end - start >= min_speech_frames
                        {
                            spec = Some(speculate(&history, (start, voiced_end), seg.frames())?);
                        }
                        let current = spec.as_ref().filter(|sp| sp.run == (start, voiced_end));
                        let needed = match current.map(|sp| sp.ending) {
                            Some(Ending::Finished) if early_frames > 0 => early_frames,
                            Some(Ending::Unfinished) => usize::MAX, // the segmenter's hold
                            _ => silence_frames,
                        };
                        let early = seg.trailing_silence() >= needed;
                        if early || seg.frames() - start >= max_frames {
                            let run = seg.current();
                            if let Some(s) = seg.finish(history.end())
                                && finalize(s, run, &history, &mut spec, last_voiced_at, on_event)?
                            {
                                summary.utterances += 1;
                            }
                        }
                    }
                    None => history.keep_last(pad + FRAME),
                }
            }
            pending.drain(..pos);

            if !more {
                let run = seg.current();
                if let Some(s) = seg.finish(history.end())
                    && finalize(s, run, &history, &mut spec, last_voiced_at, on_event)?
                {
                    summary.utterances += 1;
                }
                break;
            }

            // Decode only when caught up with the source (less than 100 ms read).
            let caught_up = raw.len() / channels < rate as usize / 10;
            if let (true, Some((start, voiced_end))) = (caught_up, seg.current()) {
                let now_frame = seg.frames();
                let from = (start * FRAME).saturating_sub(pad);
                if seg.trailing_silence() >= SPECULATE_AFTER_FRAMES {
                    if spec.as_ref().is_none_or(|sp| sp.run != (start, voiced_end))
                        && voiced_end - start >= min_speech_frames
                    {
                        spec = Some(speculate(&history, (start, voiced_end), now_frame)?);
                    }
                } else if seg.trailing_silence() == 0
                    && now_frame - last_partial_frame >= partial_frames.max(2 * partial_cost)
                    && now_frame - start >= min_speech_frames
                {
                    last_partial_frame = now_frame;
                    tracing::debug!(start, now_frame, "partial decode");
                    let audio = history.slice(from, now_frame * FRAME);
                    let t = Instant::now();
                    let segments =
                        self.whisper
                            .transcribe_partial(audio, prompt, from as u64 / 16)?;
                    // On a loaded machine partials back off: at most half the time
                    // goes to them, so the final is not delayed behind a queue.
                    partial_cost = (t.elapsed().as_millis() as usize * 16).div_ceil(FRAME);
                    let text = join_text(&segments);
                    if !text.is_empty() {
                        on_event(ListenEvent::Partial {
                            at_ms: (now_frame * FRAME) as u64 / 16,
                            text,
                        });
                    }
                }
            }
        }
        summary.audio_ms = (seg.frames() * FRAME) as u64 / 16;
        summary.dropped_samples = source.dropped();
        Ok(summary)
    }
}

const TARGET_CHUNK: usize = 16_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings() {
        for t in [
            "How much is a dozen eggs?",
            "Where can I find gluten free pasta and how much is it",
            "Do you have oat milk in stock.",
            "what's the damage on the sharp cheddar",
        ] {
            assert_eq!(ending(t), Ending::Finished, "{t}");
        }
        for t in [
            "Where can I find the",
            "How much is the...",
            "Is there a cheaper brand of",
            "I'm looking for,",
            "Where can I find the.",
        ] {
            assert_eq!(ending(t), Ending::Unfinished, "{t}");
        }
        for t in ["", "Bananas", "Organic peanut butter"] {
            assert_eq!(ending(t), Ending::Open, "{t}");
        }
    }
}
