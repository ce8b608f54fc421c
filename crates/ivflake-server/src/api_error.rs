//! The one error type of the HTTP API: a status, an [`ErrorCode`], the
//! request field at fault (for 400s) and a message, rendered as a JSON body.
//! Which error gets which status and code is decided in `routes`, never here
//! nor in the domain modules.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An API error; see [`ErrorBody`] for how it is rendered.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub field: Option<String>,
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

/// The stable, machine-readable `error.code` of every error response.
/// Clients branch on these strings, so a variant's spelling never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A request value is wrong; `error.field` names it.
    InvalidArgument,
    /// No such index, or no such route.
    NotFound,
    /// The index name is taken.
    AlreadyExists,
    /// The server serves `limits.max_indexes` already.
    TooManyIndexes,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The token's scope does not cover the request (a search token on an
    /// admin route).
    Forbidden,
    /// The URI is not under an allowed prefix.
    UriNotAllowed,
    /// The URI cannot be read as a store location.
    InvalidUri,
    /// Neither JSON nor `application/octet-stream`.
    UnsupportedMediaType,
    /// The body could not be read.
    BadBody,
    /// The body is over `limits.max_body_bytes`.
    BodyTooLarge,
    /// The body stalled or arrived too slowly.
    BodyTimeout,
    /// The index object is not in the store.
    IndexObjectMissing,
    /// The index object fails its checks.
    IndexCorrupt,
    /// The index's config requires a checksum sidecar and there is none.
    ChecksumSidecarMissing,
    /// The index type cannot be searched.
    UnsupportedIndex,
    /// The index has no attributes, or not the ones asked for.
    AttributesUnavailable,
    /// The index object changed during the search.
    IndexChanged,
    /// The store failed in a way worth retrying.
    StoreUnavailable,
    /// A limit on work in flight is reached.
    Overloaded,
    /// The search's deadline passed.
    DeadlineExceeded,
    /// The request ran past `request_timeout_ms`.
    RequestTimeout,
    /// A fault in the server.
    Internal,
    /// A write to an index served read-only.
    NotWritable,
    /// Another writer committed first where only one may.
    Conflict,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 25] = [
        Self::InvalidArgument,
        Self::NotFound,
        Self::AlreadyExists,
        Self::TooManyIndexes,
        Self::Unauthorized,
        Self::Forbidden,
        Self::UriNotAllowed,
        Self::InvalidUri,
        Self::UnsupportedMediaType,
        Self::BadBody,
        Self::BodyTooLarge,
        Self::BodyTimeout,
        Self::IndexObjectMissing,
        Self::IndexCorrupt,
        Self::ChecksumSidecarMissing,
        Self::UnsupportedIndex,
        Self::AttributesUnavailable,
        Self::IndexChanged,
        Self::StoreUnavailable,
        Self::Overloaded,
        Self::DeadlineExceeded,
        Self::RequestTimeout,
        Self::Internal,
        Self::NotWritable,
        Self::Conflict,
    ];

    /// The code as it appears on the wire (the serde spelling; a test keeps the two equal).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::TooManyIndexes => "too_many_indexes",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::UriNotAllowed => "uri_not_allowed",
            Self::InvalidUri => "invalid_uri",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BadBody => "bad_body",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::IndexObjectMissing => "index_object_missing",
            Self::IndexCorrupt => "index_corrupt",
            Self::ChecksumSidecarMissing => "checksum_sidecar_missing",
            Self::UnsupportedIndex => "unsupported_index",
            Self::AttributesUnavailable => "attributes_unavailable",
            Self::IndexChanged => "index_changed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Overloaded => "overloaded",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::RequestTimeout => "request_timeout",
            Self::Internal => "internal",
            Self::NotWritable => "not_writable",
            Self::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a test can compare a code with the string a client sees.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_argument`, `not_found`, `overloaded`.
    pub code: ErrorCode,
    /// The request field that was wrong, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 400 naming the request field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("invalid {field}: {}", message.into());
        Self {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
    }

    /// Overloaded or briefly unable to answer: 503 with `Retry-After`.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message)
    }

    /// Names the request field at fault, keeping the status and code.
    pub fn with_field(self, field: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..self
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code.as_str();
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = self.status.as_u16(), code, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                field: self.field,
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code serializes to the string the API has always sent, and
    /// `as_str` (used in logs) agrees with serde.
    #[test]
    fn codes_keep_their_wire_spelling() {
        let wire = [
            "invalid_argument",
            "not_found",
            "already_exists",
            "too_many_indexes",
            "unauthorized",
            "forbidden",
            "uri_not_allowed",
            "invalid_uri",
            "unsupported_media_type",
            "bad_body",
            "body_too_large",
            "body_timeout",
            "index_object_missing",
            "index_corrupt",
            "checksum_sidecar_missing",
            "unsupported_index",
            "attributes_unavailable",
            "index_changed",
            "store_unavailable",
            "overloaded",
            "deadline_exceeded",
            "request_timeout",
            "internal",
            "not_writable",
            "conflict",
        ];
        assert_eq!(ErrorCode::ALL.len(), wire.len());
        for (code, expected) in ErrorCode::ALL.into_iter().zip(wire) {
            assert_eq!(serde_json::to_value(code).unwrap(), expected);
            assert_eq!(code.as_str(), expected);
            assert_eq!(serde_json::from_value::<ErrorCode>(expected.into()).unwrap(), code);
        }
    }
}
