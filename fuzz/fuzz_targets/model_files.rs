//! The model importers' readers (npy, CTranslate2, whisper ggml, TFLite, the packed
//! MediaPipe assets) and manifests: any bytes give a value or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => drop(aisle_models::import::npy::parse_npy_f32(rest)),
        1 => drop(aisle_models::import::ct2::parse_ct2(rest)),
        2 => drop(aisle_models::ggml::parse_whisper_ggml(rest)),
        3 => drop(aisle_models::import::tflite::tflite_to_onnx(rest)),
        4 => drop(aisle_models::import::tflite::split_packed_assets(rest)),
        _ => drop(serde_json::from_slice::<aisle_models::Manifest>(rest)),
    }
});
