//! PutVectors, GetVectors, DeleteVectors, ListVectors and QueryVectors on
//! an index's `MutableIndex`: a put is one log record, acknowledged once
//! durable; a query is one search through the library's pipeline.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use ivflake::{CompactOptions, KeptRow, SearchParams};
use serde_json::{json, Value};

use super::admin::index_of;
use super::catalog::OpenIndex;
use super::error::{S3vError, S3vResult};
use super::metadata::{self, key_id, stored_key, PutRow};
use super::wire::*;
use super::{check_range, ok, parse, run, VectorApi};
use crate::routes::AppState;

/// Vectors per PutVectors and keys per DeleteVectors.
const MAX_WRITE: usize = 500;
/// Keys per GetVectors.
const MAX_GET: usize = 100;
/// ListVectors' page, by default and at most.
const LIST_DEFAULT: i64 = 500;
const LIST_MAX: i64 = 1000;
/// QueryVectors: results per page, and at most in all pages.
const QUERY_PAGE: usize = 100;
const MAX_TOP_K: i64 = 10_000;

async fn open(
    api: &VectorApi,
    bucket: Option<String>,
    index: Option<String>,
    arn: Option<String>,
) -> S3vResult<Arc<OpenIndex>> {
    let (bucket, index) = index_of(&api.catalog, bucket, index, arn)?;
    api.catalog.index(&bucket, &index).await
}

/// A vector's values: present, `d` long and finite; unit length for cosine
/// (refused when zero).
fn vector_of(member: &str, data: &VectorData, d: usize, cosine: bool) -> S3vResult<Vec<f32>> {
    let v = data
        .float32
        .as_ref()
        .ok_or_else(|| S3vError::invalid(format!("{member}.float32"), "is required"))?;
    if v.len() != d {
        return Err(S3vError::invalid(
            format!("{member}.float32"),
            format!("the index has dimension {d}, the vector has {}", v.len()),
        ));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(S3vError::invalid(format!("{member}.float32"), "holds NaN or infinity"));
    }
    if !cosine {
        return Ok(v.clone());
    }
    let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Err(S3vError::invalid(
            format!("{member}.float32"),
            "a cosine index cannot hold or be queried with a zero vector",
        ));
    }
    Ok(v.iter().map(|x| (*x as f64 / norm) as f32).collect())
}

/// The kept rows of `keys` whose stored key is that key (an id another
/// key's hash also gives reads as absent).
async fn rows_of(open: &OpenIndex, keys: &[String], with_vectors: bool) -> S3vResult<Vec<Option<KeptRow>>> {
    let ids: Vec<i64> = keys.iter().map(|k| key_id(k)).collect();
    let with_vectors = with_vectors && !open.record.cosine();
    let rows = open.index.get_rows(&ids, with_vectors).await?;
    Ok(rows
        .into_iter()
        .zip(keys)
        .map(|(row, key)| row.filter(|r| stored_key(&r.attributes) == Some(key.as_str())))
        .collect())
}

fn output(open: &OpenIndex, key: String, row: &KeptRow, data: bool, meta: bool) -> S3vResult<OutputVector> {
    let d = open.record.dimension;
    let data = if !data {
        None
    } else if open.record.cosine() {
        metadata::stored_raw(&row.attributes, d)?.map(|float32| VectorDataOut { float32 })
    } else {
        row.vector.clone().map(|float32| VectorDataOut { float32 })
    };
    Ok(OutputVector {
        key,
        data,
        metadata: meta.then(|| metadata::stored_metadata(&row.attributes)),
    })
}

pub async fn put_vectors(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: PutVectorsInput = parse(body).await?;
        let open = open(api, input.vector_bucket_name, input.index_name, input.index_arn).await?;
        let n = input.vectors.len();
        if n == 0 || n > MAX_WRITE {
            return Err(S3vError::invalid(
                "vectors",
                format!("takes 1 to {MAX_WRITE} vectors, got {n}"),
            ));
        }
        let record = &open.record;
        metadata::distinct_keys("vectors", input.vectors.iter().map(|v| v.key.as_str()))?;
        let nf = &record.metadata.non_filterable_metadata_keys;
        let mut indexed = Vec::with_capacity(n * record.dimension);
        for (i, v) in input.vectors.iter().enumerate() {
            indexed.extend(vector_of(
                &format!("vectors[{i}].data"),
                &v.data,
                record.dimension,
                record.cosine(),
            )?);
            if let Some(m) = &v.metadata {
                metadata::check(&format!("vectors[{i}].metadata"), m, nf)?;
            }
        }
        // A key whose id another stored key holds is refused, never overwritten.
        let keys: Vec<String> = input.vectors.iter().map(|v| v.key.clone()).collect();
        let ids: Vec<i64> = keys.iter().map(|k| key_id(k)).collect();
        let held = open.index.get_rows(&ids, false).await?;
        for (i, row) in held.iter().enumerate() {
            if let Some(other) = row.as_ref().and_then(|r| stored_key(&r.attributes)) {
                if other != keys[i] {
                    return Err(S3vError::conflict(format!(
                        "the key {:?} hashes to the id of the stored key {other:?}; rename one of them",
                        keys[i]
                    )));
                }
            }
        }
        let rows: Vec<PutRow<'_>> = input
            .vectors
            .iter()
            .map(|v| PutRow {
                key: &v.key,
                raw: v.data.float32.as_deref().unwrap_or_default(),
                metadata: v.metadata.as_ref(),
            })
            .collect();
        let batch = metadata::rows_batch(
            &rows,
            nf,
            record.cosine(),
            &open.index.attribute_schema(),
            api.config.max_metadata_columns,
        )?;
        open.index.upsert_with(&indexed, &ids, Some(&batch)).await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn get_vectors(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: KeysInput = parse(body).await?;
        let open = open(api, input.vector_bucket_name, input.index_name, input.index_arn).await?;
        if input.keys.is_empty() || input.keys.len() > MAX_GET {
            return Err(S3vError::invalid(
                "keys",
                format!("takes 1 to {MAX_GET} keys, got {}", input.keys.len()),
            ));
        }
        metadata::distinct_keys("keys", input.keys.iter().map(String::as_str))?;
        let rows = rows_of(&open, &input.keys, input.return_data).await?;
        let mut vectors = Vec::new();
        for (key, row) in input.keys.into_iter().zip(rows) {
            if let Some(row) = row {
                vectors.push(output(&open, key, &row, input.return_data, input.return_metadata)?);
            }
        }
        Ok(ok(&json!({ "vectors": vectors })))
    })
    .await
}

pub async fn delete_vectors(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: KeysInput = parse(body).await?;
        if input.return_data || input.return_metadata {
            return Err(S3vError::invalid("body", "DeleteVectors takes only keys"));
        }
        let open = open(api, input.vector_bucket_name, input.index_name, input.index_arn).await?;
        if input.keys.is_empty() || input.keys.len() > MAX_WRITE {
            return Err(S3vError::invalid(
                "keys",
                format!("takes 1 to {MAX_WRITE} keys, got {}", input.keys.len()),
            ));
        }
        metadata::distinct_keys("keys", input.keys.iter().map(String::as_str))?;
        // Only ids that hold these keys: another key's row is never deleted.
        let rows = rows_of(&open, &input.keys, false).await?;
        let ids: Vec<i64> = input
            .keys
            .iter()
            .zip(&rows)
            .filter(|(_, row)| row.is_some())
            .map(|(k, _)| key_id(k))
            .collect();
        if !ids.is_empty() {
            open.index.delete(&ids).await?;
        }
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn list_vectors(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: ListVectorsInput = parse(body).await?;
        let open = open(api, input.vector_bucket_name, input.index_name, input.index_arn).await?;
        let limit = input.max_results.unwrap_or(LIST_DEFAULT);
        check_range("maxResults", limit, 1, LIST_MAX)?;
        let (count, at) = match (input.segment_count, input.segment_index) {
            (None, None) => (1, 0),
            (Some(c), Some(i)) => {
                check_range("segmentCount", c, 1, 16)?;
                check_range("segmentIndex", i, 0, c - 1)?;
                (c, i)
            }
            _ => {
                return Err(S3vError::invalid(
                    "segmentIndex",
                    "segmentCount and segmentIndex go together",
                ))
            }
        };
        // Segment `at` of `count`: its share of the (non-negative) ids.
        let width = i64::MAX / count;
        let start = at * width;
        let end = if at == count - 1 { i64::MAX } else { start + width - 1 };
        let binding = format!("ListVectors/{}/{}/{count}/{at}", open.record.bucket, open.record.name);
        let after = match &input.next_token {
            Some(t) => Some(
                api.tokens
                    .redeem("nextToken", t, &binding)?
                    .parse::<i64>()
                    .map_err(|_| S3vError::invalid("nextToken", "not a token this server issued"))?,
            ),
            None => None,
        };
        let listed = open.index.list_ids(start..=end, after, limit as usize).await?;
        let mut vectors = Vec::with_capacity(listed.ids.len());
        for chunk in listed.ids.chunks(ivflake::MAX_GET_IDS) {
            let rows = open
                .index
                .get_rows(chunk, input.return_data && !open.record.cosine())
                .await?;
            for row in rows.into_iter().flatten() {
                // A row deleted since it was listed is left out.
                if let Some(key) = stored_key(&row.attributes).map(str::to_string) {
                    vectors.push(output(&open, key, &row, input.return_data, input.return_metadata)?);
                }
            }
        }
        let token = listed
            .next_after
            .map(|next| api.tokens.issue(&binding, &next.to_string()));
        Ok(super::admin::listing("vectors", vectors, token))
    })
    .await
}

pub async fn query_vectors(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |state, api| {
        let input: QueryVectorsInput = parse(body).await?;
        let open = open(
            api,
            input.vector_bucket_name.clone(),
            input.index_name.clone(),
            input.index_arn.clone(),
        )
        .await?;
        let record = &open.record;
        check_range("topK", input.top_k, 1, MAX_TOP_K)?;
        let top_k = input.top_k as usize;
        let texts = input
            .query_texts
            .as_ref()
            .map(|t| super::text::query_texts(t, &open.index.version().text_fields))
            .transpose()?;
        if texts.is_some() && input.next_token.is_some() {
            return Err(S3vError::invalid(
                "nextToken",
                "full-text and hybrid results come in one page of topK",
            ));
        }
        let query = match (&input.query_vector, &texts) {
            (Some(data), _) => Some(vector_of("queryVector", data, record.dimension, record.cosine())?),
            (None, Some(_)) => None,
            (None, None) => {
                return Err(S3vError::invalid(
                    "queryVector",
                    "a request must include queryVector, queryTexts, or both",
                ))
            }
        };
        let query_data = input.query_vector.as_ref();
        let settings = api.catalog.settings(&[&record.bucket, "indexes", &record.name]).await?;
        let index_mode = settings.mode.unwrap_or_else(|| record.mode.clone());
        let mode = input.query_mode.clone().unwrap_or_else(|| index_mode.clone());
        if !matches!(mode.as_str(), "CLASSIC" | "ENHANCED") {
            return Err(S3vError::invalid("queryMode", "must be CLASSIC or ENHANCED"));
        }
        if mode == "CLASSIC" && index_mode == "ENHANCED" {
            return Err(S3vError::invalid(
                "queryMode",
                "an ENHANCED index is not queried in CLASSIC mode",
            ));
        }
        let schema = open.index.attribute_schema();
        if schema.field_with_name(metadata::KEY_COLUMN).is_err() {
            // Nothing was ever put: no key column to return yet.
            return Ok(ok(&json!({ "vectors": [], "distanceMetric": record.distance_metric })));
        }
        let filter = input
            .filter
            .as_ref()
            .map(|f| super::filter::translate(f, &schema, &record.metadata.non_filterable_metadata_keys))
            .transpose()?;
        // A follow-up page repeats the query; the token says where it is.
        let binding = format!(
            "QueryVectors/{}/{}/{}",
            record.bucket,
            record.name,
            super::token::digest(&[
                &top_k.to_le_bytes(),
                bytemuck_bytes(query_data.and_then(|q| q.float32.as_deref()).unwrap_or_default()).as_slice(),
                input
                    .filter
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default()
                    .as_bytes(),
                mode.as_bytes(),
            ])
        );
        let offset = match &input.next_token {
            Some(t) => api
                .tokens
                .redeem("nextToken", t, &binding)?
                .parse::<usize>()
                .map_err(|_| S3vError::invalid("nextToken", "not a token this server issued"))?,
            None => 0,
        };
        let k = top_k.min(offset + QUERY_PAGE);
        let nlist = open.index.base().info().nlist;
        // ENHANCED filters before the search: every list is a candidate.
        let nprobe = if mode == "ENHANCED" && filter.is_some() {
            nlist
        } else {
            api.config.nprobe_for(nlist)
        };
        let mut columns = vec![metadata::KEY_COLUMN.to_string()];
        if input.return_metadata {
            columns.push(metadata::METADATA_COLUMN.to_string());
        }
        let limits = &state.config.limits;
        let params = SearchParams {
            attribute_filter: filter,
            return_attributes: columns,
            deadline: Some(Duration::from_millis(state.config.defaults.timeout_ms)),
            max_bytes: Some(limits.max_bytes_per_search),
            ..SearchParams::new(k, nprobe)
        };
        let _admitted = state
            .admission
            .try_admit(1)
            .map_err(|e| S3vError::from(crate::api_error::ApiError::from(e)))?;
        let distance_of = |raw: f32| {
            if record.cosine() {
                1.0 - raw
            } else if api.config.euclidean_squared {
                raw
            } else {
                raw.max(0.0).sqrt()
            }
        };
        if let Some(texts) = texts {
            // One page of all `topK` (no follow-up token).
            let params = SearchParams { k: top_k, ..params };
            return super::text::query(&open, &input, query, texts, params, distance_of).await;
        }
        let query = query.unwrap_or_default();
        let results = open.index.search_with(&query, &params).await?;
        let attributes = results.attributes.unwrap_or_default();
        let mut vectors = Vec::new();
        let mut found = 0;
        for slot in offset..k {
            if results.ids.get(slot).is_none_or(|&id| id < 0) {
                break;
            }
            found += 1;
            let Some(Some(row)) = attributes.get(slot) else {
                continue;
            };
            let Some(key) = stored_key(row) else { continue };
            let distance = distance_of(results.distances[slot]);
            vectors.push(QueryOutputVector {
                key: key.to_string(),
                distance: input.return_distance.then_some(distance),
                metadata: input.return_metadata.then(|| metadata::stored_metadata(row)),
            });
        }
        let mut out = json!({ "vectors": vectors, "distanceMetric": record.distance_metric });
        if k < top_k && found == k - offset {
            out["nextToken"] = json!(api.tokens.issue(&binding, &k.to_string()));
        }
        Ok(ok(&out))
    })
    .await
}

fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Compacts an index (one compaction per index on this server at a
/// time): its first trains the factory `vectors.factory` gives for the
/// vectors it holds then.
/// [`compact`] when the index's log holds at least
/// `compact_unindexed_entries` unindexed vectors (0: never); the rule the
/// server's background loop and the compaction worker share.
pub async fn compact_if_due(api: &VectorApi, open: &OpenIndex) -> S3vResult<Option<ivflake::CompactReport>> {
    let threshold = api.config.compact_unindexed_entries;
    if threshold == 0 || open.index.unindexed().0 < threshold {
        return Ok(None);
    }
    compact(api, open).await
}

pub async fn compact(api: &VectorApi, open: &OpenIndex) -> S3vResult<Option<ivflake::CompactReport>> {
    let Ok(_one) = open.compacting.try_lock() else {
        return Ok(None);
    };
    let live = open.index.base().info().ntotal.max(0) as u64 + open.index.unindexed().0;
    let options = CompactOptions {
        factory: Some(api.config.factory_for(open.record.dimension, live)),
        ..CompactOptions::default()
    };
    let report = open.index.compact(&options).await?;
    if let Some(r) = &report {
        tracing::info!(bucket = %open.record.bucket, index = %open.record.name, version = r.version,
            trained = r.trained, entries = r.entries, ms = r.ms, "compacted");
    }
    Ok(report)
}
