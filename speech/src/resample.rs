//! Streaming conversion of any rate to 16 kHz mono (rubato's sinc resampler).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::error::{Result, SpeechError};

pub const TARGET_HZ: u32 = 16_000;
const CHUNK: usize = 1024;

/// Feed mono samples at `from_hz` in any chunk sizes; get 16 kHz samples out.
pub struct Resampler16k {
    from_hz: u32,
    inner: Option<Async<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output frames still to drop (the filter's delay).
    skip: usize,
    /// Input frames consumed, to know how much output the tail should yield.
    consumed: u64,
    produced: u64,
}

impl Resampler16k {
    pub fn new(from_hz: u32) -> Result<Self> {
        if from_hz == 0 {
            return Err(SpeechError::Resample {
                from_hz,
                message: "sample rate 0".into(),
            });
        }
        let inner = if from_hz == TARGET_HZ {
            None
        } else {
            let params = SincInterpolationParameters {
                sinc_len: 128,
                f_cutoff: None,
                oversampling_factor: 128,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            let ratio = TARGET_HZ as f64 / from_hz as f64;
            let r = Async::<f32>::new_sinc(ratio, 1.0, &params, CHUNK, 1, FixedAsync::Input)
                .map_err(|e| SpeechError::Resample {
                    from_hz,
                    message: e.to_string(),
                })?;
            Some(r)
        };
        let (skip, max_out) = inner
            .as_ref()
            .map(|r| (r.output_delay(), r.output_frames_max()))
            .unwrap_or((0, 0));
        Ok(Self {
            from_hz,
            inner,
            pending: Vec::with_capacity(CHUNK * 2),
            out_buf: vec![0.0; max_out],
            skip,
            consumed: 0,
            produced: 0,
        })
    }

    fn run_chunk(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<()> {
        let Some(r) = self.inner.as_mut() else {
            return Ok(());
        };
        let from_hz = self.from_hz;
        let err = |e: &dyn std::fmt::Display| SpeechError::Resample {
            from_hz,
            message: e.to_string(),
        };
        let mut input = std::mem::take(&mut self.pending);
        input.resize(CHUNK, 0.0);
        let indexing = Indexing {
            partial_len: (frames < CHUNK).then_some(frames),
            ..Indexing::new()
        };
        let cap = self.out_buf.len();
        let inp = InterleavedSlice::new(&input[..], 1, CHUNK).map_err(|e| err(&e))?;
        let mut outp =
            InterleavedSlice::new_mut(&mut self.out_buf[..], 1, cap).map_err(|e| err(&e))?;
        let (_, written) = r
            .process_into_buffer(&inp, &mut outp, Some(&indexing))
            .map_err(|e| err(&e))?;
        let drop = self.skip.min(written);
        self.skip -= drop;
        out.extend_from_slice(&self.out_buf[drop..written]);
        self.produced += (written - drop) as u64;
        input.clear();
        self.pending = input;
        Ok(())
    }

    /// Adds samples, appending whatever 16 kHz output is ready to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if self.inner.is_none() {
            out.extend_from_slice(samples);
            return Ok(());
        }
        self.consumed += samples.len() as u64;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (CHUNK - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == CHUNK {
                self.run_chunk(CHUNK, out)?;
            }
        }
        Ok(())
    }

    /// Flushes the tail: total output length matches the input duration.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        if self.inner.is_none() {
            return Ok(());
        }
        let expected =
            (self.consumed as f64 * TARGET_HZ as f64 / self.from_hz as f64).round() as u64;
        let mut guard = 0;
        while self.produced < expected && guard < 64 {
            let frames = self.pending.len();
            self.run_chunk(frames, out)?;
            guard += 1;
        }
        let excess = (self.produced.saturating_sub(expected)) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.produced -= excess as u64;
        Ok(())
    }
}

/// Resamples a whole mono clip to 16 kHz.
pub fn to_16k(samples: &[f32], from_hz: u32) -> Result<Vec<f32>> {
    let mut r = Resampler16k::new(from_hz)?;
    let mut out = Vec::with_capacity(
        (samples.len() as u64 * TARGET_HZ as u64 / from_hz.max(1) as u64) as usize + 16,
    );
    r.push(samples, &mut out)?;
    r.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, rate: u32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// The resampled sine is the same sine at 16 kHz: fitted amplitude, a residual
    /// near zero, and a delay under 1.5 output samples (under 0.1 ms).
    #[test]
    fn resampled_sine_is_the_same_sine() {
        for rate in [8_000, 22_050, 44_100, 48_000] {
            let out = to_16k(&sine(440.0, rate, 1.0), rate).expect("resample");
            assert!(
                (out.len() as i64 - 16_000).abs() <= 1,
                "{rate}: {} samples",
                out.len()
            );
            // Ignore the edges, where the filter sees the signal start and stop.
            let w = 2.0 * std::f64::consts::PI * 440.0 / 16_000.0;
            let range = 800..15_200;
            let n = range.len() as f64;
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for i in range.clone() {
                a += out[i] as f64 * (w * i as f64).sin();
                b += out[i] as f64 * (w * i as f64).cos();
            }
            let (a, b) = (2.0 * a / n, 2.0 * b / n);
            let amplitude = (a * a + b * b).sqrt();
            let phase = b.atan2(a);
            let residual = range
                .map(|i| (out[i] as f64 - amplitude * (w * i as f64 + phase).sin()).abs())
                .fold(0.0, f64::max);
            let delay_samples = phase.abs() / w;
            assert!(
                (amplitude - 0.5).abs() < 0.01,
                "{rate} Hz: amplitude {amplitude}"
            );
            assert!(residual < 0.01, "{rate} Hz: residual {residual}");
            assert!(
                delay_samples < 1.5,
                "{rate} Hz: delay {delay_samples} samples"
            );
        }
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let input = sine(300.0, 44_100, 0.5);
        let whole = to_16k(&input, 44_100).expect("whole");
        let mut r = Resampler16k::new(44_100).expect("new");
        let mut out = Vec::new();
        for chunk in input.chunks(77) {
            r.push(chunk, &mut out).expect("push");
        }
        r.finish(&mut out).expect("finish");
        assert_eq!(out.len(), whole.len());
        assert!(out.iter().zip(&whole).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(Resampler16k::new(0).is_err());
        assert_eq!(to_16k(&[], 44_100).expect("empty").len(), 0);
    }
}
