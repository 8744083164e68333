//! `aisle bench ui`: the kiosk screen measured in a real browser (Debian's headless
//! Chromium over chromedriver) with the Performance API, against the service in this
//! process. The peer is the same service's bare WebSocket client (`bench service`'s
//! voice run) on the same spoken question in the same run: the page's cost is the
//! difference.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aisle_firmware_config::DeviceConfig;
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::browser::{Browser, Media};
use crate::service::{Load, rss_mib, start, voice_runs};

const WAIT: Duration = Duration::from_secs(120);
/// The spoken question (about 3 s): the same words as `bench service`'s voice run.
const QUESTION: &str = "how much is the banana and where can I find it";

fn pct(v: &[f64], p: f64) -> f64 {
    let mut l = Load::default();
    l.latencies_ms = v.to_vec();
    l.pct(p)
}

/// `text` spoken by espeak-ng as a 16 kHz WAV for Chromium's fake microphone, with
/// `before` s of silence before it and `after` s after; the path and the speech alone.
pub fn spoken_question(
    text: &str,
    dir: &Path,
    before: f32,
    after: f32,
) -> Result<(std::path::PathBuf, aisle_speech::DecodedAudio)> {
    let (wav, mut spoken) = spoken_dialogue(&[(text, after)], dir, before)?;
    Ok((wav, spoken.remove(0)))
}

/// Several questions in one WAV: `before` s of silence, then each question spoken by
/// espeak-ng followed by its pause in seconds; the path and each question's speech.
pub fn spoken_dialogue(
    parts: &[(&str, f32)],
    dir: &Path,
    before: f32,
) -> Result<(std::path::PathBuf, Vec<aisle_speech::DecodedAudio>)> {
    let wav = dir.join("question.wav");
    let mut w = hound::WavWriter::create(
        &wav,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )?;
    let silence = |s: f32| std::iter::repeat_n(0.0f32, (s * 16_000.0) as usize);
    let mut write = |x: f32| w.write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16);
    for x in silence(before) {
        write(x)?;
    }
    let mut spoken = Vec::new();
    for (text, after) in parts {
        let raw = dir.join("raw.wav");
        let ok = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(text)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ensure!(ok, "espeak-ng is needed to speak the question");
        // Decoded to 16 kHz mono.
        let audio = aisle_speech::decode_wav(&raw)?;
        for x in audio.samples.iter().copied().chain(silence(*after)) {
            write(x)?;
        }
        spoken.push(audio);
    }
    w.finalize()?;
    Ok((wav, spoken))
}

/// A still picture as a 2-frame Y4M for Chromium's fake camera (which loops it).
pub fn camera_video(png: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let y4m = dir.join("camera.y4m");
    let ok = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-loop", "1", "-i"])
        .arg(png)
        .args(["-frames:v", "2", "-r", "5", "-pix_fmt", "yuv420p"])
        .arg(&y4m)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ensure!(ok, "ffmpeg is needed to make the camera's video");
    Ok(y4m)
}

/// Taps "Start" on the consent prompt when the page shows one.
pub fn consent(b: &Browser) -> Result<()> {
    if b.js(
        "return !document.getElementById('consent-accept').hidden",
        json!([]),
    )? == json!(true)
    {
        let c = b.testid("consent-accept")?;
        b.click(&c)?;
    }
    Ok(())
}

/// The cup and the cat photos on a grey 1280x720 shelf, as a Y4M for the fake camera.
fn shelf(cfg: &DeviceConfig, dir: &Path) -> Result<std::path::PathBuf> {
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    let photos = store.verify("sample-photos", &mut |_| {})?;
    let limits = aisle_vision::ImageLimits::default();
    let cup = aisle_vision::load_image(photos.path("coffee.png")?, &limits)?;
    let cat = aisle_vision::load_image(photos.path("chelsea.png")?, &limits)?;
    let mut canvas = image::RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &cup, 40, 180);
    image::imageops::overlay(&mut canvas, &cat, 760, 210);
    let png = dir.join("shelf.png");
    canvas.save(&png)?;
    camera_video(&png, dir)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Cold start: first contentful paint, interactive, and what was transferred.
const COLD: &str = r#"
const fcp = performance.getEntriesByName('first-contentful-paint')[0];
const inter = performance.getEntriesByName('interactive')[0];
if (!fcp || !inter) return null;
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const size = (e) => e.transferSize || e.encodedBodySize || 0;
const by = (ext) => res.filter((e) => e.name.endsWith(ext)).reduce((a, e) => a + size(e), 0);
return { fcp: fcp.startTime, interactive: inter.startTime, html: size(nav), js: by('.js'), css: by('.css') };
"#;

/// Frames painted in 5 s (requestAnimationFrame), and the camera frames answered then.
const PACE: &str = r#"
const done = arguments[arguments.length - 1];
const m = window.aisle.metrics.camera, before = m.length;
let frames = 0; const t0 = performance.now();
const tick = () => { frames++; if (performance.now() - t0 < 5000) requestAnimationFrame(tick);
  else done({ fps: frames / ((performance.now() - t0) / 1000), analysed: (m.length - before) / 5,
              ms: m.slice(before).map((f) => f.ms) }); };
requestAnimationFrame(tick);
"#;

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json_out: bool) -> Result<ExitCode> {
    let runs = args.runs.max(1);
    let mut cfg = crate::isolated(cfg);
    cfg.file.inference.threads = args.threads.max(1) as _;
    if cfg.file.paths.catalog.is_none() {
        aisle_runtime::kiosk::demo_catalog(&cfg)?;
    }
    // The page asks for consent first unless the config says otherwise; either way works.
    let dir = tempfile::tempdir()?;
    let (wav, audio) = spoken_question(QUESTION, dir.path(), 0.5, 4.0)?;
    let video = shelf(&cfg, dir.path())?;
    let (addr, load_s) = start(&cfg)?;
    let url = format!("http://{addr}/");
    let version = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "Chromium".into());

    // Cold start and the camera, at kiosk size.
    let b = Browser::launch(
        1080,
        1920,
        Media {
            video: Some(&video),
            ..Default::default()
        },
    )?;
    b.open(&url)?;
    let cold = b.wait_js(COLD, WAIT)?;
    consent(&b)?;
    b.wait_js(
        "return document.querySelectorAll('[data-testid=product-card]').length",
        WAIT,
    )
    .context("no product card appeared over the camera view")?;
    std::thread::sleep(Duration::from_secs(2));
    let pace = b.js_async(PACE, json!([]))?;
    let camera_ms: Vec<f64> = pace["ms"]
        .as_array()
        .map(|a| a.iter().map(num).collect())
        .unwrap_or_default();
    let browser_rss = b.rss_mib();
    let heap = num(&b.js(
        "return performance.memory ? performance.memory.usedJSHeapSize : null",
        json!([]),
    )?) / (1 << 20) as f64;
    drop(b);

    // Spoken questions through the page (the fake microphone plays the WAV), tablet size.
    let b = Browser::launch(
        1280,
        800,
        Media {
            audio: Some(&wav),
            ..Default::default()
        },
    )?;
    b.open(&url)?;
    b.wait_js(COLD, WAIT)?;
    consent(&b)?;
    // Sound off: the peer is not spoken to either, and a spoken answer would keep
    // the page listening over it (the next pass of the looped question would be
    // heard as a follow-up, not asked by a tap).
    let mute = b.testid("mute")?;
    b.click(&mute)?;
    let mut page_ms = Vec::new();
    let mut server_ms = Vec::new();
    let t = Instant::now();
    for i in 0..runs {
        let mic = b.testid("mic-button")?;
        b.click(&mic)?;
        let m = b.wait_js(
            &format!("const m = window.aisle.metrics.voice; return m.length > {i} ? m[{i}] : null"),
            WAIT,
        )?;
        page_ms.push(num(&m["answerPainted"]) - num(&m["lastVoice"]));
        server_ms.push(num(&m["server"]["end_of_speech_to_answer"]));
        let answer = b.text_of("answer")?;
        ensure!(
            answer.to_lowercase().contains("banana"),
            "the spoken question was not answered about bananas: {answer:?}"
        );
    }
    let voice_wall = t.elapsed().as_secs_f64();
    drop(b);

    // The peer: a bare WebSocket client, the same question at real-time pace.
    let pcm: Vec<u8> = audio
        .samples
        .iter()
        .chain(std::iter::repeat_n(&0.0f32, 16_000))
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let (bare, bare_client) = voice_runs(addr, &pcm, runs)?;

    let kb = |v: &Value| num(v) / 1024.0;
    let js_css_kb = kb(&cold["js"]) + kb(&cold["css"]);
    if json_out {
        println!(
            "{}",
            json!({
                "browser": version, "service_load_s": load_s,
                "cold_start": { "first_contentful_paint_ms": cold["fcp"], "interactive_ms": cold["interactive"],
                    "transfer_bytes": { "html": cold["html"], "js": cold["js"], "css": cold["css"] } },
                "camera": { "frame_to_cards_painted_ms": { "p50": pct(&camera_ms, 0.5), "p95": pct(&camera_ms, 0.95) },
                    "frames_analysed_per_s": pace["analysed"], "page_fps": pace["fps"] },
                "voice": { "runs": runs, "end_of_speech_to_answer_painted_ms": { "p50": pct(&page_ms, 0.5), "p95": pct(&page_ms, 0.95) },
                    "server_end_of_speech_to_answer_ms": { "p50": pct(&server_ms, 0.5) },
                    "peer_bare_websocket_ms": { "p50": bare.pct(0.5), "p95": bare.pct(0.95),
                        "client_vad_end_to_intent_end_p50": pct(&bare_client, 0.5) } },
                "memory_mib": { "service": rss_mib(), "browser": browser_rss, "js_heap": heap },
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "kiosk screen benchmark: {version} headless over chromedriver, the service in this process (models loaded in {load_s:.1} s), {} threads per model",
        args.threads
    );
    outln!(
        "  cold start (1080x1920): first contentful paint {:.0} ms (goal under 500), interactive {:.0} ms",
        num(&cold["fcp"]),
        num(&cold["interactive"])
    );
    outln!(
        "  transfer: HTML {:.1} KB, JS {:.1} KB, CSS {:.1} KB: JS+CSS {js_css_kb:.1} KB (goal under 200 KB)",
        kb(&cold["html"]),
        kb(&cold["js"]),
        kb(&cold["css"])
    );
    outln!(
        "  {:<58} {:>5} {:>8} {:>8}",
        "what",
        "n",
        "p50 ms",
        "p95 ms"
    );
    let row = |w: &str, v: &[f64]| -> Result<()> {
        outln!(
            "  {:<58} {:>5} {:>8.0} {:>8.0}",
            w,
            v.len(),
            pct(v, 0.5),
            pct(v, 0.95)
        );
        Ok(())
    };
    row(
        "voice: end of speech to answer painted (page, goal < 800)",
        &page_ms,
    )?;
    row(
        "  of which the service: end of speech to answer (server)",
        &server_ms,
    )?;
    row(
        "peer: bare WebSocket client, end of speech to intent-end",
        &bare.latencies_ms,
    )?;
    row(
        "camera: frame sent to cards painted (1080x1920, shelf)",
        &camera_ms,
    )?;
    outln!(
        "  page vs bare client (p50): {:.2}x; voice runs took {voice_wall:.1} s",
        pct(&page_ms, 0.5) / bare.pct(0.5)
    );
    outln!(
        "  camera pace: {:.1} frames analysed/s, the page painting {:.0} fps while it runs (goal at least 30)",
        num(&pace["analysed"]),
        num(&pace["fps"])
    );
    let mib = |m: Option<f64>| m.map_or("?".to_string(), |m| format!("{m:.0}"));
    outln!(
        "  memory: service {} MiB resident; Chromium {} MiB resident (all its processes), JS heap {heap:.1} MiB",
        mib(rss_mib()),
        mib(browser_rss)
    );
    Ok(ExitCode::SUCCESS)
}
