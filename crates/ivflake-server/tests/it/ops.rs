//! What operators rely on: metrics, the OpenAPI document, health,
//! bearer-token auth, and the example config.

use crate::common::*;
use ivflake_server::{Secret, ServerConfig};
use serde_json::{json, Value};

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
        "ivflake_http_connections_open",
    ] {
        assert!(text.contains(&format!("\n{gauge} ")), "{gauge} missing:\n{text}");
    }

    let doc: Value = get_json(&server.url("/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route, with the statuses it can answer.
    for (path, method, statuses) in [
        (
            "/v1/indexes/{name}/search",
            "post",
            &[
                "200", "400", "401", "404", "408", "413", "415", "422", "502", "503", "504",
            ][..],
        ),
        ("/v1/indexes", "get", &["200", "401", "503"][..]),
        (
            "/v1/indexes",
            "post",
            &["201", "400", "401", "403", "404", "408", "409", "413", "422", "503"][..],
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

/// The keys serde accepts in the table that `table` opens (`""` for the top
/// level), read from its refusal of an unknown key (`deny_unknown_fields`).
fn accepted_keys(table: &str) -> Vec<String> {
    let err = ServerConfig::from_toml(&format!("{table}\nzz_not_a_key = 1\n")).unwrap_err();
    let message = format!("{err:#}");
    let expected = message
        .split("expected one of")
        .nth(1)
        .or_else(|| message.split("expected").nth(1))
        .unwrap_or_else(|| panic!("{table}: no list of keys in {message:?}"));
    expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn every_default_in_the_code_is_in_the_example_config_with_its_value() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ivflake.toml");
    let text = std::fs::read_to_string(&path).expect("examples/ivflake.toml");
    let example = ServerConfig::load(&path).expect("examples/ivflake.toml parses");
    let default = ServerConfig::default();

    // Values: what the file sets is the default (its example index aside).
    let mut without_indexes = example.clone();
    without_indexes.indexes = default.indexes.clone();
    assert_eq!(format!("{without_indexes:#?}"), format!("{default:#?}"));
    // And the server's fetch and cache defaults are the library's own.
    let (ours, lib) = (default.fetch_config(), ivflake::FetchConfig::default());
    assert_eq!(ours.max_in_flight, lib.max_in_flight);
    assert_eq!(ours.max_in_flight_per_search, lib.max_in_flight_per_search);
    assert_eq!(ours.get_timeout, lib.get_timeout);
    assert_eq!(ours.request_timeout, lib.request_timeout);
    assert_eq!(ours.connect_timeout, lib.connect_timeout);
    assert_eq!(ours.memory_cache_bytes, lib.memory_cache_bytes);
    assert_eq!(ours.hedge.is_some(), lib.hedge.is_some());

    // Keys: every key of every table is in the file, set or shown commented out.
    let doc: toml::Table = text.parse().expect("TOML");
    let shown = |key: &str| {
        text.lines()
            .map(|l| l.trim_start().trim_start_matches('#').trim_start())
            .any(|l| l.starts_with(&format!("{key} =")))
    };
    let tables = [
        ("", None),
        ("[defaults]", Some("defaults")),
        ("[limits]", Some("limits")),
        ("[cache]", Some("cache")),
        ("[fetch]", Some("fetch")),
        ("[http]", Some("http")),
        ("[auth]", Some("auth")),
        ("[vectors]", Some("vectors")),
        ("[indexes.x]\nuri = \"x\"", None),
    ];
    let mut checked = 0;
    for (open, name) in tables {
        let keys = accepted_keys(open);
        assert!(!keys.is_empty(), "{open}");
        for key in keys {
            let set = match name {
                Some(name) => doc[name].as_table().is_some_and(|t| t.contains_key(&key)),
                None => doc.contains_key(&key),
            };
            assert!(set || shown(&key), "{open:?}: `{key}` is not in examples/ivflake.toml");
            checked += 1;
        }
    }
    assert!(checked >= 35, "{checked} keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_search_reports_its_cost_and_the_metrics_add_it_up() {
    // Its own index name: the metrics are the process's, shared by every test.
    let (server, _dir, _) = local(|config, _| {
        let index = config.indexes.remove("idx").unwrap();
        config.indexes.insert("priced".into(), index);
        config.pricing.get_per_1000 = 1.0;
    })
    .await;
    let q = queries(4);
    let (mut usd, mut gets) = (0.0, 0);
    for _ in 0..3 {
        let (status, body) = post_json(&server.url("/v1/indexes/priced/search"), &search_body(&q, 0..4, 5, 8)).await;
        assert_eq!(status, 200);
        let stats = &body["stats"];
        let cost = &stats["cost"];
        let n = cost["get_requests"].as_u64().unwrap();
        assert!(
            (cost["usd"].as_f64().unwrap() - n as f64 * 0.001).abs() < 1e-12,
            "{stats}"
        );
        usd += cost["usd"].as_f64().unwrap();
        gets += n;
    }
    assert!(gets > 0, "the first search was cold");
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let priced = "index=\"priced\"";
    assert_eq!(
        metric(&text, "ivflake_search_store_requests_total", &[priced, "kind=\"get\""]),
        gets as f64
    );
    assert_eq!(
        metric(&text, "ivflake_search_cost_nanodollars_total", &[priced]),
        (usd * 1e9).round()
    );
}
