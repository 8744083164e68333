//! Text normalisation for the voice: any text is read or dropped, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let n = aisle_speech::tts::normalize::normalize(text);
    let _ = aisle_speech::tts::normalize::sentences(&n);
    let _ = aisle_speech::tts::normalize::first_clause(&n, 60);
});
