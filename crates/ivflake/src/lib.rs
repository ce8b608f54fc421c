//! ivflake serves Faiss IVF indexes straight from object storage.
//!
//! Opening an index reads only its header (coarse quantizer, pre-transforms,
//! codec parameters, list sizes). A search runs the quantizer on a compute
//! pool, fetches every probed inverted list in one concurrent wave of range
//! GETs through the [`FetchScheduler`], and scans the fetched buffers with
//! Faiss's own scanners. See `docs/ARCHITECTURE.md` for the flow of one
//! search and the map of files.
//!
//! Modules, from the bottom of the dependency graph up (each uses only those
//! before it; `docs/ARCHITECTURE.md` has the map of files): `error` (the one
//! error type), `framing` (magic, version, xxh3 trailer of ivflake's own
//! files), `config` (tuning as data), `stats`, `compute` (the Faiss thread
//! pool), `location` (URI to store), `layout` (list byte ranges), `object` (a
//! pinned version and its verifier), `probes` (probe counts), `manifest` (the
//! checksum sidecar), `fetch` (the scheduler: plan, single-flight loads, the
//! GET path, hedging, the disk tier), `attributes` (the Parquet attributes
//! beside an index: filter language, per-list summaries, typed values,
//! reading and writing) and `index` (open; the search pipeline and its
//! stages; options; preload and warm-up).
//!
//! ```no_run
//! # async fn demo() -> ivflake::Result<()> {
//! let index = ivflake::IvfIndex::open("s3://bucket/index.faiss").await?;
//! let query = vec![0.0f32; index.info().d];
//! let results = index.search(&query, 10, 16).await?;
//! println!("{:?} {:?}", results.query(0), results.stats);
//! # Ok(()) }
//! ```

// Declared alphabetically (rustfmt's order); the dependency order is in the
// crate doc above and in docs/ARCHITECTURE.md.
pub mod attributes;
mod commit;
mod compute;
mod config;
mod error;
mod fetch;
mod framing;
mod index;
mod layout;
mod location;
mod manifest;
mod mutable;
mod object;
mod probes;
mod stats;
pub mod text;

pub use attributes::filter::{AttributeFilter, CmpOp, FilterLimits, FilterParser, Literal};
pub use attributes::rows::from_json_rows as attributes_from_json;
pub use attributes::value::{AttributeRow, AttributeValue};
pub use attributes::write::{write_attributes, BuildInput, ParquetTable};
pub use attributes::{Attributes, ATTRIBUTES_SUFFIX};
pub use commit::Sequence;
pub use compute::ComputePool;
pub use config::{default_retry, DiskCacheConfig, FetchConfig, HedgeConfig, StorePrices};
pub use error::{Error, Result};
pub use fetch::{
    BackgroundLoad, CacheReport, FetchCounters, FetchScheduler, ListRequest, BACKGROUND_GETS, BACKGROUND_GET_BYTES,
};
pub use index::{
    FilterProbing, IdFilterSpec, IndexMemory, IvfIndex, ManifestMode, OpenOptions, OpenStats, Preload, PreloadState,
    PreloadStatus, ResidualTable, SearchParams, SearchResults, WarmReport, WarmSpec, DEFAULT_ID_MAP_MEMORY_BYTES,
    DEFAULT_PRELOAD_CACHE_FRACTION, DEFAULT_RESIDUAL_TABLE_BYTES, HEADER_PROBE_BYTES, MAX_K, MAX_K_FACTOR,
    MAX_OPEN_REQUESTS, MAX_RESULT_SLOTS,
};
pub use ivflake_faiss::{
    release_free_memory, served_types, IdMapInfo, IndexInfo, IvfKind, ListFormat, Metric, OnDiskInfo, RefineInfo,
};
pub use layout::{ListRange, ListRanges};
pub use location::IndexLocation;
pub use manifest::{Manifest, ManifestList, MANIFEST_SUFFIX};
pub use mutable::{
    CompactOptions, CompactReport, GcReport, HybridHit, HybridQuery, HybridResults, KeptRow, ListedIds, MutableIndex,
    MutableOptions, Staleness, Version, MAX_GET_IDS, MAX_LIST_IDS,
};
pub use object::{IndexObject, ListVerifier};
pub use stats::{Residency, SearchStats, StoreCost};
