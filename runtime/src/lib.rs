//! The kiosk runtime: [`kiosk::Kiosk`] loads every model once from the device config
//! and serves many requests (the CLI commands, `aisle serve` in [`service`], the AR
//! window). The store database ([`catalog`], crate `aisle-catalog`) and the dialogue
//! engine ([`dialogue`], crate `aisle-dialogue`) are crates of their own, re-exported
//! here; the `aisle` binary (src/main.rs) is the edge where all this meets the CLI.

pub use aisle_catalog as catalog;
pub use aisle_dialogue as dialogue;
pub use aisle_dialogue::clock;

pub mod ar;
pub mod kiosk;
pub mod llm;
pub mod scan;
pub mod service;
pub mod sync;
