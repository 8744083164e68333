//! `aisle bench vision`: one scan's stages (decode, preprocess, embed, search) on
//! both engines against Python onnxruntime + PIL on the same ONNX file, photos and
//! threads; OCR (PP-OCRv4 detection + recognition) on both engines against
//! RapidOCR on the same ONNX files, on product labels drawn onto the photos;
//! exact search at 50k and 1M products on synthetic vectors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_vision::ocr::Ocr;
use aisle_vision::synth::{LabelFont, draw_label};
use aisle_vision::{EfficientNet, Engine, ImageLimits, load_image};
use anyhow::Result;

const PEER_SCRIPT: &str = include_str!("peer_onnxruntime_pil.py");
const PEER_REQUIREMENTS: &[&str] = &["onnxruntime==1.32.0", "pillow==13.0.0", "numpy==2.4.6"];
const PHOTOS: [&str; 4] = ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"];
const PEER_OCR_SCRIPT: &str = include_str!("peer_rapidocr.py");
const PEER_OCR_REQUIREMENTS: &[&str] = &["rapidocr-onnxruntime==1.4.4", "onnxruntime==1.32.0"];
/// Product labels drawn onto the photos for the OCR rows: lines, text height (px).
const LABELS: [(&[&str], f32); 4] = [
    (&["Espresso Roast Ground Coffee", "$8.99"], 24.0),
    (&["Organic Peanut Butter", "Creamy 16 oz"], 26.0),
    (&["Space Shuttle Model Kit", "Ages 8+"], 20.0),
    (&["Sparkling Water", "12 x 355 ml"], 18.0),
];

/// OCR on one engine: load time, per-stage samples, the text read per image.
struct OcrRun {
    load_ms: f64,
    detect: Vec<f64>,
    recognise: Vec<f64>,
    total: Vec<f64>,
    text: Vec<Vec<String>>,
}

fn ocr_run(
    det: &std::path::Path,
    rec: &std::path::Path,
    opts: &aisle_vision::OnnxOptions,
    images: &[PathBuf],
    runs: usize,
) -> Result<OcrRun> {
    let t = Instant::now();
    let ocr = Ocr::load(det, rec, opts)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut r = OcrRun {
        load_ms,
        detect: Vec::new(),
        recognise: Vec::new(),
        total: Vec::new(),
        text: Vec::new(),
    };
    for run in 0..=runs {
        for p in images {
            let t0 = Instant::now();
            let img = load_image(p, &ImageLimits::default())?;
            let out = ocr.read(&img)?;
            let total = t0.elapsed().as_secs_f64() * 1e3;
            if run > 0 {
                r.detect.push(out.detect_us as f64 / 1e3);
                r.recognise.push(out.recognise_us as f64 / 1e3);
                r.total.push(total);
            } else {
                r.text.push(out.lines.into_iter().map(|l| l.text).collect());
            }
        }
    }
    Ok(r)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Stages {
    decode: Vec<f64>,
    preprocess: Vec<f64>,
    embed: Vec<f64>,
    total: Vec<f64>,
}

fn ours(net: &EfficientNet, photos: &[PathBuf], runs: usize) -> Result<(Stages, Vec<usize>)> {
    let mut s = Stages::default();
    let mut top1 = Vec::new();
    for run in 0..=runs {
        for p in photos {
            let t0 = Instant::now();
            let img = load_image(p, &ImageLimits::default())?;
            let t1 = Instant::now();
            let x = net.preprocess().tensor(&img);
            let t2 = Instant::now();
            let out = net.run_tensor(x.view().into_dyn())?;
            let t3 = Instant::now();
            if run > 0 {
                s.decode.push((t1 - t0).as_secs_f64() * 1e3);
                s.preprocess.push((t2 - t1).as_secs_f64() * 1e3);
                s.embed.push((t3 - t2).as_secs_f64() * 1e3);
                s.total.push((t3 - t0).as_secs_f64() * 1e3);
            } else {
                let best = out
                    .probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                top1.push(best);
            }
        }
    }
    Ok((s, top1))
}

/// Exact top-5 over `n` random unit vectors of 384 dimensions: median ms per query.
fn exact_search_ms(n: usize, queries: usize) -> f64 {
    let dim = 384;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut data = vec![0f32; n * dim];
    for row in data.chunks_mut(dim) {
        row.iter_mut().for_each(|x| *x = rnd());
        aisle_vision::encoder::l2_normalise(row);
    }
    let mut times = Vec::new();
    for _ in 0..queries {
        let mut q: Vec<f32> = (0..dim).map(|_| rnd()).collect();
        aisle_vision::encoder::l2_normalise(&mut q);
        let t = Instant::now();
        let mut scores: Vec<(f32, usize)> = data
            .chunks(dim)
            .enumerate()
            .map(|(i, r)| (aisle_vision::matcher::dot(r, &q), i))
            .collect();
        scores.select_nth_unstable_by(4, |a, b| b.0.total_cmp(&a.0));
        std::hint::black_box(&scores[..5]);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&mut times)
}

pub fn run(cfg: &DeviceConfig, args: &crate::cli::BenchArgs, json: bool) -> Result<ExitCode> {
    let (runs, threads) = (args.runs.max(1), args.threads.max(1));
    let store = Store::open(&cfg.model_dir)?;
    let photos_art = store.verify("sample-photos", &mut |_| {})?;
    let photos: Vec<PathBuf> = PHOTOS
        .iter()
        .map(|p| photos_art.path(p).map(|p| p.to_path_buf()))
        .collect::<Result<_, _>>()?;
    let model_art = store.verify(&cfg.file.models.image_embedding, &mut |_| {})?;
    let model = model_art.first_file()?.0.to_path_buf();

    let mut cfg_threads = cfg.clone();
    cfg_threads.file.inference.threads = threads as u32;
    let mut engines = Vec::new();
    for engine in [Engine::OnnxRuntime, Engine::Tract] {
        let opts = crate::vision_cmd::onnx_options(&cfg_threads, engine)?;
        let t = Instant::now();
        let net = EfficientNet::load(&model, "bench", &opts)?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let (stages, top1) = ours(&net, &photos, runs)?;
        engines.push((engine, load_ms, stages, top1));
    }

    // OCR on product labels drawn onto the photos (real font, known text).
    let label_dir = tempfile::tempdir()?;
    let font = LabelFont::dejavu()?;
    let mut labelled = Vec::new();
    for (p, (lines, px)) in photos.iter().zip(LABELS) {
        let mut img = load_image(p, &ImageLimits::default())?;
        let (w, h) = img.dimensions();
        draw_label(&font, &mut img, (w / 10, h / 2), lines, px);
        let out = label_dir
            .path()
            .join(format!("label-{}.png", labelled.len()));
        img.save(&out)?;
        labelled.push(out);
    }
    let det_art = store.verify(&cfg.file.models.ocr_detection, &mut |_| {})?;
    let rec_art = store.verify(&cfg.file.models.ocr_recognition, &mut |_| {})?;
    let (det, rec) = (det_art.first_file()?.0, rec_art.first_file()?.0);
    let mut ocr_runs = Vec::new();
    for engine in [Engine::OnnxRuntime, Engine::Tract] {
        let opts = crate::vision_cmd::onnx_options(&cfg_threads, engine)?;
        ocr_runs.push(ocr_run(det, rec, &opts, &labelled, runs)?);
    }

    // One whole scan on the demo store (ConSE, 49,689 products).
    let cat = crate::store_cmd::demo_store(cfg, true)?;
    let vision = crate::vision_cmd::load_models(&cfg_threads, Some(Engine::OnnxRuntime))?;
    let scanner = crate::vision_cmd::scanner(&cfg_threads, &vision, &cat, json)?;
    let mut search = Vec::new();
    let mut scan_total = Vec::new();
    for run in 0..=runs {
        for p in &photos {
            let r = scanner.scan_path(p, 5)?;
            if run > 0 {
                search.push(r.timings.search_us as f64 / 1e3);
                scan_total.push(r.timings.total_us as f64 / 1e3);
            }
        }
    }
    let products = scanner.len();
    drop(scanner);
    let our_peak = crate::bench::speech::peak_rss_mib();
    let search_50k = exact_search_ms(50_000, 20);
    let search_1m = exact_search_ms(1_000_000, 5);

    let peer: Option<serde_json::Value> = if args.no_peer {
        None
    } else {
        let python = aisle_models::ensure_venv(
            &cfg.data_dir.join("tools/bench-venv-vision"),
            PEER_REQUIREMENTS,
            "onnxruntime, PIL, numpy",
        )?;
        let dir = tempfile::tempdir()?;
        let mut a: Vec<std::ffi::OsString> = vec![
            model.clone().into(),
            threads.to_string().into(),
            runs.to_string().into(),
        ];
        a.extend(photos.iter().map(|p| p.clone().into_os_string()));
        Some(crate::bench::run_peer(
            &python,
            dir.path(),
            "peer_onnxruntime_pil.py",
            PEER_SCRIPT,
            &a,
        )?)
    };
    let ocr_peer: Option<serde_json::Value> = if args.no_peer {
        None
    } else {
        let python = aisle_models::ensure_venv(
            &cfg.data_dir.join("tools/bench-venv-ocr"),
            PEER_OCR_REQUIREMENTS,
            "rapidocr_onnxruntime, onnxruntime",
        )?;
        let dir = tempfile::tempdir()?;
        let mut a: Vec<std::ffi::OsString> = vec![
            det.into(),
            rec.into(),
            threads.to_string().into(),
            runs.to_string().into(),
        ];
        a.extend(labelled.iter().map(|p| p.clone().into_os_string()));
        Some(crate::bench::run_peer(
            &python,
            dir.path(),
            "peer_rapidocr.py",
            PEER_OCR_SCRIPT,
            &a,
        )?)
    };
    let ocr_peer_ms = |k: &str| ocr_peer.as_ref().and_then(|p| p["median_ms"][k].as_f64());
    let squash = |v: &[String]| v.concat().replace(' ', "");
    let ocr_agree = ocr_peer.as_ref().map(|p| {
        labelled
            .iter()
            .zip(&ocr_runs[0].text)
            .filter(|(path, ours)| {
                let theirs: Vec<String> = p["text"][path.to_string_lossy().as_ref()]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                squash(&theirs) == squash(ours)
            })
            .count()
    });
    let ocr_right = ocr_runs[0]
        .text
        .iter()
        .zip(LABELS)
        .filter(|(read, (lines, _))| {
            squash(read) == squash(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>())
        })
        .count();
    let ocr_rows: Vec<(&str, f64, f64, Option<f64>)> = {
        let (o, t) = (&ocr_runs[0], &ocr_runs[1]);
        let m = |v: &Vec<f64>| median(&mut v.clone());
        vec![
            (
                "OCR detect (640x640)",
                m(&o.detect),
                m(&t.detect),
                ocr_peer_ms("detect"),
            ),
            (
                "OCR recognise (2 lines)",
                m(&o.recognise),
                m(&t.recognise),
                ocr_peer_ms("recognise"),
            ),
            (
                "OCR whole (decode + detect + recognise)",
                m(&o.total),
                m(&t.total),
                ocr_peer_ms("total"),
            ),
        ]
    };
    let peer_ms = |k: &str| peer.as_ref().and_then(|p| p["median_ms"][k].as_f64());
    let agree = peer.as_ref().map(|p| {
        photos
            .iter()
            .zip(&engines[0].3)
            .filter(|(path, ours)| {
                p["top1"][path.to_string_lossy().as_ref()].as_u64() == Some(**ours as u64)
            })
            .count()
    });

    let rows: Vec<(&str, f64, f64, Option<f64>)> = {
        let (o, t) = (&engines[0].2, &engines[1].2);
        let m = |v: &Vec<f64>| median(&mut v.clone());
        vec![
            ("decode", m(&o.decode), m(&t.decode), peer_ms("decode")),
            (
                "preprocess",
                m(&o.preprocess),
                m(&t.preprocess),
                peer_ms("preprocess"),
            ),
            (
                "embed (EfficientNet-Lite0)",
                m(&o.embed),
                m(&t.embed),
                peer_ms("embed"),
            ),
            ("end to end", m(&o.total), m(&t.total), peer_ms("total")),
        ]
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "threads": threads,
                "runs": runs,
                "photos": PHOTOS,
                "stages_ms": rows.iter().map(|(s, o, t, p)| serde_json::json!({
                    "stage": s, "aisle_onnxruntime": o, "aisle_tract": t, "peer": p,
                })).collect::<Vec<_>>(),
                "ocr_ms": ocr_rows.iter().map(|(s, o, t, p)| serde_json::json!({
                    "stage": s, "aisle_onnxruntime": o, "aisle_tract": t, "peer": p,
                })).collect::<Vec<_>>(),
                "ocr_load_ms": { "onnxruntime": ocr_runs[0].load_ms, "tract": ocr_runs[1].load_ms, "peer": ocr_peer.as_ref().map(|p| p["load_ms"].clone()) },
                "ocr_text": ocr_runs[0].text,
                "ocr_exact": ocr_right,
                "ocr_same_text_as_peer": ocr_agree,
                "ocr_peer": ocr_peer.as_ref().map(|p| p["peer"].clone()),
                "ocr_peer_peak_mib": ocr_peer.as_ref().map(|p| p["peak_mib"].clone()),
                "load_ms": { "onnxruntime": engines[0].1, "tract": engines[1].1, "peer": peer.as_ref().map(|p| p["load_ms"].clone()) },
                "scan_demo_store": { "products": products, "search_ms": median(&mut search), "total_ms": median(&mut scan_total) },
                "exact_search_ms": { "50k": search_50k, "1m": search_1m },
                "top1_agree": agree,
                "peak_mib": { "aisle": our_peak, "peer": peer.as_ref().map(|p| p["peak_mib"].clone()) },
                "peer": peer.as_ref().map(|p| p["peer"].clone()),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let peer_name = peer
        .as_ref()
        .and_then(|p| p["peer"].as_str())
        .unwrap_or("(peer skipped)")
        .to_string();
    outln!(
        "One scan, {} photos x {runs} runs (median), {threads} threads, same ONNX file; peer: {peer_name}",
        photos.len()
    );
    outln!();
    outln!(
        "| stage | aisle, onnxruntime | aisle, tract | Python ort + PIL | onnxruntime/peer | tract/peer |"
    );
    outln!("|---|---|---|---|---|---|");
    let ratio = |a: f64, p: Option<f64>| p.map_or("-".to_string(), |p| format!("{:.2}x", a / p));
    for (s, o, t, p) in &rows {
        outln!(
            "| {s} | {o:.2} ms | {t:.2} ms | {} | {} | {} |",
            p.map_or("-".to_string(), |p| format!("{p:.2} ms")),
            ratio(*o, *p),
            ratio(*t, *p)
        );
    }
    outln!(
        "| model load + warm-up | {:.0} ms | {:.0} ms | {} | | |",
        engines[0].1,
        engines[1].1,
        peer.as_ref()
            .and_then(|p| p["load_ms"].as_f64())
            .map_or("-".to_string(), |v| format!("{v:.0} ms"))
    );
    outln!(
        "| peak memory | {} | | {} | | |",
        our_peak.map_or("-".to_string(), |v| format!(
            "{v:.0} MiB (whole bench: both engines, OCR, MiniLM, {products}-product index)"
        )),
        peer.as_ref()
            .and_then(|p| p["peak_mib"].as_f64())
            .map_or("-".to_string(), |v| format!("{v:.0} MiB (one session)"))
    );
    outln!();
    if let Some(a) = agree {
        outln!(
            "same top-1 ImageNet class as the peer: {a}/{}",
            photos.len()
        );
    }
    outln!();
    let ocr_peer_name = ocr_peer
        .as_ref()
        .and_then(|p| p["peer"].as_str())
        .unwrap_or("(peer skipped)")
        .to_string();
    outln!(
        "OCR, {} labelled photos x {runs} runs (median), {threads} threads, same ONNX files; peer: {ocr_peer_name}",
        labelled.len()
    );
    outln!();
    outln!(
        "| stage | aisle, onnxruntime | aisle, tract | RapidOCR | onnxruntime/peer | tract/peer |"
    );
    outln!("|---|---|---|---|---|---|");
    for (s, o, t, p) in &ocr_rows {
        outln!(
            "| {s} | {o:.2} ms | {t:.2} ms | {} | {} | {} |",
            p.map_or("-".to_string(), |p| format!("{p:.2} ms")),
            ratio(*o, *p),
            ratio(*t, *p)
        );
    }
    outln!(
        "| models load + warm-up | {:.0} ms | {:.0} ms | {} | | |",
        ocr_runs[0].load_ms,
        ocr_runs[1].load_ms,
        ocr_peer
            .as_ref()
            .and_then(|p| p["load_ms"].as_f64())
            .map_or("-".to_string(), |v| format!("{v:.0} ms"))
    );
    outln!(
        "| peak memory | (in the figure above) | | {} | | |",
        ocr_peer
            .as_ref()
            .and_then(|p| p["peak_mib"].as_f64())
            .map_or("-".to_string(), |v| format!("{v:.0} MiB"))
    );
    outln!();
    outln!(
        "labels read exactly (spaces aside): {ocr_right}/{}; same text as the peer: {}",
        labelled.len(),
        ocr_agree.map_or("-".to_string(), |a| format!("{a}/{}", labelled.len()))
    );
    outln!(
        "whole scan on the demo store ({products} products, ConSE + OCR beside it + fusion): search {:.2} ms, end to end {:.2} ms",
        median(&mut search),
        median(&mut scan_total)
    );
    outln!(
        "exact search, 384-d, top 5 (one thread): 50k products {search_50k:.2} ms, 1M products {search_1m:.2} ms (recall 1.0; no approximate index yet)"
    );
    Ok(ExitCode::SUCCESS)
}
