//! `aisle bench ar`: AR overlays per 720p frame. Layout; the overlay rendered with
//! bevy (off-screen, read back) against OpenCV drawing the same cards; object
//! detection on both engines against LiteRT (XNNPACK) running MediaPipe's original
//! fp16 TFLite; detection plus overlay per frame; peak memory.

use std::process::ExitCode;
use std::time::Instant;

use aisle_ar::{Detection, LayoutParams, Overlay, ProductFacts, Profile, Rect};
use aisle_ar_render::Renderer;
use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_vision::Engine;
use anyhow::Result;

use crate::BenchArgs;

const PEER_SCRIPT: &str = include_str!("peer_ar.py");
const PEER_REQUIREMENTS: &[&str] = &[
    "ai-edge-litert==2.3.0",
    "opencv-python-headless==5.0.0.93",
    "pillow==13.0.0",
    "numpy==2.4.6",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn time_ms<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut last = f()?;
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let s = Instant::now();
        last = f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(t), last))
}

/// The bench frame: the sample photos on a 1280x720 shelf.
fn shelf(store: &Store) -> Result<image::RgbImage> {
    let photos = store.verify("sample-photos", &mut |_| {})?;
    let mut frame = image::RgbImage::from_fn(1280, 720, |x, y| {
        let v = (70 + (x + y) * 40 / 2000) as u8;
        image::Rgb([v, v, v.saturating_add(12)])
    });
    let limits = aisle_vision::ImageLimits::default();
    let coffee = aisle_vision::load_image(photos.path("coffee.png")?, &limits)?;
    let cat = aisle_vision::load_image(photos.path("chelsea.png")?, &limits)?;
    image::imageops::overlay(&mut frame, &coffee, 60, 300);
    image::imageops::overlay(&mut frame, &cat, 800, 330);
    Ok(frame)
}

/// The objects found, each taken as one of the store's products (identification is
/// measured by `aisle bench vision`; here it would only add the scanner's time).
fn as_products(objects: &[aisle_vision::DetectedObject], facts: &[ProductFacts]) -> Vec<Detection> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| Detection {
            sku: facts[i % facts.len()].sku.clone(),
            bbox: Rect::new(o.bbox[0], o.bbox[1], o.bbox[2], o.bbox[3]),
            confidence: o.score.max(0.7),
        })
        .collect()
}

/// Fifty product boxes in a grid, for the crowded-shelf row.
fn crowded(facts: &[ProductFacts]) -> (Vec<Detection>, Vec<ProductFacts>) {
    let dets = (0..50)
        .map(|i| Detection {
            sku: facts[i % facts.len()].sku.clone() + &format!("#{i}"),
            bbox: Rect::new(
                20.0 + (i % 10) as f32 * 126.0,
                30.0 + (i / 10) as f32 * 140.0,
                70.0,
                80.0,
            ),
            confidence: 0.9,
        })
        .collect::<Vec<_>>();
    let many = dets
        .iter()
        .enumerate()
        .map(|(i, d)| ProductFacts {
            sku: d.sku.clone(),
            ..facts[i % facts.len()].clone()
        })
        .collect();
    (dets, many)
}

pub fn run(cfg: &DeviceConfig, args: &BenchArgs, json: bool) -> Result<ExitCode> {
    let runs = args.runs.max(1);
    // The detectors run on the bench's thread count, like the peer.
    let mut cfg = cfg.clone();
    cfg.file.inference.threads = args.threads.max(1) as _;
    let cfg = &cfg;
    let store = Store::open(&cfg.model_dir)?;
    let frame = shelf(&store)?;
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let params = LayoutParams::for_profile(Profile::Kiosk);

    // Facts: real products of the demo store, one per object found.
    let cat = aisle_runtime::kiosk::demo_catalog(&crate::isolated(cfg))?.0;
    let view = aisle_runtime::catalog::CatalogView::load(&cat)?;
    let today = aisle_runtime::clock::Clock::today(&aisle_runtime::clock::SystemClock);
    let facts: Vec<_> = view
        .products()
        .iter()
        .step_by(997)
        .take(8)
        .filter_map(|p| aisle_runtime::ar::facts(&view, &p.sku, &today))
        .collect();
    anyhow::ensure!(!facts.is_empty(), "the demo store has no products");

    let mut det_rows = Vec::new();
    let mut detections = Vec::new();
    for engine in [Engine::OnnxRuntime, Engine::Tract] {
        let detector = crate::load_detector(cfg, Some(engine))?;
        let (ms, found) = time_ms(runs, || Ok(detector.detect(&frame)?))?;
        det_rows.push((engine, ms));
        if detections.is_empty() {
            detections = found;
        }
    }
    let dets = as_products(&detections, &facts);
    let layout = |d: &[Detection], f: &[ProductFacts]| -> Overlay {
        aisle_ar::layout(w, h, d, f, &params, &|_| None)
    };
    let (layout_ms, overlay) = time_ms(runs * 20, || Ok(layout(&dets, &facts)))?;
    let (crowd_dets, crowd_facts) = crowded(&facts);
    let (crowd_layout_ms, crowd_overlay) =
        time_ms(runs * 5, || Ok(layout(&crowd_dets, &crowd_facts)))?;

    let t = Instant::now();
    let mut renderer = Renderer::headless()?;
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    let (render_ms, _) = time_ms(runs * 3, || Ok(renderer.render(&frame, &overlay)?))?;
    let (crowd_render_ms, _) = time_ms(runs * 3, || Ok(renderer.render(&frame, &crowd_overlay)?))?;
    let detector = crate::load_detector(cfg, Some(Engine::OnnxRuntime))?;
    let (frame_ms, _) = time_ms(runs, || {
        let d = as_products(&detector.detect(&frame)?, &facts);
        Ok(renderer.render(&frame, &layout(&d, &facts))?)
    })?;
    let our_peak = crate::speech::peak_rss_mib();

    let peer: Option<serde_json::Value> = if args.no_peer {
        None
    } else {
        let python = aisle_models::ensure_venv(
            &cfg.data_dir.join("tools/bench-venv-ar"),
            PEER_REQUIREMENTS,
            "ai_edge_litert, cv2",
        )?;
        let dir = tempfile::tempdir()?;
        let frame_path = dir.path().join("frame.png");
        frame.save(&frame_path)?;
        let overlay_path = dir.path().join("overlay.json");
        std::fs::write(&overlay_path, serde_json::to_vec(&overlay)?)?;
        let packed = store.verify("objectron-assets", &mut |_| {})?;
        let a: Vec<std::ffi::OsString> = vec![
            frame_path.into(),
            overlay_path.into(),
            packed.path("packed_assets.data")?.into(),
            args.threads.to_string().into(),
            (runs * 3).to_string().into(),
        ];
        Some(crate::run_peer(
            &python,
            dir.path(),
            "peer_ar.py",
            PEER_SCRIPT,
            &a,
        )?)
    };
    let peer_f = |k: &str| peer.as_ref().and_then(|p| p[k].as_f64());
    let (peer_draw, peer_detect) = (peer_f("draw_ms"), peer_f("detect_ms"));

    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "frame": [frame.width(), frame.height()],
                "cards": overlay.cards.len(),
                "layout_ms": layout_ms,
                "render_ms": render_ms,
                "overlay_fps": 1000.0 / render_ms,
                "crowded": { "cards": crowd_overlay.cards.len(), "layout_ms": crowd_layout_ms, "render_ms": crowd_render_ms },
                "renderer_start_ms": start_ms,
                "detect_ms": det_rows.iter().map(|(e, ms)| serde_json::json!({ "engine": e.name(), "ms": ms })).collect::<Vec<_>>(),
                "detect_and_overlay_ms": frame_ms,
                "peak_mib": our_peak,
                "peer": peer,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}x", a / b));
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    outln!(
        "AR overlay, {}x{} frame, {} cards from {} objects found; median of {} runs, {} threads",
        frame.width(),
        frame.height(),
        overlay.cards.len(),
        detections.len(),
        runs,
        args.threads
    );
    outln!(
        "peer: {}",
        peer.as_ref()
            .and_then(|p| p["peer"].as_str())
            .unwrap_or("not run (--no-peer)")
    );
    outln!();
    outln!("| stage | aisle | peer | aisle/peer |");
    outln!("|---|---|---|---|");
    outln!(
        "| layout ({} cards) | {layout_ms:.3} ms | - | - |",
        overlay.cards.len()
    );
    outln!(
        "| render overlay (bevy, {}; read back) vs OpenCV draw | {render_ms:.2} ms ({:.0} fps) | {} | {} |",
        "software Vulkan when no GPU",
        1000.0 / render_ms,
        opt(peer_draw),
        ratio(render_ms, peer_draw)
    );
    outln!(
        "| crowded shelf: layout + render ({} cards of 50 products) | {:.2} ms | - | - |",
        crowd_overlay.cards.len(),
        crowd_layout_ms + crowd_render_ms
    );
    for (e, ms) in &det_rows {
        outln!(
            "| detect (SSD MobileNetV2, 300x300) on {e} vs LiteRT | {ms:.2} ms | {} | {} |",
            opt(peer_detect),
            ratio(*ms, peer_detect)
        );
    }
    let peer_frame = peer_draw.zip(peer_detect).map(|(a, b)| a + b);
    outln!(
        "| detect + layout + render, per frame | {frame_ms:.2} ms ({:.1} fps) | {} | {} |",
        1000.0 / frame_ms,
        opt(peer_frame),
        ratio(frame_ms, peer_frame)
    );
    outln!(
        "| peak memory | {} | {} | |",
        our_peak.map_or("-".to_string(), |v| format!(
            "{v:.0} MiB (bevy, both detectors, demo store)"
        )),
        peer_f("peak_mib").map_or("-".to_string(), |v| format!("{v:.0} MiB"))
    );
    outln!();
    outln!("renderer start (bevy app, adapter, pipelines): {start_ms:.0} ms, once per process");
    Ok(ExitCode::SUCCESS)
}
