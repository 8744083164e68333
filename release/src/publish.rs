//! The staff side: a release is a set of TUF targets (model blobs and manifests, the
//! catalog, `release.json` describing them), signed and uploaded.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::schema::{Hashes, KeyHolder, Signed, Target, Timestamp};
use tough::{ExpirationEnforcement, RepositoryLoader, TargetName};

use crate::error::{ReleaseError, Result, io, tuf};
use crate::keys::{Keys, days_from_now};
use crate::remote::Remote;

/// `release.json`, a target of every release: what it is made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    pub version: u64,
    pub channel: String,
    /// RFC 3339.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<FileRef>,
    /// The catalog as changes to the previous release's (when that is smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_delta: Option<DeltaRef>,
    /// Enrolled reference embeddings (JSON Lines; never photos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<FileRef>,
    /// Config overrides (TOML: `[thresholds]`, `[dialogue]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<FileRef>,
    /// Model name -> its manifest (a target) and the blobs it names.
    #[serde(default)]
    pub models: BTreeMap<String, ModelRef>,
    /// What the release must answer before a kiosk activates it.
    #[serde(default)]
    pub health: Vec<HealthQuestion>,
    /// The photos its health questions show (`health/<sha256>.<ext>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_photos: Vec<FileRef>,
    /// For a staged rollout only: a kiosk takes it when a signed `rollout.json`
    /// of this very version admits it, never when that file is missing, halted
    /// or about another release (deleting or replaying it opens nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub target: String,
    pub sha256: String,
    pub length: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeltaRef {
    /// The catalog file it applies to (the previous release's).
    pub from_sha256: String,
    pub file: FileRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub manifest: FileRef,
    pub blobs: Vec<FileRef>,
}

/// A question and what its answer must contain (each string, case-insensitively),
/// asked with a photo of the product when `photo` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthQuestion {
    pub ask: String,
    pub expect: Vec<String>,
    /// In a [`Plan`]: the photo's file (PNG, JPEG or WebP). In a published
    /// release: its target, `health/<sha256>.<ext>` (see [`health_photo_target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// Extensions a health photo may have.
const PHOTO_EXTS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The image format of `path` by its first bytes (png, jpg or webp), if any.
fn photo_kind(path: &Path) -> Result<Option<&'static str>> {
    use std::io::Read;
    let mut head = [0u8; 12];
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let n = f.read(&mut head).map_err(io(path))?;
    let h = &head[..n];
    Ok(if h.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if h.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("jpg")
    } else if h.len() == 12 && h.starts_with(b"RIFF") && &h[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    })
}

/// Checks that `target` is a health photo's target name, `health/<sha256>.<ext>`
/// (a signed release never names a path outside its own directory); returns it.
pub fn health_photo_target(target: &str) -> Result<&str> {
    let ok = target.strip_prefix("health/").is_some_and(|f| {
        f.split_once('.').is_some_and(|(sha, ext)| {
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && PHOTO_EXTS.contains(&ext)
        })
    });
    if ok {
        Ok(target)
    } else {
        Err(ReleaseError::Target {
            name: target.to_string(),
            problem: "a health photo is named health/<sha256>.<png|jpg|jpeg|webp>".into(),
        })
    }
}

/// What to publish.
#[derive(Debug, Default)]
pub struct Plan {
    pub channel: String,
    /// The catalog file (CSV or JSON Lines) as staff export it.
    pub catalog: Option<PathBuf>,
    /// Models by name, from this model store.
    pub models: Vec<String>,
    pub health: Vec<HealthQuestion>,
    /// Enrolled reference embeddings to carry (JSON Lines, as `aisle release
    /// publish` exports them from a catalog database).
    pub references: Option<PathBuf>,
    /// Config overrides to carry (TOML).
    pub config: Option<PathBuf>,
    /// When the timestamp expires (kiosks refuse a stale one); None: in
    /// [`TIMESTAMP_DAYS`] days.
    pub timestamp_expires: Option<jiff::Timestamp>,
    /// Held for a staged rollout (see [`ReleaseManifest::staged`]).
    pub staged: bool,
}

/// What a publish did.
#[derive(Debug, Serialize)]
pub struct Published {
    pub version: u64,
    pub location: String,
    pub targets: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub skipped: usize,
}

/// How long a timestamp stays valid unless renewed (`release refresh`, from cron).
pub const TIMESTAMP_DAYS: i64 = 7;

/// How long targets and snapshot metadata stay valid.
const TARGETS_DAYS: i64 = 90;

pub(crate) const RELEASE_TARGET: &str = "release.json";

/// The object key of a target under consistent snapshots.
pub(crate) fn target_key(name: &str, sha256: &str) -> String {
    format!("targets/{sha256}.{name}")
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok((hex::encode(h.finalize()), n))
}

fn sha256_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn target(sha256: &str, length: u64) -> Result<Target> {
    let sha = hex::decode(sha256).map_err(|e| ReleaseError::Other(format!("sha256: {e}")))?;
    Ok(Target {
        length,
        hashes: Hashes {
            sha256: sha.into(),
            _extra: Default::default(),
        },
        custom: Default::default(),
        _extra: Default::default(),
    })
}

/// The newest release at `remote`, verified against `root` (expiry not enforced:
/// staff may be renewing an expired one). None when nothing is published.
pub async fn current(remote: &Remote, root: &[u8]) -> Result<Option<tough::Repository>> {
    if remote.size("metadata/timestamp.json").await?.is_none() {
        return Ok(None);
    }
    let tmp = tempfile::tempdir().map_err(io(std::env::temp_dir()))?;
    let repo = RepositoryLoader::new(&root, Remote::metadata_url(), Remote::targets_url())
        .transport(remote.transport())
        .datastore(tmp.path())
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .load()
        .await
        .map_err(tuf(format!("the release at {}", remote.location())))?;
    Ok(Some(repo))
}

/// The newest release at `remote`, as staff see it: verified with the newest root
/// in `keys`, or (after a key rotation not yet published) with the root it was
/// signed under, trying older roots newest first.
async fn current_for_staff(keys: &Keys, remote: &Remote) -> Result<Option<tough::Repository>> {
    let newest = keys.root()?.signed.version.get();
    let mut first_err = None;
    for n in (1..=newest).rev() {
        let p = keys.dir.join(format!("{n}.root.json"));
        let path = if n == newest && !p.is_file() {
            keys.root_json()
        } else {
            p
        };
        let Ok(root) = std::fs::read(&path) else {
            continue;
        };
        match current(remote, &root).await {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| ReleaseError::Keys {
        dir: keys.dir.clone(),
        problem: "no root.json".into(),
    }))
}

/// Builds, uploads what is missing and signs a release; returns its version.
pub async fn publish(
    keys: &Keys,
    remote: &Remote,
    store: &aisle_models::Store,
    plan: &Plan,
) -> Result<Published> {
    let prev = current_for_staff(keys, remote).await?;
    let (version, ts_version) = match &prev {
        Some(r) => (
            r.targets().signed.version.get() + 1,
            r.timestamp().signed.version.get() + 1,
        ),
        None => (1, 1),
    };
    let mut files: Vec<(String, String, u64, PathBuf)> = Vec::new(); // name, sha, len, path
    let staging = tempfile::tempdir().map_err(io(std::env::temp_dir()))?;
    let mut manifest = ReleaseManifest {
        version,
        channel: plan.channel.clone(),
        created: jiff::Timestamp::now().to_string(),
        catalog: None,
        catalog_delta: None,
        references: None,
        config: None,
        models: BTreeMap::new(),
        health: plan.health.clone(),
        health_photos: Vec::new(),
        staged: plan.staged,
    };
    // Health photos travel as targets named by their hash.
    for q in &mut manifest.health {
        let Some(photo) = q.photo.take() else {
            continue;
        };
        let path = PathBuf::from(&photo);
        let ext = photo_kind(&path)?.ok_or_else(|| ReleaseError::BadFile {
            path: path.clone(),
            problem: "a health photo is a PNG, JPEG or WebP image".into(),
        })?;
        let (sha, len) = sha256_file(&path)?;
        let name = format!("health/{sha}.{ext}");
        if !manifest.health_photos.iter().any(|f| f.target == name) {
            manifest.health_photos.push(FileRef {
                target: name.clone(),
                sha256: sha.clone(),
                length: len,
            });
            files.push((name.clone(), sha, len, path));
        }
        q.photo = Some(name);
    }
    if let Some(cat) = &plan.catalog {
        let ext = match cat.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => "csv",
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => {
                "jsonl"
            }
            _ => {
                return Err(ReleaseError::BadFile {
                    path: cat.clone(),
                    problem: "a catalog is a .csv or .jsonl file".into(),
                });
            }
        };
        let (sha, len) = sha256_file(cat)?;
        let name = format!("catalog/products.{ext}");
        manifest.catalog = Some(FileRef {
            target: name.clone(),
            sha256: sha.clone(),
            length: len,
        });
        files.push((name, sha.clone(), len, cat.clone()));
        // A delta from the previous release's catalog, when it is much smaller.
        if let Some(repo) = &prev
            && let Some(old) = read_release(repo).await?.catalog
            && old.sha256 != sha
            && let Some(old_bytes) = remote
                .get(&target_key(&old.target, &old.sha256), 1 << 30)
                .await?
            && sha256_bytes(&old_bytes) == old.sha256
        {
            let new_bytes = std::fs::read(cat).map_err(io(cat))?;
            if let Some(d) = crate::delta::diff(&old_bytes, &new_bytes, &old.sha256) {
                let b = serde_json::to_vec(&d).map_err(|e| ReleaseError::Other(format!("{e}")))?;
                if (b.len() as u64) < len / 2 {
                    let dname = format!("catalog/delta-from-{}.json", version - 1);
                    let dpath = staging.path().join("delta.json");
                    std::fs::write(&dpath, &b).map_err(io(&dpath))?;
                    let dsha = sha256_bytes(&b);
                    manifest.catalog_delta = Some(DeltaRef {
                        from_sha256: old.sha256.clone(),
                        file: FileRef {
                            target: dname.clone(),
                            sha256: dsha.clone(),
                            length: b.len() as u64,
                        },
                    });
                    files.push((dname, dsha, b.len() as u64, dpath));
                }
            }
        }
    }
    for (path, name, slot) in [
        (&plan.references, "references/embeddings.jsonl", 0),
        (&plan.config, "config/overrides.toml", 1),
    ] {
        if let Some(p) = path {
            let (sha, len) = sha256_file(p)?;
            let f = FileRef {
                target: name.into(),
                sha256: sha.clone(),
                length: len,
            };
            if slot == 0 {
                manifest.references = Some(f);
            } else {
                manifest.config = Some(f);
            }
            files.push((name.into(), sha, len, p.clone()));
        }
    }
    for name in &plan.models {
        let m = store.manifest(name)?;
        let mpath = store.root().join("manifests").join(format!("{name}.json"));
        let (msha, mlen) = sha256_file(&mpath)?;
        let mname = format!("models/{name}.json");
        let mut blobs = Vec::new();
        for f in &m.files {
            let bpath = store.blob_path(&f.sha256);
            let len = std::fs::metadata(&bpath).map_err(io(&bpath))?.len();
            let bname = format!("blobs/{}", f.sha256);
            blobs.push(FileRef {
                target: bname.clone(),
                sha256: f.sha256.clone(),
                length: len,
            });
            files.push((bname, f.sha256.clone(), len, bpath));
        }
        manifest.models.insert(
            name.clone(),
            ModelRef {
                manifest: FileRef {
                    target: mname.clone(),
                    sha256: msha.clone(),
                    length: mlen,
                },
                blobs,
            },
        );
        files.push((mname, msha, mlen, mpath));
    }
    let rpath = staging.path().join(RELEASE_TARGET);
    let rbytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ReleaseError::Other(format!("release.json: {e}")))?;
    std::fs::write(&rpath, &rbytes).map_err(io(&rpath))?;
    let (rsha, rlen) = sha256_file(&rpath)?;
    files.push((RELEASE_TARGET.into(), rsha, rlen, rpath));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);

    // Targets first: nothing signed ever names an object that is not there yet.
    let mut done = Published {
        version,
        location: remote.location().to_string(),
        targets: files.len(),
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
    };
    let mut editor = RepositoryEditor::new(keys.root_json())
        .await
        .map_err(tuf(keys.root_json().display().to_string()))?;
    for (name, sha, len, path) in &files {
        let key = target_key(name, sha);
        if remote.size(&key).await? == Some(*len) {
            done.skipped += 1;
        } else {
            remote.put_file(&key, path).await?;
            done.uploaded += 1;
            done.uploaded_bytes += len;
        }
        let tn = TargetName::new(name.as_str()).map_err(tuf(format!("target {name}")))?;
        editor
            .add_target(tn, target(sha, *len)?)
            .map_err(tuf(format!("target {name}")))?;
    }
    let v = NonZeroU64::new(version).ok_or_else(|| ReleaseError::Other("version 0".into()))?;
    let tv = NonZeroU64::new(ts_version).ok_or_else(|| ReleaseError::Other("version 0".into()))?;
    editor
        .targets_version(v)
        .map_err(tuf("targets version"))?
        .targets_expires(days_from_now(TARGETS_DAYS)?)
        .map_err(tuf("targets expiry"))?
        .snapshot_version(v)
        .snapshot_expires(days_from_now(TARGETS_DAYS)?)
        .timestamp_version(tv)
        .timestamp_expires(match plan.timestamp_expires {
            Some(t) => t,
            None => days_from_now(TIMESTAMP_DAYS)?,
        });
    let signed = editor
        .sign(&keys.sources(&["targets", "snapshot", "timestamp"])?)
        .await
        .map_err(tuf("signing the release"))?;
    let out = staging.path().join("metadata");
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    signed
        .write(&out)
        .await
        .map_err(tuf("writing the release metadata"))?;

    // Every root version the bucket lacks (kiosks step through them one by one),
    // then targets and snapshot metadata, the timestamp last.
    let root: Signed<tough::schema::Root> = keys.root()?;
    for n in 1..=root.signed.version.get() {
        let key = format!("metadata/{n}.root.json");
        if remote.size(&key).await?.is_none() {
            let p = keys.dir.join(format!("{n}.root.json"));
            remote.put_file(&key, &p).await?;
        }
    }
    for f in [
        format!("{version}.targets.json"),
        format!("{version}.snapshot.json"),
    ] {
        remote
            .put_file(&format!("metadata/{f}"), &out.join(&f))
            .await?;
    }
    remote
        .put_file("metadata/timestamp.json", &out.join("timestamp.json"))
        .await?;
    Ok(done)
}

/// Renews the timestamp (version + 1, new expiry) over the same snapshot: what
/// staff run from cron so kiosks never see a stale release.
pub async fn refresh_timestamp(
    keys: &Keys,
    remote: &Remote,
    expires: jiff::Timestamp,
) -> Result<u64> {
    let Some(b) = remote.get("metadata/timestamp.json", 1 << 20).await? else {
        return Err(ReleaseError::NothingPublished(remote.location().into()));
    };
    let mut ts: Signed<Timestamp> =
        serde_json::from_slice(&b).map_err(|e| ReleaseError::Target {
            name: "timestamp.json".into(),
            problem: format!("not TUF timestamp metadata: {e}"),
        })?;
    let root = keys.root()?;
    ts.signed.version = ts
        .signed
        .version
        .checked_add(1)
        .ok_or_else(|| ReleaseError::Other("timestamp version overflow".into()))?;
    ts.signed.expires = expires;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = SignedRole::new(
        ts.signed,
        &KeyHolder::Root(root.signed),
        &keys.sources(&["timestamp"])?,
        &rng,
    )
    .await
    .map_err(tuf("signing timestamp.json"))?;
    let v = signed.signed().signed.version.get();
    remote
        .put("metadata/timestamp.json", signed.buffer().clone())
        .await?;
    Ok(v)
}

/// A published release, as `release list` shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub version: u64,
    pub channel: String,
    pub created: String,
    pub expires: String,
    pub models: Vec<String>,
    pub catalog: bool,
    pub current: bool,
}

/// The releases whose metadata is still in the bucket, newest first.
pub async fn list(remote: &Remote, root: &[u8]) -> Result<Vec<Listed>> {
    let Some(repo) = current(remote, root).await? else {
        return Ok(Vec::new());
    };
    let newest = repo.targets().signed.version.get();
    let expires = repo.timestamp().signed.expires.to_string();
    let mut out = Vec::new();
    let m = read_release(&repo).await?;
    out.push(Listed {
        version: newest,
        channel: m.channel,
        created: m.created,
        expires,
        models: m.models.keys().cloned().collect(),
        catalog: m.catalog.is_some(),
        current: true,
    });
    // Older ones: their targets metadata is still there (signed, not current).
    for n in (1..newest).rev() {
        let key = format!("metadata/{n}.targets.json");
        if let Some(b) = remote.get(&key, 16 << 20).await? {
            let t: Signed<tough::schema::Targets> =
                serde_json::from_slice(&b).map_err(|e| ReleaseError::Target {
                    name: key.clone(),
                    problem: format!("{e}"),
                })?;
            out.push(Listed {
                version: n,
                channel: String::new(),
                created: String::new(),
                expires: t.signed.expires.to_string(),
                models: t
                    .signed
                    .targets
                    .keys()
                    .filter_map(|k| {
                        k.raw()
                            .strip_prefix("models/")
                            .and_then(|s| s.strip_suffix(".json"))
                            .map(String::from)
                    })
                    .collect(),
                catalog: t
                    .signed
                    .targets
                    .keys()
                    .any(|k| k.raw().starts_with("catalog/")),
                current: false,
            });
        }
    }
    Ok(out)
}

/// `release.json` of a verified repository.
pub async fn read_release(repo: &tough::Repository) -> Result<ReleaseManifest> {
    use tough::IntoVec;
    let name = TargetName::new(RELEASE_TARGET).map_err(tuf(RELEASE_TARGET))?;
    let s = repo
        .read_target(&name)
        .await
        .map_err(tuf(RELEASE_TARGET))?
        .ok_or_else(|| ReleaseError::Target {
            name: RELEASE_TARGET.into(),
            problem: "not in the signed targets".into(),
        })?;
    let b = s.into_vec().await.map_err(tuf(RELEASE_TARGET))?;
    serde_json::from_slice(&b).map_err(|e| ReleaseError::Target {
        name: RELEASE_TARGET.into(),
        problem: format!("not a release manifest: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_photo_targets_stay_inside_the_release() {
        let sha = "ab".repeat(32);
        assert!(health_photo_target(&format!("health/{sha}.png")).is_ok());
        assert!(health_photo_target(&format!("health/{sha}.jpg")).is_ok());
        for bad in [
            format!("health/../{sha}.png"),
            format!("health/{sha}.png/../../x"),
            format!("health/{}.png", "AB".repeat(32)),
            format!("health/{sha}.exe"),
            format!("/etc/{sha}.png"),
            format!("models/{sha}.png"),
            "health/short.png".to_string(),
        ] {
            assert!(health_photo_target(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn photo_kind_is_read_from_the_bytes_not_the_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let cases: [(&[u8], Option<&str>); 4] = [
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("png")),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", Some("jpg")),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some("webp")),
            (b"GIF89a", None),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("photo-{i}.png"));
            std::fs::write(&p, bytes).expect("write");
            assert_eq!(photo_kind(&p).expect("read"), want, "case {i}");
        }
        assert!(photo_kind(&dir.path().join("missing.png")).is_err());
    }
}
