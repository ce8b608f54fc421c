//! Turns an index URI into an object store and a path inside it.
//!
//! Cloud stores take credentials and endpoints from the environment
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), as object_store's `from_env` builders read them.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as S3Key};
use object_store::azure::{AzureConfigKey as AzureKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as GcsKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};
use url::Url;

use crate::config::FetchConfig;
use crate::error::{Error, Result};

/// Where an index lives: a store, a path in it, and the URI users gave.
#[derive(Debug, Clone)]
pub struct IndexLocation {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub uri: String,
}

impl IndexLocation {
    /// An index at `path` in a store the caller built (tests, wrappers).
    pub fn new(store: Arc<dyn ObjectStore>, path: impl Into<Path>, uri: impl Into<String>) -> Self {
        Self {
            store,
            path: path.into(),
            uri: uri.into(),
        }
    }

    /// Parses `s3://bucket/key`, `gs://…`, `az://…`, `file:///abs`, `memory://…`
    /// or a plain filesystem path. Every `memory://` URI gets a fresh, empty store.
    pub fn parse(uri: &str, fetch: &FetchConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUri {
            uri: uri.to_string(),
            reason,
        };
        if !uri.contains("://") {
            return Self::local_path(uri, uri);
        }
        let url = Url::parse(uri).map_err(|e| invalid(e.to_string()))?;
        let key = || -> Result<Path> {
            let p = url.path().trim_start_matches('/');
            if p.is_empty() {
                return Err(invalid("no object key after the bucket".into()));
            }
            Path::parse(p).map_err(|e| invalid(e.to_string()))
        };
        let bucket = || -> Result<String> {
            url.host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .ok_or_else(|| invalid("no bucket".into()))
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid("not an absolute file path".into()))?;
                return Self::local_path(&path.to_string_lossy(), uri);
            }
            "memory" => Arc::new(InMemory::new()),
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket()?)
                    .with_retry(fetch.retry.clone())
                    .with_config(S3Key::Client(ClientConfigKey::Timeout), secs(fetch.request_timeout))
                    .with_config(
                        S3Key::Client(ClientConfigKey::ConnectTimeout),
                        secs(fetch.connect_timeout),
                    )
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket()?)
                    .with_retry(fetch.retry.clone())
                    .with_config(GcsKey::Client(ClientConfigKey::Timeout), secs(fetch.request_timeout))
                    .with_config(
                        GcsKey::Client(ClientConfigKey::ConnectTimeout),
                        secs(fetch.connect_timeout),
                    )
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket()?)
                    .with_retry(fetch.retry.clone())
                    .with_config(AzureKey::Client(ClientConfigKey::Timeout), secs(fetch.request_timeout))
                    .with_config(
                        AzureKey::Client(ClientConfigKey::ConnectTimeout),
                        secs(fetch.connect_timeout),
                    )
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            other => return Err(invalid(format!("unsupported scheme {other:?}"))),
        };
        Ok(Self {
            store,
            path: key()?,
            uri: uri.to_string(),
        })
    }

    /// The object called `recorded`'s last part in this object's directory:
    /// where a Faiss on-disk index's data file is looked for, as Faiss's
    /// `IO_FLAG_ONDISK_SAME_DIR` looks for it. A name that is not one plain
    /// path segment (empty, `..`, control characters) is the file's fault.
    pub fn sibling(&self, recorded: &str) -> Result<Self> {
        let name = recorded.rsplit(['/', '\\']).next().unwrap_or("");
        let refused = || Error::Corrupt {
            uri: self.uri.clone(),
            reason: format!("its on-disk lists' data file {recorded:?} names no usable file"),
        };
        if name.is_empty() || name == "." || name == ".." || name.chars().any(char::is_control) {
            return Err(refused());
        }
        let key = match self.path.as_ref().rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        let path = Path::parse(&key).map_err(|_| refused())?;
        let uri = match self.uri.rfind('/') {
            Some(i) => format!("{}{name}", &self.uri[..=i]),
            None => name.to_string(),
        };
        Ok(Self {
            store: self.store.clone(),
            path,
            uri,
        })
    }

    /// A prefix (a "directory") rather than one object: `s3://bucket/a/b/`,
    /// or a local directory, which must exist (`create_dir_all` it first
    /// to make one). Objects under it are [`IndexLocation::child`]ren.
    pub fn parse_prefix(uri: &str, fetch: &FetchConfig) -> Result<Self> {
        let trimmed = uri.trim_end_matches('/');
        if let Some(dir) = Self::local_dir(uri) {
            require_dir(&dir, uri)?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| Error::InvalidUri {
                uri: uri.to_string(),
                reason: e.to_string(),
            })?;
            return Ok(Self {
                store: Arc::new(store),
                path: Path::default(),
                uri: trimmed.to_string(),
            });
        }
        // The prefix is the key of a name under it, less that name.
        let under = Self::parse(&format!("{trimmed}/_"), fetch)?;
        let parts: Vec<_> = under.path.parts().collect();
        Ok(Self {
            store: under.store,
            path: Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned()),
            uri: trimmed.to_string(),
        })
    }

    /// The object `name` (slash-separated parts) under this prefix.
    pub fn child(&self, name: &str) -> Result<Self> {
        let mut path = self.path.clone();
        for part in name.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(Error::InvalidUri {
                    uri: format!("{}/{name}", self.uri),
                    reason: "an empty, . or .. part".into(),
                });
            }
            path = path.clone().join(part);
        }
        Ok(Self {
            store: self.store.clone(),
            path,
            uri: format!("{}/{name}", self.uri),
        })
    }

    /// The local directory a prefix URI names, when it names one.
    pub fn local_dir(uri: &str) -> Option<std::path::PathBuf> {
        let trimmed = uri.trim_end_matches('/');
        if !uri.contains("://") {
            Some(std::path::PathBuf::from(trimmed))
        } else {
            trimmed.strip_prefix("file://").map(std::path::PathBuf::from)
        }
    }

    fn local_path(fs_path: &str, uri: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUri {
            uri: uri.to_string(),
            reason,
        };
        let path = std::path::Path::new(fs_path);
        let file_name = path
            .file_name()
            .ok_or_else(|| invalid("no file name".into()))?
            .to_string_lossy()
            .to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        require_dir(&dir, uri)?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| invalid(e.to_string()))?;
        let key = Path::parse(&file_name).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            path: key,
            uri: uri.to_string(),
        })
    }
}

/// `NotFound` naming `dir` when there is no such local directory.
fn require_dir(dir: &std::path::Path, uri: &str) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::NotFound {
        uri: uri.to_string(),
        source: Arc::new(object_store::Error::NotFound {
            path: dir.display().to_string(),
            source: "directory does not exist".into(),
        }),
    })
}

/// Timeouts go in as config keys, not a whole `ClientOptions`, so settings the
/// builders read from the environment (such as `AWS_ALLOW_HTTP`) survive.
fn secs(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis())
}
