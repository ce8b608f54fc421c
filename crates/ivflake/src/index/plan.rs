//! One search's plan and its stages, in the order a search runs them:
//!
//! `quantize (to a depth) → prune → fetch wave(s) → select → scan → merge →
//! refine → id map → attributes`
//!
//! A plain search is the case with one wave and no select stage; an
//! attribute filter plugs in as the select stage (`select.rs`: prune by
//! summaries, row mask, probing further); an `IndexRefine` or `IndexIDMap`
//! around the IVF plugs in the stages after the scan (`rerank.rs`). The
//! plan holds everything the stages share, so no stage takes a long
//! argument list. It runs on the
//! compute pool and never awaits: when a wave's lists are all in memory it
//! goes straight on, so a warm search of any kind is one compute job; when
//! not, it hands the wave to `search.rs`, the one place that fetches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ivflake_faiss::{CoarseAssignment, IdFilter};

use super::options::{IdFilterSpec, SearchParams, SearchResults};
use super::rerank::{max_entry_bytes, scan_k, EntryWave, IdMap, Rerank};
use super::scan::ListEntries;
use super::select::{AttributeSelect, Selection};
use super::view::ListView;
use super::IvfIndex;
use crate::attributes::FetchedColumns;
use crate::compute::Cancel;
use crate::error::{Error, Result};
use crate::fetch::ListRequest;
use crate::mutable::DeltaSnapshot;
use crate::stats::{ms, SearchIo, SearchStats};

/// What a search knows of one list it has visited.
pub(super) enum ListState {
    /// Empty, or the select stage proved no row matches: never fetched.
    Skipped,
    /// Fetched: its entries and, with a select stage, the rows that pass.
    Fetched {
        entries: ListEntries,
        selection: Option<Selection>,
    },
    /// Its fetch failed (kept only under `allow_partial`).
    Failed,
}

impl ListState {
    /// Whether the scan reads this list.
    fn scanned(&self, attribute_filtered: bool) -> bool {
        match self {
            ListState::Fetched { selection, .. } => {
                !attribute_filtered || selection.as_ref().is_some_and(|s| !s.ids.is_empty())
            }
            _ => false,
        }
    }
}

/// One wave of reads the plan asks for.
pub(super) struct Wave {
    pub kind: WaveKind,
    /// Lists whose codes and ids to read (non-empty, in list order).
    pub requests: Vec<ListRequest>,
    /// Lists whose attribute columns to read, and which columns.
    pub column_lists: Vec<usize>,
    pub columns: Vec<usize>,
}

impl Wave {
    /// A wave of lists alone.
    pub fn lists(requests: Vec<ListRequest>) -> Self {
        Self {
            kind: WaveKind::Probe,
            requests,
            column_lists: Vec::new(),
            columns: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaveKind {
    /// Lists probed for the queries (and the filter's columns of them).
    Probe,
    /// The returned attributes of the hits' lists.
    HitAttributes,
    /// Refine codes or id-map entries of the scan's candidates.
    Entries(EntryWave),
}

/// What a wave brought back.
pub(super) struct Fetched {
    pub lists: Vec<(usize, Result<Arc<Bytes>>)>,
    pub columns: Option<Result<FetchedColumns>>,
}

/// Where the plan stands after running as far as it could.
pub(super) enum Step {
    Done(Box<SearchResults>),
    /// It needs this wave from the store (or the disk tier) to go on.
    Fetch(Box<SearchPlan>, Wave),
}

/// One search in progress: the queries, the coarse assignment, every list
/// visited and the stats. Moved between the compute pool and the fetch wave.
pub(super) struct SearchPlan {
    pub index: IvfIndex,
    pub params: SearchParams,
    pub io: Arc<SearchIo>,
    pub stats: SearchStats,
    started: Instant,
    /// Queries as given: transformed by the quantize stage, and scored
    /// untransformed by the refine stage.
    queries: Vec<f32>,
    /// Lists quantized per query: `nprobe`, or more when a filter may probe further.
    depth: usize,
    /// Transformed queries and each one's `depth` nearest lists.
    xt: Vec<f32>,
    assignment: CoarseAssignment,
    /// Per query, how many of its `depth` lists are probed so far.
    probed: Vec<usize>,
    lists: BTreeMap<usize, ListState>,
    select: Option<AttributeSelect>,
    waves: usize,
    /// Bytes of waves past the first (the probing budget's measure).
    extra_bytes: u64,
    neighbors: Option<ivflake_faiss::Neighbors>,
    hit_columns: Option<FetchedColumns>,
    /// The refine and id-map stages, for an index wrapped in either.
    rerank: Option<Rerank>,
    /// The most bytes those stages' waves read, counted in the byte budget
    /// from the first wave on.
    entry_bytes: u64,
    /// Set when the search's caller is gone; the scan checks it.
    pub cancel: Cancel,
    /// A mutable index's writes since the base: more runs of each list.
    delta: Option<Arc<DeltaSnapshot>>,
}

impl SearchPlan {
    pub fn new(
        index: IvfIndex,
        queries: Vec<f32>,
        n: usize,
        params: SearchParams,
        select: Option<AttributeSelect>,
        delta: Option<Arc<DeltaSnapshot>>,
    ) -> Box<Self> {
        let nlist = index.info().nlist;
        let depth = match &select {
            Some(s) if s.probes_further() => params.nprobe.saturating_add(params.probing.max_extra_lists).min(nlist),
            _ => params.nprobe,
        };
        let rerank = Rerank::new(&index, &params);
        let entry_bytes = max_entry_bytes(&index, &params, n);
        Box::new(Self {
            rerank,
            entry_bytes,
            probed: vec![params.nprobe.min(depth); n],
            stats: SearchStats {
                queries: n,
                ..Default::default()
            },
            index,
            params,
            io: Arc::new(SearchIo::default()),
            started: Instant::now(),
            queries,
            depth,
            xt: Vec::new(),
            assignment: CoarseAssignment {
                distances: Vec::new(),
                lists: Vec::new(),
            },
            lists: BTreeMap::new(),
            select,
            waves: 0,
            extra_bytes: 0,
            neighbors: None,
            hit_columns: None,
            cancel: Cancel::default(),
            delta,
        })
    }

    /// The select stage, whose columns a fetch wave reads too.
    pub fn select_stage(&self) -> Option<&AttributeSelect> {
        self.select.as_ref()
    }

    /// Where a wave's reads are counted: the refine and id-map waves apart,
    /// so the stats show what each cost.
    pub fn io_for(&self, kind: WaveKind) -> Arc<SearchIo> {
        match (kind, &self.rerank) {
            (WaveKind::Entries(_), Some(rerank)) => rerank.io.clone(),
            _ => self.io.clone(),
        }
    }

    /// Runs the stages as far as memory allows: to the end, or to the next
    /// wave that must be fetched. Runs on the compute pool.
    pub fn advance(mut self: Box<Self>, fetched: Option<(WaveKind, Fetched)>) -> Result<Step> {
        if self.xt.is_empty() {
            self.quantize()?;
        }
        let mut incoming = fetched;
        loop {
            if let Some((kind, fetched)) = incoming.take() {
                self.absorb(kind, fetched)?;
            }
            let wave = if self.neighbors.is_none() {
                match self.next_probe_wave()? {
                    Some(wave) => wave,
                    None => {
                        self.neighbors = Some(self.scan()?);
                        continue;
                    }
                }
            } else if let Some(wave) = self.rerank_wave()? {
                wave
            } else if self.hit_columns.is_none() && self.select.as_ref().is_some_and(|s| s.returns_columns()) {
                self.hit_attributes_wave()
            } else {
                return Ok(Step::Done(Box::new(self.results()?)));
            };
            let lookup_started = Instant::now();
            match self.memory_hits(&wave) {
                Some(hits) => {
                    self.stats.fetch_ms += ms(lookup_started.elapsed());
                    incoming = Some((wave.kind, hits));
                }
                None => return Ok(Step::Fetch(self, wave)),
            }
        }
    }

    /// Stage 1: pre-transforms and the coarse quantizer, to `depth` lists a query.
    fn quantize(&mut self) -> Result<()> {
        let faiss = &self.index.inner.faiss;
        self.xt = faiss.apply_transform(&self.queries)?;
        self.assignment = faiss.coarse_search(&self.xt, self.depth)?;
        self.stats.quantizer_ms = ms(self.started.elapsed());
        Ok(())
    }

    /// A list read: its base entries (`None` when the base has none) and
    /// writes' entries, and with a select stage the rows that pass.
    fn visit(&self, list: usize, base: Option<ListView>, columns: Option<&FetchedColumns>) -> Result<ListState> {
        let entries = ListEntries::with_delta(list, base, self.delta.as_deref(), self.index.inner.ranges.format())?;
        let selection = match &self.select {
            Some(select) => Some(select.select(list, &entries, columns, &self.params)?),
            None => None,
        };
        Ok(ListState::Fetched { entries, selection })
    }

    fn list_at(&self, q: usize, j: usize) -> Option<usize> {
        usize::try_from(self.assignment.lists[q * self.depth + j]).ok()
    }

    /// Stage 2, prune, and the next probe wave: every query's lists up to its
    /// probe depth not yet visited, less those empty or ruled out by the
    /// select stage. `None` when probing is over. A first wave past the
    /// search's byte budget is refused before any read; a later one (probing
    /// further) ends the probing instead.
    fn next_probe_wave(&mut self) -> Result<Option<Wave>> {
        if self.waves > 0 && !self.grow_probes() {
            return Ok(None);
        }
        let mut wanted: Vec<usize> = (0..self.probed.len())
            .flat_map(|q| (0..self.probed[q]).map(move |j| (q, j)))
            .filter_map(|(q, j)| self.list_at(q, j))
            .filter(|l| !self.lists.contains_key(l))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() && self.waves > 0 {
            return Ok(None);
        }
        let mut to_fetch = Vec::with_capacity(wanted.len());
        for list in wanted {
            let empty = self.index.inner.ranges.get(list).is_none_or(|r| r.count == 0);
            let pruned = !empty && self.select.as_ref().is_some_and(|s| s.rules_out(list));
            if pruned {
                self.stats.lists_pruned += 1;
            }
            if empty && self.delta.as_ref().is_some_and(|d| d.has_entries(list)) {
                // Empty in the base, filled by writes: nothing to fetch.
                let state = self.visit(list, None, None)?;
                self.lists.insert(list, state);
            } else if empty || pruned {
                self.lists.insert(list, ListState::Skipped);
            } else {
                to_fetch.push(list);
            }
        }
        let requests = self.index.list_requests(&to_fetch);
        let columns = self
            .select
            .as_ref()
            .map(|s| s.filter_columns().to_vec())
            .unwrap_or_default();
        let column_lists = if columns.is_empty() {
            Vec::new()
        } else {
            to_fetch.clone()
        };
        let mut bytes: u64 = requests.iter().map(|r| r.range.len).sum();
        if let Some(select) = &self.select {
            bytes += select.chunk_bytes(&column_lists, &columns);
        }
        if let Some(limit) = self.params.max_bytes {
            let needed = self.stats.bytes_probed.saturating_add(bytes);
            let entries = self.entry_bytes;
            if needed.saturating_add(entries) > limit {
                if self.waves > 0 {
                    return Ok(None);
                }
                let after = if entries > 0 {
                    format!(" and up to {entries} of refine codes and ids")
                } else {
                    String::new()
                };
                return Err(Error::invalid(
                    "max_bytes_per_search",
                    format!(
                        "this search would read {needed} bytes of lists{after}, over the limit of {limit}; \
                         ask for fewer queries, a smaller nprobe or k_factor"
                    ),
                ));
            }
        }
        self.index.probes().record(&to_fetch);
        self.stats.bytes_probed += bytes;
        if self.waves > 0 {
            self.stats.extra_lists_probed += to_fetch.len();
            self.extra_bytes += bytes;
        }
        self.waves += 1;
        Ok(Some(Wave {
            kind: WaveKind::Probe,
            requests,
            column_lists,
            columns,
        }))
    }

    /// Probing further (the select stage's policy): queries that have seen
    /// too few matching rows take more of their lists. Whether any did.
    fn grow_probes(&mut self) -> bool {
        let Some(select) = self.select.as_ref().filter(|s| s.probes_further()) else {
            return false;
        };
        if self.extra_bytes >= self.params.probing.max_extra_bytes {
            return false;
        }
        let target = select.target_matches(&self.params);
        let nprobe = self.params.nprobe;
        let mut grew = false;
        for q in 0..self.probed.len() {
            let seen = self.probed[q];
            let matched: usize = (0..seen)
                .filter_map(|j| self.list_at(q, j))
                .map(|l| match self.lists.get(&l) {
                    Some(ListState::Fetched { selection: Some(s), .. }) => s.ids.len(),
                    _ => 0,
                })
                .sum();
            if matched >= target || seen >= self.depth {
                continue;
            }
            // Enough further lists for the target at the rate seen so far;
            // `nprobe` more when nothing has matched yet.
            let more = if matched == 0 {
                nprobe
            } else {
                ((target - matched) * seen).div_ceil(matched)
            };
            self.probed[q] = (seen + more.max(1)).min(self.depth);
            grew = true;
        }
        grew
    }

    /// The refine or id-map stage's next wave (an id map in memory is
    /// applied here, with no wave); `None` when they are done or absent.
    fn rerank_wave(&mut self) -> Result<Option<Wave>> {
        let (Some(rerank), Some(neighbors)) = (self.rerank.as_mut(), self.neighbors.as_mut()) else {
            return Ok(None);
        };
        Ok(rerank.next_wave(&self.index, neighbors)?.map(|(kind, requests)| Wave {
            kind: WaveKind::Entries(kind),
            requests,
            column_lists: Vec::new(),
            columns: Vec::new(),
        }))
    }

    /// A wave read from the memory cache, when it holds all of it.
    fn memory_hits(&self, wave: &Wave) -> Option<Fetched> {
        let scheduler = &self.index.inner.options.scheduler;
        let columns = match &self.select {
            Some(select) if !wave.columns.is_empty() => Some(Ok(select.memory_hits(
                scheduler,
                &wave.column_lists,
                &wave.columns,
                &self.io,
            )?)),
            _ => None,
        };
        let io = self.io_for(wave.kind);
        let lists = scheduler
            .memory_hits(self.index.wave_source(wave.kind).1, &wave.requests, &io)?
            .into_iter()
            .map(|(list, bytes)| (list, Ok(bytes)))
            .collect();
        Some(Fetched { lists, columns })
    }

    /// Stage 4, select: fetched lists as Faiss reads them and, with a select
    /// stage, the rows of each that pass every filter. A list that failed (or
    /// is corrupt) is named in the stats; its error ends the search unless
    /// partial results are allowed.
    fn absorb(&mut self, kind: WaveKind, fetched: Fetched) -> Result<()> {
        if let WaveKind::Entries(entries) = kind {
            let (Some(rerank), Some(neighbors)) = (self.rerank.as_mut(), self.neighbors.as_mut()) else {
                return Err(Error::Internal("a wave of entries for a search without them".into()));
            };
            return rerank.absorb(
                &self.index,
                entries,
                fetched.lists,
                &self.queries,
                neighbors,
                &mut self.stats,
            );
        }
        let columns = fetched.columns.transpose()?;
        if kind == WaveKind::HitAttributes {
            self.hit_columns = Some(columns.unwrap_or_default());
            return Ok(());
        }
        let mut lists = fetched.lists;
        lists.sort_unstable_by_key(|(list, _)| *list);
        for (list, outcome) in lists {
            let state = outcome
                .and_then(|bytes| self.index.list_view(list, bytes))
                .and_then(|view| self.visit(list, Some(view), columns.as_ref()));
            match state {
                Ok(state) => {
                    self.lists.insert(list, state);
                }
                Err(e) => {
                    self.stats.failed_lists.push(list);
                    self.lists.insert(list, ListState::Failed);
                    if !self.params.allow_partial {
                        return Err(e);
                    }
                    tracing::warn!(uri = %self.index.uri(), list, error = %e, "partial search");
                }
            }
        }
        Ok(())
    }

    /// Stages 5 and 6, scan and merge: each query's probed lists that the
    /// scan reads, through Faiss's scanners, with the id filter (or, under
    /// an attribute filter, exactly the matching ids) as Faiss's selector.
    fn scan(&mut self) -> Result<ivflake_faiss::Neighbors> {
        let scan_started = Instant::now();
        let attribute_filtered = self.select.as_ref().is_some_and(|s| s.filters());
        let scanned: Vec<(usize, &ListEntries)> = self
            .lists
            .iter()
            .filter(|(_, s)| s.scanned(attribute_filtered))
            .filter_map(|(l, s)| match s {
                ListState::Fetched { entries, .. } => Some((*l, entries)),
                _ => None,
            })
            .collect();
        let hidden: Vec<(&[i64], &[u64])> = self
            .delta
            .as_ref()
            .map(|d| (d.tombstones.as_slice(), d.tombstone_bloom.as_slice()))
            .into_iter()
            .collect();
        let depth = self.depth;
        let probe_lists: Vec<i64> = (0..self.probed.len())
            .flat_map(|q| (0..depth).map(move |j| (q, j)))
            .map(|(q, j)| {
                if j < self.probed[q] {
                    self.assignment.lists[q * depth + j]
                } else {
                    -1
                }
            })
            .collect();
        let allowed: Vec<i64> = if attribute_filtered {
            let mut ids: Vec<i64> = self
                .lists
                .values()
                .filter_map(|s| match s {
                    ListState::Fetched { selection: Some(s), .. } => Some(s.ids.as_slice()),
                    _ => None,
                })
                .flatten()
                .copied()
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        } else {
            Vec::new()
        };
        // Under an id map the filter names user ids: the scan's selector
        // takes the positions (the ids lists hold) whose user id passes.
        let mapped: Option<Vec<i64>> = match (&self.index.inner.id_map, &self.params.filter) {
            _ if attribute_filtered => None,
            (_, IdFilterSpec::All) => None,
            (Some(IdMap::Resident(map)), filter) => {
                let set = filter.id_set();
                let mut ids: Vec<i64> = scanned
                    .iter()
                    .flat_map(|(_, entries)| entries.ids())
                    .filter(|&id| {
                        usize::try_from(id)
                            .ok()
                            .and_then(|i| map.get(i))
                            .is_some_and(|&user| filter.allows(user, &set))
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                Some(ids)
            }
            _ => None,
        };
        let filter = if attribute_filtered {
            IdFilter::Allow(&allowed)
        } else if let Some(ids) = &mapped {
            IdFilter::Allow(ids)
        } else {
            self.params.filter.as_faiss()
        };
        let neighbors = super::scan::scan(
            &self.index,
            &super::scan::ScanInput {
                xt: &self.xt,
                k: scan_k(&self.index, &self.params),
                lists: &probe_lists,
                coarse_distances: &self.assignment.distances,
                scanned: &scanned,
                // The base's entries of ids written since are hidden.
                hidden: &hidden,
                filter,
                cancel: &self.cancel,
            },
        )?;
        self.stats.scan_ms = ms(scan_started.elapsed());
        Ok(neighbors)
    }

    /// Stage 7's wave: the returned columns of the hits' lists.
    fn hit_attributes_wave(&mut self) -> Wave {
        let (column_lists, columns) = match (&self.select, &self.neighbors) {
            (Some(select), Some(neighbors)) => (
                select.hit_lists(&self.lists, &neighbors.labels),
                select.return_columns().to_vec(),
            ),
            _ => Default::default(),
        };
        Wave {
            kind: WaveKind::HitAttributes,
            requests: Vec::new(),
            column_lists,
            columns,
        }
    }

    /// The answer: neighbours, the hits' attributes, the stats.
    fn results(mut self: Box<Self>) -> Result<SearchResults> {
        let neighbors = self
            .neighbors
            .take()
            .ok_or_else(|| Error::Internal("search finished without a scan".into()))?;
        let attributes = match (&self.select, &self.hit_columns) {
            (Some(select), Some(columns)) if select.returns_columns() => {
                Some(select.hit_attributes(&self.lists, columns, &neighbors.labels)?)
            }
            _ => None,
        };
        let stats = &mut self.stats;
        stats.lists_probed = self.lists.values().filter(|s| !matches!(s, ListState::Skipped)).count();
        stats.rows_matched = self
            .lists
            .values()
            .map(|s| match s {
                ListState::Fetched { selection: Some(s), .. } => s.ids.len() as u64,
                _ => 0,
            })
            .sum();
        stats.failed_lists.sort_unstable();
        stats.absorb(&self.io);
        if let Some(rerank) = &self.rerank {
            stats.cost.add_io(&rerank.io);
        }
        stats.total_ms = ms(self.started.elapsed());
        Ok(SearchResults {
            k: self.params.k,
            ids: neighbors.labels,
            distances: neighbors.distances,
            attributes,
            stats: std::mem::take(stats),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use ivflake_faiss::Metric;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    use crate::error::Error;
    use crate::index::{IvfIndex, SearchParams};
    use crate::location::IndexLocation;

    #[tokio::test]
    async fn a_search_over_its_byte_budget_is_refused_before_any_get() {
        let d = 8;
        let data: Vec<f32> = (0..4000 * d).map(|i| ((i * 7919) % 1013) as f32 / 1013.0).collect();
        let mut built = ivflake_faiss::Index::factory(d, "IVF16,Flat", Metric::L2).unwrap();
        built.train(&data).unwrap();
        built.add(&data).unwrap();
        let store = Arc::new(InMemory::new());
        store
            .put(&Path::from("b.faiss"), built.to_bytes().unwrap().into())
            .await
            .unwrap();
        let location = IndexLocation::new(store, Path::from("b.faiss"), "memory:///b.faiss");
        let index = IvfIndex::open_at(location.clone(), Default::default()).await.unwrap();
        let query = &data[..d];
        let needed = index.search(query, 5, 4).await.unwrap().stats.bytes_probed;
        assert!(needed > 0);

        // A second open has its own scheduler: an empty cache, no GETs yet.
        let fresh = IvfIndex::open_at(location, Default::default()).await.unwrap();
        let gets = || fresh.scheduler().counters().gets.load(Ordering::Relaxed);
        let before = gets();
        let over = SearchParams {
            max_bytes: Some(needed - 1),
            ..SearchParams::new(5, 4)
        };
        let err = fresh.search_with(query, &over).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field: "max_bytes_per_search", reason }
                if reason.contains(&needed.to_string()) && reason.contains(&(needed - 1).to_string())),
            "{err}"
        );
        assert_eq!(gets(), before, "nothing fetched");
        let exact = SearchParams {
            max_bytes: Some(needed),
            ..SearchParams::new(5, 4)
        };
        assert_eq!(
            fresh.search_with(query, &exact).await.unwrap().stats.bytes_probed,
            needed
        );
    }
}
