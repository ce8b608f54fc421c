//! Optional bearer-token auth for the API routes. The token is compared in
//! constant time and never logged; health endpoints stay open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};

use crate::api_error::ApiError;
use crate::config::Secret;

/// Why a request's token was refused (the message the client gets).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{reason}")]
pub struct TokenRefused {
    pub reason: &'static str,
}

/// The expected token; `None` turns auth off.
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<Arc<Secret>>,
}

impl Auth {
    pub fn new(token: Option<Secret>) -> Self {
        Self {
            token: token.map(Arc::new),
        }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether an `Authorization` header value carries the right token.
    fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), TokenRefused> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let Some(value) = authorization else {
            return Err(TokenRefused {
                reason: "missing bearer token: send `Authorization: Bearer <token>`",
            });
        };
        let bytes = value.as_bytes();
        let scheme = b"bearer ";
        if bytes.len() < scheme.len() || !bytes[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Err(TokenRefused {
                reason: "the Authorization header is not a bearer token",
            });
        }
        let given = bytes[scheme.len()..].trim_ascii();
        if bool::from(constant_time_eq(given, expected.expose().as_bytes())) {
            Ok(())
        } else {
            Err(TokenRefused {
                reason: "invalid bearer token",
            })
        }
    }
}

/// Compares in time that depends only on the expected token's length, never
/// on where the bytes differ nor on the given token's length (`ct_eq` on
/// slices returns early when lengths differ). No digest crate is needed:
/// every byte of `expected` is compared against `given`'s byte or a 0.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> Choice {
    let mut equal = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        equal &= given.get(i).copied().unwrap_or(0).ct_eq(e);
    }
    equal
}

/// Middleware for the protected routes.
pub async fn require_token(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    match auth.check(request.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            let mut response = ApiError::from(refused).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_tokens() {
        let auth = Auth::new(Some(Secret::new("s3cret")));
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(auth.check(Some(&hv("Bearer s3cret"))).is_ok());
        assert!(auth.check(Some(&hv("bearer s3cret"))).is_ok());
        assert!(auth.check(Some(&hv("Bearer s3cre"))).is_err());
        assert!(auth.check(Some(&hv("Bearer s3cretx"))).is_err());
        assert!(auth.check(Some(&hv("Basic s3cret"))).is_err());
        assert!(auth.check(Some(&hv("Bearer "))).is_err());
        assert!(auth.check(None).is_err());
        assert!(Auth::new(None).check(None).is_ok());
    }
}
