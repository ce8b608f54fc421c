//! The select stage of a search with attributes: prune lists whose
//! summaries rule the filter out, evaluate the filter on a fetched list's
//! column chunks (arrow kernels) to the rows that match, decide how far to
//! probe past `nprobe`, and read the hits' returned columns as typed values.
//! It plugs into the one pipeline in `plan.rs` and does no I/O of its own
//! but through the [`FetchScheduler`]. See ARCHITECTURE.md, "One filtered search".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{Schema, SchemaRef};

use super::options::SearchParams;
use super::plan::ListState;
use super::scan::ListEntries;
use crate::attributes::filter::AttributeFilter;
use crate::attributes::value::{AttributeRow, AttributeValue};
use crate::attributes::{Attributes, FetchedColumns};
use crate::error::{Error, Result};
use crate::fetch::FetchScheduler;
use crate::mutable::DeltaSnapshot;
use crate::stats::SearchIo;

/// The rows of one fetched list that pass every filter, and their ids.
pub(super) struct Selection {
    /// Matching rows of the base file's list.
    pub rows: Vec<u32>,
    /// Every matching id: the base rows' first, then the writes' entries'.
    pub ids: Vec<i64>,
    /// Matching entries of the list's run of writes (a mutable index's).
    pub later_rows: Vec<u32>,
}

/// Where a hit's attributes are: a base row, or an entry of a list's run of writes.
#[derive(Clone, Copy)]
enum Source {
    Base(usize),
    Later(usize),
}

/// What a search with attributes selects by, checked against the schema.
/// On a mutable index the schema is the base's columns and those writes
/// added; base rows of ids written since are never selected (the write
/// holds their attributes now), so one set of matching ids serves every run.
pub(super) struct AttributeSelect {
    /// The base's attributes object; `None` when only writes carry any.
    attrs: Option<Arc<Attributes>>,
    delta: Option<Arc<DeltaSnapshot>>,
    filter: Option<AttributeFilter>,
    /// The filter's columns (and the returned ones) as the schema types them.
    filter_schema: SchemaRef,
    return_schema: SchemaRef,
    /// Their indices in the base's attributes object (those it has).
    filter_columns: Vec<usize>,
    return_columns: Vec<usize>,
    /// The id filter's ids as a set, for selecting rows.
    id_set: HashSet<i64>,
}

impl AttributeSelect {
    /// The stage for `params`, whose filter and returned columns must exist
    /// in the attributes' schema (the base's, widened by the writes').
    pub fn new(
        attrs: Option<Arc<Attributes>>,
        delta: Option<Arc<DeltaSnapshot>>,
        params: &SearchParams,
    ) -> Result<Self> {
        let schema = match (&delta, &attrs) {
            (Some(d), _) => d.schema.clone(),
            (None, Some(a)) => a.schema().clone(),
            (None, None) => Arc::new(Schema::empty()),
        };
        let filter = params.attribute_filter.clone();
        if let Some(f) = &filter {
            f.check(&schema)?;
        }
        let project = |names: &[String], path: &str| -> Result<SchemaRef> {
            let mut fields = Vec::new();
            for n in names {
                let f = schema
                    .field_with_name(n)
                    .map_err(|_| Error::filter(format!("{path}.{n}"), format!("unknown column {n:?}")))?;
                if !fields.iter().any(|g: &arrow_schema::Field| g.name() == n) {
                    fields.push(f.clone());
                }
            }
            Ok(Arc::new(Schema::new(fields)))
        };
        let filter_names = filter.as_ref().map(|f| f.columns()).unwrap_or_default();
        let filter_schema = project(&filter_names, "filter")?;
        let return_schema = project(&params.return_attributes, "return_attributes")?;
        let in_base = |s: &Schema| -> Result<Vec<usize>> {
            let Some(a) = &attrs else { return Ok(Vec::new()) };
            let names: Vec<String> = s
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| a.schema().index_of(n).is_ok())
                .collect();
            a.column_indices(&names)
        };
        Ok(Self {
            filter_columns: in_base(&filter_schema)?,
            return_columns: in_base(&return_schema)?,
            attrs,
            delta,
            filter,
            filter_schema,
            return_schema,
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
        !self.return_schema.fields().is_empty()
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
    /// A list writes have added to is never ruled out by its base's summary.
    pub fn rules_out(&self, list: usize) -> bool {
        if self.delta.as_ref().is_some_and(|d| d.has_entries(list)) {
            return false;
        }
        match (&self.filter, self.attrs.as_ref().and_then(|a| a.summary(list))) {
            (Some(f), Some(summary)) => !summary.may_match(f),
            _ => false,
        }
    }

    /// Bytes of `columns` of `lists`.
    pub fn chunk_bytes(&self, lists: &[usize], columns: &[usize]) -> u64 {
        self.attrs.as_ref().map_or(0, |a| {
            a.chunk_requests(lists, columns).iter().map(|r| r.range.len).sum()
        })
    }

    pub fn memory_hits(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &SearchIo,
    ) -> Option<FetchedColumns> {
        match &self.attrs {
            Some(a) => a.memory_hits(scheduler, lists, columns, io),
            None => Some(FetchedColumns::default()),
        }
    }

    pub async fn fetch(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &Arc<SearchIo>,
    ) -> Result<FetchedColumns> {
        match &self.attrs {
            Some(a) => a.fetch(scheduler, lists, columns, io).await,
            None => Ok(FetchedColumns::default()),
        }
    }

    /// The rows of a list's entries that pass the attribute filter (on
    /// the base's fetched columns and the writes' rows) and the id filter.
    pub fn select(
        &self,
        list: usize,
        entries: &ListEntries,
        columns: Option<&FetchedColumns>,
        params: &SearchParams,
    ) -> Result<Selection> {
        let hidden = |id: &i64| {
            self.delta
                .as_ref()
                .is_some_and(|d| d.tombstones.binary_search(id).is_ok())
        };
        let base_ids = entries.base().slice().ids;
        let mut selection = Selection {
            rows: Vec::new(),
            ids: Vec::new(),
            later_rows: Vec::new(),
        };
        if !base_ids.is_empty() {
            let batch = match (&self.filter, &self.attrs, columns) {
                (None, _, _) | (Some(_), None, _) => None,
                (Some(_), Some(attrs), Some(columns)) => Some(
                    attrs
                        .decode(columns, list, &self.filter_columns)?
                        .ok_or_else(|| Error::Internal(format!("list {list} has no attribute rows")))?,
                ),
                (Some(_), Some(_), None) => {
                    return Err(Error::Internal(format!("list {list}'s columns were not fetched")))
                }
            };
            let mask = self.evaluate(batch.as_ref(), base_ids.len())?;
            for (row, &id) in base_ids.iter().enumerate() {
                if mask.as_ref().is_none_or(|m| m.value(row)) && params.filter.allows(id, &self.id_set) && !hidden(&id)
                {
                    selection.rows.push(row as u32);
                    selection.ids.push(id);
                }
            }
        }
        let later: Vec<i64> = entries.later_ids().collect();
        if let (false, Some(delta)) = (later.is_empty(), &self.delta) {
            let batch = match &self.filter {
                Some(_) => delta.run_attributes(list, &self.filter_schema)?,
                None => None,
            };
            let mask = self.evaluate(batch.as_ref(), later.len())?;
            for (row, &id) in later.iter().enumerate() {
                if mask.as_ref().is_none_or(|m| m.value(row)) && params.filter.allows(id, &self.id_set) {
                    selection.later_rows.push(row as u32);
                    selection.ids.push(id);
                }
            }
        }
        Ok(selection)
    }

    /// The attribute filter's mask over `rows` rows of `batch`; a column
    /// the batch lacks (or no batch at all) is all null. `None` without a filter.
    fn evaluate(&self, batch: Option<&RecordBatch>, rows: usize) -> Result<Option<arrow_array::BooleanArray>> {
        let Some(f) = &self.filter else { return Ok(None) };
        let column = |name: &str| -> Option<ArrayRef> {
            batch.and_then(|b| b.column_by_name(name).cloned()).or_else(|| {
                let field = self.filter_schema.field_with_name(name).ok()?;
                Some(new_null_array(field.data_type(), rows))
            })
        };
        f.evaluate(rows, &column).map(Some)
    }

    /// Where each hit sits: its list and row, from the lists' selections.
    fn hit_rows(&self, lists: &BTreeMap<usize, ListState>, labels: &[i64]) -> HashMap<i64, (usize, Source)> {
        let hits: HashSet<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        let mut where_is = HashMap::new();
        for (&list, state) in lists {
            if let ListState::Fetched { selection: Some(s), .. } = state {
                let sources = s
                    .rows
                    .iter()
                    .map(|&r| Source::Base(r as usize))
                    .chain(s.later_rows.iter().map(|&r| Source::Later(r as usize)));
                for (source, id) in sources.zip(&s.ids) {
                    if hits.contains(id) {
                        where_is.entry(*id).or_insert((list, source));
                    }
                }
            }
        }
        where_is
    }

    /// The lists holding hits from the base: its returned columns are read
    /// for these only.
    pub fn hit_lists(&self, lists: &BTreeMap<usize, ListState>, labels: &[i64]) -> Vec<usize> {
        if self.attrs.is_none() {
            return Vec::new();
        }
        let mut out: Vec<usize> = self
            .hit_rows(lists, labels)
            .values()
            .filter(|(_, source)| matches!(source, Source::Base(_)))
            .map(|(l, _)| *l)
            .collect();
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
        let mut batches: HashMap<(usize, bool), RecordBatch> = HashMap::new();
        for &(list, source) in where_is.values() {
            let later = matches!(source, Source::Later(_));
            if let std::collections::hash_map::Entry::Vacant(slot) = batches.entry((list, later)) {
                let batch = match (later, &self.attrs, &self.delta) {
                    (false, Some(attrs), _) => attrs.decode(fetched, list, &self.return_columns)?,
                    (true, _, Some(delta)) => delta.run_attributes(list, &self.return_schema)?,
                    _ => None,
                };
                if let Some(batch) = batch {
                    slot.insert(batch);
                }
            }
        }
        let uri = self.attrs.as_ref().map_or("the writes", |a| a.uri());
        labels
            .iter()
            .map(|id| {
                let Some(&(list, source)) = where_is.get(id) else {
                    return Ok(None);
                };
                let (row, later) = match source {
                    Source::Base(r) => (r, false),
                    Source::Later(r) => (r, true),
                };
                let batch = batches.get(&(list, later));
                self.return_schema
                    .fields()
                    .iter()
                    .map(|field| {
                        let name = field.name();
                        let value = match batch.and_then(|b| b.column_by_name(name)) {
                            Some(column) => AttributeValue::from_arrow(name, column.as_ref(), row, uri)?,
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
