//! Single-flight loads: one spawned task per missing list, registered in the
//! scheduler's in-flight map so that every search needing that list awaits
//! the same load. A load reads the disk tier, else slices its group's shared
//! GET, verifies the bytes and caches them. It runs while anyone awaits it
//! and is aborted, GET included, when nobody does any more.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::sync::Semaphore;

use super::disk::DiskKey;
use super::get::GetContext;
use super::plan::{aligned, plan_gets, ListRequest};
use super::{Core, ListKey};
use crate::error::{Error, Result};
use crate::object::IndexObject;
use crate::stats::SearchIo;

/// A group's GET, or one list's load: a future any number of waiters share.
pub(super) type SharedLoad = Shared<BoxFuture<'static, Result<Bytes>>>;
pub(super) type WeakLoad = WeakShared<BoxFuture<'static, Result<Bytes>>>;

/// Aborts a spawned fetch task once nothing awaits it any more.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The loads a wave awaits: those it joined (already in flight for another
/// search) and those it started.
pub(super) struct Wave {
    pub joined: Vec<(usize, SharedLoad)>,
    pub started: Vec<(usize, SharedLoad)>,
}

/// Joins the loads of `misses` already in flight and starts the rest, grouped
/// into GETs. Deciding and registering under one lock makes each list load once.
pub(super) fn join_or_start(
    core: &Arc<Core>,
    object: &Arc<IndexObject>,
    mut misses: Vec<ListRequest>,
    io: &Arc<SearchIo>,
) -> Result<Wave> {
    let mut wave = Wave {
        joined: Vec::new(),
        started: Vec::new(),
    };
    let mut in_flight = core
        .in_flight
        .lock()
        .map_err(|_| Error::Internal("fetch scheduler state poisoned".into()))?;
    misses.retain(
        |req| match in_flight.get(&ListKey::new(object, req.list)).and_then(|w| w.upgrade()) {
            Some(load) => {
                core.counters.loads_joined.fetch_add(1, Ordering::SeqCst);
                wave.joined.push((req.list, load));
                false
            }
            None => true,
        },
    );
    misses.sort_by_key(|r| r.range.offset);
    // A wave of entries (a refine wave's codes, id-map pages: pages of about
    // 1 KiB) is bound by round trips, not bandwidth: it may take every slot
    // of the process-wide limit at once instead of the per-search share.
    let slots = if object.holds_entries() {
        core.config.max_in_flight.max(core.config.max_in_flight_per_search)
    } else {
        core.config.max_in_flight_per_search
    };
    let per_search = Arc::new(Semaphore::new(slots.max(1)));
    for group in plan_gets(&misses, core.config.coalesce_gap, core.config.max_coalesced) {
        let start = group[0].range.offset;
        let end = group.last().map(|r| r.range.offset + r.range.len).unwrap_or(start);
        let get = group_get(
            GetContext {
                core: core.clone(),
                object: object.clone(),
                io: io.clone(),
                per_search: per_search.clone(),
                background: false,
            },
            start..end,
        );
        for req in group {
            let rel = (req.range.offset - start) as usize..(req.range.offset + req.range.len - start) as usize;
            let key = ListKey::new(object, req.list);
            let load = ListLoad {
                core: core.clone(),
                object: object.clone(),
                list: req.list,
                rel,
                align_at: req.align_at,
                get: get.clone(),
                io: io.clone(),
            };
            let shared = spawn_load(core, key, load);
            if let Some(weak) = shared.downgrade() {
                in_flight.insert(key, weak);
            }
            wave.started.push((req.list, shared));
        }
    }
    Ok(wave)
}

/// Runs one list's load as its own task: on success the list goes into the
/// memory cache before the load leaves the in-flight map, so a later search
/// finds it in one place or the other.
fn spawn_load(core: &Arc<Core>, key: ListKey, load: ListLoad) -> SharedLoad {
    let core = core.clone();
    let task = tokio::spawn(async move {
        let result = load.run().await;
        if let (true, Ok(bytes)) = (core.config.memory_cache_bytes > 0, &result) {
            core.remember(key, bytes.clone());
        }
        if let Ok(mut map) = core.in_flight.lock() {
            map.remove(&key);
        }
        result
    });
    let guard = AbortOnDrop(task.abort_handle());
    async move {
        let _guard = guard;
        task.await
            .map_err(|e| Error::Internal(format!("list load task failed: {e}")))?
    }
    .boxed()
    .shared()
}

/// A lazily started GET of `range`, shared by the lists it covers (their
/// load tasks poll it, so it runs whatever happens to the searches).
fn group_get(ctx: GetContext, range: Range<u64>) -> SharedLoad {
    async move {
        let task = tokio::spawn(async move { ctx.get_split(range).await });
        let _guard = AbortOnDrop(task.abort_handle());
        task.await
            .map_err(|e| Error::Internal(format!("fetch task failed: {e}")))?
    }
    .boxed()
    .shared()
}

/// Loads one list on a memory miss: from disk if a valid entry is there,
/// else by slicing its group's shared GET; verified before anything caches it.
struct ListLoad {
    core: Arc<Core>,
    object: Arc<IndexObject>,
    list: usize,
    /// The list's bytes within its group's GET.
    rel: Range<usize>,
    /// See [`ListRequest::align_at`].
    align_at: usize,
    get: SharedLoad,
    io: Arc<SearchIo>,
}

impl ListLoad {
    async fn run(self) -> Result<Bytes> {
        let expected = self.rel.len() as u64;
        let disk_key = DiskKey {
            object: self.object.disk_id,
            list: self.list as u32,
        };
        if let Some(disk) = &self.core.disk {
            if let Some(bytes) = disk.get(disk_key, expected).await {
                metrics::counter!("ivflake_cache_hits_total", "tier" => "disk").increment(1);
                // Disk entries were verified when written and are hashed on read.
                self.io.record_disk(bytes.len() as u64);
                return Ok(aligned(&bytes, self.align_at, true));
            }
            metrics::counter!("ivflake_cache_misses_total", "tier" => "disk").increment(1);
        }
        let group = self.get.await?;
        if group.len() < self.rel.end {
            return Err(Error::ShortRead {
                list: self.list,
                expected,
                got: group.len().saturating_sub(self.rel.start) as u64,
            });
        }
        // A list merged with others is copied out, so caching it never pins
        // the whole group's buffer (the cache weighs only the list's bytes);
        // a list not aligned for its reader is copied once here, not per search.
        let whole = group.len() == self.rel.len();
        let bytes = aligned(&group.slice(self.rel), self.align_at, whole);
        keep_verified(&self.core, &self.object, self.list, bytes)
    }
}

/// Checks a list fetched from the store against the sidecar, counting a
/// mismatch, and writes it to the disk tier when it passes.
pub(super) fn keep_verified(core: &Core, object: &IndexObject, list: usize, bytes: Bytes) -> Result<Bytes> {
    if let Err(e) = object.verify(list, &bytes) {
        core.counters.checksum_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ivflake_checksum_failures_total").increment(1);
        return Err(e);
    }
    if let Some(disk) = &core.disk {
        let key = DiskKey {
            object: object.disk_id,
            list: list as u32,
        };
        disk.put(key, bytes.clone());
    }
    Ok(bytes)
}
