//! The compute pool: Faiss work (quantizer, scans, header parsing) runs here,
//! never on tokio worker threads, so object-store I/O keeps flowing under CPU load.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct ComputePool {
    pool: Arc<rayon::ThreadPool>,
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
        Ok(Self { pool: Arc::new(pool) })
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
        self.pool.spawn(move || {
            if tx.is_closed() {
                return;
            }
            let outcome = catch_unwind(AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(Error::Internal("compute task panicked".into())));
            let _ = tx.send(outcome);
        });
        rx.await
            .map_err(|_| Error::Internal("compute pool dropped a task".into()))?
    }

    /// Runs `work` for each item in parallel on the pool (inside a task already on it).
    pub fn install<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        self.pool.install(work)
    }
}
