//! The preload: after open, list data loaded into the memory cache in the
//! background, per [`Preload`], through the scheduler's background loads
//! (their own slots, large merged GETs, only into free room). Searches run
//! meanwhile and take what has arrived; the rest they fetch as usual.

use std::time::Instant;

use tokio::sync::watch;

use super::options::Preload;
use super::IvfIndex;
use crate::fetch::{BackgroundLoad, ListRequest};
use crate::stats::ms;

/// Where an index's preload stands.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreloadStatus {
    pub state: PreloadState,
    /// Why nothing is loaded, when `state` is `skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The lists chosen, and their bytes.
    pub lists_planned: usize,
    pub bytes_planned: u64,
    /// What has been done so far.
    pub load: BackgroundLoad,
    /// Time since the preload started, or its whole time once done.
    pub ms: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PreloadState {
    /// The setting is off.
    #[default]
    Off,
    /// Nothing fits the budget (see the reason).
    Skipped,
    Running,
    Done,
}

/// The running preload of one index version: dropped with its last handle,
/// which stops the load.
pub(super) struct Preloading {
    status: watch::Receiver<PreloadStatus>,
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Preloading {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl IvfIndex {
    /// Where the preload stands.
    pub fn preload_status(&self) -> PreloadStatus {
        match self.inner.preload.get() {
            Some(p) => p.status.borrow().clone(),
            None => PreloadStatus::default(),
        }
    }

    /// Waits until the preload is done or skipped (at once when off).
    pub async fn preloaded(&self) -> PreloadStatus {
        let Some(p) = self.inner.preload.get() else {
            return PreloadStatus::default();
        };
        let mut status = p.status.clone();
        let settled = status
            .wait_for(|s| s.state != PreloadState::Running)
            .await
            .map(|s| s.clone());
        settled.unwrap_or_else(|_| status.borrow().clone())
    }

    /// Starts the preload the options ask for (checked by open); called once by open.
    pub(super) fn start_preload(&self) {
        let Preload::Auto { max_cache_fraction } = self.inner.options.preload else {
            return;
        };
        let mut status = PreloadStatus::default();
        let requests = match self.preload_plan(max_cache_fraction) {
            Ok(requests) => requests,
            Err(reason) => {
                tracing::info!(uri = %self.uri(), %reason, "preload skipped");
                status.state = PreloadState::Skipped;
                status.reason = Some(reason);
                let (_tx, rx) = watch::channel(status);
                let _ = self.inner.preload.set(Preloading { status: rx, task: None });
                return;
            }
        };
        status.state = PreloadState::Running;
        status.lists_planned = requests.len();
        status.bytes_planned = requests.iter().map(|r| r.range.len).sum();
        let (tx, rx) = watch::channel(status);
        // The task holds the scheduler and the object, never the index, so
        // dropping the last handle drops `Preloading`, which aborts it.
        let scheduler = self.scheduler().clone();
        let object = self.lists_object().clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let report = scheduler
                .load_background(&object, &requests, |so_far| {
                    tx.send_modify(|s| {
                        s.load = so_far.clone();
                        s.ms = ms(started.elapsed());
                    })
                })
                .await;
            tracing::info!(uri = %object.uri(), lists = report.lists_loaded, bytes = report.bytes_loaded,
                gets = report.gets, failed = report.failed_lists.len(), "preloaded");
            tx.send_modify(|s| {
                s.load = report;
                s.ms = ms(started.elapsed());
                s.state = PreloadState::Done;
            });
        });
        let _ = self.inner.preload.set(Preloading {
            status: rx,
            task: Some(task.abort_handle()),
        });
    }

    /// The lists to preload: all of them when they fit the budget (a share of
    /// the cache, within its free room); else the most probed that fit; else
    /// the reason there are none.
    fn preload_plan(&self, fraction: f64) -> std::result::Result<Vec<ListRequest>, String> {
        let config = self.scheduler().config();
        let capacity = config.memory_cache_bytes;
        let share = (capacity as f64 * fraction) as u64;
        let free = capacity.saturating_sub(self.scheduler().memory_weighted_bytes());
        let budget = share.min(free);
        let all: Vec<usize> = (0..self.info().nlist).collect();
        let requests = self.list_requests(&all);
        let total: u64 = requests.iter().map(|r| r.range.len).sum();
        if total <= budget {
            return Ok(requests);
        }
        let mut spent = 0;
        let mut chosen = Vec::new();
        for list in self.probes().hottest(usize::MAX) {
            let Some(req) = self.list_requests(&[list]).pop() else {
                continue;
            };
            if spent + req.range.len > budget {
                break;
            }
            spent += req.range.len;
            chosen.push(req);
        }
        if chosen.is_empty() {
            return Err(format!(
                "the lists take {total} bytes, above the budget of {budget} (a {fraction} share of a \
                 {capacity}-byte cache, within its free room), and no probe counts name the hottest"
            ));
        }
        Ok(chosen)
    }
}
