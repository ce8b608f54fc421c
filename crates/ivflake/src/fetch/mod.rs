//! The fetch scheduler: every inverted-list read in the process goes through
//! here (Lance's `scheduler.rs` is the model). It owns the in-flight limits,
//! the memory cache and version pinning, and hands the rest to its parts:
//!
//! - `plan`: which missing lists share one GET (pure);
//! - `background`: loads ahead of searches, in slots and room of their own;
//! - `load`: single-flight loads, one spawned task per list;
//! - `get`: the GET path (If-Match, slots, time-outs, re-sends, hedging, splits);
//! - `hedge`: the hedge budget and latency window (pure);
//! - `disk`: the optional local-disk tier;
//! - `resident`: each index version's memory-cache lists by list number.
//!
//! It must not know about Faiss: it moves byte ranges, nothing more.

mod background;
mod disk;
mod get;
mod hedge;
mod load;
mod plan;
mod resident;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::config::FetchConfig;
use crate::error::{Error, Result};
use crate::object::IndexObject;
use crate::stats::{Residency, SearchIo};
pub use background::{BackgroundLoad, BACKGROUND_GETS, BACKGROUND_GET_BYTES};
use disk::DiskCache;
use hedge::{HedgeBudget, LatencyWindow};
use load::WeakLoad;
pub use plan::ListRequest;
use resident::{sample_access, ResidentLists};

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
    /// Lists not written to disk because the write queue was full (they are
    /// fetched again when next needed).
    pub disk_writes_skipped: u64,
    /// Disk writes that failed (logged).
    pub disk_write_errors: u64,
    pub disk_resident_bytes: u64,
    pub disk_capacity_bytes: u64,
}

/// What every GET and load of the process shares: one `Arc` of it travels
/// with each GET instead of a copy of the configuration and a handle per part.
pub(crate) struct Core {
    config: FetchConfig,
    global: Semaphore,
    /// Slots of background loads (`background.rs`), apart from the searches'.
    background: Semaphore,
    /// Synchronous (moka's `sync` cache: look-ups never wait on anything), so
    /// a warm search can look its lists up inside its compute job.
    memory: moka::sync::Cache<ListKey, Bytes>,
    /// Per index version, the lists `memory` holds, by list number: what a
    /// warm search looks up (see `resident.rs`). Kept in step by `remember`
    /// and `memory`'s eviction listener.
    resident: Arc<RwLock<HashMap<u64, Arc<ResidentLists>>>>,
    disk: Option<Arc<DiskCache>>,
    counters: Arc<FetchCounters>,
    latencies: LatencyWindow,
    hedge_budget: HedgeBudget,
    /// Loads in flight: a search that needs a list being loaded joins its
    /// load (single-flight). Each load is a spawned task that runs while any
    /// search awaits it: cancelling one search, even the one that started it,
    /// never cancels a load others wait on; when the last waiter is gone
    /// (deadlines, dropped requests) the load and its GET are aborted, so a
    /// stalled store does not keep slots busy for nobody.
    in_flight: Mutex<HashMap<ListKey, WeakLoad>>,
}

impl Core {
    /// Puts a list into the memory cache, and into its version's list table
    /// first: a removal that follows finds it there to take out.
    ///
    /// moka applies its budget in maintenance, which it runs once 64 reads
    /// or writes are pending; until then the cache can hold more than its
    /// budget. Warm searches read the list table, not moka, so reads no
    /// longer run it often: the insert runs it, and the budget holds after
    /// every insert. An insert follows a store read, so this costs little.
    fn remember(&self, key: ListKey, bytes: Bytes) {
        let table = self.resident.read().ok().and_then(|t| t.get(&key.object).cloned());
        if let Some(table) = table {
            table.put(key.list as usize, &bytes);
        }
        self.memory.insert(key, bytes);
        self.memory.run_pending_tasks();
    }
}

/// See the module docs.
pub struct FetchScheduler {
    core: Arc<Core>,
    /// Open index handles per object version, so a version's memory entries
    /// are dropped once nothing can search it any more.
    versions: Mutex<HashMap<u64, usize>>,
}

/// Keeps one object version's cache entries wanted; see [`FetchScheduler::pin_version`].
pub(crate) struct VersionPin {
    scheduler: Arc<FetchScheduler>,
    object: u64,
    /// An index version's list table ([`FetchScheduler::pin_lists`]).
    resident: Option<Arc<ResidentLists>>,
}

impl VersionPin {
    /// Bytes of the version's list table (shared by its handles).
    pub fn resident_table_bytes(&self) -> u64 {
        self.resident.as_ref().map_or(0, |t| t.slot_bytes())
    }
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
            if let Ok(mut tables) = self.scheduler.core.resident.write() {
                tables.remove(&self.object);
            }
            let object = self.object;
            // Runs during moka's maintenance; the entries' Bytes are freed then.
            let _ = self
                .scheduler
                .core
                .memory
                .invalidate_entries_if(move |k, _| k.object == object);
        }
    }
}

impl std::fmt::Debug for FetchScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchScheduler")
            .field("config", &self.core.config)
            .finish()
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
            Error::from(std::io::Error::new(
                e.kind(),
                format!("disk cache directory {}: {e}", dc.dir.display()),
            ))
        })?;
        Ok(Some(Arc::new(disk)))
    }

    fn build(config: FetchConfig, disk: Option<Arc<DiskCache>>) -> Arc<Self> {
        let counters = Arc::new(FetchCounters::default());
        let evictions = counters.clone();
        let resident: Arc<RwLock<HashMap<u64, Arc<ResidentLists>>>> = Arc::default();
        let tables = resident.clone();
        let memory = moka::sync::Cache::builder()
            .max_capacity(config.memory_cache_bytes)
            .weigher(|_k: &ListKey, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .support_invalidation_closures()
            // Every removal (evicted, refused at admission, replaced,
            // invalidated) empties the list's slot if it holds that buffer.
            .eviction_listener(move |k: Arc<ListKey>, v: Bytes, cause| {
                if let Some(table) = tables.read().ok().and_then(|t| t.get(&k.object).cloned()) {
                    table.remove(k.list as usize, &v);
                }
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ivflake_cache_evictions_total", "tier" => "memory").increment(1);
                }
            })
            .build();
        Arc::new(Self {
            core: Arc::new(Core {
                global: Semaphore::new(config.max_in_flight.max(1)),
                background: Semaphore::new(background::BACKGROUND_GETS),
                memory,
                resident,
                disk,
                counters,
                latencies: LatencyWindow::default(),
                hedge_budget: HedgeBudget::default(),
                in_flight: Mutex::new(HashMap::new()),
                config,
            }),
            versions: Mutex::new(HashMap::new()),
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
            resident: None,
        }
    }

    /// [`FetchScheduler::pin_version`] for an index version of `lists`
    /// lists: its memory-cache lists are also kept by list number, for
    /// [`FetchScheduler::memory_hits`].
    pub(crate) fn pin_lists(self: &Arc<Self>, object: &IndexObject, lists: usize) -> VersionPin {
        let mut pin = self.pin_version(object);
        if let Ok(mut tables) = self.core.resident.write() {
            let table = tables
                .entry(object.id)
                .or_insert_with(|| Arc::new(ResidentLists::new(lists)));
            pin.resident = Some(table.clone());
        }
        pin
    }

    pub fn config(&self) -> &FetchConfig {
        &self.core.config
    }

    /// Waits until the disk tier's background writes started so far are done
    /// (and the evictions they caused have deleted their files); at once
    /// without a disk tier. Lets a test or a shutdown observe a settled tier.
    pub async fn settle_disk_writes(&self) {
        if let Some(disk) = &self.core.disk {
            disk.settle().await;
        }
    }

    pub fn counters(&self) -> &FetchCounters {
        &self.core.counters
    }

    /// Bytes the memory cache holds now.
    pub async fn memory_resident_bytes(&self) -> u64 {
        self.core.memory.run_pending_tasks();
        self.core.memory.weighted_size()
    }

    /// Bytes the memory cache holds now, without waiting (pending inserts
    /// and evictions applied first, on this thread).
    pub(crate) fn memory_weighted_bytes(&self) -> u64 {
        self.core.memory.run_pending_tasks();
        self.core.memory.weighted_size()
    }

    /// Number of lists resident in memory, all indexes together.
    pub fn memory_entries(&self) -> u64 {
        self.core.memory.entry_count()
    }

    /// Lists and bytes of one index version in memory and on disk.
    pub(crate) fn residency(&self, object: &IndexObject) -> Residency {
        let (lists_in_memory, bytes_in_memory) = self
            .core
            .memory
            .iter()
            .filter(|(k, _)| k.object == object.id)
            .fold((0, 0), |(n, b), (_, v)| (n + 1, b + v.len() as u64));
        let (lists_on_disk, bytes_on_disk) = self
            .core
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
        let c = &self.core.counters;
        let mut report = CacheReport {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            memory_misses: c.memory_misses.load(Ordering::Relaxed),
            memory_evictions: c.evictions.load(Ordering::Relaxed),
            memory_resident_bytes: self.memory_resident_bytes().await,
            memory_capacity_bytes: self.core.config.memory_cache_bytes,
            ..Default::default()
        };
        if let Some(disk) = &self.core.disk {
            let d = &disk.counters;
            report.disk_enabled = true;
            report.disk_hits = d.hits.load(Ordering::Relaxed);
            report.disk_misses = d.misses.load(Ordering::Relaxed);
            report.disk_evictions = d.evictions.load(Ordering::Relaxed);
            report.disk_corrupt_entries = d.corrupt.load(Ordering::Relaxed);
            report.disk_writes_skipped = d.writes_skipped.load(Ordering::Relaxed);
            report.disk_write_errors = d.write_errors.load(Ordering::Relaxed);
            report.disk_resident_bytes = disk.resident_bytes().await;
            report.disk_capacity_bytes = disk.capacity();
        }
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "memory").set(report.memory_resident_bytes as f64);
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "disk").set(report.disk_resident_bytes as f64);
        report
    }

    /// Every requested list from the memory cache, or `None` at the first one
    /// missing (then nothing is counted: the wave that follows counts them).
    /// Synchronous, for a warm search's single compute job. Lists come from
    /// the version's list table when `pin` has one, from moka otherwise.
    /// Misses are left to [`FetchScheduler::fetch`], which records them in
    /// moka's policy at full rate; hits found in the table only in a sample.
    pub(crate) fn memory_hits(
        &self,
        pin: &VersionPin,
        requests: &[ListRequest],
        io: &SearchIo,
    ) -> Option<Vec<(usize, Arc<Bytes>)>> {
        let core = &self.core;
        let key = |list: usize| ListKey {
            object: pin.object,
            list: list as u32,
        };
        let report = sample_access();
        let hits = requests
            .iter()
            .map(|req| {
                let bytes = match &pin.resident {
                    // The table mirrors moka: a list missing here goes to the
                    // wave, which asks moka once (a miss counted once).
                    Some(table) => {
                        let bytes = table.get(req.list)?;
                        if report {
                            // Tells moka's policy about the use; the value is the same.
                            core.memory.get(&key(req.list));
                        }
                        bytes
                    }
                    None => Arc::new(core.memory.get(&key(req.list))?),
                };
                Some((req.list, bytes))
            })
            .collect::<Option<Vec<_>>>()?;
        core.counters
            .memory_hits
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        for (_, bytes) in &hits {
            io.record_memory(bytes.len() as u64);
        }
        metrics::counter!("ivflake_cache_hits_total", "tier" => "memory").increment(hits.len() as u64);
        Some(hits)
    }

    /// Fetches every requested list concurrently, in one wave. Each list's
    /// outcome is reported separately so the caller can choose partial results.
    pub async fn fetch(
        &self,
        object: &Arc<IndexObject>,
        requests: &[ListRequest],
        io: &Arc<SearchIo>,
    ) -> Vec<(usize, Result<Bytes>)> {
        let core = &self.core;
        let mut out = Vec::with_capacity(requests.len());
        let mut misses = Vec::new();
        for req in requests {
            match core.memory.get(&ListKey::new(object, req.list)) {
                Some(bytes) => {
                    core.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
                    io.record_memory(bytes.len() as u64);
                    out.push((req.list, Ok(bytes)));
                }
                None => {
                    core.counters.memory_misses.fetch_add(1, Ordering::Relaxed);
                    misses.push(*req);
                }
            }
        }
        metrics::counter!("ivflake_cache_hits_total", "tier" => "memory").increment(out.len() as u64);
        metrics::counter!("ivflake_cache_misses_total", "tier" => "memory").increment(misses.len() as u64);

        let wave = match load::join_or_start(core, object, misses.clone(), io) {
            Ok(wave) => wave,
            Err(e) => {
                out.extend(misses.iter().map(|r| (r.list, Err(e.clone()))));
                return out;
            }
        };
        let own = wave
            .started
            .into_iter()
            .map(|(list, load)| async move { (list, load.await) });
        let shared = wave.joined.into_iter().map(|(list, load)| {
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
        metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "memory").set(core.memory.weighted_size() as f64);
        out
    }
}
