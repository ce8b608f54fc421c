//! Index management over HTTP: status, reload (asked for, and on a changed
//! object), run-time add/remove under allowed prefixes, warm-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ivflake::{IdFilterSpec, IndexLocation};
use ivflake_server::{IndexConfig, Server};
use ivflake_testkit::{requested, GetHook, HookedStore};
use object_store::memory::InMemory;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_status_and_reload() {
    let (server, _dir, path) = local(|_, _| {}).await;
    let list: Value = get_json(&server.url("/v1/indexes")).await;
    let one = &list["indexes"][0];
    assert_eq!(one["name"], "idx");
    assert_eq!(one["type"], "IndexIVFFlat[IndexFlatL2]");
    assert_eq!(
        (one["d"].as_u64(), one["nlist"].as_u64(), one["ntotal"].as_u64()),
        (Some(16), Some(32), Some(N as u64))
    );
    assert_eq!(one["metric"], "l2");
    assert_eq!(
        one["bytes_on_store"].as_u64(),
        Some(std::fs::metadata(&path).unwrap().len())
    );
    assert_eq!(one["generation"], 1);
    let first_version = one["version"].as_str().unwrap().to_string();

    // Nothing changed: the version stays.
    let (status, r) = post_json(&server.url("/v1/indexes/idx/reload"), &json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["changed"].as_bool(), r["generation"].as_u64()),
        (Some(false), Some(1))
    );

    // A new object: reload switches, and searches answer from it.
    replace_file(std::path::Path::new(&path), &index_bytes(3, N));
    let (status, r) = post_json(&server.url("/v1/indexes/idx/reload"), &json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["changed"].as_bool(), r["generation"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(r["previous_version"], first_version.as_str());
    assert_ne!(r["version"], first_version.as_str());
    let q = queries(4);
    let (_, body) = post_json(&server.url("/v1/indexes/idx/search"), &search_body(&q, 0..4, 5, 8)).await;
    assert_eq!(body["generation"], 2);
    let expected = library_results(&path, &q, 5, 8, IdFilterSpec::All).await;
    assert_eq!(response_results(&body), library_bits(&expected));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_that_finds_the_object_changed_reloads_it_once() {
    const CONCURRENT: usize = 16;
    // No cache, so every search reads the store and its version check fires.
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let key = object_store::path::Path::from("idx.faiss");
    memory.put(&key, PutPayload::from(index_bytes(1, N))).await.unwrap();
    let counted = Arc::new(HookedStore::new(memory.clone(), HeaderReads::default()));
    let mut config = config();
    config.cache.memory_bytes = 0;
    let server = Server::bind(config).await.unwrap();
    let uri = "memory://reload/idx.faiss";
    server
        .add_index(
            "idx",
            IndexLocation::new(counted.clone(), "idx.faiss", uri),
            IndexConfig::new(uri),
        )
        .await
        .unwrap();
    let server = TestServer::run(server).await;
    let url = server.url("/v1/indexes/idx/search");
    let q = queries(CONCURRENT);
    let (_, before) = post_json(&url, &search_body(&q, 0..1, 5, 8)).await;
    assert_eq!(before["generation"], 1);

    let replacement = index_bytes(6, N);
    memory.put(&key, PutPayload::from(replacement.clone())).await.unwrap();
    let reads_before = counted.reads();
    // Many searches at once find the object changed; one reload serves them all.
    let answers = futures::future::join_all((0..CONCURRENT).map(|i| {
        let (url, body) = (url.clone(), search_body(&q, i..i + 1, 5, 8));
        async move { post_json(&url, &body).await }
    }))
    .await;
    assert_eq!(
        counted.reads() - reads_before,
        1,
        "the header was read once: one reload"
    );
    let reference = ivflake_faiss::read_index(&replacement).unwrap();
    for (i, (status, after)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{after}");
        assert_eq!(
            after["generation"], 2,
            "request {i}: reloaded without being asked, once"
        );
        assert_ne!(after["version"], before["version"]);
        let expected = reference.search(&q[i * D..(i + 1) * D], 5, 8).unwrap();
        let bits: Vec<u32> = expected.distances.iter().map(|d| d.to_bits()).collect();
        assert_eq!(
            response_results(after),
            (expected.labels, bits),
            "request {i} answers from the new object"
        );
    }
    server.stop().await;
}

/// Counts reads of the index header (GETs of `idx.faiss` from byte 0): one per open or reload.
#[derive(Debug, Default)]
struct HeaderReads(AtomicUsize);

impl HeaderReads {
    fn reads(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl GetHook for HeaderReads {
    async fn before_get(&self, location: &object_store::path::Path, options: &GetOptions) -> object_store::Result<()> {
        if location.as_ref() == "idx.faiss" && requested(options).is_some_and(|r| r.start == 0) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_added_and_removed_at_run_time_under_allowed_prefixes() {
    // No trailing slash: the prefix still ends on a path-segment boundary.
    let (server, dir, _) = local(|c, dir| {
        c.allowed_uri_prefixes = vec![dir.display().to_string()];
    })
    .await;
    let second = dir.path().join("second.faiss");
    std::fs::write(&second, index_bytes(4, N)).unwrap();
    let second = second.to_string_lossy().to_string();
    let add = server.url("/v1/indexes");

    let (status, body) = post_json(&add, &json!({"name": "second", "uri": second, "nprobe": 4})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["default_nprobe"], 4);
    let (status, _) = post_json(&add, &json!({"name": "second", "uri": second})).await;
    assert_eq!(status, 409);
    let q = queries(2);
    let (status, body) = post_json(&server.url("/v1/indexes/second/search"), &search_body(&q, 0..2, 3, 4)).await;
    assert_eq!(status, 200, "{body}");

    // A sibling directory whose name merely starts with the prefix is outside.
    let sibling = format!("{}-private", dir.path().display());
    std::fs::create_dir_all(&sibling).unwrap();
    std::fs::write(format!("{sibling}/x.faiss"), index_bytes(4, N)).unwrap();
    let outside = [
        format!("{sibling}/x.faiss"),
        "/etc/passwd".to_string(),
        format!("{}/../x.faiss", dir.path().display()),
        format!("{}/%2E%2E/x.faiss", dir.path().display()),
    ];
    for uri in outside {
        let (status, body) = post_json(&add, &json!({"name": "evil", "uri": uri})).await;
        assert_eq!(status, 403, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "uri_not_allowed");
    }
    let (status, body) = post_json(&add, &json!({"name": "../evil", "uri": second})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );

    // The client named a bad object: a 4xx, not the 502 of a served index's store trouble.
    std::fs::write(dir.path().join("garbage.faiss"), vec![7u8; 4096]).unwrap();
    for (file, want) in [("missing.faiss", 404), ("garbage.faiss", 422)] {
        let uri = dir.path().join(file).to_string_lossy().to_string();
        let (status, body) = post_json(&add, &json!({"name": "bad", "uri": uri})).await;
        assert_eq!(status.as_u16(), want, "{file}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // Per-index settings are checked against the server's limits.
    let (status, body) = post_json(&add, &json!({"name": "third", "uri": second, "k": 5000})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (400, Some("k")),
        "{body}"
    );

    let r = client().delete(server.url("/v1/indexes/second")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = post_json(&server.url("/v1/indexes/second/search"), &search_body(&q, 0..2, 3, 4)).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fills_the_caches_and_probe_counts_persist() {
    let state = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let (state_dir, disk_dir) = (state.path().to_path_buf(), disk.path().to_path_buf());
    let (server, _dir, _) = local(move |c, _| {
        c.state_dir = Some(state_dir);
        c.cache.disk_dir = Some(disk_dir);
    })
    .await;
    let residency = |body: &Value| body["residency"]["lists_in_memory"].as_u64().unwrap();
    let status_url = server.url("/v1/indexes/idx");
    let before: Value = get_json(&status_url).await;
    assert_eq!(residency(&before), 0, "{before}");

    let (status, report) = post_json(
        &server.url("/v1/indexes/idx/warm"),
        &json!({"largest": 4, "lists": [0]}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    // The 4 largest lists and list 0 (which may be one of them).
    let requested = report["lists_requested"].as_u64().unwrap();
    assert!((4..=5).contains(&requested), "{report}");
    assert_eq!(report["lists_from_store"].as_u64(), Some(requested), "{report}");
    let after: Value = get_json(&status_url).await;
    assert_eq!(residency(&after), requested, "{after}");
    // The disk tier is written in the background: its count reaches the same number.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let now: Value = get_json(&status_url).await;
            if now["residency"]["lists_on_disk"].as_u64() == Some(requested) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the warmed lists reach the disk tier");

    // Every list warmed: a search then reads nothing from the store.
    let (status, report) = post_json(&server.url("/v1/indexes/idx/warm"), &json!({"largest": 32})).await;
    assert_eq!(status, 200, "{report}");
    let q = queries(4);
    let (status, body) = post_json(&server.url("/v1/indexes/idx/search"), &search_body(&q, 0..4, 5, 8)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stats"]["gets"], 0, "{body}");
    assert_eq!(
        body["stats"]["lists_from_memory"], body["stats"]["lists_probed"],
        "{body}"
    );

    let (status, body) = post_json(&server.url("/v1/indexes/idx/warm"), &json!({"lists": [999]})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (400, Some("lists")),
        "{body}"
    );
    let (status, body) = post_json(&server.url("/v1/indexes/idx/warm"), &json!({"largest": "all"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (400, Some("largest")),
        "{body}"
    );
    let r = client().post(server.url("/v1/indexes/idx/warm")).send().await.unwrap();
    assert_eq!(r.status(), 200, "an empty body warms nothing");

    let q = queries(4);
    let (status, _) = post_json(&server.url("/v1/indexes/idx/search"), &search_body(&q, 0..4, 5, 8)).await;
    assert_eq!(status, 200);
    // `most_probed` names the lists searches probed most: warm them again.
    let (status, report) = post_json(&server.url("/v1/indexes/idx/warm"), &json!({"most_probed": 3})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["lists_requested"], 3, "{report}");
    assert_eq!(
        report["lists_already_in_memory"], 3,
        "every list was warmed above: {report}"
    );
    server.stop().await;
    let saved = std::fs::read_dir(state.path().join("probe-counts"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(saved, 1, "probe counts saved at shutdown");
}
