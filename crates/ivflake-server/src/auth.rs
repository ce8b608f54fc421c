//! Optional bearer-token auth for the API routes, with two scopes. The admin
//! token may do everything; the search token may search and read (index
//! list and status, metrics), and gets 403 for what changes the server
//! (add, remove, reload, warm). Tokens are compared in constant time and
//! never logged; health endpoints and the OpenAPI document stay open.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
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

/// A valid token whose scope does not cover the route (a 403).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this token's scope does not cover {action}; it needs the {needs} token")]
pub struct ScopeRefused {
    pub action: &'static str,
    /// "admin", or "write or admin".
    pub needs: &'static str,
}

/// What a request's token allows. Handlers read it from the request's
/// extensions (e.g. to show index URIs to the admin only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Search and read.
    Search,
    /// Search, read, and write to writable indexes.
    Write,
    /// Everything; also every request when auth is off.
    Admin,
}

/// The expected tokens; with none, auth is off and every request is admin.
#[derive(Debug, Clone)]
pub struct Auth {
    admin: Option<Arc<Secret>>,
    search: Option<Arc<Secret>>,
    write: Option<Arc<Secret>>,
}

impl Auth {
    pub fn new(admin: Option<Secret>, search: Option<Secret>) -> Self {
        Self {
            admin: admin.map(Arc::new),
            search: search.map(Arc::new),
            write: None,
        }
    }

    /// With a write token too.
    pub fn with_write(mut self, write: Option<Secret>) -> Self {
        self.write = write.map(Arc::new);
        self
    }

    pub fn enabled(&self) -> bool {
        self.admin.is_some() || self.search.is_some() || self.write.is_some()
    }

    /// The scope an `Authorization` header value carries. Both tokens are
    /// compared, whichever matches, so the time taken says nothing of which.
    fn check(&self, authorization: Option<&HeaderValue>) -> Result<Scope, TokenRefused> {
        if !self.enabled() {
            return Ok(Scope::Admin);
        }
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
        let matches = |token: &Option<Arc<Secret>>| match token {
            Some(expected) => constant_time_eq(given, expected.expose().as_bytes()),
            None => Choice::from(0),
        };
        let (admin, search, write) = (matches(&self.admin), matches(&self.search), matches(&self.write));
        if bool::from(admin) {
            Ok(Scope::Admin)
        } else if bool::from(write) {
            Ok(Scope::Write)
        } else if bool::from(search) {
            Ok(Scope::Search)
        } else {
            Err(TokenRefused {
                reason: "invalid bearer token",
            })
        }
    }
}

/// The scope a route needs, with its action's name for a refusal. Matched
/// on the route's pattern, after axum has routed (so on the normalised
/// path, never on the raw one).
fn needed(method: &Method, route: &str) -> (Scope, &'static str) {
    match (method.as_str(), route) {
        ("GET" | "HEAD", "/v1/indexes" | "/v1/indexes/{name}" | "/metrics") => (Scope::Search, "reading"),
        ("POST", "/v1/indexes/{name}/search" | "/v1/indexes/{name}/get" | "/v1/indexes/{name}/query") => {
            (Scope::Search, "searching")
        }
        ("POST", "/v1/indexes/{name}/upsert" | "/v1/indexes/{name}/delete") => (Scope::Write, "writing to an index"),
        ("POST", "/v1/indexes/{name}/compact" | "/v1/vector-buckets/{bucket}/indexes/{index}/compact") => {
            (Scope::Write, "compacting an index")
        }
        ("POST", "/v1/indexes") => (Scope::Admin, "adding an index"),
        ("DELETE", _) => (Scope::Admin, "removing an index"),
        ("POST", "/v1/indexes/{name}/reload") => (Scope::Admin, "reloading an index"),
        ("POST", "/v1/indexes/{name}/warm") => (Scope::Admin, "warming an index"),
        _ => (Scope::Admin, "this request"),
    }
}

impl Scope {
    /// Whether this scope covers what `needed` asks for.
    fn covers(self, needed: Scope) -> bool {
        match needed {
            Scope::Search => true,
            Scope::Write => matches!(self, Scope::Write | Scope::Admin),
            Scope::Admin => self == Scope::Admin,
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

/// Middleware for the protected routes: 401 without a valid token, 403
/// for a search token on an admin route; the scope goes into the request's
/// extensions.
pub async fn require_token(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    match auth.check(request.headers().get(header::AUTHORIZATION)) {
        Ok(scope) => {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("", MatchedPath::as_str);
            let (needs, action) = needed(request.method(), route);
            if !scope.covers(needs) {
                let needs = if needs == Scope::Write {
                    "write or admin"
                } else {
                    "admin"
                };
                return ApiError::from(ScopeRefused { action, needs }).into_response();
            }
            request.extensions_mut().insert(scope);
            next.run(request).await
        }
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
        let auth = Auth::new(Some(Secret::new("s3cret")), Some(Secret::new("reader")));
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(auth.check(Some(&hv("Bearer s3cret"))).unwrap(), Scope::Admin);
        assert_eq!(auth.check(Some(&hv("bearer s3cret"))).unwrap(), Scope::Admin);
        assert_eq!(auth.check(Some(&hv("Bearer reader"))).unwrap(), Scope::Search);
        assert!(auth.check(Some(&hv("Bearer s3cre"))).is_err());
        assert!(auth.check(Some(&hv("Bearer s3cretx"))).is_err());
        assert!(auth.check(Some(&hv("Basic s3cret"))).is_err());
        assert!(auth.check(Some(&hv("Bearer "))).is_err());
        assert!(auth.check(None).is_err());
        assert_eq!(Auth::new(None, None).check(None).unwrap(), Scope::Admin);
        // A search token alone: nobody is admin.
        let search_only = Auth::new(None, Some(Secret::new("reader")));
        assert_eq!(search_only.check(Some(&hv("Bearer reader"))).unwrap(), Scope::Search);
        assert!(search_only.check(None).is_err());
        let with_write = auth.with_write(Some(Secret::new("writer")));
        assert_eq!(with_write.check(Some(&hv("Bearer writer"))).unwrap(), Scope::Write);
        assert_eq!(with_write.check(Some(&hv("Bearer reader"))).unwrap(), Scope::Search);
    }

    #[test]
    fn scopes_of_routes() {
        for (method, route, scope) in [
            (Method::POST, "/v1/indexes", Scope::Admin),
            (Method::DELETE, "/v1/indexes/{name}", Scope::Admin),
            (Method::POST, "/v1/indexes/{name}/reload", Scope::Admin),
            (Method::POST, "/v1/indexes/{name}/warm", Scope::Admin),
            (Method::PUT, "/v1/indexes/{name}", Scope::Admin),
            (Method::POST, "/v1/indexes/{name}/upsert", Scope::Write),
            (Method::POST, "/v1/indexes/{name}/delete", Scope::Write),
            (Method::POST, "/v1/indexes/{name}/compact", Scope::Write),
            (Method::GET, "/v1/indexes", Scope::Search),
            (Method::GET, "/v1/indexes/{name}", Scope::Search),
            (Method::POST, "/v1/indexes/{name}/search", Scope::Search),
            (Method::POST, "/v1/indexes/{name}/get", Scope::Search),
            (Method::GET, "/metrics", Scope::Search),
        ] {
            assert_eq!(needed(&method, route).0, scope, "{method} {route}");
        }
        assert!(Scope::Write.covers(Scope::Search) && !Scope::Write.covers(Scope::Admin));
        assert!(!Scope::Search.covers(Scope::Write) && Scope::Admin.covers(Scope::Write));
    }
}
