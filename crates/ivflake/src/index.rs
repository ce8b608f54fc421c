//! `IvfIndex`: an index opened from its header, searched by fetching only the
//! lists each batch probes. See ARCHITECTURE.md for the flow of one search.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ivflake_faiss::{CoarseAssignment, HeaderProbe, IdFilter, IndexInfo, ListSlice};
use object_store::{GetOptions, ObjectStoreExt};
use rayon::prelude::*;

use crate::compute::ComputePool;
use crate::error::{Error, Result};
use crate::fetch::{FetchConfig, FetchScheduler, IndexObject, ListRequest, ListVerifier, VersionPin};
use crate::layout::{ListLayout, ListRange};
use crate::location::IndexLocation;
use crate::manifest::Manifest;
use crate::stats::{ms, SearchIo, SearchStats};
use crate::warm::{ProbeCounts, Residency, WarmReport, WarmSpec};

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
/// The most header bytes a sidecar may make open read at once: far above any
/// real quantizer (a million 1024-d float centroids is 4 GiB; such indexes
/// take the bounded extra reads instead).
const MAX_SIDECAR_HEADER: u64 = 256 << 20;
/// Bytes a warm-up fetches per wave: large enough to keep the store's
/// pipeline full, small enough that warming a whole index stays bounded.
const WARM_WAVE_BYTES: u64 = 64 << 20;

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
}

/// What open does about the checksum sidecar (`<index>.ivfmanifest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManifestMode {
    /// Use it when present and describing this file; otherwise log why and
    /// serve unverified. Open takes 2 requests: the sidecar, then the header.
    #[default]
    Auto,
    /// Do not look: open takes 1 request for most headers.
    Ignore,
    /// Refuse to open without a sidecar that describes this file.
    Require,
}

/// Verifies fetched lists against the manifest's checksums.
#[derive(Debug)]
struct ManifestVerifier {
    manifest: Manifest,
    uri: String,
}

impl ListVerifier for ManifestVerifier {
    fn verify(&self, list: usize, bytes: &[u8]) -> Result<()> {
        self.manifest.verify_list(list, bytes, &self.uri)
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            scheduler: FetchScheduler::new(FetchConfig::default()),
            compute: ComputePool::global(),
            header_probe_bytes: HEADER_PROBE_BYTES,
            state_dir: None,
            manifest: ManifestMode::Auto,
        }
    }
}

/// Which ids a search may return.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum IdFilterSpec {
    #[default]
    All,
    Allow(Vec<i64>),
    Deny(Vec<i64>),
    Range {
        start: i64,
        end: i64,
    },
}

impl IdFilterSpec {
    fn as_faiss(&self) -> IdFilter<'_> {
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
}

impl SearchParams {
    pub fn new(k: usize, nprobe: usize) -> Self {
        Self {
            k,
            nprobe,
            filter: IdFilterSpec::All,
            allow_partial: false,
            deadline: None,
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

struct Inner {
    faiss: ivflake_faiss::Index,
    info: IndexInfo,
    layout: ListLayout,
    object: Arc<IndexObject>,
    scheduler: Arc<FetchScheduler>,
    compute: ComputePool,
    probe_bytes: u64,
    state_dir: Option<PathBuf>,
    manifest_mode: ManifestMode,
    probes: Arc<ProbeCounts>,
    /// Dropped with the last handle on this version: its memory entries go too.
    _pin: VersionPin,
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
        let location = IndexLocation::parse(uri, options.scheduler.config())?;
        Self::open_at(location, options).await
    }

    /// Opens the index at `location`: reads the header only, never list data.
    pub async fn open_at(location: IndexLocation, options: OpenOptions) -> Result<Self> {
        let uri = location.uri.clone();
        // A stalled store must not hold an open forever: each read at open
        // gets the scheduler's per-GET time limit.
        let limit = options.scheduler.config().get_timeout;
        let timed = |what: &'static str| {
            move |_| Error::DeadlineExceeded {
                deadline: limit,
                stage: what,
            }
        };
        let mut manifest = match options.manifest {
            ManifestMode::Ignore => None,
            ManifestMode::Auto => tokio::time::timeout(limit, Manifest::read_at(&location))
                .await
                .map_err(timed("reading the checksum sidecar"))
                .and_then(|r| r)
                .unwrap_or_else(|e| {
                    tracing::warn!(uri = %uri, error = %e, "ignoring the checksum sidecar; lists are not verified");
                    None
                }),
            ManifestMode::Require => Some(
                tokio::time::timeout(limit, Manifest::read_at(&location))
                    .await
                    .map_err(timed("reading the checksum sidecar"))??
                    .ok_or_else(|| Error::NotFound {
                        uri: Manifest::sidecar_uri(&uri),
                        source: object_store::Error::NotFound {
                            path: Manifest::sidecar_path(&location.path).to_string(),
                            source: "the checksum sidecar is required; write it with `ivflake manifest`".into(),
                        },
                    })?,
            ),
        };
        // With a sidecar the header's length is known: read exactly that (a
        // stale sidecar cannot make the first read larger than a header can be).
        let probe = manifest
            .as_ref()
            .map(|m| m.header_len.min(MAX_SIDECAR_HEADER))
            .unwrap_or(options.header_probe_bytes)
            .max(64);
        let first = tokio::time::timeout(
            limit,
            location
                .store
                .get_opts(&location.path, GetOptions::new().with_range(Some(0..probe))),
        )
        .await
        .map_err(timed("reading the index header"))?;
        let first = match first {
            Ok(first) => first,
            // A range read of an empty object fails; say what is wrong with it.
            Err(e @ object_store::Error::Generic { .. }) => {
                return match location.store.head(&location.path).await {
                    Ok(meta) if meta.size == 0 => Err(Error::Corrupt {
                        uri,
                        reason: "the file is empty".into(),
                    }),
                    _ => Err(Error::from_store(&uri, None, e)),
                }
            }
            Err(e) => return Err(Error::from_store(&uri, None, e)),
        };
        let size = first.meta.size;
        let e_tag = first.meta.e_tag.clone();
        let last_modified = first.meta.last_modified.timestamp_nanos_opt().unwrap_or(0);
        let first = tokio::time::timeout(limit, first.bytes())
            .await
            .map_err(timed("reading the index header"))?
            .map_err(|e| Error::from_store(&uri, None, e))?;
        check_magic(&first, &uri)?;
        // Check the header against the sidecar before Faiss parses a byte of it.
        if let Some(m) = &manifest {
            if let Err(e) = m.verify_header(&first, &uri) {
                if options.manifest == ManifestMode::Require {
                    return Err(e);
                }
                tracing::warn!(uri = %uri, error = %e, "lists are not verified");
                manifest = None;
            }
        }

        let mut prefix = BytesMut::from(first.as_ref());
        let mut requests = 1;
        // Any single C++ allocation while parsing: a few times the file, with
        // room for sparse list-size tables of huge, mostly empty indexes.
        let alloc_cap = (size as usize).saturating_mul(2).max(256 << 20);
        let faiss = loop {
            let bytes = prefix.clone().freeze();
            let parsed = options
                .compute
                .run(move || Ok(ivflake_faiss::open_header(&bytes, size, alloc_cap)))
                .await?;
            match parsed {
                Ok(HeaderProbe::Opened(index)) => break index,
                Ok(HeaderProbe::NeedBytes(needed)) => {
                    if requests >= MAX_OPEN_REQUESTS {
                        return Err(Error::Corrupt {
                            uri,
                            reason: format!("header still incomplete after {requests} reads"),
                        });
                    }
                    let have = prefix.len() as u64;
                    let want = needed.max(have.saturating_mul(2)).min(size);
                    let read = async {
                        location
                            .store
                            .get_opts(
                                &location.path,
                                GetOptions::new()
                                    .with_range(Some(have..want))
                                    .with_if_match(e_tag.clone()),
                            )
                            .await?
                            .bytes()
                            .await
                    };
                    let more = tokio::time::timeout(limit, read)
                        .await
                        .map_err(timed("reading the index header"))?
                        .map_err(|e| Error::from_store(&uri, e_tag.as_deref(), e))?;
                    if more.len() as u64 != want - have {
                        return Err(Error::Corrupt {
                            uri,
                            reason: "store returned a short header read".into(),
                        });
                    }
                    prefix.extend_from_slice(&more);
                    requests += 1;
                }
                Err(e) => return Err(classify_open_error(&uri, e)),
            }
        };
        let info = faiss.info().clone();
        let layout = ListLayout::new(&faiss.list_sizes(), info.code_size, info.list_data_offset, size, &uri)?;
        let mut object = IndexObject::new(location, size, e_tag).with_last_modified(last_modified);
        if let Some(manifest) = manifest {
            match manifest.check_against(&layout, size, &prefix, &uri) {
                Ok(()) => {
                    object = object.with_verifier(Arc::new(ManifestVerifier {
                        manifest,
                        uri: uri.clone(),
                    }))
                }
                Err(e) if options.manifest == ManifestMode::Require => return Err(e),
                Err(e) => tracing::warn!(uri = %uri, error = %e, "lists are not verified"),
            }
        }
        drop(prefix);
        let object = Arc::new(object);
        tracing::debug!(uri = %uri, requests, header_bytes = info.list_data_offset, "opened index");
        let probes = {
            let (dir, uri, nlist) = (options.state_dir.clone(), uri.clone(), info.nlist);
            tokio::task::spawn_blocking(move || ProbeCounts::load(dir.as_deref(), &uri, nlist))
                .await
                .unwrap_or_else(|_| ProbeCounts::load(None, "", info.nlist))
        };
        let pin = options.scheduler.pin_version(&object);
        Ok(Self {
            inner: Arc::new(Inner {
                faiss,
                info,
                layout,
                object,
                scheduler: options.scheduler,
                compute: options.compute,
                probe_bytes: probe,
                state_dir: options.state_dir,
                manifest_mode: options.manifest,
                probes: Arc::new(probes),
                _pin: pin,
            }),
        })
    }

    /// Opens the object's current version at the same location with the same
    /// scheduler. Searches still running on `self` finish on the old version.
    pub async fn reload(&self) -> Result<Self> {
        let options = OpenOptions {
            scheduler: self.inner.scheduler.clone(),
            compute: self.inner.compute.clone(),
            header_probe_bytes: self.inner.probe_bytes,
            state_dir: self.inner.state_dir.clone(),
            manifest: self.inner.manifest_mode,
        };
        // The new version resumes from the counts this one gathered.
        let probes = self.inner.probes.clone();
        match tokio::task::spawn_blocking(move || probes.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(uri = %self.uri(), error = %e, "cannot save probe counts"),
            Err(e) => tracing::warn!(uri = %self.uri(), error = %e, "saving probe counts failed"),
        }
        Self::open_at(self.inner.object.location.clone(), options).await
    }

    pub fn info(&self) -> &IndexInfo {
        &self.inner.info
    }

    pub fn layout(&self) -> &ListLayout {
        &self.inner.layout
    }

    pub fn uri(&self) -> &str {
        self.inner.object.uri()
    }

    /// Whether every fetched list is checked against a checksum sidecar.
    pub fn is_verified(&self) -> bool {
        self.inner.object.is_verified()
    }

    /// The ETag pinned at open, if the store gives one.
    pub fn e_tag(&self) -> Option<&str> {
        self.inner.object.e_tag.as_deref()
    }

    pub fn file_len(&self) -> u64 {
        self.inner.object.size
    }

    pub fn scheduler(&self) -> &Arc<FetchScheduler> {
        &self.inner.scheduler
    }

    /// Searches `queries` (row-major, `d` floats each) for `k` neighbours.
    pub async fn search(&self, queries: &[f32], k: usize, nprobe: usize) -> Result<SearchResults> {
        self.search_with(queries, &SearchParams::new(k, nprobe)).await
    }

    pub async fn search_with(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        let n = self.validate(queries, params)?;
        let work = self.run_search(queries.to_vec(), n, params.clone());
        let _in_flight = SearchInFlight::enter();
        let outcome = match params.deadline {
            None => work.await,
            Some(deadline) => tokio::time::timeout(deadline, work)
                .await
                .unwrap_or(Err(Error::DeadlineExceeded {
                    deadline,
                    stage: "searching",
                })),
        };
        match &outcome {
            Ok(r) => {
                metrics::counter!("ivflake_searches_total", "outcome" => "ok").increment(1);
                let s = &r.stats;
                for (stage, v) in [
                    ("quantizer", s.quantizer_ms),
                    ("fetch", s.fetch_ms),
                    ("scan", s.scan_ms),
                    ("total", s.total_ms),
                ] {
                    metrics::histogram!("ivflake_search_seconds", "stage" => stage).record(v / 1000.0);
                }
            }
            Err(_) => metrics::counter!("ivflake_searches_total", "outcome" => "error").increment(1),
        }
        outcome
    }

    /// Loads lists into the caches before searches need them: the given
    /// lists, the largest, and the most probed, in one wave.
    pub async fn warm(&self, spec: &WarmSpec) -> Result<WarmReport> {
        let started = Instant::now();
        let nlist = self.inner.info.nlist;
        if let Some(&bad) = spec.lists.iter().find(|&&l| l >= nlist) {
            return Err(Error::invalid(
                "lists",
                format!("list {bad} does not exist; the index has {nlist} lists"),
            ));
        }
        let mut wanted = spec.lists.clone();
        if spec.largest > 0 {
            let mut by_size: Vec<(u64, usize)> = (0..nlist)
                .filter_map(|l| self.inner.layout.get(l).map(|r| (r.len, l)))
                .collect();
            by_size.sort_unstable_by(|a, b| b.cmp(a));
            wanted.extend(by_size.into_iter().take(spec.largest).map(|(_, l)| l));
        }
        wanted.extend(self.inner.probes.hottest(spec.most_probed));
        wanted.sort_unstable();
        wanted.dedup();
        let requests = self.list_requests(&wanted);
        let io = Arc::new(SearchIo::default());
        // In waves of bounded bytes: a warm-up of the whole index must not
        // hold the whole index in memory at once.
        let mut failed_lists = Vec::new();
        let mut wave_start = 0;
        while wave_start < requests.len() {
            let mut wave_end = wave_start;
            let mut bytes = 0;
            while wave_end < requests.len()
                && (wave_end == wave_start || bytes + requests[wave_end].range.len <= WARM_WAVE_BYTES)
            {
                bytes += requests[wave_end].range.len;
                wave_end += 1;
            }
            let fetched = self
                .inner
                .scheduler
                .fetch(&self.inner.object, &requests[wave_start..wave_end], &io)
                .await;
            failed_lists.extend(fetched.iter().filter(|(_, r)| r.is_err()).map(|(l, _)| *l));
            wave_start = wave_end;
        }
        let mut stats = SearchStats {
            lists_probed: requests.len(),
            failed_lists,
            ..Default::default()
        };
        stats.absorb(&io);
        stats.failed_lists.sort_unstable();
        tracing::info!(uri = %self.uri(), lists = requests.len(), bytes = stats.bytes_fetched, "warmed");
        Ok(WarmReport {
            lists_requested: requests.len(),
            lists_already_in_memory: stats.lists_from_memory,
            lists_from_disk: stats.lists_from_disk,
            lists_from_store: stats.lists_from_store + stats.lists_shared,
            gets: stats.gets,
            bytes_fetched: stats.bytes_fetched,
            failed_lists: stats.failed_lists,
            ms: ms(started.elapsed()),
        })
    }

    /// Requests for the non-empty lists among `lists`.
    fn list_requests(&self, lists: &[usize]) -> Vec<ListRequest> {
        lists
            .iter()
            .filter_map(|&list| {
                self.inner
                    .layout
                    .get(list)
                    .map(|range| ListRequest { list, range: *range })
            })
            .filter(|r| r.range.count > 0)
            .collect()
    }

    /// Lists and bytes of this index version held in memory and on disk.
    pub async fn residency(&self) -> Residency {
        self.inner.scheduler.residency(&self.inner.object)
    }

    /// Saves the probe counts under the state directory (no-op without one).
    /// Blocking file I/O: call it from a blocking thread.
    pub fn persist_probe_counts(&self) -> Result<()> {
        self.inner.probes.persist().map_err(Error::Io)
    }

    fn validate(&self, queries: &[f32], params: &SearchParams) -> Result<usize> {
        let d = self.inner.info.d;
        if queries.is_empty() {
            return Err(Error::invalid("queries", "the batch is empty"));
        }
        if !queries.len().is_multiple_of(d) {
            return Err(Error::invalid(
                "queries",
                format!(
                    "{} floats is not a whole number of {d}-dimensional vectors",
                    queries.len()
                ),
            ));
        }
        if let Some(pos) = queries.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "queries",
                format!("query {} has a non-finite value at dimension {}", pos / d, pos % d),
            ));
        }
        let n = queries.len() / d;
        if params.k == 0 || params.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", params.k),
            ));
        }
        let nlist = self.inner.info.nlist;
        if params.nprobe == 0 || params.nprobe > nlist {
            return Err(Error::invalid(
                "nprobe",
                format!("must be between 1 and nlist = {nlist}, got {}", params.nprobe),
            ));
        }
        if n.saturating_mul(params.k) > MAX_RESULT_SLOTS {
            return Err(Error::invalid(
                "queries",
                format!("{n} queries × k = {} exceeds {MAX_RESULT_SLOTS} result slots", params.k),
            ));
        }
        if let IdFilterSpec::Range { start, end } = params.filter {
            if start > end {
                return Err(Error::invalid(
                    "filter",
                    format!("range start {start} is after end {end}"),
                ));
            }
        }
        Ok(n)
    }

    async fn run_search(&self, queries: Vec<f32>, n: usize, params: SearchParams) -> Result<SearchResults> {
        let started = Instant::now();
        let inner = self.inner.clone();
        let mut stats = SearchStats {
            queries: n,
            ..Default::default()
        };

        // 1. Coarse quantizer (and pre-transforms) on the compute pool.
        let nprobe = params.nprobe;
        let (xt, assignment) = {
            let inner = inner.clone();
            self.inner
                .compute
                .run(move || {
                    let xt = inner.faiss.apply_transform(&queries)?;
                    let assignment = inner.faiss.coarse_search(&xt, nprobe)?;
                    Ok((xt, assignment))
                })
                .await?
        };
        stats.quantizer_ms = ms(started.elapsed());

        // 2. Every distinct non-empty probed list of the batch, in one wave.
        let fetch_started = Instant::now();
        let mut wanted: Vec<usize> = assignment
            .lists
            .iter()
            .filter(|&&l| l >= 0)
            .map(|&l| l as usize)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let requests = self.list_requests(&wanted);
        stats.lists_probed = requests.len();
        self.inner.probes.record(&wanted);
        stats.bytes_probed = requests.iter().map(|r| r.range.len).sum();
        let io = Arc::new(SearchIo::default());
        let fetched = self.inner.scheduler.fetch(&self.inner.object, &requests, &io).await;
        stats.fetch_ms = ms(fetch_started.elapsed());

        let ranges: HashMap<usize, ListRange> = requests.iter().map(|r| (r.list, r.range)).collect();
        let code_size = self.inner.info.code_size;
        let mut views = Vec::with_capacity(fetched.len());
        let mut first_error = None;
        for (list, outcome) in fetched {
            match outcome {
                Ok(bytes) => views.push((list, ListView::new(bytes, &ranges[&list], code_size))),
                Err(e) => {
                    stats.failed_lists.push(list);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            if !params.allow_partial {
                return Err(Error::from_shared(e));
            }
            tracing::warn!(uri = %self.uri(), failed = ?stats.failed_lists, error = %e, "partial search");
        }
        stats.failed_lists.sort_unstable();

        // 3. Scan the fetched buffers with Faiss's scanners, queries in parallel.
        let scan_started = Instant::now();
        let slot_of: HashMap<usize, i32> = views
            .iter()
            .enumerate()
            .map(|(slot, (list, _))| (*list, slot as i32))
            .collect();
        let slots: Vec<i32> = assignment
            .lists
            .iter()
            .map(|&l| {
                if l < 0 {
                    -1
                } else {
                    slot_of.get(&(l as usize)).copied().unwrap_or(-1)
                }
            })
            .collect();
        let k = params.k;
        let neighbors = {
            let inner = inner.clone();
            let compute = self.inner.compute.clone();
            self.inner
                .compute
                .run(move || {
                    let slices: Vec<ListSlice<'_>> = views.iter().map(|(_, v)| v.slice()).collect();
                    scan_parallel(&inner, &compute, &xt, k, nprobe, &assignment, &slots, &slices, &params)
                })
                .await?
        };
        stats.scan_ms = ms(scan_started.elapsed());
        stats.absorb(&io);
        stats.total_ms = ms(started.elapsed());
        Ok(SearchResults {
            k,
            ids: neighbors.labels,
            distances: neighbors.distances,
            stats,
        })
    }

    /// The pinned object version (store, path, ETag), for the checksum manifest builder.
    pub(crate) fn object(&self) -> &Arc<IndexObject> {
        &self.inner.object
    }
}

/// Counts a search in flight while it lives, cancelled or not.
struct SearchInFlight;

impl SearchInFlight {
    fn enter() -> Self {
        metrics::gauge!("ivflake_searches_in_flight").increment(1.0);
        Self
    }
}

impl Drop for SearchInFlight {
    fn drop(&mut self) {
        metrics::gauge!("ivflake_searches_in_flight").decrement(1.0);
    }
}

/// Splits the batch across the compute pool; each chunk runs the same
/// single-threaded Faiss scan, so results do not depend on the split.
#[allow(clippy::too_many_arguments)]
fn scan_parallel(
    inner: &Inner,
    compute: &ComputePool,
    xt: &[f32],
    k: usize,
    nprobe: usize,
    assignment: &CoarseAssignment,
    slots: &[i32],
    lists: &[ListSlice<'_>],
    params: &SearchParams,
) -> Result<ivflake_faiss::Neighbors> {
    let d = inner.info.ivf_d;
    let n = xt.len() / d;
    let chunk = n.div_ceil(compute.threads().max(1)).max(1);
    let filter = params.filter.as_faiss();
    let parts: Vec<Result<ivflake_faiss::Neighbors>> = compute.install(|| {
        (0..n)
            .step_by(chunk)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let end = (start + chunk).min(n);
                let probes = start * nprobe..end * nprobe;
                let sub = CoarseAssignment {
                    distances: assignment.distances[probes.clone()].to_vec(),
                    lists: assignment.lists[probes.clone()].to_vec(),
                };
                Ok(inner
                    .faiss
                    .scan_lists(&xt[start * d..end * d], k, &sub, &slots[probes], lists, filter)?)
            })
            .collect()
    });
    let mut out = ivflake_faiss::Neighbors {
        distances: Vec::with_capacity(n * k),
        labels: Vec::with_capacity(n * k),
    };
    for part in parts {
        let part = part?;
        out.distances.extend(part.distances);
        out.labels.extend(part.labels);
    }
    Ok(out)
}

/// A fetched list as Faiss wants it: codes 4-byte aligned, ids as `i64`s.
/// Zero-copy when the store's buffer is aligned, a copy only when it is not.
struct ListView {
    codes: Bytes,
    ids: ListIds,
}

enum ListIds {
    Aligned(Bytes),
    Copied(Vec<i64>),
}

impl ListView {
    fn new(bytes: Bytes, range: &ListRange, code_size: usize) -> Self {
        let codes_len = range.codes_len(code_size) as usize;
        let mut codes = bytes.slice(..codes_len);
        if !(codes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<u32>()) {
            codes = aligned_copy(&codes);
        }
        let id_bytes = bytes.slice(codes_len..);
        let ids = if bytemuck::try_cast_slice::<u8, i64>(&id_bytes).is_ok() {
            ListIds::Aligned(id_bytes)
        } else {
            ListIds::Copied(
                id_bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let mut le = [0u8; 8];
                        le.copy_from_slice(c);
                        i64::from_le_bytes(le)
                    })
                    .collect(),
            )
        };
        Self { codes, ids }
    }

    fn slice(&self) -> ListSlice<'_> {
        let ids: &[i64] = match &self.ids {
            ListIds::Aligned(b) => bytemuck::try_cast_slice(b).unwrap_or(&[]),
            ListIds::Copied(v) => v,
        };
        ListSlice {
            codes: &self.codes,
            ids,
        }
    }
}

/// Bytes backed by `u32` storage, so they start 4-byte aligned.
struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

fn aligned_copy(src: &[u8]) -> Bytes {
    let mut words = vec![0u32; src.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..src.len()].copy_from_slice(src);
    Bytes::from_owner(AlignedBytes { words, len: src.len() })
}

/// Names what a file is when its first bytes are not a Faiss float index.
fn check_magic(prefix: &[u8], uri: &str) -> Result<()> {
    if prefix.len() < 4 {
        return Err(Error::Corrupt {
            uri: uri.into(),
            reason: format!("file has only {} bytes", prefix.len()),
        });
    }
    let magic = &prefix[..4];
    if !magic.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Corrupt {
            uri: uri.into(),
            reason: format!("not a Faiss index file: it starts with bytes {magic:02x?}"),
        });
    }
    if magic.starts_with(b"IB") {
        return Err(Error::Unsupported {
            uri: uri.into(),
            reason: format!(
                "binary index ({}); ivflake serves float IVF indexes",
                String::from_utf8_lossy(magic)
            ),
        });
    }
    Ok(())
}

fn classify_open_error(uri: &str, e: ivflake_faiss::FaissError) -> Error {
    let msg = e.message();
    if msg.starts_with("unsupported") {
        Error::Unsupported {
            uri: uri.into(),
            reason: msg.to_string(),
        }
    } else if msg.contains("not recognized") {
        Error::Unsupported {
            uri: uri.into(),
            reason: format!("an index type or format this Faiss build does not know: {msg}"),
        }
    } else {
        Error::Corrupt {
            uri: uri.into(),
            reason: msg.to_string(),
        }
    }
}
