//! Spoken answers out of a cpal output device. Sentences are pushed as they are
//! synthesised, so the first plays while the rest is made; [`Speaker::stop`] cuts
//! playback at once (barge-in).
//!
//! Invariant, as for input: the cpal callback only reads from a ring buffer allocated
//! before the stream starts (converting and copying to every channel); it never
//! allocates, locks or blocks. A device whose rate differs from the voice's gets the
//! voice resampled (linear interpolation) before it enters the ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use crate::error::{Result, SpeechError};

/// Seconds of audio the ring holds (an answer is a few seconds; pushes wait for room).
const RING_SECONDS: usize = 20;

fn out_err(device: &str, message: impl ToString) -> SpeechError {
    SpeechError::Output {
        device: device.to_string(),
        message: message.to_string(),
    }
}

/// An open output stream playing one answer.
pub struct Speaker {
    stream: cpal::Stream,
    /// Playback starts once the first audio is queued (no underrun at the start).
    started: bool,
    producer: rtrb::Producer<f32>,
    from_hz: u32,
    device_hz: u32,
    channels: usize,
    format: cpal::SampleFormat,
    /// Resampler state: position of the next output sample in input samples.
    pos: f64,
    last: f32,
    name: String,
    stop: Arc<AtomicBool>,
    played: Arc<AtomicU64>,
    pushed: u64,
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("device", &self.name)
            .field("device_hz", &self.device_hz)
            .field("channels", &self.channels)
            .field("format", &self.format)
            .finish()
    }
}

impl Speaker {
    /// Opens `device` (`default`, or part of a device's name) for mono audio at
    /// `from_hz`. Setting `stop` (from any thread) silences it at once.
    pub fn open(device: &str, from_hz: u32, stop: Arc<AtomicBool>) -> Result<Self> {
        let host = cpal::default_host();
        let dev = if device == "default" {
            host.default_output_device()
                .ok_or_else(|| out_err(device, "no default output device"))?
        } else {
            let needle = device.to_lowercase();
            let mut names = Vec::new();
            let found = host
                .output_devices()
                .map_err(|e| out_err(device, e))?
                .find(|d| {
                    let n = crate::source::device_name(d);
                    let id = d.id().map(|i| i.to_string()).unwrap_or_default();
                    let hit =
                        n.to_lowercase().contains(&needle) || id.to_lowercase().contains(&needle);
                    names.push(n);
                    hit
                });
            found.ok_or_else(|| {
                out_err(
                    device,
                    format!("no such output device; available: {}", names.join(", ")),
                )
            })?
        };
        let label = crate::source::device_name(&dev);
        let config = pick_config(&dev, from_hz).map_err(|e| out_err(&label, e))?;
        let device_hz = config.sample_rate();
        let channels = config.channels().max(1) as usize;
        let (producer, consumer) = rtrb::RingBuffer::new(RING_SECONDS * device_hz as usize);
        let played = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let sc: cpal::StreamConfig = config.into();
        let args = (
            consumer,
            channels,
            stop.clone(),
            played.clone(),
            failed.clone(),
        );
        use cpal::SampleFormat as F;
        let stream = match config.sample_format() {
            F::F32 => build::<f32>(&dev, &sc, args),
            F::I16 => build::<i16>(&dev, &sc, args),
            F::I32 => build::<i32>(&dev, &sc, args),
            F::U16 => build::<u16>(&dev, &sc, args),
            F::U8 => build::<u8>(&dev, &sc, args),
            other => {
                return Err(out_err(
                    &label,
                    format!("unsupported sample format {other}"),
                ));
            }
        }
        .map_err(|e| out_err(&label, e))?;
        tracing::info!(device = %label, device_hz, channels, "speaker open");
        Ok(Speaker {
            stream,
            started: false,
            producer,
            from_hz,
            device_hz,
            channels,
            format: config.sample_format(),
            pos: 0.0,
            last: 0.0,
            name: label,
            stop,
            played,
            pushed: 0,
            failed,
        })
    }

    pub fn device_hz(&self) -> u32 {
        self.device_hz
    }

    /// Queues samples at the voice's rate; waits while the ring is full.
    pub fn push(&mut self, samples: &[f32]) -> Result<()> {
        let out = self.resample(samples);
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if self.failed.load(Ordering::Relaxed) {
                return Err(out_err(&self.name, "the output stream stopped"));
            }
            let n = self.producer.slots().min(rest.len());
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
                chunk.fill_from_iter(rest[..n].iter().copied());
            }
            self.pushed += n as u64;
            rest = &rest[n..];
            self.start()?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        if !self.started {
            self.stream.play().map_err(|e| out_err(&self.name, e))?;
            self.started = true;
        }
        Ok(())
    }

    /// Waits until everything pushed has played (or playback was stopped). Returns
    /// whether it played to the end.
    pub fn finish(mut self) -> Result<bool> {
        self.start()?;
        // A little over the queued audio's duration, then give up.
        let queued_s = self.pushed as f64 / f64::from(self.device_hz);
        let deadline = Instant::now() + Duration::from_secs_f64(queued_s + 2.0);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if self.played.load(Ordering::Relaxed) >= self.pushed {
                // Let the device drain its own buffer.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(true);
            }
            if self.failed.load(Ordering::Relaxed) {
                return Err(out_err(&self.name, "the output stream stopped"));
            }
            if Instant::now() > deadline {
                return Err(out_err(&self.name, "the device stopped consuming audio"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn resample(&mut self, samples: &[f32]) -> Vec<f32> {
        if self.from_hz == self.device_hz {
            return samples.to_vec();
        }
        let step = f64::from(self.from_hz) / f64::from(self.device_hz);
        let mut out = Vec::with_capacity((samples.len() as f64 / step) as usize + 2);
        // pos is relative to samples[0]; index -1 is the previous push's last sample.
        while self.pos < samples.len() as f64 - 1.0 {
            let i = self.pos.floor();
            let frac = (self.pos - i) as f32;
            let a = if i < 0.0 {
                self.last
            } else {
                samples[i as usize]
            };
            let b = samples[(i + 1.0) as usize];
            out.push(a + (b - a) * frac);
            self.pos += step;
        }
        self.pos -= samples.len() as f64;
        if let Some(l) = samples.last() {
            self.last = *l;
        }
        out
    }
}

/// The voice's own rate if the device takes it, else the device default.
fn pick_config(
    device: &cpal::Device,
    hz: u32,
) -> std::result::Result<cpal::SupportedStreamConfig, String> {
    use cpal::SampleFormat as F;
    let usable = |f: F| matches!(f, F::I16 | F::I32 | F::U16 | F::U8 | F::F32);
    if let Ok(ranges) = device.supported_output_configs() {
        let mut best: Option<cpal::SupportedStreamConfig> = None;
        for r in ranges {
            if !usable(r.sample_format()) || r.channels() == 0 {
                continue;
            }
            if let Some(c) = r.try_with_sample_rate(hz) {
                let score = |c: &cpal::SupportedStreamConfig| {
                    (c.channels() == 1) as u8 * 2 + (c.sample_format() == F::I16) as u8
                };
                if best.as_ref().is_none_or(|b| score(&c) > score(b)) {
                    best = Some(c);
                }
            }
        }
        if let Some(c) = best {
            return Ok(c);
        }
    }
    device.default_output_config().map_err(|e| e.to_string())
}

type Shared = (
    rtrb::Consumer<f32>,
    usize,
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    Arc<AtomicBool>,
);

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    (mut consumer, channels, stop, played, failed): Shared,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], _| {
            // Audio thread: read from the preallocated ring, convert, nothing else.
            let stopped = stop.load(Ordering::Relaxed);
            let mut n = 0u64;
            for frame in data.chunks_mut(channels) {
                let s = if stopped {
                    0.0
                } else {
                    match consumer.pop() {
                        Ok(s) => {
                            n += 1;
                            s
                        }
                        Err(_) => 0.0,
                    }
                };
                for out in frame {
                    *out = T::from_sample(s);
                }
            }
            played.fetch_add(n, Ordering::Relaxed);
        },
        move |e| {
            tracing::warn!(error = %e, "audio output error");
            if !matches!(e.kind(), cpal::ErrorKind::Xrun) {
                failed.store(true, Ordering::Relaxed);
            }
        },
        None,
    )
}
