use std::path::PathBuf;

/// Everything that can go wrong in the model store. Variants carry the facts a user
/// needs to act: which file, what was expected, what was found.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("model `{model}`: file `{file}` is missing from the store (expected at {path})")]
    MissingFile {
        model: String,
        file: String,
        path: PathBuf,
    },
    #[error("model `{name}` is not installed; run `aisle models fetch`")]
    NotInstalled { name: String },
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "`{name}` is not a model name: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    BadName { name: String },
    #[error("model catalog: {message}")]
    Catalog { message: String },
    #[error("{client} could not fetch {package}: {message}")]
    Registry {
        client: String,
        package: String,
        message: String,
    },
    #[error("{archive}: cannot unpack `{member}`: {message}")]
    Unpack {
        archive: PathBuf,
        member: String,
        message: String,
    },
    #[error("importer {importer} failed on {path}: {message}")]
    Import {
        importer: String,
        path: PathBuf,
        message: String,
    },
    #[error("{path}: not a valid {format} file: {message}")]
    Format {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io { path, source }
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        format: &'static str,
        message: impl Into<String>,
    ) -> ModelError {
        ModelError::Format {
            path: path.into(),
            format,
            message: message.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
