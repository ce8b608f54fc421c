//! The GET path: one range read pinned to an object version (`If-Match`),
//! under the process-wide and per-search slot limits, with a time limit per
//! attempt (re-sent on time-out), optional hedging, large ranges split into
//! parallel parts, and the length checked. It knows nothing of lists or caches.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;

use super::{Core, FetchCounters};
use crate::error::{Error, Result};
use crate::object::IndexObject;
use crate::stats::SearchIo;

/// Everything one GET needs: the scheduler's core and what this search brings.
pub(super) struct GetContext {
    pub core: Arc<Core>,
    pub object: Arc<IndexObject>,
    pub io: Arc<SearchIo>,
    pub per_search: Arc<Semaphore>,
    /// A background load's GET: it takes the background slots, never the
    /// searches' process-wide ones, and is never hedged.
    pub background: bool,
}

enum Attempt {
    TimedOut,
    Failed(Error),
}

impl GetContext {
    /// One range, split into parallel part-GETs when it is very large.
    pub async fn get_split(&self, range: Range<u64>) -> Result<Bytes> {
        let config = &self.core.config;
        let len = range.end - range.start;
        if len <= config.split_threshold || config.part_size == 0 {
            return self.get_hedged(range).await;
        }
        let parts: Vec<Range<u64>> = (range.start..range.end)
            .step_by(config.part_size as usize)
            .map(|s| s..(s + config.part_size).min(range.end))
            .collect();
        let fetched = futures::future::try_join_all(parts.into_iter().map(|r| self.get_hedged(r))).await?;
        let mut whole = BytesMut::with_capacity(len as usize);
        for part in fetched {
            whole.extend_from_slice(&part);
        }
        Ok(whole.freeze())
    }

    async fn get_hedged(&self, range: Range<u64>) -> Result<Bytes> {
        let hedge = match self.core.config.hedge {
            Some(hedge) if !self.background => hedge,
            _ => return self.get_once(range, None).await,
        };
        let delay = self.core.latencies.percentile(hedge.percentile).max(hedge.min_delay);
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
        let first = self.get_once(range.clone(), Some(sent_tx));
        tokio::pin!(first);
        // The clock starts when the GET is sent, not while it queues for a slot.
        tokio::select! {
            r = &mut first => return r,
            _ = sent_rx => {}
        }
        tokio::select! {
            r = &mut first => return r,
            _ = tokio::time::sleep(delay) => {}
        }
        if !self.core.hedge_budget.try_take() {
            return first.await;
        }
        self.core.counters.hedges.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ivflake_store_hedged_gets_total").increment(1);
        self.io.record_hedge();
        let second = self.get_once(range, None);
        tokio::pin!(second);
        // Whichever answers first wins; a failed one defers to the other.
        tokio::select! {
            r = &mut first => match r { Ok(b) => Ok(b), Err(_) => second.await },
            r = &mut second => match r { Ok(b) => Ok(b), Err(_) => first.await },
        }
    }

    /// One GET, re-sent up to `get_retries` times when an attempt exceeds `get_timeout`.
    /// `sent` hears when the first attempt holds its slots and goes out.
    async fn get_once(&self, range: Range<u64>, mut sent: Option<tokio::sync::oneshot::Sender<()>>) -> Result<Bytes> {
        let config = &self.core.config;
        let mut attempt = 0;
        loop {
            match self.attempt(range.clone(), sent.take()).await {
                Err(Attempt::TimedOut) if attempt < config.get_retries => {
                    attempt += 1;
                    self.core.counters.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ivflake_store_retries_total").increment(1);
                    self.io.record_retry();
                    tracing::debug!(uri = %self.object.uri(), ?range, attempt, "GET timed out; re-sending");
                }
                Err(Attempt::TimedOut) => {
                    return Err(Error::GetTimedOut {
                        uri: self.object.uri().to_string(),
                        range,
                        timeout: config.get_timeout,
                        attempts: attempt + 1,
                    })
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(bytes) => return Ok(bytes),
            }
        }
    }

    async fn attempt(
        &self,
        range: Range<u64>,
        sent: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Bytes, Attempt> {
        let core = &self.core;
        let _search_slot = self.per_search.acquire().await;
        let _global_slot = if self.background {
            core.background.acquire().await
        } else {
            core.global.acquire().await
        };
        if let Some(sent) = sent {
            let _ = sent.send(());
        }
        if let Some(hedge) = core.config.hedge {
            core.hedge_budget.earn(hedge.budget);
        }
        core.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.io.record_get();
        metrics::counter!("ivflake_store_gets_total").increment(1);
        let in_flight = InFlight::enter(&core.counters);
        let started = Instant::now();
        let location = &self.object.location;
        let request = async {
            location
                .store
                .get_opts(&location.path, self.object.get_options(range.clone()))
                .await?
                .bytes()
                .await
        };
        let outcome = tokio::time::timeout(core.config.get_timeout, request).await;
        drop(in_flight);
        let bytes = match outcome {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(r) => r.map_err(|e| {
                metrics::counter!("ivflake_store_errors_total").increment(1);
                Attempt::Failed(Error::from_store(self.object.uri(), self.object.e_tag.as_deref(), e))
            })?,
        };
        let expected = range.end - range.start;
        if bytes.len() as u64 != expected {
            return Err(Attempt::Failed(Error::TruncatedGet {
                uri: self.object.uri().to_string(),
                range,
                got: bytes.len() as u64,
            }));
        }
        core.latencies.record(started.elapsed());
        core.counters.bytes.fetch_add(expected, Ordering::Relaxed);
        metrics::counter!("ivflake_store_bytes_total").increment(expected);
        self.io.record_bytes(expected);
        Ok(bytes)
    }
}

/// Counts a GET in flight for as long as it lives, even if its future is dropped.
struct InFlight<'a>(&'a FetchCounters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a FetchCounters) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("ivflake_fetches_in_flight").increment(1.0);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("ivflake_fetches_in_flight").decrement(1.0);
    }
}
