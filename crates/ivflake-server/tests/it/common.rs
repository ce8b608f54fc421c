//! Shared support for the server tests: small generated indexes, a server on
//! a loopback port, and an HTTP client. Store wrappers come from `ivflake_testkit`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ivflake::{IdFilterSpec, IvfIndex, Metric, SearchParams};
use ivflake_server::IndexConfig;
use ivflake_server::{Server, ServerConfig};
use object_store::ObjectStore;
use reqwest::StatusCode;
use serde_json::Value;

// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use ivflake_testkit::{clustered, gated_store, moto, slow_store, unique_key, GatedStore, SlowStore};

pub const D: usize = 16;

/// A small IVF index (d = 16, 32 lists) over data drawn with `seed`, serialized by Faiss.
pub fn index_bytes(seed: u64, n: usize) -> Vec<u8> {
    let data = clustered(n, D, seed);
    let mut index = ivflake_faiss::Index::factory(D, "IVF32,Flat", Metric::L2).expect("factory");
    index.train(&data).expect("train");
    index.add(&data).expect("add");
    index.to_bytes().expect("serialize")
}

/// Query vectors near the data of any seed's clusters.
pub fn queries(n: usize) -> Vec<f32> {
    clustered(n, D, 7)
}

/// Writes `bytes` to `path` atomically (a temporary file, then a rename), as
/// a deployment replacing an index would.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write index");
    std::fs::rename(&tmp, path).expect("rename index");
}

/// A config for tests: an ephemeral loopback port, two compute threads.
pub fn config() -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        compute_threads: 2,
        shutdown_grace_ms: 5_000,
        ..ServerConfig::default()
    }
}

/// A server running on its own task until stopped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ivflake_server::ServerError>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        Self::run(Server::bind(config).await.expect("server binds")).await
    }

    pub async fn run(server: Server) -> Self {
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits (bounded) for the server to drain and stop.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the server stops within 20 s")
                .expect("server task")
                .expect("server ran without error");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// What the library returns for these queries, the reference every response is checked against.
pub async fn library_results(
    path: &str,
    queries: &[f32],
    k: usize,
    nprobe: usize,
    filter: IdFilterSpec,
) -> ivflake::SearchResults {
    let index = IvfIndex::open(path).await.expect("library opens the index");
    let params = SearchParams {
        filter,
        ..SearchParams::new(k, nprobe)
    };
    index.search_with(queries, &params).await.expect("library search")
}

/// The ids and distance bits of a search response, row-major.
pub fn response_results(body: &Value) -> (Vec<i64>, Vec<u32>) {
    let mut ids = Vec::new();
    let mut dist = Vec::new();
    for r in body["results"].as_array().expect("results") {
        ids.extend(r["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()));
        dist.extend(
            r["distances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v.as_f64().unwrap() as f32).to_bits()),
        );
    }
    (ids, dist)
}

pub fn library_bits(r: &ivflake::SearchResults) -> (Vec<i64>, Vec<u32>) {
    (r.ids.clone(), r.distances.iter().map(|f| f.to_bits()).collect())
}

/// The JSON body of a search for `rows` of `queries`.
pub fn search_body(queries: &[f32], rows: Range<usize>, k: usize, nprobe: usize) -> Value {
    let vectors: Vec<Vec<f32>> = rows.map(|i| queries[i * D..(i + 1) * D].to_vec()).collect();
    serde_json::json!({ "vectors": vectors, "k": k, "nprobe": nprobe })
}

/// Resident memory of this process in bytes (the server runs in it).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The loopback S3 server `make test` started (moto): its bucket, and a store for it.
pub fn s3_store() -> (String, Arc<dyn ObjectStore>) {
    let s3 = moto();
    let store = s3.store();
    (s3.bucket, store)
}

/// Vectors in the indexes the API tests serve.
pub const N: usize = 4000;

/// A server over one local index named `idx`, after `tune` adjusts the config.
pub async fn local(tune: impl FnOnce(&mut ServerConfig, &std::path::Path)) -> (TestServer, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idx.faiss");
    std::fs::write(&path, index_bytes(1, N)).expect("write index");
    let path = path.to_string_lossy().to_string();
    let mut config = config();
    config.indexes.insert("idx".into(), IndexConfig::new(&path));
    tune(&mut config, dir.path());
    (TestServer::start(config).await, dir, path)
}

/// GETs `url` and parses the body as JSON (any status).
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("a JSON body")
}

pub async fn post_json(url: &str, body: &Value) -> (StatusCode, Value) {
    let r = client().post(url).json(body).send().await.expect("request");
    let status = r.status();
    let answer = r.json().await.unwrap_or(Value::Null);
    if status.as_u16() >= 400 {
        assert_quiet(&answer);
    }
    (status, answer)
}

/// Every error body the suite sees (through `post_json`) keeps the
/// server's internals out: no store endpoint, no temporary directory, no
/// C++ source. A URI the client sent may come back; these never do.
pub fn assert_quiet(error: &Value) {
    let text = error.to_string();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let temp = std::env::temp_dir().display().to_string();
    for leak in [endpoint.as_str(), ".cpp", ".h:", "169.254.169.254"] {
        assert!(
            leak.is_empty() || !text.contains(leak),
            "{leak:?} in an error body: {text}"
        );
    }
    let message = error["error"]["message"].as_str().unwrap_or("");
    assert!(
        !message.contains(&temp) || error["error"]["field"] == "uri",
        "a server path in: {text}"
    );
}

/// Sum of the samples of `name` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Faiss's own answer, searching the file at `path` fully in memory with
/// `IndexIVF::search` and the filter's `IDSelector`: (ids, distance bits).
pub fn faiss_results(
    path: &str,
    queries: &[f32],
    k: usize,
    nprobe: usize,
    filter: &IdFilterSpec,
) -> (Vec<i64>, Vec<u32>) {
    let bytes = std::fs::read(path).expect("read the index file");
    let reference = ivflake_faiss::read_index(&bytes).expect("Faiss reads the index");
    let selector = match filter {
        IdFilterSpec::All => ivflake_faiss::IdFilter::All,
        IdFilterSpec::Allow(ids) => ivflake_faiss::IdFilter::Allow(ids),
        IdFilterSpec::Deny(ids) => ivflake_faiss::IdFilter::Deny(ids),
        IdFilterSpec::Range { start, end } => ivflake_faiss::IdFilter::Range(*start, *end),
    };
    let n = reference
        .search_filtered(queries, k, nprobe, selector)
        .expect("Faiss search");
    (n.labels, n.distances.iter().map(|d| d.to_bits()).collect())
}
