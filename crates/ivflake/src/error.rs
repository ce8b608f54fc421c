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

    #[error("search exceeded its deadline of {deadline:?} while {stage}")]
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

    /// True for errors a caller may retry as-is (the store, not the input).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Store { .. } | Error::DeadlineExceeded { .. } | Error::ShortRead { .. }
        )
    }
}
