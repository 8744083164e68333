//! What the engine needs from models, as traits: the kiosk plugs in MiniLM
//! ([`Embed`]) and the on-device LLM ([`Complete`]); tests can plug in anything. The
//! engine itself runs no inference code and links no model runtime.

/// Text to a unit-length embedding (lookup by meaning).
pub trait Embed: Send + Sync {
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// A greedy completion, optionally constrained by a GBNF grammar.
pub trait Complete: Send + Sync {
    fn complete(
        &self,
        prompt: &str,
        grammar: Option<&str>,
        max_tokens: u32,
    ) -> Result<(String, GenStats), ModelError>;
}

/// Timings of one generation.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct GenStats {
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub prompt_ms: f64,
    pub first_token_ms: f64,
    pub generated_tokens: u32,
    pub generate_ms: f64,
}

/// A model that failed; the engine keeps its honest grammar answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

/// Cosine similarity of unit vectors (their dot product, as MiniLM's own).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
