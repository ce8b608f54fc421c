//! One search: validate, run the quantizer, fetch every probed list in one
//! wave, scan the fetched buffers with Faiss on the compute pool. See
//! ARCHITECTURE.md for the flow.

use std::sync::Arc;
use std::time::Instant;

use ivflake_faiss::{CoarseAssignment, IdFilter, ListSlice};
use rayon::prelude::*;

use super::options::{SearchParams, SearchResults, MAX_K, MAX_RESULT_SLOTS};
use super::view::ListView;
use super::{Inner, IvfIndex};
use crate::compute::ComputePool;
use crate::error::{Error, Result};
use crate::fetch::ListRequest;
use crate::layout::ListRange;
use crate::stats::{ms, SearchIo, SearchStats};

/// Searches probing at most this many lists in all (queries × nprobe) run
/// their compute jobs inline when the pool is idle ([`ComputePool::run_short`]):
/// short enough that a deadline waiting for one is not held up.
const SHORT_JOB_PROBES: usize = 256;

impl IvfIndex {
    pub async fn search_with(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        let n = self.validate(queries, params)?;
        let work = self.run_search(queries.to_vec(), n, params.clone());
        let _in_flight = SearchInFlight::enter();
        let outcome = match params.deadline {
            None => work.await,
            Some(deadline) => tokio::time::timeout(deadline, work)
                .await
                .unwrap_or(Err(Error::DeadlineExceeded {
                    deadline,
                    stage: "searching",
                })),
        };
        match &outcome {
            Ok(r) => {
                metrics::counter!("ivflake_searches_total", "outcome" => "ok").increment(1);
                let s = &r.stats;
                for (stage, v) in [
                    ("quantizer", s.quantizer_ms),
                    ("fetch", s.fetch_ms),
                    ("scan", s.scan_ms),
                    ("total", s.total_ms),
                ] {
                    metrics::histogram!("ivflake_search_seconds", "stage" => stage).record(v / 1000.0);
                }
            }
            Err(_) => metrics::counter!("ivflake_searches_total", "outcome" => "error").increment(1),
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
        params.filter.validate()?;
        Ok(n)
    }

    /// Pre-transforms and the coarse quantizer, on the compute pool: the
    /// transformed queries and each one's `depth` nearest lists.
    pub(super) async fn quantize(
        &self,
        queries: Vec<f32>,
        depth: usize,
    ) -> Result<(Vec<f32>, ivflake_faiss::CoarseAssignment)> {
        let inner = self.inner.clone();
        self.inner
            .options
            .compute
            .run(move || {
                let xt = inner.faiss.apply_transform(&queries)?;
                let assignment = inner.faiss.coarse_search(&xt, depth)?;
                Ok((xt, assignment))
            })
            .await
    }

    async fn run_search(&self, queries: Vec<f32>, n: usize, params: SearchParams) -> Result<SearchResults> {
        if params.attribute_filter.is_some() || !params.return_attributes.is_empty() {
            return self.run_filtered(queries, n, params).await;
        }
        let started = Instant::now();
        let io = Arc::new(SearchIo::default());

        // 1. One compute job: pre-transforms, the coarse quantizer, and, when
        //    every probed list is in the memory cache, the scan too. A warm
        //    search then never hops back to tokio in between.
        let compute = &self.inner.options.compute;
        let short = n.saturating_mul(params.nprobe) <= SHORT_JOB_PROBES;
        let warm = {
            let index = self.clone();
            let (params, io) = (params.clone(), io.clone());
            let job = move || index.quantize_and_scan_warm(&queries, n, &params, &io, started);
            on_pool(compute, short, job).await?
        };
        let (xt, assignment, requests, mut stats) = match warm {
            Warm::Done(results) => return Ok(results),
            Warm::Fetch {
                xt,
                assignment,
                requests,
                stats,
            } => (xt, assignment, requests, stats),
        };

        // 2. Every distinct non-empty probed list of the batch, in one wave.
        let fetch_started = Instant::now();
        let fetched = self
            .inner
            .options
            .scheduler
            .fetch(&self.inner.object, &requests, &io)
            .await;
        stats.fetch_ms = ms(fetch_started.elapsed());
        let views = self.views(fetched, &requests, params.allow_partial, &mut stats)?;

        // 3. Scan the fetched buffers with Faiss's scanners, queries in parallel.
        let scan_started = Instant::now();
        let k = params.k;
        let neighbors = {
            let index = self.clone();
            let job = move || index.scan(&xt, &assignment, &views, &params);
            on_pool(compute, short, job).await?
        };
        stats.scan_ms = ms(scan_started.elapsed());
        stats.absorb(&io);
        stats.total_ms = ms(started.elapsed());
        Ok(SearchResults {
            k,
            ids: neighbors.labels,
            distances: neighbors.distances,
            attributes: None,
            stats,
        })
    }

    /// The compute job that starts every plain search: quantizer, then the
    /// scan if the memory cache holds every probed list, else what the
    /// fetch wave needs.
    fn quantize_and_scan_warm(
        &self,
        queries: &[f32],
        n: usize,
        params: &SearchParams,
        io: &SearchIo,
        started: Instant,
    ) -> Result<Warm> {
        let inner = &self.inner;
        let mut stats = SearchStats {
            queries: n,
            ..Default::default()
        };
        let xt = inner.faiss.apply_transform(queries)?;
        let assignment = inner.faiss.coarse_search(&xt, params.nprobe)?;
        stats.quantizer_ms = ms(started.elapsed());

        let mut wanted: Vec<usize> = assignment
            .lists
            .iter()
            .filter(|&&l| l >= 0)
            .map(|&l| l as usize)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let requests = self.list_requests(&wanted);
        stats.lists_probed = requests.len();
        stats.bytes_probed = requests.iter().map(|r| r.range.len).sum();
        inner.probes.record(&wanted);

        let lookup_started = Instant::now();
        let Some(hits) = inner.options.scheduler.memory_hits(&inner.pin, &requests, io) else {
            return Ok(Warm::Fetch {
                xt,
                assignment,
                requests,
                stats,
            });
        };
        let fetched = hits.into_iter().map(|(list, bytes)| (list, Ok(bytes))).collect();
        let views = self.views(fetched, &requests, params.allow_partial, &mut stats)?;
        stats.fetch_ms = ms(lookup_started.elapsed());
        let scan_started = Instant::now();
        let neighbors = self.scan(&xt, &assignment, &views, params)?;
        stats.scan_ms = ms(scan_started.elapsed());
        stats.absorb(io);
        stats.total_ms = ms(started.elapsed());
        Ok(Warm::Done(SearchResults {
            k: params.k,
            ids: neighbors.labels,
            distances: neighbors.distances,
            attributes: None,
            stats,
        }))
    }

    /// Fetched lists as Faiss reads them, in list order. A list that failed
    /// (or is corrupt) is named in `stats.failed_lists`; its error ends the
    /// search unless partial results are allowed. `requests` are in list
    /// order, as [`IvfIndex::list_requests`] makes them from sorted lists.
    fn views<B: Into<Arc<bytes::Bytes>>>(
        &self,
        mut fetched: Vec<(usize, Result<B>)>,
        requests: &[ListRequest],
        allow_partial: bool,
        stats: &mut SearchStats,
    ) -> Result<Vec<(usize, ListView)>> {
        debug_assert!(
            requests.windows(2).all(|w| w[0].list < w[1].list),
            "requests in list order"
        );
        fetched.sort_unstable_by_key(|(list, _)| *list);
        let mut views = Vec::with_capacity(fetched.len());
        let mut first_error = None;
        for (list, outcome) in fetched {
            let view = outcome.and_then(|bytes| self.list_view(list, bytes, &range_of(requests, list)?));
            match view {
                Ok(view) => views.push((list, view)),
                Err(e) => {
                    stats.failed_lists.push(list);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            if !allow_partial {
                return Err(e);
            }
            tracing::warn!(uri = %self.uri(), failed = ?stats.failed_lists, error = %e, "partial search");
        }
        stats.failed_lists.sort_unstable();
        Ok(views)
    }

    /// Faiss's scan of `views` for the transformed queries, on the compute
    /// pool (the caller is a job on it).
    fn scan(
        &self,
        xt: &[f32],
        assignment: &CoarseAssignment,
        views: &[(usize, ListView)],
        params: &SearchParams,
    ) -> Result<ivflake_faiss::Neighbors> {
        // `views` are in list order (`views`): a list's slot is a binary search.
        let slots: Vec<i32> = assignment
            .lists
            .iter()
            .map(|&l| {
                usize::try_from(l)
                    .ok()
                    .and_then(|l| views.binary_search_by_key(&l, |(list, _)| *list).ok())
                    .map_or(-1, |slot| slot as i32)
            })
            .collect();
        let slices: Vec<ListSlice<'_>> = views.iter().map(|(_, v)| v.slice()).collect();
        let inner = &self.inner;
        scan_parallel(
            inner,
            &inner.options.compute,
            xt,
            params.k,
            params.nprobe,
            assignment,
            &slots,
            &slices,
            params.filter.as_faiss(),
        )
    }
}

/// The range of `list` among `requests` (in list order).
fn range_of(requests: &[ListRequest], list: usize) -> Result<ListRange> {
    requests
        .binary_search_by_key(&list, |r| r.list)
        .map(|i| requests[i].range)
        .map_err(|_| Error::Internal(format!("list {list} was fetched but not requested")))
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

/// What the first compute job of a plain search ends with.
enum Warm {
    /// Every list was in memory: the search is done.
    Done(SearchResults),
    /// Some lists must be fetched: the quantizer's output and the wave's requests.
    Fetch {
        xt: Vec<f32>,
        assignment: CoarseAssignment,
        requests: Vec<ListRequest>,
        stats: SearchStats,
    },
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

/// Splits the batch across the compute pool; each chunk runs the same
/// single-threaded Faiss scan, so results do not depend on the split.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_parallel(
    inner: &Inner,
    compute: &ComputePool,
    xt: &[f32],
    k: usize,
    nprobe: usize,
    assignment: &CoarseAssignment,
    slots: &[i32],
    lists: &[ListSlice<'_>],
    filter: IdFilter<'_>,
) -> Result<ivflake_faiss::Neighbors> {
    let d = inner.info.ivf_d;
    let n = xt.len() / d;
    if n <= 1 {
        // Nothing to split: scan here, which for a job running inline
        // (`ComputePool::run_short`) saves a hop onto the pool.
        return Ok(inner.faiss.scan_lists(xt, k, assignment, slots, lists, filter)?);
    }
    let chunk = n.div_ceil(compute.threads().max(1)).max(1);
    let parts: Vec<Result<ivflake_faiss::Neighbors>> = compute.install(|| {
        (0..n)
            .step_by(chunk)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let end = (start + chunk).min(n);
                let probes = start * nprobe..end * nprobe;
                let sub = CoarseAssignment {
                    distances: assignment.distances[probes.clone()].to_vec(),
                    lists: assignment.lists[probes.clone()].to_vec(),
                };
                Ok(inner
                    .faiss
                    .scan_lists(&xt[start * d..end * d], k, &sub, &slots[probes], lists, filter)?)
            })
            .collect()
    });
    let mut out = ivflake_faiss::Neighbors {
        distances: Vec::with_capacity(n * k),
        labels: Vec::with_capacity(n * k),
    };
    for part in parts {
        let part = part?;
        out.distances.extend(part.distances);
        out.labels.extend(part.labels);
    }
    Ok(out)
}
