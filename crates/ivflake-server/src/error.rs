//! The one error type of the HTTP API: a status, a stable code, the request
//! field at fault (for 400s) and a message, rendered as a JSON body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API error; see [`ErrorBody`] for how it is rendered.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_argument`, `not_found`, `overloaded`.
    pub code: String,
    /// The request field that was wrong, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// Overloaded or briefly unable to answer: 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Names the request field at fault, keeping the status and code.
    pub fn with_field(self, field: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..self
        }
    }

    /// An error opening an index a client named (`POST /v1/indexes`): a
    /// missing or unreadable object is the client's URI at fault, so a 4xx,
    /// where the same error during a search of a served index is a 502.
    pub fn opening(e: ivflake::Error) -> Self {
        use ivflake::Error as E;
        let message = e.to_string();
        match e {
            E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "index_object_missing", message),
            E::Checksum { .. } | E::Corrupt { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "index_corrupt", message)
            }
            other => other.into(),
        }
    }
}

impl From<ivflake::Error> for ApiError {
    fn from(e: ivflake::Error) -> Self {
        use ivflake::Error as E;
        let message = e.to_string();
        match e {
            // The library calls the batch `queries`; the API calls it `vectors`.
            E::InvalidArgument { field, reason } => {
                ApiError::invalid(if field == "queries" { "vectors" } else { field }, reason)
            }
            E::InvalidFilter { path, reason } => ApiError::invalid(path, reason),
            E::Attributes { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "attributes_unavailable", message),
            E::InvalidUri { .. } => ApiError::new(StatusCode::BAD_REQUEST, "invalid_uri", message),
            E::Unsupported { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_index", message),
            E::DeadlineExceeded { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", message),
            E::IndexChanged { .. } => ApiError::unavailable("index_changed", message),
            // Transient store trouble: worth retrying soon.
            E::Store { .. }
            | E::ShortRead { .. }
            | E::GetTimedOut { .. }
            | E::TruncatedGet { .. }
            | E::BrokenStream { .. } => ApiError::unavailable("store_unavailable", message),
            E::NotFound { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "index_object_missing", message),
            E::Checksum { .. } | E::Corrupt { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "index_corrupt", message),
            _ => ApiError::internal(message),
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
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
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

    /// Every transient store failure is a 503 with `Retry-After`, never a 500.
    #[test]
    fn transient_store_failures_are_unavailable() {
        let uri = || "s3://b/i.faiss".to_string();
        for e in [
            ivflake::Error::GetTimedOut {
                uri: uri(),
                range: 0..8,
                timeout: std::time::Duration::from_secs(1),
                attempts: 2,
            },
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
            assert_eq!((api.code, api.retry_after), ("store_unavailable", Some(1)));
        }
    }
}
