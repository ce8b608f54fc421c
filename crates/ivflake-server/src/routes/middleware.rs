//! The middleware every request passes: the body's bytes reserved and the
//! body read before a request slot is taken, the request time limit, and the
//! request's tracing span.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::api_error::{ApiError, ErrorCode};
use crate::config::ServerConfig;

/// Reserves the body's bytes (its `Content-Length`; the limit for a chunked
/// body; nothing when there is none), reads it (at most `max_body_bytes`,
/// within the body time-outs), then admits
/// the request; each refusal is at once (413, 503). A client still sending,
/// or stalled, holds no request slot, and bodies in flight never hold more
/// than `max_body_bytes_in_flight`.
pub(super) async fn admit_request(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    admit(state, request, next, IntoResponse::into_response).await
}

/// `admit_request`, its refusals rendered by `render` (the S3 Vectors API
/// renders its own exceptions).
pub(crate) async fn admit(
    state: AppState,
    request: Request<Body>,
    next: Next,
    render: fn(ApiError) -> Response,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return render(too_large(limit));
    }
    // HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding
    // has no body (a GET, say) and reserves nothing; a chunked one may send
    // up to the limit.
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let reserve = match declared {
        Some(n) => n as usize,
        None if chunked => limit,
        None => 0,
    };
    let _bytes = match state.body_bytes.try_admit(reserve) {
        Ok(permit) => permit,
        Err(overloaded) => return render(ApiError::from(overloaded)),
    };
    let body = match read_body(&state.config, body).await {
        Ok(body) => body,
        Err(e) => return render(e),
    };
    match state.requests.try_admit(1) {
        Ok(_admitted) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(overloaded) => render(ApiError::from(overloaded)),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTooLarge,
        format!("the request body is over the limit of {limit} bytes"),
    )
    .with_field("body")
}

/// A body in full, or 413 (over the limit), 408 (stalled or slower than
/// the floor rate; the connection is closed after) or 400.
async fn read_body(config: &ServerConfig, body: Body) -> Result<Bytes, ApiError> {
    let limit = config.limits.max_body_bytes;
    let deadline = Duration::from_millis(config.http.body_read_timeout_ms);
    let too_slow = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BodyTimeout,
            format!(
                "the request body did not arrive in time (within {} ms, with no pause over {} ms)",
                config.http.body_read_timeout_ms, config.http.body_stall_timeout_ms
            ),
        )
        .with_field("body")
    };
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| too_slow())?;
    read.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return too_large(limit);
            }
            if c.is::<tower_http::timeout::TimeoutError>() {
                return too_slow();
            }
            cause = c.source();
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadBody,
            format!("cannot read the request body: {e}"),
        )
        .with_field("body")
    })
}

/// The safety net behind every search's own deadline: a 504 with the usual
/// JSON error body once `request_timeout_ms` has passed.
pub(super) async fn time_limit(State(limit): State<Duration>, request: Request<Body>, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request ran longer than the server's limit of {} ms",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// A span per request carrying its id; headers (and so tokens) are never recorded.
pub(super) fn request_span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
}
