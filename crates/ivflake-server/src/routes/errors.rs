//! What each error means over HTTP: the one place that chooses a response's
//! status and code for the library's, the registry's and the middleware's
//! errors, and what a client is told of each.

use axum::http::StatusCode;

use crate::admission::Overloaded;
use crate::api_error::{ApiError, ErrorCode};
use crate::auth::{ScopeRefused, TokenRefused};
use crate::names::UriRefused;
use crate::parse::RequestError;
use crate::registry::RegistryError;

// What each error means over HTTP. Every status and code a response can
// carry is chosen here or in the handlers above, nowhere else.

/// Errors of served indexes (searches, warms, reloads). The store's object
/// gone or corrupt is the server's upstream at fault: a 502.
impl From<ivflake::Error> for ApiError {
    fn from(e: ivflake::Error) -> Self {
        use ivflake::Error as E;
        let message = public_message(&e);
        match e {
            // The library calls the batch `queries`; the API calls it `vectors`.
            E::InvalidArgument { field, reason } => {
                ApiError::invalid(if field == "queries" { "vectors" } else { field }, reason)
            }
            E::InvalidFilter { path, reason } => ApiError::invalid(path, reason),
            E::Attributes { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::AttributesUnavailable,
                message,
            ),
            E::InvalidUri { .. } => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidUri, message),
            E::Unsupported { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::UnsupportedIndex, message)
            }
            E::DeadlineExceeded { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::DeadlineExceeded, message)
            }
            E::IndexChanged { .. } => ApiError::unavailable(ErrorCode::IndexChanged, message),
            E::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message),
            // Transient store trouble: worth retrying soon.
            E::Store { .. }
            | E::ShortRead { .. }
            | E::GetTimedOut { .. }
            | E::TruncatedGet { .. }
            | E::BrokenStream { .. } => ApiError::unavailable(ErrorCode::StoreUnavailable, message),
            E::NotFound { .. } => ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::IndexObjectMissing, message),
            E::Checksum { .. } | E::Corrupt { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::IndexCorrupt, message)
            }
            E::SidecarMissing { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::ChecksumSidecarMissing, message)
            }
            _ => ApiError::internal(message),
        }
    }
}

/// What a client is told of a library error: what went wrong, without the
/// store's endpoint, bucket or key, the server's paths or the store
/// library's own words. Those go to the log, under the request's id.
pub(crate) fn public_message(e: &ivflake::Error) -> String {
    use ivflake::Error as E;
    let quiet = match e {
        E::InvalidUri { reason, .. } => format!("invalid index URI: {reason}"),
        E::NotFound { .. } => "the index object is not in the store".into(),
        E::Store { .. } => "the object store failed to serve the index".into(),
        E::GetTimedOut { timeout, attempts, .. } => {
            format!("a GET of the index timed out after {timeout:?}, {attempts} time(s)")
        }
        E::TruncatedGet { range, got, .. } => format!(
            "the store returned {got} bytes where {} were asked for",
            range.end - range.start
        ),
        E::BrokenStream { .. } => "a read from the object store broke off".into(),
        E::IndexChanged { .. } => "the index changed in the store since it was opened; retry".into(),
        E::Corrupt { reason, .. } => format!("the index file is corrupt: {reason}"),
        E::Unsupported { reason, .. } => format!("the index is not supported: {reason}"),
        E::Attributes { reason, .. } => format!("the index's attributes: {reason}"),
        E::Checksum { list, .. } => format!("checksum mismatch in list {list}: the stored bytes are corrupt"),
        E::SidecarMissing { .. } => "the index has no checksum sidecar, and its config requires one \
                                     (manifest = \"require\"): write it with `ivflake manifest`"
            .into(),
        E::Faiss(_) | E::Io(_) | E::Internal(_) => "an internal error; the server log has the details".into(),
        // The rest carry no location: the request's own values and limits.
        other => return other.to_string(),
    };
    tracing::warn!(error = %e, "request failed");
    quiet
}

/// The wire message of a failed open or reload is the library's alone, as
/// it always was; the registry's own words are for logs and the CLI.
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::NameTaken { .. } => ApiError::new(StatusCode::CONFLICT, ErrorCode::AlreadyExists, message),
            RegistryError::NotFound { .. } => ApiError::not_found(message),
            RegistryError::Full { .. } => ApiError::new(StatusCode::CONFLICT, ErrorCode::TooManyIndexes, message),
            RegistryError::OpenFailed { source, .. } => opening(source),
            RegistryError::ReloadFailed { source, .. } => source.into(),
        }
    }
}

/// An error opening an index a client named (`POST /v1/indexes`): a
/// missing or unreadable object is the client's URI at fault, so a 4xx,
/// where the same error during a search of a served index is a 502.
fn opening(e: ivflake::Error) -> ApiError {
    use ivflake::Error as E;
    let message = public_message(&e);
    match e {
        E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::IndexObjectMissing, message),
        E::Checksum { .. } | E::Corrupt { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::IndexCorrupt, message)
        }
        E::SidecarMissing { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ChecksumSidecarMissing,
            message,
        ),
        other => other.into(),
    }
}

/// Past a limit on work in flight: come back in a second.
impl From<Overloaded> for ApiError {
    fn from(e: Overloaded) -> Self {
        ApiError::unavailable(ErrorCode::Overloaded, e.to_string())
    }
}

impl From<UriRefused> for ApiError {
    fn from(e: UriRefused) -> Self {
        let message = e.to_string();
        match e {
            UriRefused::NotAllowed(_) => ApiError::new(StatusCode::FORBIDDEN, ErrorCode::UriNotAllowed, message),
            UriRefused::Missing => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::IndexObjectMissing, message),
        }
        .with_field("uri")
    }
}

impl From<ScopeRefused> for ApiError {
    fn from(e: ScopeRefused) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
    }
}

impl From<TokenRefused> for ApiError {
    fn from(e: TokenRefused) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, e.reason)
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let message = e.to_string();
        match e {
            RequestError::Invalid { field, reason } => ApiError::invalid(field, reason),
            RequestError::UnsupportedMediaType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                message,
            )
            .with_field("content-type"),
            RequestError::ParserFailed { .. } => ApiError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn uri() -> String {
        "s3://b/i.faiss".to_string()
    }

    fn missing() -> ivflake::Error {
        ivflake::Error::NotFound {
            uri: uri(),
            source: Arc::new(object_store::Error::NotFound {
                path: "i.faiss".into(),
                source: "gone".into(),
            }),
        }
    }

    fn corrupt() -> ivflake::Error {
        ivflake::Error::Corrupt {
            uri: uri(),
            reason: "bad magic".into(),
        }
    }

    fn unsupported() -> ivflake::Error {
        ivflake::Error::Unsupported {
            uri: uri(),
            reason: "IndexHNSWFlat".into(),
        }
    }

    fn timed_out() -> ivflake::Error {
        ivflake::Error::GetTimedOut {
            uri: uri(),
            range: 0..8,
            timeout: std::time::Duration::from_secs(1),
            attempts: 2,
        }
    }

    /// Every transient store failure is a 503 with `Retry-After`, never a 500.
    #[test]
    fn transient_store_failures_are_unavailable() {
        for e in [
            timed_out(),
            ivflake::Error::TruncatedGet {
                uri: uri(),
                range: 0..8,
                got: 4,
            },
            ivflake::Error::BrokenStream {
                uri: uri(),
                reason: "stalled".into(),
            },
            ivflake::Error::ShortRead {
                list: 3,
                expected: 8,
                got: 4,
            },
        ] {
            assert!(e.is_transient(), "{e}");
            let api = ApiError::from(e);
            assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE, "{}", api.message);
            assert_eq!((api.code.as_str(), api.retry_after), ("store_unavailable", Some(1)));
        }
    }

    /// Each registry error keeps the status and code it had when the
    /// registry built `ApiError`s itself; the message never names the URI.
    #[test]
    fn registry_errors_keep_their_status_and_code() {
        let open = |source: ivflake::Error| RegistryError::OpenFailed {
            name: "a".into(),
            uri: uri(),
            source,
        };
        let reload = |source: ivflake::Error| RegistryError::ReloadFailed {
            name: "a".into(),
            source,
        };
        let invalid_uri = ivflake::Error::InvalidUri {
            uri: "nope://x".into(),
            reason: "unknown scheme".into(),
        };
        let cases: Vec<(RegistryError, u16, &str, String)> = vec![
            (
                RegistryError::NameTaken { name: "a".into() },
                409,
                "already_exists",
                r#"an index named "a" is already served"#.into(),
            ),
            (
                RegistryError::NotFound { name: "a".into() },
                404,
                "not_found",
                r#"no index named "a""#.into(),
            ),
            // Opening an index a client named: its URI is at fault.
            (open(missing()), 404, "index_object_missing", public_message(&missing())),
            (open(corrupt()), 422, "index_corrupt", public_message(&corrupt())),
            (
                open(unsupported()),
                422,
                "unsupported_index",
                public_message(&unsupported()),
            ),
            (
                open(invalid_uri.clone()),
                400,
                "invalid_uri",
                public_message(&invalid_uri),
            ),
            (
                open(timed_out()),
                503,
                "store_unavailable",
                public_message(&timed_out()),
            ),
            // Reloading a served index: the store is at fault.
            (
                reload(missing()),
                502,
                "index_object_missing",
                public_message(&missing()),
            ),
            (reload(corrupt()), 502, "index_corrupt", public_message(&corrupt())),
            (
                reload(unsupported()),
                422,
                "unsupported_index",
                public_message(&unsupported()),
            ),
            (
                reload(timed_out()),
                503,
                "store_unavailable",
                public_message(&timed_out()),
            ),
        ];
        for (e, status, code, message) in cases {
            let what = format!("{e:?}");
            let api = ApiError::from(e);
            assert_eq!(api.status.as_u16(), status, "{what}");
            assert_eq!(api.code, code, "{what}");
            assert_eq!(api.message, message, "{what}");
            assert_eq!(api.retry_after.is_some(), status == 503, "{what}");
            assert!(!api.message.contains("s3://b/i.faiss"), "{what}: {}", api.message);
        }
    }

    /// The refusals of the middleware and the body parser, as they were.
    #[test]
    fn refusals_keep_their_status_and_code() {
        let overloaded = ApiError::from(Overloaded {
            capacity: 4,
            what: "requests",
        });
        assert_eq!(
            (overloaded.status.as_u16(), overloaded.code, overloaded.retry_after),
            (503, ErrorCode::Overloaded, Some(1))
        );
        assert_eq!(
            overloaded.message,
            "the server is at its limit of 4 requests in flight; retry shortly"
        );

        let refused = ApiError::from(TokenRefused {
            reason: "invalid bearer token",
        });
        assert_eq!(
            (refused.status.as_u16(), refused.code, refused.message.as_str()),
            (401, ErrorCode::Unauthorized, "invalid bearer token")
        );

        let media = ApiError::from(RequestError::UnsupportedMediaType);
        assert_eq!(
            (media.status.as_u16(), media.code),
            (415, ErrorCode::UnsupportedMediaType)
        );
        assert_eq!(media.field.as_deref(), Some("content-type"));

        let invalid = ApiError::from(RequestError::Invalid {
            field: "rows".into(),
            reason: "not a number".into(),
        });
        assert_eq!(
            (invalid.status.as_u16(), invalid.code),
            (400, ErrorCode::InvalidArgument)
        );
        assert_eq!(
            (invalid.field.as_deref(), invalid.message.as_str()),
            (Some("rows"), "invalid rows: not a number")
        );

        let parser = ApiError::from(RequestError::ParserFailed {
            reason: "panicked".into(),
        });
        assert_eq!((parser.status.as_u16(), parser.code), (500, ErrorCode::Internal));
        assert_eq!(parser.message, "parsing the request failed: panicked");
    }
}
