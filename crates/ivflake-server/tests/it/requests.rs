//! Bad requests get a clear 4xx naming the field, and oversized ones are
//! refused while parsing.

use std::time::Duration;

use crate::common::*;
use ivflake_server::ServerConfig;
use serde_json::{json, Value};

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
