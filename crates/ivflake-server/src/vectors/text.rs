//! Full-text and hybrid search in the S3 Vectors API: an index's
//! `textSearchConfigurations` are its `MutableIndex`'s text fields, each a
//! metadata key read from the stored metadata object (`_metadata`), so a
//! key made searchable later covers the vectors put before it too;
//! `QueryVectors` with `queryTexts` is one `MutableIndex::query`, and
//! `UpdateMetadataConfiguration` adds or deletes fields (the base's text
//! index is rebuilt before it answers, so a configuration is `ACTIVE` once
//! acknowledged and never reported `BUILDING`).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use ivflake::text::{Language, TextField, TextQuery, MAX_QUERY_TEXT_BYTES, MAX_TEXT_FIELDS};
use ivflake::{HybridQuery, SearchParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::admin::index_of;
use super::catalog::OpenIndex;
use super::error::{S3vError, S3vResult};
use super::metadata::{self, stored_key, MAX_METADATA_KEY_LEN};
use super::wire::{QueryOutputVector, QueryVectorsInput, UpdateMetadataConfigurationInput};
use super::{ok, parse, run, VectorApi};
use crate::routes::AppState;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextSearchConfiguration {
    pub metadata_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryText {
    text: String,
    metadata_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Add {
    #[serde(default)]
    text_search_configurations: Vec<TextSearchConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyRef {
    metadata_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Delete {
    #[serde(default)]
    text_search_configurations: Vec<KeyRef>,
}

fn check_key(path: &str, key: &str) -> S3vResult<()> {
    if key.is_empty() || key.len() > MAX_METADATA_KEY_LEN {
        return Err(S3vError::invalid(
            path,
            format!("a metadata key is 1 to {MAX_METADATA_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}

/// The text fields of `configs` (checked; `path` names the list).
pub fn fields_of(configs: &[TextSearchConfiguration], path: &str) -> S3vResult<Vec<TextField>> {
    if configs.len() > MAX_TEXT_FIELDS {
        return Err(S3vError::invalid(
            path,
            format!("at most {MAX_TEXT_FIELDS} configurations"),
        ));
    }
    let mut out: Vec<TextField> = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let at = format!("{path}[{i}]");
        check_key(&format!("{at}.metadataKey"), &c.metadata_key)?;
        if out.iter().any(|f| f.name == c.metadata_key) {
            return Err(S3vError::invalid(
                format!("{at}.metadataKey"),
                format!("{:?} is configured twice", c.metadata_key),
            ));
        }
        let language = match c.language.as_deref() {
            None => Language::Standard,
            Some("standard") => {
                return Err(S3vError::invalid(
                    format!("{at}.language"),
                    "must be one of en, fr, es, pt, it, de, nl, zh, ja, ko",
                ))
            }
            Some(code) => Language::from_code(code).map_err(|_| {
                S3vError::invalid(
                    format!("{at}.language"),
                    "must be one of en, fr, es, pt, it, de, nl, zh, ja, ko",
                )
            })?,
        };
        if let Some(status) = c.status.as_deref().filter(|s| !matches!(*s, "ACTIVE" | "BUILDING")) {
            return Err(S3vError::invalid(
                format!("{at}.status"),
                format!("{status:?} is not ACTIVE or BUILDING"),
            ));
        }
        out.push(TextField {
            name: c.metadata_key.clone(),
            column: metadata::METADATA_COLUMN.to_string(),
            json_key: Some(c.metadata_key.clone()),
            language,
        });
    }
    Ok(out)
}

/// An index's configurations as the service reports them.
pub fn configs_of(fields: &[TextField]) -> Vec<TextSearchConfiguration> {
    fields
        .iter()
        .map(|f| TextSearchConfiguration {
            metadata_key: f.name.clone(),
            language: (f.language != Language::Standard).then(|| f.language.code().to_string()),
            status: Some("ACTIVE".into()),
        })
        .collect()
}

/// `queryTexts`, checked against the index's fields.
pub fn query_texts(value: &Value, fields: &[TextField]) -> S3vResult<Vec<TextQuery>> {
    let texts: Vec<QueryText> =
        serde_json::from_value(value.clone()).map_err(|e| S3vError::invalid("queryTexts", e.to_string()))?;
    if texts.is_empty() || texts.len() > 10 {
        return Err(S3vError::invalid("queryTexts", "1 to 10 queries"));
    }
    let mut out: Vec<TextQuery> = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let at = format!("queryTexts[{i}]");
        check_key(&format!("{at}.metadataKey"), &t.metadata_key)?;
        if t.text.is_empty() || t.text.len() > MAX_QUERY_TEXT_BYTES {
            return Err(S3vError::invalid(
                format!("{at}.text"),
                format!("1 to {MAX_QUERY_TEXT_BYTES} characters"),
            ));
        }
        if !fields.iter().any(|f| f.name == t.metadata_key) {
            return Err(S3vError::invalid(
                format!("{at}.metadataKey"),
                format!("{:?} is not full-text searchable in this index", t.metadata_key),
            ));
        }
        if out.iter().any(|q| q.field == t.metadata_key) {
            return Err(S3vError::invalid(
                format!("{at}.metadataKey"),
                "each query names a distinct metadata key",
            ));
        }
        out.push(TextQuery::new(&t.metadata_key, &t.text));
    }
    Ok(out)
}

/// A full-text or hybrid QueryVectors: one page of `topK` results.
pub async fn query(
    open: &OpenIndex,
    input: &QueryVectorsInput,
    vector: Option<Vec<f32>>,
    texts: Vec<TextQuery>,
    params: SearchParams,
    distance_of: impl Fn(f32) -> f32,
) -> S3vResult<Response> {
    let hybrid = vector.is_some();
    let results = open
        .index
        .query(&HybridQuery {
            vector,
            texts: texts.clone(),
            params,
        })
        .await?;
    let mut vectors = Vec::with_capacity(results.hits.len());
    for hit in &results.hits {
        let Some(row) = &hit.attributes else { continue };
        let Some(key) = stored_key(row) else { continue };
        let distance = hit.distance.map(&distance_of);
        let scores = input.return_scores.unwrap_or(false).then(|| {
            let bm25: Vec<Value> = texts
                .iter()
                .zip(&hit.bm25)
                .filter_map(|(t, s)| s.map(|s| json!({"metadataKey": t.field, "score": s})))
                .collect();
            let mut scores = json!({ "bm25Scores": bm25 });
            if hybrid {
                if let Some(f) = hit.fused {
                    scores["fused"] = json!(f);
                }
                if let Some(d) = distance {
                    scores["vectorDistance"] = json!(d);
                }
            }
            scores
        });
        let mut out = serde_json::to_value(QueryOutputVector {
            key: key.to_string(),
            distance: if input.return_distance { distance } else { None },
            metadata: input.return_metadata.then(|| metadata::stored_metadata(row)),
        })
        .map_err(|e| S3vError::internal(e.to_string()))?;
        if let Some(scores) = scores {
            out["scores"] = scores;
        }
        vectors.push(out);
    }
    Ok(ok(
        &json!({ "vectors": vectors, "distanceMetric": open.record.distance_metric }),
    ))
}

pub async fn update_metadata_configuration(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api: &VectorApi| {
        let input: UpdateMetadataConfigurationInput = parse(body).await?;
        let (bucket, name) = index_of(
            &api.catalog,
            input.vector_bucket_name,
            input.index_name,
            input.index_arn,
        )?;
        let open = api.catalog.index(&bucket, &name).await?;
        let mut fields = open.index.version().text_fields;
        match (input.add, input.delete) {
            (Some(add), None) => {
                let add: Add = serde_json::from_value(add).map_err(|e| S3vError::invalid("add", e.to_string()))?;
                for f in fields_of(&add.text_search_configurations, "add.textSearchConfigurations")? {
                    if fields.iter().any(|g| g.name == f.name) {
                        return Err(S3vError::invalid(
                            "add.textSearchConfigurations",
                            format!("{:?} is full-text searchable already", f.name),
                        ));
                    }
                    fields.push(f);
                }
                if fields.len() > MAX_TEXT_FIELDS {
                    return Err(S3vError::invalid(
                        "add.textSearchConfigurations",
                        format!("an index has at most {MAX_TEXT_FIELDS} configurations"),
                    ));
                }
            }
            (None, Some(delete)) => {
                let delete: Delete =
                    serde_json::from_value(delete).map_err(|e| S3vError::invalid("delete", e.to_string()))?;
                if delete.text_search_configurations.is_empty() || delete.text_search_configurations.len() > 10 {
                    return Err(S3vError::invalid("delete.textSearchConfigurations", "1 to 10 keys"));
                }
                for (i, k) in delete.text_search_configurations.iter().enumerate() {
                    let before = fields.len();
                    fields.retain(|f| f.name != k.metadata_key);
                    if fields.len() == before {
                        return Err(S3vError::invalid(
                            format!("delete.textSearchConfigurations[{i}].metadataKey"),
                            format!("{:?} is not full-text searchable in this index", k.metadata_key),
                        ));
                    }
                }
            }
            (Some(_), Some(_)) => return Err(S3vError::invalid("add", "give add or delete, not both")),
            (None, None) => return Err(S3vError::invalid("add", "give add or delete")),
        }
        open.index.set_text_fields(fields).await?;
        Ok(ok(&json!({"indexArn": api.catalog.index_arn(&bucket, &name)})))
    })
    .await
}
