//! Product recognition against a small catalog, real weights and real photos.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aisle_models::Store;
use aisle_runtime::catalog::{self, CatalogDb, ImportOptions};
use aisle_runtime::scan::{ScanError, Scanner, VisionModels};
use aisle_vision::synth::{LabelFont, draw_label};
use aisle_vision::{Decision, Engine};

use crate::data_dir;

fn store() -> Store {
    Store::open(&data_dir().join("models")).expect("model store")
}

pub(crate) fn file(model: &str, name: &str) -> PathBuf {
    store()
        .verify(model, &mut |_| {})
        .unwrap_or_else(|e| panic!("{model} installed by the test command: {e}"))
        .path(name)
        .expect("file")
        .to_path_buf()
}

/// The vision models as the kiosk loads them (`kiosk::vision_models`), from the real
/// store: 2 threads, OCR on or off.
fn load_vision(engine: Engine, ocr: bool) -> VisionModels {
    let cfg = config(&format!("[inference]\nthreads = 2\nocr = {ocr}\n"));
    aisle_runtime::kiosk::vision_models(&cfg, &store(), Some(engine)).expect("vision models")
}

/// A device config over the real data directory (the test command's model store).
pub(crate) fn config(toml: &str) -> aisle_firmware_config::DeviceConfig {
    aisle_firmware_config::load_str(
        toml,
        Path::new("<test>"),
        Path::new("."),
        &aisle_firmware_config::Overrides {
            data_dir: Some(data_dir()),
        },
    )
    .expect("config")
}

/// Loaded once per test binary.
pub(crate) fn models() -> std::sync::Arc<VisionModels> {
    static M: OnceLock<std::sync::Arc<VisionModels>> = OnceLock::new();
    M.get_or_init(|| std::sync::Arc::new(load_vision(Engine::OnnxRuntime, true)))
        .clone()
}

pub(crate) const CATALOG: &str = "sku,name,price,stock,aisle
COF-1,Espresso Roast Ground Coffee,8.99,12,coffee
CAT-1,Cat Food Chicken Recipe,1.29,40,cat food care
TOY-1,Space Shuttle Model Kit,24.99,3,toys
BAN-1,Organic Bananas,0.69,100,fresh fruits
MLK-1,Whole Milk,3.49,20,milk
PAP-1,Paper Towels,6.99,15,paper goods
DOG-1,Dog Treats,4.99,25,dog food care
WAT-1,Sparkling Water,0.99,60,water seltzer sparkling water
";

pub(crate) fn catalog(dir: &Path) -> CatalogDb {
    let csv = dir.join("products.csv");
    std::fs::write(&csv, CATALOG).expect("write csv");
    let mut cat = CatalogDb::open(&dir.join("store.sqlite")).expect("catalog");
    catalog::import_file(&mut cat, &csv, &ImportOptions::default()).expect("import");
    cat
}

pub(crate) fn photo(name: &str) -> PathBuf {
    file("sample-photos", name)
}

#[test]
fn real_photos_are_identified_or_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cat = catalog(dir.path());
    let cache = dir.path().join("cache");
    let mut built = 0;
    let mut scanner =
        Scanner::build(models(), &cat, &cache, &mut |_, _| built += 1).expect("index");
    assert!(built > 0, "the first build embeds the product texts");

    // Zero-shot from names alone.
    let r = scanner.scan_path(&photo("coffee.png"), 3).expect("scan");
    assert_eq!(r.matches[0].sku, "COF-1", "{r:#?}");
    assert_eq!(r.decision, Decision::Identified, "{r:#?}");
    assert!(r.matches[0].contributed.contains(&"zero-shot"), "{r:#?}");
    let r = scanner.scan_path(&photo("chelsea.png"), 3).expect("scan");
    assert_eq!(r.matches[0].sku, "CAT-1", "{r:#?}");
    // An astronaut is not a product of this store: rejected, not forced.
    let r = scanner.scan_path(&photo("astronaut.png"), 3).expect("scan");
    assert_eq!(r.decision, Decision::Unknown, "{r:#?}");

    // Few-shot: enrol a cropped, mirrored copy of the rocket photo as the model
    // kit's reference; the original is then identified by its photo.
    let rocket =
        aisle_vision::load_image(&photo("rocket.jpg"), &Default::default()).expect("rocket");
    let (w, h) = rocket.dimensions();
    let crop =
        image::imageops::crop_imm(&rocket, w / 10, h / 10, w * 8 / 10, h * 8 / 10).to_image();
    let reference = dir.path().join("kit-reference.png");
    image::imageops::flip_horizontal(&crop)
        .save(&reference)
        .expect("save");
    assert_eq!(
        scanner
            .enroll(&mut cat, "TOY-1", std::slice::from_ref(&reference))
            .expect("enroll"),
        1
    );
    assert_eq!(
        scanner
            .enroll(&mut cat, "TOY-1", std::slice::from_ref(&reference))
            .expect("again"),
        0,
        "same photo twice is a no-op"
    );
    let r = scanner.scan_path(&photo("rocket.jpg"), 3).expect("scan");
    assert_eq!(r.matches[0].sku, "TOY-1", "{r:#?}");
    assert_eq!(r.decision, Decision::Identified, "{r:#?}");
    assert!(r.matches[0].contributed.contains(&"photo"), "{r:#?}");
    assert!(
        r.matches[0].signals.visual.is_some_and(|v| v > 0.7),
        "{r:#?}"
    );
    // The astronaut is still unknown with a reference photo in the catalog.
    let r = scanner.scan_path(&photo("astronaut.png"), 3).expect("scan");
    assert_eq!(r.decision, Decision::Unknown, "{r:#?}");

    // Enrolment is all or nothing: one bad file adds nothing.
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really").expect("write");
    let e = scanner
        .enroll(&mut cat, "COF-1", &[photo("coffee.png"), bad])
        .expect_err("bad photo");
    assert!(e.to_string().contains("broken.jpg"), "{e}");
    let e = scanner
        .enroll(&mut cat, "NOPE", &[photo("coffee.png")])
        .expect_err("sku");
    assert!(matches!(e, ScanError::UnknownSku(_)), "{e}");

    // Persisted: a rebuild loads the index and the enrolled photo without embedding.
    let mut rebuilt = 0;
    let mut again =
        Scanner::build(models(), &cat, &cache, &mut |_, _| rebuilt += 1).expect("index");
    assert_eq!(rebuilt, 0, "index loaded from the cache");
    assert_eq!(again.enrolled_photos(), 1);

    // Through the approximate index (what catalogs of 200k+ products use) the
    // decisions are the same; with a single cell read, a product with enrolled
    // photos is still a candidate.
    let exact: Vec<_> = ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"]
        .iter()
        .map(|p| again.scan_path(&photo(p), 3).expect("scan"))
        .collect();
    assert!(!again.approximate());
    assert!(again.use_approximate_search() > 1);
    for (p, x) in ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"]
        .iter()
        .zip(&exact)
    {
        let y = again.scan_path(&photo(p), 3).expect("scan");
        assert_eq!(
            (x.decision, &x.matches[0].sku),
            (y.decision, &y.matches[0].sku),
            "{p}"
        );
    }
    again.probes = 1;
    let r = again.scan_path(&photo("rocket.jpg"), 3).expect("scan");
    assert_eq!(
        (r.decision, r.matches[0].sku.as_str()),
        (Decision::Identified, "TOY-1")
    );
    // A catalog change rebuilds it.
    let more = dir.path().join("more.csv");
    std::fs::write(
        &more,
        "sku,name,price,stock,aisle\nTEA-1,Green Tea,3.99,8,tea\n",
    )
    .expect("csv");
    catalog::import_file(&mut cat, &more, &ImportOptions::default()).expect("import");
    let mut changed = 0;
    let s = Scanner::build(models(), &cat, &cache, &mut |_, _| changed += 1).expect("index");
    assert!(changed > 0);
    assert_eq!(s.len(), 9);
}

/// Label text read by OCR names the product: it outweighs what the picture
/// looks like, and turns a photo the image model cannot place into a product.
#[test]
fn labels_read_by_ocr_identify_products() {
    let dir = tempfile::tempdir().expect("tmp");
    let cat = catalog(dir.path());
    let scanner =
        Scanner::build(models(), &cat, &dir.path().join("cache"), &mut |_, _| {}).expect("index");
    let load =
        |name: &str| aisle_vision::load_image(&photo(name), &Default::default()).expect("photo");
    let font = LabelFont::dejavu().expect("DejaVu Sans Bold, installed by the test command");
    // (photo, label lines, text height, expected product, top-1 without the label)
    let cases: &[(&str, &[&str], f32, &str, &str)] = &[
        (
            "astronaut.png",
            &["Space Shuttle Model Kit", "Ages 8+"],
            22.0,
            "TOY-1",
            "unknown",
        ),
        (
            "chelsea.png",
            &["Organic Bananas", "$0.69 / lb"],
            26.0,
            "BAN-1",
            "CAT-1",
        ),
        (
            "coffee.png",
            &["Whole Milk", "1 gal"],
            16.0,
            "MLK-1",
            "COF-1",
        ),
        ("rocket.jpg", &["SparklingWater"], 20.0, "WAT-1", "unknown"),
    ];
    for (name, lines, px, sku, before) in cases {
        let plain = scanner.scan_image(&load(name), 3).expect("scan");
        let seen_before = match plain.decision {
            Decision::Identified => plain.matches[0].sku.as_str(),
            Decision::Unknown => "unknown",
        };
        assert_eq!(seen_before, *before, "{name} without a label: {plain:#?}");
        let mut img = load(name);
        let (w, h) = img.dimensions();
        draw_label(&font, &mut img, (w / 8, h / 3), lines, *px);
        let r = scanner.scan_image(&img, 3).expect("scan");
        println!(
            "{name} + {lines:?}: {:?} {} conf {:.2}, read {:?}, ocr {:.1} ms",
            r.decision,
            r.matches[0].sku,
            r.confidence,
            r.ocr_text,
            r.timings.ocr_us as f64 / 1000.0
        );
        assert_eq!(r.matches[0].sku, *sku, "{r:#?}");
        assert_eq!(r.decision, Decision::Identified, "{r:#?}");
        assert!(r.matches[0].contributed.contains(&"ocr"), "{r:#?}");
        let text = r.ocr_text.as_deref().unwrap_or_default().replace(' ', "");
        assert!(text.contains(&lines[0].replace(' ', "")), "{r:#?}");
        assert!(!r.ocr_lines.is_empty() && r.timings.ocr_us > 0);
    }
}

#[test]
fn tract_and_onnxruntime_agree() {
    let dir = tempfile::tempdir().expect("tmp");
    let cat = catalog(dir.path());
    let tract = load_vision(Engine::Tract, false);
    let a = Scanner::build(models(), &cat, &dir.path().join("c"), &mut |_, _| {}).expect("ort");
    let b = Scanner::build(
        std::sync::Arc::new(tract),
        &cat,
        &dir.path().join("c"),
        &mut |_, _| {},
    )
    .expect("tract");
    for p in ["coffee.png", "chelsea.png", "rocket.jpg"] {
        let x = a.scan_path(&photo(p), 3).expect("ort scan");
        let y = b.scan_path(&photo(p), 3).expect("tract scan");
        assert_eq!(x.matches[0].sku, y.matches[0].sku, "{p}");
        assert_eq!(x.decision, y.decision, "{p}");
        assert!(
            (x.confidence - y.confidence).abs() < 0.01,
            "{p}: {} vs {}",
            x.confidence,
            y.confidence
        );
        assert_eq!(x.seen[0].0, y.seen[0].0, "{p}");
    }
}

/// A data directory of its own under `dir` for the CLI: the vision models (and
/// `extra`) copied from the real store, the test catalog imported. Returns its path.
pub(crate) fn cli_data_dir(dir: &Path, extra: &[&str]) -> PathBuf {
    let data = dir.join("data");
    let own = Store::open(&data.join("models")).expect("store");
    let base = [
        "all-minilm-l6-v2",
        "efficientnet-lite0-onnx",
        "imagenet-labels",
        "onnxruntime",
        "ppocr-v4-det",
        "ppocr-v4-rec",
        "ppocr-mobile-v2-cls",
    ];
    for name in base.iter().chain(extra) {
        own.copy_model_from(&store(), name).expect("copy model");
    }
    let csv = dir.join("products.csv");
    std::fs::write(&csv, CATALOG).expect("csv");
    let out = crate::aisle(&[
        "--data-dir",
        &data.to_string_lossy(),
        "catalog",
        "import",
        &csv.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    data
}

/// `aisle catalog enroll` and `aisle scan` end to end in a data directory of their own.
#[test]
fn scan_and_enroll_from_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = cli_data_dir(dir.path(), &[]);
    let d = data.to_string_lossy().into_owned();

    // Bad images fail at once, naming the file, exit 1.
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").expect("write");
    let out = crate::aisle(&["--data-dir", &d, "scan", &empty.to_string_lossy()]);
    crate::assert_fails_with(&out, "empty.jpg: empty file");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "catalog",
        "enroll",
        "NOPE",
        &photo("coffee.png").to_string_lossy(),
    ]);
    crate::assert_fails_with(&out, "no product with SKU \"NOPE\"");

    let coffee = photo("coffee.png");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "--json",
        "catalog",
        "enroll",
        "COF-1",
        &coffee.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["added"], 1, "{v}");

    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "--json",
        "scan",
        &coffee.to_string_lossy(),
        "--top",
        "3",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["decision"], "identified", "{v}");
    assert_eq!(v["matches"][0]["sku"], "COF-1", "{v}");
    assert_eq!(v["matches"].as_array().map(Vec::len), Some(3), "{v}");
    let contributed = v["matches"][0]["contributed"].to_string();
    assert!(
        contributed.contains("photo") && contributed.contains("zero-shot"),
        "{v}"
    );
    assert!(
        v["matches"][0]["signals"]["visual"]
            .as_f64()
            .is_some_and(|x| x > 0.99),
        "{v}"
    );
    assert!(
        v["timings"]["embed_us"].as_u64().is_some_and(|t| t > 0),
        "{v}"
    );
    assert_eq!(v["seen"][0][0], "espresso", "{v}");
    // The assistant answers about the product in the photo, from the database.
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "--json",
        "ask",
        "--image",
        &coffee.to_string_lossy(),
        "how much is this?",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["products"][0], "COF-1", "{v}");
    assert!(
        v["answer"].as_str().is_some_and(|a| a.contains("$8.99")),
        "{v}"
    );
    assert_eq!(v["scan"]["decision"], "identified", "{v}");
    // Something the store does not sell: no product is assumed.
    let astronaut = photo("astronaut.png");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "--json",
        "ask",
        "--image",
        &astronaut.to_string_lossy(),
        "how much is this?",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["scan"]["decision"], "unknown", "{v}");
    assert_eq!(v["products"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(!v["answer"].as_str().unwrap_or("").contains('$'), "{v}");

    // Only embeddings were stored: no image file under the data directory.
    let images = walk(&data)
        .into_iter()
        .filter(|p| {
            let e = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            ["png", "jpg", "jpeg", "webp"].contains(&e)
        })
        .count();
    assert_eq!(images, 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A store with CLIP weights: its encoders are added to the model store
/// (`aisle models add`), the config selects the CLIP backend, and scanning and
/// enrolment run through it. The weights are a tiny CLIP-architecture model the
/// project generates (vision/tests/clip/make_tiny_clip.py), so recognition
/// itself means nothing here; the plumbing does.
#[test]
fn clip_selected_in_the_config_scans_and_enrolls() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let own = Store::open(&data.join("models")).expect("store");
    for name in ["onnxruntime", "clip-bpe-vocab"] {
        own.copy_model_from(&store(), name).expect("copy model");
    }
    let tiny = dir.path().join("tiny");
    let python = data_dir().join("tools/python-venv/bin/python");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vision/tests/clip/make_tiny_clip.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&tiny)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let d = data.to_string_lossy().into_owned();
    let enc = |f: &str| tiny.join(f).to_string_lossy().into_owned();
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "models",
        "add",
        "tiny-clip",
        &enc("image_encoder.onnx"),
        &enc("text_encoder.onnx"),
        "--task",
        "image-text-embedding",
        "--license",
        "MIT",
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    // A catalog model's name cannot be taken.
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "models",
        "add",
        "onnxruntime",
        &enc("image_encoder.onnx"),
    ]);
    crate::assert_fails_with(&out, "is a catalog model");

    let config = dir.path().join("clip.toml");
    std::fs::write(
        &config,
        "[models]\nimage_embedding = \"tiny-clip\"\n\n[inference]\nimage_text = \"clip\"\nclip_image_size = 32\nocr = false\n",
    )
    .expect("config");
    let c = config.to_string_lossy().into_owned();
    let csv = dir.path().join("products.csv");
    std::fs::write(&csv, CATALOG).expect("csv");
    let run = |args: &[&str]| {
        let mut all = vec!["--config", &c, "--data-dir", &d];
        all.extend_from_slice(args);
        crate::aisle(&all)
    };
    let out = run(&["catalog", "import", &csv.to_string_lossy()]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let coffee = photo("coffee.png");
    let scan = |what: &str| {
        let out = run(&["--json", "scan", what, "--top", "3"]);
        assert!(out.status.success(), "{}", crate::text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let v = scan(&coffee.to_string_lossy());
    assert_eq!(v["matches"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["seen"], serde_json::json!([]), "CLIP has no classes: {v}");
    assert!(v["ocr_text"].is_null(), "OCR off in this config: {v}");
    let out = run(&[
        "--json",
        "catalog",
        "enroll",
        "COF-1",
        &coffee.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v = scan(&coffee.to_string_lossy());
    assert_eq!(v["matches"][0]["sku"], "COF-1", "{v}");
    assert_eq!(v["decision"], "identified", "{v}");
    let visual = v["matches"][0]["signals"]["visual"].as_f64().unwrap_or(0.0);
    assert!(
        visual > 0.999,
        "the enrolled photo itself, through CLIP: {v}"
    );
}
