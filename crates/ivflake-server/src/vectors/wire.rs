//! The request and response members of the S3 Vectors operations, as the
//! service definition (`botocore/data/s3vectors/2025-07-15`) names them.
//! Serde reads the shapes and types; the limits are checked by the
//! handlers, which name the member at fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which bucket a request names: by name or by ARN.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketRef {
    pub vector_bucket_name: Option<String>,
    pub vector_bucket_arn: Option<String>,
}

/// Which index a request names: bucket and index names, or the index ARN.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexRef {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataConfiguration {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_filterable_metadata_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_search_configurations: Vec<super::text::TextSearchConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateVectorBucketInput {
    pub vector_bucket_name: String,
    pub encryption_configuration: Option<EncryptionConfiguration>,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateIndexInput {
    pub vector_bucket_name: Option<String>,
    pub vector_bucket_arn: Option<String>,
    pub index_name: String,
    pub data_type: String,
    pub dimension: i64,
    pub distance_metric: String,
    pub metadata_configuration: Option<MetadataConfiguration>,
    pub encryption_configuration: Option<EncryptionConfiguration>,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInput {
    pub vector_bucket_name: Option<String>,
    pub vector_bucket_arn: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    pub vector_bucket_name: Option<String>,
    pub vector_bucket_arn: Option<String>,
    pub policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultIndexModeInput {
    pub vector_bucket_name: Option<String>,
    pub vector_bucket_arn: Option<String>,
    pub default_index_mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexModeInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub index_mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMetadataConfigurationInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub add: Option<Value>,
    pub delete: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VectorData {
    pub float32: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutInputVector {
    pub key: String,
    pub data: VectorData,
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutVectorsInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub vectors: Vec<PutInputVector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub keys: Vec<String>,
    #[serde(default)]
    pub return_data: bool,
    #[serde(default)]
    pub return_metadata: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListVectorsInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub segment_count: Option<i64>,
    pub segment_index: Option<i64>,
    #[serde(default)]
    pub return_data: bool,
    #[serde(default)]
    pub return_metadata: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryVectorsInput {
    pub vector_bucket_name: Option<String>,
    pub index_name: Option<String>,
    pub index_arn: Option<String>,
    pub top_k: i64,
    pub query_vector: Option<VectorData>,
    pub filter: Option<Value>,
    pub query_mode: Option<String>,
    #[serde(default)]
    pub return_metadata: bool,
    #[serde(default)]
    pub return_distance: bool,
    pub query_texts: Option<Value>,
    pub return_scores: Option<bool>,
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagsInput {
    pub tags: BTreeMap<String, String>,
}

/// `float32` data in a response.
#[derive(Debug, Serialize)]
pub struct VectorDataOut {
    pub float32: Vec<f32>,
}

/// A vector in GetVectors' and ListVectors' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputVector {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<VectorDataOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryOutputVector {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VectorBucketOut {
    pub vector_bucket_name: String,
    pub vector_bucket_arn: String,
    pub creation_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_index_mode: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketSummary {
    pub vector_bucket_name: String,
    pub vector_bucket_arn: String,
    pub creation_time: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOut {
    pub vector_bucket_name: String,
    pub index_name: String,
    pub index_arn: String,
    pub creation_time: f64,
    pub data_type: String,
    pub dimension: usize,
    pub distance_metric: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_configuration: Option<MetadataConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    pub index_mode: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexSummary {
    pub vector_bucket_name: String,
    pub index_name: String,
    pub index_arn: String,
    pub creation_time: f64,
}
