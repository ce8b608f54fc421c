//! The select stage of a search with attributes: prune lists whose
//! summaries rule the filter out, evaluate the filter on a fetched list's
//! column chunks (arrow kernels) to the rows that match, decide how far to
//! probe past `nprobe`, and read the hits' returned columns as typed values.
//! It plugs into the one pipeline in `plan.rs` and does no I/O of its own
//! but through the [`FetchScheduler`]. See ARCHITECTURE.md, "One filtered search".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::options::SearchParams;
use super::plan::ListState;
use super::view::ListView;
use crate::attributes::filter::AttributeFilter;
use crate::attributes::value::{AttributeRow, AttributeValue};
use crate::attributes::{Attributes, FetchedColumns};
use crate::error::{Error, Result};
use crate::fetch::FetchScheduler;
use crate::stats::SearchIo;

/// The rows of one fetched list that pass every filter, and their ids.
pub(super) struct Selection {
    pub rows: Vec<u32>,
    pub ids: Vec<i64>,
}

/// What a search with attributes selects by, checked against the schema.
pub(super) struct AttributeSelect {
    attrs: Arc<Attributes>,
    filter: Option<AttributeFilter>,
    filter_columns: Vec<usize>,
    return_names: Vec<String>,
    return_columns: Vec<usize>,
    /// The id filter's ids as a set, for selecting rows.
    id_set: HashSet<i64>,
}

impl AttributeSelect {
    /// The stage for `params`, whose filter and returned columns must exist
    /// in the attributes' schema.
    pub fn new(attrs: Arc<Attributes>, params: &SearchParams) -> Result<Self> {
        let filter = params.attribute_filter.clone();
        if let Some(f) = &filter {
            f.check(attrs.schema())?;
        }
        let filter_columns = match &filter {
            Some(f) => attrs.column_indices(&f.columns())?,
            None => Vec::new(),
        };
        let return_columns = attrs.column_indices(&params.return_attributes)?;
        Ok(Self {
            attrs,
            filter,
            filter_columns,
            return_names: params.return_attributes.clone(),
            return_columns,
            id_set: params.filter.id_set(),
        })
    }

    /// Whether rows are filtered by attributes (not only returned).
    pub fn filters(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether the search may probe past `nprobe` for enough matches.
    pub fn probes_further(&self) -> bool {
        self.filters()
    }

    pub fn returns_columns(&self) -> bool {
        !self.return_columns.is_empty()
    }

    pub fn filter_columns(&self) -> &[usize] {
        &self.filter_columns
    }

    pub fn return_columns(&self) -> &[usize] {
        &self.return_columns
    }

    /// Matching rows a query wants to have scanned before it stops probing.
    pub fn target_matches(&self, params: &SearchParams) -> usize {
        params.k.saturating_mul(params.probing.matches_per_k.max(1))
    }

    /// Whether the list's summary proves no row matches (prune: no GET).
    pub fn rules_out(&self, list: usize) -> bool {
        match (&self.filter, self.attrs.summary(list)) {
            (Some(f), Some(summary)) => !summary.may_match(f),
            _ => false,
        }
    }

    /// Bytes of `columns` of `lists`.
    pub fn chunk_bytes(&self, lists: &[usize], columns: &[usize]) -> u64 {
        self.attrs
            .chunk_requests(lists, columns)
            .iter()
            .map(|r| r.range.len)
            .sum()
    }

    pub fn memory_hits(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &SearchIo,
    ) -> Option<FetchedColumns> {
        self.attrs.memory_hits(scheduler, lists, columns, io)
    }

    pub async fn fetch(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &Arc<SearchIo>,
    ) -> Result<FetchedColumns> {
        self.attrs.fetch(scheduler, lists, columns, io).await
    }

    /// The rows of `view` that pass the attribute filter (on its fetched
    /// columns) and the id filter.
    pub fn select(
        &self,
        list: usize,
        view: &ListView,
        columns: Option<&FetchedColumns>,
        params: &SearchParams,
    ) -> Result<Selection> {
        let ids = view.slice().ids;
        let mask = match (&self.filter, columns) {
            (None, _) => None,
            (Some(f), Some(columns)) => {
                let batch = self
                    .attrs
                    .decode(columns, list, &self.filter_columns)?
                    .ok_or_else(|| Error::Internal(format!("list {list} has no attribute rows")))?;
                Some(f.evaluate(batch.num_rows(), &|name| batch.column_by_name(name).cloned())?)
            }
            (Some(_), None) => return Err(Error::Internal(format!("list {list}'s columns were not fetched"))),
        };
        let mut rows = Vec::new();
        let mut kept = Vec::new();
        for (row, &id) in ids.iter().enumerate() {
            if mask.as_ref().is_none_or(|m| m.value(row)) && params.filter.allows(id, &self.id_set) {
                rows.push(row as u32);
                kept.push(id);
            }
        }
        Ok(Selection { rows, ids: kept })
    }

    /// Where each hit sits: its list and row, from the lists' selections.
    fn hit_rows(&self, lists: &BTreeMap<usize, ListState>, labels: &[i64]) -> HashMap<i64, (usize, usize)> {
        let hits: HashSet<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        let mut where_is = HashMap::new();
        for (&list, state) in lists {
            if let ListState::Fetched { selection: Some(s), .. } = state {
                for (&row, id) in s.rows.iter().zip(&s.ids) {
                    if hits.contains(id) {
                        where_is.entry(*id).or_insert((list, row as usize));
                    }
                }
            }
        }
        where_is
    }

    /// The lists holding the hits: the returned columns are read for these only.
    pub fn hit_lists(&self, lists: &BTreeMap<usize, ListState>, labels: &[i64]) -> Vec<usize> {
        let mut out: Vec<usize> = self.hit_rows(lists, labels).values().map(|(l, _)| *l).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The returned columns of each hit (row-major like `labels`; `None` for
    /// a `-1`), typed as their columns are.
    pub fn hit_attributes(
        &self,
        lists: &BTreeMap<usize, ListState>,
        fetched: &FetchedColumns,
        labels: &[i64],
    ) -> Result<Vec<Option<AttributeRow>>> {
        let where_is = self.hit_rows(lists, labels);
        let mut batches = HashMap::new();
        for &(list, _) in where_is.values() {
            if let std::collections::hash_map::Entry::Vacant(slot) = batches.entry(list) {
                if let Some(batch) = self.attrs.decode(fetched, list, &self.return_columns)? {
                    slot.insert(batch);
                }
            }
        }
        labels
            .iter()
            .map(|id| {
                let Some((list, row)) = where_is.get(id) else {
                    return Ok(None);
                };
                let Some(batch) = batches.get(list) else {
                    return Ok(None);
                };
                self.return_names
                    .iter()
                    .map(|name| {
                        let value = match batch.column_by_name(name) {
                            Some(column) => AttributeValue::from_arrow(name, column.as_ref(), *row, self.attrs.uri())?,
                            None => AttributeValue::Null,
                        };
                        Ok((name.clone(), value))
                    })
                    .collect::<Result<AttributeRow>>()
                    .map(Some)
            })
            .collect()
    }
}
