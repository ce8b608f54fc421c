//! The accept loop: the cap on open connections, hyper's HTTP/1 settings
//! (header read time-out, keep-alive), the response write time-out and the
//! graceful drain of connections. It owns sockets and connection tasks;
//! routes, bodies and admission are the router's (`routes`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::config::{HttpSettings, FD_HEADROOM};

/// After an accept error other than a dropped handshake (e.g. out of file
/// descriptors), wait this long before accepting again rather than spin; a
/// closing connection frees a descriptor well within it.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A listening socket whose backlog holds a burst as large as the
/// connection cap: with tokio's default (1024) a burst of a thousand
/// connects overflowed it here and the dropped SYNs waited a second for
/// their retransmit. The kernel caps it at `net.core.somaxconn`.
pub(crate) fn listen(addr: std::net::SocketAddr, max_connections: usize) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted server rebinds while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::try_from(max_connections).unwrap_or(u32::MAX).clamp(1024, 65_535))
}

/// Accepts connections until `stop_accepting` resolves, each served on its
/// own task while it holds one of `max_connections` slots. Returns the
/// handle that drains the connections still open.
pub(crate) async fn accept_until(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    stop_accepting: impl Future<Output = ()>,
) -> GracefulShutdown {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        .keep_alive(settings.keep_alive);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let open = metrics::gauge!("ivflake_http_connections_open");
    tokio::pin!(stop_accepting);
    loop {
        // At the cap, wait for a slot before accepting: new clients queue in
        // the kernel's backlog while the time-outs close slow ones.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut stop_accepting => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    drop(slot);
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        // Small JSON answers should leave at once, not wait on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let tcp = WriteStall::new(tcp, Duration::from_millis(settings.response_stall_timeout_ms));
        let connection = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            // Time-outs and resets end connections as errors; they are the
            // client's doing, not the server's.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    graceful
}

/// A connection whose writes fail once one has made no progress for
/// `limit`: a client that stops reading its response cannot hold the
/// response's memory, or a connection slot, for longer. hyper then drops the
/// connection and the response with it.
struct WriteStall<T> {
    inner: T,
    limit: Duration,
    /// Started when a write first finds the socket full; reset by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStall<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's outcome on, and fails a write pending for `limit`.
    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection that failed during its handshake: nothing to wait for.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Raises this process's soft limit on open files to what `max_connections`
/// needs, up to the hard limit; says so in the log when it cannot (the cap
/// still holds, and accepts past the limit fail and are retried).
pub(crate) fn raise_open_file_limit(max_connections: usize) {
    let needed = max_connections.saturating_add(FD_HEADROOM) as u64;
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit >= needed => tracing::debug!(limit, "open-file limit"),
        Ok(limit) => tracing::warn!(
            limit,
            needed,
            "the open-file limit is below what http.max_connections needs: raise the hard limit \
             (ulimit -Hn, systemd LimitNOFILE=) or lower http.max_connections"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            needed,
            "cannot raise the open-file limit to what http.max_connections needs"
        ),
    }
}
