//! The kiosk runtime: the store's catalog and inventory database, the dialogue
//! engine, and [`kiosk::Kiosk`], which loads every model once from the device config
//! and serves many requests (the CLI commands, `aisle serve` in [`service`], the AR
//! window). The `aisle` binary (src/main.rs) is the edge where these meet the CLI.

pub mod ar;
pub mod catalog;
pub mod clock;
pub mod dialogue;
pub mod kiosk;
pub mod llm;
pub mod scan;
pub mod service;
