//! Voice activity detection: the real Silero VAD (ONNX, through tract) streaming at
//! 16 kHz in 32 ms frames, and a pure segmenter that turns frame probabilities into
//! utterances (threshold with hysteresis, minimum speech and silence, pre-roll).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aisle_models::VerifiedArtifact;
use tract_onnx::prelude::*;

use crate::error::{Result, SpeechError};

/// Samples per VAD frame at 16 kHz (32 ms).
pub const FRAME: usize = 512;
/// Samples of left context the model sees with each frame.
const CONTEXT: usize = 64;
const STATE: [usize; 3] = [2, 1, 128];

/// Segmenter settings (from `thresholds.*` in the device config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    pub threshold: f32,
    pub min_speech_ms: u32,
    pub min_silence_ms: u32,
    pub pre_roll_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 500,
            pre_roll_ms: 200,
        }
    }
}

/// A voiced stretch, in 16 kHz samples (padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
}

impl Segment {
    pub fn start_ms(&self) -> u64 {
        self.start as u64 * 1000 / 16_000
    }
    pub fn end_ms(&self) -> u64 {
        self.end as u64 * 1000 / 16_000
    }
}

/// Pure state machine over per-frame speech probabilities.
#[derive(Debug, Clone)]
pub struct Segmenter {
    cfg: VadConfig,
    frames: usize,
    /// Frame where the current speech run started.
    start: Option<usize>,
    /// Frame after the last voiced frame of the current run.
    last_voiced_end: usize,
    silence: usize,
}

fn ms_to_frames(ms: u32) -> usize {
    (ms as usize * 16).div_ceil(FRAME)
}

impl Segmenter {
    pub fn new(cfg: VadConfig) -> Self {
        Self {
            cfg,
            frames: 0,
            start: None,
            last_voiced_end: 0,
            silence: 0,
        }
    }

    /// Whether speech is in progress.
    pub fn in_speech(&self) -> bool {
        self.start.is_some()
    }

    /// The open run, if any: (first voiced frame, frame after the last voiced one).
    pub fn current(&self) -> Option<(usize, usize)> {
        self.start.map(|s| (s, self.last_voiced_end))
    }

    /// Silent frames since the last voiced one in the open run.
    pub fn trailing_silence(&self) -> usize {
        self.silence
    }

    /// Frames seen so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    fn close(&mut self, total_samples: usize) -> Option<Segment> {
        self.silence = 0;
        let start = self.start.take()?;
        let voiced = self.last_voiced_end - start;
        if voiced < ms_to_frames(self.cfg.min_speech_ms) {
            return None;
        }
        let pad = self.cfg.pre_roll_ms as usize * 16;
        Some(Segment {
            start: (start * FRAME).saturating_sub(pad),
            end: (self.last_voiced_end * FRAME + pad).min(total_samples),
        })
    }

    /// Feeds one frame's probability; returns a segment when an utterance ended
    /// (the end-of-utterance decision comes `min_silence_ms` after the last voiced frame).
    pub fn push(&mut self, p: f32) -> Option<Segment> {
        let i = self.frames;
        self.frames += 1;
        let negative = (self.cfg.threshold - 0.15).max(0.01);
        if p >= self.cfg.threshold {
            if self.start.is_none() {
                self.start = Some(i);
            }
            self.last_voiced_end = i + 1;
            self.silence = 0;
            return None;
        }
        if self.start.is_some() {
            if p < negative {
                self.silence += 1;
            } else {
                // Between the thresholds: still speech, as far as ending is concerned.
                self.last_voiced_end = i + 1;
                self.silence = 0;
            }
            if self.silence >= ms_to_frames(self.cfg.min_silence_ms).max(1) {
                self.silence = 0;
                return self.close(usize::MAX);
            }
        }
        None
    }

    /// Ends the stream: a run still open becomes a segment.
    pub fn finish(&mut self, total_samples: usize) -> Option<Segment> {
        self.close(total_samples)
    }
}

/// Overlapping or touching segments (after padding) are merged.
pub fn merge(segments: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for s in segments {
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// The Silero VAD model, planned once.
pub struct SileroVad {
    plan: Arc<TypedRunnableModel>,
    path: PathBuf,
}

impl SileroVad {
    /// Loads `silero_vad_openvino_16k.onnx` from a verified artifact.
    pub fn load(artifact: &VerifiedArtifact) -> Result<Self> {
        let path = artifact.path("silero_vad_openvino_16k.onnx")?.to_path_buf();
        let err = |e: TractError| SpeechError::Vad {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let mut model = tract_onnx::onnx().model_for_path(&path).map_err(err)?;
        // The exported graph names 15 constants "F0::anon"; tract's optimiser needs
        // unique names, so duplicates get their node id appended (same computation:
        // 0.0017 on silence either way, 0.3 ms per frame instead of 7 ms unoptimised).
        let mut seen = std::collections::HashSet::new();
        for node in model.nodes.iter_mut() {
            if !seen.insert(node.name.clone()) {
                node.name = format!("{}#{}", node.name, node.id);
            }
        }
        let plan = model
            .with_input_fact(0, f32::fact([1, CONTEXT + FRAME]).into())
            .and_then(|m| m.with_input_fact(1, f32::fact(STATE).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Self { plan, path })
    }

    /// A fresh stream (state and context reset).
    pub fn stream(&self) -> VadStream<'_> {
        VadStream {
            vad: self,
            state: Tensor::zero::<f32>(&STATE).unwrap_or_else(|_| Tensor::from(0f32)),
            window: vec![0.0; CONTEXT + FRAME],
        }
    }

    /// Speech probability of every 32 ms frame of a 16 kHz clip (the last partial
    /// frame is zero-padded).
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let mut stream = self.stream();
        let mut out = Vec::with_capacity(samples.len().div_ceil(FRAME));
        for chunk in samples.chunks(FRAME) {
            out.push(stream.frame(chunk)?);
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Streaming state of one audio stream.
pub struct VadStream<'a> {
    vad: &'a SileroVad,
    state: Tensor,
    window: Vec<f32>,
}

impl VadStream<'_> {
    /// Probability that this frame (up to 512 samples, zero-padded) is speech.
    pub fn frame(&mut self, samples: &[f32]) -> Result<f32> {
        let n = samples.len().min(FRAME);
        // Keep the last CONTEXT samples of the previous window as context.
        self.window.copy_within(FRAME.., 0);
        self.window[CONTEXT..CONTEXT + n].copy_from_slice(&samples[..n]);
        self.window[CONTEXT + n..].fill(0.0);
        let err = |e: TractError| SpeechError::Vad {
            path: self.vad.path.clone(),
            message: format!("{e:#}"),
        };
        let input = Tensor::from_shape(&[1, CONTEXT + FRAME], &self.window).map_err(err)?;
        let out = self
            .vad
            .plan
            .run(tvec!(input.into(), self.state.clone().into()))
            .map_err(err)?;
        let p = out[0]
            .to_plain_array_view::<f32>()
            .map_err(err)?
            .iter()
            .next()
            .copied()
            .unwrap_or(0.0);
        self.state = out[1].clone().into_tensor();
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: VadConfig, probs: &[f32]) -> Vec<Segment> {
        let mut s = Segmenter::new(cfg);
        let mut out: Vec<Segment> = probs.iter().filter_map(|&p| s.push(p)).collect();
        out.extend(s.finish(probs.len() * FRAME));
        out
    }

    const CFG: VadConfig = VadConfig {
        threshold: 0.5,
        min_speech_ms: 250,
        min_silence_ms: 320,
        pre_roll_ms: 0,
    };

    #[test]
    fn segmenter_table() {
        let speech = |n: usize| vec![0.9; n];
        let silence = |n: usize| vec![0.01; n];
        type Case = (Vec<f32>, Vec<(usize, usize)>);
        let cases: Vec<Case> = vec![
            (silence(100), vec![]),
            // 8 frames = 256 ms of speech: kept.
            ([silence(5), speech(8), silence(20)].concat(), vec![(5, 13)]),
            // 7 frames = 224 ms: too short, dropped.
            ([silence(5), speech(7), silence(20)].concat(), vec![]),
            // A pause shorter than min_silence (10 frames) does not split.
            (
                [speech(10), silence(9), speech(10), silence(20)].concat(),
                vec![(0, 29)],
            ),
            // A longer pause splits.
            (
                [speech(10), silence(10), speech(10), silence(20)].concat(),
                vec![(0, 10), (20, 30)],
            ),
            // Between the thresholds (0.35..0.5) continues speech.
            (
                [speech(10), vec![0.4; 15], silence(20)].concat(),
                vec![(0, 25)],
            ),
            // Speech running to the end of the stream.
            ([silence(3), speech(12)].concat(), vec![(3, 15)]),
        ];
        for (probs, expected) in cases {
            let got: Vec<(usize, usize)> = run(CFG, &probs)
                .iter()
                .map(|s| (s.start / FRAME, s.end / FRAME))
                .collect();
            assert_eq!(got, expected, "{probs:?}");
        }
    }

    #[test]
    fn pre_roll_pads_and_merges() {
        let cfg = VadConfig {
            pre_roll_ms: 64,
            ..CFG
        };
        let probs = [vec![0.01; 5], vec![0.9; 10], vec![0.01; 30]].concat();
        let segs = run(cfg, &probs);
        assert_eq!(
            segs,
            vec![Segment {
                start: 5 * FRAME - 1024,
                end: 15 * FRAME + 1024
            }]
        );
        let merged = merge(vec![
            Segment { start: 0, end: 100 },
            Segment {
                start: 90,
                end: 200,
            },
            Segment {
                start: 300,
                end: 400,
            },
        ]);
        assert_eq!(
            merged,
            vec![
                Segment { start: 0, end: 200 },
                Segment {
                    start: 300,
                    end: 400
                }
            ]
        );
    }
}
