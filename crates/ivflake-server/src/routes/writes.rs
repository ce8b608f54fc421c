//! The routes of a writable index (`writable = true`): upsert, delete and
//! compact (write scope), and get (search scope). Each upsert or delete is
//! one log record, answered once it is durable in the store; searches on
//! this server see it at once.

use std::marker::PhantomData;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use ivflake::{CompactOptions, CompactReport, MutableIndex};
use serde::{Deserialize, Serialize};

use super::{body_error, decode, lookup, AppState};
use crate::api_error::{ApiError, ErrorBody, ErrorCode};

/// `POST /v1/indexes/{name}/upsert`: vectors replace those of ids present.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    pub ids: Vec<i64>,
    pub vectors: Vec<Vec<f32>>,
    /// Per id, an object of attribute values (string, number, bool or
    /// null); they replace the id's old ones. A column keeps the type it
    /// was first written with.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub attributes: Option<Vec<serde_json::Value>>,
}

/// `POST /v1/indexes/{name}/delete`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub ids: Vec<i64>,
}

/// A write, durable in the store.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WriteResponse {
    pub index: String,
    /// The log position the write was committed at.
    pub log_position: u64,
    /// Vectors or ids the write carried.
    pub rows: usize,
}

/// `POST /v1/indexes/{name}/get`: the kept rows of ids.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub ids: Vec<i64>,
}

/// One id's kept row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeptRowBody {
    pub id: i64,
    /// The raw vector, `null` when the index keeps none for it.
    pub vector: Option<Vec<f32>>,
    /// Its non-null attributes.
    #[schema(value_type = Object)]
    pub attributes: ivflake::AttributeRow,
}

/// Per asked id, its row, or `null` when the index does not hold it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GetResponse {
    pub index: String,
    pub rows: Vec<Option<KeptRowBody>>,
}

/// What a compaction did (`null` when there was nothing to fold).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompactResponse {
    pub index: String,
    #[schema(value_type = Option<Object>)]
    pub compacted: Option<CompactReport>,
}

pub(super) fn writable(
    state: &AppState,
    name: Result<Path<String>, PathRejection>,
) -> Result<(String, MutableIndex), ApiError> {
    let entry = lookup(state, name)?;
    let writable = entry.current().writable.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotWritable,
            format!(
                "index {:?} is a Faiss file served read-only; writes need a writable index (`ivflake create`)",
                entry.name
            ),
        )
    })?;
    Ok((entry.name.clone(), writable))
}

fn check_rows(state: &AppState, rows: usize) -> Result<(), ApiError> {
    let max = state.config.limits.max_write_rows;
    if rows == 0 || rows > max {
        return Err(ApiError::invalid(
            "ids",
            format!("a write takes 1 to {max} ids (limits.max_write_rows), got {rows}"),
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/upsert",
    tag = "writes",
    params(("name" = String, Path, description = "Index name")),
    request_body(content = UpsertRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Durable in the store and visible to this server's searches", body = WriteResponse),
        (status = 400, description = "Invalid write; `error.field` names the field", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_body_bytes`", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn upsert(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WriteResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let body = body.map_err(body_error)?;
    let request: UpsertRequest = decode(&body, PhantomData)?;
    check_rows(&state, request.ids.len())?;
    if request.vectors.len() != request.ids.len() {
        return Err(ApiError::invalid(
            "vectors",
            format!("{} vectors for {} ids", request.vectors.len(), request.ids.len()),
        ));
    }
    let d = writable.version().d;
    if let Some(i) = request.vectors.iter().position(|v| v.len() != d) {
        return Err(ApiError::invalid(
            "vectors",
            format!(
                "vector {i} has {} values; the index has d = {d}",
                request.vectors[i].len()
            ),
        ));
    }
    let attributes = match &request.attributes {
        Some(rows) if rows.len() != request.ids.len() => {
            return Err(ApiError::invalid(
                "attributes",
                format!("{} rows of attributes for {} ids", rows.len(), request.ids.len()),
            ))
        }
        Some(rows) => Some(ivflake::attributes_from_json(
            "attributes",
            rows,
            &writable.attribute_schema(),
        )?),
        None => None,
    };
    let flat: Vec<f32> = request.vectors.concat();
    let log_position = writable.upsert_with(&flat, &request.ids, attributes.as_ref()).await?;
    Ok(Json(WriteResponse {
        index,
        log_position,
        rows: request.ids.len(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/delete",
    tag = "writes",
    params(("name" = String, Path, description = "Index name")),
    request_body(content = DeleteRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Durable in the store and visible to this server's searches", body = WriteResponse),
        (status = 400, description = "Invalid ids", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WriteResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let body = body.map_err(body_error)?;
    let request: DeleteRequest = decode(&body, PhantomData)?;
    check_rows(&state, request.ids.len())?;
    let log_position = writable.delete(&request.ids).await?;
    Ok(Json(WriteResponse {
        index,
        log_position,
        rows: request.ids.len(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/compact",
    tag = "writes",
    params(("name" = String, Path, description = "Index name")),
    responses(
        (status = 200, description = "The log folded into a new standard Faiss base, now current", body = CompactResponse),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only, or another compaction committed first", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn compact(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CompactResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let compacted = writable.compact(&CompactOptions::default()).await?;
    Ok(Json(CompactResponse { index, compacted }))
}

#[utoipa::path(
    post,
    path = "/v1/indexes/{name}/get",
    tag = "writes",
    params(("name" = String, Path, description = "Index name")),
    request_body(content = GetRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Each id's raw vector and attributes, or null", body = GetResponse),
        (status = 400, description = "Invalid ids; `error.field` names the field", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 409, description = "The index is read-only", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GetResponse>, ApiError> {
    let (index, writable) = writable(&state, name)?;
    let body = body.map_err(body_error)?;
    let request: GetRequest = decode(&body, PhantomData)?;
    let max = state.config.limits.max_get_ids;
    if request.ids.is_empty() || request.ids.len() > max {
        return Err(ApiError::invalid(
            "ids",
            format!(
                "a get takes 1 to {max} ids (limits.max_get_ids), got {}",
                request.ids.len()
            ),
        ));
    }
    let rows = writable.get(&request.ids).await?;
    let rows = request
        .ids
        .iter()
        .zip(rows)
        .map(|(&id, row)| {
            row.map(|r| KeptRowBody {
                id,
                vector: r.vector,
                attributes: r.attributes,
            })
        })
        .collect();
    Ok(Json(GetResponse { index, rows }))
}
