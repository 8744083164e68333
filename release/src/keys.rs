//! Staff's signing keys and the trusted root.
//!
//! ```text
//! <keys>/root-1.pk8, root-2.pk8, root-3.pk8   Ed25519, PKCS#8 DER; 2 of 3 sign root
//! <keys>/targets.pk8, snapshot.pk8, timestamp.pk8
//! <keys>/root.json                            the newest signed root (ship it to kiosks)
//! ```
//! Root keys belong offline; the timestamp key signs every renewal (cron).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed};

use crate::error::{ReleaseError, Result, io, tuf};

pub const ROOT_KEYS: usize = 3;
pub const ROOT_THRESHOLD: u64 = 2;
/// How long a root stays valid.
pub const ROOT_DAYS: i64 = 365;

#[derive(Debug, Clone)]
pub struct Keys {
    pub dir: PathBuf,
}

fn keys_err(dir: &Path, problem: impl Into<String>) -> ReleaseError {
    ReleaseError::Keys {
        dir: dir.to_path_buf(),
        problem: problem.into(),
    }
}

fn generate() -> Result<Vec<u8>> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| ReleaseError::Other("the system could not make an Ed25519 key".into()))
}

fn tuf_key(pkcs8: &[u8], path: &Path) -> Result<Key> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| ReleaseError::BadFile {
        path: path.to_path_buf(),
        problem: "not an Ed25519 PKCS#8 key".into(),
    })?;
    Ok(Key::Ed25519 {
        keyval: Ed25519Key {
            public: pair.public_key().as_ref().to_vec().into(),
            _extra: HashMap::new(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    })
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}

fn key_id(k: &Key) -> Result<Decoded<Hex>> {
    k.key_id()
        .map_err(|e| ReleaseError::Other(format!("key id: {e}")))
}

impl Keys {
    pub fn new(dir: &Path) -> Self {
        Keys {
            dir: dir.to_path_buf(),
        }
    }

    pub fn root_json(&self) -> PathBuf {
        self.dir.join("root.json")
    }

    fn file(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.pk8"))
    }

    /// Makes the keys and a first root (version 1), refusing to overwrite any.
    pub async fn init(dir: &Path) -> Result<Keys> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let k = Keys::new(dir);
        if k.root_json().exists() {
            return Err(keys_err(
                dir,
                "root.json is already there: keys are made once",
            ));
        }
        let roles = [
            "root-1",
            "root-2",
            "root-3",
            "targets",
            "snapshot",
            "timestamp",
        ];
        let mut pub_keys = HashMap::new();
        let mut ids: HashMap<&str, Decoded<Hex>> = HashMap::new();
        for r in roles {
            let path = k.file(r);
            let pkcs8 = generate()?;
            write_secret(&path, &pkcs8)?;
            let key = tuf_key(&pkcs8, &path)?;
            let id = key_id(&key)?;
            pub_keys.insert(id.clone(), key);
            ids.insert(r, id);
        }
        let role = |names: &[&str], threshold: u64| -> Result<RoleKeys> {
            Ok(RoleKeys {
                keyids: names.iter().filter_map(|n| ids.get(n).cloned()).collect(),
                threshold: NonZeroU64::new(threshold)
                    .ok_or_else(|| ReleaseError::Other("threshold 0".into()))?,
                _extra: HashMap::new(),
            })
        };
        let mut role_map = HashMap::new();
        role_map.insert(
            RoleType::Root,
            role(&["root-1", "root-2", "root-3"], ROOT_THRESHOLD)?,
        );
        role_map.insert(RoleType::Targets, role(&["targets"], 1)?);
        role_map.insert(RoleType::Snapshot, role(&["snapshot"], 1)?);
        role_map.insert(RoleType::Timestamp, role(&["timestamp"], 1)?);
        let root = Root {
            spec_version: "1.0.0".into(),
            consistent_snapshot: true,
            version: NonZeroU64::MIN,
            expires: days_from_now(ROOT_DAYS)?,
            keys: pub_keys,
            roles: role_map,
            _extra: HashMap::new(),
        };
        k.sign_root(root, &["root-1", "root-2"]).await?;
        Ok(k)
    }

    /// Signs `root` with the named root keys and writes it as `root.json` (and
    /// `<version>.root.json`, the copy to publish).
    async fn sign_root(&self, root: Root, signers: &[&str]) -> Result<SignedRole<Root>> {
        let holder = KeyHolder::Root(root.clone());
        let sources: Vec<Box<dyn KeySource>> = signers
            .iter()
            .map(|r| Box::new(LocalKeySource { path: self.file(r) }) as Box<dyn KeySource>)
            .collect();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signed = SignedRole::new(root, &holder, &sources, &rng)
            .await
            .map_err(tuf("signing root.json"))?;
        let v = signed.signed().signed.version;
        // Public (kiosks are given it): readable by all, unlike the keys.
        for p in [self.dir.join(format!("{v}.root.json")), self.root_json()] {
            write_atomic(&p, signed.buffer())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .map_err(io(&p))?;
            }
        }
        Ok(signed)
    }

    /// Root rotation: a new version (one more) with the timestamp key replaced,
    /// signed with the root keys named in `signers` (two of `root-1`, `root-2`,
    /// `root-3` meet the threshold of the old root and the new one). The next
    /// publish uploads it; kiosks step to it from the root they trust.
    pub async fn rotate_timestamp_key(&self, signers: &[&str]) -> Result<u64> {
        let root = self.root()?;
        let mut next = root.signed.clone();
        next.version = next
            .version
            .checked_add(1)
            .ok_or_else(|| keys_err(&self.dir, "root version overflow"))?;
        next.expires = days_from_now(ROOT_DAYS)?;
        let old = self.file("timestamp");
        let retired = self
            .dir
            .join(format!("timestamp.retired-{}.pk8", root.signed.version));
        std::fs::rename(&old, &retired).map_err(io(&old))?;
        let pkcs8 = generate()?;
        write_secret(&old, &pkcs8)?;
        let key = tuf_key(&pkcs8, &old)?;
        let id = key_id(&key)?;
        let ts = next
            .roles
            .get_mut(&RoleType::Timestamp)
            .ok_or_else(|| keys_err(&self.dir, "root.json has no timestamp role"))?;
        for gone in std::mem::take(&mut ts.keyids) {
            next.keys.remove(&gone);
        }
        ts.keyids = vec![id.clone()];
        next.keys.insert(id, key);
        let v = next.version.get();
        self.sign_root(next, signers).await?;
        Ok(v)
    }

    /// The newest signed root.
    pub fn root(&self) -> Result<Signed<Root>> {
        let path = self.root_json();
        let b = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&b).map_err(|e| ReleaseError::BadFile {
            path,
            problem: format!("not a TUF root: {e}"),
        })
    }

    /// Signing keys for `roles` (`targets`, `snapshot`, `timestamp`, `root-N`).
    pub fn sources(&self, roles: &[&str]) -> Result<Vec<Box<dyn KeySource>>> {
        roles
            .iter()
            .map(|r| {
                let path = self.file(r);
                if !path.is_file() {
                    return Err(keys_err(
                        &self.dir,
                        format!("{} is missing", path.display()),
                    ));
                }
                Ok(Box::new(LocalKeySource { path }) as Box<dyn KeySource>)
            })
            .collect()
    }
}

pub(crate) fn days_from_now(days: i64) -> Result<jiff::Timestamp> {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(days * 24))
        .map_err(|e| ReleaseError::Other(format!("expiry: {e}")))
}
