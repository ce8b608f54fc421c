//! What an attacker tries against the server, each refused with a 4xx that
//! names the field and costs the server nothing it cannot bound: prefix
//! escapes, a search token used for admin actions, searches and filters past
//! their budgets, settings past the server's limits, clients that stop
//! reading. And no error body shows a store endpoint, a path or C++ source.

use std::sync::Arc;
use std::time::Duration;

use ivflake::IndexLocation;
use ivflake_server::{IndexConfig, Secret, Server};
use ivflake_testkit::counting_store;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let answer = r.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_quiet(&answer);
    }
    (status, answer)
}

/// `%2F`, `%2E%2E`, `..` and a symlink out of an allowed `file://` prefix
/// are each refused with 403 and open nothing; the file inside opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_uri_escapes_an_allowed_prefix() {
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("indexes");
    let secret = root.path().join("secret");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(allowed.join("ok.faiss"), index_bytes(1, N)).unwrap();
    std::fs::write(secret.join("x.index"), index_bytes(2, N)).unwrap();
    std::os::unix::fs::symlink(&secret, allowed.join("link")).unwrap();
    let base = url::Url::from_directory_path(&allowed).unwrap().to_string();
    let prefix = base.clone();
    let server = TestServer::start({
        let mut c = config();
        c.allowed_uri_prefixes = vec![prefix];
        c
    })
    .await;
    let add = server.url("/v1/indexes");
    for uri in [
        format!("{base}..%2F..%2Fsecret%2Fx.index"),
        format!("{base}%2E%2E/secret/x.index"),
        format!("{base}../secret/x.index"),
        format!("{base}link/x.index"),
    ] {
        let (status, body) = send(client().post(&add).json(&json!({"name": "evil", "uri": uri}))).await;
        assert_eq!(status, 403, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "uri_not_allowed", "{body}");
        assert_eq!(body["error"]["field"], "uri", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains(&base), "the prefix list stays in the log: {message}");
    }
    let (status, body) = send(
        client()
            .post(&add)
            .json(&json!({"name": "ok", "uri": format!("{base}ok.faiss")})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = send(client().get(&add)).await;
    assert_eq!(
        list["indexes"].as_array().map(Vec::len),
        Some(1),
        "only the one inside: {list}"
    );
    server.stop().await;
}

/// The search token searches and reads; everything that changes the server
/// needs the admin token (403 otherwise), and only the admin sees URIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_token_cannot_change_the_server() {
    let (server, dir, path) = local(|c, dir| {
        c.auth.token = Some(Secret::new("admin-token"));
        c.auth.search_token = Some(Secret::new("search-token"));
        c.allowed_uri_prefixes = vec![dir.display().to_string()];
    })
    .await;
    let search = |r: reqwest::RequestBuilder| r.bearer_auth("search-token");
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth("admin-token");
    let q = queries(1);
    let c = client();

    let (status, body) = send(search(c.post(server.url("/v1/indexes/idx/search")).json(&search_body(
        &q,
        0..1,
        3,
        4,
    ))))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, list) = send(search(c.get(server.url("/v1/indexes")))).await;
    assert_eq!(status, 200);
    assert!(
        list["indexes"][0].get("uri").is_none(),
        "no URI for a search token: {list}"
    );
    let (status, one) = send(search(c.get(server.url("/v1/indexes/idx")))).await;
    assert_eq!((status, one.get("uri")), (200, None), "{one}");
    let metrics = search(c.get(server.url("/metrics"))).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    let other = dir.path().join("other.faiss");
    std::fs::write(&other, index_bytes(3, N)).unwrap();
    let refused = [
        ("DELETE idx", c.delete(server.url("/v1/indexes/idx"))),
        (
            "POST /v1/indexes",
            c.post(server.url("/v1/indexes"))
                .json(&json!({"name": "idx2", "uri": other.to_string_lossy()})),
        ),
        ("reload", c.post(server.url("/v1/indexes/idx/reload"))),
        (
            "warm",
            c.post(server.url("/v1/indexes/idx/warm")).json(&json!({"largest": 4})),
        ),
    ];
    for (what, request) in refused {
        let (status, body) = send(search(request)).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    }
    let (_, list) = send(admin(c.get(server.url("/v1/indexes")))).await;
    assert_eq!(
        list["indexes"].as_array().map(Vec::len),
        Some(1),
        "nothing was added: {list}"
    );
    assert_eq!(list["indexes"][0]["uri"], path.as_str(), "the admin sees URIs: {list}");
    let (status, _) = send(c.get(server.url("/v1/indexes"))).await;
    assert_eq!(status, 401);
    let (status, body) = send(admin(
        c.post(server.url("/v1/indexes/idx/warm")).json(&json!({"largest": 2})),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(admin(c.delete(server.url("/v1/indexes/idx")))).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// An index in memory behind a GET counter, served by `server` as `name`.
async fn counted(server: &Server, name: &str, config: IndexConfig) -> Arc<ivflake_testkit::CountingStore> {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    inner
        .put(&"idx.faiss".into(), PutPayload::from(index_bytes(1, N)))
        .await
        .unwrap();
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let location = IndexLocation::new(store, "idx.faiss", "memory://counted/idx.faiss");
    server.add_index(name, location, config).await.expect("add");
    counting
}

/// A plain search over the byte budget gets a 400 naming it and the bytes
/// it needed, and makes no GET; one within it runs. Warm-ups share the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_the_byte_budget_fetches_nothing() {
    let mut c = config();
    c.limits.max_bytes_per_search = 64 << 10;
    let server = Server::bind(c).await.unwrap();
    let counting = counted(&server, "idx", IndexConfig::new("memory://counted/idx.faiss")).await;
    let server = TestServer::run(server).await;
    counting.reset();
    let q = queries(64);
    let (status, body) = send(client().post(server.url("/v1/indexes/idx/search")).json(&search_body(
        &q,
        0..64,
        10,
        32,
    )))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "max_bytes_per_search", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("would read") && message.contains("65536"), "{message}");
    assert_eq!(counting.gets(), 0, "nothing was fetched");
    let (status, body) = send(
        client()
            .post(server.url("/v1/indexes/idx/warm"))
            .json(&json!({"largest": 32})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("max_bytes_per_search")),
        "{body}"
    );
    assert_eq!(counting.gets(), 0, "nor by the warm-up");
    let (status, body) = send(
        client()
            .post(server.url("/v1/indexes/idx/search"))
            .json(&search_body(&q, 0..1, 10, 2)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(counting.gets() > 0);
    server.stop().await;
}

/// A 1.5-million-value `$in` and a 5,000-deep `$and` are refused while
/// parsing (400 naming the filter's path and the limit), on an index with no
/// attributes even; memory stays flat and the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_filters_are_refused_while_parsing() {
    let (server, _dir, _) = local(|_, _| {}).await;
    let url = server.url("/v1/indexes/idx/search");
    let q = queries(1);
    let mut body = search_body(&q, 0..1, 3, 4);
    let values: Vec<u32> = (0..1_500_000).collect();
    body["attribute_filter"] = json!({"tag": {"$in": values}});
    let text = serde_json::to_vec(&body).unwrap();
    let rss_before = rss_bytes();
    let (status, answer) = send(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(text),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "attribute_filter.tag.$in", "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("max_in_values"),
        "{answer}"
    );
    let grown = rss_bytes().saturating_sub(rss_before);
    println!(
        "a {} MB filter of 1.5M values: refused, RSS grew {:.1} MiB",
        serde_json::to_vec(&body).unwrap().len() >> 20,
        grown as f64 / (1 << 20) as f64
    );
    assert!(grown < 48 << 20, "RSS grew {grown} bytes for a refused filter");

    let deep = format!(
        "{{\"vectors\": {}, \"attribute_filter\": {}{{\"a\": 1}}{}}}",
        serde_json::to_string(&body["vectors"]).unwrap(),
        "{\"$and\": [".repeat(5000),
        "]}".repeat(5000)
    );
    let (status, answer) = send(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(deep),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let field = answer["error"]["field"].as_str().unwrap();
    assert!(field.starts_with("attribute_filter.$and[0]"), "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("max_depth"),
        "{answer}"
    );
    let (status, answer) = send(client().post(&url).json(&search_body(&q, 0..1, 3, 4))).await;
    assert_eq!(status, 200, "the server serves on: {answer}");
    server.stop().await;
}

/// Per-index settings a client sends are capped by the server's limits,
/// and the number of indexes by `limits.max_indexes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_time_settings_are_capped_by_the_server() {
    let (server, dir, path) = local(|c, dir| {
        c.allowed_uri_prefixes = vec![dir.display().to_string()];
        c.limits.max_indexes = 2;
    })
    .await;
    let add = server.url("/v1/indexes");
    for (key, value) in [
        ("max_k", json!(5000)),
        ("max_nprobe", json!(100_000)),
        ("max_batch", json!(100_000)),
        ("max_bytes_per_search", json!(1u64 << 40)),
        ("residual_table_max_bytes", json!(1u64 << 40)),
        ("preload_max_cache_fraction", json!(1.0)),
    ] {
        let mut request = json!({"name": "two", "uri": path});
        request[key] = value;
        let (status, body) = send(client().post(&add).json(&request)).await;
        assert_eq!((status, &body["error"]["field"]), (400, &json!(key)), "{key}: {body}");
    }
    let tight = json!({"name": "two", "uri": path, "max_k": 5, "k": 5, "max_nprobe": 2, "nprobe": 2, "max_batch": 2});
    let (status, body) = send(client().post(&add).json(&tight)).await;
    assert_eq!(status, 201, "{body}");
    // The index's own limits hold at request time.
    let search = server.url("/v1/indexes/two/search");
    let one = vec![vec![0.0f32; D]];
    for (request, field) in [
        (json!({"vectors": one, "k": 6}), "k"),
        (json!({"vectors": one, "nprobe": 3}), "nprobe"),
        (json!({"vectors": vec![vec![0.0f32; D]; 3]}), "vectors"),
    ] {
        let (status, body) = send(client().post(&search).json(&request)).await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (400, &json!(field)),
            "{request}: {body}"
        );
    }
    let two = json!({"vectors": vec![vec![0.0f32; D]; 2], "k": 5, "nprobe": 2});
    let (status, body) = send(client().post(&search).json(&two)).await;
    assert_eq!(status, 200, "{body}");
    let third = dir.path().join("third.faiss");
    std::fs::write(&third, index_bytes(2, N)).unwrap();
    let (status, body) = send(
        client()
            .post(&add)
            .json(&json!({"name": "three", "uri": third.to_string_lossy()})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "too_many_indexes", "{body}");
    server.stop().await;
}

/// A reload of an object that has not changed is one HEAD, with no range
/// read and no new generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_without_change_opens_nothing() {
    let server = Server::bind(config()).await.unwrap();
    let counting = counted(&server, "idx", IndexConfig::new("memory://counted/idx.faiss")).await;
    let server = TestServer::run(server).await;
    counting.reset();
    let (status, body) = send(client().post(server.url("/v1/indexes/idx/reload"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["changed"].as_bool(), body["generation"].as_u64()),
        (Some(false), Some(1)),
        "{body}"
    );
    assert_eq!(counting.gets(), 1, "one HEAD");
    assert!(
        counting.ranges().is_empty(),
        "no byte of the index read: {:?}",
        counting.ranges()
    );
    server.stop().await;
}

/// A client that sends a search and never reads the answer is disconnected
/// once the response has stalled for `response_stall_timeout_ms`: it gets
/// less than the response, then the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let (server, _dir, _) = local(|c, _| {
        c.http.response_stall_timeout_ms = 200;
        c.limits.max_k = 1000;
    })
    .await;
    // 1,024 queries × k = 1,000: a response of tens of MB, far past what
    // the sockets' buffers hold.
    let q = queries(1024);
    let body = serde_json::to_vec(&json!({
        "vectors": (0..1024).map(|i| q[i * D..(i + 1) * D].to_vec()).collect::<Vec<_>>(),
        "k": 1000,
        "nprobe": 32
    }))
    .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/indexes/idx/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    // The server answers, and stalls on our full buffers. Read nothing until
    // the search has surely answered: the first byte shows it has.
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest))
        .await
        .expect("the server ends the connection");
    let text = String::from_utf8_lossy(&rest);
    let length: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let header_end = text.find("\r\n\r\n").expect("a response head") + 4;
    let got = 1 + rest.len() - header_end;
    assert!(
        read.is_err() || got < length,
        "the whole response arrived ({got} of {length} bytes): nothing dropped the client"
    );
    server.stop().await;
}

/// The bodies of errors from the store and from Faiss name neither the
/// store's endpoint and bucket nor the server's paths nor C++ sources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_show_no_endpoint_or_path() {
    let (bucket, store) = s3_store();
    let key = unique_key("security", "gone.faiss");
    store
        .put(&key.as_str().into(), PutPayload::from(index_bytes(1, N)))
        .await
        .unwrap();
    let (server, dir, _) = local(|c, dir| {
        c.allowed_uri_prefixes = vec![dir.display().to_string()];
        c.indexes
            .insert("s3".into(), IndexConfig::new(format!("s3://{bucket}/{key}")));
    })
    .await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let mut bodies = Vec::new();
    // The object is deleted under the served index: a search's store error.
    store.delete(&key.as_str().into()).await.unwrap();
    let (status, body) = send(
        client()
            .post(server.url("/v1/indexes/s3/search"))
            .json(&json!({"vectors": [vec![0.0; D]], "nprobe": 32})),
    )
    .await;
    assert!(status >= 500, "{body}");
    bodies.push(body);
    let (_, body) = send(client().post(server.url("/v1/indexes/s3/reload"))).await;
    bodies.push(body);
    // Files that Faiss refuses, and one that is not there.
    std::fs::write(
        dir.path().join("garbage.faiss"),
        b"IwFl\x10\0\0\0garbage-garbage-garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("alien.faiss"), b"IxZZ\x10\0\0\0garbage-garbage-garbage").unwrap();
    for file in ["garbage.faiss", "alien.faiss", "missing.faiss"] {
        let uri = dir.path().join(file).to_string_lossy().to_string();
        let (status, body) = send(
            client()
                .post(server.url("/v1/indexes"))
                .json(&json!({"name": "bad", "uri": uri})),
        )
        .await;
        assert!((400..500).contains(&status), "{file}: {body}");
        bodies.push(body);
    }
    let dir_text = dir.path().display().to_string();
    for body in &bodies {
        let message = body["error"]["message"].as_str().expect("an error message");
        assert!(body["error"]["code"].is_string(), "{body}");
        for leak in [
            endpoint.as_str(),
            bucket.as_str(),
            key.as_str(),
            dir_text.as_str(),
            ".cpp",
            ".h:",
        ] {
            assert!(leak.is_empty() || !message.contains(leak), "{leak:?} in {body}");
        }
    }
    server.stop().await;
}

/// `manifest = "require"` in an index's config: without a sidecar it is not
/// served (422 naming the sidecar); with one it is, and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_may_require_its_checksum_sidecar() {
    let (server, dir, _) = local(|c, dir| {
        c.allowed_uri_prefixes = vec![dir.display().to_string()];
    })
    .await;
    let path = dir.path().join("checked.faiss");
    std::fs::write(&path, index_bytes(5, N)).unwrap();
    let uri = path.to_string_lossy().to_string();
    let add = server.url("/v1/indexes");
    let request = json!({"name": "checked", "uri": uri, "manifest": "require"});
    let (status, body) = send(client().post(&add).json(&request)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "checksum_sidecar_missing", "{body}");
    ivflake_testkit::write_sidecar(ivflake::IndexLocation::parse(&uri, &Default::default()).unwrap()).await;
    let (status, body) = send(client().post(&add).json(&request)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["checksum_sidecar"], true, "{body}");
    let (status, body) = send(
        client()
            .post(server.url("/v1/indexes/checked/search"))
            .json(&search_body(&queries(1), 0..1, 3, 4)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// Bodies are bounded by bytes, whatever the connection count: a body being
/// sent holds its declared length of `limits.max_body_bytes_in_flight`, so a
/// second body that does not fit gets 503 at once, while requests with no
/// body (GETs) reserve nothing and pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_share_a_byte_budget() {
    let (server, _dir, _) = local(|c, _| {
        c.limits.max_body_bytes = 1 << 20;
        c.limits.max_body_bytes_in_flight = 1 << 20;
    })
    .await;
    // A head declaring a 1 MiB body, which never comes: it holds the budget.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/indexes/idx/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n{",
        )
        .await
        .unwrap();
    let url = server.url("/v1/indexes/idx/search");
    let body = search_body(&queries(1), 0..1, 3, 4);
    // Wait (bounded) until the stalled body holds its bytes: then a second
    // body is refused by the budget, with Retry-After.
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = client().post(&url).json(&body).send().await.unwrap();
            if r.status() == 503 {
                break r;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the second body is refused while the first holds the budget");
    assert!(refused.headers().contains_key("retry-after"));
    let text: Value = refused.json().await.unwrap();
    assert!(
        text["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bytes of request bodies"),
        "{text}"
    );
    // Requests without a body reserve nothing.
    let gets = (0..8).map(|_| client().get(server.url("/v1/indexes")).send());
    for r in futures::future::join_all(gets).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    drop(stalled);
    server.stop().await;
}
