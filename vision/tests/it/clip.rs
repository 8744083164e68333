//! The CLIP backend: the real CLIP BPE vocabulary (OpenCLIP's file, from the
//! model store) against ids from OpenCLIP's own tokenizer, and a tiny
//! CLIP-architecture model the project generates (vision/tests/clip/
//! make_tiny_clip.py) run on both engines against a numpy forward pass.

use std::path::PathBuf;
use std::sync::OnceLock;

use aisle_vision::clip::{CONTEXT, Clip, ClipTokenizer};
use aisle_vision::{Engine, ImageTextModel, cosine};

use crate::image::photo;
use crate::{data_dir, model_file};

fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::load(&model_file(
        "clip-bpe-vocab",
        "bpe_simple_vocab_16e6.txt.gz",
    ))
    .expect("CLIP vocabulary")
}

#[test]
fn tokenizer_matches_open_clip() {
    let t = tokenizer();
    assert_eq!(t.vocab_size(), 49408);
    assert_eq!((t.sot, t.eot), (49406, 49407));
    // Expected ids: open_clip 3.3.0 `SimpleTokenizer().encode(text)` on the same file.
    let cases: &[(&str, &[u32])] = &[
        ("a photo of a cat", &[320, 1125, 539, 320, 2368]),
        (
            "Organic Peanut Butter, 16 oz.",
            &[5980, 12491, 6952, 267, 272, 277, 6044, 269],
        ),
        (
            "Don't you've CAFÉ crème brûlée!!",
            &[
                847, 713, 592, 1200, 15304, 1075, 12138, 614, 711, 127, 119, 75, 13489, 748,
            ],
        ),
        (
            "gluten-free   pasta\n\t(500g) $4.49",
            &[
                15524, 268, 1139, 10441, 263, 276, 271, 271, 326, 264, 259, 275, 269, 275, 280,
            ],
        ),
        ("espresso roast ground coffee", &[17098, 11404, 2461, 2453]),
        ("🍕 pizza 2x1", &[23904, 4474, 273, 343, 272]),
        ("", &[]),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text), *ids, "{text:?}");
    }
    let ids = t.tokenize("a photo of a cat");
    assert_eq!(ids.len(), CONTEXT);
    assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert!(ids[7..].iter().all(|&i| i == 0));
    // Too long: cut at 77 with the end token last.
    let long = t.tokenize(&"coffee ".repeat(200));
    assert_eq!(long.len(), CONTEXT);
    assert_eq!((long[0], long[CONTEXT - 1]), (49406, 49407));
}

#[test]
fn a_broken_vocabulary_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("vocab.txt.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 0x08, 0x00, 0x01]).expect("write");
    let e = ClipTokenizer::load(&bad).expect_err("cut gzip");
    assert!(e.to_string().contains("vocab.txt.gz"), "{e}");
    let e = ClipTokenizer::load(&dir.path().join("missing.gz")).expect_err("missing");
    assert!(e.to_string().contains("missing.gz"), "{e}");
}

/// The generated tiny model and its reference numbers, once per test binary.
fn tiny() -> &'static (tempfile::TempDir, serde_json::Value) {
    static T: OnceLock<(tempfile::TempDir, serde_json::Value)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let python = data_dir().join("tools/python-venv/bin/python");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clip/make_tiny_clip.py");
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (set up by `aisle models fetch`)", python.display())
            });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("expected.json")).expect("expected.json"),
        )
        .expect("json");
        (dir, expected)
    })
}

fn load(engine: Engine) -> Clip {
    let (dir, expected) = tiny();
    let options = crate::image::options(engine);
    Clip::load(
        &dir.path().join("image_encoder.onnx"),
        &dir.path().join("text_encoder.onnx"),
        tokenizer(),
        expected["size"].as_u64().expect("size") as u32,
        "tiny",
        &options,
    )
    .expect("tiny CLIP loads")
}

fn close(a: &[f32], b: &serde_json::Value) -> f32 {
    let b: Vec<f32> = b
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_clip_runs_like_numpy_on_both_engines() {
    let (_, expected) = tiny();
    let size = expected["size"].as_u64().expect("size") as usize;
    let pixels = ndarray::Array4::from_shape_fn((1, 3, size, size), |(_, c, y, x)| {
        (0.1 * (c as f64 + 1.0) * ((y * size + x) as f64)).sin() as f32
    })
    .into_dyn();
    let mut photos = Vec::new();
    for engine in [Engine::Tract, Engine::OnnxRuntime] {
        let clip = load(engine);
        assert_eq!(clip.dim(), 16);
        let v = clip.pixels_vector(pixels.view()).expect("image");
        assert!(
            close(&v, &expected["image"]) < 1e-4,
            "{engine}: image embedding"
        );
        for (ids, want) in expected["texts"].as_object().expect("texts") {
            let mut ids: Vec<i64> = ids.split(' ').map(|s| s.parse().expect("id")).collect();
            ids.resize(CONTEXT, 0);
            let v = clip.ids_vector(&ids).expect("text");
            assert!(close(&v, want) < 1e-4, "{engine}: text {ids:?}");
        }
        // Text through the tokenizer: the same numbers.
        let v = clip.embed_text("a photo of a cat");
        assert!(close(&v, &expected["texts"]["49406 320 1125 539 320 2368 49407"]) < 1e-4);
        // A real photo through CLIP's preprocessing.
        let e = clip.embed_image(&photo("coffee.png")).expect("photo");
        assert_eq!(e.visual, e.joint);
        assert!((e.joint.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        photos.push(e.joint);
    }
    assert!(cosine(&photos[0], &photos[1]) > 0.9999);
}
