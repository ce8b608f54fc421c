//! [`FaultProxy`]: an HTTP proxy on loopback in front of a real
//! S3-protocol server (moto in the tests), which damages the answers to
//! GETs as its [`ProxyPlan`] says. The plan can change while tests run.
//! Where [`crate::HookedStore`] fails calls inside the process, this fails
//! the bytes on the wire, so object_store's own HTTP client, retries and
//! body handling are in the path.
//!
//! Bounded: it binds 127.0.0.1 only, forwards only to a loopback upstream,
//! buffers whole objects (test fixtures, a few MiB) and holds a stalled
//! answer for at most [`MAX_STALL`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use tokio::net::{TcpListener, TcpStream};

/// Longest a stalled answer is held before the proxy gives up on it; far
/// past any GET time-out a test sets, short enough that nothing hangs.
pub const MAX_STALL: Duration = Duration::from_secs(60);

/// What happens to the answer of a GET whose path contains the plan's
/// `path_contains`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Forward untouched.
    None,
    /// Answer 500 with an S3 `InternalError` body (object_store retries these).
    ServerError,
    /// Send nothing back until the client gives up (or [`MAX_STALL`]).
    Stall,
    /// Send the status, headers and half the body, then reset the connection.
    Reset,
    /// A well-formed answer whose body is only the first half of what was
    /// asked for (`Content-Length` says so too).
    Truncate,
    /// The full answer with one byte in the middle of the body flipped.
    FlipByte,
}

/// The fault to inject and which GETs get it; every other request passes.
#[derive(Debug, Clone)]
pub struct ProxyPlan {
    pub fault: ProxyFault,
    /// Only GETs whose request path contains this (e.g. an index's key);
    /// empty matches every GET.
    pub path_contains: String,
    /// Only ranged GETs (list reads), leaving whole-object reads intact.
    pub ranged_only: bool,
}

impl Default for ProxyPlan {
    fn default() -> Self {
        Self {
            fault: ProxyFault::None,
            path_contains: String::new(),
            ranged_only: false,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    plan: Mutex<ProxyPlan>,
    /// GETs the plan damaged, so a test knows its fault was in the path.
    faulted: AtomicUsize,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral 127.0.0.1 port forwarding to `upstream`
    /// (an `http://127.0.0.1:PORT` endpoint such as `AWS_ENDPOINT_URL`).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("the proxy forwards to http://127.0.0.1:PORT only, not {upstream}"));
        assert!(upstream.ip().is_loopback(), "the proxy forwards to loopback only");
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept(listener, upstream, shared.clone()));
        Self { addr, shared, task }
    }

    /// The proxy's endpoint, to use in place of the upstream's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan; requests already answered are not affected.
    pub fn set(&self, plan: ProxyPlan) {
        *self.shared.plan.lock().unwrap() = plan;
    }

    /// Injects `fault` into GETs whose path contains `path_contains`.
    pub fn inject(&self, fault: ProxyFault, path_contains: &str) {
        self.set(ProxyPlan {
            fault,
            path_contains: path_contains.to_string(),
            ranged_only: false,
        });
    }

    /// Back to forwarding everything untouched.
    pub fn clear(&self) {
        self.set(ProxyPlan::default());
    }

    /// GETs damaged so far.
    pub fn faulted(&self) -> usize {
        self.shared.faulted.load(Ordering::Relaxed)
    }

    /// An S3 store for `bucket` through this proxy (credentials and region
    /// from the environment, as `make test` sets them), retrying as
    /// [`proxied_retry`] says so faults fail fast.
    pub fn s3_store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::from_env()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_retry(proxied_retry())
            .build()
            .expect("an S3 store through the proxy");
        Arc::new(store)
    }
}

/// Retries of a store behind the proxy: object_store still retries (so its
/// retry path is exercised), but within a test's deadlines of seconds.
pub fn proxied_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
        },
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // A close is a reset (RST), which is what the Reset fault needs; the
        // proxy never closes a healthy keep-alive connection itself.
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(forward(request, upstream, &shared).await) }
            });
            // Errors here are the faults themselves, or clients giving up.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Sends `request` upstream over a fresh connection and damages the answer
/// as the plan says.
async fn forward(request: Request<Incoming>, upstream: SocketAddr, shared: &Shared) -> Response<ProxyBody> {
    let plan = shared.plan.lock().unwrap().clone();
    let applies = plan.fault != ProxyFault::None
        && request.method() == Method::GET
        && request.uri().path().contains(&plan.path_contains)
        && (!plan.ranged_only || request.headers().contains_key(hyper::header::RANGE));
    if applies {
        shared.faulted.fetch_add(1, Ordering::Relaxed);
        match plan.fault {
            ProxyFault::ServerError => {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                            <Message>injected by the test proxy</Message></Error>";
                let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return response;
            }
            ProxyFault::Stall => {
                tokio::time::sleep(MAX_STALL).await;
                return gateway_error("stalled answer given up");
            }
            _ => {}
        }
    }
    let answer = match send_upstream(request, upstream).await {
        Ok(answer) => answer,
        Err(e) => return gateway_error(&e),
    };
    let (mut parts, body) = answer;
    if !applies || !parts.status.is_success() || body.is_empty() {
        return Response::from_parts(parts, full(body));
    }
    let half = body.len() / 2;
    match plan.fault {
        ProxyFault::Reset => {
            // The head and half the body go out; then the body fails, and
            // hyper drops the connection (a reset, with linger 0).
            let head = futures::stream::iter([
                Ok(Frame::data(body.slice(..half))),
                Err(std::io::Error::other("injected connection reset")),
            ]);
            Response::from_parts(parts, BodyExt::boxed(StreamBody::new(head)))
        }
        ProxyFault::Truncate => {
            parts.headers.insert(hyper::header::CONTENT_LENGTH, half.into());
            Response::from_parts(parts, full(body.slice(..half)))
        }
        ProxyFault::FlipByte => {
            let mut damaged = body.to_vec();
            damaged[half] ^= 0xFF;
            Response::from_parts(parts, full(Bytes::from(damaged)))
        }
        ProxyFault::None | ProxyFault::ServerError | ProxyFault::Stall => Response::from_parts(parts, full(body)),
    }
}

fn gateway_error(message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(message.to_string())));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// One request to the upstream on its own connection; the whole answer.
async fn send_upstream(
    request: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let tcp = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts, body))
}
