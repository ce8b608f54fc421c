//! ivflake serves Faiss IVF indexes straight from object storage.
//!
//! Opening an index reads only its header (coarse quantizer, pre-transforms,
//! codec parameters, list sizes). A search runs the quantizer on a compute
//! pool, fetches every probed inverted list in one concurrent wave of range
//! GETs through the [`FetchScheduler`], and scans the fetched buffers with
//! Faiss's own scanners. See `docs/ARCHITECTURE.md`.
//!
//! ```no_run
//! # async fn demo() -> ivflake::Result<()> {
//! let index = ivflake::IvfIndex::open("s3://bucket/index.faiss").await?;
//! let query = vec![0.0f32; index.info().d];
//! let results = index.search(&query, 10, 16).await?;
//! println!("{:?} {:?}", results.query(0), results.stats);
//! # Ok(()) }
//! ```

mod compute;
mod disk_cache;
mod error;
mod fetch;
mod index;
mod layout;
mod location;
mod manifest;
mod stats;
mod warm;

pub use compute::ComputePool;
pub use disk_cache::DiskCacheConfig;
pub use error::{Error, Result};
pub use fetch::{
    CacheReport, FetchConfig, FetchCounters, FetchScheduler, HedgeConfig, IndexObject, ListRequest, ListVerifier,
};
pub use index::{
    IdFilterSpec, IvfIndex, ManifestMode, OpenOptions, SearchParams, SearchResults, HEADER_PROBE_BYTES, MAX_K,
    MAX_OPEN_REQUESTS, MAX_RESULT_SLOTS,
};
pub use ivflake_faiss::{IndexInfo, Metric};
pub use layout::{ListLayout, ListRange};
pub use location::{default_retry, IndexLocation};
pub use manifest::{Manifest, ManifestList, MANIFEST_SUFFIX};
pub use stats::SearchStats;
pub use warm::{Residency, WarmReport, WarmSpec};
