//! Real weights: SSD MobileNetV2 (Open Images v4, MediaPipe Objectron's fp16 TFLite
//! converted to ONNX by the model store) localises objects on real photos.

use std::sync::OnceLock;

use aisle_vision::detect::{DetectedObject, ObjectDetector};
use aisle_vision::{DetectError, Engine};

use crate::image::{options, photo};
use crate::model_file;

pub(crate) fn detector(engine: Engine) -> &'static ObjectDetector {
    static T: OnceLock<ObjectDetector> = OnceLock::new();
    static O: OnceLock<ObjectDetector> = OnceLock::new();
    let cell = match engine {
        Engine::Tract => &T,
        Engine::OnnxRuntime => &O,
    };
    cell.get_or_init(|| {
        ObjectDetector::load(
            &model_file("ssd-mobilenetv2-oidv4", "model.onnx"),
            &model_file("ssd-mobilenetv2-oidv4", "labels.txt"),
            &options(engine),
        )
        .expect("load the detector")
    })
}

fn centre(o: &DetectedObject) -> (f32, f32) {
    (o.bbox[0] + o.bbox[2] / 2.0, o.bbox[1] + o.bbox[3] / 2.0)
}

/// The two photos side by side on a grey 1280x720 "shelf".
pub(crate) fn shelf() -> image::RgbImage {
    let mut canvas = image::RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &photo("coffee.png"), 40, 180);
    image::imageops::overlay(&mut canvas, &photo("chelsea.png"), 760, 210);
    canvas
}

#[test]
fn finds_the_cup_and_the_cat_where_they_are() {
    for engine in [Engine::OnnxRuntime, Engine::Tract] {
        let d = detector(engine);
        // Reference: the original TFLite model in LiteRT (ai-edge-litert) with the same
        // anchors and decoding gives Coffee cup 0.564 at [171, 21, 419, 324] (x0 y0 x1 y1)
        // on coffee.png and Cat 0.847 at [3, 1, 424, 300] on chelsea.png.
        let cup = d.detect(&photo("coffee.png")).expect("detect");
        let best = cup.first().expect("an object in coffee.png");
        assert_eq!(best.label, "Coffee cup", "{engine}: {cup:?}");
        assert!((best.score - 0.564).abs() < 0.02, "{engine}: {best:?}");
        let [x, y, w, h] = best.bbox;
        for (got, want) in [(x, 171.0), (y, 21.0), (x + w, 419.0), (y + h, 324.0)] {
            assert!((got - want).abs() < 4.0, "{engine}: {best:?}");
        }
        let cat = d.detect(&photo("chelsea.png")).expect("detect");
        assert_eq!(
            cat.first().map(|o| o.label.as_str()),
            Some("Cat"),
            "{engine}: {cat:?}"
        );
        assert!(
            (cat[0].score - 0.847).abs() < 0.02,
            "{engine}: {:?}",
            cat[0]
        );

        // Two objects in one frame: one box each, each over its own photo.
        let found = d.detect(&shelf()).expect("detect");
        println!("{engine}: {found:?}");
        let find = |label: &str| found.iter().find(|o| o.label == label);
        let cup = find("Coffee cup")
            .or(find("Mug"))
            .expect("the cup on the shelf");
        let cat = find("Cat").expect("the cat on the shelf");
        let (cx, cy) = centre(cup);
        assert!(
            (40.0..40.0 + 451.0).contains(&cx) && (180.0..180.0 + 451.0).contains(&cy),
            "{cup:?}"
        );
        let (cx, cy) = centre(cat);
        assert!(
            (760.0..760.0 + 451.0).contains(&cx) && (210.0..210.0 + 300.0).contains(&cy),
            "{cat:?}"
        );
        // No two boxes of the same object.
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                assert!(centre(a) != centre(b));
            }
        }
    }
}

#[test]
fn engines_agree_and_blank_frames_have_nothing() {
    let (o, t) = (detector(Engine::OnnxRuntime), detector(Engine::Tract));
    let img = shelf();
    let (a, b) = (o.detect(&img).expect("ort"), t.detect(&img).expect("tract"));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.label, y.label);
        assert!((x.score - y.score).abs() < 1e-3, "{x:?} vs {y:?}");
        for k in 0..4 {
            assert!((x.bbox[k] - y.bbox[k]).abs() < 1.0, "{x:?} vs {y:?}");
        }
    }
    let blank = image::RgbImage::from_pixel(640, 480, image::Rgb([200, 200, 200]));
    assert_eq!(o.detect(&blank).expect("blank").len(), 0);
    assert!(o.detect(&image::RgbImage::new(1, 1)).expect("1x1").len() <= 1);
    assert!(
        o.detect(&image::RgbImage::new(0, 0))
            .expect("0x0")
            .is_empty()
    );
}

#[test]
fn damaged_detector_files_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = model_file("ssd-mobilenetv2-oidv4", "model.onnx");
    let labels = model_file("ssd-mobilenetv2-oidv4", "labels.txt");
    let bytes = std::fs::read(&model).expect("read");
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let err = ObjectDetector::load(&cut, &labels, &options(Engine::Tract)).expect_err("truncated");
    assert!(err.to_string().contains("cut.onnx"), "{err}");
    // A label map that does not fit the model's class head.
    let few = dir.path().join("few.txt");
    std::fs::write(&few, "???\nBottle\n").expect("write");
    let err = ObjectDetector::load(&model, &few, &options(Engine::Tract)).expect_err("labels");
    assert!(
        matches!(err, DetectError::Model { .. }) && err.to_string().contains("few.txt"),
        "{err}"
    );
    let err = ObjectDetector::load(
        &model,
        &dir.path().join("none.txt"),
        &options(Engine::Tract),
    )
    .expect_err("missing labels");
    assert!(err.to_string().contains("none.txt"), "{err}");
}
