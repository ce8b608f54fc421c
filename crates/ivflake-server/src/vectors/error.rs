//! The S3 Vectors error: one of the service's exception shapes, with its
//! status, rendered as botocore's rest-json parser reads it: the code in
//! the `x-amzn-ErrorType` header and `{"message": ..}` (plus `fieldList`
//! for a `ValidationException`) in the body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The exception shapes of the service definition this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Validation,
    AccessDenied,
    NotFound,
    RequestTimeout,
    Conflict,
    TooManyRequests,
    ServiceQuotaExceeded,
    InternalServer,
    ServiceUnavailable,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Validation => "ValidationException",
            Kind::AccessDenied => "AccessDeniedException",
            Kind::NotFound => "NotFoundException",
            Kind::RequestTimeout => "RequestTimeoutException",
            Kind::Conflict => "ConflictException",
            Kind::TooManyRequests => "TooManyRequestsException",
            Kind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Kind::InternalServer => "InternalServerException",
            Kind::ServiceUnavailable => "ServiceUnavailableException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Kind::Validation => StatusCode::BAD_REQUEST,
            Kind::AccessDenied => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::ServiceQuotaExceeded => StatusCode::PAYMENT_REQUIRED,
            Kind::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One field a `ValidationException` names.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Field {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct S3vError {
    pub kind: Kind,
    pub message: String,
    pub fields: Vec<Field>,
}

pub type S3vResult<T> = Result<T, S3vError>;

impl S3vError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// A `ValidationException` naming `path`, the request member at fault.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        Self {
            kind: Kind::Validation,
            message: format!("{path}: {message}"),
            fields: vec![Field { path, message }],
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::InternalServer, message)
    }
}

impl std::fmt::Display for S3vError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "fieldList", skip_serializing_if = "<[Field]>::is_empty")]
    field_list: &'a [Field],
}

impl IntoResponse for S3vError {
    fn into_response(self) -> Response {
        if self.kind == Kind::InternalServer {
            tracing::error!(message = %self.message, "s3 vectors request failed");
        }
        let body = serde_json::to_vec(&Body {
            message: &self.message,
            field_list: &self.fields,
        })
        .unwrap_or_default();
        let mut response = (self.kind.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.kind.code()));
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// What the library's errors mean to an S3 Vectors client, told without
/// the store's endpoint, bucket, key or the server's paths (the native
/// API's quiet messages; the full error is logged).
impl From<ivflake::Error> for S3vError {
    fn from(e: ivflake::Error) -> Self {
        use ivflake::Error as E;
        let quiet = crate::routes::errors::public_message(&e);
        match &e {
            E::InvalidArgument { field, reason } => S3vError::invalid(*field, reason.clone()),
            E::InvalidFilter { path, reason } => S3vError::invalid(path.clone(), reason.clone()),
            E::Conflict { .. } => S3vError::conflict(quiet),
            E::DeadlineExceeded { .. } => S3vError::new(Kind::RequestTimeout, quiet),
            E::Store { .. } | E::GetTimedOut { .. } | E::BrokenStream { .. } | E::IndexChanged { .. } => {
                S3vError::new(Kind::ServiceUnavailable, quiet)
            }
            _ => S3vError::internal(quiet),
        }
    }
}
