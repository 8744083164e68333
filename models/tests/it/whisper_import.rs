use aisle_models::ModelError;
use aisle_models::ggml::{GgmlType, WhisperHparams, layout_mismatches, read_whisper_ggml};
use aisle_models::hash::hash_file;
use aisle_models::import::ct2::read_ct2;
use aisle_models::import::whisper::{WhisperSources, convert_ct2_to_ggml};

use crate::model;

#[test]
fn imported_ggml_has_the_whisper_cpp_layout() {
    let ggml = model("whisper-tiny-en-ggml");
    let file = read_whisper_ggml(ggml.path("ggml-model.bin").expect("file")).expect("parses");
    assert_eq!(file.hparams, WhisperHparams::TINY_EN);
    assert_eq!((file.n_mel, file.n_fft), (80, 201));
    assert_eq!(
        file.n_tokens, 50256,
        "regular GPT-2 tokens; whisper.cpp adds the specials"
    );
    assert_eq!(file.tensors.len(), 167);
    assert_eq!(layout_mismatches(&file), Vec::<String>::new());
}

/// The fused CTranslate2 projections are split in the right order: q, k, v rows for
/// self-attention, k then v for cross-attention; 1-D tensors widened to f32.
#[test]
fn fused_projections_are_split_in_order() {
    let ct2_model = model("whisper-tiny-en-ct2");
    let ct2 = read_ct2(ct2_model.path("model.bin").expect("file")).expect("ct2 parses");
    let ggml = model("whisper-tiny-en-ggml");
    let path = ggml.path("ggml-model.bin").expect("file");
    let bytes = std::fs::read(path).expect("read ggml");
    let file = read_whisper_ggml(path).expect("parses");
    let data = |name: &str| -> &[u8] {
        let i = file
            .tensors
            .iter()
            .position(|t| t.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let t = &file.tensors[i];
        let n: usize = t.dims.iter().product::<usize>() * t.ty.size();
        &bytes[file.offsets[i]..file.offsets[i] + n]
    };
    let n = 384 * 384 * 2;
    let fused = &ct2.variables["encoder/layer_2/self_attention/linear_0/weight"].data;
    assert_eq!(data("encoder.blocks.2.attn.query.weight"), &fused[..n]);
    assert_eq!(data("encoder.blocks.2.attn.key.weight"), &fused[n..2 * n]);
    assert_eq!(data("encoder.blocks.2.attn.value.weight"), &fused[2 * n..]);
    let kv = &ct2.variables["decoder/layer_3/attention/linear_1/weight"].data;
    assert_eq!(data("decoder.blocks.3.cross_attn.key.weight"), &kv[..n]);
    assert_eq!(data("decoder.blocks.3.cross_attn.value.weight"), &kv[n..]);
    let value_bias = ct2.variables["decoder/layer_3/self_attention/linear_0/bias"]
        .to_f32()
        .expect("f16");
    let got: Vec<f32> = data("decoder.blocks.3.attn.value.bias")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, value_bias[768..].to_vec());
    let pos = file
        .tensors
        .iter()
        .find(|t| t.name == "decoder.positional_embedding")
        .expect("pos");
    assert_eq!((pos.ty, pos.dims.clone()), (GgmlType::F32, vec![384, 448]));
}

#[test]
fn conversion_is_reproducible() {
    let ct2 = model("whisper-tiny-en-ct2");
    let assets = model("whisper-assets");
    let stored = model("whisper-tiny-en-ggml");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("again.bin");
    let sources = WhisperSources {
        model_bin: ct2.path("model.bin").expect("file"),
        vocabulary: ct2.path("vocabulary.txt").expect("file"),
        mel_filters: assets.path("mel_filters.npz").expect("file"),
    };
    convert_ct2_to_ggml(sources, &out).expect("converts");
    let (sha, _) = hash_file(&out, &mut |_| {}).expect("hash");
    assert_eq!(sha, stored.manifest.files[0].sha256);
}

#[test]
fn truncated_or_foreign_inputs_are_typed_errors_naming_the_file() {
    let ct2 = model("whisper-tiny-en-ct2");
    let assets = model("whisper-assets");
    let full = std::fs::read(ct2.path("model.bin").expect("file")).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.bin", full[..1_000_000].to_vec(), "truncated"),
        ("empty.bin", Vec::new(), "truncated"),
        (
            "text.bin",
            b"this is not a model".to_vec(),
            "unsupported binary version",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = convert_ct2_to_ggml(
            WhisperSources {
                model_bin: &path,
                vocabulary: ct2.path("vocabulary.txt").expect("file"),
                mel_filters: assets.path("mel_filters.npz").expect("file"),
            },
            &dir.path().join("out.bin"),
        )
        .expect_err("must fail");
        assert!(matches!(err, ModelError::Format { .. }), "{name}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains(needle),
            "{name}: {text}"
        );
    }
    // A ggml file cut short is reported, not read past its end.
    let ggml = std::fs::read(
        model("whisper-tiny-en-ggml")
            .path("ggml-model.bin")
            .expect("file"),
    )
    .expect("read");
    let cut = dir.path().join("cut-ggml.bin");
    std::fs::write(&cut, &ggml[..ggml.len() - 10]).expect("write");
    let err = read_whisper_ggml(&cut).expect_err("truncated ggml");
    assert!(
        err.to_string().contains("cut-ggml.bin") && err.to_string().contains("truncated"),
        "{err}"
    );
}
