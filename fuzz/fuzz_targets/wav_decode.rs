//! WAV decoding (every PCM width and float, any header): samples or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aisle_speech::decode_wav_bytes(data, std::path::Path::new("fuzz.wav"));
});
