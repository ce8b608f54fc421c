//! `IvfIndex`: an index opened from its header, searched by fetching only the
//! lists each batch probes. This module holds the handle and its accessors.
//! Its parts: `options` (what callers pass), `open` (the steps of open),
//! `search` (one search from the caller's side, and the fetch waves),
//! `plan` (the pipeline's stages), `select` (the attribute select stage),
//! `scan` (the scan stage, runs of entries per list), `view` (fetched lists
//! as Faiss reads them), and loading lists ahead of searches: `preload`
//! (after open, in the background) and `warm` (on request).

mod entries;
mod open;
mod options;
mod plan;
mod preload;
mod rerank;
mod scan;
mod search;
mod select;
mod view;
mod warm;

use std::sync::Arc;

use ivflake_faiss::IndexInfo;

use crate::attributes::Attributes;
use crate::error::{Error, Result};
use crate::fetch::{FetchScheduler, ListRequest, VersionPin};
use crate::layout::ListRanges;
use crate::manifest::Manifest;
use crate::object::IndexObject;
use crate::probes::ProbeCounts;
use crate::stats::{Residency, SearchIo};
pub use options::{
    FilterProbing, IdFilterSpec, ManifestMode, OpenOptions, Preload, ResidualTable, SearchParams, SearchResults,
    DEFAULT_ID_MAP_MEMORY_BYTES, DEFAULT_PRELOAD_CACHE_FRACTION, DEFAULT_RESIDUAL_TABLE_BYTES, HEADER_PROBE_BYTES,
    MAX_K, MAX_K_FACTOR, MAX_OPEN_REQUESTS, MAX_RESULT_SLOTS,
};
pub use preload::{PreloadState, PreloadStatus};
use view::ListView;
pub use warm::{WarmReport, WarmSpec};

/// Lists per wave of [`IvfIndex::list_ids`]: bounded so reading a large
/// index's ids never holds more than this many lists in flight.
const LIST_IDS_WAVE: usize = 256;

struct Inner {
    faiss: ivflake_faiss::Index,
    info: IndexInfo,
    ranges: ListRanges,
    object: Arc<IndexObject>,
    /// Where the lists are: `object`, or an on-disk index's data object.
    lists_object: Arc<IndexObject>,
    /// An `IndexRefine`'s codes, read by candidate.
    refine: Option<entries::EntryRegion>,
    /// An `IndexIDMap`'s user ids.
    id_map: Option<rerank::IdMap>,
    /// As the caller gave them; `reload` opens the new version with the same.
    options: OpenOptions,
    probes: Arc<ProbeCounts>,
    memory: IndexMemory,
    open: OpenStats,
    /// The attributes object beside the index, read on first use (its
    /// footer: one GET); `None` inside when there is none.
    attributes: tokio::sync::OnceCell<Option<Arc<Attributes>>>,
    /// The background preload, when [`OpenOptions::preload`] asks for one.
    preload: std::sync::OnceLock<preload::Preloading>,
    /// Dropped with the last handle on this version: its memory entries go
    /// too. Holds the version's list table, where warm searches look lists up.
    pin: VersionPin,
    /// The `index` label of this index's metrics, shared (each search's
    /// metrics clone the `Arc`, not the string).
    metrics_name: Arc<str>,
}

/// What opening an index cost: requests, bytes and time, from the first
/// request to a searchable index (the background preload not included).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenStats {
    /// GETs sent: the sidecar's (when looked for), the header's, and any
    /// more the header or the block lists' sizes needed.
    pub gets: u64,
    /// Bytes of the index file received.
    pub bytes: u64,
    /// Milliseconds from the first request to a searchable index.
    pub ms: f64,
}

/// What one opened index holds in memory, by part (cached lists aside:
/// those are the scheduler's, see [`IvfIndex::residency`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexMemory {
    /// Centroids, and an HNSW quantizer's graph.
    pub quantizer_bytes: u64,
    /// PQ codebooks, SQ ranges.
    pub codec_bytes: u64,
    /// OPQ/PCA matrices.
    pub transform_bytes: u64,
    /// IVF-PQ's precomputed residual table, when built ([`ResidualTable`]).
    pub residual_table_bytes: u64,
    /// What the table would take; 0 when the codec has none.
    pub residual_table_size: u64,
    /// Time open spent building it, in microseconds.
    pub residual_table_build_us: u64,
    /// The header's list sizes, ivflake's list layout, and the memory
    /// cache's table of this version's lists (8 bytes a list).
    pub layout_bytes: u64,
    /// An `IndexIDMap`'s user ids, when loaded at open.
    pub id_map_bytes: u64,
}

impl IndexMemory {
    /// Every resident part together.
    pub fn total_bytes(&self) -> u64 {
        self.quantizer_bytes
            + self.codec_bytes
            + self.transform_bytes
            + self.residual_table_bytes
            + self.layout_bytes
            + self.id_map_bytes
    }
}

/// An IVF index served from object storage. Cheap to clone; clones share the header.
#[derive(Clone)]
pub struct IvfIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IvfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfIndex")
            .field("uri", &self.inner.object.uri())
            .field("info", &self.inner.info)
            .finish()
    }
}

impl IvfIndex {
    /// Opens the index at `uri` with default options.
    pub async fn open(uri: &str) -> Result<Self> {
        let options = OpenOptions::default();
        let location = crate::location::IndexLocation::parse(uri, options.scheduler.config())?;
        Self::open_at(location, options).await
    }

    /// Opens the object's current version at the same location with the same
    /// scheduler. Searches still running on `self` finish on the old version.
    pub async fn reload(&self) -> Result<Self> {
        // The new version resumes from the counts this one gathered.
        let probes = self.inner.probes.clone();
        match tokio::task::spawn_blocking(move || probes.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(uri = %self.uri(), error = %e, "cannot save probe counts"),
            Err(e) => tracing::warn!(uri = %self.uri(), error = %e, "saving probe counts failed"),
        }
        Self::open_at(self.inner.object.location.clone(), self.inner.options.clone()).await
    }

    /// [`IvfIndex::reload`] only when the object changed: one HEAD, and the
    /// open's GETs only when its ETag or size differ from this version's.
    /// `None` when it is the same object. A store that gives no ETag is
    /// always reopened, since its size alone cannot tell versions apart.
    pub async fn reload_if_changed(&self) -> Result<Option<Self>> {
        if let Some(e_tag) = self.e_tag() {
            let location = &self.inner.object.location;
            let limit = self.inner.options.scheduler.config().get_timeout;
            let meta = tokio::time::timeout(
                limit,
                object_store::ObjectStoreExt::head(&location.store, &location.path),
            )
            .await
            .map_err(|_| Error::DeadlineExceeded {
                deadline: limit,
                stage: "checking the index's version",
            })?
            .map_err(|e| Error::from_store(self.uri(), None, e))?;
            if meta.e_tag.as_deref() == Some(e_tag) && meta.size == self.file_len() {
                return Ok(None);
            }
        }
        self.reload().await.map(Some)
    }

    /// The parsed header, for the crate's writers (encoding new entries).
    pub(crate) fn faiss(&self) -> &ivflake_faiss::Index {
        &self.inner.faiss
    }

    pub fn info(&self) -> &IndexInfo {
        &self.inner.info
    }

    /// Where each inverted list lives in the file.
    pub fn list_ranges(&self) -> &ListRanges {
        &self.inner.ranges
    }

    pub fn uri(&self) -> &str {
        self.inner.object.uri()
    }

    /// What opening this version cost: GETs, bytes and time.
    pub fn open_stats(&self) -> OpenStats {
        self.inner.open
    }

    /// What this index holds in memory, by part.
    pub fn memory(&self) -> IndexMemory {
        self.inner.memory
    }

    /// Whether every fetched list is checked against a checksum sidecar
    /// (an on-disk index's: its data object's sidecar).
    pub fn is_verified(&self) -> bool {
        self.inner.lists_object.is_verified()
    }

    /// The ETag pinned at open, if the store gives one.
    pub fn e_tag(&self) -> Option<&str> {
        self.inner.object.e_tag.as_deref()
    }

    pub fn file_len(&self) -> u64 {
        self.inner.object.size
    }

    pub fn scheduler(&self) -> &Arc<FetchScheduler> {
        &self.inner.options.scheduler
    }

    /// The pinned object version: store, path, size, ETag.
    pub fn object(&self) -> &Arc<IndexObject> {
        &self.inner.object
    }

    /// The pinned object the lists are read from: [`IvfIndex::object`], or
    /// the data object of an index with on-disk lists.
    pub fn lists_object(&self) -> &Arc<IndexObject> {
        &self.inner.lists_object
    }

    /// The object and version pin a wave of `kind` reads from.
    fn wave_source(&self, kind: plan::WaveKind) -> (&Arc<IndexObject>, &VersionPin) {
        let entries = match kind {
            plan::WaveKind::Entries(rerank::EntryWave::Refine) => self.inner.refine.as_ref(),
            plan::WaveKind::Entries(rerank::EntryWave::IdMap) => match &self.inner.id_map {
                Some(rerank::IdMap::Paged(region)) => Some(region),
                _ => None,
            },
            _ => None,
        };
        match entries {
            Some(region) => (&region.object, &region.pin),
            None => (&self.inner.lists_object, &self.inner.pin),
        }
    }

    pub(crate) fn probes(&self) -> &ProbeCounts {
        &self.inner.probes
    }

    /// Builds the checksum sidecar of this version from one streamed read of
    /// the file; `progress` gets bytes read so far. See [`Manifest::build`].
    /// An on-disk index's file is all header: its sidecar hashes it whole,
    /// and [`IvfIndex::build_data_manifest`] its lists.
    pub async fn build_manifest(&self, progress: impl FnMut(u64) + Send) -> Result<Manifest> {
        if self.inner.ranges.is_on_disk() {
            let whole = ListRanges::header_only(self.file_len());
            return Manifest::build(&self.inner.object, &whole, progress).await;
        }
        Manifest::build(&self.inner.object, &self.inner.ranges, progress).await
    }

    /// The checksum sidecar of an on-disk index's data object (every list's
    /// place and hash, from one streamed read of it), written beside that
    /// object; `None` for an index whose lists are in its own file.
    pub async fn build_data_manifest(&self, progress: impl FnMut(u64) + Send) -> Result<Option<Manifest>> {
        if !self.inner.ranges.is_on_disk() {
            return Ok(None);
        }
        let lists = self.inner.ranges.lists_only();
        Manifest::build(&self.inner.lists_object, &lists, progress)
            .await
            .map(Some)
    }

    /// Searches `queries` (row-major, `d` floats each) for `k` neighbours.
    pub async fn search(&self, queries: &[f32], k: usize, nprobe: usize) -> Result<SearchResults> {
        self.search_with(queries, &SearchParams::new(k, nprobe)).await
    }

    /// Requests for the non-empty lists among `lists`.
    pub(crate) fn list_requests(&self, lists: &[usize]) -> Vec<ListRequest> {
        let format = self.inner.ranges.format();
        lists
            .iter()
            .filter_map(|&list| {
                self.inner.ranges.get(list).map(|range| ListRequest {
                    list,
                    range: *range,
                    // Cached with the codes aligned, so warm scans read them in place.
                    align_at: format.split(range.count).0.start,
                })
            })
            .filter(|r| r.range.count > 0)
            .collect()
    }

    /// A fetched list as Faiss reads it; a block list whose inline counts
    /// disagree with the ranges is corrupt, named by list.
    fn list_view(&self, list: usize, bytes: Arc<bytes::Bytes>) -> Result<ListView> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: self.uri().to_string(),
            reason: format!("list {list}: {reason}"),
        };
        let range = self
            .inner
            .ranges
            .get(list)
            .ok_or_else(|| corrupt("not a list of this index".into()))?;
        ListView::with_gap(
            bytes,
            range,
            self.inner.ranges.format(),
            self.inner.ranges.ids_gap(list),
        )
        .map_err(corrupt)
    }

    /// The attributes object beside this index (`<index>.attrs.parquet`),
    /// its footer read once on first use; `None` when there is none.
    pub async fn attributes(&self) -> Result<Option<Arc<Attributes>>> {
        let inner = &self.inner;
        inner
            .attributes
            .get_or_try_init(|| async {
                let opened = Attributes::open(&inner.object.location, &inner.ranges, &inner.options.scheduler).await?;
                Ok::<_, Error>(opened.map(Arc::new))
            })
            .await
            .cloned()
    }

    /// The attributes, or an error that says how to attach them.
    pub(crate) async fn require_attributes(&self) -> Result<Arc<Attributes>> {
        self.attributes().await?.ok_or_else(|| {
            Error::attributes(
                &format!("{}{}", self.uri(), crate::attributes::ATTRIBUTES_SUFFIX),
                "not found: this index has no attributes; attach them with `ivflake attributes` \
                 or build it with `ivflake build --input data.parquet`",
            )
        })
    }

    /// The ids stored in every list, in list order (reads every list through
    /// the scheduler, a bounded wave at a time). For attaching attributes.
    pub async fn list_ids(&self) -> Result<Vec<Vec<i64>>> {
        let nlist = self.info().nlist;
        let all: Vec<usize> = (0..nlist).collect();
        let io = Arc::new(SearchIo::default());
        let mut out = vec![Vec::new(); nlist];
        for lists in all.chunks(LIST_IDS_WAVE) {
            let wave = plan::Wave::lists(self.list_requests(lists));
            for (list, fetched) in self.fetch_wave(&wave, None, &io).await.lists {
                out[list] = self.list_view(list, fetched?)?.slice().ids.to_vec();
            }
        }
        Ok(out)
    }

    /// Lists and bytes of this index version held in memory and on disk.
    pub async fn residency(&self) -> Residency {
        self.scheduler().residency(&self.inner.lists_object)
    }

    /// Saves the probe counts under the state directory (no-op without one).
    /// Blocking file I/O: call it from a blocking thread.
    pub fn persist_probe_counts(&self) -> Result<()> {
        Ok(self.inner.probes.persist()?)
    }
}
