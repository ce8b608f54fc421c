//! The Amazon S3 Vectors API (`ivflake serve --vector-root`), on the same
//! listener as the native API: boto3's `s3vectors` client, and what is
//! built on it, works unmodified. Each operation is `POST /<Operation>`
//! with a JSON body (tagging: `/tags/{arn}`), answered as the service
//! definition (`botocore/data/s3vectors/2025-07-15`) says.
//!
//! - `catalog`: buckets and indexes as prefixes of the root; opened indexes.
//! - `admin`: the bucket, index, policy, mode and tagging operations.
//! - `data`: PutVectors, GetVectors, DeleteVectors, ListVectors, QueryVectors.
//! - `metadata`: keys as ids and metadata as attribute columns.
//! - `filter`: S3 Vectors' filters over those columns.
//! - `token`: signed, expiring pagination tokens.
//! - `sigv4`: verifying request signatures against the configured keys.
//! - `wire`, `error`: the request, response and error shapes.
//!
//! Requests pass the same body limits and admission as the native API;
//! their errors are rendered as S3 Vectors exceptions.

mod admin;
mod catalog;
mod data;
mod error;
mod filter;
mod metadata;
mod sigv4;
mod text;
mod token;
mod wire;

pub use data::compact_if_due;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

pub use catalog::Catalog;
pub use error::{Kind, S3vError, S3vResult};

use crate::api_error::ApiError;
use crate::auth::Scope;
use crate::config::vectors::VectorsConfig;
use crate::routes::AppState;

/// Bodies above this are parsed on the blocking pool.
const INLINE_PARSE_BYTES: usize = 256 << 10;

/// The S3 Vectors API's own state.
#[derive(Debug)]
pub struct VectorApi {
    pub catalog: Catalog,
    pub config: VectorsConfig,
    /// `None`: auth is off (`--no-auth`).
    verifier: Option<sigv4::Verifier>,
    scopes: HashMap<String, Scope>,
    tokens: token::TokenKey,
}

impl VectorApi {
    /// [`VectorApi::open`], shared, its failure a [`crate::error::ServerError`] naming the root.
    pub async fn open_shared(
        config: &VectorsConfig,
        location: Option<ivflake::IndexLocation>,
        options: ivflake::MutableOptions,
    ) -> Result<Option<Arc<Self>>, crate::error::ServerError> {
        Ok(Self::open(config, location, options)
            .await
            .map_err(|source| crate::error::ServerError::VectorRoot {
                uri: config.root.clone().unwrap_or_default(),
                source,
            })?
            .map(Arc::new))
    }

    /// Opens the root named in `config`, or `location` when given
    /// (refused when its store ignores conditional creates).
    pub async fn open(
        config: &VectorsConfig,
        location: Option<ivflake::IndexLocation>,
        options: ivflake::MutableOptions,
    ) -> Result<Option<Self>, ivflake::Error> {
        let location = match (location, &config.root) {
            (Some(location), _) => location,
            (None, None) => return Ok(None),
            (None, Some(root)) => {
                if let Some(dir) = ivflake::IndexLocation::local_dir(root) {
                    std::fs::create_dir_all(&dir).map_err(|e| ivflake::Error::InvalidUri {
                        uri: root.clone(),
                        reason: format!("cannot create the directory: {e}"),
                    })?;
                }
                ivflake::IndexLocation::parse_prefix(root, options.open.scheduler.config())?
            }
        };
        let catalog = Catalog::open(
            location,
            &config.region,
            &config.account,
            options,
            config.max_open_indexes,
        )
        .await?;
        let verifier = config.auth.then(|| {
            let keys = config
                .access_keys
                .iter()
                .filter_map(|k| {
                    k.secret.as_ref().map(|s| sigv4::AccessKey {
                        id: k.id.clone(),
                        secret: s.expose().to_string(),
                    })
                })
                .collect();
            sigv4::Verifier::new(
                keys,
                &config.region,
                "s3vectors",
                Duration::from_secs(config.clock_skew_s),
            )
        });
        let scopes = config
            .access_keys
            .iter()
            .map(|k| {
                let scope = match k.scope.as_str() {
                    "search" => Scope::Search,
                    "write" => Scope::Write,
                    _ => Scope::Admin,
                };
                (k.id.clone(), scope)
            })
            .collect();
        let ttl = Duration::from_secs(config.token_ttl_s);
        let tokens = match std::env::var(&config.token_key_env) {
            Ok(key) if !config.token_key_env.is_empty() && !key.trim().is_empty() => {
                token::TokenKey::new(key.trim().as_bytes().to_vec(), ttl)
            }
            _ => token::TokenKey::random(ttl),
        };
        Ok(Some(Self {
            catalog,
            config: config.clone(),
            verifier,
            scopes,
            tokens,
        }))
    }

    /// Compacts every open index whose log holds more unindexed vectors
    /// than `compact_unindexed_entries`, every `period`, until the API is dropped.
    pub fn compact_in_background(api: &Arc<Self>, period: Duration) {
        let weak = Arc::downgrade(api);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(api) = weak.upgrade() else { return };
                if api.config.compact_unindexed_entries == 0 {
                    return;
                }
                for open in api.catalog.opened() {
                    if let Err(e) = data::compact_if_due(&api, &open).await {
                        tracing::warn!(index = %open.record.name, bucket = %open.record.bucket, error = %e,
                            "background compaction failed");
                    }
                }
            }
        });
    }
}

/// The scope each operation needs.
fn needed(operation: &str) -> Scope {
    match operation {
        "QueryVectors"
        | "GetVectors"
        | "ListVectors"
        | "GetIndex"
        | "ListIndexes"
        | "GetVectorBucket"
        | "ListVectorBuckets"
        | "GetVectorBucketPolicy"
        | "ListTagsForResource" => Scope::Search,
        "PutVectors" | "DeleteVectors" => Scope::Write,
        _ => Scope::Admin,
    }
}

/// The routes, added to the native API's router when a root is set.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/CreateVectorBucket", post(admin::create_vector_bucket))
        .route("/GetVectorBucket", post(admin::get_vector_bucket))
        .route("/ListVectorBuckets", post(admin::list_vector_buckets))
        .route("/DeleteVectorBucket", post(admin::delete_vector_bucket))
        .route("/PutVectorBucketPolicy", post(admin::put_vector_bucket_policy))
        .route("/GetVectorBucketPolicy", post(admin::get_vector_bucket_policy))
        .route("/DeleteVectorBucketPolicy", post(admin::delete_vector_bucket_policy))
        .route("/PutVectorBucketDefaultIndexMode", post(admin::put_default_index_mode))
        .route("/CreateIndex", post(admin::create_index))
        .route("/GetIndex", post(admin::get_index))
        .route("/ListIndexes", post(admin::list_indexes))
        .route("/DeleteIndex", post(admin::delete_index))
        .route("/UpdateIndexMode", post(admin::update_index_mode))
        .route(
            "/UpdateMetadataConfiguration",
            post(text::update_metadata_configuration),
        )
        .route(
            "/tags/{*arn}",
            get(admin::list_tags)
                .post(admin::tag_resource)
                .delete(admin::untag_resource),
        )
        .route("/PutVectors", post(data::put_vectors))
        .route("/GetVectors", post(data::get_vectors))
        .route("/DeleteVectors", post(data::delete_vectors))
        .route("/ListVectors", post(data::list_vectors))
        .route("/QueryVectors", post(data::query_vectors))
        // Inner: the signature, over the body read below.
        .route_layer(from_fn_with_state(state.clone(), authenticate))
        // Outer: the body's bytes reserved and read, and a request slot.
        .route_layer(from_fn_with_state(state, admit))
}

/// The native API's body admission, its refusals as S3 Vectors errors.
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    crate::routes::admit(state, request, next, |e| S3vError::from(e).into_response()).await
}

/// The operation a route serves (`/tags/…`: by method).
fn operation(request: &Request) -> String {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    match (request.method().as_str(), route) {
        ("GET", "/tags/{*arn}") => "ListTagsForResource".into(),
        ("POST", "/tags/{*arn}") => "TagResource".into(),
        ("DELETE", "/tags/{*arn}") => "UntagResource".into(),
        (_, r) => r.trim_start_matches('/').to_string(),
    }
}

/// Verifies the request's SigV4 signature (unless auth is off) and checks
/// the key's scope covers the operation; the scope goes in the extensions.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(api) = state.vectors.clone() else {
        return S3vError::not_found("the S3 Vectors API is off (no vector root)").into_response();
    };
    let op = operation(&request);
    let (parts, body) = request.into_parts();
    // Already read in full by `admit`.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return S3vError::invalid("body", e.to_string()).into_response(),
    };
    let scope = match &api.verifier {
        None => Scope::Admin,
        Some(verifier) => match verifier.verify(&parts.method, &parts.uri, &parts.headers, &body, SystemTime::now()) {
            Ok(key) => api.scopes.get(key).copied().unwrap_or(Scope::Search),
            Err(refused) => {
                return S3vError::new(Kind::AccessDenied, refused.to_string()).into_response();
            }
        },
    };
    let covers = match needed(&op) {
        Scope::Search => true,
        Scope::Write => matches!(scope, Scope::Write | Scope::Admin),
        Scope::Admin => scope == Scope::Admin,
    };
    if !covers {
        return S3vError::new(
            Kind::AccessDenied,
            format!("this access key's scope does not allow {op}"),
        )
        .into_response();
    }
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(scope);
    next.run(request).await
}

/// The API's state, present once `authenticate` let the request through.
fn api(state: &AppState) -> S3vResult<Arc<VectorApi>> {
    state
        .vectors
        .clone()
        .ok_or_else(|| S3vError::not_found("the S3 Vectors API is off (no vector root)"))
}

/// Runs an operation's handler with the API's state; its error is the answer.
async fn run(state: AppState, f: impl AsyncFnOnce(&AppState, &VectorApi) -> S3vResult<Response>) -> Response {
    let result = match api(&state) {
        Ok(api) => f(&state, &api).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Reads a request's JSON members, naming the member at fault.
async fn parse<T: DeserializeOwned + Send + 'static>(body: Bytes) -> S3vResult<T> {
    let large = body.len() > INLINE_PARSE_BYTES;
    let run = move || {
        let text: &[u8] = if body.is_empty() { b"{}" } else { &body };
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "body".to_string() } else { path };
            S3vError::invalid(path, e.into_inner().to_string())
        })
    };
    if large {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| S3vError::internal(format!("parsing failed: {e}")))?
    } else {
        run()
    }
}

/// A 200 with a JSON body.
fn ok<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => S3vError::internal(format!("rendering the response failed: {e}")).into_response(),
    }
}

/// A limit on a member: `ValidationException` naming it.
fn check_range(member: &str, value: i64, min: i64, max: i64) -> S3vResult<()> {
    if value < min || value > max {
        return Err(S3vError::invalid(
            member,
            format!("must be between {min} and {max}, inclusive; got {value}"),
        ));
    }
    Ok(())
}

/// `POST /v1/vector-buckets/{bucket}/indexes/{index}/compact` (native
/// API, bearer token of write scope): compacts an index now, as the
/// background does past `compact_unindexed_entries`.
pub async fn compact_now(
    State(state): State<AppState>,
    axum::extract::Path((bucket, index)): axum::extract::Path<(String, String)>,
) -> Response {
    let run = async {
        let api = api(&state)?;
        catalog::check_name("bucket", &bucket)?;
        catalog::check_name("index", &index)?;
        let open = api.catalog.index(&bucket, &index).await?;
        let report = data::compact(&api, &open).await?;
        Ok::<_, S3vError>(ok(&serde_json::json!({ "compacted": report })))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The native API's refusals (body limits, admission, time-outs) as S3
/// Vectors exceptions.
impl From<ApiError> for S3vError {
    fn from(e: ApiError) -> Self {
        let kind = match e.status {
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Kind::RequestTimeout,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Kind::TooManyRequests,
            s if s.is_client_error() => Kind::Validation,
            _ => Kind::InternalServer,
        };
        let mut out = S3vError::new(kind, e.message.clone());
        if kind == Kind::Validation {
            out.fields.push(error::Field {
                path: e.field.clone().unwrap_or_else(|| "body".into()),
                message: e.message,
            });
        }
        out
    }
}
