//! Signed releases and fleet sync.
//!
//! Staff sign releases with TUF (The Update Framework, through `tough`): a root
//! whose keys 2 of 3 must sign, and targets, snapshot and timestamp roles with their
//! own keys ([`keys`]). A release is a set of TUF targets (model blobs and
//! manifests, the catalog, and `release.json` describing them) uploaded to S3-
//! compatible storage or a directory ([`remote`], [`publish`]). Kiosks verify with
//! TUF's client workflow, download what they lack, stage, health-check and switch
//! ([`sync`]).

pub mod delta;
pub mod error;
pub mod keys;
pub mod publish;
pub mod remote;
pub mod rollout;
pub mod sync;

pub use error::{ReleaseError, Result};
pub use keys::Keys;
pub use publish::{HealthQuestion, Plan, Published, ReleaseManifest};
pub use remote::Remote;
pub use sync::{Active, HealthCheck, KioskReport, Paths, Staged, SyncState};
