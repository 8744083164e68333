//! The store side of aisle: the catalog and inventory database and the dialogue
//! engine. The `aisle` binary (src/main.rs) is the edge where these meet the CLI.

pub mod ar;
pub mod catalog;
pub mod dialogue;
pub mod llm;
pub mod scan;
