//! Search over HTTP end to end: results equal Faiss searching the file in
//! memory (with the same IDSelector when filtered) and the library, from a
//! local directory and the S3-protocol server, JSON and binary bodies.

use crate::common::*;
use ivflake::IdFilterSpec;
use ivflake_server::IndexConfig;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_http_equals_faiss_and_the_library() {
    let (server, _dir, path) = local(|_, _| {}).await;
    let q = queries(8);
    let url = server.url("/v1/indexes/idx/search");

    let (status, body) = post_json(&url, &search_body(&q, 0..8, 10, 8)).await;
    assert_eq!(status, 200, "{body}");
    let expected = library_results(&path, &q, 10, 8, IdFilterSpec::All).await;
    assert_eq!(response_results(&body), library_bits(&expected));
    assert_eq!(
        library_bits(&expected),
        faiss_results(&path, &q, 10, 8, &IdFilterSpec::All)
    );
    assert_eq!(body["k"], 10);
    assert_eq!(body["nprobe"], 8);
    assert_eq!(body["stats"]["queries"], 8);
    assert!(body["stats"]["lists_probed"].as_u64().unwrap() > 0);
    assert!(!body["version"].as_str().unwrap().is_empty());

    // Filtered answers equal Faiss's own search with the same IDSelector.
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
        assert_eq!(
            response_results(&body),
            faiss_results(&path, &q, 5, 16, &spec),
            "{filter}"
        );
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
        assert_eq!(
            response_results(&body),
            faiss_results(&path, &q, 5, 16, &spec),
            "binary filter"
        );
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
    let key = unique_key("server-tests", "e2e");
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

    let status: Value = get_json(&server.url("/v1/indexes/s3idx")).await;
    assert_eq!(status["uri"], uri.as_str());
    server.stop().await;
}

/// `allow_partial` over HTTP: with one list's GETs failing, a search that
/// allows it answers 200 from the other lists and names the failed one; one
/// that does not gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_partial_answers_from_the_lists_that_arrived() {
    use std::sync::Arc;

    use ivflake::{IndexLocation, IvfIndex};
    use object_store::ObjectStore;

    // Over 16 MiB of lists (300,000 × 16 floats), so even coalesced they
    // take two GETs: failing the first leaves the second's lists to answer.
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    inner
        .put(&"idx.faiss".into(), PutPayload::from(index_bytes(1, 300_000)))
        .await
        .unwrap();
    // The first non-empty list, from the library's own view of the file.
    let plain = IvfIndex::open_at(
        IndexLocation::new(inner.clone(), "idx.faiss", "memory://partial/idx.faiss"),
        Default::default(),
    )
    .await
    .unwrap();
    let list = (0..plain.info().nlist)
        .find(|&l| plain.list_ranges().get(l).is_some_and(|r| r.len > 0))
        .unwrap();
    let failing = plain.list_ranges().get(list).unwrap().range().start;

    let faulty = Arc::new(ivflake_testkit::faulty_store(inner, 0));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut c = config();
    c.cache.memory_bytes = 0;
    let server = ivflake_server::Server::bind(c).await.unwrap();
    let location = IndexLocation::new(store, "idx.faiss", "memory://partial/idx.faiss");
    server
        .add_index("idx", location, IndexConfig::new("memory://partial/idx.faiss"))
        .await
        .unwrap();
    let server = TestServer::run(server).await;
    faulty.set(ivflake_testkit::Fault::FailAt(failing));

    let url = server.url("/v1/indexes/idx/search");
    let mut request = search_body(&queries(1), 0..1, 5, 32);
    let (status, body) = post_json(&url, &request).await;
    assert_eq!(status, 503, "{body}");
    request["allow_partial"] = json!(true);
    let (status, body) = post_json(&url, &request).await;
    assert_eq!(status, 200, "{body}");
    let failed = body["stats"]["failed_lists"].as_array().expect("failed_lists");
    assert!(failed.contains(&json!(list)), "{body}");
    assert!(failed.len() < 32, "the other lists answered: {body}");
    assert_eq!(body["results"][0]["ids"].as_array().unwrap().len(), 5, "{body}");
    server.stop().await;
}

/// A refined index (`IVF32,PQ4np,RFlat`, built here): `k_factor` in a JSON
/// body and in a binary search's query string gives Faiss's own refined
/// answer; past `limits.max_k_factor` it is a 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_factor_reaches_the_refine_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("refined.faiss");
    let data = ivflake_testkit::clustered(N, D, 1);
    let mut built = ivflake_faiss::Index::factory(D, "IVF32,PQ4np,RFlat", ivflake::Metric::L2).unwrap();
    built.train(&data).unwrap();
    built.add(&data).unwrap();
    let bytes = built.to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let mut config = config();
    config
        .indexes
        .insert("r".into(), IndexConfig::new(path.to_str().unwrap()));
    let server = TestServer::start(config).await;
    let url = server.url("/v1/indexes/r/search");
    let q = queries(6);
    for k_factor in [1.0f32, 4.0, 16.0] {
        let expected = reference
            .search_refined(&q, 10, 4, k_factor, ivflake_faiss::IdFilter::All)
            .unwrap();
        let expected = (
            expected.labels,
            expected.distances.iter().map(|d| d.to_bits()).collect::<Vec<_>>(),
        );
        let mut request = search_body(&q, 0..6, 10, 4);
        request["k_factor"] = json!(k_factor);
        let (status, body) = post_json(&url, &request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(response_results(&body), expected, "JSON, k_factor {k_factor}");
        assert!(body["stats"]["refine_candidates"].as_u64().unwrap() >= 60);
        let raw: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
        let response = client()
            .post(format!("{url}?rows=6&k=10&nprobe=4&k_factor={k_factor}"))
            .header("content-type", "application/octet-stream")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(response_results(&body), expected, "binary, k_factor {k_factor}");
    }
    let mut request = search_body(&q, 0..1, 10, 4);
    request["k_factor"] = json!(1000);
    let (status, body) = post_json(&url, &request).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "k_factor", "{body}");
    server.stop().await;
}
