//! Warm-up: loading lists into the caches before searches ask for them, in
//! waves of bounded bytes through the same scheduler searches use. The lists
//! come from the caller, the layout (largest) and the probe counts (hottest).

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::plan::Wave;
use super::IvfIndex;
use crate::error::{Error, Result};
use crate::stats::{ms, SearchIo, SearchStats};

/// Bytes a warm-up fetches per wave: large enough to keep the store's
/// pipeline full, small enough that warming a whole index stays bounded.
const WARM_WAVE_BYTES: u64 = 64 << 20;

/// Which lists to load. The three sources are combined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct WarmSpec {
    /// These list numbers.
    pub lists: Vec<usize>,
    /// The N lists with the most bytes.
    pub largest: usize,
    /// The N lists probed most often so far.
    pub most_probed: usize,
}

/// What a warm-up loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WarmReport {
    /// Distinct non-empty lists the spec named.
    pub lists_requested: usize,
    pub lists_already_in_memory: usize,
    pub lists_from_disk: usize,
    pub lists_from_store: usize,
    pub gets: u64,
    pub bytes_fetched: u64,
    pub failed_lists: Vec<usize>,
    pub ms: f64,
}

impl IvfIndex {
    /// Loads lists into the caches before searches need them: the given
    /// lists, the largest, and the most probed, in one wave.
    pub async fn warm(&self, spec: &WarmSpec) -> Result<WarmReport> {
        self.warm_within(spec, u64::MAX).await
    }

    /// [`IvfIndex::warm`] refused before any GET when the lists it names
    /// hold more than `max_bytes` (`InvalidArgument` on `max_bytes_per_search`,
    /// the budget a search has too).
    pub async fn warm_within(&self, spec: &WarmSpec, max_bytes: u64) -> Result<WarmReport> {
        let started = Instant::now();
        let nlist = self.info().nlist;
        if let Some(&bad) = spec.lists.iter().find(|&&l| l >= nlist) {
            return Err(Error::invalid(
                "lists",
                format!("list {bad} does not exist; the index has {nlist} lists"),
            ));
        }
        let mut wanted = spec.lists.clone();
        if spec.largest > 0 {
            let mut by_size: Vec<(u64, usize)> = (0..nlist)
                .filter_map(|l| self.list_ranges().get(l).map(|r| (r.len, l)))
                .collect();
            by_size.sort_unstable_by(|a, b| b.cmp(a));
            wanted.extend(by_size.into_iter().take(spec.largest).map(|(_, l)| l));
        }
        wanted.extend(self.probes().hottest(spec.most_probed));
        wanted.sort_unstable();
        wanted.dedup();
        let requests = self.list_requests(&wanted);
        let needed: u64 = requests.iter().map(|r| r.range.len).sum();
        if needed > max_bytes {
            return Err(Error::invalid(
                "max_bytes_per_search",
                format!(
                    "this warm-up would load {needed} bytes of lists, over the limit of {max_bytes}; \
                     name fewer lists"
                ),
            ));
        }
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
            let wave = Wave::lists(requests[wave_start..wave_end].to_vec());
            let fetched = self.fetch_wave(&wave, None, &io).await.lists;
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
}
