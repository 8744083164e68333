//! Audio files to 16 kHz mono f32, streaming: memory is bounded by the output, not by
//! what the header claims.

use std::path::Path;

use crate::error::{Result, SpeechError};
use crate::resample::{Resampler16k, TARGET_HZ};

/// The longest file accepted (20 minutes: 77 MB of 16 kHz samples).
pub const MAX_SECONDS: u32 = 1200;

#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// 16 kHz mono, in [-1, 1].
    pub samples: Vec<f32>,
    pub source_rate: u32,
    pub channels: u16,
    pub bits: u16,
    /// The file ended before its header said it would (what was there is kept).
    pub truncated: bool,
}

impl DecodedAudio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / TARGET_HZ as f64
    }
}

fn decode_err(path: &Path, message: impl Into<String>) -> SpeechError {
    SpeechError::Decode {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Decodes a WAV file (8/16/24/32-bit integer or 32-bit float PCM, any rate and
/// channel count), downmixes to mono and resamples to 16 kHz.
pub fn decode_wav(path: &Path) -> Result<DecodedAudio> {
    let file = std::fs::File::open(path).map_err(|source| SpeechError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_from(std::io::BufReader::new(file), path, file_len(path))
}

/// Decodes WAV bytes held in memory (`label` names them in errors).
pub fn decode_wav_bytes(bytes: &[u8], label: &Path) -> Result<DecodedAudio> {
    decode_from(std::io::Cursor::new(bytes), label, bytes.len() as u64)
}

fn decode_from<R: std::io::Read>(input: R, path: &Path, input_len: u64) -> Result<DecodedAudio> {
    let input = fix_data_size(input, input_len).map_err(|source| SpeechError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = hound::WavReader::new(input).map_err(|e| match e {
        hound::Error::IoError(_) => decode_err(path, "not a WAV file (it ends inside the header)"),
        other => decode_err(path, format!("not a usable WAV file: {other}")),
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(decode_err(
            path,
            format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        ));
    }
    let claimed_s = reader.duration() as f64 / spec.sample_rate as f64;
    // Refuse early only when the file really holds that much data; a header that
    // merely claims it is handled by streaming (and reported as truncated).
    let claimed_bytes = reader.len() as u64 * u64::from(spec.bits_per_sample.div_ceil(8));
    if claimed_s > MAX_SECONDS as f64 && claimed_bytes <= input_len {
        return Err(SpeechError::TooLong {
            path: path.to_path_buf(),
            seconds: claimed_s,
            limit_s: MAX_SECONDS,
        });
    }
    let mut sink = Sink::new(path, spec.channels, spec.sample_rate)?;
    use hound::SampleFormat::{Float, Int};
    let truncated = match (spec.sample_format, spec.bits_per_sample) {
        (Float, 32) => sink.drain(reader.into_samples::<f32>(), |v| v)?,
        (Int, 8) => sink.drain(reader.into_samples::<i8>(), |v| v as f32 / 128.0)?,
        (Int, 16) => sink.drain(reader.into_samples::<i16>(), |v| v as f32 / 32_768.0)?,
        (Int, b @ (24 | 32)) => {
            let scale = (1u64 << (b - 1)) as f32;
            sink.drain(reader.into_samples::<i32>(), move |v| v as f32 / scale)?
        }
        (f, b) => {
            return Err(decode_err(
                path,
                format!("unsupported sample format {f:?} {b}-bit"),
            ));
        }
    };
    let samples = sink.finish()?;
    if truncated {
        tracing::warn!(path = %path.display(), "WAV data ends before its header says; using what is there");
    }
    Ok(DecodedAudio {
        samples,
        source_rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        truncated,
    })
}

/// Real-world WAVs whose data size hound refuses: ffmpeg writing to a pipe leaves it
/// at 0xFFFFFFFF (the length was unknown), and some writers leave a trailing odd byte.
/// The header (at most 64 KB before the data) is read and the data chunk's size set
/// to what the file holds, whole frames only; anything else passes unchanged.
fn fix_data_size<R: std::io::Read>(
    mut input: R,
    input_len: u64,
) -> std::io::Result<std::io::Chain<std::io::Cursor<Vec<u8>>, R>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(4096);
    (&mut input).take(64 << 10).read_to_end(&mut head)?;
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    if head.get(0..4) == Some(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        let mut i = 12usize;
        let mut block_align = 0u32;
        while let (Some(id), Some(size)) = (head.get(i..i + 4), u32_at(&head, i + 4)) {
            let body = i + 8;
            if id == b"fmt " {
                block_align = head
                    .get(body + 12..body + 14)
                    .map_or(0, |b| u32::from(u16::from_le_bytes([b[0], b[1]])));
            }
            if id == b"data" {
                let known = input_len > 0;
                let available = input_len
                    .saturating_sub(body as u64)
                    .min(u64::from(u32::MAX));
                let mut fixed = size;
                if size == u32::MAX && known {
                    fixed = available as u32;
                }
                if block_align > 0 {
                    fixed -= fixed % block_align;
                }
                if fixed != size {
                    head[i + 4..i + 8].copy_from_slice(&fixed.to_le_bytes());
                }
                break;
            }
            // Chunks are padded to even sizes.
            i = body + size as usize + (size as usize & 1);
        }
    }
    Ok(std::io::Cursor::new(head).chain(input))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Downmixes frames and feeds the resampler in blocks.
struct Sink<'a> {
    path: &'a Path,
    channels: usize,
    frame: Vec<f32>,
    block: Vec<f32>,
    resampler: Resampler16k,
    out: Vec<f32>,
    max_out: usize,
}

impl<'a> Sink<'a> {
    fn new(path: &'a Path, channels: u16, rate: u32) -> Result<Self> {
        Ok(Self {
            path,
            channels: channels as usize,
            frame: Vec::with_capacity(channels as usize),
            block: Vec::with_capacity(4096),
            resampler: Resampler16k::new(rate)?,
            out: Vec::new(),
            max_out: MAX_SECONDS as usize * TARGET_HZ as usize,
        })
    }

    /// Returns whether the data ended early.
    fn drain<S, I>(&mut self, samples: I, to_f32: impl Fn(S) -> f32) -> Result<bool>
    where
        I: Iterator<Item = hound::Result<S>>,
    {
        for s in samples {
            match s {
                Ok(v) => {
                    let x = to_f32(v);
                    // NaN or infinite samples (float WAVs) would reach whisper as
                    // garbage and come back as hallucinated text.
                    if !x.is_finite() {
                        return Err(decode_err(
                            self.path,
                            format!("a sample is {x}: audio samples must be finite numbers"),
                        ));
                    }
                    self.frame.push(x)
                }
                Err(hound::Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(true);
                }
                // hound's word for data that ends mid-sample (an io error of kind Other).
                Err(hound::Error::IoError(e)) if e.to_string().contains("enough bytes") => {
                    return Ok(true);
                }
                Err(e) => return Err(decode_err(self.path, e.to_string())),
            }
            if self.frame.len() == self.channels {
                let mono = self.frame.iter().sum::<f32>() / self.channels as f32;
                self.frame.clear();
                self.block.push(mono);
                if self.block.len() == self.block.capacity() {
                    self.flush()?;
                }
            }
        }
        Ok(false)
    }

    fn flush(&mut self) -> Result<()> {
        self.resampler.push(&self.block, &mut self.out)?;
        self.block.clear();
        if self.out.len() > self.max_out {
            return Err(SpeechError::TooLong {
                path: self.path.to_path_buf(),
                seconds: self.out.len() as f64 / TARGET_HZ as f64,
                limit_s: MAX_SECONDS,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<f32>> {
        self.flush()?;
        self.resampler.finish(&mut self.out)?;
        Ok(self.out)
    }
}
