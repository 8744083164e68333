//! The voice WebSocket's frames as the service reads them: text frames as control
//! messages, binary frames as a photo or 16-bit PCM.
#![no_main]
use aisle_speech::wire::{looks_like_image, parse_client, pcm16_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = parse_client(text);
        }
    } else if !looks_like_image(rest)
        && let Ok(pcm) = pcm16_frame(rest)
    {
        assert_eq!(pcm.len(), rest.len() / 2);
        assert!(pcm.iter().all(|x| (-1.0..1.0).contains(x)));
    }
});
