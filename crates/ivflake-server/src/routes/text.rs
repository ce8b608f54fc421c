//! Full-text and hybrid search on a writable index (`POST
//! /v1/indexes/{name}/query`, search scope) and its text fields (`POST
//! /v1/indexes/{name}/text-fields`, admin scope): one `MutableIndex::query`
//! or `set_text_fields` each.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use ivflake::text::{Language, TextField, TextQuery};
use ivflake::{HybridHit, HybridQuery, IdFilterSpec, SearchParams, SearchStats};
use serde::{Deserialize, Serialize};

use super::writes::writable;
use super::{body_error, decode, AppState};
use crate::api_error::{ApiError, ErrorBody};

/// `POST /v1/indexes/{name}/query`: by text, by vector, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One query vector (the index's `d` finite values); leave out for full-text only.
    pub vector: Option<Vec<f32>>,
    /// Text field → query text (1 to 1,024 bytes, at most 10 fields).
    #[serde(default)]
    pub text: BTreeMap<String, String>,
    pub k: Option<usize>,
    pub nprobe: Option<usize>,
    pub filter: Option<IdFilterSpec>,
    /// As `/search`'s.
    #[schema(value_type = Option<Object>)]
    pub attribute_filter: Option<serde_json::Value>,
    pub return_attributes: Option<Vec<String>>,
    pub timeout_ms: Option<u64>,
}

/// One hit: `fused` when more than one ranking was fused (RRF, k = 60),
/// `distance` when the vector search ranked it, `bm25` per text field
/// whose query ranked it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryHit {
    pub id: i64,
    pub fused: Option<f32>,
    pub distance: Option<f32>,
    pub bm25: BTreeMap<String, f32>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<ivflake::AttributeRow>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryResponse {
    pub index: String,
    pub hits: Vec<QueryHit>,
    #[schema(value_type = Object)]
    pub stats: SearchStats,
}

/// `POST /v1/indexes/{name}/text-fields`: attribute column → language
/// (`standard`, `en`, `fr`, `es`, `pt`, `it`, `de`, `nl`, `zh`, `ja`, `ko`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextFieldsRequest {
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TextFieldsResponse {
    pub index: String,
    pub fields: BTreeMap<String, String>,
    /// The version that made them current.
    pub version: u64,
}

fn hit(h: HybridHit, texts: &[TextQuery]) -> QueryHit {
    QueryHit {
        id: h.id,
        fused: h.fused,
        distance: h.distance,
        bm25: texts
            .iter()
            .zip(&h.bm25)
            .filter_map(|(t, s)| s.map(|s| (t.field.clone(), s)))
            .collect(),
        attributes: h.attributes,
    }
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/query",
    tag = "search",
    params(("name" = String, Path, description = "Index name")),
    request_body(content = QueryRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Hits, best first", body = QueryResponse),
        (status = 400, description = "Invalid query; `error.field` names the field", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only (full-text search needs a writable index)", body = ErrorBody),
        (status = 504, description = "The deadline passed", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<QueryResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let body = body.map_err(body_error)?;
    let request: QueryRequest = decode(&body, PhantomData)?;
    let config = &state.config;
    let limits = &config.limits;
    let k = request.k.unwrap_or(config.defaults.k);
    if k == 0 || k > limits.max_k.min(ivflake::MAX_K) {
        return Err(ApiError::invalid(
            "k",
            format!("must be between 1 and {}", limits.max_k.min(ivflake::MAX_K)),
        ));
    }
    let nprobe = request.nprobe.unwrap_or(config.defaults.nprobe);
    if nprobe == 0 || nprobe > limits.max_nprobe {
        return Err(ApiError::invalid(
            "nprobe",
            format!("must be between 1 and {}", limits.max_nprobe),
        ));
    }
    if let Some(v) = &request.vector {
        let d = writable.version().d;
        if v.len() != d || v.iter().any(|x| !x.is_finite()) {
            return Err(ApiError::invalid("vector", format!("must be {d} finite values")));
        }
    }
    let attribute_filter = request
        .attribute_filter
        .as_ref()
        .map(|f| ivflake::AttributeFilter::from_json_value(f, "attribute_filter", &limits.filter_limits()))
        .transpose()?;
    let timeout = Duration::from_millis(
        request
            .timeout_ms
            .unwrap_or(config.defaults.timeout_ms)
            .min(config.request_timeout_ms),
    );
    let texts: Vec<TextQuery> = request.text.iter().map(|(f, t)| TextQuery::new(f, t)).collect();
    let params = SearchParams {
        filter: request.filter.unwrap_or_default(),
        attribute_filter,
        return_attributes: request.return_attributes.unwrap_or_default(),
        deadline: Some(timeout),
        max_bytes: Some(limits.max_bytes_per_search),
        ..SearchParams::new(k, nprobe)
    };
    let _admitted = state.admission.try_admit(1)?;
    let query = HybridQuery {
        vector: request.vector,
        texts: texts.clone(),
        params,
    };
    let results = tokio::time::timeout(timeout, writable.query(&query))
        .await
        .map_err(|_| {
            ApiError::from(ivflake::Error::DeadlineExceeded {
                deadline: timeout,
                stage: "searching",
            })
        })??;
    Ok(Json(QueryResponse {
        index,
        hits: results.hits.into_iter().map(|h| hit(h, &texts)).collect(),
        stats: results.stats,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/text-fields",
    tag = "writes",
    params(("name" = String, Path, description = "Index name")),
    request_body(content = TextFieldsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The fields are searchable: the base's text index is built", body = TextFieldsResponse),
        (status = 400, description = "An invalid field or language", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only, or another writer committed first", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn set_text_fields(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TextFieldsResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let body = body.map_err(body_error)?;
    let request: TextFieldsRequest = decode(&body, PhantomData)?;
    let fields = request
        .fields
        .iter()
        .map(|(column, language)| {
            Language::from_code(language)
                .map(|l| TextField::column(column, l))
                .map_err(|e| ApiError::invalid("fields", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    writable.set_text_fields(fields).await?;
    let version = writable.version_position();
    let fields = writable
        .version()
        .text_fields
        .iter()
        .map(|f| (f.column.clone(), f.language.code().to_string()))
        .collect();
    Ok(Json(TextFieldsResponse { index, fields, version }))
}
