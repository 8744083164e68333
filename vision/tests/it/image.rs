//! Real weights: EfficientNet-Lite0 (ONNX) on both engines, ConSE, real photos.

use std::sync::OnceLock;

use aisle_vision::{
    Conse, EfficientNet, EfficientNetConse, Engine, ImageLimits, ImageTextModel, OnnxOptions,
    load_image,
};

use crate::{minilm, model_file};

pub(crate) fn photo(name: &str) -> image::RgbImage {
    load_image(&model_file("sample-photos", name), &ImageLimits::default()).expect("photo")
}

fn options(engine: Engine) -> OnnxOptions {
    match engine {
        Engine::Tract => OnnxOptions::tract(2),
        Engine::OnnxRuntime => {
            OnnxOptions::onnxruntime(2, model_file("onnxruntime", "libonnxruntime.so"))
        }
    }
}

pub(crate) fn net(engine: Engine) -> &'static EfficientNet {
    static T: OnceLock<EfficientNet> = OnceLock::new();
    static O: OnceLock<EfficientNet> = OnceLock::new();
    let cell = match engine {
        Engine::Tract => &T,
        Engine::OnnxRuntime => &O,
    };
    cell.get_or_init(|| {
        EfficientNet::load(
            &model_file("efficientnet-lite0-onnx", "model.onnx"),
            "test",
            &options(engine),
        )
        .expect("load EfficientNet")
    })
}

pub(crate) fn conse() -> &'static Conse {
    static C: OnceLock<Conse> = OnceLock::new();
    C.get_or_init(|| {
        let labels = Conse::read_labels(&model_file("imagenet-labels", "imagenet_labels.txt"))
            .expect("labels");
        Conse::build(labels, minilm())
    })
}

#[test]
fn engines_agree_and_see_what_is_in_the_photo() {
    for (photo_name, want) in [("coffee.png", "espresso"), ("chelsea.png", "cat")] {
        let img = photo(photo_name);
        let a = net(Engine::OnnxRuntime).run(&img).expect("onnxruntime");
        let b = net(Engine::Tract).run(&img).expect("tract");
        let top = |p: &[f32]| {
            conse()
                .top(p, 5)
                .into_iter()
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            top(&a.probs),
            top(&b.probs),
            "{photo_name}: same top-5 classes"
        );
        let cos = aisle_vision::cosine(&a.embedding, &b.embedding);
        assert!(
            cos > 0.999,
            "{photo_name}: embeddings differ (cosine {cos})"
        );
        let best = conse().label(top(&a.probs)[0]);
        assert!(best.contains(want), "{photo_name}: top class {best}");
    }
    // ConSE puts the coffee photo nearest to a coffee product's name.
    let m = EfficientNetConse::new(net(Engine::OnnxRuntime), conse(), minilm(), "test");
    let e = m.embed_image(&photo("coffee.png")).expect("embed");
    let names = [
        "Espresso Roast Ground Coffee",
        "Cat Food",
        "Paper Towels",
        "Whole Milk",
    ];
    let sims: Vec<f32> = names
        .iter()
        .map(|n| aisle_vision::cosine(&e.joint, &m.embed_text(n)))
        .collect();
    assert!(
        sims[0] > 0.5 && sims[1..].iter().all(|s| *s < sims[0] - 0.2),
        "{sims:?}"
    );
    assert!(e.certainty > 0.5, "{}", e.certainty);
}

#[test]
fn batched_text_embeddings_equal_single_ones() {
    let m = minilm();
    let texts = [
        "Chocolate Sandwich Cookies",
        "All-Seasons Salt",
        "",
        "Robust Golden Unsweetened Oolong Tea",
    ];
    let batch = m.embed_batch(&texts);
    for (t, b) in texts.iter().zip(&batch) {
        assert!(aisle_vision::cosine(b, &m.embed(t)) > 0.99999, "{t}");
    }
}
