use std::path::PathBuf;

/// What went wrong with a release or a sync, naming the file, object or role.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}: not a release location (use s3://bucket/prefix or file:///path)")]
    BadLocation(String),
    #[error("{location}: {source}")]
    Store {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },
    #[error("signing keys in {dir}: {problem}")]
    Keys { dir: PathBuf, problem: String },
    /// TUF verification or signing refused something (the message says what).
    #[error("{what}: {source}")]
    Tuf {
        what: String,
        #[source]
        source: Box<tough::error::Error>,
    },
    #[error("target {name}: {problem}")]
    Target { name: String, problem: String },
    #[error("{0}")]
    Model(#[from] aisle_models::ModelError),
    #[error("no release has been published at {0}")]
    NothingPublished(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = ReleaseError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReleaseError {
    let path = path.into();
    move |source| ReleaseError::Io { path, source }
}

pub(crate) fn tuf(what: impl Into<String>) -> impl FnOnce(tough::error::Error) -> ReleaseError {
    let what = what.into();
    move |source| ReleaseError::Tuf {
        what,
        source: Box::new(source),
    }
}
