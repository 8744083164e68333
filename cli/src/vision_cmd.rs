//! `aisle scan`, `aisle catalog enroll`: product recognition at the CLI edge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_runtime::kiosk::{self, Kiosk, Parts};
use aisle_runtime::scan::{ScanReport, VisionModels};
use aisle_vision::{Decision, Engine};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn open_store(cfg: &DeviceConfig) -> Result<Store> {
    Store::open(&cfg.model_dir)
        .with_context(|| format!("cannot open model store {}", cfg.model_dir.display()))
}

pub fn load_models(
    cfg: &DeviceConfig,
    engine_override: Option<Engine>,
) -> Result<Arc<VisionModels>> {
    Ok(Arc::new(kiosk::vision_models(
        cfg,
        &open_store(cfg)?,
        engine_override,
    )?))
}

/// A progress bar on stderr while product texts are embedded (hidden when quiet or
/// not a terminal).
pub fn index_bar(quiet: bool) -> impl FnMut(usize, usize) {
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("embedding product texts");
    let mut logged = false;
    move |done, total| {
        if !logged {
            tracing::info!(
                products = total,
                "building the product embedding index (cached afterwards)"
            );
            logged = true;
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
        }
    }
}

pub fn print_report(r: &ScanReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    match (r.decision, r.matches.first()) {
        (Decision::Identified, Some(m)) => outln!(
            "{}: identified {} ({}), confidence {:.2}",
            r.image,
            m.name,
            m.sku,
            r.confidence
        ),
        _ => outln!(
            "{}: unknown product (best guess below the confidence threshold: {:.2})",
            r.image,
            r.confidence
        ),
    }
    for (i, m) in r.matches.iter().enumerate() {
        outln!(
            "  {}. {:<10} {:<40} score {:>6.2}  photo {}  zero-shot {:.2}  ocr {}  [{}]",
            i + 1,
            m.sku,
            truncate(&m.name, 40),
            m.score,
            m.signals
                .visual
                .map_or("  -  ".to_string(), |v| format!("{v:.2}")),
            m.signals.zero_shot,
            m.signals
                .ocr
                .map_or("  -  ".to_string(), |v| format!("{v:.2}")),
            m.contributed.join(", ")
        );
    }
    match &r.ocr_text {
        Some(t) if !t.is_empty() => outln!("  label text: {}", t.replace('\n', " | ")),
        Some(_) => outln!("  label text: none read"),
        None => {}
    }
    outln!(
        "  seen: {}",
        r.seen
            .iter()
            .take(3)
            .map(|(l, p)| format!("{} {:.2}", l.split(',').next().unwrap_or(l), p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let t = &r.timings;
    outln!(
        "  timings: decode {:.1} ms, preprocess {:.1} ms, embed {:.1} ms, ocr {:.1} ms (beside embed), search {:.1} ms, total {:.1} ms",
        t.decode_us as f64 / 1000.0,
        t.preprocess_us as f64 / 1000.0,
        t.embed_us as f64 / 1000.0,
        t.ocr_us as f64 / 1000.0,
        t.search_us as f64 / 1000.0,
        t.total_us as f64 / 1000.0
    );
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn scan(
    cfg: &DeviceConfig,
    image: &Path,
    top: usize,
    engine_override: Option<Engine>,
    json: bool,
) -> Result<ExitCode> {
    // Decode first: a bad image fails at once, before any model or index work.
    let t0 = std::time::Instant::now();
    let img = aisle_vision::load_image(image, &aisle_vision::ImageLimits::default())?;
    let decode_us = t0.elapsed().as_micros() as u64;
    let kiosk = Kiosk::load_with(cfg, Parts::vision(engine_override), &mut index_bar(json))?;
    let mut report = kiosk.scan_image(&img, top.max(1))?;
    report.image = image.display().to_string();
    report.timings.decode_us = decode_us;
    report.timings.total_us += decode_us;
    print_report(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn enroll(cfg: &DeviceConfig, sku: &str, photos: &[PathBuf], json: bool) -> Result<ExitCode> {
    // Every photo is read and decoded before anything is stored.
    let mut decoded = Vec::with_capacity(photos.len());
    for path in photos {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read photo {}", path.display()))?;
        let img = aisle_vision::decode_image(&bytes, path, &aisle_vision::ImageLimits::default())?;
        decoded.push((aisle_models::hash::sha256_bytes(&bytes), img));
    }
    let kiosk = Kiosk::load_with(cfg, Parts::vision(None), &mut index_bar(json))?;
    let added = kiosk.enroll(sku, &decoded)?;
    let total = kiosk.enrolled_photos(sku)?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "sku": sku, "photos": photos.len(), "added": added, "enrolled": total })
        );
    } else {
        outln!(
            "{sku}: {added} new reference photo(s) of {} given; {total} enrolled (only embeddings are stored)",
            photos.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `aisle eval vision`: Fashion-MNIST zero-shot and few-shot accuracy, open-set
/// rejection with two classes held out, and the confidence calibration fitted on
/// one half of the test photos and checked on the other.
pub fn eval(
    cfg: &DeviceConfig,
    limit: usize,
    engine_override: Option<Engine>,
    json: bool,
) -> Result<ExitCode> {
    use aisle_vision::eval;
    let store = Store::open(&cfg.model_dir)?;
    let fm = store.verify("fashion-mnist", &mut |_| {})?;
    let train_x = eval::read_images(fm.path("train-images-idx3-ubyte.gz")?, 1000)?;
    let train_y = eval::read_labels(fm.path("train-labels-idx1-ubyte.gz")?, 1000)?;
    let test_x = eval::read_images(fm.path("t10k-images-idx3-ubyte.gz")?, limit)?;
    let test_y = eval::read_labels(fm.path("t10k-labels-idx1-ubyte.gz")?, limit)?;
    let models = load_models(cfg, engine_override)?;
    let model_box = models.model();
    let model = model_box.as_ref();
    // 10 training photos per class are all the enrolment needs.
    let mut pick = Vec::new();
    let mut per = [0usize; 10];
    for (i, &l) in train_y.iter().enumerate() {
        if per[l as usize] < 10 {
            per[l as usize] += 1;
            pick.push(i);
        }
    }
    let shots_x: Vec<_> = pick.iter().map(|&i| train_x[i].clone()).collect();
    let shots_y: Vec<u8> = pick.iter().map(|&i| train_y[i]).collect();
    let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((shots_x.len() + test_x.len()) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("embedding photos [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = std::time::Instant::now();
    let train = eval::embed_all(model, &shots_x, &shots_y, &mut |_| bar.inc(1))?;
    let test = eval::embed_all(model, &test_x, &test_y, &mut |_| bar.inc(1))?;
    bar.finish_and_clear();
    let per_photo_ms =
        t0.elapsed().as_secs_f64() * 1000.0 / (shots_x.len() + test_x.len()).max(1) as f64;
    let held_out = [8usize, 9];
    let known: Vec<usize> = (0..10).filter(|c| !held_out.contains(c)).collect();
    let all: Vec<usize> = (0..10).collect();
    let fusion = aisle_vision::Fusion {
        threshold: cfg.file.thresholds.match_confidence as f32,
        ..Default::default()
    };
    // Calibration: fitted on the first half of the test photos (5 shots), applied
    // to the second half.
    let half = test.labels.len() / 2;
    let split = |e: &eval::Embedded, r: std::ops::Range<usize>| eval::Embedded {
        visual: e.visual[r.clone()].to_vec(),
        joint: e.joint[r.clone()].to_vec(),
        certainty: e.certainty[r.clone()].to_vec(),
        labels: e.labels[r].to_vec(),
    };
    let (fit_half, check_half) = (split(&test, 0..half), split(&test, half..test.labels.len()));
    let refs5 = eval::shots(&train, 5);
    // The weight of zero-shot evidence against photo evidence: the one that ranks
    // best on the fitting half (5 shots).
    let closed5 = eval::catalog(model, &refs5, &all);
    let mut best = (f64::MIN, fusion);
    for zw in [0.0f32, 0.5, 1.0, 2.0, 4.0, 8.0] {
        let f = aisle_vision::Fusion {
            zero_shot_weight: zw,
            ..fusion
        };
        let acc = eval::evaluate(&closed5, &closed5, &[], &fit_half, &f, "fit").accuracy;
        tracing::info!(zero_shot_weight = zw, accuracy = acc, "fusion weight");
        if acc > best.0 {
            best = (acc, f);
        }
    }
    let fusion = best.1;
    let (fitted, loss) = eval::calibrate(&eval::catalog(model, &refs5, &known), &fit_half, &fusion);
    let mut rows = Vec::new();
    for k in [0usize, 1, 5, 10] {
        let refs = eval::shots(&train, k);
        let name = if k == 0 {
            "zero-shot (class names only)".to_string()
        } else {
            format!("{k}-shot (+ class names)")
        };
        let row = eval::evaluate(
            &eval::catalog(model, &refs, &all),
            &eval::catalog(model, &refs, &known),
            &held_out,
            &check_half,
            &fitted,
            &name,
        );
        rows.push(row);
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dataset": "fashion-mnist test",
                "photos": test.labels.len(),
                "evaluated_on": check_half.labels.len(),
                "held_out": held_out.iter().map(|&c| eval::CLASSES[c]).collect::<Vec<_>>(),
                "calibration": fitted,
                "calibration_log_loss": loss,
                "rows": rows,
                "per_photo_ms": per_photo_ms,
                "engine": models.image_engine().name(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "Fashion-MNIST: {} test photos (calibration fitted on {}, figures on the other {}), {} engine, {:.1} ms per photo",
        test.labels.len(),
        fit_half.labels.len(),
        check_half.labels.len(),
        models.image_engine(),
        per_photo_ms
    );
    outln!(
        "open set: {} held out of the catalog; threshold {:.2}",
        held_out.map(|c| eval::CLASSES[c]).join(" and "),
        fitted.threshold
    );
    outln!();
    outln!(
        "| setting | top-1 accuracy (10 classes) | unknown rejected | known identified | published CLIP |"
    );
    outln!("|---|---|---|---|---|");
    for r in &rows {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        outln!(
            "| {} | {:.1}% | {} | {} | not reported |",
            r.setting,
            r.accuracy * 100.0,
            pct(r.unknown_rejected),
            pct(r.known_identified)
        );
    }
    outln!();
    outln!(
        "fusion: score = {:.1} (photo cosine - {:.2}) + {:.1} (zero-shot cosine - {:.2}); zero-shot weight picked on the fitting half",
        fitted.visual_weight,
        fitted.visual_centre,
        fitted.zero_shot_weight,
        fitted.zero_shot_centre
    );
    outln!(
        "calibration: confidence = sigmoid({:.2} + {:.2} score + {:.2} margin + {:.2} certainty), log-loss {:.3}",
        fitted.bias,
        fitted.top,
        fitted.margin,
        fitted.certainty,
        loss
    );
    outln!(
        "chance is 10%. The CLIP paper (Radford et al. 2021) evaluates MNIST but not Fashion-MNIST, so there is no published CLIP figure to print beside these."
    );
    Ok(ExitCode::SUCCESS)
}
