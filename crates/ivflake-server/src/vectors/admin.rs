//! The bucket, index, policy, mode and tagging operations. Policies and
//! tags are stored and returned as given; IAM policies are not enforced
//! (access is by the access keys' scopes).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde_json::json;

use super::catalog::{check_name, now_secs, BucketRecord, Catalog, IndexRecord, Settings};
use super::error::{S3vError, S3vResult};
use super::wire::*;
use super::{check_range, ok, parse, run, VectorApi};
use crate::routes::AppState;

/// Most tags on one resource (as in AWS).
const MAX_TAGS: usize = 50;
/// Most bytes of a bucket policy (as in S3).
const MAX_POLICY_BYTES: usize = 20 * 1024;
/// Results per page of the list operations, by default and at most.
const LIST_PAGE: i64 = 500;

/// The bucket a request names, by name or ARN (exactly one).
pub fn bucket_of(catalog: &Catalog, name: Option<String>, arn: Option<String>) -> S3vResult<String> {
    match (name, arn) {
        (Some(name), None) => {
            check_name("vectorBucketName", &name)?;
            Ok(name)
        }
        (None, Some(arn)) => match catalog.parse_arn("vectorBucketArn", &arn)? {
            (bucket, None) => Ok(bucket),
            (_, Some(_)) => Err(S3vError::invalid("vectorBucketArn", "names an index, not a bucket")),
        },
        _ => Err(S3vError::invalid(
            "vectorBucketName",
            "give exactly one of vectorBucketName and vectorBucketArn",
        )),
    }
}

/// The index a request names: bucket and index names, or the index ARN.
pub fn index_of(
    catalog: &Catalog,
    bucket: Option<String>,
    index: Option<String>,
    arn: Option<String>,
) -> S3vResult<(String, String)> {
    match (bucket, index, arn) {
        (Some(bucket), Some(index), None) => {
            check_name("vectorBucketName", &bucket)?;
            check_name("indexName", &index)?;
            Ok((bucket, index))
        }
        (None, None, Some(arn)) => match catalog.parse_arn("indexArn", &arn)? {
            (bucket, Some(index)) => Ok((bucket, index)),
            (_, None) => Err(S3vError::invalid("indexArn", "names a bucket, not an index")),
        },
        _ => Err(S3vError::invalid(
            "indexArn",
            "give either vectorBucketName and indexName, or indexArn",
        )),
    }
}

fn check_mode(member: &str, mode: &str) -> S3vResult<()> {
    if matches!(mode, "CLASSIC" | "ENHANCED") {
        Ok(())
    } else {
        Err(S3vError::invalid(member, "must be CLASSIC or ENHANCED"))
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> S3vResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(S3vError::invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(S3vError::invalid(
                format!("tags.{k}"),
                "a tag key is 1 to 128 characters and a value at most 256",
            ));
        }
    }
    Ok(())
}

fn check_encryption(e: &Option<EncryptionConfiguration>) -> S3vResult<()> {
    if let Some(e) = e {
        if let Some(t) = &e.sse_type {
            if !matches!(t.as_str(), "AES256" | "aws:kms") {
                return Err(S3vError::invalid(
                    "encryptionConfiguration.sseType",
                    "must be AES256 or aws:kms",
                ));
            }
        }
    }
    Ok(())
}

pub async fn create_vector_bucket(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: CreateVectorBucketInput = parse(body).await?;
        check_name("vectorBucketName", &input.vector_bucket_name)?;
        check_encryption(&input.encryption_configuration)?;
        let tags = input.tags.unwrap_or_default();
        check_tags(&tags)?;
        let record = BucketRecord {
            name: input.vector_bucket_name.clone(),
            created: now_secs(),
            encryption: input.encryption_configuration,
        };
        api.catalog
            .create_bucket(
                record,
                Settings {
                    tags,
                    ..Settings::default()
                },
            )
            .await?;
        Ok(ok(
            &json!({"vectorBucketArn": api.catalog.bucket_arn(&input.vector_bucket_name)}),
        ))
    })
    .await
}

pub async fn get_vector_bucket(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: BucketRef = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        let record = api.catalog.bucket(&name).await?;
        let settings = api.catalog.settings(&[&name]).await?;
        Ok(ok(&json!({"vectorBucket": VectorBucketOut {
            vector_bucket_arn: api.catalog.bucket_arn(&name),
            vector_bucket_name: name,
            creation_time: record.created,
            encryption_configuration: Some(record.encryption.clone().unwrap_or_else(|| EncryptionConfiguration {
                sse_type: Some("AES256".into()),
                kms_key_arn: None,
            })),
            default_index_mode: Some(settings.mode.unwrap_or_else(|| "CLASSIC".into())),
        }})))
    })
    .await
}

/// One page of `names` (sorted) after the token's position, with `prefix`.
fn page(
    api: &VectorApi,
    binding: &str,
    names: Vec<String>,
    input_prefix: Option<&str>,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> S3vResult<(Vec<String>, Option<String>)> {
    let limit = max_results.unwrap_or(LIST_PAGE);
    check_range("maxResults", limit, 1, LIST_PAGE)?;
    if let Some(p) = input_prefix {
        if p.is_empty() || p.len() > 63 {
            return Err(S3vError::invalid("prefix", "is 1 to 63 characters"));
        }
    }
    let after = next_token
        .map(|t| api.tokens.redeem("nextToken", t, binding))
        .transpose()?;
    let mut matching = names
        .into_iter()
        .filter(|n| input_prefix.is_none_or(|p| n.starts_with(p)))
        .filter(|n| after.as_ref().is_none_or(|a| n > a));
    let page: Vec<String> = matching.by_ref().take(limit as usize).collect();
    let more = matching.next().is_some();
    let token = match (more, page.last()) {
        (true, Some(last)) => Some(api.tokens.issue(binding, last)),
        _ => None,
    };
    Ok((page, token))
}

/// A record that may have been deleted since its name was listed: `None` then.
fn unless_gone<T>(found: S3vResult<T>) -> S3vResult<Option<T>> {
    match found {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind == super::Kind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A listing's answer: `items` under `member`, and the next page's token.
pub(super) fn listing<T: serde::Serialize>(member: &str, items: Vec<T>, token: Option<String>) -> Response {
    let mut out = json!({ member: items });
    if let Some(t) = token {
        out["nextToken"] = json!(t);
    }
    ok(&out)
}

pub async fn list_vector_buckets(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: ListInput = parse(body).await?;
        if input.vector_bucket_name.is_some() || input.vector_bucket_arn.is_some() {
            return Err(S3vError::invalid("body", "ListVectorBuckets takes no bucket"));
        }
        let binding = format!("ListVectorBuckets/{}", input.prefix.as_deref().unwrap_or(""));
        let names = api.catalog.bucket_names().await?;
        let (names, token) = page(
            api,
            &binding,
            names,
            input.prefix.as_deref(),
            input.max_results,
            input.next_token.as_deref(),
        )?;
        let mut buckets = Vec::with_capacity(names.len());
        for name in names {
            if let Some(record) = unless_gone(api.catalog.bucket(&name).await)? {
                buckets.push(BucketSummary {
                    vector_bucket_arn: api.catalog.bucket_arn(&name),
                    vector_bucket_name: name,
                    creation_time: record.created,
                });
            }
        }
        Ok(listing("vectorBuckets", buckets, token))
    })
    .await
}

pub async fn delete_vector_bucket(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: BucketRef = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        api.catalog.delete_bucket(&name).await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn put_vector_bucket_policy(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: PolicyInput = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        let policy = input.policy.ok_or_else(|| S3vError::invalid("policy", "is required"))?;
        if policy.len() > MAX_POLICY_BYTES || serde_json::from_str::<serde_json::Value>(&policy).is_err() {
            return Err(S3vError::invalid(
                "policy",
                format!("must be a JSON policy document of at most {MAX_POLICY_BYTES} bytes"),
            ));
        }
        api.catalog.bucket(&name).await?;
        api.catalog
            .update_settings(&[&name], |s| s.policy = Some(policy))
            .await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn get_vector_bucket_policy(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: PolicyInput = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        api.catalog.bucket(&name).await?;
        let settings = api.catalog.settings(&[&name]).await?;
        match settings.policy {
            Some(policy) => Ok(ok(&json!({ "policy": policy }))),
            None => Err(S3vError::not_found(format!("vector bucket {name} has no policy"))),
        }
    })
    .await
}

pub async fn delete_vector_bucket_policy(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: PolicyInput = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        api.catalog.bucket(&name).await?;
        api.catalog.update_settings(&[&name], |s| s.policy = None).await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn put_default_index_mode(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: DefaultIndexModeInput = parse(body).await?;
        let name = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        check_mode("defaultIndexMode", &input.default_index_mode)?;
        api.catalog.bucket(&name).await?;
        api.catalog
            .update_settings(&[&name], |s| s.mode = Some(input.default_index_mode))
            .await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn create_index(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: CreateIndexInput = parse(body).await?;
        let bucket = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        check_name("indexName", &input.index_name)?;
        if input.data_type != "float32" {
            return Err(S3vError::invalid("dataType", "must be float32"));
        }
        check_range("dimension", input.dimension, 1, 4096)?;
        if !matches!(input.distance_metric.as_str(), "euclidean" | "cosine") {
            return Err(S3vError::invalid("distanceMetric", "must be euclidean or cosine"));
        }
        let metadata = input.metadata_configuration.unwrap_or_default();
        if metadata.non_filterable_metadata_keys.len() > 10 {
            return Err(S3vError::invalid(
                "metadataConfiguration.nonFilterableMetadataKeys",
                "at most 10 keys",
            ));
        }
        for (i, k) in metadata.non_filterable_metadata_keys.iter().enumerate() {
            if k.is_empty() || k.len() > 63 {
                return Err(S3vError::invalid(
                    format!("metadataConfiguration.nonFilterableMetadataKeys[{i}]"),
                    "a metadata key is 1 to 63 bytes",
                ));
            }
        }
        let text_fields = super::text::fields_of(
            &metadata.text_search_configurations,
            "metadataConfiguration.textSearchConfigurations",
        )?;
        check_encryption(&input.encryption_configuration)?;
        let tags = input.tags.unwrap_or_default();
        check_tags(&tags)?;
        api.catalog.bucket(&bucket).await?;
        let mode = api
            .catalog
            .settings(&[&bucket])
            .await?
            .mode
            .unwrap_or_else(|| "CLASSIC".into());
        let record = IndexRecord {
            bucket: bucket.clone(),
            name: input.index_name.clone(),
            created: now_secs(),
            dimension: input.dimension as usize,
            distance_metric: input.distance_metric,
            data_type: input.data_type,
            metadata,
            encryption: input.encryption_configuration,
            mode,
        };
        // The index trains its IVF factory at its first compaction; until
        // then it is searched exactly (`factory_for` at that count).
        let factory = api.config.factory_for(input.dimension as usize, 1 << 20);
        api.catalog
            .create_index(
                record,
                Settings {
                    tags,
                    ..Settings::default()
                },
                &factory,
                text_fields,
            )
            .await?;
        Ok(ok(
            &json!({"indexArn": api.catalog.index_arn(&bucket, &input.index_name)}),
        ))
    })
    .await
}

pub async fn get_index(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: IndexRef = parse(body).await?;
        let (bucket, name) = index_of(
            &api.catalog,
            input.vector_bucket_name,
            input.index_name,
            input.index_arn,
        )?;
        let record = api.catalog.index_record(&bucket, &name).await?;
        let settings = api.catalog.settings(&[&bucket, "indexes", &name]).await?;
        // Text configurations as the index holds them now (they change).
        let mut metadata = record.metadata.clone();
        metadata.text_search_configurations =
            super::text::configs_of(&api.catalog.index(&bucket, &name).await?.index.version().text_fields);
        let metadata = (metadata != super::wire::MetadataConfiguration::default()).then_some(metadata);
        Ok(ok(&json!({"index": IndexOut {
            index_arn: api.catalog.index_arn(&bucket, &name),
            vector_bucket_name: bucket,
            index_name: name,
            creation_time: record.created,
            data_type: record.data_type.clone(),
            dimension: record.dimension,
            distance_metric: record.distance_metric.clone(),
            metadata_configuration: metadata,
            encryption_configuration: record.encryption.clone(),
            index_mode: settings.mode.unwrap_or(record.mode),
        }})))
    })
    .await
}

pub async fn list_indexes(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: ListInput = parse(body).await?;
        let bucket = bucket_of(&api.catalog, input.vector_bucket_name, input.vector_bucket_arn)?;
        api.catalog.bucket(&bucket).await?;
        let binding = format!("ListIndexes/{bucket}/{}", input.prefix.as_deref().unwrap_or(""));
        let names = api.catalog.index_names(&bucket).await?;
        let (names, token) = page(
            api,
            &binding,
            names,
            input.prefix.as_deref(),
            input.max_results,
            input.next_token.as_deref(),
        )?;
        let mut indexes = Vec::with_capacity(names.len());
        for name in names {
            if let Some(record) = unless_gone(api.catalog.index_record(&bucket, &name).await)? {
                indexes.push(IndexSummary {
                    index_arn: api.catalog.index_arn(&bucket, &name),
                    vector_bucket_name: bucket.clone(),
                    index_name: name,
                    creation_time: record.created,
                });
            }
        }
        Ok(listing("indexes", indexes, token))
    })
    .await
}

pub async fn delete_index(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: IndexRef = parse(body).await?;
        let (bucket, name) = index_of(
            &api.catalog,
            input.vector_bucket_name,
            input.index_name,
            input.index_arn,
        )?;
        api.catalog.delete_index(&bucket, &name).await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn update_index_mode(State(state): State<AppState>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: IndexModeInput = parse(body).await?;
        let (bucket, name) = index_of(
            &api.catalog,
            input.vector_bucket_name,
            input.index_name,
            input.index_arn,
        )?;
        check_mode("indexMode", &input.index_mode)?;
        api.catalog.index_record(&bucket, &name).await?;
        let parts = [bucket.as_str(), "indexes", name.as_str()];
        api.catalog
            .update_settings(&parts, |s| s.mode = Some(input.index_mode))
            .await?;
        Ok(ok(&json!({})))
    })
    .await
}

/// The settings path of the resource an ARN names, after checking it exists.
async fn resource(api: &VectorApi, arn: &str) -> S3vResult<Vec<String>> {
    let arn = percent_encoding::percent_decode_str(arn)
        .decode_utf8()
        .map_err(|_| S3vError::invalid("resourceArn", "is not UTF-8"))?;
    match api.catalog.parse_arn("resourceArn", &arn)? {
        (bucket, None) => {
            api.catalog.bucket(&bucket).await?;
            Ok(vec![bucket])
        }
        (bucket, Some(index)) => {
            api.catalog.index_record(&bucket, &index).await?;
            Ok(vec![bucket, "indexes".into(), index])
        }
    }
}

pub async fn list_tags(State(state): State<AppState>, Path(arn): Path<String>) -> Response {
    run(state, async |_, api| {
        let parts = resource(api, &arn).await?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let settings = api.catalog.settings(&parts).await?;
        Ok(ok(&json!({ "tags": settings.tags })))
    })
    .await
}

pub async fn tag_resource(State(state): State<AppState>, Path(arn): Path<String>, body: Bytes) -> Response {
    run(state, async |_, api| {
        let input: TagsInput = parse(body).await?;
        let parts = resource(api, &arn).await?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut tags = api.catalog.settings(&parts).await?.tags;
        tags.extend(input.tags);
        check_tags(&tags)?;
        api.catalog.update_settings(&parts, |s| s.tags = tags).await?;
        Ok(ok(&json!({})))
    })
    .await
}

pub async fn untag_resource(
    State(state): State<AppState>,
    Path(arn): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    run(state, async |_, api| {
        let keys: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "tagKeys")
            .map(|(_, v)| v.into_owned())
            .collect();
        if keys.is_empty() {
            return Err(S3vError::invalid("tagKeys", "is required"));
        }
        let parts = resource(api, &arn).await?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        api.catalog
            .update_settings(&parts, |s| s.tags.retain(|k, _| !keys.contains(k)))
            .await?;
        Ok(ok(&json!({})))
    })
    .await
}
