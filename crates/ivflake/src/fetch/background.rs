//! Background loads: list data brought into the memory cache before any
//! search asks for it (the preload after open). Three rules keep searches
//! first:
//!
//! - large merged GETs in slots of their own, never the searches' slots, so a
//!   search never queues behind them;
//! - never in the in-flight map, so a search never joins a large GET it did
//!   not ask for (it fetches its own list; the later insert is the same bytes);
//! - only into the memory cache's free room: nothing hot is evicted, and
//!   moka's admission, which turns never-seen keys away once the cache is
//!   full, takes every list loaded, so what was loaded is what is resident.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Semaphore;

use super::get::GetContext;
use super::load::keep_verified;
use super::plan::{aligned, plan_gets, ListRequest};
use super::{FetchScheduler, ListKey};
use crate::object::IndexObject;
use crate::stats::{SearchIo, SearchStats};

/// Background GETs in flight at once (the store's slots otherwise belong to searches).
pub const BACKGROUND_GETS: usize = 2;
/// The most bytes one background GET reads: large enough that a round trip
/// is small beside the transfer, small enough to stop soon when told to.
pub const BACKGROUND_GET_BYTES: u64 = 8 << 20;
/// Lists this far apart in the file still share a background GET.
const BACKGROUND_GAP: u64 = 1 << 20;

/// What a background load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackgroundLoad {
    /// Lists put into the memory cache.
    pub lists_loaded: usize,
    pub bytes_loaded: u64,
    /// Lists already in memory when the load reached them.
    pub lists_already_in_memory: usize,
    pub gets: u64,
    /// Bytes those GETs read (gaps between lists included).
    pub bytes_fetched: u64,
    /// Lists whose GET or checksum failed; searches fetch them as usual.
    pub failed_lists: Vec<usize>,
    /// Lists left out because the memory cache had no free room for them.
    pub lists_without_room: usize,
}

impl FetchScheduler {
    /// Loads `requests` into the memory cache by the rules in the module docs.
    /// `progress` hears each list as it lands.
    pub async fn load_background(
        &self,
        object: &Arc<IndexObject>,
        requests: &[ListRequest],
        mut progress: impl FnMut(&BackgroundLoad),
    ) -> BackgroundLoad {
        let core = &self.core;
        let mut report = BackgroundLoad::default();
        let mut missing: Vec<ListRequest> = requests
            .iter()
            .filter(|r| {
                let resident = core.memory.contains_key(&ListKey::new(object, r.list));
                report.lists_already_in_memory += usize::from(resident);
                !resident
            })
            .copied()
            .collect();
        missing.sort_by_key(|r| r.range.offset);
        if core.config.memory_cache_bytes == 0 {
            report.lists_without_room = missing.len();
            return report;
        }
        let io = Arc::new(SearchIo::default());
        let slots = Arc::new(Semaphore::new(BACKGROUND_GETS));
        // Owned groups: the stream lives in a spawned task.
        let groups: Vec<Vec<ListRequest>> = plan_gets(&missing, BACKGROUND_GAP, BACKGROUND_GET_BYTES)
            .into_iter()
            .map(<[ListRequest]>::to_vec)
            .collect();
        let mut gets = futures::stream::iter(groups)
            .map(|group| {
                let ctx = GetContext {
                    core: core.clone(),
                    object: object.clone(),
                    io: io.clone(),
                    per_search: slots.clone(),
                    background: true,
                };
                async move {
                    let start = group[0].range.offset;
                    let end = group.last().map_or(start, |r| r.range.offset + r.range.len);
                    (group, ctx.get_split(start..end).await)
                }
            })
            .buffer_unordered(BACKGROUND_GETS);
        while let Some((group, fetched)) = gets.next().await {
            let bytes = match fetched {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(uri = %object.uri(), lists = group.len(), error = %e, "background load: GET failed");
                    report.failed_lists.extend(group.iter().map(|r| r.list));
                    continue;
                }
            };
            let start = group[0].range.offset;
            for req in group {
                let at = (req.range.offset - start) as usize;
                let len = req.range.len as usize;
                // Room is checked per list: searches fill the cache meanwhile.
                core.memory.run_pending_tasks();
                if core.memory.weighted_size() + req.range.len > core.config.memory_cache_bytes {
                    report.lists_without_room += 1;
                    continue;
                }
                // Copied out, so the cache never pins the whole GET's buffer.
                let list = aligned(&bytes.slice(at..at + len), req.align_at, false);
                match keep_verified(core, object, req.list, list) {
                    Ok(list) => {
                        core.remember(ListKey::new(object, req.list), list);
                        report.lists_loaded += 1;
                        report.bytes_loaded += req.range.len;
                        progress(&report);
                    }
                    Err(e) => {
                        tracing::warn!(uri = %object.uri(), list = req.list, error = %e, "background load: list refused");
                        report.failed_lists.push(req.list);
                    }
                }
            }
        }
        let mut stats = SearchStats::default();
        stats.absorb(&io);
        report.gets = stats.gets;
        report.bytes_fetched = stats.bytes_fetched;
        report.failed_lists.sort_unstable();
        report
    }
}
