//! Camera frames from a video file or a live camera (V4L2), decoded by the `ffmpeg`
//! program into raw RGB on a pipe: any container and codec ffmpeg reads, and any
//! camera format (YUYV, MJPEG, H.264) it converts. Nothing is written to disk.
//!
//! Why a child process and not a library: one well-kept decoder for every format and
//! camera, no C library linked into the binary (whisper.cpp and llama.cpp already
//! are), and a decoder crash on a bad file cannot take the kiosk down.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use image::RgbImage;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameInput {
    /// A video file (MP4, MKV, WebM, AVI, ...).
    Video(PathBuf),
    /// A V4L2 camera device, such as `/dev/video0`.
    Camera(PathBuf),
}

impl FrameInput {
    fn path(&self) -> &Path {
        match self {
            FrameInput::Video(p) | FrameInput::Camera(p) => p,
        }
    }
}

impl std::fmt::Display for FrameInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameInput::Video(p) => write!(f, "{}", p.display()),
            FrameInput::Camera(p) => write!(f, "camera {}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FrameOptions {
    /// Frames larger than this are scaled down to fit (aspect kept).
    pub max_width: u32,
    pub max_height: u32,
    /// Play a video file at its own frame rate (as a camera would deliver it) rather
    /// than as fast as it decodes.
    pub realtime: bool,
    /// Start a video file again at its end.
    pub looping: bool,
    /// The programs (found on PATH unless given with a folder).
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions {
            max_width: 1920,
            max_height: 1080,
            realtime: false,
            looping: false,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FramesError {
    #[error("cannot run {program} to read {input} (install the ffmpeg package): {error}")]
    NoDecoder {
        program: String,
        input: String,
        error: std::io::Error,
    },
    #[error("{input}: {message}")]
    Unreadable { input: String, message: String },
    #[error("{input}: no video stream")]
    NoVideo { input: String },
    #[error("{input}: {error}")]
    Io {
        input: String,
        error: std::io::Error,
    },
    #[error("{input}: decoding stopped after {frames} frame(s): {message}")]
    Decoder {
        input: String,
        frames: u64,
        message: String,
    },
}

/// Size that fits `(w, h)` into the limits, aspect kept, even sides (what the
/// scaler and most codecs want).
fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let s = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    let even = |v: f64| ((v as u32) & !1).max(2);
    (even(w as f64 * s), even(h as f64 * s))
}

/// Keeps the last few KiB a child wrote to stderr (its error message), read on a
/// thread so a chatty decoder never blocks on a full pipe.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 8192 {
                        let cut = s.len() - 4096;
                        let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            }
        });
    }
    text
}

/// The decoder's message on one line: its last lines, without the component tags
/// ("[mov,mp4,... @ 0x55...] ") and repeats.
fn message(stderr: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in stderr.lines().map(str::trim) {
        let line = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((tag, rest)) if tag.contains(" @ ") => rest.trim(),
            _ => line,
        };
        if !line.is_empty() && !lines.contains(&line) {
            lines.push(line);
        }
    }
    match lines.len() {
        0 => "the decoder gave no reason".into(),
        n => lines[n.saturating_sub(3)..].join("; "),
    }
}

fn input_args(input: &FrameInput) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    if let FrameInput::Camera(_) = input {
        a.extend(["-f".into(), "v4l2".into()]);
    }
    a
}

/// The size of the first video stream, asked of ffprobe.
fn probe(input: &FrameInput, opts: &FrameOptions) -> Result<(u32, u32), FramesError> {
    let name = input.to_string();
    if let FrameInput::Video(p) = input {
        // A clear message for the common mistakes, before the decoder's own.
        let meta = std::fs::metadata(p).map_err(|e| FramesError::Io {
            input: name.clone(),
            error: e,
        })?;
        if meta.len() == 0 {
            return Err(FramesError::Unreadable {
                input: name,
                message: "the file is empty".into(),
            });
        }
    }
    let out = Command::new(&opts.ffprobe)
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0:s=x"])
        .args(input_args(input))
        .arg(input.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FramesError::NoDecoder {
            program: opts.ffprobe.display().to_string(),
            input: name.clone(),
            error: e,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(FramesError::Unreadable {
            input: name,
            message: message(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    let size = stdout.lines().find_map(|l| {
        let (w, h) = l.trim().trim_end_matches('x').split_once('x')?;
        Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?))
    });
    match size {
        Some((w, h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(FramesError::NoVideo { input: name }),
    }
}

/// Frames decoded from a video file or camera, one at a time.
pub struct FrameReader {
    input: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<String>>,
    width: u32,
    height: u32,
    frames: u64,
    done: bool,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("input", &self.input)
            .field("size", &(self.width, self.height))
            .field("frames", &self.frames)
            .finish()
    }
}

impl FrameReader {
    /// Probes the input and starts decoding it. Fails, naming the input, when ffmpeg
    /// is missing, the file or device cannot be read, or it holds no video.
    pub fn open(input: &FrameInput, opts: &FrameOptions) -> Result<Self, FramesError> {
        let (w, h) = probe(input, opts)?;
        let (width, height) = fit(w, h, opts.max_width.max(2), opts.max_height.max(2));
        let mut cmd = Command::new(&opts.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"]);
        if let FrameInput::Video(_) = input {
            if opts.realtime {
                cmd.arg("-re");
            }
            if opts.looping {
                cmd.args(["-stream_loop", "-1"]);
            }
        }
        cmd.args(input_args(input))
            .arg("-i")
            .arg(input.path())
            .args(["-map", "0:v:0", "-an", "-sn"]);
        if (width, height) != (w, h) {
            cmd.args(["-vf", &format!("scale={width}:{height}")]);
        }
        cmd.args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| FramesError::NoDecoder {
            program: opts.ffmpeg.display().to_string(),
            input: input.to_string(),
            error: e,
        })?;
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().ok_or_else(|| FramesError::Io {
            input: input.to_string(),
            error: std::io::Error::other("no pipe from the decoder"),
        })?;
        Ok(FrameReader {
            input: input.to_string(),
            child,
            stdout,
            stderr,
            width,
            height,
            frames: 0,
            done: false,
        })
    }

    /// Frame size (after any scaling down).
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn decoder_error(&mut self) -> FramesError {
        // The pipe closed: let the decoder finish writing its reason.
        let _ = self.child.wait();
        let text = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        FramesError::Decoder {
            input: self.input.clone(),
            frames: self.frames,
            message: message(&text),
        }
    }

    /// The next frame; `Ok(None)` at the end of a video. A decoder that stops with an
    /// error, or a file that ends inside a frame, is an error naming the input.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>, FramesError> {
        if self.done {
            return Ok(None);
        }
        let mut buf = vec![0u8; self.width as usize * self.height as usize * 3];
        let mut got = 0;
        while got < buf.len() {
            match self.stdout.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Err(FramesError::Io {
                        input: self.input.clone(),
                        error: e,
                    });
                }
            }
        }
        if got < buf.len() {
            self.done = true;
            let status = self.child.wait().map_err(|e| FramesError::Io {
                input: self.input.clone(),
                error: e,
            })?;
            if got == 0 && status.success() {
                if self.frames == 0 {
                    return Err(FramesError::NoVideo {
                        input: self.input.clone(),
                    });
                }
                return Ok(None);
            }
            return Err(self.decoder_error());
        }
        self.frames += 1;
        Ok(RgbImage::from_raw(self.width, self.height, buf))
    }
}

impl Iterator for FrameReader {
    type Item = Result<RgbImage, FramesError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_within_limits_with_even_sides() {
        assert_eq!(fit(1280, 720, 1920, 1080), (1280, 720));
        assert_eq!(fit(3840, 2160, 1920, 1080), (1920, 1080));
        assert_eq!(fit(1081, 3000, 1920, 1080), (388, 1080));
        assert_eq!(fit(5000, 1, 1920, 1080), (1920, 2));
    }

    #[test]
    fn decoder_messages_keep_the_last_lines() {
        assert_eq!(message(""), "the decoder gave no reason");
        assert_eq!(
            message("a\n\nb\nc\nmoov atom not found\n"),
            "b; c; moov atom not found"
        );
        assert_eq!(
            message(
                "[mov,mp4,m4a @ 0x5582593b2840] moov atom not found\nx.mp4: Invalid data\nx.mp4: Invalid data\n"
            ),
            "moov atom not found; x.mp4: Invalid data"
        );
    }
}
