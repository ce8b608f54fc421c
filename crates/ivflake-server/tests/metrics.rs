//! Every metric docs/ARCHITECTURE.md names, scraped from `/metrics` after the
//! event that moves it. One test, alone in its binary: the recorder is
//! process-wide, so every change it sees is this test's own doing.

#[path = "it/common.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ivflake::IndexLocation;
use ivflake_server::{IndexConfig, PreloadSetting, Server, ServerConfig};
use ivflake_testkit::{damaging_store, faulty_store, write_sidecar, BodyFault, Fault};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The metric names the Metrics section of docs/ARCHITECTURE.md lists, with
/// `{a,b}` alternatives expanded.
fn documented() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(path).expect("docs/ARCHITECTURE.md");
    let section = doc.split("## Metrics").nth(1).expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for quoted in section.split('`').skip(1).step_by(2) {
        let Some(rest) = quoted.strip_prefix("ivflake_") else {
            continue;
        };
        // `ivflake_cache_{hits,misses}_total{tier=...}`: alternatives, then labels.
        let (stem, rest) = match rest.split_once("_{") {
            Some((stem, alts)) if alts.contains(',') => (Some(stem), alts),
            _ => (None, rest),
        };
        match stem {
            Some(stem) => {
                let (alternatives, tail) = rest.split_once('}').expect("closing brace");
                let suffix: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                for alt in alternatives.split(',') {
                    names.insert(format!("ivflake_{stem}_{alt}{suffix}"));
                }
            }
            None => {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                names.insert(format!("ivflake_{name}"));
            }
        }
    }
    names
}

async fn scrape(server: &TestServer) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Records what each event moved, so the end can check every documented name was seen move.
struct Checks {
    seen: BTreeSet<String>,
}

impl Checks {
    /// Asserts `name` (with `labels`) grew from `before` to `after`.
    fn moved(&mut self, before: &str, after: &str, name: &str, labels: &[&str], event: &str) {
        let (b, a) = (metric(before, name, labels), metric(after, name, labels));
        assert!(a > b, "{name} {labels:?} did not move on {event}: {b} -> {a}\n{after}");
        self.seen.insert(name.trim_end_matches("_count").to_string());
    }

    /// Asserts a gauge `name` (with `labels`) is at least `at_least` now.
    /// A gauge that is not exported fails, whatever `at_least` is.
    fn gauge(&mut self, text: &str, name: &str, labels: &[&str], at_least: f64, event: &str) {
        let exported = text.lines().any(|l| {
            !l.starts_with('#')
                && l.starts_with(name)
                && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
                && labels.iter().all(|lab| l.contains(lab))
        });
        assert!(exported, "{name} {labels:?} is not exported on {event}\n{text}");
        let v = metric(text, name, labels);
        assert!(
            v >= at_least,
            "{name} {labels:?} is {v} on {event}, expected >= {at_least}\n{text}"
        );
        self.seen.insert(name.to_string());
    }
}

async fn search(server: &TestServer, index: &str, rows: std::ops::Range<usize>, nprobe: usize) -> u16 {
    let q = queries(rows.end);
    let (status, _) = post_json(
        &server.url(&format!("/v1/indexes/{index}/search")),
        &search_body(&q, rows, 5, nprobe),
    )
    .await;
    status.as_u16()
}

async fn memory_with(bytes: Vec<u8>) -> Arc<dyn ObjectStore> {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    memory
        .put(&object_store::path::Path::from("idx.faiss"), PutPayload::from(bytes))
        .await
        .unwrap();
    memory
}

async fn add(server: &Server, name: &str, store: Arc<dyn ObjectStore>) {
    let uri = format!("memory://{name}/idx.faiss");
    server
        .add_index(
            name,
            IndexLocation::new(store, "idx.faiss", &uri),
            IndexConfig::new(&uri),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_moves_with_its_event() {
    let documented = documented();
    assert!(documented.len() >= 14, "{documented:?}");
    let mut checks = Checks { seen: BTreeSet::new() };

    // Server A: no memory cache (every search reads the store), hedging on,
    // a short GET time limit; an index per fault.
    let mut a = config();
    a.cache.memory_bytes = 0;
    a.fetch.hedge = true;
    a.fetch.get_timeout_ms = 300;
    let server = Server::bind(a).await.unwrap();
    let bytes = index_bytes(1, N);
    add(&server, "plain", memory_with(bytes.clone()).await).await;
    let stall = Arc::new(faulty_store(memory_with(bytes.clone()).await, 1));
    add(&server, "stall", stall.clone()).await;
    let fail = Arc::new(faulty_store(memory_with(bytes.clone()).await, 1));
    add(&server, "fail", fail.clone()).await;
    let slow: Arc<dyn ObjectStore> = Arc::new(slow_store(
        memory_with(bytes.clone()).await,
        1,
        Duration::from_millis(150),
    ));
    add(&server, "slow", slow).await;
    let gate = Arc::new(gated_store(memory_with(bytes.clone()).await, 1));
    add(&server, "gated", gate.clone()).await;
    // An index with a checksum sidecar, whose list bodies get damaged.
    let verified_memory = memory_with(bytes.clone()).await;
    write_sidecar(IndexLocation::new(
        verified_memory.clone(),
        "idx.faiss",
        "memory://verified/idx.faiss",
    ))
    .await;
    let damaging = Arc::new(damaging_store(verified_memory, 1));
    add(&server, "verified", damaging.clone()).await;
    let server = TestServer::run(server).await;

    // Each index's search counters are there, at 0, before any search.
    let first = scrape(&server).await;
    for index in ["plain", "stall", "fail", "slow", "gated", "verified"] {
        for outcome in ["ok", "error"] {
            let line = format!("ivflake_searches_total{{index=\"{index}\",outcome=\"{outcome}\"}} 0");
            assert!(
                first.lines().any(|l| l == line),
                "no {line:?} before the first search:\n{first}"
            );
        }
    }

    // A GET past its time limit is re-sent (the first search: no hedge budget yet).
    stall.set(Fault::StallFirstPerRange);
    let before = scrape(&server).await;
    assert_eq!(search(&server, "stall", 0..1, 4).await, 200);
    let after = scrape(&server).await;
    checks.moved(&before, &after, "ivflake_store_retries_total", &[], "a re-sent GET");

    // Plain searches: stages timed, searches counted, GETs and bytes, memory misses.
    let before = after;
    for i in 0..25 {
        assert_eq!(search(&server, "plain", i..i + 1, 8).await, 200);
    }
    let after = scrape(&server).await;
    for stage in ["quantizer", "fetch", "scan", "total"] {
        let label = format!("stage=\"{stage}\"");
        checks.moved(&before, &after, "ivflake_search_seconds_count", &[&label], "a search");
    }
    checks.moved(
        &before,
        &after,
        "ivflake_searches_total",
        &["index=\"plain\"", "outcome=\"ok\""],
        "a search",
    );
    checks.moved(
        &before,
        &after,
        "ivflake_search_seconds_count",
        &["index=\"plain\"", "stage=\"total\""],
        "a search of that index",
    );
    checks.moved(&before, &after, "ivflake_store_gets_total", &[], "a cold search");
    checks.moved(&before, &after, "ivflake_store_bytes_total", &[], "a cold search");
    // Each search's cost, by index: its GETs, their bytes, their price.
    for name in [
        "ivflake_search_store_requests_total",
        "ivflake_search_store_bytes_total",
        "ivflake_search_cost_nanodollars_total",
    ] {
        checks.moved(&before, &after, name, &["index=\"plain\""], "a cold search");
    }
    checks.moved(
        &before,
        &after,
        "ivflake_cache_misses_total",
        &["tier=\"memory\""],
        "a cold search",
    );

    // Slow GETs, with the budget the plain searches earned: hedged.
    let before = after;
    assert_eq!(search(&server, "slow", 0..4, 16).await, 200);
    let after = scrape(&server).await;
    checks.moved(&before, &after, "ivflake_store_hedged_gets_total", &[], "slow GETs");

    // A failing store: an error, and a failed search.
    fail.set(Fault::FailAll);
    let before = after;
    // A store in trouble is a 503 (store_unavailable).
    assert_eq!(search(&server, "fail", 0..1, 4).await, 503);
    let after = scrape(&server).await;
    checks.moved(&before, &after, "ivflake_store_errors_total", &[], "a failed GET");
    checks.moved(
        &before,
        &after,
        "ivflake_searches_total",
        &["outcome=\"error\""],
        "a failed search",
    );

    // A damaged list under a checksum sidecar.
    damaging.set(BodyFault::FlipMiddleByte);
    let before = after;
    assert_ne!(search(&server, "verified", 0..1, 4).await, 200);
    let after = scrape(&server).await;
    checks.moved(
        &before,
        &after,
        "ivflake_checksum_failures_total",
        &[],
        "a damaged list",
    );

    // A search held at the gate: both in-flight gauges count it while it waits.
    let held = tokio::spawn({
        let url = server.url("/v1/indexes/gated/search");
        async move { post_json(&url, &search_body(&queries(1), 0..1, 5, 4)).await }
    });
    let text = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let text = scrape(&server).await;
            if metric(&text, "ivflake_fetches_in_flight", &[]) >= 1.0
                && metric(&text, "ivflake_searches_in_flight", &[]) >= 1.0
            {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the held search shows in the in-flight gauges");
    checks.gauge(&text, "ivflake_fetches_in_flight", &[], 1.0, "a held GET");
    checks.gauge(&text, "ivflake_searches_in_flight", &[], 1.0, "a held search");
    gate.open();
    assert_eq!(held.await.unwrap().0, 200);

    // Server B: a small memory tier over a small disk tier, both overflowing.
    let disk = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx.faiss");
    std::fs::write(&path, &bytes).unwrap();
    let mut b: ServerConfig = config();
    b.cache.memory_bytes = 16 * 1024;
    b.cache.disk_dir = Some(disk.path().to_path_buf());
    b.cache.disk_bytes = 64 * 1024;
    b.indexes
        .insert("cached".into(), IndexConfig::new(path.to_string_lossy()));
    let server_b = TestServer::start(b).await;
    let status_url = server_b.url("/v1/indexes/cached");
    let before = scrape(&server_b).await;
    // Every list, twice: misses then hits on disk (the memory tier holds one
    // or two lists), evictions in both tiers.
    for _ in 0..2 {
        assert_eq!(search(&server_b, "cached", 0..4, 32).await, 200);
        // The status runs the caches' pending maintenance (evictions) and
        // reports residency; wait until the disk tier holds something.
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let s: serde_json::Value = get_json(&status_url).await;
                if s["residency"]["lists_on_disk"].as_u64().unwrap_or(0) > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("lists reach the disk tier");
    }
    // The tiers apply their budgets in moka's maintenance, which reads and
    // writes run from time to time: keep searching until the disk tier's
    // eviction counter moves (a liveness guard bounds the wait).
    tokio::time::timeout(Duration::from_secs(60), async {
        for round in 0usize.. {
            let rows = (round % 8) * 4..(round % 8) * 4 + 4;
            assert_eq!(search(&server_b, "cached", rows, 32).await, 200);
            let now = scrape(&server_b).await;
            if metric(&now, "ivflake_cache_evictions_total", &["tier=\"disk\""])
                > metric(&before, "ivflake_cache_evictions_total", &["tier=\"disk\""])
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the full disk tier evicts");
    // One list, twice in a row: the second is a memory hit.
    assert_eq!(search(&server_b, "cached", 0..1, 1).await, 200);
    assert_eq!(search(&server_b, "cached", 0..1, 1).await, 200);
    let _ = client().get(&status_url).send().await.unwrap();
    let after = scrape(&server_b).await;
    checks.moved(
        &before,
        &after,
        "ivflake_cache_hits_total",
        &["tier=\"memory\""],
        "a repeated search",
    );
    checks.moved(
        &before,
        &after,
        "ivflake_cache_misses_total",
        &["tier=\"disk\""],
        "a cold list",
    );
    checks.moved(
        &before,
        &after,
        "ivflake_cache_hits_total",
        &["tier=\"disk\""],
        "a list evicted from memory",
    );
    checks.moved(
        &before,
        &after,
        "ivflake_cache_evictions_total",
        &["tier=\"memory\""],
        "a full memory tier",
    );
    checks.moved(
        &before,
        &after,
        "ivflake_cache_evictions_total",
        &["tier=\"disk\""],
        "a full disk tier",
    );
    checks.gauge(
        &after,
        "ivflake_cache_resident_bytes",
        &["tier=\"memory\""],
        1.0,
        "lists in memory",
    );
    checks.gauge(
        &after,
        "ivflake_cache_resident_bytes",
        &["tier=\"disk\""],
        1.0,
        "lists on disk",
    );

    // An index loaded whole in the background after open: its header's parts
    // and its preload are gauges, set at scrape time.
    let server_c = Server::bind(config()).await.unwrap();
    let uri = "memory://preloaded/idx.faiss";
    server_c
        .add_index(
            "preloaded",
            IndexLocation::new(memory_with(index_bytes(3, N)).await, "idx.faiss", uri),
            IndexConfig {
                preload: Some(PreloadSetting::Auto),
                ..IndexConfig::new(uri)
            },
        )
        .await
        .unwrap();
    let server_c = TestServer::run(server_c).await;
    let status_url = server_c.url("/v1/indexes/preloaded");
    tokio::time::timeout(Duration::from_secs(30), async {
        while get_json(&status_url).await["preload"]["state"] != "done" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the preload finishes");
    let opened = &get_json(&status_url).await["open"];
    assert!(
        opened["gets"].as_u64().unwrap() >= 1 && opened["bytes"].as_u64().unwrap() > 0,
        "{opened}"
    );
    let after = scrape(&server_c).await;
    let index = "index=\"preloaded\"";
    checks.gauge(
        &after,
        "ivflake_index_memory_bytes",
        &[index, "part=\"quantizer\""],
        1.0,
        "an open index",
    );
    checks.gauge(
        &after,
        "ivflake_index_residual_table_build_seconds",
        &[index],
        0.0,
        "an open index",
    );
    checks.gauge(
        &after,
        "ivflake_index_preload_bytes",
        &[index, "of=\"loaded\""],
        1.0,
        "a finished preload",
    );
    server_c.stop().await;

    let unchecked: Vec<&String> = documented.difference(&checks.seen).collect();
    assert!(unchecked.is_empty(), "documented but not checked: {unchecked:?}");

    // A removed index leaves the scrape: none of its series stay behind.
    let before = scrape(&server).await;
    assert!(before.contains("index=\"plain\""), "{before}");
    let removed = client().delete(server.url("/v1/indexes/plain")).send().await.unwrap();
    assert_eq!(removed.status(), 200);
    let after = scrape(&server).await;
    assert!(
        !after.contains("index=\"plain\""),
        "a removed index's series remain:\n{after}"
    );
    assert!(after.contains("index=\"stall\""), "{after}");
    server.stop().await;
    server_b.stop().await;
}
