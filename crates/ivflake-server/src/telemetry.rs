//! Metrics: the process-wide Prometheus recorder (installed once, whoever
//! asks first) and the HTTP-level metrics the server adds to the library's.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds for every `*_seconds` metric: from half a
/// millisecond (a warm in-memory search) to 30 s (a cold wide batch at its deadline).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The recorder's handle. The first call installs the global recorder; later
/// calls (more servers in one process, tests) share it. If another recorder
/// was installed first, every metric goes to that one and `/metrics` renders
/// an empty page (the embedder exports metrics its own way).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set histogram buckets; using summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Sets one index's gauges, read at scrape time: what its header holds in
/// memory by part, the residual table's build time, and its preload.
pub fn index_gauges(name: &str, index: &ivflake::IvfIndex) {
    let m = index.memory();
    for (part, bytes) in [
        ("quantizer", m.quantizer_bytes),
        ("codec", m.codec_bytes),
        ("transform", m.transform_bytes),
        ("residual_table", m.residual_table_bytes),
        ("layout", m.layout_bytes),
    ] {
        metrics::gauge!("ivflake_index_memory_bytes", "index" => name.to_owned(), "part" => part).set(bytes as f64);
    }
    metrics::gauge!("ivflake_index_residual_table_build_seconds", "index" => name.to_owned())
        .set(m.residual_table_build_us as f64 / 1e6);
    let preload = index.preload_status();
    metrics::gauge!("ivflake_index_preload_bytes", "index" => name.to_owned(), "of" => "planned")
        .set(preload.bytes_planned as f64);
    metrics::gauge!("ivflake_index_preload_bytes", "index" => name.to_owned(), "of" => "loaded")
        .set(preload.load.bytes_loaded as f64);
}

/// The exposition text without the samples of indexes no longer served:
/// the exporter cannot drop a series, so a removed index's gauges and
/// counters would otherwise stay in every scrape with their last values.
/// Samples without an `index` label, and comments, pass unchanged.
pub fn served_only(text: &str, served: &std::collections::HashSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let index = line
            .split_once("index=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(name, _)| name);
        if line.starts_with('#') || index.is_none_or(|name| served.contains(name)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Counts and times every routed request by route template and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = {
        let _in_flight = InFlight::enter();
        next.run(request).await
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("ivflake_http_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("ivflake_http_request_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// Counts a request in `ivflake_http_requests_in_flight` until dropped, even
/// when the client goes away and the request's future is dropped midway.
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter() -> Self {
        let gauge = metrics::gauge!("ivflake_http_requests_in_flight");
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
