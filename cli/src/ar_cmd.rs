//! `aisle ar render`: the AR overlay for one camera frame, rendered without a window;
//! `aisle ar`: the tablet AR mode in a window, on a folder of frames, a video or a camera.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use aisle_ar::{Overlay, Profile};
use aisle_ar_render::render::Renderer;
use aisle_firmware_config::DeviceConfig;
use aisle_runtime::ar::FrameOverlay;
use aisle_runtime::kiosk::{self, AskRequest, Kiosk, Parts, Pass, Tracker};
use aisle_vision::detect::ObjectDetector;
use aisle_vision::{Engine, FrameInput, FrameOptions, FrameReader, ImageLimits};
use anyhow::{Context, Result};
use image::RgbImage;

/// The detector named by `models.object_detection`, on the configured image engine.
pub fn load_detector(
    cfg: &DeviceConfig,
    engine_override: Option<Engine>,
) -> Result<ObjectDetector> {
    let store = crate::vision_cmd::open_store(cfg)?;
    Ok(kiosk::detector(cfg, &store, engine_override)?)
}

/// Renders `frame` with `overlay` and writes the PNG to `out`; returns the render time.
pub fn write_png(
    renderer: &mut Renderer,
    frame: &image::RgbImage,
    overlay: &Overlay,
    out: &Path,
) -> Result<u64> {
    let t = Instant::now();
    let picture = renderer.render(frame, overlay)?;
    let render_us = t.elapsed().as_micros() as u64;
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode the overlay picture")?;
    // Through a temporary file beside it: a full disk leaves no torn picture.
    crate::say_cmd::write_atomic(out, &png)
        .with_context(|| format!("cannot write the overlay picture to {}", out.display()))?;
    Ok(render_us)
}

/// `--out` must be a new PNG: not the photo itself, and named as what it holds.
fn check_out(image: &Path, out: &Path) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() != Some("png") {
        anyhow::bail!(
            "--out {}: the overlay is written as PNG; name the file *.png",
            out.display()
        );
    }
    let same = match (std::fs::canonicalize(image), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "--out {} is the input photo: it would be overwritten; write the overlay elsewhere",
            out.display()
        );
    }
    Ok(())
}

pub fn render(
    cfg: &DeviceConfig,
    image: &Path,
    out: &Path,
    engine_override: Option<Engine>,
    json: bool,
) -> Result<ExitCode> {
    check_out(image, out)?;
    // Bad frames fail at once, before any model work.
    let img = aisle_vision::load_image(image, &ImageLimits::default())?;
    let parts = Parts {
        detector: true,
        ..Parts::vision(engine_override)
    };
    let kiosk = Kiosk::load_with(cfg, parts, &mut crate::vision_cmd::index_bar(json))?;
    let frame = kiosk.overlay(&img)?;
    let mut renderer = Renderer::headless()?;
    let render_us = write_png(&mut renderer, &img, &frame.overlay, out)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "image": image,
                "out": out,
                "width": img.width(),
                "height": img.height(),
                "objects": frame.objects,
                "overlay": frame.overlay,
                "timings": frame.timings,
                "render_us": render_us,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_frame(&frame, image)?;
    outln!(
        "  timings: detect {:.1} ms, identify {:.1} ms, layout {:.2} ms, render {:.1} ms",
        frame.timings.locate.detect_us as f64 / 1000.0,
        frame.timings.locate.identify_us as f64 / 1000.0,
        frame.timings.layout_us as f64 / 1000.0,
        render_us as f64 / 1000.0
    );
    outln!("  wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn print_frame(frame: &FrameOverlay, image: &Path) -> Result<()> {
    outln!(
        "{}: {} object(s) found, {} card(s)",
        image.display(),
        frame.objects.len(),
        frame.overlay.cards.len()
    );
    for o in &frame.objects {
        let what = match (&o.sku, o.decision) {
            (Some(sku), aisle_vision::Decision::Identified) => format!(
                "{} ({sku}), confidence {:.2}",
                o.name.as_deref().unwrap_or(""),
                o.confidence
            ),
            _ => format!("not identified (confidence {:.2})", o.confidence),
        };
        outln!(
            "  {:<12} {:.2} at [{:.0}, {:.0}, {:.0}x{:.0}] -> {what}",
            o.label,
            o.score,
            o.bbox[0],
            o.bbox[1],
            o.bbox[2],
            o.bbox[3]
        );
    }
    for c in &frame.overlay.cards {
        let text: Vec<&str> = c.lines.iter().map(|l| l.text.as_str()).collect();
        outln!("  card {} ({:?}): {}", c.sku, c.side, text.join(" | "));
    }
    if let Some(m) = &frame.overlay.message {
        outln!("  message: {m}");
    }
    Ok(())
}

/// Image files in `dir`, in name order (a folder of camera frames).
pub fn frame_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the frame folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no image frames (PNG, JPEG, WebP) in {}",
        dir.display()
    );
    Ok(files)
}

/// The question a tap on a card asks about its product.
pub const TAP_QUESTION: &str = "How much is this, do you have it in stock, and where is it?";

/// Where the AR mode's frames come from.
pub enum FrameSource {
    /// A folder of image files, played in name order at a fixed rate, looping; an
    /// unreadable file is skipped.
    Folder {
        files: Vec<PathBuf>,
        next: usize,
        period: Duration,
    },
    /// A video file or a camera, decoded by ffmpeg at its own pace.
    Stream(FrameReader),
}

/// A frame, or a frame that could not be read (the source goes on).
pub enum SourceItem {
    Frame(RgbImage),
    Skipped(String),
}

impl FrameSource {
    /// Opens the source the `aisle ar` flags name (a folder, a video file, a camera),
    /// else the config's `camera` section: a device (`camera.device`; the first
    /// /dev/video* when the default one is missing), a folder of frames, one still
    /// image, or none. Frames are scaled to fit `camera.width` x `camera.height`;
    /// folders and images play at `--fps`, else `camera.fps`.
    pub fn open(
        cam: &aisle_firmware_config::Camera,
        frames: Option<&Path>,
        video: Option<&Path>,
        camera: Option<&str>,
        fps: Option<f32>,
    ) -> Result<Self> {
        use aisle_firmware_config::CameraSource;
        let limits = FrameOptions {
            max_width: cam.width,
            max_height: cam.height,
            ..FrameOptions::default()
        };
        let period = Duration::from_secs_f32(1.0 / fps.unwrap_or(cam.fps as f32).clamp(0.1, 60.0));
        let folder = |files| FrameSource::Folder {
            files,
            next: 0,
            period,
        };
        if let Some(dir) = frames {
            return Ok(folder(frame_files(dir)?));
        }
        if let Some(video) = video {
            let opts = FrameOptions {
                realtime: true,
                looping: true,
                ..limits
            };
            return Ok(FrameSource::Stream(FrameReader::open(
                &FrameInput::Video(video.to_path_buf()),
                &opts,
            )?));
        }
        let device = match (camera, cam.source) {
            (Some(d), _) => PathBuf::from(d),
            (None, CameraSource::Folder) => {
                let dir = cam.path.as_deref().context("camera.path is not set")?;
                return Ok(folder(frame_files(dir)?));
            }
            (None, CameraSource::Image) => {
                let file = cam.path.clone().context("camera.path is not set")?;
                return Ok(folder(vec![file]));
            }
            (None, CameraSource::None) => anyhow::bail!(
                "the camera is off (camera.source = \"none\"): use --camera DEVICE, --video FILE or --frames DIR"
            ),
            (None, CameraSource::Device) => {
                let configured = PathBuf::from(&cam.device);
                if configured.exists() || cam.device != "/dev/video0" {
                    configured
                } else {
                    first_camera().ok_or_else(|| {
                        anyhow::anyhow!(
                            "no camera found (no /dev/video* device): use --frames DIR or --video FILE"
                        )
                    })?
                }
            }
        };
        Ok(FrameSource::Stream(FrameReader::open(
            &FrameInput::Camera(device),
            &limits,
        )?))
    }

    /// The next frame; `None` when a video or camera has ended. Folders wait out their
    /// frame period here.
    pub fn next(&mut self) -> Result<Option<SourceItem>> {
        match self {
            FrameSource::Folder {
                files,
                next,
                period,
            } => {
                if *next > 0 {
                    std::thread::sleep(*period);
                }
                let path = &files[*next % files.len()];
                *next += 1;
                Ok(Some(
                    match aisle_vision::load_image(path, &ImageLimits::default()) {
                        Ok(img) => SourceItem::Frame(img),
                        Err(e) => SourceItem::Skipped(e.to_string()),
                    },
                ))
            }
            FrameSource::Stream(reader) => Ok(reader.next_frame()?.map(SourceItem::Frame)),
        }
    }
}

fn first_camera() -> Option<PathBuf> {
    let mut devices: Vec<PathBuf> = std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    devices.sort();
    devices.into_iter().next()
}

/// `aisle ar`: the tablet AR mode in a window. Frames come from a folder, a video file
/// or a camera and are shown as they come; products are located and identified on
/// another thread, on the latest frame whenever it is free, and their cards drawn
/// over the frames; a tap on a card asks the assistant about that product and shows
/// the answer.
pub fn live(
    cfg: &DeviceConfig,
    frames: Option<&Path>,
    video: Option<&Path>,
    camera: Option<&str>,
    fps: Option<f32>,
    analyse_fps: Option<f32>,
) -> Result<ExitCode> {
    // A bad video, a missing camera or a folder without a readable frame is named
    // before any window opens.
    let mut source = FrameSource::open(&cfg.file.camera, frames, video, camera, fps)?;
    // The first frame sets the window's size.
    let mut skipped = Vec::new();
    let first = loop {
        match source.next()? {
            Some(SourceItem::Frame(f)) => break f,
            Some(SourceItem::Skipped(e)) => {
                tracing::warn!(error = %e, "frame skipped");
                skipped.push(e);
                if let FrameSource::Folder { files, .. } = &source
                    && skipped.len() >= files.len()
                {
                    anyhow::bail!("no readable frame: {}", skipped.join("; "));
                }
            }
            None => anyhow::bail!("the video or camera ended before its first frame"),
        }
    };
    if !aisle_ar_render::window::display_available() {
        return Err(aisle_ar_render::render::RenderError::NoDisplay.into());
    }
    let scale = (1280.0 / first.width() as f32)
        .min(800.0 / first.height() as f32)
        .min(1.0);
    let (w, h) = (
        (first.width() as f32 * scale) as u32,
        (first.height() as f32 * scale) as u32,
    );
    let (frame_tx, frame_rx) = mpsc::channel();
    let (overlay_tx, overlay_rx) = mpsc::channel();
    // The analyser takes the newest frame whenever it is free; the others are only shown.
    let latest = Arc::new(Latest::default());
    let analyse_rx = latest.clone();
    let (tap_tx, tap_rx) = mpsc::channel::<String>();
    let (answer_tx, answer_rx) = mpsc::channel();

    let answers = answer_tx.clone();
    std::thread::spawn(move || {
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match source.next() {
                    Ok(Some(SourceItem::Frame(f))) => f,
                    Ok(Some(SourceItem::Skipped(e))) => {
                        tracing::warn!(error = %e, "frame skipped");
                        let _ = answers.send(format!("frame skipped: {e}"));
                        continue;
                    }
                    Ok(None) => {
                        let _ = answers.send("the video or camera has ended".into());
                        latest.close();
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "AR frames stopped");
                        let _ = answers.send(format!("stopped: {e:#}"));
                        latest.close();
                        return;
                    }
                },
            };
            if !latest.put(frame.clone()) || frame_tx.send(frame).is_err() {
                latest.close();
                return; // the window was closed
            }
        }
    });
    let worker_cfg = cfg.clone();
    let min_period = analyse_fps.map(|f| Duration::from_secs_f32(1.0 / f.clamp(0.01, 60.0)));
    std::thread::spawn(move || {
        // One kiosk for the analyser and the taps: the full assistant (MiniLM, the
        // LLM) answers taps, in one conversation.
        let parts = Parts {
            detector: true,
            dialogue_models: true,
            quiet: true,
            ..Parts::vision(None)
        };
        let kiosk = match Kiosk::load(&worker_cfg, parts) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                tracing::error!(error = %e, "AR analysis stopped");
                let _ = answer_tx.send(format!("stopped: {e}"));
                analyse_rx.close();
                return;
            }
        };
        {
            let (kiosk, answer_tx) = (kiosk.clone(), answer_tx.clone());
            std::thread::spawn(move || {
                if let Err(e) = answer_taps(&kiosk, &tap_rx, &answer_tx) {
                    tracing::error!(error = %format!("{e:#}"), "AR answers stopped");
                    let _ = answer_tx.send(format!("stopped: {e:#}"));
                }
            });
        }
        let result = analyse(&kiosk, &analyse_rx, &overlay_tx, min_period);
        analyse_rx.close();
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "AR analysis stopped");
            let _ = answer_tx.send(format!("stopped: {e:#}"));
        }
    });
    aisle_ar_render::window::run_window(
        "aisle AR",
        w,
        h,
        aisle_ar_render::window::WindowLink {
            frames: frame_rx,
            overlays: overlay_rx,
            taps: tap_tx,
            answers: answer_rx,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A slot holding the newest value: `put` replaces what is there, `take` waits for a
/// value; `close` ends both sides.
#[derive(Default)]
struct Latest<T> {
    slot: Mutex<(Option<T>, bool)>,
    ready: Condvar,
}

impl<T> Latest<T> {
    /// False once closed.
    fn put(&self, v: T) -> bool {
        let Ok(mut s) = self.slot.lock() else {
            return false;
        };
        if s.1 {
            return false;
        }
        s.0 = Some(v);
        self.ready.notify_one();
        true
    }

    /// The newest value, waiting for one; `None` once closed.
    fn take(&self) -> Option<T> {
        let mut s = self.slot.lock().ok()?;
        loop {
            if s.1 {
                return None;
            }
            if let Some(v) = s.0.take() {
                return Some(v);
            }
            s = self.ready.wait(s).ok()?;
        }
    }

    fn close(&self) {
        if let Ok(mut s) = self.slot.lock() {
            s.1 = true;
        }
        self.ready.notify_all();
    }
}

/// Turns the newest frame into its overlay (see [`Tracker`]: identification now and
/// then, the detector alone in between, steadied cards) and sends it to the window.
fn analyse(
    kiosk: &Kiosk,
    frames: &Latest<RgbImage>,
    overlays: &mpsc::Sender<Overlay>,
    min_period: Option<Duration>,
) -> Result<()> {
    let mut tracker = Tracker::new(Profile::ArTablet, min_period);
    analyse_frames(frames, overlays, |img, afresh| {
        if afresh {
            tracker = Tracker::new(Profile::ArTablet, min_period);
        }
        Ok(tracker.frame(kiosk, img, None)?)
    })
}

/// The analyser's loop: each newest frame through `step` (told to start afresh after
/// a failure), its overlay to the window, until the frames or the window end.
/// One bad frame must not end the analysis, whether it fails or panics: it is
/// reported (at most every 5 s), the cards are cleared (none are left standing on
/// stale products) and the next frame is analysed from scratch.
fn analyse_frames(
    frames: &Latest<RgbImage>,
    overlays: &mpsc::Sender<Overlay>,
    mut step: impl FnMut(&RgbImage, bool) -> Result<(Overlay, Pass)>,
) -> Result<()> {
    let mut last_rate = Instant::now();
    let mut last_failure: Option<Instant> = None;
    let mut afresh = false;
    let (mut identifications, mut followed) = (0u32, 0u32);
    loop {
        let Some(img) = frames.take() else {
            return Ok(()); // the reader stopped
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&img, afresh)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(anyhow::anyhow!("the analysis panicked: {what}"))
            });
        let (overlay, pass) = match result {
            Ok(r) => {
                afresh = false;
                r
            }
            Err(e) => {
                if last_failure.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(5)) {
                    tracing::warn!(error = %format!("{e:#}"), "a frame could not be analysed; cards cleared");
                    last_failure = Some(Instant::now());
                }
                afresh = true;
                if overlays.send(Overlay::default()).is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        match pass {
            Pass::Identified => identifications += 1,
            Pass::Followed => followed += 1,
        }
        for c in &overlay.cards {
            let r = c.rect;
            tracing::debug!(sku = %c.sku, x = r.x, y = r.y, w = r.w, h = r.h, "card shown");
        }
        if last_rate.elapsed() >= Duration::from_secs(5) {
            let secs = last_rate.elapsed().as_secs_f32();
            tracing::info!(
                identified_per_s = format!("{:.1}", identifications as f32 / secs),
                followed_per_s = format!("{:.1}", followed as f32 / secs),
                "AR analysis"
            );
            (identifications, followed) = (0, 0);
            last_rate = Instant::now();
        }
        if overlays.send(overlay).is_err() {
            return Ok(()); // the window was closed
        }
    }
}

/// Answers taps on cards: the assistant's answer about the tapped product.
fn answer_taps(
    kiosk: &Kiosk,
    taps: &mpsc::Receiver<String>,
    answers: &mpsc::Sender<String>,
) -> Result<()> {
    let session = kiosk.new_session();
    for sku in taps {
        let answer = kiosk
            .ask(&AskRequest {
                text: TAP_QUESTION,
                session: Some(session.as_str()),
                sku: Some(&sku),
                image: None,
            })?
            .answer;
        tracing::info!(sku = %sku, path = answer.path, "card tapped");
        if answers.send(answer.text).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that fails and a frame that panics each clear the cards once; the
    /// analysis goes on, starting afresh, and ends only when the frames do.
    #[test]
    fn a_frame_that_fails_or_panics_clears_the_cards_and_the_analysis_goes_on() {
        let frames = Arc::new(Latest::default());
        let (tx, rx) = mpsc::channel();
        let input = frames.clone();
        let worker = std::thread::spawn(move || {
            let mut calls = Vec::new();
            let r = analyse_frames(&input, &tx, |img, afresh| {
                calls.push((img.get_pixel(0, 0)[0], afresh));
                match img.get_pixel(0, 0)[0] {
                    1 => anyhow::bail!("a bad frame"),
                    2 => panic!("a strange frame"),
                    _ => Ok((
                        Overlay {
                            message: Some("a card".into()),
                            ..Overlay::default()
                        },
                        Pass::Identified,
                    )),
                }
            });
            (r.is_ok(), calls)
        });
        let frame = |v: u8| RgbImage::from_pixel(4, 4, image::Rgb([v, 0, 0]));
        let mut shown = Vec::new();
        for v in [0, 1, 0, 2, 0] {
            assert!(frames.put(frame(v)));
            let o = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("an overlay");
            shown.push(o.message);
        }
        frames.close();
        let (ok, calls) = worker.join().expect("the analyser returns");
        let card = Some("a card".to_string());
        assert_eq!(shown, vec![card.clone(), None, card.clone(), None, card]);
        assert!(ok);
        assert_eq!(
            calls,
            vec![(0, false), (1, false), (0, true), (2, false), (0, true)]
        );
    }
}
