//! The compute pool: Faiss work (quantizer, scans, header parsing) runs here,
//! never on tokio worker threads, so object-store I/O keeps flowing under CPU load.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::error::{Error, Result};

/// Set when the caller of a job has stopped waiting for it (a deadline, a
/// dropped request): a long job checks it between pieces of work and stops,
/// so abandoned work stops using CPU.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A guard that cancels when dropped: held by the future that awaits
    /// the jobs, so dropping that future cancels them.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// Cancels its [`Cancel`] when dropped.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct ComputePool {
    pool: Arc<rayon::ThreadPool>,
    /// Jobs queued or running, on the pool or inline (see [`Self::run_short`]).
    active: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputePool")
            .field("threads", &self.pool.current_num_threads())
            .finish()
    }
}

impl ComputePool {
    /// A pool of `threads` threads (0 means one per core).
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ivflake-compute-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start compute pool: {e}")))?;
        Ok(Self {
            pool: Arc::new(pool),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The process-wide pool, one thread per core.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<ComputePool> = OnceLock::new();
        GLOBAL
            .get_or_init(|| ComputePool::new(0).expect("the global compute pool starts"))
            .clone()
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `work` on the pool and awaits it without blocking the runtime.
    /// If the caller stops waiting (a deadline, a dropped request) before the
    /// job starts, the job is skipped, so abandoned work never piles up.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let active = Active::enter(&self.active);
        self.pool.spawn(move || {
            if tx.is_closed() {
                return;
            }
            let outcome = guarded(work);
            // Uncounted before the caller can wake: a caller that looks at
            // the count next (`run_short`) sees this job as done.
            drop(active);
            let _ = tx.send(outcome);
        });
        rx.await
            .map_err(|_| Error::Internal("compute pool dropped a task".into()))?
    }

    /// Runs a short job (a warm single-query search: under a millisecond)
    /// on the calling thread when fewer jobs are active than the pool has
    /// threads, else as [`Self::run`] does. A pool hop costs two thread
    /// wake-ups, measured at about 0.1 ms on this project's 2-core VM: 15%
    /// of a warm search. Inline, tokio is told with `block_in_place`, which
    /// hands this worker's other tasks to another thread, so I/O keeps
    /// flowing; counting inline jobs as active keeps the CPU work within
    /// the pool's size, and under load every job queues on the pool.
    pub async fn run_short<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        // block_in_place needs a multi-threaded runtime (it panics on a
        // current-thread one); elsewhere the pool it is.
        let inline_ok = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if inline_ok {
            let active = Active::enter(&self.active);
            if active.before < self.threads() {
                let outcome = tokio::task::block_in_place(|| guarded(work));
                drop(active);
                return outcome;
            }
        }
        self.run(work).await
    }

    /// Runs `work` on the pool: in place when called from one of its
    /// threads, else by handing it over and blocking until it is done.
    pub fn install<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        self.pool.install(work)
    }
}

/// A job's outcome, a panic inside it turned into an error.
fn guarded<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| Err(Error::Internal("compute task panicked".into())))
}

/// One job counted in [`ComputePool::active`] until dropped.
struct Active {
    count: Arc<AtomicUsize>,
    /// Jobs active before this one.
    before: usize,
}

impl Active {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Self {
            count: count.clone(),
            before,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_job_runs_inline_while_the_pool_is_idle_and_queues_when_busy() {
        let pool = ComputePool::new(1).unwrap();
        let caller = std::thread::current().id();
        let ran_on = pool.run_short(|| Ok(std::thread::current().id())).await.unwrap();
        assert_eq!(ran_on, caller, "inline on the calling thread");
        assert_eq!(pool.active.load(Ordering::SeqCst), 0);

        // Hold the pool's one thread: the next short job waits its turn there.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let holder = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    held.recv().ok();
                    Ok(())
                })
                .await
            }
        });
        started.await.unwrap();
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run_short(|| Ok(thread_name())).await }
        });
        // Both counted: the short job is queued behind the held one.
        while pool.active.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(queued.await.unwrap().unwrap().starts_with("ivflake-compute"));
        assert_eq!(pool.active.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_always_uses_the_pool() {
        let pool = ComputePool::new(1).unwrap();
        assert!(pool
            .run_short(|| Ok(thread_name()))
            .await
            .unwrap()
            .starts_with("ivflake-compute"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_inline_or_on_the_pool_is_an_error() {
        let pool = ComputePool::new(1).unwrap();
        let inline: Result<()> = pool.run_short(|| panic!("inline")).await;
        assert!(matches!(inline, Err(Error::Internal(_))), "{inline:?}");
        let pooled: Result<()> = pool.run(|| panic!("pooled")).await;
        assert!(matches!(pooled, Err(Error::Internal(_))), "{pooled:?}");
        assert_eq!(pool.active.load(Ordering::SeqCst), 0);
    }
}
