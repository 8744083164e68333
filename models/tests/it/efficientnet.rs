//! The imported EfficientNet-Lite0 ONNX graph classifies real photos and gives
//! embeddings that match a product to its own altered photo.

use std::sync::OnceLock;

use image::imageops::FilterType;
use tract_onnx::prelude::*;

use crate::model;

type Plan = std::sync::Arc<TypedRunnableModel>;

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let m = model("efficientnet-lite0-onnx");
        tract_onnx::onnx()
            .model_for_path(m.path("model.onnx").expect("file"))
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 224, 224]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .expect("tract loads the imported graph")
    })
}

fn labels() -> Vec<String> {
    let m = model("imagenet-labels");
    let text = std::fs::read_to_string(m.path("imagenet_labels.txt").expect("file")).expect("read");
    text.lines().map(String::from).collect()
}

fn input(img: &image::DynamicImage) -> Tensor {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let rgb = img.resize_exact(224, 224, FilterType::Triangle).to_rgb8();
    let mut data = vec![0f32; 3 * 224 * 224];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            data[c * 224 * 224 + y as usize * 224 + x as usize] =
                (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Tensor::from_shape(&[1, 3, 224, 224], &data).expect("shape")
}

/// (softmax probabilities, L2-normalised embedding)
fn run(img: &image::DynamicImage) -> (Vec<f32>, Vec<f32>) {
    let out = plan().run(tvec!(input(img).into())).expect("inference");
    let logits: Vec<f32> = out[0]
        .to_plain_array_view::<f32>()
        .expect("f32")
        .iter()
        .copied()
        .collect();
    let emb: Vec<f32> = out[1]
        .to_plain_array_view::<f32>()
        .expect("f32")
        .iter()
        .copied()
        .collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let norm = emb.iter().map(|v| v * v).sum::<f32>().sqrt();
    (
        exp.iter().map(|e| e / sum).collect(),
        emb.iter().map(|v| v / norm).collect(),
    )
}

fn photo(name: &str) -> image::DynamicImage {
    let m = model("sample-photos");
    // Blobs are named by hash, without an extension: sniff the format.
    image::ImageReader::open(m.path(name).expect("file"))
        .and_then(|r| r.with_guessed_format())
        .expect("open")
        .decode()
        .expect("decode")
}

fn top1(p: &[f32]) -> (usize, f32) {
    p.iter()
        .cloned()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("non-empty")
}

#[test]
fn classifies_real_photos() {
    let labels = labels();
    assert_eq!(labels.len(), 1000);
    let (p, emb) = run(&photo("coffee.png"));
    assert_eq!(emb.len(), 1280);
    let (idx, prob) = top1(&p);
    assert_eq!((idx, labels[idx].as_str()), (967, "espresso"), "p = {prob}");
    assert!(prob > 0.5, "espresso with p = {prob}");
    let (idx, _) = top1(&run(&photo("chelsea.png")).0);
    assert!(
        labels[idx].contains("cat"),
        "chelsea.png -> {}",
        labels[idx]
    );
}

#[test]
fn embeddings_match_an_altered_photo_to_its_original() {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let coffee = photo("coffee.png");
    let (_, original) = run(&coffee);
    let (w, h) = (coffee.width(), coffee.height());
    let altered = coffee
        .crop_imm(w / 10, h / 10, w * 8 / 10, h * 8 / 10)
        .fliph()
        .brighten(-30);
    let (_, same) = run(&altered);
    let (_, other) = run(&photo("astronaut.png"));
    let (s, o) = (dot(&original, &same), dot(&original, &other));
    assert!(s > 0.7 && s > o + 0.3, "same product {s}, other {o}");
}
