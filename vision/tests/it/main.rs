//! Real weights: all-MiniLM-L6-v2 from the model store.

use std::path::PathBuf;
use std::sync::OnceLock;

use aisle_vision::{MiniLm, cosine};

pub(crate) fn data_dir() -> PathBuf {
    std::env::var_os("AISLE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(aisle_firmware_config::default_data_dir)
        .expect("no data directory: set AISLE_DATA_DIR or HOME")
}

mod clip;
mod decode;
mod detect;
mod frames;
mod image;
mod ocr;

pub(crate) fn store() -> aisle_models::Store {
    aisle_models::Store::open(&data_dir().join("models")).expect("store")
}

/// A file of an installed model.
pub(crate) fn model_file(model: &str, file: &str) -> PathBuf {
    let a = store()
        .verify(model, &mut |_| {})
        .unwrap_or_else(|e| panic!("{model} installed by the test command: {e}"));
    a.path(file).expect("file").to_path_buf()
}

/// Loaded once per test binary.
pub(crate) fn minilm() -> &'static MiniLm {
    static M: OnceLock<MiniLm> = OnceLock::new();
    M.get_or_init(|| {
        let store = aisle_models::Store::open(&data_dir().join("models")).expect("store");
        let a = store
            .verify("all-minilm-l6-v2", &mut |_| {})
            .expect("model installed by the test command");
        MiniLm::load(&a).expect("load")
    })
}

#[test]
fn tokenizer_is_bert_uncased_wordpiece() {
    let m = minilm();
    // [CLS] ... [SEP]; "gluten-free" splits at the hyphen; accents are stripped;
    // an unknown word becomes word pieces, not [UNK].
    let ids = m.tokenize("Gluten-free Café CRÈME");
    assert_eq!(ids.first(), Some(&101));
    assert_eq!(ids.last(), Some(&102));
    assert_eq!(m.tokenize("cafe creme"), m.tokenize("Café CRÈME"));
    assert_eq!(
        ids,
        m.tokenize("gluten - free cafe creme"),
        "punctuation splits words"
    );
    assert!(ids.contains(&1011), "the hyphen is its own token: {ids:?}");
    let long = "word ".repeat(1000);
    assert_eq!(m.tokenize(&long).len(), 128);
    assert_eq!(m.tokenize(""), vec![101, 102]);
}

#[test]
fn embeddings_put_meaning_close() {
    let m = minilm();
    let e = |t: &str| m.embed(t);
    let q = e("something for breakfast without gluten");
    let aisles = [
        "breakfast bakery",
        "cereal",
        "dish detergents",
        "cat food care",
        "beers coolers",
        "frozen meat seafood",
    ];
    let sims: Vec<(f32, &str)> = aisles.iter().map(|a| (cosine(&q, &e(a)), *a)).collect();
    println!("{sims:?}");
    let best = sims.iter().max_by(|a, b| a.0.total_cmp(&b.0)).map(|x| x.1);
    assert!(
        matches!(best, Some("breakfast bakery" | "cereal")),
        "{sims:?}"
    );
    // Unit length, deterministic, and a paraphrase beats an unrelated sentence.
    let a = e("where is the milk");
    assert!((cosine(&a, &a) - 1.0).abs() < 1e-4);
    assert_eq!(a, e("where is the milk"));
    let para = cosine(&a, &e("in which aisle can I find milk"));
    let other = cosine(&a, &e("the rocket launched into space"));
    println!("paraphrase {para:.3}, unrelated {other:.3}");
    assert!(para > 0.6 && other < 0.2, "{para} {other}");
}

/// Token ids and the first 12 embedding values, computed independently with Hugging
/// Face `tokenizers` (from the model's tokenizer.json) and a numpy transcription of
/// BERT over the same safetensors.
const REFERENCE: &[(&str, &[u32], [f32; 12])] = &[
    (
        "something for breakfast without gluten",
        &[101, 2242, 2005, 6350, 2302, 1043, 7630, 6528, 102],
        [
            -0.097191, 0.077600, -0.000168, 0.085452, -0.011782, 0.014736, 0.059176, -0.024752,
            0.033191, -0.096770, 0.008510, 0.025895,
        ],
    ),
    (
        "Gluten-free Café CRÈME",
        &[101, 1043, 7630, 6528, 1011, 2489, 7668, 13675, 21382, 102],
        [
            -0.010319, -0.026314, -0.014631, 0.007565, 0.032568, 0.075810, 0.081316, 0.034763,
            0.005196, -0.058391, 0.032049, -0.055649,
        ],
    ),
    (
        "where is the milk",
        &[101, 2073, 2003, 1996, 6501, 102],
        [
            0.077251, -0.014654, -0.022629, 0.031639, 0.072356, 0.014673, -0.067571, 0.070006,
            0.018153, -0.050644, 0.005308, -0.055794,
        ],
    ),
];

#[test]
fn matches_an_independent_reference() {
    let m = minilm();
    for (text, ids, head) in REFERENCE {
        assert_eq!(m.tokenize(text), *ids, "{text}");
        let e = m.embed(text);
        for (i, (got, want)) in e.iter().zip(head.iter()).enumerate() {
            assert!(
                (got - want).abs() < 1e-4,
                "{text}: dim {i}: {got} vs {want}"
            );
        }
    }
}
