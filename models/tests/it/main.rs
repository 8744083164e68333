//! Integration tests of the model store, on the real weights that
//! `aisle models fetch` installed (the README's test command fetches them first).

mod efficientnet;
mod registry_unpack;
mod store_integrity;
mod whisper_import;

use std::path::PathBuf;
use std::sync::OnceLock;

use aisle_models::{Store, VerifiedArtifact};

/// The data directory the test command fetched into.
pub fn data_dir() -> PathBuf {
    std::env::var_os("AISLE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(aisle_firmware_config::default_data_dir)
        .expect("no data directory: set AISLE_DATA_DIR or HOME")
}

pub fn real_store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| Store::open(&data_dir().join("models")).expect("open the model store"))
}

/// A verified model from the real store; fails with the fix if it is not installed.
pub fn model(name: &str) -> VerifiedArtifact {
    real_store().verify(name, &mut |_| {}).unwrap_or_else(|e| {
        panic!("{e}\n(the test command runs `aisle models fetch` first: `cargo xtask test`)")
    })
}
