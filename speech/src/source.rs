//! Audio input behind one trait, with two real backends: the cpal microphone and audio
//! files (optionally paced at real time, so a file behaves like a microphone).
//!
//! Invariant: the cpal callback runs on the audio thread and only converts samples to
//! f32 and copies them into a ring buffer allocated before the stream starts. It never
//! allocates, locks or blocks; when the reader falls behind, samples are dropped and
//! counted (reported by [`AudioSource::dropped`]) instead of stalling the device.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SizedSample};

use crate::audio::decode_wav;
use crate::error::{Result, SpeechError};
use crate::resample::TARGET_HZ;

/// Seconds of audio the microphone ring buffer holds before samples are dropped.
const RING_SECONDS: usize = 30;

/// A stream of interleaved f32 samples at a fixed rate and channel count.
pub trait AudioSource {
    fn sample_rate(&self) -> u32;
    fn channels(&self) -> u16;
    /// What this source is, for messages ("microphone \"default\" 16000 Hz x1").
    fn describe(&self) -> String;
    /// Appends the samples available now, waiting up to `wait` for some. Returns
    /// `Ok(false)` once the source has ended and everything was read.
    fn read(&mut self, out: &mut Vec<f32>, wait: Duration) -> Result<bool>;
    /// Samples dropped because the reader fell behind (microphone only).
    fn dropped(&self) -> u64 {
        0
    }
}

/// A WAV file, decoded to 16 kHz mono up front and handed out in 20 ms chunks, either
/// as fast as asked or paced at real time.
pub struct FileSource {
    path: PathBuf,
    samples: Vec<f32>,
    pos: usize,
    realtime: bool,
    started: Option<Instant>,
}

impl FileSource {
    pub fn open(path: &Path, realtime: bool) -> Result<Self> {
        let audio = decode_wav(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            samples: audio.samples,
            pos: 0,
            realtime,
            started: None,
        })
    }
}

impl AudioSource for FileSource {
    fn sample_rate(&self) -> u32 {
        TARGET_HZ
    }
    fn channels(&self) -> u16 {
        1
    }
    fn describe(&self) -> String {
        format!(
            "file {} ({}){}",
            self.path.display(),
            crate::format_ms(self.samples.len() as u64 * 1000 / TARGET_HZ as u64),
            if self.realtime {
                ", real-time pace"
            } else {
                ""
            }
        )
    }
    fn read(&mut self, out: &mut Vec<f32>, wait: Duration) -> Result<bool> {
        if self.pos >= self.samples.len() {
            return Ok(false);
        }
        let chunk = TARGET_HZ as usize / 50;
        let end = if self.realtime {
            let started = *self.started.get_or_insert_with(Instant::now);
            let mut due = (started.elapsed().as_secs_f64() * TARGET_HZ as f64) as usize;
            if due <= self.pos {
                std::thread::sleep(wait.min(Duration::from_millis(20)));
                due = (started.elapsed().as_secs_f64() * TARGET_HZ as f64) as usize;
            }
            due.min(self.samples.len())
        } else {
            (self.pos + chunk).min(self.samples.len())
        };
        if end > self.pos {
            out.extend_from_slice(&self.samples[self.pos..end]);
            self.pos = end;
        }
        Ok(true)
    }
}

/// An input device opened through cpal.
pub struct MicSource {
    // Kept alive: dropping the stream stops capture.
    _stream: cpal::Stream,
    consumer: rtrb::Consumer<f32>,
    rate: u32,
    channels: u16,
    name: String,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

/// Input device names cpal can see.
pub fn input_devices() -> Result<Vec<String>> {
    let host = cpal::default_host();
    let devices = host.input_devices().map_err(|e| mic_err("(list)", e))?;
    Ok(devices.map(|d| device_name(&d)).collect())
}

pub(crate) fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|x| x.name().to_string())
        .or_else(|_| d.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "(unnamed)".into())
}

fn mic_err(device: &str, e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Device {
        device: device.to_string(),
        message: e.to_string(),
    }
}

impl MicSource {
    /// Opens the default input device, or the first whose name or id contains `name`
    /// (case-insensitive). 16 kHz is used when the device offers it (no resampling);
    /// otherwise its default configuration.
    pub fn open(name: Option<&str>) -> Result<Self> {
        let host = cpal::default_host();
        let wanted = name.unwrap_or("default");
        let device = match name {
            None => host.default_input_device().ok_or_else(|| {
                mic_err(
                    wanted,
                    "no default input device (is a microphone connected?)",
                )
            })?,
            Some(n) => {
                let needle = n.to_lowercase();
                let mut names = Vec::new();
                let found = host.input_devices().map_err(|e| mic_err(n, e))?.find(|d| {
                    let dn = device_name(d);
                    let id = d.id().map(|i| i.to_string()).unwrap_or_default();
                    let hit =
                        dn.to_lowercase().contains(&needle) || id.to_lowercase().contains(&needle);
                    names.push(dn);
                    hit
                });
                found.ok_or_else(|| {
                    mic_err(
                        n,
                        format!("no such input device; available: {}", names.join(", ")),
                    )
                })?
            }
        };
        let label = device_name(&device);
        let config = pick_config(&device).map_err(|e| mic_err(&label, e))?;
        let rate = config.sample_rate();
        let channels = config.channels();
        let (producer, consumer) =
            rtrb::RingBuffer::new(RING_SECONDS * rate as usize * channels as usize);
        let dropped = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let stream_config: cpal::StreamConfig = config.into();
        let stream = match config.sample_format() {
            cpal::SampleFormat::I16 => {
                build::<i16>(&device, &stream_config, producer, &dropped, &failed)
            }
            cpal::SampleFormat::I32 => {
                build::<i32>(&device, &stream_config, producer, &dropped, &failed)
            }
            cpal::SampleFormat::U16 => {
                build::<u16>(&device, &stream_config, producer, &dropped, &failed)
            }
            cpal::SampleFormat::U8 => {
                build::<u8>(&device, &stream_config, producer, &dropped, &failed)
            }
            cpal::SampleFormat::F32 => {
                build::<f32>(&device, &stream_config, producer, &dropped, &failed)
            }
            other => {
                return Err(mic_err(
                    &label,
                    format!("unsupported sample format {other}"),
                ));
            }
        }
        .map_err(|e| mic_err(&label, e))?;
        stream.play().map_err(|e| mic_err(&label, e))?;
        tracing::info!(device = %label, rate, channels, format = %config.sample_format(), "microphone open");
        Ok(Self {
            _stream: stream,
            consumer,
            rate,
            channels,
            name: label,
            dropped,
            failed,
        })
    }
}

/// 16 kHz (any channel count) in a format we convert, else the device default.
fn pick_config(device: &cpal::Device) -> std::result::Result<cpal::SupportedStreamConfig, String> {
    use cpal::SampleFormat as F;
    let usable = |f: F| matches!(f, F::I16 | F::I32 | F::U16 | F::U8 | F::F32);
    if let Ok(ranges) = device.supported_input_configs() {
        let mut best: Option<cpal::SupportedStreamConfig> = None;
        for r in ranges {
            if !usable(r.sample_format()) || r.channels() == 0 {
                continue;
            }
            if let Some(c) = r.try_with_sample_rate(TARGET_HZ) {
                // Prefer mono, then 16-bit.
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
    device.default_input_config().map_err(|e| e.to_string())
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut producer: rtrb::Producer<f32>,
    dropped: &Arc<AtomicU64>,
    failed: &Arc<AtomicBool>,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let dropped = dropped.clone();
    let failed = failed.clone();
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| {
            // Audio thread: convert and copy into the preallocated ring, nothing else.
            let room = producer.slots().min(data.len());
            if let Ok(chunk) = producer.write_chunk_uninit(room) {
                chunk.fill_from_iter(data[..room].iter().map(|&s| f32::from_sample(s)));
            }
            if room < data.len() {
                dropped.fetch_add((data.len() - room) as u64, Ordering::Relaxed);
            }
        },
        move |e| {
            tracing::warn!(error = %e, "audio input error");
            if !matches!(e.kind(), cpal::ErrorKind::Xrun) {
                failed.store(true, Ordering::Relaxed);
            }
        },
        None,
    )
}

impl AudioSource for MicSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn channels(&self) -> u16 {
        self.channels
    }
    fn describe(&self) -> String {
        format!(
            "microphone \"{}\" ({} Hz, {} channel{})",
            self.name,
            self.rate,
            self.channels,
            if self.channels == 1 { "" } else { "s" }
        )
    }
    fn read(&mut self, out: &mut Vec<f32>, wait: Duration) -> Result<bool> {
        let deadline = Instant::now() + wait;
        loop {
            let n = self.consumer.slots();
            if n > 0 {
                if let Ok(chunk) = self.consumer.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    out.extend_from_slice(a);
                    out.extend_from_slice(b);
                    chunk.commit_all();
                }
                return Ok(true);
            }
            if self.failed.load(Ordering::Relaxed) || self.consumer.is_abandoned() {
                return Err(mic_err(&self.name, "the input stream stopped"));
            }
            if Instant::now() >= deadline {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
