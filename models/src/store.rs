//! The content-addressed store on disk.
//!
//! ```text
//! <model_dir>/blobs/sha256/<hex>     file contents, read-only, named by their hash
//! <model_dir>/manifests/<name>.json  one manifest per installed model
//! <model_dir>/tmp/                   staging: nothing here is ever read as a model
//! ```
//! A file lands in `blobs/` only after its hash was checked, by a rename from `tmp/`
//! (same file system, so atomic); a manifest is written to `tmp/` and renamed last.
//! A crash at any point leaves either the old state or the new one, never a partial
//! file under a trusted name. Swapping a model version is a manifest rename, which
//! is what signed sync will build on.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::hash::{hash_file, hash_reader};
use crate::manifest::{MANIFEST_SCHEMA, Manifest};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A model whose every file was re-hashed against its manifest just now.
#[derive(Debug, Clone)]
pub struct VerifiedArtifact {
    pub manifest: Manifest,
    files: BTreeMap<String, PathBuf>,
}

impl VerifiedArtifact {
    /// The path of one of the model's files.
    pub fn path(&self, file: &str) -> Result<&Path> {
        self.files
            .get(file)
            .map(PathBuf::as_path)
            .ok_or_else(|| ModelError::MissingFile {
                model: self.manifest.name.clone(),
                file: file.to_string(),
                path: PathBuf::from(file),
            })
    }

    /// The first file of the manifest (a single-file model: an ONNX graph, a
    /// library, a label list) with its sha256.
    pub fn first_file(&self) -> Result<(&Path, &str)> {
        let f = self
            .manifest
            .files
            .first()
            .ok_or_else(|| ModelError::MissingFile {
                model: self.manifest.name.clone(),
                file: "(any)".into(),
                path: PathBuf::new(),
            })?;
        Ok((self.path(&f.name)?, f.sha256.as_str()))
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_path()))
    }
}

/// Result of checking one installed model.
#[derive(Debug)]
pub struct VerifyReport {
    pub name: String,
    pub result: Result<VerifiedArtifact>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["blobs/sha256", "manifests", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(ModelError::io(&p))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256)
    }

    fn manifest_path(&self, name: &str) -> Result<PathBuf> {
        check_model_name(name)?;
        Ok(self.root.join("manifests").join(format!("{name}.json")))
    }

    /// A fresh staging directory inside the store (same file system as `blobs/`).
    pub fn staging_dir(&self) -> Result<tempfile::TempDir> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(&tmp)
            .map_err(ModelError::io(&tmp))
    }

    /// Names of installed models (those with a manifest), sorted.
    pub fn installed(&self) -> Result<Vec<String>> {
        let dir = self.root.join("manifests");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(ModelError::io(&dir))? {
            let entry = entry.map_err(ModelError::io(&dir))?;
            let file_name = entry.file_name();
            if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads a manifest. Stage 1 of loading: nothing is trusted yet.
    pub fn manifest(&self, name: &str) -> Result<Manifest> {
        let path = self.manifest_path(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::NotInstalled {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(ModelError::Io { path, source: e }),
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Hashes become blob paths and names become file names: both are checked
        // before anything is opened by them.
        for f in &manifest.files {
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ModelError::Manifest {
                    path,
                    message: format!("file `{}`: sha256 is not 64 hex digits", f.name),
                });
            }
        }
        if manifest.schema != MANIFEST_SCHEMA || manifest.name != name {
            return Err(ModelError::Manifest {
                path,
                message: format!(
                    "schema {} / name `{}` (expected {MANIFEST_SCHEMA} / `{name}`)",
                    manifest.schema, manifest.name
                ),
            });
        }
        Ok(manifest)
    }

    /// Stage 2 of loading: re-hashes every file of the model against its manifest.
    pub fn verify(&self, name: &str, progress: &mut dyn FnMut(u64)) -> Result<VerifiedArtifact> {
        let manifest = self.manifest(name)?;
        let mut files = BTreeMap::new();
        for f in &manifest.files {
            let path = self.blob_path(&f.sha256);
            if !path.exists() {
                return Err(ModelError::MissingFile {
                    model: name.to_string(),
                    file: f.name.clone(),
                    path,
                });
            }
            let (actual, size) = hash_file(&path, progress)?;
            if size != f.size {
                return Err(ModelError::SizeMismatch {
                    path,
                    expected: f.size,
                    actual: size,
                });
            }
            if actual != f.sha256 {
                return Err(ModelError::ChecksumMismatch {
                    path,
                    expected: f.sha256.clone(),
                    actual,
                });
            }
            files.insert(f.name.clone(), path);
        }
        Ok(VerifiedArtifact { manifest, files })
    }

    /// Verifies every installed model; one report per model, failures included.
    pub fn verify_all(&self, progress: &mut dyn FnMut(u64)) -> Result<Vec<VerifyReport>> {
        Ok(self
            .installed()?
            .into_iter()
            .map(|name| {
                let result = self.verify(&name, progress);
                VerifyReport { name, result }
            })
            .collect())
    }

    /// Whether a blob with this hash is present and intact (re-hashed).
    pub fn has_blob(&self, sha256: &str, progress: &mut dyn FnMut(u64)) -> bool {
        let path = self.blob_path(sha256);
        matches!(hash_file(&path, progress), Ok((h, _)) if h == sha256)
    }

    /// Copies `reader` into the store, checking the hash (and size) if given.
    /// Returns (sha256, size). `label` names the file in errors.
    pub fn add_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&str, u64)>,
        label: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(String, u64)> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp =
            tempfile::NamedTempFile::new_in(&tmp_dir).map_err(ModelError::io(&tmp_dir))?;
        let (sha, size) = {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            let r = hash_reader(reader, &mut w, progress).map_err(ModelError::io(label))?;
            std::io::Write::flush(&mut w).map_err(ModelError::io(label))?;
            r
        };
        if let Some((want_sha, want_size)) = expected {
            if size != want_size {
                return Err(ModelError::SizeMismatch {
                    path: label.to_path_buf(),
                    expected: want_size,
                    actual: size,
                });
            }
            if sha != want_sha {
                return Err(ModelError::ChecksumMismatch {
                    path: label.to_path_buf(),
                    expected: want_sha.to_string(),
                    actual: sha,
                });
            }
        }
        tmp.as_file()
            .sync_all()
            .map_err(ModelError::io(tmp.path()))?;
        let dest = self.blob_path(&sha);
        let mut perms = tmp
            .as_file()
            .metadata()
            .map_err(ModelError::io(tmp.path()))?
            .permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(tmp.path(), perms).map_err(ModelError::io(tmp.path()))?;
        if dest.exists() {
            // Replace a damaged copy; an intact one is identical anyway.
            make_writable(&dest);
        }
        tmp.persist(&dest).map_err(|e| ModelError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((sha, size))
    }

    /// Moves a file whose sha256 and size the caller has just computed over its
    /// bytes (a verified download) into the store under that hash: a rename when
    /// it is on the store's file system, else a checked copy.
    pub fn adopt_verified(&self, path: &Path, sha256: &str, size: u64) -> Result<()> {
        let dest = self.blob_path(sha256);
        let meta = std::fs::metadata(path).map_err(ModelError::io(path))?;
        if meta.len() != size {
            return Err(ModelError::SizeMismatch {
                path: path.to_path_buf(),
                expected: size,
                actual: meta.len(),
            });
        }
        let mut perms = meta.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(path, perms).map_err(ModelError::io(path))?;
        if dest.exists() {
            make_writable(&dest);
        }
        match std::fs::rename(path, &dest) {
            Ok(()) => Ok(()),
            // Another file system: copied, and hashed on the way.
            Err(_) => {
                self.add_file(path, Some((sha256, size)), &mut |_| {})?;
                make_writable(path);
                let _ = std::fs::remove_file(path);
                Ok(())
            }
        }
    }

    /// Copies a file into the store (see [`Store::add_blob`]).
    pub fn add_file(
        &self,
        path: &Path,
        expected: Option<(&str, u64)>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(String, u64)> {
        let mut f = std::fs::File::open(path).map_err(ModelError::io(path))?;
        self.add_blob(&mut f, expected, path, progress)
    }

    /// Copies an installed model from another store; every file is checked against
    /// the manifest on its way in, so a damaged source fails instead of spreading.
    pub fn copy_model_from(&self, other: &Store, name: &str) -> Result<()> {
        let manifest = other.manifest(name)?;
        for f in &manifest.files {
            self.add_file(
                &other.blob_path(&f.sha256),
                Some((&f.sha256, f.size)),
                &mut |_| {},
            )?;
        }
        self.write_manifest(&manifest)
    }

    /// Writes a manifest atomically. Every file it names must already be a blob.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        for f in &manifest.files {
            let p = self.blob_path(&f.sha256);
            if !p.exists() {
                return Err(ModelError::MissingFile {
                    model: manifest.name.clone(),
                    file: f.name.clone(),
                    path: p,
                });
            }
        }
        let path = self.manifest_path(&manifest.name)?;
        let text = serde_json::to_string_pretty(manifest).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tmp_dir = self.root.join("tmp");
        let mut tmp =
            tempfile::NamedTempFile::new_in(&tmp_dir).map_err(ModelError::io(&tmp_dir))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(ModelError::io(tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(ModelError::io(tmp.path()))?;
        tmp.persist(&path).map_err(|e| ModelError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// A model name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`. Names
/// become file names in the store, so nothing else (no `/`, `..`, newline) is allowed.
pub fn check_model_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ModelError::BadName {
            name: name.escape_debug().to_string(),
        })
    }
}

fn make_writable(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mut perms = meta.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        let _ = std::fs::set_permissions(path, perms);
    }
}
