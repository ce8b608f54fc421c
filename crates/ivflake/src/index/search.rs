//! One search, from the caller's side: validate, bound it by its deadline,
//! count it, and drive the pipeline of `plan.rs`: its stages run on the
//! compute pool, and this file runs the fetch waves between them, the one
//! place in `index/` that reads lists from the store. See ARCHITECTURE.md.

use std::sync::Arc;
use std::time::Instant;

use super::options::{IdFilterSpec, SearchParams, SearchResults, MAX_K, MAX_K_FACTOR, MAX_RESULT_SLOTS};
use super::plan::{Fetched, SearchPlan, Step, Wave};
use super::rerank::{scan_k, IdMap};
use super::select::AttributeSelect;
use super::IvfIndex;
use crate::compute::ComputePool;
use crate::error::{Error, Result};
use crate::mutable::DeltaSnapshot;
use crate::stats::{ms, SearchIo};

/// Searches probing at most this many lists in all (queries × nprobe) run
/// their compute jobs inline when the pool is idle ([`ComputePool::run_short`]):
/// short enough that a deadline waiting for one is not held up.
const SHORT_JOB_PROBES: usize = 256;

impl IvfIndex {
    pub async fn search_with(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        self.search_delta(queries, params, None).await
    }

    /// A search of this base and, for a mutable index, the writes since
    /// it: each list's run of later entries scanned after the base's, the
    /// base's entries of changed ids hidden.
    pub(crate) async fn search_delta(
        &self,
        queries: &[f32],
        params: &SearchParams,
        delta: Option<Arc<DeltaSnapshot>>,
    ) -> Result<SearchResults> {
        let n = self.validate(queries, params)?;
        let work = self.run_search(queries.to_vec(), n, params.clone(), delta);
        let _in_flight = SearchInFlight::enter();
        let mut outcome = match params.deadline {
            None => work.await,
            Some(deadline) => tokio::time::timeout(deadline, work)
                .await
                .unwrap_or(Err(Error::DeadlineExceeded {
                    deadline,
                    stage: "searching",
                })),
        };
        let index = self.metrics_name();
        match &mut outcome {
            Ok(r) => {
                metrics::counter!("ivflake_searches_total", "index" => index.clone(), "outcome" => "ok").increment(1);
                let cost = &mut r.stats.cost;
                cost.usd = self.scheduler().config().prices.price(cost.get_requests, 0, cost.bytes);
                cost.record_metrics(&index);
                let s = &r.stats;
                for (stage, v) in [
                    ("quantizer", s.quantizer_ms),
                    ("fetch", s.fetch_ms),
                    ("scan", s.scan_ms),
                    ("total", s.total_ms),
                ] {
                    metrics::histogram!("ivflake_search_seconds", "index" => index.clone(), "stage" => stage)
                        .record(v / 1000.0);
                }
            }
            Err(_) => metrics::counter!("ivflake_searches_total", "index" => index, "outcome" => "error").increment(1),
        }
        outcome
    }

    fn validate(&self, queries: &[f32], params: &SearchParams) -> Result<usize> {
        let d = self.inner.info.d;
        if queries.is_empty() {
            return Err(Error::invalid("queries", "the batch is empty"));
        }
        if !queries.len().is_multiple_of(d) {
            return Err(Error::invalid(
                "queries",
                format!(
                    "{} floats is not a whole number of {d}-dimensional vectors",
                    queries.len()
                ),
            ));
        }
        if let Some(pos) = queries.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "queries",
                format!("query {} has a non-finite value at dimension {}", pos / d, pos % d),
            ));
        }
        let n = queries.len() / d;
        if params.k == 0 || params.k > MAX_K {
            return Err(Error::invalid(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", params.k),
            ));
        }
        let nlist = self.inner.info.nlist;
        if params.nprobe == 0 || params.nprobe > nlist {
            return Err(Error::invalid(
                "nprobe",
                format!("must be between 1 and nlist = {nlist}, got {}", params.nprobe),
            ));
        }
        if n.saturating_mul(params.k) > MAX_RESULT_SLOTS {
            return Err(Error::invalid(
                "queries",
                format!("{n} queries × k = {} exceeds {MAX_RESULT_SLOTS} result slots", params.k),
            ));
        }
        if let Some(k_factor) = params.k_factor {
            if !k_factor.is_finite() || !(1.0..=MAX_K_FACTOR).contains(&k_factor) {
                return Err(Error::invalid(
                    "k_factor",
                    format!("must be between 1 and {MAX_K_FACTOR}, got {k_factor}"),
                ));
            }
        }
        let candidates = scan_k(self, params);
        if n.saturating_mul(candidates) > MAX_RESULT_SLOTS {
            return Err(Error::invalid(
                "k_factor",
                format!("{n} queries × k × k_factor = {candidates} candidates each exceeds {MAX_RESULT_SLOTS} slots"),
            ));
        }
        params.filter.validate()?;
        if let Some(IdMap::Paged(_)) = &self.inner.id_map {
            if params.filter != IdFilterSpec::All {
                return Err(Error::invalid(
                    "filter",
                    format!(
                        "an id filter on an IndexIDMap index needs its {} ids in memory: \
                         open it with id_map_memory_bytes of at least {}",
                        self.inner.info.ntotal,
                        self.inner.info.ntotal.max(0) * 8
                    ),
                ));
            }
        }
        if self.inner.id_map.is_some() && (params.attribute_filter.is_some() || !params.return_attributes.is_empty()) {
            return Err(Error::Unsupported {
                uri: self.uri().to_string(),
                reason: "attributes on an IndexIDMap index are not served yet".into(),
            });
        }
        Ok(n)
    }

    /// The pipeline (`plan.rs`) on the compute pool, and its fetch waves
    /// between: the only place a search awaits the store.
    async fn run_search(
        &self,
        queries: Vec<f32>,
        n: usize,
        params: SearchParams,
        delta: Option<Arc<DeltaSnapshot>>,
    ) -> Result<SearchResults> {
        let select = if params.attribute_filter.is_some() || !params.return_attributes.is_empty() {
            let attrs = self.attributes().await?;
            // A mutable index's writes may carry attributes its base has not.
            let written = delta.as_ref().is_some_and(|d| d.has_attributes());
            let attrs = match (attrs, written) {
                (None, false) => Some(self.require_attributes().await?),
                (attrs, _) => attrs,
            };
            Some(AttributeSelect::new(attrs, delta.clone(), &params)?)
        } else {
            None
        };
        let compute = &self.inner.options.compute;
        let short = n.saturating_mul(params.nprobe) <= SHORT_JOB_PROBES;
        let plan = SearchPlan::new(self.clone(), queries, n, params, select, delta);
        // Dropping this future (a deadline, a dropped request) stops the scan.
        let _cancel_on_drop = plan.cancel.on_drop();
        let mut step = on_pool(compute, short, move || plan.advance(None)).await?;
        let mut compute_jobs = 1;
        loop {
            match step {
                Step::Done(mut results) => {
                    results.stats.compute_jobs = compute_jobs;
                    return Ok(*results);
                }
                Step::Fetch(plan, wave) => {
                    let fetch_started = Instant::now();
                    let io = plan.io_for(wave.kind);
                    let fetched = self.fetch_wave(&wave, plan.select_stage(), &io).await;
                    let mut plan = plan;
                    plan.stats.fetch_ms += ms(fetch_started.elapsed());
                    let kind = wave.kind;
                    compute_jobs += 1;
                    step = on_pool(compute, short, move || plan.advance(Some((kind, fetched)))).await?;
                }
            }
        }
    }

    /// One wave: the lists' codes and ids and, when asked, attribute columns,
    /// all at once through the scheduler.
    pub(super) async fn fetch_wave(
        &self,
        wave: &Wave,
        select: Option<&AttributeSelect>,
        io: &Arc<SearchIo>,
    ) -> Fetched {
        let scheduler = &self.inner.options.scheduler;
        let lists = async {
            if wave.requests.is_empty() {
                return Vec::new();
            }
            scheduler
                .fetch(self.wave_source(wave.kind).0, &wave.requests, io)
                .await
                .into_iter()
                .map(|(list, outcome)| (list, outcome.map(Arc::new)))
                .collect()
        };
        let columns = async {
            match select {
                Some(select) if !wave.columns.is_empty() => {
                    Some(select.fetch(scheduler, &wave.column_lists, &wave.columns, io).await)
                }
                _ => None,
            }
        };
        let (lists, columns) = tokio::join!(lists, columns);
        Fetched { lists, columns }
    }
}

/// A search's compute job: inline while the pool is idle when the search
/// is `short`, else queued on the pool.
async fn on_pool<T, F>(compute: &ComputePool, short: bool, job: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    if short {
        compute.run_short(job).await
    } else {
        compute.run(job).await
    }
}

impl IvfIndex {
    /// The `index` label of this index's metrics.
    pub(crate) fn metrics_name(&self) -> Arc<str> {
        self.inner.metrics_name.clone()
    }

    /// Registers this index's search counters at 0, so a scrape shows them
    /// before the first search (a rate over a series that appears late
    /// misses its first increase).
    pub(crate) fn register_metrics(&self) {
        for outcome in ["ok", "error"] {
            metrics::counter!("ivflake_searches_total", "index" => self.metrics_name(), "outcome" => outcome)
                .increment(0);
        }
    }
}

/// Counts a search in flight while it lives, cancelled or not.
struct SearchInFlight;

impl SearchInFlight {
    fn enter() -> Self {
        metrics::gauge!("ivflake_searches_in_flight").increment(1.0);
        Self
    }
}

impl Drop for SearchInFlight {
    fn drop(&mut self) {
        metrics::gauge!("ivflake_searches_in_flight").decrement(1.0);
    }
}
