//! The server under load on loopback: 1,000 concurrent clients, overload past
//! the admission limit, reload while searches run (local directory and the
//! S3-protocol server), and a shutdown that drains searches in flight.
//! Every loop is bounded in count, and every wait in time.
//!
//! Alone in its test binary, not in `it/`: its 1,000 clients would starve
//! other tests' deadlines and time-outs, and it reads process-wide state
//! (the searches-in-flight gauge, the process's resident memory).

#[path = "it/common.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use ivflake::{IdFilterSpec, IndexLocation};
use ivflake_server::{IndexConfig, Server};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

const N: usize = 4000;
const K: usize = 10;
const NPROBE: usize = 8;
/// Distinct queries the clients cycle through.
const QUERIES: usize = 50;

/// Run these one at a time: the 1,000-client test's CPU load would starve
/// another's deadlines, and the shutdown test reads a process-wide gauge.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Expected (ids, distance bits) of each single query, from the library.
async fn expected_rows(path: &str, q: &[f32]) -> Vec<(Vec<i64>, Vec<u32>)> {
    let all = library_results(path, q, K, NPROBE, IdFilterSpec::All).await;
    let (ids, bits) = library_bits(&all);
    (0..q.len() / D)
        .map(|i| (ids[i * K..(i + 1) * K].to_vec(), bits[i * K..(i + 1) * K].to_vec()))
        .collect()
}

/// One search of query `i`: status, and the body when it is JSON.
async fn search_one(client: &reqwest::Client, url: &str, q: &[f32], i: usize) -> (u16, Value, Duration) {
    let started = Instant::now();
    match client.post(url).json(&search_body(q, i..i + 1, K, NPROBE)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let mut body: Value = r.json().await.unwrap_or(Value::Null);
            if retry_after {
                body["retry_after_header"] = Value::Bool(true);
            }
            (status, body, started.elapsed())
        }
        Err(e) => (0, Value::String(e.to_string()), started.elapsed()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients() {
    let _serial = SERIAL.lock().await;
    const CLIENTS: usize = 1000;
    const REQUESTS_EACH: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx.faiss");
    std::fs::write(&path, index_bytes(1, N)).unwrap();
    let path = path.to_string_lossy().to_string();
    let mut config = config();
    config.indexes.insert("idx".into(), IndexConfig::new(&path));
    // Every client's query must be admitted: this test is about load, not overload.
    config.limits.max_queries_in_flight = 2 * CLIENTS;
    let server = TestServer::start(config).await;
    let url = server.url("/v1/indexes/idx/search");
    let q = queries(QUERIES);
    let expected = Arc::new(expected_rows(&path, &q).await);
    let q = Arc::new(q);

    let client = client();
    assert_eq!(search_one(&client, &url, &q, 0).await.0, 200);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let wrong = Arc::new(AtomicUsize::new(0));
    let tasks = (0..CLIENTS).map(|c| {
        let (client, url, q, expected, wrong) =
            (client.clone(), url.clone(), q.clone(), expected.clone(), wrong.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::with_capacity(REQUESTS_EACH);
            for r in 0..REQUESTS_EACH {
                let i = (c * REQUESTS_EACH + r) % QUERIES;
                let (status, body, _) = search_one(&client, &url, &q, i).await;
                if status == 200 && response_results(&body) != expected[i] {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                statuses.push(status);
            }
            statuses
        })
    });
    let outcomes = tokio::time::timeout(Duration::from_secs(90), join_all(tasks))
        .await
        .expect("3,000 requests finish within 90 s: no deadlock");
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = outcomes.into_iter().flat_map(|o| o.expect("client task")).collect();
    let errors = statuses.iter().filter(|&&s| s != 200).count();
    let growth = rss_bytes().saturating_sub(rss_before);
    println!(
        "{} requests from {CLIENTS} clients in {elapsed:?}: {errors} errors, RSS grew {} MiB",
        statuses.len(),
        growth >> 20
    );
    assert_eq!(statuses.len(), CLIENTS * REQUESTS_EACH);
    assert_eq!(
        errors,
        0,
        "statuses other than 200: {:?}",
        statuses.iter().filter(|&&s| s != 200).take(10).collect::<Vec<_>>()
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "every response equals the library's results"
    );
    // 1,000 connections' buffers and a few thousand responses: well under 300 MiB.
    assert!(growth < 300 << 20, "RSS grew by {} MiB", growth >> 20);
    server.stop().await;
}

/// A server whose one index, `slow`, answers every list read after `delay`,
/// with no cache, so every search holds its admission for at least `delay`.
async fn slow_server(delay: Duration, max_queries_in_flight: usize) -> (TestServer, tempfile::TempDir, String) {
    slow_server_with(delay, max_queries_in_flight, |_| {}).await
}

async fn slow_server_with(
    delay: Duration,
    max_queries_in_flight: usize,
    tune: impl FnOnce(&mut ivflake_server::ServerConfig),
) -> (TestServer, tempfile::TempDir, String) {
    // Reads starting past byte 0 are list reads; the header read starts at 0.
    server_over(
        |memory| Arc::new(slow_store(memory, 1, delay)),
        max_queries_in_flight,
        tune,
    )
    .await
}

/// A server whose one index, `slow`, is read through the store `wrap` makes
/// of an in-memory copy, with no cache; also returns a local copy's path.
async fn server_over(
    wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    max_queries_in_flight: usize,
    tune: impl FnOnce(&mut ivflake_server::ServerConfig),
) -> (TestServer, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx.faiss");
    let bytes = index_bytes(1, N);
    std::fs::write(&path, &bytes).unwrap();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    memory
        .put(&object_store::path::Path::from("idx.faiss"), PutPayload::from(bytes))
        .await
        .unwrap();
    let store = wrap(memory);
    let mut config = config();
    config.cache.memory_bytes = 0;
    config.limits.max_queries_in_flight = max_queries_in_flight;
    config.limits.max_batch = max_queries_in_flight;
    tune(&mut config);
    let server = Server::bind(config).await.unwrap();
    let uri = "memory://slow/idx.faiss";
    server
        .add_index(
            "slow",
            IndexLocation::new(store, "idx.faiss", uri),
            IndexConfig::new(uri),
        )
        .await
        .unwrap();
    (TestServer::run(server).await, dir, path.to_string_lossy().to_string())
}

/// A server over a store whose list GETs wait at `gate` until it opens.
async fn gated_server(
    max_queries_in_flight: usize,
    tune: impl FnOnce(&mut ivflake_server::ServerConfig),
) -> (TestServer, tempfile::TempDir, String, Arc<GatedStore>) {
    let mut gate = None;
    let (server, dir, path) = server_over(
        |memory| {
            let g = Arc::new(gated_store(memory, 1));
            gate = Some(g.clone());
            g
        },
        max_queries_in_flight,
        tune,
    )
    .await;
    (server, dir, path, gate.expect("the store was wrapped"))
}

/// Sends `n` searches at once on their own tasks; `answered` counts the
/// 503s as they arrive. Returns the handle of their outcomes, in order.
fn send_all(
    server: &TestServer,
    n: usize,
    refused: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<(u16, Value, Duration)>> {
    let url = server.url("/v1/indexes/slow/search");
    let q = Arc::new(queries(QUERIES));
    let client = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, url, q, refused) = (client.clone(), url.clone(), q.clone(), refused.clone());
            tokio::spawn(async move {
                let outcome = search_one(&client, &url, &q, i % QUERIES).await;
                if outcome.0 == 503 {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                outcome
            })
        })
        .collect();
    tokio::spawn(async move {
        join_all(tasks)
            .await
            .into_iter()
            .map(|t| t.expect("client task"))
            .collect()
    })
}

/// Waits until `counter` reaches `n` (a liveness guard bounds the wait).
async fn reaches(counter: &AtomicUsize, n: usize, what: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while counter.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: {} of {n} after 60 s", counter.load(Ordering::SeqCst)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_admitted_requests_succeed() {
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 4;
    const CONCURRENT: usize = 40;
    let (server, _dir, path, gate) = gated_server(LIMIT, |_| {}).await;
    let q = queries(QUERIES);
    let expected = expected_rows(&path, &q).await;

    // The admitted searches wait at the gate, holding their admission, so
    // every other request finds the limit reached: it is refused at once,
    // while the gate is still shut.
    let refused = Arc::new(AtomicUsize::new(0));
    let outcomes = send_all(&server, CONCURRENT, &refused);
    reaches(&refused, CONCURRENT - LIMIT, "refused while the admitted wait").await;
    assert!(gate.waiting() >= 1, "the admitted searches are still waiting");
    gate.open();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), outcomes)
        .await
        .expect("bounded")
        .unwrap();
    let mut admitted = 0;
    for (i, (status, body, _)) in outcomes.iter().enumerate() {
        match status {
            200 => {
                admitted += 1;
                assert_eq!(
                    response_results(body),
                    expected[i % QUERIES],
                    "admitted request {i} is right"
                );
            }
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                assert_eq!(body["retry_after_header"], true, "503 carries Retry-After");
            }
            other => panic!("request {i}: unexpected status {other}: {body}"),
        }
    }
    assert_eq!(admitted, LIMIT, "exactly the admission limit was admitted");
    assert_eq!(refused.load(Ordering::SeqCst), CONCURRENT - LIMIT);

    // Capacity comes back once the admitted searches finish.
    let client = client();
    let (status, body, _) = search_one(&client, &server.url("/v1/indexes/slow/search"), &q, 0).await;
    assert_eq!(status, 200, "{body}");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ivflake_admission_rejected_total"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_searches_in_flight() {
    let _serial = SERIAL.lock().await;
    let (server, _dir, path) = slow_server(Duration::from_millis(600), 64).await;
    let url = server.url("/v1/indexes/slow/search");
    let q = queries(QUERIES);
    let expected = expected_rows(&path, &q).await;
    let client = client();
    let in_flight = {
        let (client, url, q) = (client.clone(), url.clone(), q.clone());
        tokio::spawn(async move { search_one(&client, &url, &q, 3).await })
    };
    // Stop only once the search is running: the library's gauge says so.
    let metrics_url = server.url("/metrics");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
            if gauge(&text, "ivflake_searches_in_flight") >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the search is in flight within 20 s");
    let addr = server.addr;
    server.stop().await;
    let (status, body, _) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the search in flight finished: {body}");
    assert_eq!(response_results(&body), expected[3]);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// Clients search while the index object is replaced and a reload is asked
/// for. Every response must be a 200 whose results are exactly one version's.
async fn reload_under_load(
    server: &TestServer,
    expected_a: &[(Vec<i64>, Vec<u32>)],
    expected_b: &[(Vec<i64>, Vec<u32>)],
    clients: usize,
    before_each: usize,
    replace: impl std::future::Future<Output = ()>,
) {
    // Each client searches until the reload is done and it has made a few
    // more requests, at most MAX_EACH in all.
    const AFTER_EACH: usize = 3;
    const MAX_EACH: usize = 1_000;
    let url = server.url("/v1/indexes/idx/search");
    let q = Arc::new(queries(QUERIES));
    let client = client();
    let done = Arc::new(AtomicUsize::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, q, done, reloaded) =
                (client.clone(), url.clone(), q.clone(), done.clone(), reloaded.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut after = 0;
                for r in 0..MAX_EACH {
                    if reloaded.load(Ordering::Acquire) {
                        after += 1;
                        if after > AFTER_EACH {
                            break;
                        }
                    }
                    let i = (c * 7 + r) % QUERIES;
                    let (status, body, _) = search_one(&client, &url, &q, i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    seen.push((i, status, body));
                }
                seen
            })
        })
        .collect();

    // Replace the object once every client has had a few answers, then ask for a reload.
    tokio::time::timeout(Duration::from_secs(60), async {
        while done.load(Ordering::Relaxed) < clients * before_each {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("every client has its first answers within 60 s");
    replace.await;
    let r = client.post(server.url("/v1/indexes/idx/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200, "reload: {}", r.text().await.unwrap_or_default());
    reloaded.store(true, Ordering::Release);

    let outcomes = tokio::time::timeout(Duration::from_secs(90), join_all(tasks))
        .await
        .expect("bounded: no deadlock");
    let mut per_generation = [0usize; 3];
    for (i, status, body) in outcomes.into_iter().flat_map(|o| o.expect("client task")) {
        assert_eq!(status, 200, "query {i}: {body}");
        let generation = body["generation"].as_u64().unwrap() as usize;
        let got = response_results(&body);
        match generation {
            1 => assert_eq!(got, expected_a[i], "query {i}: a generation-1 response is version A's"),
            2 => assert_eq!(got, expected_b[i], "query {i}: a generation-2 response is version B's"),
            g => panic!("unexpected generation {g}"),
        }
        per_generation[generation] += 1;
    }
    println!("responses by version: A {}, B {}", per_generation[1], per_generation[2]);
    assert!(per_generation[1] > 0 && per_generation[2] > 0, "{per_generation:?}");
    // After the reload, new searches answer from B.
    let (_, body, _) = search_one(&client, &url, &q, 0).await;
    assert_eq!(body["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_local_directory() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (index_bytes(1, N), index_bytes(5, N));
    let (path_a, path_b, served) = (
        dir.path().join("a.faiss"),
        dir.path().join("b.faiss"),
        dir.path().join("idx.faiss"),
    );
    std::fs::write(&path_a, &a).unwrap();
    std::fs::write(&path_b, &b).unwrap();
    std::fs::write(&served, &a).unwrap();
    let q = queries(QUERIES);
    let expected_a = expected_rows(&path_a.to_string_lossy(), &q).await;
    let expected_b = expected_rows(&path_b.to_string_lossy(), &q).await;
    assert_ne!(expected_a, expected_b, "the two versions answer differently");

    let mut config = config();
    config
        .indexes
        .insert("idx".into(), IndexConfig::new(served.to_string_lossy()));
    // No cache: searches still running on A after the swap read the store,
    // find it changed, and reload themselves.
    config.cache.memory_bytes = 0;
    let server = TestServer::start(config).await;
    reload_under_load(&server, &expected_a, &expected_b, 50, 10, async {
        replace_file(&served, &b);
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_s3() {
    let _serial = SERIAL.lock().await;
    let (bucket, store) = s3_store();
    let key = object_store::path::Path::from(unique_key("server-tests", "reload").as_str());
    let (a, b) = (index_bytes(1, N), index_bytes(5, N));
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.faiss"), dir.path().join("b.faiss"));
    std::fs::write(&path_a, &a).unwrap();
    std::fs::write(&path_b, &b).unwrap();
    let q = queries(QUERIES);
    let expected_a = expected_rows(&path_a.to_string_lossy(), &q).await;
    let expected_b = expected_rows(&path_b.to_string_lossy(), &q).await;
    store.put(&key, PutPayload::from(a)).await.unwrap();

    let mut config = config();
    config
        .indexes
        .insert("idx".into(), IndexConfig::new(format!("s3://{bucket}/{key}")));
    let server = TestServer::start(config).await;
    reload_under_load(&server, &expected_a, &expected_b, 20, 5, async {
        store.put(&key, PutPayload::from(b)).await.unwrap();
    })
    .await;
    server.stop().await;
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_gets_504() {
    let _serial = SERIAL.lock().await;
    // The store stalls far longer than the bound below: only the deadline can answer in time.
    let (server, _dir, _) = slow_server(Duration::from_secs(60), 64).await;
    let q = queries(1);
    let mut body = search_body(&q, 0..1, K, NPROBE);
    body["timeout_ms"] = serde_json::json!(200);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        client().post(server.url("/v1/indexes/slow/search")).json(&body).send(),
    )
    .await
    .expect("answered at its deadline, not after the store's 60 s stall")
    .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "deadline_exceeded", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_request_timeout_gets_a_json_504() {
    let _serial = SERIAL.lock().await;
    // A warm-up has no deadline of its own: only request_timeout_ms stops it.
    let (server, _dir, _) = slow_server_with(Duration::from_secs(60), 64, |c| {
        c.limits.max_timeout_ms = 300;
        c.defaults.timeout_ms = 300;
        c.request_timeout_ms = 300;
    })
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        client()
            .post(server.url("/v1/indexes/slow/warm"))
            .json(&serde_json::json!({"largest": 4}))
            .send(),
    )
    .await
    .expect("answered at the request timeout, not after the store's 60 s stall")
    .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_request_limit_are_refused_once_their_body_has_arrived() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 2;
    const SENT: usize = 10;
    let (server, _dir, _, gate) = gated_server(64, |c| {
        c.limits.max_requests_in_flight = LIMIT;
        c.http.body_stall_timeout_ms = 500;
    })
    .await;
    // LIMIT searches wait at the gate; the others are refused meanwhile.
    let refused = Arc::new(AtomicUsize::new(0));
    let outcomes = send_all(&server, SENT, &refused);
    reaches(&refused, SENT - LIMIT, "refused while the admitted wait").await;

    // A request whose body never comes (only its head, announcing 4 KiB) is
    // not counted while it is owed: it gets the body time-out, not 503.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /v1/indexes/slow/search HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut response))
        .await
        .expect("answered without the body")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]).to_string();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    assert!(gate.waiting() > 0, "the admitted requests were still running");

    gate.open();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), outcomes)
        .await
        .expect("bounded")
        .unwrap();
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), LIMIT, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        SENT - LIMIT,
        "{statuses:?}"
    );
    for (_, body, _) in outcomes.iter().filter(|o| o.0 == 503) {
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        assert_eq!(body["retry_after_header"], true);
        assert!(
            body["error"]["message"].as_str().unwrap().contains("requests"),
            "{body}"
        );
    }
    // The permits come back.
    let (status, body, _) = search_one(&client(), &server.url("/v1/indexes/slow/search"), &queries(1), 0).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}
