//! Faults on the wire, over HTTP: the server serves a faiss-cpu fixture
//! from the real S3-protocol server (moto) through
//! `ivflake_testkit::FaultProxy`. Each fault gets its own status and code
//! within the search's deadline, no 200 carries a wrong answer (the
//! checksum sidecar is present), and once the proxy forwards untouched
//! again the same search is exact.

use crate::common::*;
use ivflake::IndexLocation;
use ivflake_server::{IndexConfig, Server};
use ivflake_testkit::{fixtures, read_npy, write_sidecar, FaultProxy, ProxyFault};
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

const FIXTURE: &str = "ivfpq_l2";
/// Each GET gets this long and is re-sent once, so a stalled store fails a
/// search in about 2 × this, well inside the request's deadline.
const GET_TIMEOUT_MS: u64 = 500;
const DEADLINE_MS: u64 = 15_000;

/// The fixture under a key of this run, with its checksum sidecar written
/// by the library's manifest API (straight to moto, not through the proxy).
async fn fixture_with_sidecar() -> (String, String) {
    let (bucket, store) = s3_store();
    let key = unique_key("server-tests", FIXTURE);
    let bytes = std::fs::read(fixtures().join(format!("{FIXTURE}.faiss"))).unwrap();
    store
        .put(&object_store::path::Path::from(key.as_str()), PutPayload::from(bytes))
        .await
        .expect("put");
    write_sidecar(IndexLocation::new(store, key.as_str(), format!("s3://{bucket}/{key}"))).await;
    (bucket, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_faults_get_their_status_never_a_wrong_200_and_the_server_recovers() {
    let endpoint = moto().endpoint;
    let (bucket, key) = fixture_with_sidecar().await;
    let proxy = FaultProxy::start(&endpoint).await;

    let mut c = config();
    // No cache: every search GETs its lists through the proxy.
    c.cache.memory_bytes = 0;
    c.fetch.get_timeout_ms = GET_TIMEOUT_MS;
    let server = Server::bind(c).await.expect("bind");
    let uri = format!("s3://{bucket}/{key}");
    server
        .add_index(
            "px",
            IndexLocation::new(proxy.s3_store(&bucket), key.as_str(), uri.as_str()),
            IndexConfig::new(&uri),
        )
        .await
        .expect("open through the healthy proxy (sidecar used)");
    let server = TestServer::run(server).await;
    let url = server.url("/v1/indexes/px/search");

    // The fixtures' queries and faiss-cpu's answers: d = 32, k = 10, nprobe = 8 (manifest.json).
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let (d, k, nprobe) = (
        manifest["d"].as_u64().unwrap() as usize,
        manifest["k"].as_u64().unwrap() as usize,
        manifest["nprobe"].as_u64().unwrap() as usize,
    );
    const ROWS: usize = 8;
    let queries: Vec<f32> = read_npy(&fixtures().join("queries.npy")).0[..ROWS * d * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<i64> = read_npy(&fixtures().join(format!("{FIXTURE}.ids.npy"))).0[..ROWS * k * 8]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let vectors: Vec<&[f32]> = queries.chunks(d).collect();
    let request = json!({"vectors": vectors, "k": k, "nprobe": nprobe, "timeout_ms": DEADLINE_MS});

    let (status, body) = post_json(&url, &request).await;
    assert_eq!(status, 200, "{body}");
    let healthy = response_results(&body);
    // faiss-cpu's answers, up to its other build's ties.
    let same = healthy.0.iter().zip(&expected).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= 0.97 * expected.len() as f64,
        "{same} of {}",
        expected.len()
    );

    for (fault, want_status, want_code) in [
        (ProxyFault::ServerError, 503, "store_unavailable"),
        (ProxyFault::Stall, 503, "store_unavailable"),
        (ProxyFault::Reset, 503, "store_unavailable"),
        (ProxyFault::Truncate, 503, "store_unavailable"),
        (ProxyFault::FlipByte, 502, "index_corrupt"),
    ] {
        let faulted_before = proxy.faulted();
        proxy.inject(fault, &key);
        let r = client().post(&url).json(&request).send().await.expect("answered");
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let body: Value = r.json().await.expect("a JSON body");
        assert!(proxy.faulted() > faulted_before, "{fault:?} was never injected");
        if status == 200 {
            let wrong = response_results(&body) != healthy;
            panic!("{fault:?}: a 200 through a damaged store (wrong answer: {wrong})");
        }
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{fault:?}: {body}"
        );
        assert_eq!(retry_after, want_status == 503, "{fault:?}: Retry-After");

        proxy.clear();
        let (status, body) = post_json(&url, &request).await;
        assert_eq!(status, 200, "{fault:?}: after recovery: {body}");
        assert_eq!(response_results(&body), healthy, "{fault:?}: not exact after recovery");
    }
    server.stop().await;
}
