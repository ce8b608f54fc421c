//! `[limits]`: the bounds on what one request, one filter, one index's
//! settings and the server as a whole may ask for. Each has a default; an
//! index may tighten them, never loosen them (`IndexConfig::check`).

use serde::Deserialize;

/// Request limits, checked after defaults are applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body. 32 MiB holds a 1,024 × 1,024 float batch as JSON.
    pub max_body_bytes: usize,
    /// Most query vectors in one request.
    pub max_batch: usize,
    pub max_k: usize,
    pub max_nprobe: usize,
    /// Largest `k_factor` a search of a refined index may ask for: the
    /// scan keeps `k × k_factor` candidates a query and the refine wave
    /// reads each one's code, so this bounds both.
    pub max_k_factor: f32,
    /// Longest `timeout_ms` a request may ask for.
    pub max_timeout_ms: u64,
    /// Most ids in an allow- or deny-list filter.
    pub max_filter_ids: usize,
    /// Admission control: query vectors being searched at once, across all
    /// requests. Past it, requests get 503 + Retry-After at once. On two cores a
    /// query costs about a millisecond of CPU, so 1,024 queued queries is
    /// about half a second of work: latency stays bounded.
    pub max_queries_in_flight: usize,
    /// Requests in flight across the server, counted once a request's body
    /// has arrived (a slow or stalled sender holds a connection, never one
    /// of these): past it a request gets 503 + Retry-After at once.
    pub max_requests_in_flight: usize,
    /// Bytes of request bodies being read or held, across the server. A
    /// request reserves its `Content-Length` (or `max_body_bytes` when it
    /// sends none) before its body is read, and keeps it until it is
    /// answered; past it, 503 + Retry-After at once. So bodies never hold
    /// more memory than this, however many connections send them.
    pub max_body_bytes_in_flight: usize,
    /// Longest index name, in bytes.
    pub max_name_len: usize,
    /// The most bytes of lists (and attribute chunks) one search may read,
    /// counted from the sizes the header gives before any GET: a search
    /// over it is refused (400 on `max_bytes_per_search`) and fetches
    /// nothing. Every byte read is held until the scan, so this bounds a
    /// request's memory too. 512 MiB: nprobe 64 over lists of 8 MiB.
    pub max_bytes_per_search: u64,
    /// Levels of `$and`/`$or` in an attribute filter.
    pub max_filter_depth: usize,
    /// Conditions (an operator on a column) in one attribute filter.
    pub max_filter_conditions: usize,
    /// Values in one `$in` or `$nin`.
    pub max_filter_in_values: usize,
    /// Values in a whole attribute filter.
    pub max_filter_values: usize,
    /// Bytes in one string of an attribute filter (a column, an operator, a value).
    pub max_filter_string_bytes: usize,
    /// Indexes served at once, those of the config file included; `POST
    /// /v1/indexes` past it gets a 409 (`too_many_indexes`).
    pub max_indexes: usize,
    /// The largest `residual_table_max_bytes` an index may set: the table
    /// stays in memory as long as the index is served.
    pub max_residual_table_bytes: u64,
    /// The largest `id_map_memory_bytes` an index may set: an IndexIDMap's
    /// user ids held in memory as long as the index is served.
    pub max_id_map_memory_bytes: u64,
    /// The largest `preload_max_cache_fraction` an index may set: one
    /// index's preload never fills more of the shared memory cache.
    pub max_preload_cache_fraction: f64,
    /// Most vectors (or ids) in one upsert or delete of a writable index:
    /// one request is one log record, held in memory until it is durable.
    pub max_write_rows: usize,
    /// Most ids in one get of a writable index's kept rows.
    pub max_get_ids: usize,
}

impl Limits {
    /// The attribute-filter bounds of these limits.
    pub fn filter_limits(&self) -> ivflake::FilterLimits {
        ivflake::FilterLimits {
            max_depth: self.max_filter_depth,
            max_conditions: self.max_filter_conditions,
            max_in_values: self.max_filter_in_values,
            max_total_values: self.max_filter_values,
            max_string_bytes: self.max_filter_string_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let filter = ivflake::FilterLimits::default();
        Self {
            max_body_bytes: 32 << 20,
            max_batch: 1024,
            max_k: 1000,
            max_nprobe: 1024,
            max_k_factor: 64.0,
            max_timeout_ms: 60_000,
            max_filter_ids: 100_000,
            max_queries_in_flight: 1024,
            // Room for a thousand concurrent clients with single-vector
            // searches, plus status and metrics requests.
            max_requests_in_flight: 2048,
            // Eight of the largest bodies, or thousands of typical ones.
            max_body_bytes_in_flight: 256 << 20,
            max_name_len: 64,
            max_bytes_per_search: 512 << 20,
            max_filter_depth: filter.max_depth,
            max_filter_conditions: filter.max_conditions,
            max_filter_in_values: filter.max_in_values,
            max_filter_values: filter.max_total_values,
            max_filter_string_bytes: filter.max_string_bytes,
            max_indexes: 1024,
            max_residual_table_bytes: 256 << 20,
            max_id_map_memory_bytes: 256 << 20,
            max_preload_cache_fraction: 0.5,
            max_write_rows: 10_000,
            max_get_ids: 1_000,
        }
    }
}
