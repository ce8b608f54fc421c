//! The one public error type of the `ivflake` crate. It sits at the bottom of
//! the crate and knows nothing of the modules that raise it.
//!
//! Sources are shared (`Arc`), so an error cloned to every search that waited
//! on one failed load is the same error, variant and source, not a copy.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ivflake_faiss::{FaissError, FaissErrorKind};

/// Everything that can go wrong opening or searching an index. Each variant
/// says what was wrong and, where it helps, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid index URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    #[error("index object not found: {uri}")]
    NotFound {
        uri: String,
        #[source]
        source: Arc<object_store::Error>,
    },

    #[error("object store error reading {uri}: {source}{}", store_hint(.source))]
    Store {
        uri: String,
        #[source]
        source: Arc<object_store::Error>,
    },

    #[error("GET of bytes {range:?} of {uri} timed out after {timeout:?}, {attempts} time(s)")]
    GetTimedOut {
        uri: String,
        range: Range<u64>,
        timeout: Duration,
        attempts: u32,
    },

    #[error("GET of bytes {range:?} of {uri} returned {got} bytes, not {}", range.end - range.start)]
    TruncatedGet { uri: String, range: Range<u64>, got: u64 },

    #[error("reading {uri} as one stream failed: {reason}")]
    BrokenStream { uri: String, reason: String },

    #[error("index {uri} changed in the store since it was opened (ETag was {e_tag}); reload it")]
    IndexChanged { uri: String, e_tag: String },

    #[error("index file {uri} is corrupt: {reason}")]
    Corrupt { uri: String, reason: String },

    /// Another writer committed first where only one may (two compactions
    /// of one version).
    #[error("{uri}: {reason}")]
    Conflict { uri: String, reason: String },

    #[error("index {uri} is not supported: {reason}")]
    Unsupported { uri: String, reason: String },

    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    /// An attribute filter that does not fit the index's attributes; `path`
    /// is where in the filter's JSON, e.g. `filter.$and[1].price.$gt`.
    #[error("invalid filter at {path}: {reason}")]
    InvalidFilter { path: String, reason: String },

    /// The attributes object beside an index is missing, unreadable or does
    /// not describe this index's lists.
    #[error("attributes of {uri}: {reason}")]
    Attributes { uri: String, reason: String },

    #[error("store returned {got} bytes for list {list} where {expected} were expected")]
    ShortRead { list: usize, expected: u64, got: u64 },

    #[error("checksum mismatch in list {list} of {uri}: the stored bytes are corrupt")]
    Checksum { uri: String, list: usize },

    /// The open requires a checksum sidecar (`ManifestMode::Require`) and
    /// there is none: the index itself may be fine.
    #[error(
        "the index {uri} has no checksum sidecar at {sidecar}, and the open requires one: write it with \
         `ivflake manifest {uri}`, or open without requiring it"
    )]
    SidecarMissing { uri: String, sidecar: String },

    #[error("deadline of {deadline:?} exceeded while {stage}")]
    DeadlineExceeded { deadline: Duration, stage: &'static str },

    #[error("Faiss failed: {0}")]
    Faiss(#[from] FaissError),

    #[error("local cache I/O failed: {0}")]
    Io(#[source] Arc<std::io::Error>),

    #[error("internal error: {0}")]
    Internal(String),

    /// The caller stopped waiting (a deadline, a dropped request), so the
    /// search's compute work stopped too. A caller that is still waiting
    /// never sees it.
    #[error("the search was cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to fix, for the store errors a first setup meets, whose own words
/// name neither cause: no credentials (the S3 client then asks the EC2
/// instance metadata service, which refuses off EC2), and a plain-http
/// endpoint without `AWS_ALLOW_HTTP`. The store library gives no typed
/// variant for either, so its message is read.
fn store_hint(source: &object_store::Error) -> &'static str {
    // The cause is often deep in the chain (reqwest's "builder error" wraps
    // the scheme refusal).
    let mut text = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(c) = cause {
        text.push_str(&c.to_string());
        text.push('\n');
        cause = c.source();
    }
    if text.contains("169.254.169.254") {
        " (no AWS credentials were found, so the instance metadata service was asked, and it refused: set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance role applies)"
    } else if text.contains("URL scheme is not allowed") {
        " (the endpoint is plain http: set AWS_ALLOW_HTTP=true, or allow_http in the store options, to allow it)"
    } else {
        ""
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn filter(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidFilter {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn attributes(uri: &str, reason: impl Into<String>) -> Self {
        Error::Attributes {
            uri: uri.to_string(),
            reason: reason.into(),
        }
    }

    /// Maps a store error on `uri`, keeping "not found" and "changed" apart.
    pub(crate) fn from_store(uri: &str, e_tag: Option<&str>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                uri: uri.to_string(),
                source: Arc::new(source),
            },
            object_store::Error::Precondition { .. } => Error::IndexChanged {
                uri: uri.to_string(),
                e_tag: e_tag.unwrap_or("").to_string(),
            },
            source => Error::Store {
                uri: uri.to_string(),
                source: Arc::new(source),
            },
        }
    }

    /// A Faiss failure while parsing the header of `uri`: an index type this
    /// build cannot serve, or a corrupt file. Running out of memory is the
    /// process's failure, not the file's, and stays a Faiss error.
    pub(crate) fn from_header(uri: &str, e: FaissError) -> Self {
        // The binding classifies its errors; no message text is matched.
        match e.kind() {
            FaissErrorKind::Unsupported => Error::Unsupported {
                uri: uri.into(),
                reason: e.message().to_string(),
            },
            FaissErrorKind::OutOfMemory => Error::Faiss(e),
            _ => Error::Corrupt {
                uri: uri.into(),
                reason: e.message().to_string(),
            },
        }
    }

    /// True for errors a caller may retry as-is (the store, not the input).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Store { .. }
                | Error::DeadlineExceeded { .. }
                | Error::ShortRead { .. }
                | Error::GetTimedOut { .. }
                | Error::TruncatedGet { .. }
                | Error::BrokenStream { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(text: &str) -> Error {
        Error::Store {
            uri: "s3://b/k".into(),
            source: Arc::new(object_store::Error::Generic {
                store: "S3",
                source: text.to_string().into(),
            }),
        }
    }

    /// The two setup errors a newcomer meets say what to fix; others are as they were.
    #[test]
    fn setup_errors_say_what_to_fix() {
        let no_credentials = store_error(
            "Error performing PUT http://169.254.169.254/latest/api/token in 7.2ms - Server returned non-2xx status code: 403",
        );
        assert!(
            no_credentials.to_string().contains("set AWS_ACCESS_KEY_ID"),
            "{no_credentials}"
        );
        let plain_http = store_error("builder error: URL scheme is not allowed");
        assert!(plain_http.to_string().contains("AWS_ALLOW_HTTP=true"), "{plain_http}");
        let other = store_error("connection reset");
        assert_eq!(
            other.to_string(),
            "object store error reading s3://b/k: Generic S3 error: connection reset"
        );
    }
}
