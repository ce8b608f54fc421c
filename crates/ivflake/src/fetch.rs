//! The fetch scheduler: every inverted-list read in the process goes through
//! here (Lance's `scheduler.rs` is the model). It owns the in-flight limits,
//! coalescing of nearby lists, splitting of huge ones, single-flight loads, the
//! memory cache, version pinning (`If-Match`), per-GET timeouts and hedging.
//! It must not know about Faiss: it moves byte ranges, nothing more.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use object_store::{GetOptions, ObjectStore, RetryConfig};
use tokio::sync::Semaphore;

use crate::disk_cache::{object_key, DiskCache, DiskCacheConfig, DiskKey};
use crate::error::{Error, Result};
use crate::layout::ListRange;
use crate::location::{default_retry, IndexLocation};
use crate::stats::SearchIo;
use crate::warm::Residency;

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
        }
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

/// A version of an index object, pinned at open: its size and ETag.
#[derive(Debug)]
pub struct IndexObject {
    pub location: IndexLocation,
    pub size: u64,
    pub e_tag: Option<String>,
    /// Identity of this version for memory-cache keys: URI, ETag, size and store instance.
    pub(crate) id: u64,
    /// Identity of this version on disk: URI, ETag and size, stable across restarts.
    disk_id: u64,
    /// Per-list checksums from the manifest sidecar, when there is one.
    verifier: Option<Arc<dyn ListVerifier>>,
}

/// Checks a fetched list before anything caches it.
pub trait ListVerifier: Send + Sync + std::fmt::Debug {
    fn verify(&self, list: usize, bytes: &[u8]) -> Result<()>;
}

impl IndexObject {
    pub fn new(location: IndexLocation, size: u64, e_tag: Option<String>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        location.uri.hash(&mut h);
        e_tag.hash(&mut h);
        size.hash(&mut h);
        (Arc::as_ptr(&location.store) as *const () as usize).hash(&mut h);
        Self {
            id: h.finish(),
            disk_id: object_key(&location.uri, e_tag.as_deref(), size),
            location,
            size,
            e_tag,
            verifier: None,
        }
    }

    /// Every list fetched for this object is verified first. Verified and
    /// unverified handles on one version never share cache entries, so a
    /// list that was never checked cannot be served as checked.
    pub fn with_verifier(mut self, verifier: Arc<dyn ListVerifier>) -> Self {
        self.verifier = Some(verifier);
        self.mix_into_ids(b"verified");
        self
    }

    /// For stores that give no ETag: the modification time joins the cache
    /// keys, so a rewrite of the same size is still another version.
    pub fn with_last_modified(mut self, nanos: i64) -> Self {
        if self.e_tag.is_none() {
            self.mix_into_ids(&nanos.to_le_bytes());
        }
        self
    }

    fn mix_into_ids(&mut self, salt: &[u8]) {
        let mix = |id: u64| {
            let mut buf = id.to_le_bytes().to_vec();
            buf.extend_from_slice(salt);
            xxhash_rust::xxh3::xxh3_64(&buf)
        };
        self.id = mix(self.id);
        self.disk_id = mix(self.disk_id);
    }

    pub fn is_verified(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    fn get_options(&self, range: Range<u64>) -> GetOptions {
        GetOptions::new()
            .with_range(Some(range))
            .with_if_match(self.e_tag.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ListKey {
    object: u64,
    list: u32,
}

impl ListKey {
    fn new(object: &IndexObject, list: usize) -> Self {
        Self {
            object: object.id,
            list: list as u32,
        }
    }
}

/// One list a search needs.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest {
    pub list: usize,
    pub range: ListRange,
}

/// Process-wide counters (also exported through the `metrics` facade).
#[derive(Debug, Default)]
pub struct FetchCounters {
    pub gets: AtomicU64,
    pub bytes: AtomicU64,
    pub hedges: AtomicU64,
    pub retries: AtomicU64,
    pub memory_hits: AtomicU64,
    pub memory_misses: AtomicU64,
    pub evictions: AtomicU64,
    pub in_flight: AtomicU64,
    pub checksum_failures: AtomicU64,
    /// List loads a search joined instead of starting its own (single-flight).
    /// Counted when the join is decided, before anything is awaited, so a test
    /// can wait for it instead of guessing how long a join takes.
    pub loads_joined: AtomicU64,
}

/// A snapshot of the cache tiers, for reporting.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct CacheReport {
    pub memory_hits: u64,
    pub memory_misses: u64,
    pub memory_evictions: u64,
    pub memory_resident_bytes: u64,
    pub memory_capacity_bytes: u64,
    pub disk_enabled: bool,
    pub disk_hits: u64,
    pub disk_misses: u64,
    pub disk_evictions: u64,
    pub disk_corrupt_entries: u64,
    pub disk_resident_bytes: u64,
    pub disk_capacity_bytes: u64,
}

type SharedGet = Shared<BoxFuture<'static, Result<Bytes, Arc<Error>>>>;
/// One list's load, run by a spawned task that any number of searches await.
type SharedLoad = Shared<BoxFuture<'static, Result<Bytes, Arc<Error>>>>;
type WeakLoad = WeakShared<BoxFuture<'static, Result<Bytes, Arc<Error>>>>;

/// Aborts a spawned fetch task once nothing awaits it any more.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// See the module docs.
pub struct FetchScheduler {
    config: FetchConfig,
    global: Arc<Semaphore>,
    memory: moka::future::Cache<ListKey, Bytes>,
    disk: Option<Arc<DiskCache>>,
    counters: Arc<FetchCounters>,
    latencies: Arc<LatencyWindow>,
    hedge_budget: Arc<HedgeBudget>,
    /// Open index handles per object version, so a version's memory entries
    /// are dropped once nothing can search it any more.
    versions: Mutex<std::collections::HashMap<u64, usize>>,
    /// Loads in flight: a search that needs a list being loaded joins its
    /// load (single-flight). Each load is a spawned task that runs while any
    /// search awaits it: cancelling one search, even the one that started it,
    /// never cancels a load others wait on; when the last waiter is gone
    /// (deadlines, dropped requests) the load and its GET are aborted, so a
    /// stalled store does not keep slots busy for nobody.
    in_flight: Arc<Mutex<std::collections::HashMap<ListKey, WeakLoad>>>,
}

/// Keeps one object version's cache entries wanted; see [`FetchScheduler::pin_version`].
pub(crate) struct VersionPin {
    scheduler: Arc<FetchScheduler>,
    object: u64,
}

impl Drop for VersionPin {
    fn drop(&mut self) {
        let Ok(mut versions) = self.scheduler.versions.lock() else {
            return;
        };
        let last = match versions.get_mut(&self.object) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if last {
            versions.remove(&self.object);
            let object = self.object;
            // Runs during moka's maintenance; the entries' Bytes are freed then.
            let _ = self
                .scheduler
                .memory
                .invalidate_entries_if(move |k, _| k.object == object);
        }
    }
}

impl std::fmt::Debug for FetchScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchScheduler").field("config", &self.config).finish()
    }
}

impl FetchScheduler {
    /// A scheduler; when the disk tier's directory cannot be created it runs
    /// without the tier and says so (use [`FetchScheduler::try_new`] to refuse).
    pub fn new(config: FetchConfig) -> Arc<Self> {
        match Self::open_disk(&config) {
            Ok(disk) => Self::build(config, disk),
            Err(e) => {
                tracing::error!(error = %e, "disk cache disabled");
                Self::build(config, None)
            }
        }
    }

    /// A scheduler, or an error when the disk tier's directory is unusable.
    pub fn try_new(config: FetchConfig) -> Result<Arc<Self>> {
        let disk = Self::open_disk(&config)?;
        Ok(Self::build(config, disk))
    }

    fn open_disk(config: &FetchConfig) -> Result<Option<Arc<DiskCache>>> {
        let Some(dc) = &config.disk_cache else { return Ok(None) };
        let disk = DiskCache::open(dc).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("disk cache directory {}: {e}", dc.dir.display()),
            ))
        })?;
        Ok(Some(Arc::new(disk)))
    }

    fn build(config: FetchConfig, disk: Option<Arc<DiskCache>>) -> Arc<Self> {
        let counters = Arc::new(FetchCounters::default());
        let evictions = counters.clone();
        let memory = moka::future::Cache::builder()
            .max_capacity(config.memory_cache_bytes)
            .weigher(|_k: &ListKey, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ivflake_cache_evictions_total", "tier" => "memory").increment(1);
                }
            })
            .build();
        Arc::new(Self {
            global: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            memory,
            disk,
            counters,
            latencies: Arc::new(LatencyWindow::default()),
            hedge_budget: Arc::new(HedgeBudget::default()),
            versions: Mutex::new(std::collections::HashMap::new()),
            in_flight: Arc::new(Mutex::new(std::collections::HashMap::new())),
            config,
        })
    }

    /// Registers an open handle on `object`'s version; when the last pin of a
    /// version drops (a reload drained, an index removed), its memory entries go.
    pub(crate) fn pin_version(self: &Arc<Self>, object: &IndexObject) -> VersionPin {
        if let Ok(mut versions) = self.versions.lock() {
            *versions.entry(object.id).or_insert(0) += 1;
        }
        VersionPin {
            scheduler: self.clone(),
            object: object.id,
        }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Waits until the disk tier's background writes started so far are done
    /// (and the evictions they caused have deleted their files); at once
    /// without a disk tier. Lets a test or a shutdown observe a settled tier.
    pub async fn settle_disk_writes(&self) {
        if let Some(disk) = &self.disk {
            disk.settle().await;
        }
    }

    pub fn counters(&self) -> &FetchCounters {
        &self.counters
    }

    /// Bytes the memory cache holds now.
    pub async fn memory_resident_bytes(&self) -> u64 {
        self.memory.run_pending_tasks().await;
        self.memory.weighted_size()
    }

    /// Number of lists resident in memory, all indexes together.
    pub fn memory_entries(&self) -> u64 {
        self.memory.entry_count()
    }

    /// Lists and bytes of one index version in memory and on disk.
    pub(crate) fn residency(&self, object: &IndexObject) -> Residency {
        let (lists_in_memory, bytes_in_memory) = self
            .memory
            .iter()
            .filter(|(k, _)| k.object == object.id)
            .fold((0, 0), |(n, b), (_, v)| (n + 1, b + v.len() as u64));
        let (lists_on_disk, bytes_on_disk) = self
            .disk
            .as_ref()
            .map(|d| d.residency(object.disk_id))
            .unwrap_or((0, 0));
        Residency {
            lists_in_memory,
            bytes_in_memory,
            lists_on_disk,
            bytes_on_disk,
        }
    }

    /// Hits, misses, evictions and resident bytes of both tiers.
    pub async fn cache_report(&self) -> CacheReport {
        let c = &self.counters;
        let mut report = CacheReport {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            memory_misses: c.memory_misses.load(Ordering::Relaxed),
            memory_evictions: c.evictions.load(Ordering::Relaxed),
            memory_resident_bytes: self.memory_resident_bytes().await,
            memory_capacity_bytes: self.config.memory_cache_bytes,
            ..Default::default()
        };
        if let Some(disk) = &self.disk {
            let d = &disk.counters;
            report.disk_enabled = true;
            report.disk_hits = d.hits.load(Ordering::Relaxed);
            report.disk_misses = d.misses.load(Ordering::Relaxed);
            report.disk_evictions = d.evictions.load(Ordering::Relaxed);
            report.disk_corrupt_entries = d.corrupt.load(Ordering::Relaxed);
            report.disk_resident_bytes = disk.resident_bytes().await;
            report.disk_capacity_bytes = disk.capacity();
        }
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "memory").set(report.memory_resident_bytes as f64);
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "disk").set(report.disk_resident_bytes as f64);
        report
    }

    /// Fetches every requested list concurrently, in one wave. Each list's
    /// outcome is reported separately so the caller can choose partial results.
    pub async fn fetch(
        &self,
        object: &Arc<IndexObject>,
        requests: &[ListRequest],
        io: &Arc<SearchIo>,
    ) -> Vec<(usize, Result<Bytes, Arc<Error>>)> {
        let per_search = Arc::new(Semaphore::new(self.config.max_in_flight_per_search.max(1)));
        let mut out = Vec::with_capacity(requests.len());
        let mut misses = Vec::new();
        for req in requests {
            match self.memory.get(&ListKey::new(object, req.list)).await {
                Some(bytes) => {
                    self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
                    io.record_memory(bytes.len() as u64);
                    out.push((req.list, Ok(bytes)));
                }
                None => {
                    self.counters.memory_misses.fetch_add(1, Ordering::Relaxed);
                    misses.push(*req);
                }
            }
        }
        metrics::counter!("ivflake_cache_hits_total", "tier" => "memory").increment(out.len() as u64);
        metrics::counter!("ivflake_cache_misses_total", "tier" => "memory").increment(misses.len() as u64);

        // Join loads already in flight; start the rest, grouped into GETs.
        // Deciding and registering under one lock makes each list load once.
        let mut joined = Vec::new();
        let mut started = Vec::new();
        {
            let Ok(mut in_flight) = self.in_flight.lock() else {
                let broken = Arc::new(Error::Internal("fetch scheduler state poisoned".into()));
                out.extend(misses.iter().map(|r| (r.list, Err(broken.clone()))));
                return out;
            };
            misses.retain(
                |req| match in_flight.get(&ListKey::new(object, req.list)).and_then(|w| w.upgrade()) {
                    Some(load) => {
                        self.counters.loads_joined.fetch_add(1, Ordering::SeqCst);
                        joined.push((req.list, load));
                        false
                    }
                    None => true,
                },
            );
            misses.sort_by_key(|r| r.range.offset);
            for group in self.plan(&misses) {
                let start = group[0].range.offset;
                let end = group.last().map(|r| r.range.offset + r.range.len).unwrap_or(start);
                let get = self.group_get(object, start..end, io, &per_search);
                for req in group {
                    let load = ListLoad {
                        object: object.clone(),
                        list: req.list,
                        rel: (req.range.offset - start) as usize..(req.range.offset - start + req.range.len) as usize,
                        get: get.clone(),
                        disk: self.disk.clone(),
                        io: io.clone(),
                        counters: self.counters.clone(),
                    };
                    let shared = self.spawn_load(ListKey::new(object, req.list), load);
                    if let Some(weak) = shared.downgrade() {
                        in_flight.insert(ListKey::new(object, req.list), weak);
                    }
                    started.push((req.list, shared));
                }
            }
        }

        let own = started
            .into_iter()
            .map(|(list, load)| async move { (list, load.await) });
        let shared = joined.into_iter().map(|(list, load)| {
            let io = io.clone();
            async move {
                let waited = Instant::now();
                let result = load.await;
                if result.is_ok() {
                    io.record_shared(waited.elapsed());
                }
                (list, result)
            }
        });
        let (own, shared) =
            futures::future::join(futures::future::join_all(own), futures::future::join_all(shared)).await;
        out.extend(own);
        out.extend(shared);
        // Cheap (no maintenance run): keeps the gauge current between reports.
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "memory").set(self.memory.weighted_size() as f64);
        out
    }

    /// Runs one list's load as its own task: on success the list goes into the
    /// memory cache before the load leaves the in-flight map, so a later search
    /// finds it in one place or the other.
    fn spawn_load(&self, key: ListKey, load: ListLoad) -> SharedLoad {
        let memory = self.memory.clone();
        let cache = self.config.memory_cache_bytes > 0;
        let in_flight = self.in_flight.clone();
        let task = tokio::spawn(async move {
            let result = load.run().await;
            if let (true, Ok(bytes)) = (cache, &result) {
                memory.insert(key, bytes.clone()).await;
            }
            if let Ok(mut map) = in_flight.lock() {
                map.remove(&key);
            }
            result
        });
        let guard = AbortOnDrop(task.abort_handle());
        async move {
            let _guard = guard;
            task.await
                .map_err(|e| Arc::new(Error::Internal(format!("list load task failed: {e}"))))?
        }
        .boxed()
        .shared()
    }

    /// Groups sorted requests whose gaps are small into single GETs.
    fn plan<'a>(&self, sorted: &'a [ListRequest]) -> Vec<&'a [ListRequest]> {
        let mut groups = Vec::new();
        let mut first = 0;
        for i in 1..=sorted.len() {
            let split = i == sorted.len() || {
                let prev_end = sorted[i - 1].range.offset + sorted[i - 1].range.len;
                let gap = sorted[i].range.offset.saturating_sub(prev_end);
                let merged = sorted[i].range.offset + sorted[i].range.len - sorted[first].range.offset;
                gap > self.config.coalesce_gap || merged > self.config.max_coalesced
            };
            if split {
                if first < sorted.len() {
                    groups.push(&sorted[first..i]);
                }
                first = i;
            }
        }
        groups
    }

    /// A lazily started GET of `range`, shared by the lists it covers (their
    /// load tasks poll it, so it runs whatever happens to the searches).
    fn group_get(
        &self,
        object: &Arc<IndexObject>,
        range: Range<u64>,
        io: &Arc<SearchIo>,
        per_search: &Arc<Semaphore>,
    ) -> SharedGet {
        let ctx = GetContext {
            object: object.clone(),
            io: io.clone(),
            per_search: per_search.clone(),
            global: self.global.clone(),
            counters: self.counters.clone(),
            latencies: self.latencies.clone(),
            hedge_budget: self.hedge_budget.clone(),
            config: self.config.clone(),
        };
        async move {
            let task = tokio::spawn(async move { ctx.get_split(range).await.map_err(Arc::new) });
            let _guard = AbortOnDrop(task.abort_handle());
            task.await
                .map_err(|e| Arc::new(Error::Internal(format!("fetch task failed: {e}"))))?
        }
        .boxed()
        .shared()
    }
}

/// Loads one list on a memory miss: from disk if a valid entry is there,
/// else by slicing its group's shared GET; verified before anything caches it.
struct ListLoad {
    object: Arc<IndexObject>,
    list: usize,
    rel: Range<usize>,
    get: SharedGet,
    disk: Option<Arc<DiskCache>>,
    io: Arc<SearchIo>,
    counters: Arc<FetchCounters>,
}

impl ListLoad {
    async fn run(self) -> Result<Bytes, Arc<Error>> {
        let expected = (self.rel.end - self.rel.start) as u64;
        let disk_key = DiskKey {
            object: self.object.disk_id,
            list: self.list as u32,
        };
        if let Some(disk) = &self.disk {
            if let Some(bytes) = disk.get(disk_key, expected).await {
                metrics::counter!("ivflake_cache_hits_total", "tier" => "disk").increment(1);
                // Disk entries were verified when written and are hashed on read.
                self.io.record_disk(bytes.len() as u64);
                return Ok(bytes);
            }
            metrics::counter!("ivflake_cache_misses_total", "tier" => "disk").increment(1);
        }
        let group = self.get.await?;
        if group.len() < self.rel.end {
            return Err(Arc::new(Error::ShortRead {
                list: self.list,
                expected,
                got: group.len().saturating_sub(self.rel.start) as u64,
            }));
        }
        // A list merged with others is copied out, so caching it never pins
        // the whole group's buffer (the cache weighs only the list's bytes).
        let bytes = if group.len() == self.rel.len() {
            group.slice(self.rel)
        } else {
            Bytes::copy_from_slice(&group[self.rel])
        };
        if let Some(verifier) = &self.object.verifier {
            if let Err(e) = verifier.verify(self.list, &bytes) {
                self.counters.checksum_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ivflake_checksum_failures_total").increment(1);
                return Err(Arc::new(e));
            }
        }
        if let Some(disk) = &self.disk {
            disk.put(disk_key, bytes.clone());
        }
        Ok(bytes)
    }
}

struct GetContext {
    object: Arc<IndexObject>,
    io: Arc<SearchIo>,
    per_search: Arc<Semaphore>,
    global: Arc<Semaphore>,
    counters: Arc<FetchCounters>,
    latencies: Arc<LatencyWindow>,
    hedge_budget: Arc<HedgeBudget>,
    config: FetchConfig,
}

impl GetContext {
    /// One range, split into parallel part-GETs when it is very large.
    async fn get_split(&self, range: Range<u64>) -> Result<Bytes> {
        let len = range.end - range.start;
        if len <= self.config.split_threshold || self.config.part_size == 0 {
            return self.get_hedged(range).await;
        }
        let parts: Vec<Range<u64>> = (range.start..range.end)
            .step_by(self.config.part_size as usize)
            .map(|s| s..(s + self.config.part_size).min(range.end))
            .collect();
        let fetched = futures::future::try_join_all(parts.into_iter().map(|r| self.get_hedged(r))).await?;
        let mut whole = BytesMut::with_capacity(len as usize);
        for part in fetched {
            whole.extend_from_slice(&part);
        }
        Ok(whole.freeze())
    }

    async fn get_hedged(&self, range: Range<u64>) -> Result<Bytes> {
        let Some(hedge) = self.config.hedge else {
            return self.get_once(range, None).await;
        };
        let delay = self.latencies.percentile(hedge.percentile).max(hedge.min_delay);
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
        let first = self.get_once(range.clone(), Some(sent_tx));
        tokio::pin!(first);
        // The clock starts when the GET is sent, not while it queues for a slot.
        tokio::select! {
            r = &mut first => return r,
            _ = sent_rx => {}
        }
        tokio::select! {
            r = &mut first => return r,
            _ = tokio::time::sleep(delay) => {}
        }
        if !self.hedge_budget.try_take() {
            return first.await;
        }
        self.counters.hedges.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ivflake_store_hedged_gets_total").increment(1);
        self.io.record_hedge();
        let second = self.get_once(range, None);
        tokio::pin!(second);
        // Whichever answers first wins; a failed one defers to the other.
        tokio::select! {
            r = &mut first => match r { Ok(b) => Ok(b), Err(_) => second.await },
            r = &mut second => match r { Ok(b) => Ok(b), Err(_) => first.await },
        }
    }

    /// One GET, re-sent up to `get_retries` times when an attempt exceeds `get_timeout`.
    /// `sent` hears when the first attempt holds its slots and goes out.
    async fn get_once(&self, range: Range<u64>, mut sent: Option<tokio::sync::oneshot::Sender<()>>) -> Result<Bytes> {
        let mut attempt = 0;
        loop {
            match self.attempt(range.clone(), sent.take()).await {
                Err(Attempt::TimedOut) if attempt < self.config.get_retries => {
                    attempt += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ivflake_store_retries_total").increment(1);
                    self.io.record_retry();
                    tracing::debug!(uri = %self.object.uri(), ?range, attempt, "GET timed out; re-sending");
                }
                Err(Attempt::TimedOut) => {
                    return Err(Error::Store {
                        uri: self.object.uri().to_string(),
                        source: object_store::Error::Generic {
                            store: "ivflake",
                            source: format!(
                                "GET of bytes {range:?} timed out after {:?}, {} time(s)",
                                self.config.get_timeout,
                                attempt + 1
                            )
                            .into(),
                        },
                    })
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(bytes) => return Ok(bytes),
            }
        }
    }

    async fn attempt(
        &self,
        range: Range<u64>,
        sent: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Bytes, Attempt> {
        let _search_slot = self.per_search.clone().acquire_owned().await;
        let _global_slot = self.global.clone().acquire_owned().await;
        if let Some(sent) = sent {
            let _ = sent.send(());
        }
        if let Some(hedge) = self.config.hedge {
            self.hedge_budget.earn(hedge.budget);
        }
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.io.record_get();
        metrics::counter!("ivflake_store_gets_total").increment(1);
        let in_flight = InFlight::enter(&self.counters);
        let started = Instant::now();
        let store: &Arc<dyn ObjectStore> = &self.object.location.store;
        let request = async {
            store
                .get_opts(&self.object.location.path, self.object.get_options(range.clone()))
                .await?
                .bytes()
                .await
        };
        let outcome = tokio::time::timeout(self.config.get_timeout, request).await;
        drop(in_flight);
        let bytes = match outcome {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(r) => r.map_err(|e| {
                metrics::counter!("ivflake_store_errors_total").increment(1);
                Attempt::Failed(Error::from_store(self.object.uri(), self.object.e_tag.as_deref(), e))
            })?,
        };
        let expected = range.end - range.start;
        if bytes.len() as u64 != expected {
            return Err(Attempt::Failed(Error::Store {
                uri: self.object.uri().to_string(),
                source: object_store::Error::Generic {
                    store: "ivflake",
                    source: format!("GET of bytes {range:?} returned {} bytes, not {expected}", bytes.len()).into(),
                },
            }));
        }
        self.latencies.record(started.elapsed());
        self.counters.bytes.fetch_add(expected, Ordering::Relaxed);
        metrics::counter!("ivflake_store_bytes_total").increment(expected);
        self.io.record_bytes(expected);
        Ok(bytes)
    }
}

enum Attempt {
    TimedOut,
    Failed(Error),
}

/// Counts a GET in flight for as long as it lives, even if its future is dropped.
struct InFlight<'a>(&'a FetchCounters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a FetchCounters) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("ivflake_fetches_in_flight").increment(1.0);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("ivflake_fetches_in_flight").decrement(1.0);
    }
}

/// Hedges a GET may spend: each GET sent earns `budget` of one, up to a small
/// burst, so hedges stay near `budget` × GETs over recent traffic rather than
/// since the process started (a quiet hour must not fund a storm).
#[derive(Debug, Default)]
struct HedgeBudget {
    tokens: Mutex<f64>,
}

impl HedgeBudget {
    /// At most this many hedges can fire back to back.
    const BURST: f64 = 8.0;

    fn earn(&self, budget: f64) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + budget.max(0.0)).min(Self::BURST);
        }
    }

    fn try_take(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }
}

/// Recent GET latencies, for the hedging threshold.
#[derive(Debug, Default)]
struct LatencyWindow {
    recent: Mutex<VecDeque<Duration>>,
}

impl LatencyWindow {
    /// 256 samples: enough for a stable p95, small enough to sort per GET.
    const SAMPLES: usize = 256;

    fn record(&self, d: Duration) {
        if let Ok(mut q) = self.recent.lock() {
            if q.len() == Self::SAMPLES {
                q.pop_front();
            }
            q.push_back(d);
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let Ok(q) = self.recent.lock() else {
            return Duration::ZERO;
        };
        if q.is_empty() {
            return Duration::ZERO;
        }
        let mut v: Vec<Duration> = q.iter().copied().collect();
        v.sort_unstable();
        let idx = ((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        v[idx]
    }
}
