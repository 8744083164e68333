//! Signed releases on the kiosk (`aisle sync`, and periodically inside `aisle
//! serve`): the `sync` config section, the health check a staged release must pass
//! (its catalog built, its models verified and loaded, its questions answered by a
//! kiosk loaded over it), and the start-up reconcile that makes the model store
//! match the active release.

use std::path::{Path, PathBuf};

use aisle_firmware_config::DeviceConfig;
use aisle_models::Store;
use aisle_release::{HealthCheck, Paths, Remote, Staged, SyncState};

use crate::catalog::{self, CatalogDb, ImportOptions};
use crate::kiosk::{AskRequest, Kiosk, Parts};

/// Why a sync could not even start (the config says no sync, or a broken disk).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync.endpoint is not set: this kiosk does not sync")]
    NotConfigured,
    #[error("sync.trust_root is not set: a kiosk syncs only what a root it trusts has signed")]
    NoTrustRoot,
    #[error(transparent)]
    Release(#[from] aisle_release::ReleaseError),
    #[error("{0}")]
    Store(#[from] aisle_models::ModelError),
}

pub fn paths(cfg: &DeviceConfig) -> Paths {
    Paths::new(&cfg.data_dir)
}

/// The release location of `sync.endpoint` with the `sync.s3_*` settings.
pub fn remote(cfg: &DeviceConfig, endpoint: Option<&str>) -> Result<Remote, SyncError> {
    let s = &cfg.file.sync;
    let endpoint = endpoint.unwrap_or(&s.endpoint);
    if endpoint.is_empty() {
        return Err(SyncError::NotConfigured);
    }
    let mut opts: Vec<(&str, &str)> = Vec::new();
    if let Some(e) = &s.s3_endpoint {
        opts.push(("aws_endpoint", e));
    }
    if let Some(r) = &s.s3_region {
        opts.push(("aws_region", r));
    }
    if s.s3_allow_http {
        opts.push(("aws_allow_http", "true"));
    }
    Ok(Remote::open_with(endpoint, &opts)?)
}

/// One sync against `sync.endpoint`, health-checked by loading a kiosk over the
/// staged release, then reported to the fleet (`fleet/<device.name>.json`; a
/// report that cannot be written is logged, it does not fail the sync).
pub async fn sync_once(
    cfg: &DeviceConfig,
    demand: serde_json::Value,
) -> Result<SyncState, SyncError> {
    sync_from(cfg, &remote(cfg, None)?, demand).await
}

/// [`sync_once`] from a release location opened by the caller.
pub async fn sync_from(
    cfg: &DeviceConfig,
    remote: &Remote,
    demand: serde_json::Value,
) -> Result<SyncState, SyncError> {
    let st = sync_only(cfg, remote).await?;
    let r = aisle_release::KioskReport::of(&cfg.file.device.name, &st, demand);
    if let Err(e) = aisle_release::sync::report(remote, &r).await {
        tracing::warn!(error = %e, "the fleet report could not be written");
    }
    Ok(st)
}

async fn sync_only(cfg: &DeviceConfig, remote: &Remote) -> Result<SyncState, SyncError> {
    let root = cfg
        .file
        .sync
        .trust_root
        .clone()
        .ok_or(SyncError::NoTrustRoot)?;
    let store = Store::open(&cfg.model_dir)?;
    let health = KioskHealth { cfg };
    Ok(aisle_release::sync::sync_once(
        &paths(cfg),
        remote,
        &root,
        &store,
        &health,
        &cfg.file.device.name,
    )
    .await?)
}

/// Makes the model store's manifests those of the active release (a crash between
/// writing them and switching `active.json` heals here, at the next start).
pub fn reconcile(cfg: &DeviceConfig) -> Result<Option<u64>, SyncError> {
    let Some(staged) = aisle_release::sync::active_release(&paths(cfg))? else {
        return Ok(None);
    };
    let store = Store::open(&cfg.model_dir)?;
    aisle_release::sync::install_models(&staged, &store)?;
    Ok(Some(staged.version))
}

/// Records a start of the active release; one that failed to come up
/// `sync.max_failed_starts` times within `sync.failed_start_window_s` is rolled
/// back (returns the version now active).
pub fn record_start(cfg: &DeviceConfig) -> Result<Option<u64>, SyncError> {
    let s = &cfg.file.sync;
    let store = Store::open(&cfg.model_dir)?;
    Ok(aisle_release::sync::record_start(
        &paths(cfg),
        &store,
        s.max_failed_starts.max(1),
        u64::from(s.failed_start_window_s),
    )?)
}

/// The active release's catalog database, if a sync activated one.
pub fn active_catalog(cfg: &DeviceConfig) -> Option<PathBuf> {
    match aisle_release::sync::active(&paths(cfg)) {
        Ok(Some(a)) => {
            Some(paths(cfg).release(a.version).join("catalog.sqlite")).filter(|p| p.is_file())
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!("{e}; using the catalog outside releases");
            None
        }
    }
}

/// The configuration a kiosk runs with: `cfg` with the active release's config
/// overrides laid over it (the health check refused any that do not check).
pub fn effective(cfg: &DeviceConfig) -> DeviceConfig {
    let staged = match aisle_release::sync::active_release(&paths(cfg)) {
        Ok(Some(s)) => s,
        Ok(None) => return cfg.clone(),
        Err(e) => {
            tracing::error!(error = %e, "the active release is unreadable; its config overrides are not applied");
            return cfg.clone();
        }
    };
    match overridden(cfg, &staged) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the active release's config overrides are not applied");
            cfg.clone()
        }
    }
}

fn overridden(cfg: &DeviceConfig, staged: &Staged) -> Result<DeviceConfig, String> {
    let Some(p) = staged.config_file() else {
        return Ok(cfg.clone());
    };
    let text = aisle_firmware_config::read_bounded_text(&p, 1 << 20)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    aisle_firmware_config::with_overrides(cfg, &text, &p).map_err(|e| e.to_string())
}

/// One enrolled reference embedding as a release carries it (never the photo).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceLine {
    sku: String,
    photo_sha256: String,
    model: String,
    /// The embedding's f32 values, little-endian, hex.
    embedding_f32le: String,
}

/// Every enrolled reference embedding in `db` as JSON Lines (for a release).
pub fn export_references(db: &CatalogDb) -> Result<Vec<u8>, catalog::CatalogError> {
    let mut out = Vec::new();
    for model in db.reference_models()? {
        for r in db.reference_photos(&model)? {
            let bytes: Vec<u8> = r.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
            let line = ReferenceLine {
                sku: r.sku,
                photo_sha256: r.photo_sha256,
                model: model.clone(),
                embedding_f32le: hex::encode(bytes),
            };
            if let Ok(t) = serde_json::to_string(&line) {
                out.extend_from_slice(t.as_bytes());
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

/// Adds reference embeddings (JSON Lines) to `db`, for products it has; returns how
/// many were new. A malformed line is an error naming it.
fn import_references(db: &mut CatalogDb, text: &str, name: &Path) -> Result<usize, CheckError> {
    let mut by_model: std::collections::BTreeMap<String, Vec<catalog::ReferencePhoto>> =
        Default::default();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |m: String| CheckError::Io(format!("{}:{}: {m}", name.display(), i + 1));
        let r: ReferenceLine = serde_json::from_str(l).map_err(|e| bad(format!("{e}")))?;
        let b = hex::decode(&r.embedding_f32le).map_err(|e| bad(format!("embedding: {e}")))?;
        if b.is_empty() || b.len() % 4 != 0 {
            return Err(bad("embedding: not f32 values".into()));
        }
        let embedding: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if embedding.iter().any(|x| !x.is_finite()) {
            return Err(bad("embedding: not finite".into()));
        }
        by_model
            .entry(r.model)
            .or_default()
            .push(catalog::ReferencePhoto {
                sku: r.sku,
                photo_sha256: r.photo_sha256,
                embedding,
            });
    }
    let mut n = 0;
    for (model, photos) in by_model {
        let known: Vec<_> = photos
            .into_iter()
            .filter(|p| db.product(&p.sku).ok().flatten().is_some())
            .collect();
        n += db.add_reference_photos(&model, &known)?;
    }
    Ok(n)
}

/// The health check: a kiosk loaded over the staged release (its catalog, its
/// models) answers the release's questions.
pub struct KioskHealth<'a> {
    pub cfg: &'a DeviceConfig,
}

impl HealthCheck for KioskHealth<'_> {
    fn check(&self, staged: &Staged, store: &Store) -> Result<String, String> {
        check(self.cfg, staged, store).map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{0}")]
    Io(String),
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    #[error("model {0}")]
    Model(String),
    #[error("loading the release: {0}")]
    Load(String),
    #[error("{0}")]
    Answer(String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> CheckError + '_ {
    move |e| CheckError::Io(format!("{}: {e}", p.display()))
}

fn check(cfg: &DeviceConfig, staged: &Staged, store: &Store) -> Result<String, CheckError> {
    // A data dir of its own: the staged catalog database is built there.
    let work = staged.dir.join("check");
    let _ = std::fs::remove_dir_all(&work);
    let data = work.join("data");
    std::fs::create_dir_all(data.join("catalog")).map_err(io(&data))?;

    // A model store that is the kiosk's, with the release's manifests: the same
    // blobs (linked, not copied), the manifests the release will install.
    let overlay = work.join("models");
    std::fs::create_dir_all(overlay.join("manifests")).map_err(io(&overlay))?;
    std::fs::create_dir_all(overlay.join("tmp")).map_err(io(&overlay))?;
    let blobs = store.root().join("blobs");
    std::os::unix::fs::symlink(&blobs, overlay.join("blobs")).map_err(io(&overlay))?;
    for name in store
        .installed()
        .map_err(|e| CheckError::Model(e.to_string()))?
    {
        let from = store.root().join("manifests").join(format!("{name}.json"));
        let to = overlay.join("manifests").join(format!("{name}.json"));
        std::fs::copy(&from, &to).map_err(io(&from))?;
    }
    let over = Store::open(&overlay).map_err(|e| CheckError::Model(e.to_string()))?;
    let mut report = Vec::new();
    for name in staged.manifest.models.keys() {
        let from = staged.model_manifest(name);
        std::fs::copy(
            &from,
            overlay.join("manifests").join(format!("{name}.json")),
        )
        .map_err(io(&from))?;
        over.verify(name, &mut |_| {})
            .map_err(|e| CheckError::Model(format!("{name}: {e}")))?;
    }
    report.push(format!("{} models verified", staged.manifest.models.len()));

    // The catalog: the release's, else the one in use now.
    let db = data.join("catalog").join("store.sqlite");
    let mut cat = CatalogDb::open(&db)?;
    match staged.catalog_file() {
        Some(file) => {
            let opts = ImportOptions {
                default_currency: cfg.file.device.currency.clone(),
                ..Default::default()
            };
            let r = catalog::import_file(&mut cat, &file, &opts)?;
            report.push(format!("catalog {} products", r.products));
        }
        None => {
            let now = crate::kiosk::catalog_path(cfg);
            drop(cat);
            std::fs::copy(&now, &db).map_err(io(&now))?;
            cat = CatalogDb::open(&db)?;
        }
    }
    if cat.product_count()? == 0 {
        return Err(CheckError::Answer("the catalog has no products".into()));
    }
    // Reference embeddings: the release's, then those enrolled on this kiosk
    // (kept across releases: a kiosk's own enrolments are never lost).
    let mut refs = 0;
    if let Some(f) = staged.references_file() {
        let text = aisle_firmware_config::read_bounded_text(&f, 256 << 20)
            .map_err(|e| CheckError::Io(format!("{}: {e}", f.display())))?;
        refs += import_references(&mut cat, &text, &f)?;
    }
    let now = crate::kiosk::catalog_path(cfg);
    if now.is_file()
        && let Ok(old) = CatalogDb::open(&now)
    {
        let local = export_references(&old)?;
        refs += import_references(&mut cat, &String::from_utf8_lossy(&local), &now)?;
    }
    if refs > 0 {
        report.push(format!("{refs} reference embeddings"));
    }
    drop(cat);

    // A kiosk over both, with the release's config overrides: the configured
    // dialogue models load from the release.
    let mut c = overridden(cfg, staged).map_err(CheckError::Load)?;
    c.data_dir = data.clone();
    c.model_dir = overlay.clone();
    c.file.paths.catalog = None;
    let parts = Parts {
        dialogue_models: true,
        quiet: true,
        ..Parts::none()
    };
    let k = Kiosk::load(&c, parts).map_err(|e| CheckError::Load(e.to_string()))?;
    for q in &staged.manifest.health {
        let a = k
            .ask(&AskRequest {
                text: &q.ask,
                session: None,
                sku: None,
                image: None,
            })
            .map_err(|e| CheckError::Answer(format!("{:?}: {e}", q.ask)))?;
        let text = a.answer.text.to_lowercase();
        for want in &q.expect {
            if !text.contains(&want.to_lowercase()) {
                return Err(CheckError::Answer(format!(
                    "{:?} was answered {:?}, without {want:?}",
                    q.ask, a.answer.text
                )));
            }
        }
    }
    report.push(format!(
        "{} questions answered",
        staged.manifest.health.len()
    ));
    drop(k);
    // The release's catalog database, built and checked: the one it runs on.
    std::fs::rename(&db, staged.catalog_db()).map_err(io(&db))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report.join(", "))
}
