//! Full-text and hybrid search of a mutable index, and its text indexes'
//! upkeep: the base's bundle (`text/bundle.rs`) is built whenever a base is
//! (compaction, `create_from`, new text fields), and the writes since it
//! are a text index in memory, built by the first text search of each
//! delta snapshot. A text query reads both, scored with their statistics
//! summed, so their scores merge; base entries written since are masked.
//!
//! A query: every text query's postings wave and the vector search run
//! together; each gives a ranking of `k`; with more than one ranking they
//! are fused by Reciprocal Rank Fusion (`text/fuse.rs`). Attribute filters
//! apply to the vector search as always and to text candidates by their
//! rows (read in one wave, the candidates widened while too few pass).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::delta::RowRef;
use super::delta_text::{text_schema, texts_of, DeltaText};
use super::version::new_text_name;
use super::{Current, MutableIndex, Staleness, Version};
use crate::attributes::rows;
use crate::attributes::value::{AttributeRow, AttributeValue};
use crate::error::{Error, Result};
use crate::index::{IvfIndex, SearchParams};
use crate::location::IndexLocation;
use crate::stats::{SearchIo, SearchStats};
use crate::text::{self, query_terms, BundleRef, Statistics, TextBundle, TextField, TextQuery};

/// Largest candidate list a filtered text query widens to.
const MAX_TEXT_CANDIDATES: usize = 10_000;
/// Lists whose attributes one read of the bundle's build takes.
const BUILD_LISTS_PER_READ: usize = 256;

/// The tail of `version`'s text bundle, if it has one: read beside its
/// base's open. A failed read is logged, and left to the first text query.
pub(super) async fn read_bundle_tail(root: &IndexLocation, version: &Version) -> Option<bytes::Bytes> {
    let r = version.text.as_ref()?;
    let read = async { TextBundle::read_tail(&root.child(&r.name)?, r).await };
    match read.await {
        Ok(tail) => Some(tail),
        Err(e) => {
            tracing::warn!(uri = %root.uri, bundle = %r.name, "text bundle's tail not read: {e}");
            None
        }
    }
}

/// A search by text, by vector, or both.
#[derive(Debug, Clone)]
pub struct HybridQuery {
    /// One query vector (`d` floats), or none for full-text only.
    pub vector: Option<Vec<f32>>,
    pub texts: Vec<TextQuery>,
    /// `k`, `nprobe`, the id and attribute filters and the returned columns.
    pub params: SearchParams,
}

/// One result of a [`HybridQuery`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HybridHit {
    pub id: i64,
    /// Reciprocal Rank Fusion's score, when more than one ranking was fused.
    pub fused: Option<f32>,
    /// The vector search's distance, when the vector search ranked it.
    pub distance: Option<f32>,
    /// Per text query, its BM25 score, when that query ranked it.
    pub bm25: Vec<Option<f32>>,
    pub attributes: Option<AttributeRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HybridResults {
    pub hits: Vec<HybridHit>,
    pub stats: SearchStats,
}

/// Where a text hit's row is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Doc {
    /// The base bundle's document (the base's entry in list order).
    Base(u32),
    Delta(Option<RowRef>),
}

impl MutableIndex {
    /// Builds and uploads the text bundle of `base`, named in the version
    /// that makes it current; `None` without text fields or entries.
    pub(super) async fn build_text(&self, base: &IvfIndex, fields: &[TextField]) -> Result<Option<BundleRef>> {
        if fields.is_empty() || base.info().ntotal <= 0 {
            return Ok(None);
        }
        let ids: Vec<i64> = base.list_ids().await?.concat();
        let attrs = base.attributes().await?;
        let mut docs: Vec<Vec<Option<String>>> = Vec::with_capacity(ids.len());
        if let Some(attrs) = &attrs {
            let names: Vec<String> = text_schema(fields, attrs.schema())
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let columns = attrs.column_indices(&names)?;
            let io = Arc::new(SearchIo::default());
            let nlist = base.info().nlist;
            for chunk in (0..nlist).collect::<Vec<_>>().chunks(BUILD_LISTS_PER_READ) {
                let lists: Vec<usize> = chunk
                    .iter()
                    .copied()
                    .filter(|&l| base.list_ranges().get(l).is_some_and(|r| r.count > 0))
                    .collect();
                let fetched = attrs.fetch(base.scheduler(), &lists, &columns, &io).await?;
                for &l in &lists {
                    let count = base.list_ranges().get(l).map_or(0, |r| r.count as usize);
                    let batch = attrs.decode(&fetched, l, &columns)?;
                    docs.extend(texts_of(fields, batch.as_ref(), count));
                }
            }
        }
        // A base without attributes: its entries have no text.
        docs.resize(ids.len(), vec![None; fields.len()]);
        let fields_owned = fields.to_vec();
        let docs_n = ids.len() as u64;
        let (bytes, tail) =
            tokio::task::spawn_blocking(move || text::build_bundle(&fields_owned, docs.into_iter(), &ids))
                .await
                .map_err(|e| Error::Internal(format!("text bundle build: {e}")))??;
        let name = new_text_name();
        let to = self.shared.root.child(&name)?;
        let size = bytes.len() as u64;
        to.store
            .put(&to.path, bytes::Bytes::from(bytes).into())
            .await
            .map_err(|e| Error::from_store(&to.uri, None, e))?;
        Ok(Some(BundleRef {
            name,
            size,
            tail,
            docs: docs_n,
        }))
    }

    /// Makes `fields` the index's text fields: builds the current base's
    /// bundle for them and commits a version naming both. Writes keep
    /// going meanwhile; the version keeps the log where it was.
    pub async fn set_text_fields(&self, fields: Vec<TextField>) -> Result<Version> {
        TextField::check_all(&fields)?;
        self.refresh().await?;
        let (position, version, base) = {
            let s = self.shared.state.lock().await;
            (s.position, s.version.clone(), s.base.clone())
        };
        let text = self.build_text(&base, &fields).await?;
        let next = Version {
            text_fields: fields,
            text,
            created_ms: super::version::now_ms(),
            ..version
        };
        if !self.shared.versions.create_at(position + 1, next.encode()).await? {
            return Err(Error::Conflict {
                uri: self.uri().to_string(),
                reason: format!("another writer committed version {} first", position + 1),
            });
        }
        self.refresh().await?;
        Ok(next)
    }

    /// Opens the version's bundle from the tail `load_version` read beside
    /// its base (`read_bundle_tail`). A failure is only logged: vector
    /// search does not need the bundle, and the first text query reads
    /// the tail again and reports it.
    pub(super) async fn adopt_bundle(&self, version: &Version, tail: Option<bytes::Bytes>) {
        let (Some(r), Some(tail)) = (&version.text, tail) else {
            return;
        };
        let io = Arc::new(SearchIo::default());
        if let Err(e) = self.bundle(r, &version.text_fields, &io, Some(tail)).await {
            tracing::warn!(uri = self.uri(), bundle = %r.name, "text bundle not opened: {e}");
        }
    }

    /// The current base's bundle, opened once per process from its tail:
    /// `read`, or one GET, which `io` counts (for a query that found it
    /// not open, when opening the index could not).
    async fn bundle(
        &self,
        r: &BundleRef,
        fields: &[TextField],
        io: &Arc<SearchIo>,
        read: Option<bytes::Bytes>,
    ) -> Result<Arc<TextBundle>> {
        let location = self.shared.root.child(&r.name)?;
        let fields = fields.to_vec();
        let compute = self.shared.options.open.compute.clone();
        let r2 = r.clone();
        self.shared
            .text_bundles
            .try_get_with(r.name.clone(), async move {
                let tail = match read {
                    Some(tail) => tail,
                    None => {
                        let tail = TextBundle::read_tail(&location, &r2).await?;
                        io.record_get();
                        io.record_bytes(tail.len() as u64);
                        tail
                    }
                };
                compute
                    .run(move || TextBundle::parse(location, &r2, &fields, &tail).map(Arc::new))
                    .await
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone())
    }

    /// The snapshot's writes as a text index: built once per snapshot,
    /// from the parts of the last one built (`delta_text.rs`).
    async fn delta_text(&self, current: &Current) -> Result<Arc<DeltaText>> {
        let delta = &current.delta;
        if let Some(t) = delta.text.get() {
            return Ok(t.clone());
        }
        let previous = self.shared.last_delta_text.lock().ok().and_then(|l| l.clone());
        let (delta2, fields, version) = (delta.clone(), current.version.text_fields.clone(), current.position);
        let built = self
            .shared
            .options
            .open
            .compute
            .run(move || DeltaText::build(&delta2, &fields, version, previous.as_deref()).map(Arc::new))
            .await?;
        if let Ok(mut last) = self.shared.last_delta_text.lock() {
            *last = Some(built.clone());
        }
        Ok(delta.text.get_or_init(|| built).clone())
    }

    /// A full-text, vector or hybrid search (see the module's doc), within
    /// `params.deadline` when one is set.
    pub async fn query(&self, query: &HybridQuery) -> Result<HybridResults> {
        match query.params.deadline {
            Some(deadline) => tokio::time::timeout(deadline, self.query_within(query))
                .await
                .map_err(|_| Error::DeadlineExceeded {
                    deadline,
                    stage: "searching",
                })?,
            None => self.query_within(query).await,
        }
    }

    async fn query_within(&self, query: &HybridQuery) -> Result<HybridResults> {
        let started = std::time::Instant::now();
        let params = &query.params;
        params.filter.validate()?;
        if params.k == 0 || params.k > crate::index::MAX_K {
            return Err(Error::invalid("k", format!("must be 1 to {}", crate::index::MAX_K)));
        }
        if query.vector.is_none() && query.texts.is_empty() {
            return Err(Error::invalid("text", "a search needs a vector, text queries, or both"));
        }
        let refresh = match self.shared.options.staleness {
            Staleness::Strong => self.refresh_older_than(std::time::Duration::ZERO).await?,
            Staleness::Bounded(bound) if self.since_refresh() >= bound => self.refresh_older_than(bound).await?,
            Staleness::Bounded(_) => None,
        };
        let current = self.shared.current.load_full();
        let fields = &current.version.text_fields;
        let field_of = TextQuery::check_all(&query.texts, fields)?;
        if let Some(f) = &params.attribute_filter {
            f.check(&current.delta.schema)?;
        }
        if let Some(n) = params
            .return_attributes
            .iter()
            .find(|n| current.delta.schema.field_with_name(n).is_err())
        {
            return Err(Error::filter(
                format!("return_attributes.{n}"),
                format!("unknown column {n:?}"),
            ));
        }
        let vector = async {
            match &query.vector {
                Some(v) => self.search_on(&current, v, params).await.map(Some),
                None => Ok(None),
            }
        };
        let io = Arc::new(SearchIo::default());
        let texts = futures::future::try_join_all(
            query
                .texts
                .iter()
                .zip(&field_of)
                .map(|(q, &field)| self.text_ranking(&current, field, &q.text, params, &io)),
        );
        let (vector, texts) = futures::future::try_join(vector, texts).await?;

        let mut stats = vector.as_ref().map(|v| v.stats.clone()).unwrap_or_default();
        let mut rankings: Vec<Vec<i64>> = Vec::new();
        let mut distances = HashMap::new();
        let mut vector_rows = HashMap::new();
        if let Some(v) = &vector {
            let (ids, ds) = v.query(0);
            let ranked: Vec<i64> = ids.iter().copied().filter(|&id| id >= 0).collect();
            for (i, (&id, &d)) in ids.iter().zip(ds).enumerate() {
                if id >= 0 {
                    distances.insert(id, d);
                    if let Some(row) = v.attributes.as_ref().and_then(|a| a.get(i).cloned().flatten()) {
                        vector_rows.insert(id, row);
                    }
                }
            }
            rankings.push(ranked);
        }
        let mut bm25: Vec<HashMap<i64, f32>> = Vec::new();
        let mut text_docs: HashMap<i64, Doc> = HashMap::new();
        for ranking in &texts {
            rankings.push(ranking.iter().map(|h| h.0).collect());
            bm25.push(ranking.iter().map(|h| (h.0, h.1)).collect());
            for h in ranking {
                text_docs.entry(h.0).or_insert(h.2);
            }
        }
        let fused = rankings.len() > 1;
        let order: Vec<(i64, Option<f32>)> = if fused {
            text::rrf(&rankings, params.k)
                .into_iter()
                .map(|(id, s)| (id, Some(s)))
                .collect()
        } else {
            rankings[0].iter().take(params.k).map(|&id| (id, None)).collect()
        };
        // Rows of text hits the vector search did not return.
        let wanted: Vec<(i64, Doc)> = if params.return_attributes.is_empty() {
            Vec::new()
        } else {
            order
                .iter()
                .filter(|(id, _)| !vector_rows.contains_key(id))
                .filter_map(|(id, _)| text_docs.get(id).map(|d| (*id, *d)))
                .collect()
        };
        let read = self
            .rows_of(
                &current,
                &wanted.iter().map(|w| w.1).collect::<Vec<_>>(),
                &params.return_attributes,
                &io,
            )
            .await?;
        let mut text_rows: HashMap<i64, AttributeRow> = HashMap::new();
        if let Some(batch) = &read {
            for (i, (id, _)) in wanted.iter().enumerate() {
                text_rows.insert(*id, AttributeValue::row_of(batch, i, self.uri())?);
            }
        }
        // The text waves (tail, postings, rows) on top of the vector search's.
        stats.add_io(&io);
        let hits = order
            .into_iter()
            .map(|(id, score)| HybridHit {
                id,
                fused: score,
                distance: distances.get(&id).copied(),
                bm25: bm25.iter().map(|m| m.get(&id).copied()).collect(),
                attributes: if params.return_attributes.is_empty() {
                    None
                } else {
                    vector_rows.remove(&id).or_else(|| text_rows.remove(&id))
                },
            })
            .collect();
        stats.total_ms = started.elapsed().as_secs_f64() * 1000.0;
        stats.version = Some(current.position);
        stats.log_position = current.delta.position;
        stats.unindexed_entries = current.delta.entries;
        let results = HybridResults { hits, stats };
        Ok(self.charge_hybrid(results, refresh))
    }

    fn charge_hybrid(&self, mut results: HybridResults, extra: Option<crate::stats::StoreCost>) -> HybridResults {
        let prices = self.shared.options.open.scheduler.config().prices;
        if let Some(extra) = extra {
            results.stats.cost.add(&extra, &prices);
        }
        results.stats.cost.usd = prices.price(
            results.stats.cost.get_requests,
            results.stats.cost.list_requests,
            results.stats.cost.bytes,
        );
        results
    }

    /// One text query's ranking: (id, BM25 score, where its row is), best
    /// first, at most `k`, every filter applied.
    async fn text_ranking(
        &self,
        current: &Current,
        field: usize,
        text: &str,
        params: &SearchParams,
        io: &Arc<SearchIo>,
    ) -> Result<Vec<(i64, f32, Doc)>> {
        let fields = &current.version.text_fields;
        let terms = query_terms(fields[field].language, text)?;
        let base = match &current.version.text {
            Some(r) => Some(self.bundle(r, fields, io, None).await?),
            None => None,
        };
        let scheduler = self.shared.options.open.scheduler.clone();
        let (postings, delta) = futures::future::try_join(
            async {
                match &base {
                    Some(b) => b.fetch_postings(&scheduler, field, &terms, io).await.map(Some),
                    None => Ok(None),
                }
            },
            self.delta_text(current),
        )
        .await?;
        let id_set = Arc::new(params.filter.id_set());
        let filter = params.filter.clone();
        let allowed = move |id: i64| filter.allows(id, &id_set);
        let allowed = Arc::new(allowed);
        let filtered = params.attribute_filter.is_some();
        let k = params.k;
        let mut n = if filtered {
            (4 * k).clamp(64, MAX_TEXT_CANDIDATES)
        } else {
            k
        };
        // Candidates judged by the filter, by id: a wider round may order
        // ties at the old cut otherwise, so positions would not do.
        let mut judged: std::collections::HashSet<i64> = std::collections::HashSet::new();
        let mut kept: Vec<(i64, f32, Doc)> = Vec::new();
        loop {
            let (base2, delta2, postings2, terms2, allowed2) = (
                base.clone(),
                delta.clone(),
                postings.clone(),
                terms.clone(),
                allowed.clone(),
            );
            let tombstones = current.delta.tombstones.clone();
            let candidates = self
                .shared
                .options
                .open
                .compute
                .run(move || {
                    let mut parts: Vec<&tantivy::Searcher> = delta2.searchers().collect();
                    if let Some(b) = &base2 {
                        parts.push(b.searcher());
                    }
                    let stats = Statistics { parts };
                    let ask = |mask| text::Ask {
                        field,
                        terms: &terms2,
                        stats: &stats,
                        n,
                        mask,
                    };
                    let mut out: Vec<(i64, f32, Doc)> = Vec::new();
                    for (p, part) in delta2.parts.iter().enumerate() {
                        let (d2, a2) = (delta2.clone(), allowed2.clone());
                        let mask: text::Mask = Arc::new(move |doc| {
                            d2.parts[p]
                                .docs
                                .get(doc as usize)
                                .is_some_and(|d| d2.is_live(d) && a2(d.0))
                        });
                        out.extend(part.text.top(ask(mask))?.into_iter().map(|(doc, s)| {
                            let (id, row) = part.docs[doc as usize];
                            (id, s, Doc::Delta(row))
                        }));
                    }
                    if let (Some(b), Some(fetched)) = (&base2, postings2) {
                        let b2 = b.clone();
                        let base_mask: text::Mask = Arc::new(move |doc| {
                            b2.id(doc)
                                .is_some_and(|id| tombstones.binary_search(&id).is_err() && allowed2(id))
                        });
                        let found = b.top(ask(base_mask), fetched)?;
                        out.extend(
                            found
                                .into_iter()
                                .filter_map(|(doc, s)| Some((b.id(doc)?, s, Doc::Base(doc)))),
                        );
                    }
                    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    out.truncate(n);
                    Ok(out)
                })
                .await?;
            let exhausted = candidates.len() < n;
            if !filtered {
                return Ok(candidates.into_iter().take(k).collect());
            }
            // Only the candidates not judged yet are read.
            let fresh: Vec<(i64, f32, Doc)> = candidates.iter().filter(|c| !judged.contains(&c.0)).copied().collect();
            judged.extend(fresh.iter().map(|c| c.0));
            let filter = params
                .attribute_filter
                .as_ref()
                .map(|f| f.columns())
                .unwrap_or_default();
            let docs: Vec<Doc> = fresh.iter().map(|c| c.2).collect();
            if let Some(batch) = self.rows_of(current, &docs, &filter, io).await? {
                let column = |name: &str| batch.column_by_name(name).cloned();
                let mask = match &params.attribute_filter {
                    Some(f) => f.evaluate(batch.num_rows(), &column)?,
                    None => arrow_array::BooleanArray::from(vec![true; batch.num_rows()]),
                };
                kept.extend(
                    fresh
                        .iter()
                        .zip(mask.iter())
                        .filter(|(_, m)| *m == Some(true))
                        .map(|(c, _)| *c),
                );
            }
            if kept.len() >= k || exhausted || n >= MAX_TEXT_CANDIDATES {
                kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                kept.truncate(k);
                return Ok(kept);
            }
            n = (n * 8).min(MAX_TEXT_CANDIDATES);
        }
    }

    /// The columns `names` of each doc's row, in order (one wave for the
    /// base's rows; the writes' are in memory). `None` for no names.
    async fn rows_of(
        &self,
        current: &Current,
        docs: &[Doc],
        names: &[String],
        io: &Arc<SearchIo>,
    ) -> Result<Option<RecordBatch>> {
        if names.is_empty() || docs.is_empty() {
            return Ok(None);
        }
        let schema = {
            let full = &current.delta.schema;
            let mut fields: Vec<arrow_schema::Field> = Vec::new();
            for n in names {
                let f = full
                    .field_with_name(n)
                    .map_err(|_| Error::filter(format!("return_attributes.{n}"), format!("unknown column {n:?}")))?;
                if !fields.iter().any(|g| g.name() == n) {
                    fields.push(f.clone());
                }
            }
            Arc::new(Schema::new(fields))
        };
        // Base documents: their list and row, from the lists' entry counts.
        let ranges = current.base.list_ranges();
        let mut starts = Vec::with_capacity(ranges.nlist() + 1);
        let mut total = 0u64;
        for l in 0..ranges.nlist() {
            starts.push(total);
            total += ranges.get(l).map_or(0, |r| r.count);
        }
        let place = |doc: u32| -> (usize, usize) {
            let l = starts.partition_point(|&s| s <= doc as u64) - 1;
            (l, (doc as u64 - starts[l]) as usize)
        };
        let mut lists: Vec<usize> = docs
            .iter()
            .filter_map(|d| match d {
                Doc::Base(doc) => Some(place(*doc).0),
                Doc::Delta(_) => None,
            })
            .collect();
        lists.sort_unstable();
        lists.dedup();
        let attrs = current.base.attributes().await?;
        let mut sources: Vec<RecordBatch> = Vec::new();
        let mut source_of: HashMap<usize, usize> = HashMap::new();
        if let (Some(attrs), false) = (&attrs, lists.is_empty()) {
            let in_base: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| attrs.schema().index_of(n).is_ok())
                .collect();
            let columns = attrs.column_indices(&in_base)?;
            let fetched = attrs.fetch(current.base.scheduler(), &lists, &columns, io).await?;
            for &l in &lists {
                if let Some(batch) = attrs.decode(&fetched, l, &columns)? {
                    source_of.insert(l, sources.len());
                    sources.push(rows::widen(&batch, &schema)?);
                }
            }
        }
        let delta_rows: Vec<Option<RowRef>> = docs
            .iter()
            .filter_map(|d| match d {
                Doc::Delta(row) => Some(*row),
                Doc::Base(_) => None,
            })
            .collect();
        let delta_batch = current.delta.gather_rows(&schema, &delta_rows)?;
        let delta_source = sources.len();
        sources.push(delta_batch);
        let mut next_delta = 0;
        let picks: Vec<(usize, usize)> = docs
            .iter()
            .map(|d| match d {
                Doc::Base(doc) => {
                    let (l, row) = place(*doc);
                    source_of.get(&l).map_or((usize::MAX, 0), |&s| (s, row))
                }
                Doc::Delta(_) => {
                    next_delta += 1;
                    (delta_source, next_delta - 1)
                }
            })
            .collect();
        let refs: Vec<Option<&RecordBatch>> = sources.iter().map(Some).collect();
        rows::gather(&schema, &refs, &picks).map(Some)
    }
}
