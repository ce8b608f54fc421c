//! A search with an attribute filter (or returning attributes): prune lists
//! whose summaries rule the filter out, fetch each remaining probed list's
//! codes and the filter's column chunks in one wave, evaluate the filter
//! (arrow kernels) to the ids of matching rows, probe further lists while
//! too few rows match, and scan with Faiss restricted to exactly those ids.
//! See ARCHITECTURE.md, "One filtered search".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use ivflake_faiss::{CoarseAssignment, IdFilter, ListSlice};
use serde_json::{Map, Value};

use super::options::{SearchParams, SearchResults};
use super::search::scan_parallel;
use super::view::ListView;
use super::IvfIndex;
use crate::attributes::{Attributes, FetchedColumns};
use crate::error::{Error, Result};
use crate::stats::{ms, SearchIo, SearchStats};

/// What a search knows of one list.
enum ListState {
    /// The summaries prove no row matches: never fetched.
    Pruned,
    /// Fetched: its buffers and the rows that pass every filter.
    Scanned {
        view: ListView,
        rows: Vec<u32>,
        ids: Vec<i64>,
    },
    /// Its fetch failed (only kept under `allow_partial`).
    Failed,
}

impl ListState {
    fn matches(&self) -> usize {
        match self {
            ListState::Scanned { ids, .. } => ids.len(),
            _ => 0,
        }
    }
}

impl IvfIndex {
    pub(super) async fn run_filtered(
        &self,
        queries: Vec<f32>,
        n: usize,
        params: SearchParams,
    ) -> Result<SearchResults> {
        let started = Instant::now();
        let attrs = self.require_attributes().await?;
        let filter = params.attribute_filter.clone();
        if let Some(f) = &filter {
            f.check(attrs.schema())?;
        }
        let filter_cols = match &filter {
            Some(f) => attrs.column_indices(&f.columns())?,
            None => Vec::new(),
        };
        let return_cols = attrs.column_indices(&params.return_attributes)?;
        let nlist = self.inner.info.nlist;
        let nprobe = params.nprobe;
        let k = params.k;
        let depth = if filter.is_some() {
            nprobe.saturating_add(params.probing.max_extra_lists).min(nlist)
        } else {
            nprobe
        };
        let mut stats = SearchStats {
            queries: n,
            ..Default::default()
        };

        let (xt, assignment) = self.quantize(queries, depth).await?;
        stats.quantizer_ms = ms(started.elapsed());

        // Waves: the first is every query's first nprobe lists; each further
        // one adds lists for the queries that have seen too few matches.
        let fetch_started = Instant::now();
        let io = Arc::new(SearchIo::default());
        let id_set = params.filter.id_set();
        let target = k.saturating_mul(params.probing.matches_per_k.max(1));
        let list_at = |q: usize, j: usize| assignment.lists[q * depth + j];
        let mut states: HashMap<usize, ListState> = HashMap::new();
        let mut probed = vec![nprobe.min(depth); n];
        let mut extra_bytes = 0u64;
        let mut first_wave = true;
        let mut first_error = None;
        loop {
            let mut wave: Vec<usize> = (0..n)
                .flat_map(|q| (0..probed[q]).map(move |j| (q, j)))
                .map(|(q, j)| list_at(q, j))
                .filter(|&l| l >= 0)
                .map(|l| l as usize)
                .filter(|l| !states.contains_key(l))
                .collect();
            wave.sort_unstable();
            wave.dedup();
            let mut to_fetch = Vec::with_capacity(wave.len());
            for list in wave {
                let empty = self.inner.layout.get(list).is_none_or(|r| r.count == 0);
                let pruned = match (&filter, attrs.summary(list)) {
                    (Some(f), Some(summary)) => !summary.may_match(f),
                    _ => false,
                };
                if pruned && !empty {
                    stats.lists_pruned += 1;
                }
                if empty || pruned {
                    states.insert(list, ListState::Pruned);
                } else {
                    to_fetch.push(list);
                }
            }
            let wave_bytes = self
                .fetch_and_select(
                    &attrs,
                    &to_fetch,
                    &filter_cols,
                    &params,
                    &id_set,
                    &io,
                    &mut states,
                    &mut stats,
                    &mut first_error,
                )
                .await?;
            if !first_wave {
                stats.extra_lists_probed += to_fetch.len();
                extra_bytes += wave_bytes;
            }
            first_wave = false;
            if filter.is_none() || extra_bytes >= params.probing.max_extra_bytes {
                break;
            }
            let mut grew = false;
            for (q, probe_depth) in probed.iter_mut().enumerate() {
                let seen = *probe_depth;
                let matched: usize = (0..seen)
                    .filter_map(|j| usize::try_from(list_at(q, j)).ok())
                    .map(|l| states.get(&l).map_or(0, ListState::matches))
                    .sum();
                if matched >= target || seen >= depth {
                    continue;
                }
                // Enough further lists for the target at the rate seen so
                // far; `nprobe` more when nothing has matched yet.
                let more = if matched == 0 {
                    nprobe
                } else {
                    ((target - matched) * seen).div_ceil(matched)
                };
                *probe_depth = (seen + more.max(1)).min(depth);
                grew = true;
            }
            if !grew {
                break;
            }
        }
        if let Some(e) = first_error {
            if !params.allow_partial {
                return Err(e);
            }
        }
        stats.fetch_ms = ms(fetch_started.elapsed());
        stats.failed_lists.sort_unstable();

        // Scan: each query's probed lists that have matching rows, through
        // an IDSelector of exactly the matching ids.
        let scan_started = Instant::now();
        let mut scanned: Vec<usize> = states
            .iter()
            .filter(|(_, s)| s.matches() > 0 || (filter.is_none() && matches!(s, ListState::Scanned { .. })))
            .map(|(l, _)| *l)
            .collect();
        scanned.sort_unstable();
        stats.lists_probed = states
            .values()
            .filter(|s| matches!(s, ListState::Scanned { .. }))
            .count();
        stats.rows_matched = states.values().map(|s| s.matches() as u64).sum();
        let slot_of: HashMap<usize, i32> = scanned.iter().enumerate().map(|(i, l)| (*l, i as i32)).collect();
        let mut lists = Vec::with_capacity(n * depth);
        let mut slots = Vec::with_capacity(n * depth);
        for (q, &seen) in probed.iter().enumerate() {
            for j in 0..depth {
                let l = list_at(q, j);
                let slot = if j < seen && l >= 0 {
                    slot_of.get(&(l as usize)).copied().unwrap_or(-1)
                } else {
                    -1
                };
                lists.push(if slot >= 0 { l } else { -1 });
                slots.push(slot);
            }
        }
        let sub = CoarseAssignment {
            distances: assignment.distances.clone(),
            lists,
        };
        let mut allowed: Vec<i64> = scanned
            .iter()
            .flat_map(|l| match &states[l] {
                ListState::Scanned { ids, .. } => ids.as_slice(),
                _ => &[],
            })
            .copied()
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        let states = Arc::new(states);
        let neighbors = {
            let inner = self.inner.clone();
            let compute = self.inner.options.compute.clone();
            let states = states.clone();
            let scanned = scanned.clone();
            let id_filter = params.filter.clone();
            let attribute_filtered = filter.is_some();
            self.inner
                .options
                .compute
                .run(move || {
                    let slices: Vec<ListSlice<'_>> = scanned
                        .iter()
                        .filter_map(|l| match &states[l] {
                            ListState::Scanned { view, .. } => Some(view.slice()),
                            _ => None,
                        })
                        .collect();
                    let selector = if attribute_filtered {
                        IdFilter::Allow(&allowed)
                    } else {
                        id_filter.as_faiss()
                    };
                    scan_parallel(&inner, &compute, &xt, k, depth, &sub, &slots, &slices, selector)
                })
                .await?
        };
        stats.scan_ms = ms(scan_started.elapsed());

        let attributes = if return_cols.is_empty() {
            None
        } else {
            Some(
                self.hit_attributes(
                    &attrs,
                    &states,
                    &neighbors.labels,
                    &params.return_attributes,
                    &return_cols,
                    &io,
                )
                .await?,
            )
        };
        let lists_probed = stats.lists_probed;
        stats.absorb(&io);
        stats.lists_probed = lists_probed;
        stats.total_ms = ms(started.elapsed());
        Ok(SearchResults {
            k,
            ids: neighbors.labels,
            distances: neighbors.distances,
            attributes,
            stats,
        })
    }

    /// One wave: the lists' codes and the filter's columns fetched
    /// concurrently, then the filter evaluated on the compute pool. Returns
    /// the bytes the wave asked for.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_and_select(
        &self,
        attrs: &Arc<Attributes>,
        lists: &[usize],
        filter_cols: &[usize],
        params: &SearchParams,
        id_set: &HashSet<i64>,
        io: &Arc<SearchIo>,
        states: &mut HashMap<usize, ListState>,
        stats: &mut SearchStats,
        first_error: &mut Option<Error>,
    ) -> Result<u64> {
        if lists.is_empty() {
            return Ok(0);
        }
        let requests = self.list_requests(lists);
        self.inner.probes.record(lists);
        let scheduler = &self.inner.options.scheduler;
        let column_requests = attrs.chunk_requests(lists, filter_cols);
        let bytes: u64 = requests.iter().chain(&column_requests).map(|r| r.range.len).sum();
        stats.bytes_probed += bytes;
        let (fetched, columns) = tokio::join!(scheduler.fetch(&self.inner.object, &requests, io), async {
            if filter_cols.is_empty() {
                Ok(FetchedColumns::default())
            } else {
                attrs.fetch(scheduler, lists, filter_cols, io).await
            }
        });
        let columns = columns?;
        let ranges: HashMap<usize, _> = requests.iter().map(|r| (r.list, r.range)).collect();
        let mut views = Vec::with_capacity(fetched.len());
        for (list, outcome) in fetched {
            let view = outcome.and_then(|bytes| self.list_view(list, bytes, &ranges[&list]));
            match view {
                Ok(view) => views.push((list, view)),
                Err(e) => {
                    stats.failed_lists.push(list);
                    states.insert(list, ListState::Failed);
                    first_error.get_or_insert(e);
                }
            }
        }
        let filter = params.attribute_filter.clone();
        let id_filter = params.filter.clone();
        let id_set = id_set.clone();
        let attrs = attrs.clone();
        let filter_cols = filter_cols.to_vec();
        let selected = self
            .inner
            .options
            .compute
            .run(move || {
                views
                    .into_iter()
                    .map(|(list, view)| {
                        let ids = view.slice().ids;
                        let mask = match &filter {
                            None => None,
                            Some(f) => {
                                let batch = attrs
                                    .decode(&columns, list, &filter_cols)?
                                    .ok_or_else(|| Error::Internal(format!("list {list} has no attribute rows")))?;
                                Some(f.evaluate(batch.num_rows(), &|name| batch.column_by_name(name).cloned())?)
                            }
                        };
                        let mut rows = Vec::new();
                        let mut kept = Vec::new();
                        for (row, &id) in ids.iter().enumerate() {
                            if mask.as_ref().is_none_or(|m| m.value(row)) && id_filter.allows(id, &id_set) {
                                rows.push(row as u32);
                                kept.push(id);
                            }
                        }
                        Ok((list, ListState::Scanned { view, rows, ids: kept }))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        states.extend(selected);
        Ok(bytes)
    }

    /// The asked columns of each hit, fetched for the hits' lists only.
    async fn hit_attributes(
        &self,
        attrs: &Arc<Attributes>,
        states: &HashMap<usize, ListState>,
        labels: &[i64],
        names: &[String],
        columns: &[usize],
        io: &Arc<SearchIo>,
    ) -> Result<Vec<Option<Map<String, Value>>>> {
        let hits: HashSet<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        let mut where_is: HashMap<i64, (usize, usize)> = HashMap::new();
        for (&list, state) in states {
            if let ListState::Scanned { rows, ids, .. } = state {
                for (&row, id) in rows.iter().zip(ids) {
                    if hits.contains(id) {
                        where_is.entry(*id).or_insert((list, row as usize));
                    }
                }
            }
        }
        let mut lists: Vec<usize> = where_is.values().map(|(l, _)| *l).collect();
        lists.sort_unstable();
        lists.dedup();
        let fetched = attrs.fetch(&self.inner.options.scheduler, &lists, columns, io).await?;
        let mut batches: HashMap<usize, RecordBatch> = HashMap::new();
        for &list in &lists {
            if let Some(batch) = attrs.decode(&fetched, list, columns)? {
                batches.insert(list, batch);
            }
        }
        Ok(labels
            .iter()
            .map(|id| {
                let (list, row) = where_is.get(id)?;
                let batch = batches.get(list)?;
                Some(
                    names
                        .iter()
                        .map(|name| {
                            let value = batch
                                .column_by_name(name)
                                .map_or(Value::Null, |c| json_value(c.as_ref(), *row));
                            (name.clone(), value)
                        })
                        .collect(),
                )
            })
            .collect())
    }
}

/// One value of an attribute column as JSON (`null` when missing).
fn json_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        _ => Value::Null,
    }
}
