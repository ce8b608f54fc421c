//! What callers say about an open and a search: options, parameters, the id
//! filter and the results. Plain data and their checks; no I/O.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ivflake_faiss::IdFilter;
use serde::{Deserialize, Serialize};

use crate::attributes::filter::AttributeFilter;
use crate::attributes::value::AttributeRow;
#[allow(unused_imports)] // named in a doc link
use crate::attributes::value::AttributeValue;
use crate::compute::ComputePool;
use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::fetch::FetchScheduler;
use crate::stats::SearchStats;

/// The largest `k` a search accepts. Faiss keeps a k-sized heap per query;
/// beyond this, callers want an export, not a search.
pub const MAX_K: usize = 10_000;
/// The most result slots (queries × k) one call may ask for: 12 bytes each,
/// so about 120 MB of output at most.
pub const MAX_RESULT_SLOTS: usize = 10_000_000;
/// Open reads this many bytes first; most headers fit, so open is one GET.
pub const HEADER_PROBE_BYTES: u64 = 1024 * 1024;
/// A header that needs more rounds than this is not a header we should trust.
pub const MAX_OPEN_REQUESTS: usize = 8;
/// How to open an index. The default gives each open its own scheduler
/// (and so its own cache budget); a process serving several indexes passes
/// one shared `scheduler` to all of them, as `ivflake serve` does.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub scheduler: Arc<FetchScheduler>,
    pub compute: ComputePool,
    pub header_probe_bytes: u64,
    /// Where per-index probe counts persist across restarts; `None` keeps them in memory.
    pub state_dir: Option<PathBuf>,
    /// Whether to look for the checksum sidecar `ivflake manifest` writes.
    pub manifest: ManifestMode,
    /// Whether IVF-PQ's precomputed residual table is built at open.
    pub residual_table: ResidualTable,
    /// Whether list data is loaded into the memory cache in the background after open.
    pub preload: Preload,
    /// The `index` label of this index's search metrics (`ivflake serve`
    /// gives the name it serves it under); the URI when `None`.
    pub metrics_name: Option<String>,
    /// An `IndexIDMap`'s user ids are loaded at open when they take at most
    /// this many bytes (8 an id), and read by page for each search's
    /// results otherwise. Id filters on such an index need the map loaded.
    pub id_map_memory_bytes: u64,
}

/// Default of [`OpenOptions::id_map_memory_bytes`]: 8M ids.
pub const DEFAULT_ID_MAP_MEMORY_BYTES: u64 = 64 << 20;
/// The largest `k_factor` a search may ask for (as the shim allows a file's).
pub const MAX_K_FACTOR: f32 = 1024.0;

/// The share of the memory cache [`Preload::auto`] may fill.
pub const DEFAULT_PRELOAD_CACHE_FRACTION: f64 = 0.25;

/// What open loads into the memory cache in the background, so that novel
/// queries find their lists in memory (see `index/preload.rs`). Searches run
/// meanwhile and use what has arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Preload {
    /// Nothing: lists load when searches probe them.
    #[default]
    Off,
    /// Every list, when all of them fit in `max_cache_fraction` of the memory
    /// cache (and in its free room); otherwise, as many of the lists probed
    /// most in earlier runs (saved under `state_dir`) as fit.
    Auto { max_cache_fraction: f64 },
}

impl Preload {
    /// [`Preload::Auto`] with [`DEFAULT_PRELOAD_CACHE_FRACTION`].
    pub fn auto() -> Self {
        Self::Auto {
            max_cache_fraction: DEFAULT_PRELOAD_CACHE_FRACTION,
        }
    }

    /// A fraction must be in (0, 1].
    pub fn validate(self) -> Result<()> {
        match self {
            Self::Auto { max_cache_fraction: f } if !(f > 0.0 && f <= 1.0) => Err(Error::invalid(
                "preload",
                format!("max_cache_fraction must be in (0, 1], got {f}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The residual table budget [`ResidualTable::default`] allows: the table is
/// nlist × M × 256 floats for 8-bit PQ (128 MiB at IVF4096,PQ32). Measured
/// (docs/benchmarks.md): a 32 MiB table saves 3% of a warm query, a 128 MiB
/// one costs 10–27% (it no longer fits the caches), so keep the small ones.
pub const DEFAULT_RESIDUAL_TABLE_BYTES: u64 = 64 << 20;

/// What open does about IVF-PQ's precomputed residual table, which Faiss
/// builds at load for residual codes under an L2 quantizer: at large nlist
/// it is most of an index's memory and open time. Without it each search
/// computes, per list it scans, the table of that list (same results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualTable {
    /// Never build it.
    Off,
    /// Always, as `faiss.read_index` does.
    On,
    /// When it takes at most `max_bytes`.
    Auto { max_bytes: u64 },
}

impl Default for ResidualTable {
    fn default() -> Self {
        Self::Auto {
            max_bytes: DEFAULT_RESIDUAL_TABLE_BYTES,
        }
    }
}

impl ResidualTable {
    /// The most bytes a table may take under this setting.
    pub fn max_bytes(self) -> u64 {
        match self {
            Self::Off => 0,
            Self::On => u64::MAX,
            Self::Auto { max_bytes } => max_bytes,
        }
    }
}

/// What open does about the checksum sidecar (`<index>.ivfmanifest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ManifestMode {
    /// Use it when present and describing this file; otherwise log why and
    /// serve unverified. Open asks for the sidecar and the header together:
    /// 2 GETs in one round trip.
    #[default]
    Auto,
    /// Do not look: open takes 1 request for most headers.
    Ignore,
    /// Refuse to open without a sidecar that describes this file.
    Require,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            scheduler: FetchScheduler::new(FetchConfig::default()),
            compute: ComputePool::global(),
            header_probe_bytes: HEADER_PROBE_BYTES,
            state_dir: None,
            manifest: ManifestMode::Auto,
            residual_table: ResidualTable::default(),
            preload: Preload::Off,
            metrics_name: None,
            id_map_memory_bytes: DEFAULT_ID_MAP_MEMORY_BYTES,
        }
    }
}

/// Which ids a search may return (Faiss's `IDSelector`s). In JSON, as the
/// HTTP API takes it: `{"allow": [...]}`, `{"deny": [...]}` or
/// `{"range": {"start": s, "end": e}}`; no filter at all is [`IdFilterSpec::All`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IdFilterSpec {
    /// Every id (the JSON form is no filter).
    #[default]
    #[serde(skip)]
    All,
    /// Only these ids.
    Allow(Vec<i64>),
    /// Any id but these.
    Deny(Vec<i64>),
    /// Ids in `start..end` (end excluded).
    Range { start: i64, end: i64 },
}

impl IdFilterSpec {
    /// Checks what Faiss would not: a range must not run backwards.
    pub fn validate(&self) -> Result<()> {
        if let IdFilterSpec::Range { start, end } = *self {
            if start > end {
                return Err(Error::invalid(
                    "filter",
                    format!("range start {start} is after end {end}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `id` passes (the same test Faiss's selector makes).
    pub(crate) fn allows(&self, id: i64, set: &std::collections::HashSet<i64>) -> bool {
        match self {
            IdFilterSpec::All => true,
            IdFilterSpec::Allow(_) => set.contains(&id),
            IdFilterSpec::Deny(_) => !set.contains(&id),
            IdFilterSpec::Range { start, end } => (*start..*end).contains(&id),
        }
    }

    /// The ids an allow or deny list names, as a set for [`IdFilterSpec::allows`].
    pub(crate) fn id_set(&self) -> std::collections::HashSet<i64> {
        match self {
            IdFilterSpec::Allow(ids) | IdFilterSpec::Deny(ids) => ids.iter().copied().collect(),
            _ => Default::default(),
        }
    }

    pub(crate) fn as_faiss(&self) -> IdFilter<'_> {
        match self {
            IdFilterSpec::All => IdFilter::All,
            IdFilterSpec::Allow(ids) => IdFilter::Allow(ids),
            IdFilterSpec::Deny(ids) => IdFilter::Deny(ids),
            IdFilterSpec::Range { start, end } => IdFilter::Range(*start, *end),
        }
    }
}

/// Everything about one search call besides the vectors.
#[derive(Debug, Clone)]
pub struct SearchParams {
    pub k: usize,
    pub nprobe: usize,
    pub filter: IdFilterSpec,
    /// Return what could be scanned when some lists fail, naming them in the stats.
    pub allow_partial: bool,
    /// The whole search fails with `DeadlineExceeded` past this.
    pub deadline: Option<Duration>,
    /// Only rows whose attributes match (needs the attributes object beside
    /// the index); combines with `filter` (both must pass).
    pub attribute_filter: Option<AttributeFilter>,
    /// Attribute columns to return with each hit (fetched for the hits' lists only).
    pub return_attributes: Vec<String>,
    /// How far a filtered search probes past `nprobe` when few rows match.
    pub probing: FilterProbing,
    /// The most bytes of lists (and attribute chunks) the search may read,
    /// from the sizes the header gives: a search needing more is refused
    /// before any GET (`InvalidArgument` on `max_bytes_per_search`), and
    /// probing past `nprobe` stops short of it. `None`: no bound.
    pub max_bytes: Option<u64>,
    /// Refined indexes (`IndexRefine`): the scan keeps `k × k_factor`
    /// candidates for the refine stage; `None` takes the file's. Ignored by
    /// an index without a refine stage.
    pub k_factor: Option<f32>,
}

/// Probing past `nprobe` for selective attribute filters: lists are added in
/// order of centroid distance, a wave at a time, until every query has seen
/// `k × matches_per_k` matching rows or a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterProbing {
    /// Matching rows a query wants to have scanned, per result it returns.
    /// More than 1 because the first `k` matches found are rarely the `k`
    /// nearest: 4 keeps recall@10 above 0.8 at 0.3% selectivity (see the
    /// attribute tests), at the cost of a few more lists.
    pub matches_per_k: usize,
    /// Lists one query may look at beyond `nprobe`, in centroid order
    /// (pruned ones count too, though they cost no I/O).
    pub max_extra_lists: usize,
    /// Bytes (codes and attribute chunks) the extra lists of one search may fetch.
    pub max_extra_bytes: u64,
}

impl Default for FilterProbing {
    fn default() -> Self {
        Self {
            matches_per_k: 4,
            // A filtered search may read up to 8x the lists an unfiltered one
            // reads (64 extra at nprobe 8): beyond that, a brute-force scan of
            // the matching rows is the better plan.
            max_extra_lists: 64,
            max_extra_bytes: 256 * 1024 * 1024,
        }
    }
}

impl FilterProbing {
    /// No probing past `nprobe`: the lists an unfiltered search would scan.
    pub fn none() -> Self {
        Self {
            max_extra_lists: 0,
            ..Self::default()
        }
    }
}

impl SearchParams {
    pub fn new(k: usize, nprobe: usize) -> Self {
        Self {
            k,
            nprobe,
            filter: IdFilterSpec::All,
            allow_partial: false,
            deadline: None,
            attribute_filter: None,
            return_attributes: Vec::new(),
            probing: FilterProbing::default(),
            max_bytes: None,
            k_factor: None,
        }
    }
}

/// Results of a batch: `k` ids and distances per query, row-major, `-1` ids
/// where fewer than `k` neighbours were found.
#[derive(Debug, Clone)]
pub struct SearchResults {
    pub k: usize,
    pub ids: Vec<i64>,
    pub distances: Vec<f32>,
    /// With `return_attributes`: per hit (row-major like `ids`), the asked
    /// columns by name, typed as their columns are ([`AttributeValue::Null`]
    /// where a value is missing); `None` for a `-1` id.
    pub attributes: Option<Vec<Option<AttributeRow>>>,
    pub stats: SearchStats,
}

impl SearchResults {
    pub fn len(&self) -> usize {
        self.ids.len().checked_div(self.k).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids and distances of query `i`.
    pub fn query(&self, i: usize) -> (&[i64], &[f32]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.ids[r.clone()], &self.distances[r])
    }
}
