//! The manifest: the on-disk record of one installed model (a wire type).

use serde::{Deserialize, Serialize};

use crate::catalog::PackageSource;

pub const MANIFEST_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    pub version: String,
    pub task: String,
    pub format: String,
    pub license: String,
    #[serde(default)]
    pub description: String,
    /// The registry package the files came from, for fetched models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PackageSource>,
    /// What an imported model was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<DerivedFrom>,
    pub files: Vec<ManifestFile>,
    /// Seconds since the Unix epoch.
    pub installed_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedFrom {
    pub importer: String,
    /// Bumped when the importer's output changes, so old imports are redone.
    pub importer_version: u32,
    /// Input model files, by name and content hash.
    pub inputs: Vec<DerivedInput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedInput {
    pub model: String,
    pub file: String,
    pub sha256: String,
}

impl Manifest {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}
