//! The kiosk side: fetch and verify (TUF's client workflow), download what is
//! missing (resumably, each file checked against its signed length and hash),
//! stage beside the active release, health-check, activate by one atomic rename.
//!
//! ```text
//! <data>/sync/tuf/             TUF's datastore: the newest trusted root, timestamp,
//!                              snapshot and targets (rollback and freeze protection)
//! <data>/sync/partial/<sha>    downloads in progress (resumed from their length)
//! <data>/sync/state.json       the last sync: state, versions, error
//! <data>/releases/<v>/         release.json, catalog.<ext>, models/<name>.json
//! <data>/releases/active.json  {"version", "previous"}: the switch
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tough::{ExpirationEnforcement, RepositoryLoader};

use crate::error::{ReleaseError, Result, io, tuf};
use crate::keys::write_atomic;
use crate::publish::{FileRef, ReleaseManifest, read_release, target_key};
use crate::remote::Remote;

/// Where a kiosk keeps releases and its sync state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Self {
        Paths {
            data_dir: data_dir.to_path_buf(),
        }
    }
    fn sync(&self) -> PathBuf {
        self.data_dir.join("sync")
    }
    pub fn tuf(&self) -> PathBuf {
        self.sync().join("tuf")
    }
    fn partial(&self) -> PathBuf {
        self.sync().join("partial")
    }
    pub fn state(&self) -> PathBuf {
        self.sync().join("state.json")
    }
    pub fn releases(&self) -> PathBuf {
        self.data_dir.join("releases")
    }
    pub fn release(&self, version: u64) -> PathBuf {
        self.releases().join(version.to_string())
    }
    pub fn active_file(&self) -> PathBuf {
        self.releases().join("active.json")
    }
}

/// The active release (what `active.json` says).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Active {
    pub version: u64,
    #[serde(default)]
    pub previous: Option<u64>,
}

/// The release in use, if a sync ever activated one; a damaged `active.json` is an
/// error naming it (the kiosk must not silently fall back to something else).
pub fn active(paths: &Paths) -> Result<Option<Active>> {
    let p = paths.active_file();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ReleaseError::BadFile {
                path: p,
                problem: format!("not an active-release record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(p)(e)),
    }
}

/// The active release's directory and manifest.
pub fn active_release(paths: &Paths) -> Result<Option<Staged>> {
    let Some(a) = active(paths)? else {
        return Ok(None);
    };
    Staged::open(paths, a.version).map(Some)
}

/// A release on disk: downloaded and checked, maybe not yet active.
#[derive(Debug, Clone)]
pub struct Staged {
    pub version: u64,
    pub dir: PathBuf,
    pub manifest: ReleaseManifest,
}

impl Staged {
    fn open(paths: &Paths, version: u64) -> Result<Staged> {
        let dir = paths.release(version);
        let p = dir.join("release.json");
        let b = std::fs::read(&p).map_err(io(&p))?;
        let manifest = serde_json::from_slice(&b).map_err(|e| ReleaseError::BadFile {
            path: p,
            problem: format!("{e}"),
        })?;
        Ok(Staged {
            version,
            dir,
            manifest,
        })
    }

    /// The catalog file as published (CSV or JSON Lines), if the release has one.
    pub fn catalog_file(&self) -> Option<PathBuf> {
        let c = self.manifest.catalog.as_ref()?;
        let ext = c.target.rsplit('.').next().unwrap_or("csv");
        Some(self.dir.join(format!("catalog.{ext}")))
    }

    /// The release's enrolled reference embeddings (JSON Lines), if any.
    pub fn references_file(&self) -> Option<PathBuf> {
        self.manifest
            .references
            .as_ref()
            .map(|_| self.dir.join("references.jsonl"))
    }

    /// The release's config overrides (TOML), if any.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.manifest
            .config
            .as_ref()
            .map(|_| self.dir.join("config.toml"))
    }

    /// The photo a health question is asked with, if it has one.
    pub fn health_photo(&self, q: &crate::HealthQuestion) -> Result<Option<PathBuf>> {
        match &q.photo {
            Some(t) => Ok(Some(self.dir.join(crate::publish::health_photo_target(t)?))),
            None => Ok(None),
        }
    }

    /// Where the release's catalog database is built (by the health check).
    pub fn catalog_db(&self) -> PathBuf {
        self.dir.join("catalog.sqlite")
    }

    /// The release's model manifests (installed into the store on activation).
    pub fn model_manifest(&self, name: &str) -> PathBuf {
        self.dir.join("models").join(format!("{name}.json"))
    }
}

/// Checks a staged release before it is activated (the runtime loads it and asks
/// its questions); an error says what failed.
pub trait HealthCheck {
    fn check(&self, staged: &Staged, store: &aisle_models::Store) -> Result<String, String>;
}

/// Where a sync ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncState {
    /// `current` (nothing new), `activated`, `refused` (verification failed: the
    /// active release is untouched), `held-back` (a release that failed its health
    /// check here or was rolled back), `health-failed`, `waiting` (a staged
    /// rollout has not reached this kiosk, or is halted), `failed` (could not
    /// reach, download or write). `rolled-back` is written by [`rollback`].
    pub state: String,
    pub active: Option<u64>,
    pub previous: Option<u64>,
    /// The newest version the repository offered, when it could be verified.
    pub offered: Option<u64>,
    pub last_sync: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
    /// Versions that failed their health check here: never activated again.
    #[serde(default)]
    pub bad: Vec<u64>,
    pub downloaded_bytes: u64,
    pub downloaded_files: usize,
    /// Bytes of signed metadata (and `release.json`) read to verify the release.
    #[serde(default)]
    pub metadata_bytes: u64,
    /// Milliseconds verifying metadata, downloading, hashing and staging.
    #[serde(default)]
    pub fetch_ms: f64,
    /// Milliseconds in the health check.
    #[serde(default)]
    pub health_ms: f64,
    pub ms: f64,
}

fn load_state(paths: &Paths) -> Option<SyncState> {
    let b = std::fs::read(paths.state()).ok()?;
    serde_json::from_slice(&b).ok()
}

fn save_state(paths: &Paths, s: &SyncState) -> Result<()> {
    let b = serde_json::to_vec_pretty(s).map_err(|e| ReleaseError::Other(format!("{e}")))?;
    write_atomic(&paths.state(), &b)
}

/// One sync: returns where it ended (also written to `sync/state.json`). Errors
/// that leave the kiosk as it was (a refused or unreachable repository) are
/// reported in the state, not as `Err`; `Err` is for a broken local disk.
pub async fn sync_once(
    paths: &Paths,
    remote: &Remote,
    trust_root: &Path,
    store: &aisle_models::Store,
    health: &dyn HealthCheck,
    kiosk: &str,
) -> Result<SyncState> {
    let t = Instant::now();
    for d in [paths.tuf(), paths.partial(), paths.releases()] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let prev = load_state(paths);
    let act = active(paths)?;
    let mut st = SyncState {
        state: "current".into(),
        active: act.map(|a| a.version),
        previous: act.and_then(|a| a.previous),
        last_sync: jiff::Timestamp::now().to_string(),
        bad: prev.map(|p| p.bad).unwrap_or_default(),
        ..Default::default()
    };
    let before = remote.tuf_bytes();
    let r = step(paths, remote, trust_root, store, health, kiosk, &mut st).await;
    st.metadata_bytes = remote.tuf_bytes() - before;
    if let Err(e) = r {
        st.error = Some(e.to_string());
        if st.state == "current" {
            st.state = if unreachable(&e) {
                "failed".into()
            } else {
                match e {
                    ReleaseError::Tuf { .. } | ReleaseError::Target { .. } => "refused".into(),
                    _ => "failed".into(),
                }
            };
        }
    }
    st.ms = t.elapsed().as_secs_f64() * 1000.0;
    // The record is best effort: a full disk must not hide the sync's own outcome.
    if let Err(e) = save_state(paths, &st) {
        tracing::warn!(error = %e, "the sync state could not be saved");
        if st.error.is_none() {
            st.error = Some(format!("the sync state could not be saved: {e}"));
        }
    }
    Ok(st)
}

async fn step(
    paths: &Paths,
    remote: &Remote,
    trust_root: &Path,
    store: &aisle_models::Store,
    health: &dyn HealthCheck,
    kiosk: &str,
    st: &mut SyncState,
) -> Result<()> {
    let started = Instant::now();
    // The newest root this kiosk trusts: the datastore's once a sync ran, else the
    // one it was provisioned with.
    let stored = paths.tuf().join("root.json");
    let root_path = if stored.is_file() {
        stored
    } else {
        trust_root.to_path_buf()
    };
    let root = std::fs::read(&root_path).map_err(io(&root_path))?;
    let repo = RepositoryLoader::new(&root, Remote::metadata_url(), Remote::targets_url())
        .transport(remote.transport())
        .datastore(paths.tuf())
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(tuf(format!("the release at {}", remote.location())))?;
    let version = repo.targets().signed.version.get();
    st.offered = Some(version);
    if st.active == Some(version) {
        return Ok(());
    }
    if st.bad.contains(&version) {
        st.state = "held-back".into();
        st.error = Some(format!(
            "release {version} is held back here (it failed its health check or was rolled back); staying on {}",
            on(st.active)
        ));
        return Ok(());
    }
    let manifest = read_release(&repo).await?;
    if manifest.version != version {
        return Err(ReleaseError::Target {
            name: "release.json".into(),
            problem: format!(
                "says version {} but the signed targets are version {version}",
                manifest.version
            ),
        });
    }
    // A staged rollout may not have reached this kiosk's group yet; a release
    // published for one waits for a rollout of exactly its version.
    let rollout = crate::rollout::get(remote, repo.root()).await?;
    let waiting = match &rollout {
        Some(r) if !r.admits(kiosk, version) => Some(if r.halted {
            format!(
                "the rollout of release {version} is halted ({}); staying on {}",
                r.note,
                on(st.active)
            )
        } else {
            format!(
                "release {version} is rolling out to {}% of the fleet; this kiosk's place is {}%",
                r.open_percent(),
                crate::rollout::bucket_of(kiosk)
            )
        }),
        Some(r) if manifest.staged && r.version != version => Some(format!(
            "release {version} waits for its staged rollout (the rollout in the bucket is release {}'s); staying on {}",
            r.version,
            on(st.active)
        )),
        None if manifest.staged => Some(format!(
            "release {version} waits for its staged rollout (none in the bucket); staying on {}",
            on(st.active)
        )),
        _ => None,
    };
    if let Some(why) = waiting {
        st.state = "waiting".into();
        st.error = Some(why);
        return Ok(());
    }
    // Every file named by release.json must be a signed target of the same hash
    // and length (release.json is itself signed, but check the pair).
    let signed = |f: &FileRef| -> Result<()> {
        let name = tough::TargetName::new(f.target.as_str()).map_err(tuf(&f.target))?;
        let t = repo
            .targets()
            .signed
            .targets
            .get(&name)
            .ok_or_else(|| ReleaseError::Target {
                name: f.target.clone(),
                problem: "named by release.json but not signed".into(),
            })?;
        if hex::encode(&t.hashes.sha256) != f.sha256 || t.length != f.length {
            return Err(ReleaseError::Target {
                name: f.target.clone(),
                problem: "release.json and the signed targets disagree".into(),
            });
        }
        Ok(())
    };

    // Partial downloads this release does not need (an older release's, cut
    // short) go: they would only take the disk.
    let mut needed: std::collections::HashSet<String> = manifest
        .models
        .values()
        .flat_map(|m| m.blobs.iter().chain([&m.manifest]))
        .chain(manifest.catalog.iter())
        .chain(manifest.catalog_delta.iter().map(|d| &d.file))
        .chain(manifest.references.iter())
        .chain(manifest.config.iter())
        .chain(manifest.health_photos.iter())
        .map(|f| f.sha256.clone())
        .collect();
    needed.extend(needed.clone().into_iter().map(|s| format!("{s}.blob")));
    if let Ok(rd) = std::fs::read_dir(paths.partial()) {
        for e in rd.flatten() {
            if !e.file_name().to_str().is_some_and(|n| needed.contains(n)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    // Stage: a fresh directory beside the active one.
    let dir = paths.release(version);
    let staging = paths.releases().join(format!(".staging-{version}"));
    if staging.exists() {
        // A sync killed mid-stage: its verified files are reused below only
        // through `partial/` and the store; the directory is rebuilt.
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(staging.join("models")).map_err(io(&staging))?;
    // Files the active release already has (same hash) are copied, not fetched.
    let active_dir = st.active.map(|v| paths.release(v));
    let reuse = |rel: &str, dest: &Path, f: &FileRef| -> Result<bool> {
        match &active_dir {
            Some(d) => copy_if_same(&d.join(rel), dest, f),
            None => Ok(false),
        }
    };
    if let Some(c) = &manifest.catalog {
        signed(c)?;
        let ext = c.target.rsplit('.').next().unwrap_or("csv");
        let rel = format!("catalog.{ext}");
        let dest = staging.join(&rel);
        if !reuse(&rel, &dest, c)?
            && !by_delta(paths, remote, &manifest, active_dir.as_deref(), &dest, st).await?
        {
            fetch(paths, remote, c, &dest, st).await?;
        }
    }
    for (f, rel) in [
        (&manifest.references, "references.jsonl"),
        (&manifest.config, "config.toml"),
    ] {
        if let Some(f) = f {
            signed(f)?;
            let dest = staging.join(rel);
            if !reuse(rel, &dest, f)? {
                fetch(paths, remote, f, &dest, st).await?;
            }
        }
    }
    for f in &manifest.health_photos {
        signed(f)?;
        let rel = crate::publish::health_photo_target(&f.target)?;
        let dest = staging.join(rel);
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        if !reuse(rel, &dest, f)? {
            fetch(paths, remote, f, &dest, st).await?;
        }
    }
    for q in &manifest.health {
        if let Some(t) = &q.photo
            && !manifest.health_photos.iter().any(|f| &f.target == t)
        {
            return Err(ReleaseError::Target {
                name: t.clone(),
                problem: "a health question's photo is not among the release's health photos"
                    .into(),
            });
        }
    }
    for (name, m) in &manifest.models {
        aisle_models::check_model_name(name)?;
        signed(&m.manifest)?;
        let rel = format!("models/{name}.json");
        let dest = staging.join(&rel);
        if !reuse(&rel, &dest, &m.manifest)? {
            fetch(paths, remote, &m.manifest, &dest, st).await?;
        }
        for b in &m.blobs {
            signed(b)?;
            let have = store.blob_path(&b.sha256);
            if std::fs::metadata(&have).is_ok_and(|md| md.len() == b.length) {
                continue;
            }
            let part = paths.partial().join(format!("{}.blob", b.sha256));
            fetch(paths, remote, b, &part, st).await?;
            // Hashed as it arrived: moved into the store, not hashed again.
            store.adopt_verified(&part, &b.sha256, b.length)?;
        }
    }
    let mbytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ReleaseError::Other(format!("{e}")))?;
    write_atomic(&staging.join("release.json"), &mbytes)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&staging, &dir).map_err(io(&dir))?;
    let staged = Staged::open(paths, version)?;
    fault_point("staged");
    st.fetch_ms = started.elapsed().as_secs_f64() * 1000.0;

    // Health check, then the switch.
    let t = Instant::now();
    let checked = health.check(&staged, store);
    st.health_ms = t.elapsed().as_secs_f64() * 1000.0;
    match checked {
        Ok(report) => st.health = Some(report),
        Err(problem) => {
            st.state = "health-failed".into();
            st.health = Some(problem.clone());
            st.bad.push(version);
            st.error = Some(format!(
                "release {version} failed its health check ({problem}); staying on {}",
                on(st.active)
            ));
            return Ok(());
        }
    }
    fault_point("checked");
    activate(paths, &staged, store, st.active)?;
    fault_point("activated");
    st.previous = st.active;
    st.active = Some(version);
    st.state = "activated".into();
    prune(paths, version, st.previous);
    Ok(())
}

/// Whether `e` is the storage failing (unreachable, errors, timeouts) rather than
/// what it served being refused: an `object_store` error anywhere in its chain.
fn unreachable(e: &ReleaseError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<object_store::Error>().is_some() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Crash tests: with `AISLE_FAULT_ABORT_AT=<step>` the process aborts at that step
/// (as `kill -9` would: no destructors, nothing flushed), so a test can check that
/// a restart finds the kiosk on the old release or the new one, never a mix.
/// Steps: `downloading`, `staged`, `checked`, `models-installed`, `activated`.
fn fault_point(step: &str) {
    if std::env::var("AISLE_FAULT_ABORT_AT").is_ok_and(|s| s == step) {
        eprintln!("aisle: aborting at sync step {step} (AISLE_FAULT_ABORT_AT)");
        std::process::abort();
    }
}

fn on(active: Option<u64>) -> String {
    active.map_or("no release".into(), |v| format!("release {v}"))
}

/// The catalog rebuilt from the active release's and the release's delta, when
/// the delta applies to it; the result must match the signed full catalog's hash
/// and length (else false, and the full file is fetched).
async fn by_delta(
    paths: &Paths,
    remote: &Remote,
    m: &ReleaseManifest,
    active_dir: Option<&Path>,
    dest: &Path,
    st: &mut SyncState,
) -> Result<bool> {
    let (Some(c), Some(d), Some(dir)) = (&m.catalog, &m.catalog_delta, active_dir) else {
        return Ok(false);
    };
    let ext = c.target.rsplit('.').next().unwrap_or("csv");
    let old_path = dir.join(format!("catalog.{ext}"));
    let Ok(old) = std::fs::read(&old_path) else {
        return Ok(false);
    };
    if hex::encode(sha2::Sha256::digest(&old)) != d.from_sha256 {
        return Ok(false);
    }
    let dpath = paths.partial().join("catalog-delta.json");
    let _ = std::fs::remove_file(&dpath);
    fetch(paths, remote, &d.file, &dpath, st).await?;
    let text = std::fs::read(&dpath).map_err(io(&dpath))?;
    let _ = std::fs::remove_file(&dpath);
    let Ok(delta) = serde_json::from_slice::<crate::delta::Delta>(&text) else {
        return Ok(false);
    };
    let Some(new) = crate::delta::apply(&old, &delta) else {
        return Ok(false);
    };
    if new.len() as u64 != c.length || hex::encode(sha2::Sha256::digest(&new)) != c.sha256 {
        tracing::warn!("the catalog delta did not rebuild the signed catalog; fetching it whole");
        return Ok(false);
    }
    std::fs::write(dest, &new).map_err(io(dest))?;
    Ok(true)
}

/// Copies an already verified file of the active release instead of downloading
/// it again (same hash and length).
fn copy_if_same(from: &Path, to: &Path, f: &FileRef) -> Result<bool> {
    let Ok(md) = std::fs::metadata(from) else {
        return Ok(false);
    };
    if md.len() != f.length {
        return Ok(false);
    }
    let (sha, _) = sha256_of(from)?;
    if sha != f.sha256 {
        return Ok(false);
    }
    std::fs::copy(from, to).map_err(io(to))?;
    Ok(true)
}

fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok((hex::encode(h.finalize()), n))
}

/// Downloads one target to `dest`, resuming a partial download in `partial/`;
/// the bytes must not exceed the signed length and must hash to the signed sha256.
async fn fetch(
    paths: &Paths,
    remote: &Remote,
    f: &FileRef,
    dest: &Path,
    st: &mut SyncState,
) -> Result<()> {
    use std::io::Write;
    let part = paths.partial().join(&f.sha256);
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > f.length {
        std::fs::remove_file(&part).map_err(io(&part))?;
        have = 0;
    }
    // One pass: what a resumed download already has, then each chunk as it lands.
    let mut hasher = sha2::Sha256::new();
    if have > 0 {
        let mut prev = std::fs::File::open(&part).map_err(io(&part))?;
        std::io::copy(&mut prev, &mut hasher).map_err(io(&part))?;
    }
    if have < f.length {
        let key = target_key(&f.target, &f.sha256);
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io(&part))?;
        let mut s = remote.stream_from(&key, have).await?;
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            if have + chunk.len() as u64 > f.length {
                drop(out);
                let _ = std::fs::remove_file(&part);
                return Err(ReleaseError::Target {
                    name: f.target.clone(),
                    problem: format!("longer than its signed {} bytes (endless data)", f.length),
                });
            }
            if let Err(e) = out.write_all(&chunk) {
                // A full disk: what was written is given back, not kept to resume.
                if e.kind() == std::io::ErrorKind::StorageFull {
                    drop(out);
                    let _ = std::fs::remove_file(&part);
                }
                return Err(io(&part)(e));
            }
            hasher.update(&chunk);
            have += chunk.len() as u64;
            if have < f.length {
                fault_point("downloading");
            }
            st.downloaded_bytes += chunk.len() as u64;
        }
        out.sync_all().map_err(io(&part))?;
        st.downloaded_files += 1;
    }
    let (sha, len) = (hex::encode(hasher.finalize()), have);
    if sha != f.sha256 || len != f.length {
        let _ = std::fs::remove_file(&part);
        return Err(ReleaseError::Target {
            name: f.target.clone(),
            problem: format!(
                "its bytes do not match the signed hash ({len} bytes, sha256 {sha}; signed {} bytes, {})",
                f.length, f.sha256
            ),
        });
    }
    std::fs::rename(&part, dest).map_err(io(dest))?;
    Ok(())
}

/// The switch: model manifests into the store, then `active.json` by one rename.
fn activate(
    paths: &Paths,
    staged: &Staged,
    store: &aisle_models::Store,
    previous: Option<u64>,
) -> Result<()> {
    install_models(staged, store)?;
    fault_point("models-installed");
    let a = Active {
        version: staged.version,
        previous,
    };
    let b = serde_json::to_vec_pretty(&a).map_err(|e| ReleaseError::Other(format!("{e}")))?;
    write_atomic(&paths.active_file(), &b)
}

/// Makes the store's manifests those of `staged` (idempotent: run at every start,
/// so a crash between the manifests and `active.json` heals itself).
pub fn install_models(staged: &Staged, store: &aisle_models::Store) -> Result<()> {
    for name in staged.manifest.models.keys() {
        let p = staged.model_manifest(name);
        let b = std::fs::read(&p).map_err(io(&p))?;
        let m: aisle_models::Manifest =
            serde_json::from_slice(&b).map_err(|e| ReleaseError::BadFile {
                path: p.clone(),
                problem: format!("not a model manifest: {e}"),
            })?;
        if m.name != *name {
            return Err(ReleaseError::BadFile {
                path: p,
                problem: format!("names model {:?}, not {name:?}", m.name),
            });
        }
        if store.manifest(name).ok().as_ref() != Some(&m) {
            store.write_manifest(&m)?;
        }
    }
    Ok(())
}

/// Rolls back to the previous release (staff asked, or the new one keeps failing).
pub fn rollback(paths: &Paths, store: &aisle_models::Store) -> Result<Active> {
    let Some(a) = active(paths)? else {
        return Err(ReleaseError::Other("no release is active".into()));
    };
    let Some(prev) = a.previous else {
        return Err(ReleaseError::Other(format!(
            "release {} is active and there is no previous one to return to",
            a.version
        )));
    };
    let staged = Staged::open(paths, prev)?;
    activate(paths, &staged, store, None)?;
    let mut st = load_state(paths).unwrap_or_default();
    st.state = "rolled-back".into();
    st.active = Some(prev);
    st.previous = None;
    if !st.bad.contains(&a.version) {
        st.bad.push(a.version);
    }
    save_state(paths, &st)?;
    Ok(Active {
        version: prev,
        previous: None,
    })
}

/// Keeps the active and previous releases, removes older ones.
fn prune(paths: &Paths, active: u64, previous: Option<u64>) {
    let Ok(rd) = std::fs::read_dir(paths.releases()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(v) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if v != active && Some(v) != previous {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The last sync's state, if any.
pub fn last_state(paths: &Paths) -> Option<SyncState> {
    load_state(paths)
}

/// What a kiosk tells the fleet after each sync (`fleet/<kiosk>.json` in the
/// bucket): its release, the sync's state, and counts only (never a shopper's words).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KioskReport {
    pub kiosk: String,
    pub active: Option<u64>,
    pub previous: Option<u64>,
    pub offered: Option<u64>,
    pub state: String,
    pub last_sync: String,
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// Demand signals counted since the service started (kind, sku, count).
    #[serde(default)]
    pub demand: serde_json::Value,
}

impl KioskReport {
    /// The report of a sync that ended in `st`.
    pub fn of(kiosk: &str, st: &SyncState, demand: serde_json::Value) -> Self {
        KioskReport {
            kiosk: kiosk.to_string(),
            active: st.active,
            previous: st.previous,
            offered: st.offered,
            state: st.state.clone(),
            last_sync: st.last_sync.clone(),
            health: st.health.clone(),
            error: st.error.clone(),
            demand,
        }
    }
}

/// The object key of a kiosk's report: its name, limited to `[A-Za-z0-9._-]`.
pub fn report_key(kiosk: &str) -> Result<String> {
    let ok = !kiosk.is_empty()
        && kiosk.len() <= 64
        && !kiosk.starts_with('.')
        && kiosk
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(ReleaseError::Other(format!(
            "device name {kiosk:?} cannot name a fleet report: use 1 to 64 of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(format!("fleet/{kiosk}.json"))
}

/// Writes this kiosk's report to the bucket.
pub async fn report(remote: &Remote, r: &KioskReport) -> Result<()> {
    let key = report_key(&r.kiosk)?;
    let b = serde_json::to_vec_pretty(r).map_err(|e| ReleaseError::Other(format!("{e}")))?;
    remote.put(&key, b).await
}

/// Every kiosk's last report, by name (a report that does not parse is listed
/// with its problem as the error).
pub async fn fleet(remote: &Remote) -> Result<Vec<KioskReport>> {
    let mut out = Vec::new();
    for name in remote.list("fleet").await? {
        let Some(kiosk) = name.strip_suffix(".json") else {
            continue;
        };
        let key = format!("fleet/{name}");
        let Some(b) = remote.get(&key, 1 << 20).await? else {
            continue;
        };
        out.push(serde_json::from_slice(&b).unwrap_or_else(|e| KioskReport {
            kiosk: kiosk.to_string(),
            active: None,
            previous: None,
            offered: None,
            state: "unreadable".into(),
            last_sync: String::new(),
            health: None,
            error: Some(format!("{key}: {e}")),
            demand: serde_json::Value::Null,
        }));
    }
    Ok(out)
}

/// Starts of the active release that have not (yet) come up, for the automatic
/// rollback of a release that keeps failing at start (`<data>/releases/starts.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Starts {
    version: u64,
    /// Unix seconds of each start not followed by [`started_ok`].
    pending: Vec<i64>,
}

fn starts_file(paths: &Paths) -> PathBuf {
    paths.releases().join("starts.json")
}

/// Records a start of the active release. When the same release has failed to come
/// up `max_failed` times within `window_s` seconds (this start included), and a
/// previous release exists, rolls back to it and returns its version.
pub fn record_start(
    paths: &Paths,
    store: &aisle_models::Store,
    max_failed: u32,
    window_s: u64,
) -> Result<Option<u64>> {
    let Some(a) = active(paths)? else {
        return Ok(None);
    };
    let now = jiff::Timestamp::now().as_second();
    let f = starts_file(paths);
    let mut s: Starts = std::fs::read(&f)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if s.version != a.version {
        s = Starts {
            version: a.version,
            pending: Vec::new(),
        };
    }
    s.pending.retain(|t| now - t <= window_s as i64);
    s.pending.push(now);
    if s.pending.len() as u32 > max_failed && a.previous.is_some() {
        // This start is the (max_failed + 1)th in the window: the earlier ones
        // never came up.
        let back = rollback(paths, store)?;
        let _ = std::fs::remove_file(&f);
        return Ok(Some(back.version));
    }
    let b = serde_json::to_vec(&s).map_err(|e| ReleaseError::Other(format!("{e}")))?;
    write_atomic(&f, &b)?;
    Ok(None)
}

/// The active release came up: its failed starts are forgotten.
pub fn started_ok(paths: &Paths) {
    let _ = std::fs::remove_file(starts_file(paths));
}
