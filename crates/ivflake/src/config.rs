//! Tuning of the fetch path: the scheduler, hedging, the disk tier and the
//! store clients. Plain data at the bottom of the crate; every default is
//! named and justified here. Owns no behaviour.

use std::path::PathBuf;
use std::time::Duration;

use object_store::RetryConfig;

/// Tuning of the scheduler. Every default is named and justified here.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// GETs in flight across the whole process. 64 keeps a 2-core box's
    /// connection pool busy without queueing inside the HTTP client.
    pub max_in_flight: usize,
    /// GETs in flight for one search, so one wide batch cannot take every slot.
    /// A cold search costs about ⌈GETs / this⌉ round trips; 32 covers nprobe
    /// 32 in one wave and leaves half the process-wide slots to others
    /// (docs/benchmarks.md: cold p50 48.0 → 24.9 ms at 20 ms per GET vs 16).
    pub max_in_flight_per_search: usize,
    /// Lists whose gap in the file is at most this many bytes share one GET.
    /// GETs run in parallel, so merging only pays while it saves a wave;
    /// past that the extra bytes cost time. 64 KiB kept cold p50 within 1 ms
    /// of the best gap in every measured run while reading at most 1.05×
    /// (Flat) to 3.2× (PQ16) the probed bytes; 256 KiB read up to 16.6×.
    pub coalesce_gap: u64,
    /// A merged GET never exceeds this many bytes.
    pub max_coalesced: u64,
    /// Lists larger than this are fetched as parallel part-GETs.
    pub split_threshold: u64,
    /// Size of each part of a split list.
    pub part_size: u64,
    /// Memory cache budget in bytes (0 disables caching, single-flight stays).
    pub memory_cache_bytes: u64,
    /// One GET attempt (including object_store's own retries) is abandoned after this.
    pub get_timeout: Duration,
    /// HTTP request timeout handed to object_store's client.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// object_store's retry policy for transient errors.
    pub retry: RetryConfig,
    /// A GET that exceeded `get_timeout` is re-sent this many times (object_store
    /// already retries transient HTTP errors inside one attempt).
    pub get_retries: u32,
    /// Hedged reads; `None` disables them.
    pub hedge: Option<HedgeConfig>,
    /// The local-disk tier under the memory cache; `None` (the default) disables it.
    pub disk_cache: Option<DiskCacheConfig>,
    /// What the store charges, to price each search (`SearchStats::cost`).
    pub prices: StorePrices,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            max_in_flight_per_search: 32,
            coalesce_gap: 64 * 1024,
            max_coalesced: 16 * 1024 * 1024,
            split_threshold: 32 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            memory_cache_bytes: 256 * 1024 * 1024,
            get_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: default_retry(),
            get_retries: 1,
            hedge: None,
            disk_cache: None,
            prices: StorePrices::default(),
        }
    }
}

/// What the store charges per request and per byte, in US dollars, to
/// price each search's requests. The default is S3 Standard's list price
/// in us-east-1: GETs $0.0004 and LISTs $0.005 per 1,000, and nothing per
/// byte read from an instance in the bucket's region (reading across
/// regions or out to the internet is charged per GB: set `per_gb`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorePrices {
    pub per_get: f64,
    pub per_list: f64,
    /// Per GB (2^30 bytes, as AWS bills) received.
    pub per_gb: f64,
}

impl Default for StorePrices {
    fn default() -> Self {
        Self {
            per_get: 0.0004 / 1000.0,
            per_list: 0.005 / 1000.0,
            per_gb: 0.0,
        }
    }
}

impl StorePrices {
    /// The price of `gets` GETs, `lists` LISTs and `bytes` received.
    pub fn price(&self, gets: u64, lists: u64, bytes: u64) -> f64 {
        gets as f64 * self.per_get + lists as f64 * self.per_list + bytes as f64 / (1u64 << 30) as f64 * self.per_gb
    }
}

/// Send a second GET when the first has not answered within the `percentile`
/// of recent GET latencies, at most `budget` extra GETs per GET made.
#[derive(Debug, Clone, Copy)]
pub struct HedgeConfig {
    pub percentile: f64,
    pub budget: f64,
    /// Never hedge sooner than this, whatever the percentile says.
    pub min_delay: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            percentile: 0.95,
            budget: 0.05,
            min_delay: Duration::from_millis(5),
        }
    }
}

/// Where the disk tier lives and how many bytes it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheConfig {
    pub dir: PathBuf,
    pub capacity_bytes: u64,
}

/// object_store's retry policy as ivflake tunes it: a search has a deadline of
/// its own, so a few quick retries beat object_store's default 180 s budget.
pub fn default_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(10),
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
    }
}
