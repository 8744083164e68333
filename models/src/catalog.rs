//! The catalog: which models exist, and how to obtain each (a registry package, or an
//! importer run over other models). The default catalog is embedded in the binary.

use serde::Deserialize;

use crate::error::{ModelError, Result};

pub const DEFAULT_CATALOG: &str = include_str!("../catalog/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<CatalogEntry>,
}

/// One model the store knows how to install.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub name: String,
    pub version: String,
    pub task: String,
    pub format: String,
    pub license: String,
    #[serde(default)]
    pub description: String,
    /// Where the files come from when fetched from a registry.
    #[serde(default)]
    pub source: Option<PackageSource>,
    /// Files pinned by checksum (for registry sources).
    #[serde(default)]
    pub files: Vec<PinnedFile>,
    /// How the model is produced from other models, for imported models.
    #[serde(default)]
    pub derive: Option<Derivation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Pypi,
    Npm,
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// A built wheel (the default for PyPI).
    #[default]
    Wheel,
    /// A source distribution.
    Sdist,
}

/// A package on a registry, fetched with that registry's own client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    pub registry: Registry,
    pub package: String,
    pub version: String,
    #[serde(default)]
    pub kind: PackageKind,
    /// Wheel platform tag for binary wheels (the data files inside are the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Python version for binary wheels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

impl std::fmt::Display for PackageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = match self.registry {
            Registry::Pypi => "pypi",
            Registry::Npm => "npm",
            Registry::Debian => "debian",
        };
        write!(f, "{registry}:{}=={}", self.package, self.version)
    }
}

/// A file inside a package, with the checksum it must have once extracted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    /// Name of the file in the store.
    pub name: String,
    /// Path of the file inside the package.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    pub importer: String,
    pub inputs: Vec<String>,
}

/// The parsed catalog.
#[derive(Debug, Clone)]
pub struct ModelCatalog {
    pub entries: Vec<CatalogEntry>,
}

impl ModelCatalog {
    pub fn default_set() -> Result<Self> {
        Self::parse(DEFAULT_CATALOG)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| ModelError::Catalog {
            message: e.to_string(),
        })?;
        let catalog = ModelCatalog {
            entries: file.model,
        };
        catalog.check()?;
        Ok(catalog)
    }

    fn check(&self) -> Result<()> {
        let bad = |message: String| Err(ModelError::Catalog { message });
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|o| o.name == e.name) {
                return bad(format!("model `{}` is listed twice", e.name));
            }
            match (&e.source, &e.derive) {
                (Some(_), None) if !e.files.is_empty() => {}
                (None, Some(d)) if e.files.is_empty() => {
                    for input in &d.inputs {
                        if !self.entries[..i].iter().any(|o| &o.name == input) {
                            return bad(format!(
                                "model `{}` derives from `{input}`, which is not listed before it",
                                e.name
                            ));
                        }
                    }
                }
                _ => {
                    return bad(format!(
                        "model `{}` needs either `source` with `files`, or `derive`",
                        e.name
                    ));
                }
            }
            for f in &e.files {
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!(
                        "model `{}` file `{}`: sha256 must be 64 hex digits",
                        e.name, f.name
                    ));
                }
                if f.name.contains('/') || f.name.starts_with('.') {
                    return bad(format!(
                        "model `{}` file `{}`: file names must be plain",
                        e.name, f.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&CatalogEntry> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_parses_and_is_consistent() {
        let c = ModelCatalog::default_set().expect("default catalog");
        assert!(c.get("whisper-tiny-en-ggml").is_ok());
        assert!(matches!(
            c.get("nope"),
            Err(ModelError::UnknownModel { .. })
        ));
    }

    #[test]
    fn rejects_derivation_from_unknown_model() {
        let text = r#"
[[model]]
name = "a"
version = "1"
task = "t"
format = "f"
license = "MIT"
derive = { importer = "x", inputs = ["b"] }
"#;
        let err = ModelCatalog::parse(text).expect_err("must fail");
        assert!(err.to_string().contains("derives from `b`"), "{err}");
    }
}
