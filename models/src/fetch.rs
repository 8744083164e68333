//! `aisle models fetch`: install catalog entries into the store, idempotently.
//!
//! Each model is checked first (manifest matches the catalog, every file re-hashed);
//! only what is missing or damaged is downloaded or re-imported, so a second run
//! downloads nothing. Each package is downloaded at most once per run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::{CatalogEntry, ModelCatalog, PackageSource};
use crate::error::{ModelError, Result};
use crate::ggml::{layout_mismatches, read_whisper_ggml};
use crate::import::{efficientnet, tflite, whisper};
use crate::manifest::{DerivedFrom, DerivedInput, MANIFEST_SCHEMA, Manifest, ManifestFile};
use crate::registry;
use crate::store::{Store, VerifiedArtifact};

/// What the fetcher is doing, for progress display.
#[derive(Debug, Clone, Copy)]
pub enum FetchEvent<'a> {
    /// Re-hashing what is installed (`bytes` to read).
    Checking {
        model: &'a str,
        bytes: u64,
    },
    UpToDate {
        model: &'a str,
    },
    Downloading {
        package: &'a PackageSource,
    },
    /// Copying a file into the store (`bytes` to copy).
    Storing {
        model: &'a str,
        file: &'a str,
        bytes: u64,
    },
    Importing {
        model: &'a str,
        importer: &'a str,
    },
    Installed {
        model: &'a str,
        bytes: u64,
    },
}

pub trait FetchObserver {
    fn event(&self, event: FetchEvent<'_>);
    /// Bytes hashed or copied since the last call.
    fn bytes(&self, n: u64);
}

/// An observer that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl FetchObserver for Silent {
    fn event(&self, _: FetchEvent<'_>) {}
    fn bytes(&self, _: u64) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    UpToDate,
    Installed,
}

#[derive(Debug, Clone)]
pub struct FetchReport {
    pub name: String,
    pub outcome: Outcome,
}

/// Bumped when an importer's output changes.
fn importer_version(importer: &str) -> u32 {
    match importer {
        "whisper-ct2-to-ggml" => 1,
        "efficientnet-pth-to-onnx" => 1,
        "mediapipe-ssd-to-onnx" => 1,
        _ => 0,
    }
}

pub struct Fetcher<'a> {
    store: &'a Store,
    catalog: &'a ModelCatalog,
    /// Where helper tools (the importers' Python environment) live.
    tools_dir: PathBuf,
    observer: &'a dyn FetchObserver,
    downloads: RefCell<HashMap<PackageSource, PathBuf>>,
}

impl<'a> Fetcher<'a> {
    pub fn new(
        store: &'a Store,
        catalog: &'a ModelCatalog,
        tools_dir: &Path,
        observer: &'a dyn FetchObserver,
    ) -> Self {
        Self {
            store,
            catalog,
            tools_dir: tools_dir.to_path_buf(),
            observer,
            downloads: RefCell::new(HashMap::new()),
        }
    }

    /// Installs `names` (all catalog entries when empty) and what they derive from.
    pub fn fetch(&self, names: &[String]) -> Result<Vec<FetchReport>> {
        let mut wanted: Vec<&str> = Vec::new();
        let roots: Vec<&str> = if names.is_empty() {
            self.catalog.names()
        } else {
            names.iter().map(String::as_str).collect()
        };
        for name in roots {
            self.closure(name, &mut wanted)?;
        }
        // ModelCatalog order puts inputs before what derives from them.
        let ordered: Vec<&CatalogEntry> = self
            .catalog
            .entries
            .iter()
            .filter(|e| wanted.contains(&e.name.as_str()))
            .collect();
        let staging = self.store.staging_dir()?;
        let mut reports = Vec::new();
        for entry in ordered {
            let outcome = self.fetch_one(entry, staging.path())?;
            reports.push(FetchReport {
                name: entry.name.clone(),
                outcome,
            });
        }
        Ok(reports)
    }

    fn closure<'c>(&'c self, name: &str, out: &mut Vec<&'c str>) -> Result<()> {
        let entry = self.catalog.get(name)?;
        if out.contains(&entry.name.as_str()) {
            return Ok(());
        }
        if let Some(d) = &entry.derive {
            for input in &d.inputs {
                self.closure(input, out)?;
            }
        }
        out.push(entry.name.as_str());
        Ok(())
    }

    fn progress(&self) -> impl FnMut(u64) + '_ {
        |n| self.observer.bytes(n)
    }

    fn verified(
        &self,
        entry: &CatalogEntry,
        expected: impl Fn(&Manifest) -> bool,
    ) -> Option<VerifiedArtifact> {
        let manifest = self.store.manifest(&entry.name).ok()?;
        if !expected(&manifest) {
            return None;
        }
        self.observer.event(FetchEvent::Checking {
            model: &entry.name,
            bytes: manifest.total_size(),
        });
        self.store.verify(&entry.name, &mut self.progress()).ok()
    }

    fn fetch_one(&self, entry: &CatalogEntry, staging: &Path) -> Result<Outcome> {
        match (&entry.source, &entry.derive) {
            (Some(source), _) => self.fetch_package_model(entry, source, staging),
            (None, Some(_)) => self.import_model(entry, staging),
            (None, None) => Err(ModelError::Catalog {
                message: format!("model `{}` has neither source nor derive", entry.name),
            }),
        }
    }

    fn manifest_for(&self, entry: &CatalogEntry, files: Vec<ManifestFile>) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            name: entry.name.clone(),
            version: entry.version.clone(),
            task: entry.task.clone(),
            format: entry.format.clone(),
            license: entry.license.clone(),
            description: entry.description.clone(),
            source: entry.source.clone(),
            derived_from: None,
            files,
            installed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    fn fetch_package_model(
        &self,
        entry: &CatalogEntry,
        source: &PackageSource,
        staging: &Path,
    ) -> Result<Outcome> {
        let pinned: Vec<ManifestFile> = entry
            .files
            .iter()
            .map(|f| ManifestFile {
                name: f.name.clone(),
                sha256: f.sha256.clone(),
                size: f.size,
            })
            .collect();
        let matches_catalog = |m: &Manifest| {
            m.version == entry.version && m.files == pinned && m.source.as_ref() == Some(source)
        };
        if self.verified(entry, matches_catalog).is_some() {
            self.observer
                .event(FetchEvent::UpToDate { model: &entry.name });
            return Ok(Outcome::UpToDate);
        }
        let missing: Vec<_> = entry
            .files
            .iter()
            .filter(|f| !self.store.has_blob(&f.sha256, &mut |_| {}))
            .collect();
        if !missing.is_empty() {
            let package = self.download(source, staging)?;
            let members: Vec<&str> = missing.iter().map(|f| f.path.as_str()).collect();
            let out_dir = tempfile::tempdir_in(staging).map_err(ModelError::io(staging))?;
            let extracted = registry::extract(&package, &members, out_dir.path())?;
            for f in missing {
                let path = extracted.get(&f.path).ok_or_else(|| ModelError::Unpack {
                    archive: package.clone(),
                    member: f.path.clone(),
                    message: "not extracted".into(),
                })?;
                self.observer.event(FetchEvent::Storing {
                    model: &entry.name,
                    file: &f.name,
                    bytes: f.size,
                });
                let label = PathBuf::from(format!("{}!/{}", package.display(), f.path));
                let mut file = std::fs::File::open(path).map_err(ModelError::io(path))?;
                self.store.add_blob(
                    &mut file,
                    Some((&f.sha256, f.size)),
                    &label,
                    &mut self.progress(),
                )?;
            }
        }
        let manifest = self.manifest_for(entry, pinned);
        self.store.write_manifest(&manifest)?;
        self.observer.event(FetchEvent::Installed {
            model: &entry.name,
            bytes: manifest.total_size(),
        });
        Ok(Outcome::Installed)
    }

    fn download(&self, source: &PackageSource, staging: &Path) -> Result<PathBuf> {
        if let Some(p) = self.downloads.borrow().get(source) {
            return Ok(p.clone());
        }
        self.observer
            .event(FetchEvent::Downloading { package: source });
        let dir = tempfile::tempdir_in(staging)
            .map_err(ModelError::io(staging))?
            .keep();
        let path = registry::download(source, &dir)?;
        self.downloads
            .borrow_mut()
            .insert(source.clone(), path.clone());
        Ok(path)
    }

    fn import_model(&self, entry: &CatalogEntry, staging: &Path) -> Result<Outcome> {
        let Some(derive) = &entry.derive else {
            return Err(ModelError::Catalog {
                message: format!("model `{}` is not derived", entry.name),
            });
        };
        let mut inputs = Vec::new();
        let mut artifacts = Vec::new();
        for name in &derive.inputs {
            let artifact = self.store.verify(name, &mut self.progress())?;
            for f in &artifact.manifest.files {
                inputs.push(DerivedInput {
                    model: name.clone(),
                    file: f.name.clone(),
                    sha256: f.sha256.clone(),
                });
            }
            artifacts.push(artifact);
        }
        let derived_from = DerivedFrom {
            importer: derive.importer.clone(),
            importer_version: importer_version(&derive.importer),
            inputs,
        };
        let up_to_date = |m: &Manifest| {
            m.version == entry.version && m.derived_from.as_ref() == Some(&derived_from)
        };
        if self.verified(entry, up_to_date).is_some() {
            self.observer
                .event(FetchEvent::UpToDate { model: &entry.name });
            return Ok(Outcome::UpToDate);
        }
        self.observer.event(FetchEvent::Importing {
            model: &entry.name,
            importer: &derive.importer,
        });
        let work = tempfile::tempdir_in(staging).map_err(ModelError::io(staging))?;
        let find = |file: &str| -> Result<&Path> {
            artifacts
                .iter()
                .find_map(|a| a.path(file).ok())
                .ok_or_else(|| ModelError::MissingFile {
                    model: derive.inputs.join("+"),
                    file: file.to_string(),
                    path: PathBuf::from(file),
                })
        };
        let files: Vec<(&str, PathBuf)> = match derive.importer.as_str() {
            "whisper-ct2-to-ggml" => {
                let out = work.path().join("ggml-model.bin");
                // A model too big for one package comes as model.bin.part1, .part2, ...
                // (each pinned by checksum): joined here, in order.
                let joined;
                let model_bin = match find("model.bin") {
                    Ok(p) => p,
                    Err(e) => {
                        let parts: Vec<&Path> = (1..)
                            .map_while(|i| find(&format!("model.bin.part{i}")).ok())
                            .collect();
                        if parts.is_empty() {
                            return Err(e);
                        }
                        joined = work.path().join("model.bin");
                        let mut dst =
                            std::fs::File::create(&joined).map_err(ModelError::io(&joined))?;
                        for part in &parts {
                            let mut src =
                                std::fs::File::open(part).map_err(ModelError::io(*part))?;
                            std::io::copy(&mut src, &mut dst).map_err(ModelError::io(&joined))?;
                        }
                        joined.as_path()
                    }
                };
                whisper::convert_ct2_to_ggml(
                    whisper::WhisperSources {
                        model_bin,
                        vocabulary: find("vocabulary.txt")?,
                        mel_filters: find("mel_filters.npz")?,
                    },
                    &out,
                )?;
                let parsed = read_whisper_ggml(&out)?;
                let problems = layout_mismatches(&parsed);
                if !problems.is_empty() {
                    return Err(ModelError::Import {
                        importer: derive.importer.clone(),
                        path: out,
                        message: problems.join("; "),
                    });
                }
                vec![("ggml-model.bin", out)]
            }
            "efficientnet-pth-to-onnx" => {
                let python = efficientnet::ensure_python(&self.tools_dir.join("python-venv"))?;
                let out = work.path().join("model.onnx");
                efficientnet::convert_pth_to_onnx(
                    &python,
                    find("efficientnet-lite0.pth")?,
                    &out,
                    work.path(),
                )?;
                vec![("model.onnx", out)]
            }
            "mediapipe-ssd-to-onnx" => {
                let packed = find("packed_assets.data")?;
                let bytes = std::fs::read(packed).map_err(ModelError::io(packed))?;
                let failed = |message: String| ModelError::Import {
                    importer: derive.importer.clone(),
                    path: packed.to_path_buf(),
                    message,
                };
                let (labels, model) = tflite::split_packed_assets(&bytes).map_err(failed)?;
                let onnx = tflite::tflite_to_onnx(model).map_err(failed)?;
                let (onnx_path, labels_path) = (
                    work.path().join("model.onnx"),
                    work.path().join("labels.txt"),
                );
                std::fs::write(&onnx_path, onnx).map_err(ModelError::io(&onnx_path))?;
                std::fs::write(&labels_path, labels.join("\n") + "\n")
                    .map_err(ModelError::io(&labels_path))?;
                vec![("model.onnx", onnx_path), ("labels.txt", labels_path)]
            }
            other => {
                return Err(ModelError::Catalog {
                    message: format!("model `{}`: unknown importer `{other}`", entry.name),
                });
            }
        };
        let mut stored = Vec::new();
        let mut total = 0;
        for (file_name, out) in &files {
            let size = std::fs::metadata(out).map_err(ModelError::io(out))?.len();
            self.observer.event(FetchEvent::Storing {
                model: &entry.name,
                file: file_name,
                bytes: size,
            });
            let (sha256, size) = self.store.add_file(out, None, &mut self.progress())?;
            total += size;
            stored.push(ManifestFile {
                name: file_name.to_string(),
                sha256,
                size,
            });
        }
        let mut manifest = self.manifest_for(entry, stored);
        manifest.derived_from = Some(derived_from);
        self.store.write_manifest(&manifest)?;
        self.observer.event(FetchEvent::Installed {
            model: &entry.name,
            bytes: total,
        });
        Ok(Outcome::Installed)
    }
}
