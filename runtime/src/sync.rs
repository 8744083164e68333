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
/// staged release (the `parts` this kiosk runs; see [`KioskHealth`]), then reported
/// to the fleet (`fleet/<device.name>.json`; a report that cannot be written is
/// logged, it does not fail the sync).
pub async fn sync_once(
    cfg: &DeviceConfig,
    parts: Parts,
    demand: serde_json::Value,
) -> Result<SyncState, SyncError> {
    sync_from(cfg, parts, &remote(cfg, None)?, demand).await
}

/// [`sync_once`] from a release location opened by the caller.
pub async fn sync_from(
    cfg: &DeviceConfig,
    parts: Parts,
    remote: &Remote,
    demand: serde_json::Value,
) -> Result<SyncState, SyncError> {
    let st = sync_only(cfg, parts, remote).await?;
    let r = aisle_release::KioskReport::of(&cfg.file.device.name, &st, demand);
    if let Err(e) = aisle_release::sync::report(remote, &r).await {
        tracing::warn!(error = %e, "the fleet report could not be written");
    }
    Ok(st)
}

async fn sync_only(
    cfg: &DeviceConfig,
    parts: Parts,
    remote: &Remote,
) -> Result<SyncState, SyncError> {
    let root = cfg
        .file
        .sync
        .trust_root
        .clone()
        .ok_or(SyncError::NoTrustRoot)?;
    let store = Store::open(&cfg.model_dir)?;
    let health = KioskHealth { cfg, parts };
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
/// models) answers the release's questions, those with a photo by looking at it.
///
/// Of the `parts` this kiosk runs, it loads the dialogue models always and each
/// other part whose models the release changes (unchanged ones were checked when
/// they came and are running now); vision also when a question shows a photo, and
/// speech recognition also for a new voice. A loaded voice reads the first
/// question aloud and, where the kiosk runs speech recognition, must be heard back.
pub struct KioskHealth<'a> {
    pub cfg: &'a DeviceConfig,
    pub parts: Parts,
}

impl HealthCheck for KioskHealth<'_> {
    fn check(&self, staged: &Staged, store: &Store) -> Result<String, String> {
        check(self.cfg, self.parts, staged, store).map_err(|e| e.to_string())
    }
}

/// Which of `runs` the health check of `staged` loads (see [`KioskHealth`]).
pub fn parts_to_check(cfg: &DeviceConfig, runs: Parts, staged: &Staged, store: &Store) -> Parts {
    let m = &cfg.file.models;
    // A model the release carries whose manifest is not the one installed now.
    let changed = |names: &[&str]| {
        names.iter().any(|name| {
            staged.manifest.models.get(*name).is_some_and(|r| {
                let now = store.root().join("manifests").join(format!("{name}.json"));
                std::fs::read(&now).map_or(true, |b| {
                    aisle_models::hash::sha256_bytes(&b) != r.manifest.sha256
                })
            })
        })
    };
    let ort = cfg.file.inference.onnxruntime_library.as_str();
    let photos = staged.manifest.health.iter().any(|q| q.photo.is_some());
    let voice = runs.voice && changed(&[&m.tts, ort]);
    Parts {
        dialogue_models: runs.dialogue_models,
        // A new voice is heard back by the kiosk's own ear, so it loads too.
        speech: runs.speech && (voice || changed(&[&m.asr, &m.vad])),
        vision: runs.vision
            && (photos
                || changed(&[
                    &m.image_embedding,
                    &m.text_embedding,
                    "imagenet-labels",
                    &m.ocr_detection,
                    &m.ocr_recognition,
                    &m.ocr_orientation,
                    &m.clip_tokenizer,
                    ort,
                ])),
        detector: runs.detector && changed(&[&m.object_detection, ort]),
        voice,
        quiet: true,
        ..runs
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

fn check(
    cfg: &DeviceConfig,
    runs: Parts,
    staged: &Staged,
    store: &Store,
) -> Result<String, CheckError> {
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
    // models load from the release.
    let mut c = overridden(cfg, staged).map_err(CheckError::Load)?;
    c.data_dir = data.clone();
    c.model_dir = overlay.clone();
    c.file.paths.catalog = None;
    let parts = parts_to_check(&c, runs, staged, store);
    let k = Kiosk::load(&c, parts).map_err(|e| CheckError::Load(e.to_string()))?;
    let loaded: Vec<&str> = [
        (parts.dialogue_models, "dialogue"),
        (parts.vision, "vision"),
        (parts.speech, "speech"),
        (parts.detector, "detector"),
        (parts.voice, "voice"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    report.push(format!("loaded {}", loaded.join("+")));
    let mut skipped = 0;
    let mut shown = 0;
    for q in &staged.manifest.health {
        let photo = match staged
            .health_photo(q)
            .map_err(|e| CheckError::Answer(e.to_string()))?
        {
            Some(_) if !parts.vision => {
                // A kiosk without a camera cannot be asked about a photo.
                skipped += 1;
                continue;
            }
            Some(p) => {
                let bytes = std::fs::read(&p).map_err(io(&p))?;
                shown += 1;
                Some(
                    k.decode_image(&bytes, &p.display().to_string())
                        .map_err(|e| CheckError::Answer(format!("{}: {e}", p.display())))?,
                )
            }
            None => None,
        };
        let a = k
            .ask(&AskRequest {
                text: &q.ask,
                session: None,
                sku: None,
                image: photo.as_ref(),
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
        "{} questions answered ({shown} with a photo)",
        staged.manifest.health.len() - skipped
    ));
    if skipped > 0 {
        report.push(format!(
            "{skipped} photo questions skipped (no vision here)"
        ));
    }
    if parts.voice {
        report.push(hear_back(&k, staged, parts.speech)?);
    }
    drop(k);
    // The release's catalog database, built and checked: the one it runs on.
    std::fs::rename(&db, staged.catalog_db()).map_err(io(&db))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report.join(", "))
}

/// The voice reads the first health question (or a fixed sentence) aloud; with
/// speech recognition loaded, the kiosk must hear most of its words back.
fn hear_back(k: &Kiosk, staged: &Staged, speech: bool) -> Result<String, CheckError> {
    let text = staged
        .manifest
        .health
        .first()
        .map_or("where can I find the milk", |q| q.ask.as_str());
    let said = k
        .say(text)
        .map_err(|e| CheckError::Answer(format!("the voice: {e}")))?;
    let samples = said.samples();
    let secs = samples.len() as f64 / f64::from(said.sample_rate.max(1));
    if secs < 0.3 {
        return Err(CheckError::Answer(format!(
            "the voice read {text:?} in {secs:.2} s of audio"
        )));
    }
    if !speech {
        return Ok(format!("the voice read a question ({secs:.1} s)"));
    }
    let pcm = aisle_speech::resample::to_16k(&samples, said.sample_rate)
        .map_err(|e| CheckError::Answer(format!("the voice's audio: {e}")))?;
    let heard = k
        .transcriber()
        .and_then(|t| Ok(t.transcribe(&pcm, None)?))
        .map_err(|e| CheckError::Answer(format!("speech recognition: {e}")))?;
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 2)
            .map(str::to_lowercase)
            .collect()
    };
    let want = words(text);
    let got = words(&heard.text);
    let found = want.iter().filter(|w| got.contains(w)).count();
    if want.is_empty() || found * 2 >= want.len() {
        Ok(format!(
            "the voice read a question and speech recognition heard {found} of its {} words",
            want.len()
        ))
    } else {
        Err(CheckError::Answer(format!(
            "the voice read {text:?} and speech recognition heard {:?}",
            heard.text
        )))
    }
}
