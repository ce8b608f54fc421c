//! HTTP routes and handlers. Handlers are async and only parse, validate and
//! await the library: Faiss work runs on the compute pool, and JSON bodies
//! and responses large enough to matter are parsed and rendered on tokio's
//! blocking pool (binary bodies are a copy, cheap enough to do inline).
//!
//! `routes` is the one place that turns errors into [`ApiError`]s: the
//! domain modules (registry, admission, auth, parse) and the library return
//! their own types, and the `From` impls of `errors` choose each status and
//! code. `middleware` holds what every request passes before a handler.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ivflake::SearchParams;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;

use crate::admission::Admission;
use crate::api::*;
use crate::api_error::{ApiError, ErrorBody, ErrorCode};
use crate::auth::{require_token, Auth, Scope};
use crate::config::{IndexConfig, ServerConfig};
use crate::names::{check_uri_allowed, validate_name};
use crate::parse::{content_type, decode, parse_binary, parse_json, Batch, BodyKind, Shape};
use crate::registry::{IndexEntry, Loaded, Registry};
use crate::telemetry::track_http;

pub(crate) mod errors;
mod middleware;
pub(crate) mod text;
pub(crate) mod writes;

pub(crate) use middleware::admit;
use middleware::{admit_request, request_span, time_limit};

/// Responses with more result slots than this are rendered on the blocking pool.
const INLINE_RENDER_SLOTS: usize = 65_536;
/// The header naming the index version a search response came from.
pub const VERSION_HEADER: &str = "x-ivflake-index-version";

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    pub registry: Registry,
    /// Query vectors being searched (`limits.max_queries_in_flight`).
    pub admission: Admission,
    /// Requests in flight, admitted once their body is read
    /// (`limits.max_requests_in_flight`).
    pub requests: Admission,
    /// Bytes of bodies being read or held (`limits.max_body_bytes_in_flight`),
    /// reserved before a body is read.
    pub body_bytes: Admission,
    pub config: ServerConfig,
    pub metrics: PrometheusHandle,
    /// Set once shutdown starts: `/readyz` turns 503 so balancers stop sending.
    pub draining: AtomicBool,
    /// The S3 Vectors API, when a vector root is set.
    pub vectors: Option<Arc<crate::vectors::VectorApi>>,
}

pub type AppState = Arc<Shared>;

/// The whole API with its middleware: request ids, tracing, metrics, auth, limits.
pub fn router(state: AppState, auth: Auth) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let request_timeout = Duration::from_millis(state.config.request_timeout_ms);
    let body_stall_timeout = Duration::from_millis(state.config.http.body_stall_timeout_ms);
    let api = Router::new()
        .route("/v1/indexes", get(list_indexes).post(add_index))
        .route("/v1/indexes/{name}", get(get_index).delete(remove_index))
        .route("/v1/indexes/{name}/search", post(search))
        .route("/v1/indexes/{name}/warm", post(warm))
        .route("/v1/indexes/{name}/reload", post(reload))
        .route("/v1/indexes/{name}/upsert", post(writes::upsert))
        .route("/v1/indexes/{name}/delete", post(writes::delete))
        .route("/v1/indexes/{name}/compact", post(writes::compact))
        .route("/v1/indexes/{name}/get", post(writes::get))
        .route("/v1/indexes/{name}/query", post(text::query))
        .route("/v1/indexes/{name}/text-fields", post(text::set_text_fields))
        .route("/metrics", get(metrics))
        // Inner: the body's bytes are reserved, the body is read (time-outs,
        // limit), and only then is a request slot taken, so a slow sender
        // never holds one and bodies never hold more than their budget.
        .route_layer(from_fn_with_state(state.clone(), admit_request))
        // Outer: no body is read for a client without the token.
        .route_layer(from_fn_with_state(auth, require_token));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi));
    let api = match &state.vectors {
        Some(_) => api
            .route(
                "/v1/vector-buckets/{bucket}/indexes/{index}/compact",
                post(crate::vectors::compact_now),
            )
            .merge(crate::vectors::routes(state.clone())),
        None => api,
    };
    open.merge(api)
        .fallback(no_route)
        .layer(from_fn(track_http))
        .layer(DefaultBodyLimit::max(body_limit))
        // A body that stops arriving fails its read after this (408 below).
        .layer(RequestBodyTimeoutLayer::new(body_stall_timeout))
        .with_state(state)
        .layer(from_fn_with_state(request_timeout, time_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// Looks up the index a path names, after checking the name is well formed.
fn lookup(state: &Shared, name: Result<Path<String>, PathRejection>) -> Result<Arc<IndexEntry>, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::invalid("name", e.body_text()))?;
    validate_name(&name, state.config.limits.max_name_len).map_err(|e| ApiError::invalid("name", e))?;
    Ok(state.registry.get(&name)?)
}

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::BodyTooLarge
    } else {
        ErrorCode::BadBody
    };
    ApiError::new(status, code, e.body_text()).with_field("body")
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/search",
    tag = "search",
    params(
        ("name" = String, Path, description = "Index name"),
        BinarySearchParams,
        ("x-ivflake-rows" = Option<usize>, Header, description = "Binary bodies only: the number of vectors, instead of `?rows=`"),
    ),
    request_body(
        description = "JSON, or raw little-endian float32 (`rows × d`) with `rows` in the query string or the `X-Ivflake-Rows` header",
        content((SearchRequest = "application/json"), (Vec<u8> = "application/octet-stream"))
    ),
    responses(
        (status = 200, description = "Neighbours of every query, with search stats", body = SearchResponse,
            headers(("x-ivflake-index-version" = String, description = "The index version the results came from"))),
        (status = 400, description = "Invalid request; `error.field` names the field", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 408, description = "The body stalled or arrived slower than `http.body_read_timeout_ms` allows; the connection is closed", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Neither JSON nor application/octet-stream", body = ErrorBody),
        (status = 422, description = "The index type cannot be searched", body = ErrorBody),
        (status = 500, description = "An internal error", body = ErrorBody),
        (status = 502, description = "The index object is missing or corrupt in the store", body = ErrorBody),
        (status = 503, description = "Overloaded, the store unavailable, or the index changed; retry after `Retry-After`", body = ErrorBody),
        (status = 504, description = "The search's deadline (or `request_timeout_ms`) passed", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let entry = lookup(&state, name)?;
    let body = body.map_err(body_error)?;
    let loaded = entry.current();
    let shape = Shape {
        d: loaded.index.info().d,
        max_rows: entry.config.max_batch.unwrap_or(state.config.limits.max_batch),
        max_filter_ids: state.config.limits.max_filter_ids,
        filter_limits: state.config.limits.filter_limits(),
    };
    let batch = match content_type(&headers)? {
        BodyKind::Json => parse_json(body, shape).await?,
        BodyKind::Binary => parse_binary(&uri, &headers, &body, shape)?,
    };
    let (params, timeout) = resolve(&state.config, &entry.config, &loaded, &batch)?;
    let _admitted = state.admission.try_admit(batch.rows)?;

    // A search that finds the object changed under it reloads once and runs
    // again on the new version, so a response always comes from one version.
    let started = Instant::now();
    let mut loaded = loaded;
    let mut reloaded = false;
    let results = loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let attempt = SearchParams {
            deadline: Some(remaining),
            ..params.clone()
        };
        let outcome = match &loaded.writable {
            Some(writable) => writable.search_with(&batch.vectors, &attempt).await,
            None => loaded.index.search_with(&batch.vectors, &attempt).await,
        };
        match outcome {
            Ok(results) => break results,
            Err(ivflake::Error::IndexChanged { .. }) if !reloaded => {
                reloaded = true;
                let remaining = timeout.saturating_sub(started.elapsed());
                loaded = tokio::time::timeout(remaining, entry.reload_after(loaded.generation))
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            ErrorCode::DeadlineExceeded,
                            "the deadline passed while reloading the changed index",
                        )
                    })??;
            }
            Err(e) => return Err(e.into()),
        }
    };

    let k = results.k;
    let slots = results.ids.len();
    let response = SearchResponse {
        index: entry.name.clone(),
        version: loaded.version_now(),
        generation: loaded.generation,
        k,
        nprobe: params.nprobe,
        results: results
            .ids
            .chunks(k.max(1))
            .zip(results.distances.chunks(k.max(1)))
            .enumerate()
            .map(|(q, (ids, distances))| QueryResult {
                ids: ids.to_vec(),
                distances: distances.to_vec(),
                attributes: results.attributes.as_ref().map(|a| a[q * k..(q + 1) * k].to_vec()),
            })
            .collect(),
        stats: results.stats,
    };
    let json = if slots > INLINE_RENDER_SLOTS {
        tokio::task::spawn_blocking(move || serde_json::to_vec(&response))
            .await
            .map_err(|e| ApiError::internal(format!("rendering the response failed: {e}")))?
    } else {
        serde_json::to_vec(&response)
    }
    .map_err(|e| ApiError::internal(format!("rendering the response failed: {e}")))?;
    let mut http = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        json,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&loaded.version_now()) {
        http.headers_mut().insert(VERSION_HEADER, v);
    }
    Ok(http)
}

/// Applies defaults, then checks every value against the limits (the batch
/// and filter sizes were checked while parsing). Returns the search's
/// parameters and its deadline.
fn resolve(
    config: &ServerConfig,
    index: &IndexConfig,
    loaded: &Loaded,
    batch: &Batch,
) -> Result<(SearchParams, Duration), ApiError> {
    let limits = &config.limits;
    // A writable index's list count changes with its first trained
    // compaction: its searches cap nprobe at the current one.
    let nlist = match &loaded.writable {
        Some(_) => limits.max_nprobe.max(1),
        None => loaded.index.info().nlist,
    };
    let k = batch.k.or(index.k).unwrap_or(config.defaults.k);
    let max_k = index.max_k.unwrap_or(limits.max_k).min(ivflake::MAX_K);
    if k == 0 || k > max_k {
        return Err(ApiError::invalid(
            "k",
            format!("must be between 1 and {max_k}, got {k}"),
        ));
    }
    // A default never exceeds the index's nlist; an explicit value must not either.
    let nprobe = batch
        .nprobe
        .unwrap_or_else(|| index.nprobe.unwrap_or(config.defaults.nprobe).min(nlist));
    let max_nprobe = index.max_nprobe.unwrap_or(limits.max_nprobe).min(nlist);
    if nprobe == 0 || nprobe > max_nprobe {
        return Err(ApiError::invalid(
            "nprobe",
            format!("must be between 1 and {max_nprobe} (the limit, at most nlist = {nlist}), got {nprobe}"),
        ));
    }
    let timeout_ms = batch.timeout_ms.unwrap_or(config.defaults.timeout_ms);
    if timeout_ms == 0 || timeout_ms > limits.max_timeout_ms {
        return Err(ApiError::invalid(
            "timeout_ms",
            format!("must be between 1 and {}, got {timeout_ms}", limits.max_timeout_ms),
        ));
    }
    if let Some(k_factor) = batch.k_factor {
        if !(1.0..=limits.max_k_factor).contains(&k_factor) {
            return Err(ApiError::invalid(
                "k_factor",
                format!("must be between 1 and {}, got {k_factor}", limits.max_k_factor),
            ));
        }
    }
    let filter = batch.filter.clone().unwrap_or_default();
    filter.validate()?;
    let timeout = Duration::from_millis(timeout_ms);
    let params = SearchParams {
        filter,
        attribute_filter: batch.attribute_filter.clone(),
        return_attributes: batch.return_attributes.clone(),
        allow_partial: batch.allow_partial,
        deadline: Some(timeout),
        max_bytes: Some(index.max_bytes_per_search.unwrap_or(limits.max_bytes_per_search)),
        k_factor: batch.k_factor,
        ..SearchParams::new(k, nprobe)
    };
    Ok((params, timeout))
}

async fn status(config: &ServerConfig, entry: &IndexEntry, scope: Scope) -> IndexStatus {
    let loaded = entry.current();
    let base = loaded.base();
    let info = base.info();
    IndexStatus {
        name: entry.name.clone(),
        uri: (scope == Scope::Admin).then(|| entry.config.uri.clone()),
        type_name: info.type_name.clone(),
        d: info.d,
        metric: info.metric.name().into(),
        ntotal: info.ntotal,
        nlist: info.nlist,
        code_size: info.code_size,
        version: loaded.version_now(),
        generation: loaded.generation,
        bytes_on_store: base.file_len(),
        checksum_sidecar: base.is_verified(),
        default_k: entry.config.k.unwrap_or(config.defaults.k),
        default_nprobe: entry.config.nprobe.unwrap_or(config.defaults.nprobe).min(info.nlist),
        residency: residency(&loaded).await,
        memory: base.memory(),
        open: base.open_stats(),
        preload: base.preload_status(),
    }
}

async fn residency(loaded: &Loaded) -> serde_json::Value {
    let base = loaded.base();
    serde_json::to_value(base.residency().await).unwrap_or(serde_json::Value::Null)
}

#[utoipa::path(
    get,
    path = "/v1/indexes",
    tag = "indexes",
    responses((status = 200, description = "Every index served", body = IndexList)),
    security((), ("bearer" = []))
)]
pub(crate) async fn list_indexes(State(state): State<AppState>, Extension(scope): Extension<Scope>) -> Json<IndexList> {
    let mut indexes = Vec::new();
    for entry in state.registry.all() {
        indexes.push(status(&state.config, &entry, scope).await);
    }
    Json(IndexList { indexes })
}

#[utoipa::path(
    get,
    path = "/v1/indexes/{name}",
    tag = "indexes",
    params(("name" = String, Path, description = "Index name")),
    responses(
        (status = 200, description = "The index", body = IndexStatus),
        (status = 400, description = "Malformed index name", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn get_index(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<IndexStatus>, ApiError> {
    let entry = lookup(&state, name)?;
    Ok(Json(status(&state.config, &entry, scope).await))
}

#[utoipa::path(
    post,
    path = "/v1/indexes",
    tag = "indexes",
    request_body = AddIndexRequest,
    responses(
        (status = 201, description = "Opened and now served", body = IndexStatus),
        (status = 400, description = "Bad name, URI or setting; `error.field` names it", body = ErrorBody),
        (status = 403, description = "The URI is not under an allowed prefix, or the token is not the admin's", body = ErrorBody),
        (status = 404, description = "No object at the URI", body = ErrorBody),
        (status = 409, description = "The name is taken, or the server serves `limits.max_indexes`", body = ErrorBody),
        (status = 408, description = "The body stalled or arrived too slowly", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_body_bytes`", body = ErrorBody),
        (status = 422, description = "The object is not a supported, intact Faiss IVF index", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn add_index(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    let body = body.map_err(body_error)?;
    let AddIndexRequest {
        name,
        index: mut config,
        unknown,
    } = decode(&body, PhantomData)?;
    if let Some(field) = unknown.keys().next() {
        return Err(ApiError::invalid(field.as_str(), "unknown field"));
    }
    if config.uri.is_empty() {
        return Err(ApiError::invalid("uri", "missing: the index's URI"));
    }
    validate_name(&name, state.config.limits.max_name_len).map_err(|e| ApiError::invalid("name", e))?;
    config.uri = check_uri_allowed(&config.uri, &state.config.allowed_uri_prefixes)?;
    config
        .check(&state.config.defaults, &state.config.limits)
        .map_err(|(field, message)| ApiError::invalid(field, message))?;
    let entry = state.registry.add(&name, config).await?;
    Ok((
        StatusCode::CREATED,
        Json(status(&state.config, &entry, Scope::Admin).await),
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/indexes/{name}",
    tag = "indexes",
    params(("name" = String, Path, description = "Index name")),
    responses(
        (status = 200, description = "No longer served; searches in flight finish", body = RemoveResponse),
        (status = 400, description = "Malformed index name", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn remove_index(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RemoveResponse>, ApiError> {
    let entry = lookup(&state, name)?;
    // A concurrent delete may have removed it since the lookup.
    let removed = state.registry.remove(&entry.name).is_some();
    tracing::info!(index = %entry.name, "removed index");
    Ok(Json(RemoveResponse {
        index: entry.name.clone(),
        removed,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/reload",
    tag = "indexes",
    params(("name" = String, Path, description = "Index name")),
    responses(
        (status = 200, description = "Serving the object's current version", body = ReloadResponse),
        (status = 400, description = "Malformed index name", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 422, description = "The new object's index type is not supported; the old version is still served", body = ErrorBody),
        (status = 502, description = "The store's object is missing or corrupt; the old version is still served", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn reload(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ReloadResponse>, ApiError> {
    let entry = lookup(&state, name)?;
    let outcome = entry.reload().await?;
    Ok(Json(ReloadResponse {
        index: entry.name.clone(),
        changed: outcome.changed,
        previous_version: outcome.previous.version.clone(),
        version: outcome.current.version.clone(),
        generation: outcome.current.generation,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/warm",
    tag = "indexes",
    params(("name" = String, Path, description = "Index name")),
    request_body(
        description = "Which lists to load, combined; an empty body loads nothing",
        content = ivflake::WarmSpec,
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "What was loaded into the caches", body = ivflake::WarmReport),
        (status = 400, description = "Invalid spec; `error.field` names the field", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_body_bytes`", body = ErrorBody),
        (status = 502, description = "The index object is missing or corrupt in the store", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn warm(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ivflake::WarmReport>, ApiError> {
    let entry = lookup(&state, name)?;
    let body = body.map_err(body_error)?;
    let spec: ivflake::WarmSpec = if body.iter().all(u8::is_ascii_whitespace) {
        ivflake::WarmSpec::default()
    } else {
        decode(&body, PhantomData)?
    };
    let index = entry.current().index.clone();
    let budget = entry
        .config
        .max_bytes_per_search
        .unwrap_or(state.config.limits.max_bytes_per_search);
    let report = index.warm_within(&spec, budget).await?;
    tracing::info!(index = %entry.name, lists = report.lists_requested, ms = report.ms, "warmed");
    Ok(Json(report))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security((), ("bearer" = []))
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // Settles both cache tiers' pending maintenance and sets their resident
    // bytes gauges, so a scrape sees the tiers as they are, not as the last
    // write left them.
    state.registry.scheduler().cache_report().await;
    let mut served = std::collections::HashSet::new();
    for entry in state.registry.all() {
        crate::telemetry::index_gauges(&entry.name, &entry.current().index);
        served.insert(entry.name.clone());
    }
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::telemetry::served_only(&state.metrics.render(), &served),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        indexes: None,
    })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "Shutting down", body = Health),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    if state.draining.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "draining".into(),
                indexes: None,
            }),
        );
    }
    (
        StatusCode::OK,
        Json(Health {
            status: "ready".into(),
            indexes: Some(state.registry.count()),
        }),
    )
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
