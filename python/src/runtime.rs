//! The process's one tokio runtime, shared by blocking calls and asyncio
//! awaitables, and the blocking wait that keeps Ctrl-C working.

use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;

/// How often a blocking call wakes up to let Python run signal handlers.
/// Ctrl-C then lands within this; each wake costs one GIL round trip.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The runtime pyo3-async-runtimes creates on first use (multi-threaded, all
/// drivers): `search_async` futures run on it, so blocking calls use it too.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `work` to completion with the GIL released, waking every
/// [`SIGNAL_POLL`] to run Python's signal handlers. When one raises (Ctrl-C
/// raises `KeyboardInterrupt`) `work` is dropped, which cancels it: its GETs
/// are aborted unless another search awaits the same lists.
pub(crate) fn wait<F>(py: Python<'_>, work: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime();
    let mut work = std::pin::pin!(work);
    loop {
        let pending = work.as_mut();
        let done = py.detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, pending).await.ok() }));
        match done {
            Some(output) => return Ok(output),
            None => py.check_signals()?,
        }
    }
}
