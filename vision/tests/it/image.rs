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
fn explore() {
    let m = EfficientNetConse::new(net(Engine::OnnxRuntime), conse(), minilm(), "y");
    let names = [
        "Espresso Roast Ground Coffee",
        "Cat Food Chicken Recipe",
        "Space Shuttle Model Kit",
        "Organic Bananas",
        "Whole Milk",
        "Paper Towels",
        "Dog Treats",
        "Sparkling Water",
    ];
    let texts: Vec<Vec<f32>> = names.iter().map(|n| m.embed_text(n)).collect();
    for p in ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"] {
        let e = m.embed_image(&photo(p)).expect("embed");
        println!(
            "{p}: {:?} pre {} us embed {} us",
            e.classes, e.preprocess_us, e.embed_us
        );
        for (n, t) in names.iter().zip(&texts) {
            println!("   {:.3} {n}", aisle_vision::cosine(&e.joint, t));
        }
    }
}
