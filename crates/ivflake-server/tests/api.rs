//! The HTTP API end to end: results equal the library's (local directory and
//! the S3-protocol server), index status, reload, run-time add/remove,
//! metrics, OpenAPI, auth, and a clear 4xx for every kind of bad input.

mod common;

use std::time::Duration;

use common::*;
use ivflake::IdFilterSpec;
use ivflake_server::{IndexConfig, Secret, ServerConfig};
use object_store::{ObjectStoreExt, PutPayload};
use reqwest::StatusCode;
use serde_json::{json, Value};

const N: usize = 4000;

/// A server over one local index named `idx`, after `tune` adjusts the config.
async fn local(tune: impl FnOnce(&mut ServerConfig, &std::path::Path)) -> (TestServer, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idx.faiss");
    std::fs::write(&path, index_bytes(1, N)).expect("write index");
    let path = path.to_string_lossy().to_string();
    let mut config = config();
    config.indexes.insert("idx".into(), IndexConfig::new(&path));
    tune(&mut config, dir.path());
    (TestServer::start(config).await, dir, path)
}

async fn post_json(url: &str, body: &Value) -> (StatusCode, Value) {
    let r = client().post(url).json(body).send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_http_equals_the_library() {
    let (server, _dir, path) = local(|_, _| {}).await;
    let q = queries(8);
    let url = server.url("/v1/indexes/idx/search");

    let (status, body) = post_json(&url, &search_body(&q, 0..8, 10, 8)).await;
    assert_eq!(status, 200, "{body}");
    let expected = library_results(&path, &q, 10, 8, IdFilterSpec::All).await;
    assert_eq!(response_results(&body), library_bits(&expected));
    assert_eq!(body["k"], 10);
    assert_eq!(body["nprobe"], 8);
    assert_eq!(body["stats"]["queries"], 8);
    assert!(body["stats"]["lists_probed"].as_u64().unwrap() > 0);
    assert!(!body["version"].as_str().unwrap().is_empty());

    // Filters go through Faiss's IDSelector, as in the library.
    let filters = [
        (
            json!({"allow": (0..N as i64).step_by(3).collect::<Vec<_>>()}),
            IdFilterSpec::Allow((0..N as i64).step_by(3).collect()),
        ),
        (
            json!({"deny": (0..2000).collect::<Vec<i64>>()}),
            IdFilterSpec::Deny((0..2000).collect()),
        ),
        (
            json!({"range": {"start": 1000, "end": 1500}}),
            IdFilterSpec::Range { start: 1000, end: 1500 },
        ),
    ];
    for (filter, spec) in filters {
        let mut request = search_body(&q, 0..8, 5, 16);
        request["filter"] = filter.clone();
        let (status, body) = post_json(&url, &request).await;
        assert_eq!(status, 200, "{filter}: {body}");
        let expected = library_results(&path, &q, 5, 16, spec).await;
        assert_eq!(response_results(&body), library_bits(&expected), "{filter}");
    }

    // The binary form: raw little-endian float32, shape in the query or a header.
    let raw: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
    for by_header in [false, true] {
        let mut request = client()
            .post(if by_header {
                format!("{url}?k=10&nprobe=8")
            } else {
                format!("{url}?rows=8&d=16&k=10&nprobe=8")
            })
            .header("content-type", "application/octet-stream")
            .body(raw.clone());
        if by_header {
            request = request.header("x-ivflake-rows", "8");
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let version = r.headers()["x-ivflake-index-version"].to_str().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["version"], version.as_str());
        assert_eq!(
            response_results(&body),
            library_bits(&expected),
            "binary, header {by_header}"
        );
    }

    // A binary body's filter goes in the query string.
    let allow: Vec<i64> = (0..N as i64).step_by(3).collect();
    let allow_list = allow.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    for (query, spec) in [
        (format!("allow={allow_list}"), IdFilterSpec::Allow(allow.clone())),
        ("deny=0,1,2,3,4,5".to_string(), IdFilterSpec::Deny((0..6).collect())),
        (
            "range=1000,1500".to_string(),
            IdFilterSpec::Range { start: 1000, end: 1500 },
        ),
    ] {
        let r = client()
            .post(format!("{url}?rows=8&k=5&nprobe=16&{query}"))
            .header("content-type", "application/octet-stream")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", &query[..20.min(query.len())]);
        let body: Value = r.json().await.unwrap();
        let expected = library_results(&path, &q, 5, 16, spec).await;
        assert_eq!(response_results(&body), library_bits(&expected), "binary filter");
    }

    // Defaults apply when k and nprobe are left out: k = 10, nprobe = 16.
    let (status, body) = post_json(&url, &json!({"vectors": [q[..16].to_vec()]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["k"].as_u64(), body["nprobe"].as_u64()), (Some(10), Some(16)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_search_equals_the_library() {
    let (bucket, store) = s3_store();
    let key = unique_key("e2e");
    store
        .put(
            &object_store::path::Path::from(key.as_str()),
            PutPayload::from(index_bytes(2, N)),
        )
        .await
        .expect("upload to S3");
    let uri = format!("s3://{bucket}/{key}");
    let mut config = config();
    config.indexes.insert("s3idx".into(), IndexConfig::new(&uri));
    let server = TestServer::start(config).await;

    let q = queries(6);
    let (status, body) = post_json(&server.url("/v1/indexes/s3idx/search"), &search_body(&q, 0..6, 7, 4)).await;
    assert_eq!(status, 200, "{body}");
    let expected = library_results(&uri, &q, 7, 4, IdFilterSpec::All).await;
    assert_eq!(response_results(&body), library_bits(&expected));
    assert!(
        body["stats"]["gets"].as_u64().unwrap() > 0,
        "a cold search reads from S3"
    );

    let status: Value = client()
        .get(server.url("/v1/indexes/s3idx"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["uri"], uri.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_status_and_reload() {
    let (server, _dir, path) = local(|_, _| {}).await;
    let list: Value = client()
        .get(server.url("/v1/indexes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    // No cache, so the search reads the store and its version check fires.
    let (server, _dir, path) = local(|c, _| c.cache.memory_bytes = 0).await;
    let url = server.url("/v1/indexes/idx/search");
    let q = queries(3);
    let (_, before) = post_json(&url, &search_body(&q, 0..3, 5, 8)).await;
    assert_eq!(before["generation"], 1);

    replace_file(std::path::Path::new(&path), &index_bytes(6, N));
    let (status, after) = post_json(&url, &search_body(&q, 0..3, 5, 8)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["generation"], 2, "reloaded without being asked");
    assert_ne!(after["version"], before["version"]);
    let expected = library_results(&path, &q, 5, 8, IdFilterSpec::All).await;
    assert_eq!(response_results(&after), library_bits(&expected));
    server.stop().await;
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
async fn metrics_openapi_and_health() {
    let (server, _dir, _) = local(|_, _| {}).await;
    let q = queries(4);
    // Cold, then warm: misses, then memory hits.
    for _ in 0..2 {
        let (status, _) = post_json(&server.url("/v1/indexes/idx/search"), &search_body(&q, 0..4, 5, 8)).await;
        assert_eq!(status, 200);
    }

    let r = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let search_route = "route=\"/v1/indexes/{name}/search\"";
    assert!(
        metric(&text, "ivflake_http_requests_total", &[search_route, "status=\"200\""]) >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "ivflake_http_request_seconds_count", &[search_route]) >= 1.0);
    assert!(
        text.contains("ivflake_http_request_seconds_bucket{") && text.contains("le=\"0.005\""),
        "latency histogram with millisecond buckets"
    );
    // What the library records during a search.
    for (name, labels) in [
        ("ivflake_search_seconds_count", vec!["stage=\"total\""]),
        ("ivflake_search_seconds_count", vec!["stage=\"quantizer\""]),
        ("ivflake_search_seconds_count", vec!["stage=\"fetch\""]),
        ("ivflake_search_seconds_count", vec!["stage=\"scan\""]),
        ("ivflake_searches_total", vec![]),
        ("ivflake_store_gets_total", vec![]),
        ("ivflake_store_bytes_total", vec![]),
        ("ivflake_cache_misses_total", vec!["tier=\"memory\""]),
        ("ivflake_cache_hits_total", vec!["tier=\"memory\""]),
    ] {
        assert!(
            metric(&text, name, &labels) > 0.0,
            "{name} {labels:?} missing or zero:\n{text}"
        );
    }
    for gauge in [
        "ivflake_searches_in_flight",
        "ivflake_fetches_in_flight",
        "ivflake_http_requests_in_flight",
    ] {
        assert!(text.contains(&format!("\n{gauge} ")), "{gauge} missing:\n{text}");
    }

    let doc: Value = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route, with the statuses it can answer.
    for (path, method, statuses) in [
        (
            "/v1/indexes/{name}/search",
            "post",
            &["200", "400", "401", "404", "413", "415", "422", "502", "503", "504"][..],
        ),
        ("/v1/indexes", "get", &["200", "401", "503"][..]),
        (
            "/v1/indexes",
            "post",
            &["201", "400", "401", "403", "404", "409", "413", "422", "503"][..],
        ),
        ("/v1/indexes/{name}", "get", &["200", "401", "404"][..]),
        ("/v1/indexes/{name}", "delete", &["200", "401", "404"][..]),
        (
            "/v1/indexes/{name}/reload",
            "post",
            &["200", "401", "404", "502", "503"][..],
        ),
        ("/v1/indexes/{name}/warm", "post", &["200", "400", "401", "404"][..]),
        ("/metrics", "get", &["200", "401"][..]),
        ("/healthz", "get", &["200"][..]),
        ("/readyz", "get", &["200", "503"][..]),
        ("/openapi.json", "get", &["200"][..]),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from the OpenAPI document");
        for status in statuses {
            assert!(op["responses"][status].is_object(), "{method} {path}: no {status}");
        }
    }
    // The search body: JSON with the SearchRequest schema, or raw floats.
    let search = &doc["paths"]["/v1/indexes/{name}/search"]["post"];
    let content = &search["requestBody"]["content"];
    assert_eq!(
        content["application/json"]["schema"]["$ref"],
        "#/components/schemas/SearchRequest"
    );
    assert!(content["application/octet-stream"].is_object());
    let request = &doc["components"]["schemas"]["SearchRequest"];
    assert_eq!(request["required"], json!(["vectors"]), "{request}");
    for field in ["vectors", "k", "nprobe", "filter", "allow_partial", "timeout_ms"] {
        assert!(request["properties"][field].is_object(), "SearchRequest.{field}");
    }
    let params: Vec<&str> = search["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "name",
        "rows",
        "d",
        "k",
        "nprobe",
        "allow",
        "deny",
        "range",
        "x-ivflake-rows",
    ] {
        assert!(params.contains(&name), "search parameter {name}: {params:?}");
    }
    let warm = &doc["paths"]["/v1/indexes/{name}/warm"]["post"];
    assert_eq!(
        warm["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WarmSpec"
    );
    assert_eq!(
        warm["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WarmReport"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-request-id"), "responses carry a request id");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], want);
    }
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
    let before: Value = client().get(&status_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(residency(&before), 0, "{before}");

    let (status, report) = post_json(
        &server.url("/v1/indexes/idx/warm"),
        &json!({"largest": 4, "lists": [0]}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert!(report["lists_requested"].as_u64().unwrap() >= 4, "{report}");
    let after: Value = client().get(&status_url).send().await.unwrap().json().await.unwrap();
    assert!(residency(&after) >= 4, "{after}");
    assert!(after["residency"]["lists_on_disk"].as_u64().is_some(), "{after}");

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
    server.stop().await;
    let saved = std::fs::read_dir(state.path().join("probe-counts"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(saved, 1, "probe counts saved at shutdown");
}

/// Sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let (server, _dir, _) = local(|c, _| {
        c.limits.max_body_bytes = 256 * 1024;
    })
    .await;
    let url = server.url("/v1/indexes/idx/search");
    let row = |v: f32| vec![v; D];
    let ok_row = row(0.5);
    let many = vec![ok_row.clone(); 1100];

    // (what, body text, expected status, expected field)
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "wrong dimension",
            json!({"vectors": [row(1.0)[..15].to_vec()]}).to_string(),
            400,
            Some("vectors"),
        ),
        (
            "NaN",
            r#"{"vectors": [[NaN, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]}"#.into(),
            400,
            Some("body"),
        ),
        (
            "inf literal",
            r#"{"vectors": [[inf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]}"#.into(),
            400,
            Some("body"),
        ),
        (
            "1e39 overflows f32",
            r#"{"vectors": [[1e39, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]}"#.into(),
            400,
            Some("vectors"),
        ),
        (
            "-1e39",
            r#"{"vectors": [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, -1e39]]}"#.into(),
            400,
            Some("vectors"),
        ),
        ("empty batch", json!({"vectors": []}).to_string(), 400, Some("vectors")),
        ("no vectors", json!({"k": 3}).to_string(), 400, Some("body")),
        (
            "huge k",
            json!({"vectors": [ok_row], "k": 1_000_000}).to_string(),
            400,
            Some("k"),
        ),
        (
            "k beyond u64",
            r#"{"vectors": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]], "k": 1e30}"#.into(),
            400,
            Some("k"),
        ),
        (
            "negative k",
            json!({"vectors": [ok_row], "k": -1}).to_string(),
            400,
            Some("k"),
        ),
        (
            "zero k",
            json!({"vectors": [ok_row], "k": 0}).to_string(),
            400,
            Some("k"),
        ),
        (
            "huge nprobe",
            json!({"vectors": [ok_row], "nprobe": 1_000_000_000u64}).to_string(),
            400,
            Some("nprobe"),
        ),
        (
            "nprobe over nlist",
            json!({"vectors": [ok_row], "nprobe": 33}).to_string(),
            400,
            Some("nprobe"),
        ),
        (
            "zero timeout",
            json!({"vectors": [ok_row], "timeout_ms": 0}).to_string(),
            400,
            Some("timeout_ms"),
        ),
        (
            "reversed range",
            json!({"vectors": [ok_row], "filter": {"range": {"start": 9, "end": 1}}}).to_string(),
            400,
            Some("filter"),
        ),
        (
            "unknown filter",
            json!({"vectors": [ok_row], "filter": {"maybe": [1]}}).to_string(),
            400,
            Some("filter"),
        ),
        (
            "unknown field",
            json!({"vectors": [ok_row], "nprob": 3}).to_string(),
            400,
            None,
        ),
        (
            "string vector",
            json!({"vectors": ["abc"]}).to_string(),
            400,
            Some("vectors"),
        ),
        ("malformed JSON", r#"{"vectors": [[1, 2"#.into(), 400, Some("body")),
        (
            "trailing garbage",
            format!("{} x", json!({"vectors": [ok_row]})),
            400,
            Some("body"),
        ),
        ("not JSON at all", "hello".into(), 400, Some("body")),
        (
            "batch over the limit",
            json!({"vectors": many}).to_string(),
            400,
            Some("vectors"),
        ),
        (
            "oversized body",
            format!("{{\"vectors\": [[{}]]}}", "1.0,".repeat(80_000)),
            413,
            Some("body"),
        ),
    ];
    for (what, body, want, field) in cases {
        let r = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status().as_u16();
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{what}: no message in {body}"
        );
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{what}: {body}");
        }
    }

    // Binary bodies: the shape must be given and must match the bytes.
    let raw: Vec<u8> = row(0.5).iter().flat_map(|v| v.to_le_bytes()).collect();
    let inf: Vec<u8> = row(f32::INFINITY).iter().flat_map(|v| v.to_le_bytes()).collect();
    let binary = [
        ("no rows", "", raw.clone(), "rows"),
        ("rows disagree with length", "?rows=2", raw.clone(), "body"),
        ("wrong d", "?rows=1&d=8", raw.clone(), "d"),
        ("zero rows", "?rows=0", Vec::new(), "vectors"),
        ("infinite value", "?rows=1", inf, "vectors"),
        ("bad query", "?rows=abc", raw.clone(), "query"),
    ];
    for (what, query, body, field) in binary {
        let r = client()
            .post(format!("{url}{query}"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{what}: {body}"
        );
    }

    let r = client()
        .post(&url)
        .header("content-type", "text/csv")
        .body("1,2,3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Index names: unknown, traversal, control characters, too long.
    let search = |name: String| {
        let url = server.url(&format!("/v1/indexes/{name}/search"));
        let body = json!({"vectors": [row(0.5)]});
        async move { post_json(&url, &body).await }
    };
    let (status, body) = search("nope".into()).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for name in [
        "..%2F..%2Fetc".to_string(),
        "a..b".into(),
        "a%2Fb".into(),
        "a%0Ab".into(),
        "a%00".into(),
        "x".repeat(65),
    ] {
        let (status, body) = search(name.clone()).await;
        assert_eq!(
            (status.as_u16(), body["error"]["field"].as_str()),
            (400, Some("name")),
            "{name}: {body}"
        );
    }
    // A literal `..` segment, sent raw: clients normalize it away.
    let status = raw_request(server.addr, "POST /v1/indexes/../search HTTP/1.1").await;
    assert_eq!(status, 400);
    assert_eq!(raw_request(server.addr, "GET /v1/indexes/%2e%2e HTTP/1.1").await, 400);

    // The server is still fine.
    let (status, _) = search("idx".into()).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// Sends one raw HTTP/1.1 request line with an empty JSON body and returns the status code.
async fn raw_request(addr: std::net::SocketAddr, request_line: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{request_line}\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut response))
        .await
        .expect("the server answers a raw request within 10 s")
        .expect("read the response");
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_and_filters_are_refused_while_parsing() {
    const MAX_IDS: usize = 1000;
    let (server, _dir, _) = local(|c, _| c.limits.max_filter_ids = MAX_IDS).await;
    let url = server.url("/v1/indexes/idx/search");
    let max_batch = ServerConfig::default().limits.max_batch;
    let max_ids = MAX_IDS;
    let row = format!("[{}]", vec!["0.5"; D].join(","));
    let cases = [
        (
            "max_batch + 1 empty rows",
            format!("{{\"vectors\": [{}]}}", vec!["[]"; max_batch + 1].join(",")),
            "vectors",
        ),
        (
            "max_batch + 1 rows",
            format!("{{\"vectors\": [{}]}}", vec![row.as_str(); max_batch + 1].join(",")),
            "vectors",
        ),
        (
            "a row far longer than d",
            format!("{{\"vectors\": [[{}]]}}", vec!["1"; 1_000_000].join(",")),
            "vectors",
        ),
        (
            "an allow list over the limit",
            format!(
                "{{\"vectors\": [{row}], \"filter\": {{\"allow\": [{}]}}}}",
                vec!["1"; max_ids + 1].join(",")
            ),
            "filter",
        ),
        (
            "a deny list over the limit, before the vectors",
            format!(
                "{{\"filter\": {{\"deny\": [{}]}}, \"vectors\": [{row}]}}",
                vec!["1"; 4 * max_ids].join(",")
            ),
            "filter",
        ),
    ];
    for (what, body, field) in cases {
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            client()
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 20 s"))
        .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{what}: {body}"
        );
    }
    // A binary body's filter is bounded the same way.
    let raw: Vec<u8> = [0.5f32; D].iter().flat_map(|v| v.to_le_bytes()).collect();
    let r = client()
        .post(format!("{url}?rows=1&deny={}", vec!["1"; max_ids + 1].join(",")))
        .header("content-type", "application/octet-stream")
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("filter")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth() {
    let (server, _dir, _) = local(|c, _| {
        c.auth.token = Some(Secret::new("s3cret-token"));
    })
    .await;
    let body = json!({"vectors": [vec![0.5f32; D]]});
    let url = server.url("/v1/indexes/idx/search");
    for (what, header, want) in [
        ("missing", None, 401),
        ("wrong", Some("Bearer nope"), 401),
        ("wrong scheme", Some("Basic s3cret-token"), 401),
        ("prefix of the token", Some("Bearer s3cret"), 401),
        ("right", Some("Bearer s3cret-token"), 200),
    ] {
        let mut r = client().post(&url).json(&body);
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{what}");
        if want == 401 {
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["error"]["code"], "unauthorized");
            assert!(!b.to_string().contains("s3cret-token"));
        }
    }
    for path in ["/v1/indexes", "/metrics"] {
        assert_eq!(
            client().get(server.url(path)).send().await.unwrap().status(),
            401,
            "{path}"
        );
    }
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            client().get(server.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    server.stop().await;
}

#[test]
fn the_example_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ivflake.toml");
    let config = ServerConfig::load(&path).expect("examples/ivflake.toml parses");
    config.validate().expect("and is valid");
    assert!(config.indexes.contains_key("demo"));
}
