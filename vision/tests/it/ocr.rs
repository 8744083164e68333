//! Real weights: PP-OCRv4 detection + recognition on product labels the test
//! draws onto real photos with a real font.

use std::sync::OnceLock;

use aisle_vision::Engine;
use aisle_vision::ocr::{Ocr, OcrOutput};
use aisle_vision::synth::{LabelFont, draw_label};

use crate::image::{options, photo};
use crate::model_file;

pub(crate) fn ocr(engine: Engine) -> &'static Ocr {
    static T: OnceLock<Ocr> = OnceLock::new();
    static O: OnceLock<Ocr> = OnceLock::new();
    let cell = match engine {
        Engine::Tract => &T,
        Engine::OnnxRuntime => &O,
    };
    cell.get_or_init(|| {
        Ocr::load_with_orientation(
            &model_file("ppocr-v4-det", "ch_PP-OCRv4_det_infer.onnx"),
            &model_file("ppocr-v4-rec", "ch_PP-OCRv4_rec_infer.onnx"),
            Some(&model_file(
                "ppocr-mobile-v2-cls",
                "ch_ppocr_mobile_v2.0_cls_infer.onnx",
            )),
            &options(engine),
        )
        .expect("load PP-OCRv4")
    })
}

fn font() -> &'static LabelFont {
    static F: OnceLock<LabelFont> = OnceLock::new();
    F.get_or_init(|| LabelFont::dejavu().expect("DejaVu Sans Bold, installed by the test command"))
}

/// Character error rate: edit distance / reference length.
fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = reference.chars().collect();
    let h: Vec<char> = hypothesis.chars().collect();
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rc) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hc) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rc != hc))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `text` (spaces aside) is one of the lines read.
fn assert_read(out: &OcrOutput, text: &str) {
    assert!(
        out.lines.iter().any(|l| squash(&l.text) == text),
        "{text:?} not read: {:?}",
        out.lines
    );
}

/// Labels on real photos: (photo, lines, text height in px).
const LABELS: &[(&str, &[&str], f32)] = &[
    ("chelsea.png", &["Organic Peanut Butter", "$4.49"], 26.0),
    ("astronaut.png", &["Espresso Roast Ground Coffee"], 22.0),
    ("coffee.png", &["Gluten Free Penne Pasta", "500 g"], 30.0),
    ("rocket.jpg", &["Greek Yogurt", "Vanilla 4 x 125g"], 18.0),
    ("chelsea.png", &["Whole Milk 1 gal"], 14.0),
];

fn read_label(engine: Engine, i: usize) -> (Vec<String>, OcrOutput) {
    let (name, lines, px) = LABELS[i];
    let mut img = photo(name);
    let (w, h) = img.dimensions();
    let x = w / 10;
    let y = h / 2;
    draw_label(font(), &mut img, (x, y), lines, px);
    let out = ocr(engine).read(&img).expect("ocr");
    (lines.iter().map(|s| s.to_string()).collect(), out)
}

#[test]
fn reads_product_labels_on_photos() {
    let (mut total_err, mut total_len) = (0.0, 0.0);
    let (mut strict_err, mut strict_len) = (0.0, 0.0);
    for i in 0..LABELS.len() {
        let (expected, out) = read_label(Engine::OnnxRuntime, i);
        let read = out.text();
        println!(
            "{:?} -> {:?} (regions {}, detect {} ms, recognise {} ms)",
            expected,
            out.lines
                .iter()
                .map(|l| (&l.text, l.confidence, l.bbox))
                .collect::<Vec<_>>(),
            out.regions,
            out.detect_us / 1000,
            out.recognise_us / 1000
        );
        for e in &expected {
            // Spaces aside: the recogniser drops narrow spaces in small text
            // ("GreekYogurt"); the matcher splits such runs with the catalog's words.
            let best = |strip: bool| {
                out.lines
                    .iter()
                    .map(|l| {
                        if strip {
                            cer(&squash(e), &squash(&l.text))
                        } else {
                            cer(e, &l.text)
                        }
                    })
                    .fold(1.0f64, f64::min)
            };
            let (loose, strict) = (best(true), best(false));
            let n = squash(e).chars().count() as f64;
            total_err += loose * n;
            total_len += n;
            strict_err += strict * e.chars().count() as f64;
            strict_len += e.chars().count() as f64;
            assert!(loose <= 0.15, "{e:?} not read: {read:?}");
        }
    }
    let rate = total_err / total_len;
    println!(
        "character error rate over the labels: {rate:.3} (spaces aside), {:.3} (with spaces)",
        strict_err / strict_len
    );
    assert!(rate <= 0.05, "CER {rate:.3}");
}

#[test]
fn engines_read_the_same_text() {
    for i in [0, 3] {
        let (_, ort) = read_label(Engine::OnnxRuntime, i);
        let (_, tract) = read_label(Engine::Tract, i);
        // Spaces aside: tract reads every line padded to the fixed width, ONNX
        // Runtime at the line's own width, and a narrow space can come and go.
        let texts = |o: &OcrOutput| o.lines.iter().map(|l| squash(&l.text)).collect::<Vec<_>>();
        assert_eq!(texts(&ort), texts(&tract));
        for (a, b) in ort.lines.iter().zip(&tract.lines) {
            assert!((a.confidence - b.confidence).abs() < 0.05, "{a:?} {b:?}");
            // The detector sees the same image on a canvas padded differently.
            let near = a.bbox.iter().zip(b.bbox).all(|(x, y)| x.abs_diff(y) <= 3);
            assert!(near, "same region on both engines: {a:?} {b:?}");
        }
    }
}

#[test]
fn turned_labels_and_images_without_text() {
    let o = ocr(Engine::OnnxRuntime);
    // A label turned a quarter (a box on its side on the shelf) is read upright.
    let mut img = photo("coffee.png");
    draw_label(
        font(),
        &mut img,
        (60, 200),
        &["Espresso Roast Ground Coffee"],
        24.0,
    );
    let turned = image::imageops::rotate90(&img);
    let out = o.read(&turned).expect("ocr");
    println!("{:?}", out.lines);
    assert_read(&out, "EspressoRoastGroundCoffee");
    // Upside down (the product held the wrong way up): the orientation
    // classifier turns each line before it is read.
    let upside = image::imageops::rotate180(&img);
    let out = o.read(&upside).expect("ocr");
    assert_read(&out, "EspressoRoastGroundCoffee");
    // No text: a blank card, a 1x1 image, a photo of a cat.
    let blank = image::RgbImage::from_pixel(400, 300, image::Rgb([250, 250, 250]));
    assert!(o.read(&blank).expect("ocr").lines.is_empty());
    let dot = image::RgbImage::from_pixel(1, 1, image::Rgb([0, 0, 0]));
    assert!(o.read(&dot).expect("ocr").lines.is_empty());
    let cat = o.read(&photo("chelsea.png")).expect("ocr");
    assert!(cat.lines.is_empty(), "{:?}", cat.lines);
}

#[test]
fn damaged_models_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = model_file("ppocr-v4-rec", "ch_PP-OCRv4_rec_infer.onnx");
    let det = model_file("ppocr-v4-det", "ch_PP-OCRv4_det_infer.onnx");
    let bytes = std::fs::read(&rec).expect("read");
    let cut = dir.path().join("rec-cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    for engine in [Engine::Tract, Engine::OnnxRuntime] {
        let e = Ocr::load(&det, &cut, &options(engine)).expect_err("truncated model");
        assert!(e.to_string().contains("rec-cut.onnx"), "{e}");
    }
    // A detector given as the recogniser: no dictionary in its metadata.
    let e = Ocr::load(&det, &det, &options(Engine::Tract)).expect_err("wrong model");
    assert!(e.to_string().contains("character"), "{e}");
}
