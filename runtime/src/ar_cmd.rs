//! `aisle ar render`: the AR overlay for one camera frame, rendered without a window.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use aisle_ar::render::Renderer;
use aisle_ar::{LayoutParams, Overlay, ProductFacts, Profile};
use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_runtime::ar::{self, LocateTimings, LocatedObject};
use aisle_runtime::catalog::Catalog;
use aisle_runtime::scan::Scanner;
use aisle_vision::detect::ObjectDetector;
use aisle_vision::{Engine, ImageLimits};
use anyhow::{Context, Result};
use serde::Serialize;

/// The detector named by `models.object_detection`, on the configured image engine.
pub fn load_detector(
    cfg: &DeviceConfig,
    engine_override: Option<Engine>,
) -> Result<ObjectDetector> {
    let engine =
        engine_override.unwrap_or(crate::vision_cmd::engine(cfg.file.inference.image_engine));
    let options = crate::vision_cmd::onnx_options(cfg, engine)?;
    let name = &cfg.file.models.object_detection;
    let store = Store::open(&cfg.model_dir)?;
    let a = store
        .verify(name, &mut |_| {})
        .with_context(|| format!("object detector `{name}` (models.object_detection)"))?;
    Ok(ObjectDetector::load(
        a.path("model.onnx")?,
        a.path("labels.txt")?,
        &options,
    )?)
}

#[derive(Debug, Serialize)]
pub struct FrameOverlay {
    pub objects: Vec<LocatedObject>,
    pub overlay: Overlay,
    pub timings: FrameTimings,
}

#[derive(Debug, Default, Serialize)]
pub struct FrameTimings {
    #[serde(flatten)]
    pub locate: LocateTimings,
    pub layout_us: u64,
}

/// Locates and identifies the products in `img` and lays out their cards.
pub fn overlay_for(
    detector: &ObjectDetector,
    scanner: &Scanner<'_>,
    cat: &Catalog,
    img: &image::RgbImage,
    profile: Profile,
) -> Result<FrameOverlay> {
    let (objects, locate) = ar::locate(detector, scanner, img)?;
    let t = Instant::now();
    let detections = ar::detections(&objects);
    let today = aisle_runtime::catalog::today();
    let mut facts: Vec<ProductFacts> = Vec::new();
    for d in &detections {
        if facts.iter().any(|f| f.sku == d.sku) {
            continue;
        }
        if let Some(f) = ar::facts(cat, &d.sku, &today)? {
            facts.push(f);
        }
    }
    let mut overlay = aisle_ar::layout(
        img.width() as f32,
        img.height() as f32,
        &detections,
        &facts,
        &LayoutParams::for_profile(profile),
        &|_| None,
    );
    if detections.is_empty() && !objects.is_empty() {
        overlay.message = Some(format!(
            "{} item(s) in view not recognised: hold the label to the camera",
            objects.len()
        ));
    }
    let timings = FrameTimings {
        locate,
        layout_us: t.elapsed().as_micros() as u64,
    };
    Ok(FrameOverlay {
        objects,
        overlay,
        timings,
    })
}

pub fn profile(cfg: &DeviceConfig) -> Profile {
    match cfg.file.device.profile {
        aisle_firmware_config::Profile::Kiosk => Profile::Kiosk,
        aisle_firmware_config::Profile::ArTablet => Profile::ArTablet,
    }
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
    picture
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("cannot write the overlay picture to {}", out.display()))?;
    Ok(render_us)
}

pub fn render(
    cfg: &DeviceConfig,
    image: &Path,
    out: &Path,
    engine_override: Option<Engine>,
    json: bool,
) -> Result<ExitCode> {
    // Bad frames fail at once, before any model work.
    let img = aisle_vision::load_image(image, &ImageLimits::default())?;
    let cat = crate::store_cmd::ready_catalog(cfg)?;
    let models = crate::vision_cmd::load_models(cfg, engine_override)?;
    let scanner = crate::vision_cmd::scanner(cfg, &models, &cat, json)?;
    let detector = load_detector(cfg, engine_override)?;
    let frame = overlay_for(&detector, &scanner, &cat, &img, profile(cfg))?;
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

/// `aisle ar`: the tablet AR mode in a window, on a folder of frames played at `fps`
/// (looping). Products are located and identified on a worker thread; a tap on a card
/// asks the assistant about that product and shows the answer.
pub fn live(
    cfg: &DeviceConfig,
    frames: Option<&Path>,
    camera: Option<&str>,
    fps: f32,
) -> Result<ExitCode> {
    if !aisle_ar::window::display_available() {
        return Err(aisle_ar::render::RenderError::NoDisplay.into());
    }
    let files = match frames {
        Some(dir) => frame_files(dir)?,
        None => {
            let devices: Vec<_> = std::fs::read_dir("/dev")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("video"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            match (camera, devices.first()) {
                (_, None) => anyhow::bail!(
                    "no camera found (no /dev/video* device): use --frames DIR to play a folder of frames"
                ),
                (want, Some(first)) => anyhow::bail!(
                    "camera {} found, but live capture from a V4L2 device is not built yet: use --frames DIR",
                    want.map_or_else(|| first.display().to_string(), str::to_string)
                ),
            }
        }
    };
    let first = aisle_vision::load_image(&files[0], &ImageLimits::default())?;
    let scale = (1280.0 / first.width() as f32)
        .min(800.0 / first.height() as f32)
        .min(1.0);
    let (w, h) = (
        (first.width() as f32 * scale) as u32,
        (first.height() as f32 * scale) as u32,
    );
    let (frame_tx, frame_rx) = std::sync::mpsc::channel();
    let (tap_tx, tap_rx) = std::sync::mpsc::channel::<String>();
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    let worker_cfg = cfg.clone();
    let period = std::time::Duration::from_secs_f32(1.0 / fps.clamp(0.1, 30.0));
    std::thread::spawn(move || {
        if let Err(e) = live_worker(&worker_cfg, &files, period, &frame_tx, &tap_rx, &answer_tx) {
            tracing::error!(error = %format!("{e:#}"), "AR worker stopped");
            let _ = answer_tx.send(format!("stopped: {e:#}"));
        }
    });
    aisle_ar::window::run_window(
        "aisle AR",
        w,
        h,
        aisle_ar::window::WindowLink {
            frames: frame_rx,
            taps: tap_tx,
            answers: answer_rx,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn live_worker(
    cfg: &DeviceConfig,
    files: &[std::path::PathBuf],
    period: std::time::Duration,
    frames: &std::sync::mpsc::Sender<aisle_ar::window::WindowFrame>,
    taps: &std::sync::mpsc::Receiver<String>,
    answers: &std::sync::mpsc::Sender<String>,
) -> Result<()> {
    let cat = crate::store_cmd::ready_catalog(cfg)?;
    let models = crate::vision_cmd::load_models(cfg, None)?;
    let scanner = crate::vision_cmd::scanner(cfg, &models, &cat, true)?;
    let detector = load_detector(cfg, None)?;
    let engine = aisle_runtime::dialogue::Engine::new(&cat)?;
    let mut session = aisle_runtime::dialogue::Session::default();
    let mut stabilizer = aisle_ar::Stabilizer::new(aisle_ar::Stability::default());
    let params = LayoutParams::for_profile(Profile::ArTablet);
    let today = aisle_runtime::catalog::today();
    for path in files.iter().cycle() {
        let due = Instant::now() + period;
        match aisle_vision::load_image(path, &ImageLimits::default()) {
            Ok(img) => {
                let (objects, _) = ar::locate(&detector, &scanner, &img)?;
                let detections = ar::detections(&objects);
                let mut facts = Vec::new();
                for d in &detections {
                    if let Some(f) = ar::facts(&cat, &d.sku, &today)? {
                        facts.push(f);
                    }
                }
                let overlay = stabilizer.frame(
                    img.width() as f32,
                    img.height() as f32,
                    &detections,
                    &facts,
                    &params,
                );
                if frames
                    .send(aisle_ar::window::WindowFrame {
                        frame: img,
                        overlay,
                    })
                    .is_err()
                {
                    return Ok(()); // the window was closed
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "frame skipped");
                let _ = answers.send(format!("frame skipped: {e}"));
            }
        }
        // Taps are answered while waiting for the next frame.
        while let Some(left) = due.checked_duration_since(Instant::now()) {
            match taps.recv_timeout(left) {
                Ok(sku) => {
                    let answer = engine.ask(TAP_QUESTION, &mut session, Some(&sku))?;
                    tracing::info!(sku = %sku, path = answer.path, "card tapped");
                    if answers.send(answer.text).is_err() {
                        return Ok(());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
    Ok(())
}
