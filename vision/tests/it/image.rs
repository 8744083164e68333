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

pub(crate) fn options(engine: Engine) -> OnnxOptions {
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

/// Fashion-MNIST (real product photos): floors on zero-shot and few-shot accuracy and
/// on open-set rejection, on the first 600 test photos (`aisle eval vision` runs all).
#[test]
fn fashion_mnist_floors() {
    use aisle_vision::Fusion;
    use aisle_vision::eval;
    let file = |f: &str| model_file("fashion-mnist", f);
    let train_x = eval::read_images(&file("train-images-idx3-ubyte.gz"), 300).expect("train");
    let train_y = eval::read_labels(&file("train-labels-idx1-ubyte.gz"), 300).expect("labels");
    let test_x = eval::read_images(&file("t10k-images-idx3-ubyte.gz"), 600).expect("test");
    let test_y = eval::read_labels(&file("t10k-labels-idx1-ubyte.gz"), 600).expect("labels");
    assert_eq!((train_x.len(), test_x.len()), (300, 600));
    let m = EfficientNetConse::new(net(Engine::OnnxRuntime), conse(), minilm(), "test");
    let train = eval::embed_all(&m, &train_x, &train_y, &mut |_| {}).expect("embed");
    let test = eval::embed_all(&m, &test_x, &test_y, &mut |_| {}).expect("embed");
    let all: Vec<usize> = (0..10).collect();
    let known: Vec<usize> = (0..8).collect();
    let fusion = Fusion {
        zero_shot_weight: 0.5,
        ..Fusion::default()
    };
    let mut acc = Vec::new();
    for k in [0, 1, 10] {
        let refs = eval::shots(&train, k);
        assert!(
            refs.iter().all(|r| r.len() == k),
            "{k} shots of every class in 300 photos"
        );
        let row = eval::evaluate(
            &eval::catalog(&m, &refs, &all),
            &eval::catalog(&m, &refs, &known),
            &[8, 9],
            &test,
            &fusion,
            "t",
        );
        acc.push(row.accuracy);
    }
    // Measured on these 600: about 0.2 zero-shot, 0.45 1-shot, 0.65 10-shot (chance 0.1).
    assert!(acc[0] > 0.14, "zero-shot {acc:?}");
    assert!(acc[1] > 0.35, "1-shot {acc:?}");
    assert!(acc[2] > 0.55 && acc[2] > acc[1], "10-shot {acc:?}");

    // Calibrated on this set with Bag and Ankle boot held out: most of their photos
    // are rejected, and confident answers are mostly right.
    let refs = eval::shots(&train, 10);
    let open = eval::catalog(&m, &refs, &known);
    let (fitted, loss) = eval::calibrate(&open, &test, &fusion);
    assert!(loss < 0.69, "log-loss {loss} no better than a coin");
    let row = eval::evaluate(
        &eval::catalog(&m, &refs, &all),
        &open,
        &[8, 9],
        &test,
        &Fusion {
            threshold: 0.6,
            ..fitted
        },
        "t",
    );
    assert!(row.unknown_rejected.is_some_and(|r| r > 0.7), "{row:?}");
    assert!(row.known_identified.is_some_and(|r| r > 0.2), "{row:?}");
}
