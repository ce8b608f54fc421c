//! The process's one tokio runtime, shared by blocking calls and asyncio
//! awaitables, and the blocking wait that keeps Ctrl-C working.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

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
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    loop {
        let pending = work.as_mut();
        let done = py.detach(|| {
            let _runtime = rt.enter();
            poll_until(pending, &waker, Instant::now() + SIGNAL_POLL)
        });
        match done {
            Some(output) => return Ok(output),
            None => py.check_signals()?,
        }
    }
}

/// Polls `work` on this thread until it is ready or `deadline` passes,
/// sleeping in between until its waker (or the deadline) wakes the thread.
/// The deadline is the thread's own, not a tokio timer: a tokio timer fires
/// only while a runtime worker drives the timer, and one worker blocked in a
/// task can keep it from doing so (tokio issue 6631), which would keep
/// Ctrl-C out for as long. The runtime's workers still drive the I/O and
/// timers `work` waits on, as they do under `Runtime::block_on`.
fn poll_until<F: Future>(mut work: Pin<&mut F>, waker: &Waker, deadline: Instant) -> Option<F::Output> {
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(output) = work.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        // Returns early on a wake-up, or spuriously; either way, poll again.
        std::thread::park_timeout(left);
    }
}

/// Wakes the thread blocked in [`wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
