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
    /// The model call alone, one tensor again and again: the engine's own speed,
    /// without the caches a scan's decoding and preprocessing leave behind.
    session: Vec<f64>,
}

/// Timed calls (after 10 warm-up calls) of the "session alone" row, on both sides.
const SESSION_RUNS: usize = 100;

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
    if let Some(p) = photos.first() {
        let x = net
            .preprocess()
            .tensor(&load_image(p, &ImageLimits::default())?);
        for i in 0..SESSION_RUNS + 10 {
            let t = Instant::now();
            net.run_tensor(x.view().into_dyn())?;
            if i >= 10 {
                s.session.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok((s, top1))
}

/// Exact and IVF search over one set of vectors: median ms per query, recall@5.
#[derive(serde::Serialize)]
struct AnnRow {
    label: String,
    n: usize,
    exact_ms: f64,
    lists: usize,
    build_s: f64,
    index_mib: f64,
    /// (cells probed, median ms, recall@5 against exact search)
    probes: Vec<(usize, f64, f64)>,
}

fn ann_row(
    label: &str,
    data: ndarray::ArrayView2<'_, f32>,
    queries: &[Vec<f32>],
    lists: usize,
    threads: usize,
    exclude_self: bool,
) -> AnnRow {
    use aisle_vision::ann::{IvfIndex, IvfParams, exact_search, recall};
    let k = 5;
    // With products as their own queries, the product itself is left out.
    let strip = |mut v: Vec<(f32, u32)>, q: usize| {
        if exclude_self {
            v.retain(|h| h.1 as usize != q);
        }
        v.truncate(k);
        v
    };
    let mut exact_t = Vec::new();
    let mut exact = Vec::new();
    for q in queries {
        let t = Instant::now();
        let e = exact_search(data, q, k + 1);
        exact_t.push(t.elapsed().as_secs_f64() * 1e3);
        exact.push(e);
    }
    let t = Instant::now();
    let index = IvfIndex::build(
        data,
        &IvfParams {
            lists,
            threads,
            ..Default::default()
        },
    );
    let build_s = t.elapsed().as_secs_f64();
    let ids: Vec<usize> = exact
        .iter()
        .map(|e| e.first().map_or(usize::MAX, |h| h.1 as usize))
        .collect();
    let mut probes = Vec::new();
    for probe in [4, 16, 64] {
        let mut times = Vec::new();
        let mut r = 0.0;
        for (i, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let a = index.search(q, k + 1, probe);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let me = if exclude_self { ids[i] } else { usize::MAX };
            r += recall(&strip(exact[i].clone(), me), &strip(a, me));
        }
        probes.push((probe, median(&mut times), r / queries.len() as f64));
    }
    AnnRow {
        label: label.to_string(),
        n: data.nrows(),
        exact_ms: median(&mut exact_t),
        lists: index.lists(),
        build_s,
        index_mib: index.memory_bytes() as f64 / (1024.0 * 1024.0),
        probes,
    }
}

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json: bool) -> Result<ExitCode> {
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
        let opts = crate::onnx_options(&cfg_threads, engine)?;
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
        let opts = crate::onnx_options(&cfg_threads, engine)?;
        ocr_runs.push(ocr_run(det, rec, &opts, &labelled, runs)?);
    }

    // One whole scan on the demo store (ConSE, 49,689 products).
    let bench_cfg = crate::isolated(&cfg_threads);
    let cat = aisle_runtime::kiosk::demo_catalog(&bench_cfg)?.0;
    let vision = crate::load_models(&cfg_threads, Some(Engine::OnnxRuntime))?;
    let scanner = aisle_runtime::kiosk::scanner(
        &bench_cfg,
        vision.clone(),
        &cat,
        &mut aisle_runtime::kiosk::index_progress(json),
    )?;
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
    // Peak memory of the scanning part (VmHWM), before the search benchmark's
    // synthetic million vectors.
    let our_peak = crate::speech::peak_rss_mib();
    // Approximate search: the demo store's real product vectors (200 products as
    // queries, each left out of its own results), then synthetic clustered
    // vectors at 50k and 1M.
    let real: Vec<&[f32]> = scanner
        .entries()
        .iter()
        .map(|e| e.text.as_slice())
        .collect();
    let dim = real.first().map_or(384, |v| v.len());
    let mut real_m = ndarray::Array2::<f32>::zeros((real.len(), dim));
    for (mut row, v) in real_m.rows_mut().into_iter().zip(&real) {
        row.assign(&ndarray::ArrayView1::from(*v));
    }
    drop(scanner);
    let step = (real_m.nrows() / 200).max(1);
    let real_q: Vec<Vec<f32>> = real_m
        .rows()
        .into_iter()
        .step_by(step)
        .map(|r| r.to_vec())
        .collect();
    let mut ann = vec![ann_row(
        "demo store, real MiniLM vectors",
        real_m.view(),
        &real_q,
        0,
        threads,
        true,
    )];
    drop(real_m);
    for (n, lists) in [(50_000, 0), (1_000_000, 1024)] {
        let (data, q) = aisle_vision::ann::clustered_vectors(n, 100, 384, n / 250, 42);
        let q: Vec<Vec<f32>> = q.rows().into_iter().map(|r| r.to_vec()).collect();
        ann.push(ann_row(
            "synthetic clustered",
            data.view(),
            &q,
            lists,
            threads,
            false,
        ));
    }

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
        Some(crate::run_peer(
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
        Some(crate::run_peer(
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
                let theirs: Vec<String> = p["text"][&*path.to_string_lossy()]
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
                "OCR detect (longest side 640)",
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
                p["top1"][&*path.to_string_lossy()].as_u64() == Some(**ours as u64)
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
            (
                "embed alone: one tensor, 100 calls in a row",
                m(&o.session),
                m(&t.session),
                peer_ms("session"),
            ),
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
                "search": ann,
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
        "One scan, {} photos x {runs} runs (median), {threads} threads, same ONNX file; aisle's onnxruntime: the same library, all graph optimisations, intra-op threads {threads}, inter-op 1; peer: {peer_name}",
        photos.len()
    );
    outln!();
    outln!(
        "| stage | aisle, onnxruntime | aisle, tract | Python ort + PIL | onnxruntime/peer | tract/peer |"
    );
    outln!("|---|---|---|---|---|---|");
    let ratio = |a: f64, p: Option<f64>| p.map_or("-".to_string(), |p| format!("{:.2}x", a / p));
    // One row per stage: both engines, the peer, and each engine's ratio to it.
    let stage_rows = |rows: &[(&str, f64, f64, Option<f64>)]| -> std::io::Result<()> {
        for (s, o, t, p) in rows {
            outln!(
                "| {s} | {o:.2} ms | {t:.2} ms | {} | {} | {} |",
                p.map_or("-".to_string(), |p| format!("{p:.2} ms")),
                ratio(*o, *p),
                ratio(*t, *p)
            );
        }
        Ok(())
    };
    stage_rows(&rows)?;
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
    stage_rows(&ocr_rows)?;
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
    outln!();
    outln!("Search, top 5, one query at a time on one thread (IVF built on {threads} threads):");
    outln!();
    outln!("| vectors | n | exact | IVF cells | build | index | 4 cells | 16 cells | 64 cells |");
    outln!("|---|---|---|---|---|---|---|---|---|");
    for r in &ann {
        let cell = |i: usize| {
            r.probes.get(i).map_or("-".to_string(), |(_, ms, rec)| {
                format!("{ms:.2} ms, recall {rec:.3}")
            })
        };
        outln!(
            "| {} | {} | {:.2} ms | {} | {:.1} s | {:.0} MiB | {} | {} | {} |",
            r.label,
            r.n,
            r.exact_ms,
            r.lists,
            r.build_s,
            r.index_mib,
            cell(0),
            cell(1),
            cell(2)
        );
    }
    Ok(ExitCode::SUCCESS)
}
