//! What a client sends on the voice WebSocket (`/v1/voice`): JSON control messages
//! and binary frames, which are either a product photo (JPEG, PNG or WebP) or
//! 16-bit little-endian mono PCM. Kept apart from the socket so each can be
//! fuzzed alone (`fuzz/fuzz_targets/voice_frames.rs`).

use serde::Deserialize;

/// A control message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMsg {
    Start {
        sample_rate: u32,
        #[serde(default)]
        session: Option<String>,
        #[serde(default)]
        sku: Option<String>,
        /// Speak the answer (binary PCM frames after `intent-end`).
        #[serde(default)]
        speak: bool,
    },
    End,
    Cancel,
}

/// A text frame as a control message, or why it is not one.
pub fn parse_client(text: &str) -> Result<ClientMsg, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("not a voice message ({{\"type\":\"start\"|\"end\"|\"cancel\",...}}): {e}")
    })
}

/// Whether a binary frame is a photo (by its first bytes) rather than audio.
pub fn looks_like_image(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"\x89PNG")
        || (b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP")
}

/// A binary audio frame as samples in [-1, 1).
pub fn pcm16_frame(b: &[u8]) -> Result<Vec<f32>, &'static str> {
    if b.len() % 2 != 0 {
        return Err("audio frames are 16-bit samples: an odd number of bytes");
    }
    Ok(b.chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_and_frames() {
        assert_eq!(
            parse_client(r#"{"type":"start","sample_rate":16000,"speak":true}"#),
            Ok(ClientMsg::Start {
                sample_rate: 16000,
                session: None,
                sku: None,
                speak: true
            })
        );
        assert_eq!(parse_client(r#"{"type":"end"}"#), Ok(ClientMsg::End));
        assert!(parse_client(r#"{"type":"start"}"#).is_err());
        assert!(parse_client(r#"{"type":"start","sample_rate":16000,"x":1}"#).is_err());
        assert!(parse_client("").is_err());
        assert_eq!(
            pcm16_frame(&[0, 0x80, 0xff, 0x7f]),
            Ok(vec![-1.0, 32767.0 / 32768.0])
        );
        assert!(pcm16_frame(&[1, 2, 3]).is_err());
        assert!(looks_like_image(b"\x89PNG\r\n"));
        assert!(!looks_like_image(&[0, 0, 0, 0]));
    }
}
