//! Per-search statistics: what a search read, from where, and where its time went.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::config::StorePrices;

/// Counters one search's fetches update, possibly from spawned GET tasks.
#[derive(Debug, Default)]
pub struct SearchIo {
    gets: AtomicU64,
    bytes_fetched: AtomicU64,
    lists_from_memory: AtomicU64,
    bytes_from_memory: AtomicU64,
    lists_from_disk: AtomicU64,
    bytes_from_disk: AtomicU64,
    retries: AtomicU64,
    lists_shared: AtomicU64,
    shared_wait_us: AtomicU64,
    hedges: AtomicU64,
}

impl SearchIo {
    pub(crate) fn record_get(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_bytes(&self, bytes: u64) {
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_disk(&self, bytes: u64) {
        self.lists_from_disk.fetch_add(1, Ordering::Relaxed);
        self.bytes_from_disk.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_memory(&self, bytes: u64) {
        self.lists_from_memory.fetch_add(1, Ordering::Relaxed);
        self.bytes_from_memory.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_shared(&self, waited: Duration) {
        self.lists_shared.fetch_add(1, Ordering::Relaxed);
        self.shared_wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_hedge(&self) {
        self.hedges.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reported with every search result.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SearchStats {
    pub queries: usize,
    /// Distinct non-empty lists the batch probed.
    pub lists_probed: usize,
    pub lists_from_memory: usize,
    /// Lists read from the local disk tier.
    pub lists_from_disk: usize,
    /// Lists this search loaded from the store itself.
    pub lists_from_store: usize,
    /// Lists another search was already fetching; this one waited for it.
    pub lists_shared: usize,
    /// Range GETs this search issued (hedges and retries included).
    pub gets: u64,
    /// Bytes received from the store.
    pub bytes_fetched: u64,
    pub bytes_from_memory: u64,
    pub bytes_from_disk: u64,
    /// Bytes of the probed lists themselves (fetched bytes minus coalescing gaps).
    pub bytes_probed: u64,
    pub hedged_gets: u64,
    /// GETs re-sent after timing out (object_store's own HTTP retries are inside one GET).
    pub retries: u64,
    /// Lists an attribute filter's summaries ruled out, skipped unfetched.
    pub lists_pruned: usize,
    /// Lists probed past `nprobe` because few rows matched the filter.
    pub extra_lists_probed: usize,
    /// Rows of the probed lists that matched the attribute filter.
    pub rows_matched: u64,
    /// Lists that failed, when partial results were allowed.
    pub failed_lists: Vec<usize>,
    /// Jobs the search ran on the compute pool: 1 when every list (and
    /// attribute chunk) it read was in memory, one more per fetch wave.
    pub compute_jobs: usize,
    /// Refined indexes: candidates re-scored (queries × k × k_factor, less
    /// the missing), and the refine wave's GETs and bytes of codes (pages
    /// of them, from any tier).
    pub refine_candidates: usize,
    pub refine_gets: u64,
    pub refine_bytes: u64,
    /// Id-mapped indexes whose map is not in memory: the id map wave's GETs
    /// and bytes.
    pub id_map_gets: u64,
    pub id_map_bytes: u64,
    /// A mutable index's version and the last log position the search
    /// saw, and the entries it read from the log (not yet compacted).
    pub version: Option<u64>,
    pub log_position: Option<u64>,
    pub unindexed_entries: u64,
    /// The store requests this search sent, by kind, and their price.
    pub cost: StoreCost,
    pub quantizer_ms: f64,
    pub fetch_ms: f64,
    pub scan_ms: f64,
    pub shared_wait_ms: f64,
    pub total_ms: f64,
}

impl SearchStats {
    pub(crate) fn absorb(&mut self, io: &SearchIo) {
        self.gets = io.gets.load(Ordering::Relaxed);
        self.bytes_fetched = io.bytes_fetched.load(Ordering::Relaxed);
        self.lists_from_memory = io.lists_from_memory.load(Ordering::Relaxed) as usize;
        self.bytes_from_memory = io.bytes_from_memory.load(Ordering::Relaxed);
        self.lists_from_disk = io.lists_from_disk.load(Ordering::Relaxed) as usize;
        self.bytes_from_disk = io.bytes_from_disk.load(Ordering::Relaxed);
        self.retries = io.retries.load(Ordering::Relaxed);
        self.lists_shared = io.lists_shared.load(Ordering::Relaxed) as usize;
        self.shared_wait_ms = io.shared_wait_us.load(Ordering::Relaxed) as f64 / 1000.0;
        self.hedged_gets = io.hedges.load(Ordering::Relaxed);
        self.cost.get_requests = self.gets;
        self.cost.bytes = self.bytes_fetched;
        self.lists_from_store = self.lists_probed.saturating_sub(
            self.lists_from_memory + self.lists_from_disk + self.lists_shared + self.failed_lists.len(),
        );
    }

    /// Adds the reads of `io`, another wave of the same search (a text
    /// query's postings, its hits' rows), to what this search counted.
    pub(crate) fn add_io(&mut self, io: &SearchIo) {
        let mut other = SearchStats::default();
        other.absorb(io);
        self.gets += other.gets;
        self.bytes_fetched += other.bytes_fetched;
        self.lists_from_memory += other.lists_from_memory;
        self.bytes_from_memory += other.bytes_from_memory;
        self.lists_from_disk += other.lists_from_disk;
        self.bytes_from_disk += other.bytes_from_disk;
        self.retries += other.retries;
        self.lists_shared += other.lists_shared;
        self.shared_wait_ms += other.shared_wait_ms;
        self.hedged_gets += other.hedged_gets;
        self.cost.add_io(io);
    }
}

/// What one search's store requests cost: counted by kind (each request
/// sent, hedges and re-sends included, as the store bills them) and priced
/// with the scheduler's [`StorePrices`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StoreCost {
    /// Range GETs: lists, attribute chunks, refine codes and id map pages
    /// (their waves count apart, in `refine_gets` and `id_map_gets`, and
    /// here too), and the log records a mutable index's refresh read.
    pub get_requests: u64,
    /// LISTs: a mutable index reading the heads of its log and versions.
    pub list_requests: u64,
    /// Bytes received from the store.
    pub bytes: u64,
    /// US dollars at the configured prices.
    pub usd: f64,
}

impl StoreCost {
    /// Adds the store requests and bytes of `io` (a refine or id-map wave's own counters).
    pub(crate) fn add_io(&mut self, io: &SearchIo) {
        self.get_requests += io.gets.load(Ordering::Relaxed);
        self.bytes += io.bytes_fetched.load(Ordering::Relaxed);
    }

    /// Adds `other`'s requests and bytes, and prices the sum again.
    pub(crate) fn add(&mut self, other: &StoreCost, prices: &StorePrices) {
        self.get_requests += other.get_requests;
        self.list_requests += other.list_requests;
        self.bytes += other.bytes;
        self.usd = prices.price(self.get_requests, self.list_requests, self.bytes);
    }

    /// Counts this cost in the process's metrics, under the index's label.
    pub(crate) fn record_metrics(&self, index: &str) {
        for (kind, n) in [("get", self.get_requests), ("list", self.list_requests)] {
            if n > 0 {
                metrics::counter!("ivflake_search_store_requests_total", "index" => index.to_owned(), "kind" => kind)
                    .increment(n);
            }
        }
        metrics::counter!("ivflake_search_store_bytes_total", "index" => index.to_owned()).increment(self.bytes);
        // Counters are integers: nano-dollars keep a single GET ($4e-7) exact.
        metrics::counter!("ivflake_search_cost_nanodollars_total", "index" => index.to_owned())
            .increment((self.usd * 1e9).round() as u64);
    }
}

impl SearchIo {
    /// GETs and bytes from any tier: what a wave of entries cost.
    pub(crate) fn gets_and_bytes(&self) -> (u64, u64) {
        (
            self.gets.load(Ordering::Relaxed),
            self.bytes_fetched.load(Ordering::Relaxed)
                + self.bytes_from_memory.load(Ordering::Relaxed)
                + self.bytes_from_disk.load(Ordering::Relaxed),
        )
    }
}

/// Milliseconds, rounded to the microsecond so reports do not carry float noise.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Lists and bytes of one index version held by each cache tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Residency {
    pub lists_in_memory: u64,
    pub bytes_in_memory: u64,
    pub lists_on_disk: u64,
    pub bytes_on_disk: u64,
}
