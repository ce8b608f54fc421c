//! Server configuration: a TOML file where every setting has a default, so an
//! empty file (or none) is a working server. Secrets never live here: the
//! bearer token and store credentials come from the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ServerError;
use crate::names::validate_name;

mod compaction;
mod limits;
mod pricing;
pub mod vectors;

pub use compaction::{CompactionConfig, CompactionMode};
pub use limits::Limits;
pub use pricing::PricingConfig;
pub use vectors::VectorsConfig;

/// The whole server configuration (`ivflake.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default: exposing the server is a choice.
    pub listen: SocketAddr,
    /// Indexes served from startup, by name.
    pub indexes: BTreeMap<String, IndexConfig>,
    /// Search parameters a request may leave out.
    pub defaults: SearchDefaults,
    pub limits: Limits,
    pub cache: CacheConfig,
    pub fetch: FetchSettings,
    pub http: HttpSettings,
    pub auth: AuthConfig,
    /// Indexes added at run time (`POST /v1/indexes`) must have a URI starting
    /// with one of these prefixes. Empty: adding at run time is refused.
    pub allowed_uri_prefixes: Vec<String>,
    /// Threads of the Faiss compute pool; 0 means one per core.
    pub compute_threads: usize,
    /// Where per-index state (probe counts) persists across restarts; none by default.
    pub state_dir: Option<PathBuf>,
    /// On shutdown, `/readyz` turns 503 at once, and the server keeps
    /// accepting requests this long so a load balancer notices before
    /// connections are refused. 0 (the default) stops accepting at once;
    /// behind a balancer, a few of its health-check periods (e.g. 5000).
    pub shutdown_ready_delay_ms: u64,
    /// Once the server stops accepting, searches in flight get this long to
    /// finish before the process exits anyway.
    pub shutdown_grace_ms: u64,
    /// Any request still running after this is answered 504 (JSON error
    /// body); a safety net behind each search's own deadline, sized for slow
    /// warm-ups and reloads. At least `limits.max_timeout_ms`.
    pub request_timeout_ms: u64,
    /// The Amazon S3 Vectors API over a root prefix (off unless `root` is set).
    pub vectors: VectorsConfig,
    /// What the store charges: each search's cost in its stats and metrics.
    pub pricing: PricingConfig,
    /// Who compacts: the server in the background, or a separate worker.
    pub compaction: CompactionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            indexes: BTreeMap::new(),
            defaults: SearchDefaults::default(),
            limits: Limits::default(),
            cache: CacheConfig::default(),
            fetch: FetchSettings::default(),
            http: HttpSettings::default(),
            auth: AuthConfig::default(),
            allowed_uri_prefixes: Vec::new(),
            compute_threads: 0,
            state_dir: None,
            shutdown_ready_delay_ms: 0,
            shutdown_grace_ms: 30_000,
            request_timeout_ms: 300_000,
            vectors: VectorsConfig::default(),
            pricing: PricingConfig::default(),
            compaction: CompactionConfig::default(),
        }
    }
}

/// One index: where it lives, and per-index defaults and limits that
/// override the server-wide ones.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Where the index lives: `s3://bucket/key`, `gs://…`, `az://…`, `file:///…` or a path.
    pub uri: String,
    pub k: Option<usize>,
    pub nprobe: Option<usize>,
    pub max_k: Option<usize>,
    pub max_nprobe: Option<usize>,
    pub max_batch: Option<usize>,
    /// The most bytes of lists one search of this index may read; at most
    /// the server's `limits.max_bytes_per_search`.
    pub max_bytes_per_search: Option<u64>,
    /// The most bytes IVF-PQ's precomputed residual table may take for this
    /// index (nlist × M × 256 floats for 8-bit PQ); 0 never builds it. Unset:
    /// 64 MiB. Without it searches compute each scanned list's table instead.
    pub residual_table_max_bytes: Option<u64>,
    /// An IndexIDMap's user ids (8 bytes each) are held in memory when they
    /// take at most this, else read per search (and id filters are refused).
    /// Unset: 64 MiB. At most `limits.max_id_map_memory_bytes`.
    pub id_map_memory_bytes: Option<u64>,
    /// Load this index's lists into the memory cache in the background after
    /// open (and after each reload), so novel queries find them in memory:
    /// `off` (unset) or `auto`: every list when they fit
    /// `preload_max_cache_fraction` of the cache's free room, else the lists
    /// probed most in earlier runs (saved under `state_dir`) that fit.
    pub preload: Option<PreloadSetting>,
    /// The share of the memory cache a preload may fill; unset: 0.25.
    pub preload_max_cache_fraction: Option<f64>,
    /// The checksum sidecar (`<index>.ivfmanifest`): `auto` (unset; used
    /// when present), `require` (no open, nor reload, without one that
    /// describes the file) or `ignore`.
    #[schema(value_type = Option<String>)]
    pub manifest: Option<ivflake::ManifestMode>,
    /// `uri` is the prefix of a mutable index (`ivflake create`): searches
    /// see its writes, and the upsert, delete and compact routes take them.
    pub writable: bool,
    /// A writable index compacts in the background once this many entries
    /// are unindexed (in the log); unset: 100,000. 0 never compacts.
    pub compact_unindexed_entries: Option<u64>,
}

/// The `preload` setting of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PreloadSetting {
    Off,
    Auto,
}

impl IndexConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            ..Self::default()
        }
    }

    /// The library's preload option for this index.
    pub fn preload_options(&self) -> ivflake::Preload {
        match self.preload {
            Some(PreloadSetting::Auto) => ivflake::Preload::Auto {
                max_cache_fraction: self
                    .preload_max_cache_fraction
                    .unwrap_or(ivflake::DEFAULT_PRELOAD_CACHE_FRACTION),
            },
            _ => ivflake::Preload::Off,
        }
    }

    /// Checks the per-index settings against the server-wide ones (the
    /// config at load, and `POST /v1/indexes`); an error names the key.
    pub fn check(&self, defaults: &SearchDefaults, limits: &Limits) -> Result<(), (&'static str, String)> {
        for (key, value) in [("k", self.k), ("nprobe", self.nprobe)] {
            if value == Some(0) {
                return Err((key, "must be at least 1".into()));
            }
        }
        // An index may tighten the server's limits, never loosen them (nor
        // set one to 0).
        for (key, value, limit) in [
            ("max_k", self.max_k.map(|v| v as u64), limits.max_k as u64),
            (
                "max_nprobe",
                self.max_nprobe.map(|v| v as u64),
                limits.max_nprobe as u64,
            ),
            ("max_batch", self.max_batch.map(|v| v as u64), limits.max_batch as u64),
            (
                "max_bytes_per_search",
                self.max_bytes_per_search,
                limits.max_bytes_per_search,
            ),
        ] {
            match value {
                Some(0) => return Err((key, "must be at least 1".into())),
                Some(v) if v > limit => {
                    return Err((key, format!("{v} is above the server's limits.{key} = {limit}")));
                }
                _ => {}
            }
        }
        let max_k = self.max_k.unwrap_or(limits.max_k);
        let k = self.k.unwrap_or(defaults.k);
        if k > max_k {
            return Err(("k", format!("the default k = {k} is above max_k = {max_k}")));
        }
        let max_nprobe = self.max_nprobe.unwrap_or(limits.max_nprobe);
        let nprobe = self.nprobe.unwrap_or(defaults.nprobe);
        if nprobe > max_nprobe {
            return Err((
                "nprobe",
                format!("the default nprobe = {nprobe} is above max_nprobe = {max_nprobe}"),
            ));
        }
        if let Err(e) = self.preload_options().validate() {
            return Err(("preload_max_cache_fraction", e.to_string()));
        }
        if let Some(bytes) = self.id_map_memory_bytes {
            if bytes > limits.max_id_map_memory_bytes {
                return Err((
                    "id_map_memory_bytes",
                    format!(
                        "{bytes} is above the server's limits.max_id_map_memory_bytes = {}",
                        limits.max_id_map_memory_bytes
                    ),
                ));
            }
        }
        if let Some(bytes) = self.residual_table_max_bytes {
            if bytes > limits.max_residual_table_bytes {
                return Err((
                    "residual_table_max_bytes",
                    format!(
                        "{bytes} is above the server's limits.max_residual_table_bytes = {}",
                        limits.max_residual_table_bytes
                    ),
                ));
            }
        }
        let fraction = self
            .preload_max_cache_fraction
            .unwrap_or(ivflake::DEFAULT_PRELOAD_CACHE_FRACTION);
        if fraction > limits.max_preload_cache_fraction {
            return Err((
                "preload_max_cache_fraction",
                format!(
                    "{fraction} is above the server's limits.max_preload_cache_fraction = {}",
                    limits.max_preload_cache_fraction
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchDefaults {
    pub k: usize,
    /// Lists probed when neither the request nor the index config says;
    /// capped at the index's nlist.
    pub nprobe: usize,
    /// A search's deadline when the request gives no `timeout_ms`.
    pub timeout_ms: u64,
}

impl Default for SearchDefaults {
    fn default() -> Self {
        Self {
            k: 10,
            nprobe: 16,
            timeout_ms: 10_000,
        }
    }
}

/// Cache budgets, shared by every index of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub memory_bytes: u64,
    /// A directory for the disk cache tier; none disables it.
    pub disk_dir: Option<PathBuf>,
    pub disk_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: ivflake::FetchConfig::default().memory_cache_bytes,
            disk_dir: None,
            // 10 GiB: several times the memory tier, small beside a data disk.
            disk_bytes: 10 << 30,
        }
    }
}

/// Object-store fetch limits (see `ivflake::FetchConfig` for the reasons behind each default).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSettings {
    pub max_in_flight: usize,
    pub max_in_flight_per_search: usize,
    pub get_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Hedge slow GETs with a second request.
    pub hedge: bool,
}

impl Default for FetchSettings {
    fn default() -> Self {
        let lib = ivflake::FetchConfig::default();
        Self {
            max_in_flight: lib.max_in_flight,
            max_in_flight_per_search: lib.max_in_flight_per_search,
            get_timeout_ms: lib.get_timeout.as_millis() as u64,
            request_timeout_ms: lib.request_timeout.as_millis() as u64,
            connect_timeout_ms: lib.connect_timeout.as_millis() as u64,
            hedge: false,
        }
    }
}

/// Client connections: a cap and time-outs, so slow or idle clients cannot
/// hold the server's memory, file descriptors or request slots for long.
/// Served as HTTP/1.1 (hyper); each time-out closes the connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Most client connections open at once. At the cap the server stops
    /// accepting (new clients wait in the kernel's accept queue) until one
    /// closes; the time-outs below see to it that slow ones do. An idle
    /// connection costs tens of KiB, so 4,096 is about 100 MiB at worst. The
    /// server raises its open-file limit to this plus `FD_HEADROOM`.
    pub max_connections: usize,
    /// A request's head (request line and headers) must arrive in full
    /// within this. hyper starts the clock whenever a connection waits for a
    /// head, right after accept and after each response, so this is also
    /// the idle keep-alive time-out. 10 s covers a head over a slow mobile
    /// link many times; a well-behaved client sends it in one packet.
    pub header_read_timeout_ms: u64,
    /// Keep connections open between requests (HTTP/1.1 keep-alive), each
    /// closed after `header_read_timeout_ms` without a new request.
    pub keep_alive: bool,
    /// Longest wait for the next piece of a request body: a client that
    /// stops sending mid-body gets 408 and is disconnected this long after.
    pub body_stall_timeout_ms: u64,
    /// A whole request body must arrive within this, which sets the floor
    /// rate: at least `max_body_bytes` / this (0.5 MiB/s for the defaults'
    /// largest body, far less for a typical one). Slower senders get 408.
    pub body_read_timeout_ms: u64,
    /// Longest a response may wait for the client to read more of it: a
    /// client that stops reading is disconnected this long after, and the
    /// response's memory freed.
    pub response_stall_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            keep_alive: true,
            body_stall_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            response_stall_timeout_ms: 10_000,
        }
    }
}

/// File descriptors the server needs besides client connections: the
/// listener, object-store connections (`fetch.max_in_flight` and hedges),
/// disk-cache files, logs. Generous: descriptors cost nothing until used.
pub const FD_HEADROOM: usize = 1024;

/// Above this a connection cap no longer protects anything (and semaphore
/// permits top out near here).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// Bearer-token auth, with two scopes. Each token is read from the
/// environment variable named here; auth is on when either is set and
/// non-empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The admin token's variable: the admin may do everything.
    pub token_env: String,
    /// The search token's variable: it may search, list and read index
    /// status, metrics and the OpenAPI document; adding, removing, reloading
    /// and warming get 403.
    pub search_token_env: String,
    /// The write token's variable: what the search token may do, and the
    /// writes of writable indexes (upsert, delete, compact).
    pub write_token_env: String,
    /// The admin token, filled from the environment by
    /// [`ServerConfig::resolve_env`] (or set directly by embedders and
    /// tests). Never read from the file.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// The search token, likewise.
    #[serde(skip)]
    pub search_token: Option<Secret>,
    /// The write token, likewise.
    #[serde(skip)]
    pub write_token: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_env: "IVFLAKE_API_TOKEN".into(),
            search_token_env: "IVFLAKE_SEARCH_TOKEN".into(),
            write_token_env: "IVFLAKE_WRITE_TOKEN".into(),
            token: None,
            search_token: None,
            write_token: None,
        }
    }
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl ServerConfig {
    /// Parses a TOML config. Unknown keys are errors, so typos do not pass silently.
    pub fn from_toml(text: &str) -> Result<Self, ServerError> {
        Self::parse(text, None)
    }

    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ServerError> {
        toml::from_str(text).map_err(|e| ServerError::ConfigSyntax {
            path: path.map(Path::to_path_buf),
            reason: e.to_string(),
        })
    }

    /// Fills the settings that come from the environment (the bearer tokens).
    pub fn resolve_env(&mut self) {
        self.vectors.resolve_env();
        let auth = &mut self.auth;
        for (slot, var) in [
            (&mut auth.token, &auth.token_env),
            (&mut auth.search_token, &auth.search_token_env),
            (&mut auth.write_token, &auth.write_token_env),
        ] {
            if slot.is_none() && !var.is_empty() {
                if let Ok(token) = std::env::var(var) {
                    // A token file read into the variable often ends in a newline.
                    let token = token.trim();
                    if !token.is_empty() {
                        *slot = Some(Secret(token.to_string()));
                    }
                }
            }
        }
    }

    /// Checks the settings make sense together; every error names the key.
    pub fn validate(&self) -> Result<(), ServerError> {
        let invalid = |key: &str, reason: String| {
            Err(ServerError::InvalidSetting {
                key: key.to_string(),
                reason,
            })
        };
        if let Err((key, reason)) = self.vectors.validate() {
            return invalid(&key, reason);
        }
        for checked in [self.pricing.validate(), self.compaction.validate()] {
            if let Err((key, reason)) = checked {
                return invalid(key, reason);
            }
        }
        let l = &self.limits;
        if !(l.max_k_factor >= 1.0 && l.max_k_factor <= ivflake::MAX_K_FACTOR) {
            return invalid(
                "limits.max_k_factor",
                format!(
                    "must be between 1 and {}, got {}",
                    ivflake::MAX_K_FACTOR,
                    l.max_k_factor
                ),
            );
        }
        for (key, value) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_batch", l.max_batch),
            ("limits.max_k", l.max_k),
            ("limits.max_nprobe", l.max_nprobe),
            ("limits.max_queries_in_flight", l.max_queries_in_flight),
            ("limits.max_requests_in_flight", l.max_requests_in_flight),
            ("limits.max_name_len", l.max_name_len),
            ("limits.max_filter_depth", l.max_filter_depth),
            ("limits.max_filter_conditions", l.max_filter_conditions),
            ("limits.max_filter_in_values", l.max_filter_in_values),
            ("limits.max_filter_values", l.max_filter_values),
            ("limits.max_filter_string_bytes", l.max_filter_string_bytes),
            ("limits.max_indexes", l.max_indexes),
            ("defaults.k", self.defaults.k),
            ("defaults.nprobe", self.defaults.nprobe),
            ("fetch.max_in_flight", self.fetch.max_in_flight),
            ("fetch.max_in_flight_per_search", self.fetch.max_in_flight_per_search),
            ("http.max_connections", self.http.max_connections),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("limits.max_bytes_per_search", l.max_bytes_per_search),
            ("http.header_read_timeout_ms", self.http.header_read_timeout_ms),
            ("http.body_stall_timeout_ms", self.http.body_stall_timeout_ms),
            ("http.body_read_timeout_ms", self.http.body_read_timeout_ms),
            ("http.response_stall_timeout_ms", self.http.response_stall_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        let tokens = [
            ("auth.token_env", &self.auth.token),
            ("auth.search_token_env", &self.auth.search_token),
            ("auth.write_token_env", &self.auth.write_token),
        ];
        for (i, (_, a)) in tokens.iter().enumerate() {
            for (key, b) in &tokens[i + 1..] {
                if a.is_some() && a == b {
                    return invalid(key, "two scopes share one token; give each scope its own".into());
                }
            }
        }
        if !(l.max_preload_cache_fraction > 0.0 && l.max_preload_cache_fraction <= 1.0) {
            return invalid(
                "limits.max_preload_cache_fraction",
                format!("{} is not in (0, 1]", l.max_preload_cache_fraction),
            );
        }
        if self.indexes.len() > l.max_indexes {
            return invalid(
                "limits.max_indexes",
                format!(
                    "the config serves {} indexes, over {}",
                    self.indexes.len(),
                    l.max_indexes
                ),
            );
        }
        if l.max_k > ivflake::MAX_K {
            return invalid(
                "limits.max_k",
                format!("{} is above the library's limit of {}", l.max_k, ivflake::MAX_K),
            );
        }
        if l.max_batch > l.max_queries_in_flight {
            return invalid(
                "limits.max_batch",
                format!(
                    "{} is larger than limits.max_queries_in_flight = {}: such a batch could never be admitted",
                    l.max_batch, l.max_queries_in_flight
                ),
            );
        }
        if l.max_body_bytes_in_flight < l.max_body_bytes {
            return invalid(
                "limits.max_body_bytes_in_flight",
                format!(
                    "{} is below limits.max_body_bytes = {}: the largest body could never be read",
                    l.max_body_bytes_in_flight, l.max_body_bytes
                ),
            );
        }
        for (key, value) in [
            ("limits.max_queries_in_flight", l.max_queries_in_flight),
            ("limits.max_requests_in_flight", l.max_requests_in_flight),
            ("limits.max_body_bytes_in_flight", l.max_body_bytes_in_flight),
        ] {
            if value > u32::MAX as usize {
                return invalid(key, format!("{value} is too large (at most {})", u32::MAX));
            }
        }
        if self.http.max_connections > MAX_CONNECTIONS_LIMIT {
            return invalid(
                "http.max_connections",
                format!(
                    "{} is too large (at most {MAX_CONNECTIONS_LIMIT})",
                    self.http.max_connections
                ),
            );
        }
        if self.defaults.timeout_ms == 0 || self.defaults.timeout_ms > l.max_timeout_ms {
            return invalid(
                "defaults.timeout_ms",
                format!(
                    "{} is not between 1 and limits.max_timeout_ms = {}",
                    self.defaults.timeout_ms, l.max_timeout_ms
                ),
            );
        }
        if self.defaults.k > l.max_k {
            return invalid(
                "defaults.k",
                format!("{} is above limits.max_k = {}", self.defaults.k, l.max_k),
            );
        }
        if self.defaults.nprobe > l.max_nprobe {
            return invalid(
                "defaults.nprobe",
                format!("{} is above limits.max_nprobe = {}", self.defaults.nprobe, l.max_nprobe),
            );
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms < l.max_timeout_ms {
            return invalid(
                "request_timeout_ms",
                format!(
                    "must be at least 1 and at least limits.max_timeout_ms = {}, got {}: it is the safety net behind every search's deadline",
                    l.max_timeout_ms, self.request_timeout_ms
                ),
            );
        }
        for (name, index) in &self.indexes {
            validate_name(name, l.max_name_len).map_err(|reason| ServerError::InvalidIndexName {
                name: name.clone(),
                reason,
            })?;
            if index.uri.is_empty() {
                return Err(ServerError::InvalidIndexSetting {
                    index: name.clone(),
                    key: "uri",
                    reason: "is empty".into(),
                });
            }
            index
                .check(&self.defaults, l)
                .map_err(|(key, reason)| ServerError::InvalidIndexSetting {
                    index: name.clone(),
                    key,
                    reason,
                })?;
        }
        Ok(())
    }

    /// The library's fetch configuration these settings describe.
    pub fn fetch_config(&self) -> ivflake::FetchConfig {
        let f = &self.fetch;
        ivflake::FetchConfig {
            max_in_flight: f.max_in_flight,
            max_in_flight_per_search: f.max_in_flight_per_search,
            memory_cache_bytes: self.cache.memory_bytes,
            get_timeout: Duration::from_millis(f.get_timeout_ms),
            request_timeout: Duration::from_millis(f.request_timeout_ms),
            connect_timeout: Duration::from_millis(f.connect_timeout_ms),
            hedge: f.hedge.then(ivflake::HedgeConfig::default),
            disk_cache: self.cache.disk_dir.as_ref().map(|dir| ivflake::DiskCacheConfig {
                dir: dir.clone(),
                capacity_bytes: self.cache.disk_bytes,
            }),
            prices: self.pricing.prices(),
            ..ivflake::FetchConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid() {
        let c = ServerConfig::from_toml("").unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = ServerConfig::from_toml("[limits]\nmax_kk = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("max_kk"), "{e:#}");
    }

    #[test]
    fn bad_index_names_are_rejected() {
        let c = ServerConfig::from_toml("[indexes.\"../x\"]\nuri = \"a.faiss\"\n").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn inconsistent_settings_name_their_key() {
        for (toml, key) in [
            ("[defaults]\nnprobe = 2000\n", "defaults.nprobe"),
            ("request_timeout_ms = 0\n", "request_timeout_ms"),
            ("request_timeout_ms = 1000\n", "request_timeout_ms"),
            (
                "[limits]\nmax_requests_in_flight = 0\n",
                "limits.max_requests_in_flight",
            ),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[http]\nmax_connections = 99999999\n", "http.max_connections"),
            ("[http]\nheader_read_timeout_ms = 0\n", "http.header_read_timeout_ms"),
            ("[http]\nbody_read_timeout_ms = 0\n", "http.body_read_timeout_ms"),
            ("[indexes.a]\nuri = \"a\"\nk = 2000\n", "indexes.a.k"),
            ("[indexes.a]\nuri = \"a\"\nmax_k = 5\n", "indexes.a.k"),
            ("[indexes.a]\nuri = \"a\"\nnprobe = 5000\n", "indexes.a.nprobe"),
            ("[indexes.a]\nuri = \"a\"\nmax_nprobe = 4\n", "indexes.a.nprobe"),
            ("[indexes.a]\nuri = \"a\"\nmax_batch = 5000\n", "indexes.a.max_batch"),
            ("[indexes.a]\nuri = \"a\"\nmax_batch = 0\n", "indexes.a.max_batch"),
        ] {
            let e = ServerConfig::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(e.to_string().starts_with(key), "{toml}: {e}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
