//! The fetch scheduler: every inverted-list read in the process goes through
//! here (Lance's `scheduler.rs` is the model). It owns the in-flight limits,
//! coalescing of nearby lists, splitting of huge ones, single-flight loads, the
//! memory cache, version pinning (`If-Match`), per-GET timeouts and hedging.
//! It must not know about Faiss: it moves byte ranges, nothing more.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::{GetOptions, ObjectStore, RetryConfig};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::layout::ListRange;
use crate::location::{default_retry, IndexLocation};
use crate::stats::SearchIo;

/// Tuning of the scheduler. Every default is named and justified here.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// GETs in flight across the whole process. 64 keeps a 2-core box's
    /// connection pool busy without queueing inside the HTTP client.
    pub max_in_flight: usize,
    /// GETs in flight for one search, so one wide batch cannot take every slot.
    pub max_in_flight_per_search: usize,
    /// Lists whose gap in the file is at most this many bytes share one GET.
    /// At ~5-40 ms per request and >100 MB/s, a request costs as much as
    /// reading 0.5-4 MB; 256 KiB keeps waste small (see docs/benchmarks.md).
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
    /// Hedged reads; `None` disables them.
    pub hedge: Option<HedgeConfig>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            max_in_flight_per_search: 16,
            coalesce_gap: 256 * 1024,
            max_coalesced: 16 * 1024 * 1024,
            split_threshold: 32 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            memory_cache_bytes: 256 * 1024 * 1024,
            get_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: default_retry(),
            hedge: None,
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
    /// Identity of this version for cache keys: URI, ETag, size and store instance.
    id: u64,
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
            location,
            size,
            e_tag,
        }
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

/// One list a search needs.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest {
    pub list: usize,
    pub range: ListRange,
}

/// Process-wide counters, exported as metrics.
#[derive(Debug, Default)]
pub struct FetchCounters {
    pub gets: AtomicU64,
    pub bytes: AtomicU64,
    pub hedges: AtomicU64,
    pub memory_hits: AtomicU64,
    pub memory_misses: AtomicU64,
    pub evictions: AtomicU64,
    pub in_flight: AtomicU64,
}

type SharedGet = Shared<BoxFuture<'static, Result<Bytes, Arc<Error>>>>;

/// See the module docs.
pub struct FetchScheduler {
    config: FetchConfig,
    global: Arc<Semaphore>,
    memory: moka::future::Cache<ListKey, Bytes>,
    counters: Arc<FetchCounters>,
    latencies: Arc<LatencyWindow>,
}

impl std::fmt::Debug for FetchScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchScheduler").field("config", &self.config).finish()
    }
}

impl FetchScheduler {
    pub fn new(config: FetchConfig) -> Arc<Self> {
        let counters = Arc::new(FetchCounters::default());
        let evictions = counters.clone();
        let memory = moka::future::Cache::builder()
            .max_capacity(config.memory_cache_bytes)
            .weigher(|_k: &ListKey, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .eviction_listener(move |_k, _v, cause| {
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Arc::new(Self {
            global: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            memory,
            counters,
            latencies: Arc::new(LatencyWindow::default()),
            config,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    pub fn counters(&self) -> &FetchCounters {
        &self.counters
    }

    /// Bytes the memory cache holds now.
    pub async fn memory_resident_bytes(&self) -> u64 {
        self.memory.run_pending_tasks().await;
        self.memory.weighted_size()
    }

    /// Number of lists of `object` resident in memory (for reporting).
    pub fn memory_entries(&self) -> u64 {
        self.memory.entry_count()
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
            let key = ListKey {
                object: object.id,
                list: req.list as u32,
            };
            match self.memory.get(&key).await {
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
        misses.sort_by_key(|r| r.range.offset);

        let mut loads = Vec::with_capacity(misses.len());
        for group in self.plan(&misses) {
            let start = group[0].range.offset;
            let end = group.last().map(|r| r.range.offset + r.range.len).unwrap_or(start);
            let get = self.group_get(object, start..end, io, &per_search);
            for req in group {
                let key = ListKey {
                    object: object.id,
                    list: req.list as u32,
                };
                let rel = (req.range.offset - start) as usize..(req.range.offset - start + req.range.len) as usize;
                let get = get.clone();
                let ran = Arc::new(AtomicBool::new(false));
                let ran_in = ran.clone();
                let list = req.list;
                let expected = req.range.len;
                let init = async move {
                    ran_in.store(true, Ordering::Relaxed);
                    let group = get.await?;
                    if group.len() < rel.end {
                        return Err(Arc::new(Error::ShortRead {
                            list,
                            expected,
                            got: group.len() as u64,
                        }));
                    }
                    Ok::<Bytes, Arc<Error>>(group.slice(rel))
                };
                let memory = self.memory.clone();
                let io = io.clone();
                loads.push(async move {
                    let waited = Instant::now();
                    let result = memory.try_get_with(key, init).await.map_err(|e| (*e).clone());
                    if result.is_ok() && !ran.load(Ordering::Relaxed) {
                        io.record_shared(waited.elapsed());
                    }
                    (list, result)
                });
            }
        }
        out.extend(futures::future::join_all(loads).await);
        out
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

    /// A lazily started GET of `range`, shared by the lists it covers. It is
    /// spawned when first polled, so a cancelled search never cancels a GET
    /// that other searches wait on.
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
            config: self.config.clone(),
        };
        async move {
            let task = tokio::spawn(async move { ctx.get_split(range).await.map_err(Arc::new) });
            task.await
                .map_err(|e| Arc::new(Error::Internal(format!("fetch task failed: {e}"))))?
        }
        .boxed()
        .shared()
    }
}

struct GetContext {
    object: Arc<IndexObject>,
    io: Arc<SearchIo>,
    per_search: Arc<Semaphore>,
    global: Arc<Semaphore>,
    counters: Arc<FetchCounters>,
    latencies: Arc<LatencyWindow>,
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
            return self.get_once(range).await;
        };
        let delay = self.latencies.percentile(hedge.percentile).max(hedge.min_delay);
        let first = self.get_once(range.clone());
        tokio::pin!(first);
        tokio::select! {
            r = &mut first => return r,
            _ = tokio::time::sleep(delay) => {}
        }
        let gets = self.counters.gets.load(Ordering::Relaxed) as f64;
        let hedges = self.counters.hedges.load(Ordering::Relaxed) as f64;
        if hedges + 1.0 > (gets * hedge.budget).max(1.0) {
            return first.await;
        }
        self.counters.hedges.fetch_add(1, Ordering::Relaxed);
        self.io.record_hedge();
        let second = self.get_once(range);
        tokio::pin!(second);
        // Whichever answers first wins; a failed one defers to the other.
        tokio::select! {
            r = &mut first => match r { Ok(b) => Ok(b), Err(_) => second.await },
            r = &mut second => match r { Ok(b) => Ok(b), Err(_) => first.await },
        }
    }

    async fn get_once(&self, range: Range<u64>) -> Result<Bytes> {
        let _search_slot = self.per_search.clone().acquire_owned().await;
        let _global_slot = self.global.clone().acquire_owned().await;
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
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
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        let uri = self.object.uri();
        let bytes = match outcome {
            Err(_) => {
                return Err(Error::Store {
                    uri: uri.to_string(),
                    source: object_store::Error::Generic {
                        store: "ivflake",
                        source: format!("GET of bytes {range:?} timed out after {:?}", self.config.get_timeout).into(),
                    },
                })
            }
            Ok(r) => r.map_err(|e| Error::from_store(uri, self.object.e_tag.as_deref(), e))?,
        };
        let expected = range.end - range.start;
        if bytes.len() as u64 != expected {
            return Err(Error::ShortRead {
                list: usize::MAX,
                expected,
                got: bytes.len() as u64,
            });
        }
        self.latencies.record(started.elapsed());
        self.counters.bytes.fetch_add(expected, Ordering::Relaxed);
        self.io.record_get(expected);
        Ok(bytes)
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
