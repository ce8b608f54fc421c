//! Request and response bodies of the HTTP API (JSON), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::config::IndexConfig;

/// A batch search (`Content-Type: application/json`). The server reads it
/// with a streaming parser that enforces the limits as it goes; this type is
/// its schema, and a typed body for Rust clients.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Query vectors, each with the index's `d` finite values.
    pub vectors: Vec<Vec<f32>>,
    /// Neighbours per query; the index's or server's default when left out.
    pub k: Option<usize>,
    /// Lists probed per query; the index's or server's default (capped at nlist) when left out.
    pub nprobe: Option<usize>,
    /// Which ids may be returned (unchanged by attribute filters: it still
    /// takes only `allow`, `deny` or `range`, and combines with `attribute_filter`).
    pub filter: Option<ivflake::IdFilterSpec>,
    /// Only rows whose attributes match, in Amazon S3 Vectors' filter
    /// language: `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`,
    /// `$exists`, `$and`, `$or`; several keys mean AND, `{"field": value}`
    /// means `$eq`. A bad filter is a 400 whose `field` is its JSON path,
    /// e.g. `attribute_filter.price.$gt`. Needs the index's attributes object.
    #[schema(value_type = Option<Object>, example = json!({"category": {"$eq": "shoes"}, "price": {"$lt": 50}}))]
    pub attribute_filter: Option<serde_json::Value>,
    /// Attribute columns to return with each hit.
    pub return_attributes: Option<Vec<String>>,
    /// Return what could be scanned when some lists fail to fetch (they are named in the stats).
    #[serde(default)]
    pub allow_partial: bool,
    /// The search's deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Refined indexes (`IndexRefine`): candidates re-ranked per result,
    /// `k × k_factor` in all; the file's when left out. At most
    /// `limits.max_k_factor`; ignored by an index without a refine stage.
    pub k_factor: Option<f32>,
}

/// Query-string parameters of a binary search (`Content-Type: application/octet-stream`,
/// body = `rows × d` little-endian float32). `rows` may come as the `X-Ivflake-Rows` header instead.
/// A JSON search ignores the query string: its options are in the body.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BinarySearchParams {
    /// Binary bodies only: number of vectors in the body.
    pub rows: Option<usize>,
    /// Binary bodies only: the vectors' dimension; checked against the index's when given.
    pub d: Option<usize>,
    /// Binary bodies only: neighbours per query.
    pub k: Option<usize>,
    /// Binary bodies only: lists probed per query.
    pub nprobe: Option<usize>,
    /// Binary bodies only: candidates re-ranked per result by a refine index.
    pub k_factor: Option<f32>,
    /// Binary bodies only: the search's deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Binary bodies only: return what could be scanned when some lists fail.
    pub allow_partial: Option<bool>,
    /// Binary bodies only: only these ids, comma-separated (at most `limits.max_filter_ids`,
    /// and the whole URI must fit the server's header limits; larger lists go in a JSON body).
    pub allow: Option<String>,
    /// Binary bodies only: any id but these, comma-separated (limits as `allow`).
    pub deny: Option<String>,
    /// Binary bodies only: ids in `start..end` (end excluded), as `start,end`.
    pub range: Option<String>,
}

/// Neighbours of one query, nearest first; id -1 where fewer than k were found.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    pub ids: Vec<i64>,
    pub distances: Vec<f32>,
    /// With `return_attributes`: per hit, the asked columns (`null` for a -1 id).
    /// The library's typed values become JSON here, at the edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub attributes: Option<Vec<Option<ivflake::AttributeRow>>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub index: String,
    /// The index version (object ETag) every result of this response came from.
    pub version: String,
    /// Counts the versions this index name has served since the server started.
    pub generation: u64,
    pub k: usize,
    pub nprobe: usize,
    /// One entry per query vector, in order.
    pub results: Vec<QueryResult>,
    /// What the search read, from where, and where its time went.
    #[schema(value_type = Object)]
    pub stats: ivflake::SearchStats,
}

/// What the server knows about one index.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexStatus {
    pub name: String,
    /// Where the index lives; shown to the admin token only (and to every
    /// client when auth is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Faiss type, e.g. `IndexIVFPQ[IndexFlat]`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub d: usize,
    /// `l2` or `inner_product`.
    pub metric: String,
    pub ntotal: i64,
    pub nlist: usize,
    pub code_size: usize,
    /// The object's ETag (or size) of the version being served.
    pub version: String,
    pub generation: u64,
    /// Size of the index object in the store.
    pub bytes_on_store: u64,
    /// Whether a checksum sidecar describing the file was found at open:
    /// every fetched list is then verified.
    pub checksum_sidecar: bool,
    pub default_k: usize,
    pub default_nprobe: usize,
    /// Lists and bytes of this index held in the memory and disk caches.
    #[schema(value_type = Object)]
    pub residency: serde_json::Value,
    /// What the opened header holds in memory, by part: `quantizer_bytes`,
    /// `codec_bytes`, `transform_bytes`, `residual_table_bytes` (with the
    /// table's full `residual_table_size` and `residual_table_build_us`) and
    /// `layout_bytes`.
    #[schema(value_type = Object)]
    pub memory: ivflake::IndexMemory,
    /// What opening this version cost: `gets`, `bytes` of the index file, `ms`.
    pub open: ivflake::OpenStats,
    /// The background preload (`preload` in the index's config): `state`
    /// (`off`, `skipped` with a `reason`, `running`, `done`), the lists and
    /// bytes planned, and what has loaded so far.
    pub preload: ivflake::PreloadStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IndexList {
    pub indexes: Vec<IndexStatus>,
}

/// Adds an index at run time; its URI must be under an allowed prefix. The
/// settings are those of an `[indexes.NAME]` table of the config file.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddIndexRequest {
    pub name: String,
    #[serde(flatten)]
    pub index: IndexConfig,
    /// Keys neither of the above knows: refused, naming the first
    /// (`deny_unknown_fields` does not work through `flatten`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    pub index: String,
    /// False when the object had not changed.
    pub changed: bool,
    pub previous_version: String,
    pub version: String,
    pub generation: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoveResponse {
    pub index: String,
    pub removed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexes: Option<usize>,
}
