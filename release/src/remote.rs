//! Where releases live: `s3://bucket/prefix` (any S3-compatible server, configured by
//! the standard `AWS_*` environment variables) or `file:///path` (one store, one
//! machine). Both are an `object_store`; TUF's client reads them through
//! [`RemoteTransport`].
//!
//! ```text
//! <prefix>/metadata/N.root.json, N.targets.json, N.snapshot.json, timestamp.json
//! <prefix>/targets/<sha256>.<target name>     content-addressed (consistent snapshots)
//! <prefix>/fleet/<kiosk>.json                 what each kiosk reports
//! <prefix>/rollout.json                       the staged rollout (signed by targets key)
//! ```

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::error::{ReleaseError, Result};

/// The fake URL base that TUF's client is given; [`RemoteTransport`] maps it onto
/// the object store.
const BASE: &str = "aisle-remote://release/";

/// The most TUF's client reads in one object (its own limits are lower for each role).
const MAX_TUF_FETCH: u64 = 32 << 20;

#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: String,
    /// Bytes TUF's client has read through this remote (metadata, `release.json`).
    tuf_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Remote {
    /// Opens `location`: `s3://bucket[/prefix]` or `file:///path` (created if missing).
    /// S3 settings come from the standard `AWS_*` environment variables.
    pub fn open(location: &str) -> Result<Self> {
        Self::open_with(location, &[])
    }

    /// As [`Remote::open`], with S3 settings (`aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, `aws_access_key_id`, ...) over those of the environment.
    pub fn open_with(location: &str, s3_options: &[(&str, &str)]) -> Result<Self> {
        let bad = || ReleaseError::BadLocation(location.to_string());
        let url = Url::parse(location).map_err(|_| bad())?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match url.scheme() {
            "s3" => {
                let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(bad)?;
                let mut b = object_store::aws::AmazonS3Builder::from_env();
                for (k, v) in s3_options {
                    let key = k
                        .parse::<object_store::aws::AmazonS3ConfigKey>()
                        .map_err(|_| {
                            ReleaseError::BadLocation(format!("{location}: unknown S3 setting {k}"))
                        })?;
                    b = b.with_config(key, *v);
                }
                let s3 = b
                    .with_bucket_name(bucket)
                    .with_retry(object_store::RetryConfig {
                        // About 8 s of backing off in all: a store busy for
                        // a few seconds (500/503) does not fail a publish.
                        backoff: object_store::BackoffConfig {
                            init_backoff: std::time::Duration::from_millis(250),
                            max_backoff: std::time::Duration::from_secs(4),
                            base: 2.0,
                        },
                        max_retries: 5,
                        retry_timeout: std::time::Duration::from_secs(30),
                    })
                    .build()
                    .map_err(|source| ReleaseError::Store {
                        location: location.to_string(),
                        source,
                    })?;
                (Arc::new(s3), url.path().trim_matches('/').to_string())
            }
            "file" => {
                let dir = url.to_file_path().map_err(|()| bad())?;
                std::fs::create_dir_all(&dir).map_err(crate::error::io(&dir))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(
                    |source| ReleaseError::Store {
                        location: location.to_string(),
                        source,
                    },
                )?;
                (Arc::new(fs), String::new())
            }
            _ => return Err(bad()),
        };
        Ok(Remote {
            store,
            tuf_bytes: Default::default(),
            prefix,
            location: location.trim_end_matches('/').to_string(),
        })
    }

    /// A location held in memory (`memory://`): tests and fuzzing.
    pub fn in_memory() -> Self {
        Remote {
            store: Arc::new(object_store::memory::InMemory::new()),
            tuf_bytes: Default::default(),
            prefix: String::new(),
            location: "memory://".into(),
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Bytes TUF's client has read through this remote so far.
    pub fn tuf_bytes(&self) -> u64 {
        self.tuf_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, key: &str) -> impl FnOnce(object_store::Error) -> ReleaseError {
        let location = format!("{}/{key}", self.location);
        move |source| ReleaseError::Store { location, source }
    }

    /// The whole object, or None when there is none.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let r = match self.store.get(&self.path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(key)(e)),
        };
        if r.meta.size > limit {
            return Err(ReleaseError::Target {
                name: key.to_string(),
                problem: format!("{} bytes, more than the {limit} allowed", r.meta.size),
            });
        }
        let b = r.bytes().await.map_err(self.err(key))?;
        Ok(Some(b.to_vec()))
    }

    /// The size of an object, or None when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    /// Removes `key` (nothing there is not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ReleaseError::Store {
                location: self.location.clone(),
                source,
            }),
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(self.err(key))?;
        Ok(())
    }

    /// Uploads a file in parts (models are hundreds of MB).
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> Result<()> {
        let size = std::fs::metadata(file)
            .map_err(crate::error::io(file))?
            .len();
        if size <= 16 << 20 {
            let b = tokio::fs::read(file)
                .await
                .map_err(crate::error::io(file))?;
            return self.put(key, b).await;
        }
        let mut up = object_store::WriteMultipart::new(
            self.store
                .put_multipart(&self.path(key))
                .await
                .map_err(self.err(key))?,
        );
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(crate::error::io(file))?;
        let mut buf = vec![0u8; 8 << 20];
        loop {
            use tokio::io::AsyncReadExt;
            let n = f.read(&mut buf).await.map_err(crate::error::io(file))?;
            if n == 0 {
                break;
            }
            up.write(&buf[..n]);
        }
        up.finish().await.map_err(self.err(key))?;
        Ok(())
    }

    /// A byte stream of an object from `offset` on (a resumed download).
    pub async fn stream_from(
        &self,
        key: &str,
        offset: u64,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<bytes::Bytes>>> {
        let opts = object_store::GetOptions {
            range: (offset > 0).then_some(object_store::GetRange::Offset(offset)),
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&self.path(key), opts)
            .await
            .map_err(self.err(key))?;
        let location = format!("{}/{key}", self.location);
        Ok(r.into_stream()
            .map_err(move |source| ReleaseError::Store {
                location: location.clone(),
                source,
            })
            .boxed())
    }

    /// Keys under `dir` (one level, names only).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        let p = self.path(dir);
        let mut out = Vec::new();
        let mut s = self.store.list(Some(&p));
        while let Some(m) = s.next().await {
            let m = m.map_err(self.err(dir))?;
            if let Some(name) = m.location.filename() {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn transport(&self) -> RemoteTransport {
        RemoteTransport {
            remote: self.clone(),
        }
    }

    pub fn metadata_url() -> Url {
        #[allow(clippy::unwrap_used)] // a constant
        Url::parse(BASE).unwrap().join("metadata/").unwrap()
    }

    pub fn targets_url() -> Url {
        #[allow(clippy::unwrap_used)] // a constant
        Url::parse(BASE).unwrap().join("targets/").unwrap()
    }
}

/// TUF's client reads metadata and targets through this.
#[derive(Debug, Clone)]
pub struct RemoteTransport {
    remote: Remote,
}

#[tough::async_trait]
impl Transport for RemoteTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let Some(key) = url.as_str().strip_prefix(BASE) else {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        };
        let key = key.to_string();
        let r = self.remote.store.get(&self.remote.path(&key)).await;
        let r = match r {
            Ok(r) => r,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::FileNotFound,
                    format!("{}/{key}", self.remote.location),
                    e,
                ));
            }
            Err(e) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    format!("{}/{key}", self.remote.location),
                    e,
                ));
            }
        };
        // Metadata and the small targets TUF reads itself (large ones are fetched
        // by `sync`, resumably): read whole, refusing endless data before it is read.
        let at = format!("{}/{key}", self.remote.location);
        if r.meta.size > MAX_TUF_FETCH {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                at,
                std::io::Error::other(format!(
                    "{} bytes, more than the {MAX_TUF_FETCH} a metadata file may have",
                    r.meta.size
                )),
            ));
        }
        let b = r
            .bytes()
            .await
            .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, at, e))?;
        self.remote
            .tuf_bytes
            .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let s = futures_util::stream::once(std::future::ready(Ok(b)));
        Ok(Box::pin(s))
    }
}
