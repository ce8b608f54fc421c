//! The one public error type of the `ivflake` crate.

use std::time::Duration;

use ivflake_faiss::FaissError;

/// Everything that can go wrong opening or searching an index. Each variant
/// says what was wrong and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid index URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    #[error("index object not found: {uri}")]
    NotFound {
        uri: String,
        #[source]
        source: object_store::Error,
    },

    #[error("object store error reading {uri}: {source}")]
    Store {
        uri: String,
        #[source]
        source: object_store::Error,
    },

    #[error("index {uri} changed in the store since it was opened (ETag was {e_tag}); reload it")]
    IndexChanged { uri: String, e_tag: String },

    #[error("index file {uri} is corrupt: {reason}")]
    Corrupt { uri: String, reason: String },

    #[error("index {uri} is not supported: {reason}")]
    Unsupported { uri: String, reason: String },

    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("store returned {got} bytes for list {list} where {expected} were expected")]
    ShortRead { list: usize, expected: u64, got: u64 },

    #[error("checksum mismatch in list {list} of {uri}: the stored bytes are corrupt")]
    Checksum { uri: String, list: usize },

    #[error("deadline of {deadline:?} exceeded while {stage}")]
    DeadlineExceeded { deadline: Duration, stage: &'static str },

    #[error("Faiss failed: {0}")]
    Faiss(#[from] FaissError),

    #[error("local cache I/O failed: {0}")]
    Io(#[from] std::io::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// Maps a store error on `uri`, keeping "not found" and "changed" apart.
    pub(crate) fn from_store(uri: &str, e_tag: Option<&str>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                uri: uri.to_string(),
                source,
            },
            object_store::Error::Precondition { .. } => Error::IndexChanged {
                uri: uri.to_string(),
                e_tag: e_tag.unwrap_or("").to_string(),
            },
            source => Error::Store {
                uri: uri.to_string(),
                source,
            },
        }
    }

    /// An error shared by every search that waited on one failed load, as this
    /// search's own: same variant, the shared one kept as the source.
    pub(crate) fn from_shared(shared: std::sync::Arc<Error>) -> Self {
        let shared = match std::sync::Arc::try_unwrap(shared) {
            Ok(owned) => return owned,
            Err(shared) => shared,
        };
        match &*shared {
            Error::InvalidUri { uri, reason } => Error::InvalidUri {
                uri: uri.clone(),
                reason: reason.clone(),
            },
            Error::IndexChanged { uri, e_tag } => Error::IndexChanged {
                uri: uri.clone(),
                e_tag: e_tag.clone(),
            },
            Error::Corrupt { uri, reason } => Error::Corrupt {
                uri: uri.clone(),
                reason: reason.clone(),
            },
            Error::Unsupported { uri, reason } => Error::Unsupported {
                uri: uri.clone(),
                reason: reason.clone(),
            },
            Error::InvalidArgument { field, reason } => Error::InvalidArgument {
                field,
                reason: reason.clone(),
            },
            &Error::ShortRead { list, expected, got } => Error::ShortRead { list, expected, got },
            Error::Checksum { uri, list } => Error::Checksum {
                uri: uri.clone(),
                list: *list,
            },
            &Error::DeadlineExceeded { deadline, stage } => Error::DeadlineExceeded { deadline, stage },
            Error::Internal(msg) => Error::Internal(msg.clone()),
            Error::NotFound { uri, source } => Error::NotFound {
                uri: uri.clone(),
                source: object_store::Error::NotFound {
                    path: uri.clone(),
                    source: source.to_string().into(),
                },
            },
            Error::Store { uri, .. } => Error::Store {
                uri: uri.clone(),
                source: object_store::Error::Generic {
                    store: "ivflake",
                    source: Box::new(shared.clone()),
                },
            },
            Error::Faiss(_) | Error::Io(_) => Error::Internal(shared.to_string()),
        }
    }

    /// True for errors a caller may retry as-is (the store, not the input).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Store { .. } | Error::DeadlineExceeded { .. } | Error::ShortRead { .. }
        )
    }
}
