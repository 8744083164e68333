//! Staged rollout, as hawkBit does it: a release goes to growing groups of kiosks
//! (picked by a stable hash of each kiosk's name: 5%, 25%, 100%, say); the next
//! group opens when enough of the open one runs it, and the whole rollout halts
//! when too many fail. A halted rollout leaves every kiosk on a working release:
//! those that took it and passed their health check keep it, the rest stay where
//! they were.
//!
//! `rollout.json` in the bucket is signed with the targets key and checked
//! against the targets role of the root the kiosk trusts, so nobody without that
//! key can open, widen or halt a rollout.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tough::schema::key::Key;
use tough::schema::{RoleType, Root, Signed};
use tough::sign::Sign;

use crate::error::{ReleaseError, Result, io};
use crate::keys::Keys;
use crate::remote::Remote;
use crate::sync::KioskReport;

pub const ROLLOUT_KEY: &str = "rollout.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// The release being rolled out; other versions are not held back.
    pub version: u64,
    /// Cumulative shares of the fleet, in percent, e.g. [5, 25, 100].
    pub groups: Vec<u8>,
    /// The group open now (an index into `groups`).
    pub stage: usize,
    /// Share of the open group that must run `version` to open the next one.
    pub success: f64,
    /// Share of the open group failing `version` that halts the rollout.
    pub max_errors: f64,
    pub halted: bool,
    /// Why it moved or halted, last.
    pub note: String,
    pub updated: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRollout {
    rollout: Rollout,
    keyid: String,
    sig: String,
}

/// Where a kiosk falls in the fleet, 0..100: a stable hash of its name.
pub fn bucket_of(kiosk: &str) -> u8 {
    let h = sha2::Sha256::digest(kiosk.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) % 100) as u8
}

impl Rollout {
    /// The share of the fleet open now.
    pub fn open_percent(&self) -> u8 {
        self.groups.get(self.stage).copied().unwrap_or(100)
    }

    /// Whether `kiosk` may take `version` now.
    pub fn admits(&self, kiosk: &str, version: u64) -> bool {
        if version != self.version {
            return true;
        }
        !self.halted && bucket_of(kiosk) < self.open_percent()
    }
}

fn other(m: impl Into<String>) -> ReleaseError {
    ReleaseError::Other(m.into())
}

/// Signs and uploads `r` with the targets key.
pub async fn put(keys: &Keys, remote: &Remote, r: &Rollout) -> Result<()> {
    let path = keys.dir.join("targets.pk8");
    let pk = std::fs::read(&path).map_err(io(&path))?;
    let pair = tough::sign::parse_keypair(&pk).map_err(|e| ReleaseError::BadFile {
        path: path.clone(),
        problem: format!("not a signing key: {e}"),
    })?;
    let msg = serde_json::to_vec(r).map_err(|e| other(format!("{e}")))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = pair
        .sign(&msg, &rng)
        .await
        .map_err(|e| other(format!("signing rollout.json: {e}")))?;
    let keyid = pair
        .tuf_key()
        .key_id()
        .map_err(|e| other(format!("key id: {e}")))?;
    let s = SignedRollout {
        rollout: r.clone(),
        keyid: hex::encode(&*keyid),
        sig: hex::encode(sig),
    };
    let b = serde_json::to_vec_pretty(&s).map_err(|e| other(format!("{e}")))?;
    remote.put(ROLLOUT_KEY, b).await
}

/// The rollout in the bucket, its signature checked against `root`'s targets
/// keys; None when there is none.
pub async fn get(remote: &Remote, root: &Signed<Root>) -> Result<Option<Rollout>> {
    let Some(b) = remote.get(ROLLOUT_KEY, 1 << 20).await? else {
        return Ok(None);
    };
    let bad = |p: String| ReleaseError::Target {
        name: ROLLOUT_KEY.into(),
        problem: p,
    };
    let s: SignedRollout =
        serde_json::from_slice(&b).map_err(|e| bad(format!("not a signed rollout: {e}")))?;
    let msg = serde_json::to_vec(&s.rollout).map_err(|e| other(format!("{e}")))?;
    let sig = hex::decode(&s.sig).map_err(|_| bad("its signature is not hex".into()))?;
    let role = root
        .signed
        .roles
        .get(&RoleType::Targets)
        .ok_or_else(|| bad("the trusted root has no targets role".into()))?;
    let ok = role.keyids.iter().any(|id| {
        hex::encode(&**id) == s.keyid
            && matches!(root.signed.keys.get(id), Some(Key::Ed25519 { keyval, .. })
                if UnparsedPublicKey::new(&ED25519, &*keyval.public).verify(&msg, &sig).is_ok())
    });
    if !ok {
        return Err(bad(
            "not signed by a targets key of the trusted root: ignored".into(),
        ));
    }
    Ok(Some(s.rollout))
}

/// Starts rolling out `version` to the first group.
pub async fn start(
    keys: &Keys,
    remote: &Remote,
    version: u64,
    groups: Vec<u8>,
    success: f64,
    max_errors: f64,
) -> Result<Rollout> {
    let sorted = groups.windows(2).all(|w| w[0] < w[1]);
    if groups.is_empty() || !sorted || groups.iter().any(|g| *g == 0 || *g > 100) {
        return Err(other(format!(
            "groups {groups:?}: rising percentages from 1 to 100, e.g. 5,25,100"
        )));
    }
    if !(0.0..=1.0).contains(&success) || !(0.0..=1.0).contains(&max_errors) {
        return Err(other("--success and --max-errors are shares from 0 to 1"));
    }
    let r = Rollout {
        version,
        groups,
        stage: 0,
        success,
        max_errors,
        halted: false,
        note: "started".into(),
        updated: jiff::Timestamp::now().to_string(),
    };
    put(keys, remote, &r).await?;
    Ok(r)
}

/// What one look at the fleet found for the open group.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub rollout: Rollout,
    /// The group looked at (its share of the fleet, percent).
    pub group_percent: u8,
    pub group_size: usize,
    pub on_version: usize,
    pub failed: usize,
}

/// Looks at the fleet's reports and opens the next group, halts, or waits.
pub fn decide(r: &Rollout, fleet: &[KioskReport]) -> StepReport {
    let mut next = r.clone();
    let group: Vec<&KioskReport> = fleet
        .iter()
        .filter(|k| bucket_of(&k.kiosk) < r.open_percent())
        .collect();
    let on = group.iter().filter(|k| k.active == Some(r.version)).count();
    let failed = group
        .iter()
        .filter(|k| {
            k.offered == Some(r.version)
                && k.active != Some(r.version)
                && matches!(
                    k.state.as_str(),
                    "health-failed" | "held-back" | "refused" | "failed" | "rolled-back"
                )
        })
        .count();
    let n = group.len().max(1) as f64;
    if !r.halted {
        if failed as f64 / n > r.max_errors {
            next.halted = true;
            next.note = format!(
                "halted: {failed} of {} kiosks in the {}% group failed release {}",
                group.len(),
                r.open_percent(),
                r.version
            );
        } else if group.is_empty() && r.stage + 1 < r.groups.len() {
            // Nobody to wait for (no kiosk has reported from this share).
            next.stage += 1;
            next.note = format!(
                "no kiosk in the {}% group: opened {}%",
                r.open_percent(),
                next.open_percent()
            );
        } else if !group.is_empty() && on as f64 / n >= r.success && r.stage + 1 < r.groups.len() {
            next.stage += 1;
            next.note = format!(
                "{on} of {} kiosks run release {}: opened {}%",
                group.len(),
                r.version,
                next.open_percent()
            );
        }
    }
    StepReport {
        rollout: next,
        group_percent: r.open_percent(),
        group_size: group.len(),
        on_version: on,
        failed,
    }
}

/// One step: the fleet read, the decision signed and uploaded when it changed.
pub async fn step(keys: &Keys, remote: &Remote) -> Result<StepReport> {
    let root = keys.root()?;
    let r = get(remote, &root)
        .await?
        .ok_or_else(|| other(format!("no rollout at {}", remote.location())))?;
    let fleet = crate::sync::fleet(remote).await?;
    let mut s = decide(&r, &fleet);
    if s.rollout != r {
        s.rollout.updated = jiff::Timestamp::now().to_string();
        put(keys, remote, &s.rollout).await?;
    }
    Ok(s)
}
