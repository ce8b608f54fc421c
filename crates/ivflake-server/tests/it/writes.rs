//! The write routes of a writable index over HTTP: upserts and deletes are
//! searchable in the next request and equal the library's own writes on
//! Faiss's reference, with attributes filtered and returned as Faiss with
//! an `IDSelector` of the matching ids; compaction keeps the answers; the write token writes
//! and searches but administers nothing, a search token cannot write, a
//! read-only index refuses writes, and oversize writes are refused naming
//! the field.

use ivflake::{Metric, MutableIndex, MutableOptions};
use ivflake_server::{IndexConfig, Secret};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{client, config, queries, TestServer};

use crate::common::D;

fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    ivflake_testkit::clustered(n, D, seed)
        .chunks(D)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Every query's ids of a search response, in order.
fn result_ids(found: &Value) -> Vec<i64> {
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ids"].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()))
        .collect()
}

/// The current base of the index at `root`, as its newest commit point names it.
fn after_base(root: &str) -> String {
    let mut versions: Vec<_> = std::fs::read_dir(format!("{root}/_versions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    versions.sort();
    let newest: Value = serde_json::from_slice(&std::fs::read(versions.last().unwrap()).unwrap()).unwrap();
    newest["base"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_http_are_searchable_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let root = root.to_str().unwrap().to_string();
    MutableIndex::create(&root, D, Metric::L2, "IVF8,Flat", MutableOptions::default())
        .await
        .unwrap();
    let mut c = config();
    c.indexes.insert(
        "w".into(),
        IndexConfig {
            writable: true,
            ..IndexConfig::new(&root)
        },
    );
    let ro = dir.path().join("ro.faiss");
    std::fs::write(&ro, crate::common::index_bytes(1, 1000)).unwrap();
    c.indexes.insert("ro".into(), IndexConfig::new(ro.to_str().unwrap()));
    c.auth.token = Some(Secret::new("admin"));
    c.auth.search_token = Some(Secret::new("reader"));
    c.auth.write_token = Some(Secret::new("writer"));
    c.limits.max_write_rows = 500;
    let server = TestServer::start(c).await;
    let post = |path: &str, token: &str, body: Value| {
        let url = server.url(path);
        let token = token.to_string();
        async move {
            let r = client().post(url).bearer_auth(token).json(&body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let data = vectors(400, 9);
    let ids: Vec<i64> = (0..400).map(|i| 10 * i).collect();
    // Every third id is red; half carry a number; the last 100 none at all.
    let attributes: Vec<Value> = (0..400)
        .map(|i| match i {
            300.. => json!({}),
            _ if i % 2 == 0 => json!({"color": if i % 3 == 0 { "red" } else { "blue" }, "n": i}),
            _ => json!({"color": if i % 3 == 0 { "red" } else { "blue" }}),
        })
        .collect();
    let (status, body) = post(
        "/v1/indexes/w/upsert",
        "writer",
        json!({"ids": ids, "vectors": data, "attributes": attributes}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], 400);
    let (status, body) = post("/v1/indexes/w/delete", "writer", json!({"ids": [0, 10, 20]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The reference: Faiss in memory, exact, after the same writes.
    let mut exact = ivflake_faiss::Index::factory(D, "IDMap,Flat", Metric::L2).unwrap();
    exact.add_with_ids(&data[3..].concat(), &ids[3..]).unwrap();
    let q = queries(5);
    let expected = exact.search(&q, 10, 1).unwrap();
    let search = json!({"vectors": q.chunks(D).map(<[f32]>::to_vec).collect::<Vec<_>>(), "k": 10, "nprobe": 8});
    let (status, found) = post("/v1/indexes/w/search", "reader", search.clone()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        result_ids(&found),
        expected.labels,
        "the writes are searchable at once, exactly"
    );
    assert_eq!(found["stats"]["log_position"], 1);
    let red: Vec<i64> = (3..300).filter(|i| i % 3 == 0).map(|i| 10 * i).collect();
    let filtered = |expected: &ivflake_faiss::Neighbors, found: &Value, what: &str| {
        assert_eq!(result_ids(found), expected.labels, "{what}: {found}");
        for r in found["results"].as_array().unwrap() {
            for (id, a) in r["ids"]
                .as_array()
                .unwrap()
                .iter()
                .zip(r["attributes"].as_array().unwrap())
            {
                let i = id.as_i64().unwrap() / 10;
                let n = if i % 2 == 0 { json!(i) } else { Value::Null };
                assert_eq!(a["n"], n, "{what}: id {id}");
            }
        }
    };
    // Get: raw vectors bit for bit and attributes; null for deleted and unknown ids.
    let (status, got) = post("/v1/indexes/w/get", "reader", json!({"ids": [0, 30, 40, 3010, 7]})).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let rows = got["rows"].as_array().unwrap();
    assert_eq!((rows[0].is_null(), rows[4].is_null()), (true, true), "{got}");
    assert_eq!(rows[1]["attributes"], json!({"color": "red"}), "{got}");
    assert_eq!(rows[2]["attributes"], json!({"color": "blue", "n": 4}), "{got}");
    assert_eq!(rows[3]["attributes"], json!({}), "{got}");
    let vector: Vec<f32> = serde_json::from_value(rows[1]["vector"].clone()).unwrap();
    assert_eq!(vector, data[3], "{got}");
    let (status, body) = post(
        "/v1/indexes/w/get",
        "reader",
        json!({"ids": (0..1001).collect::<Vec<i64>>()}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ids")),
        "{body}"
    );
    let mut by_color = search.clone();
    by_color["attribute_filter"] = json!({"color": "red"});
    by_color["return_attributes"] = json!(["n"]);
    let expected_red = exact
        .search_filtered(&q, 10, 1, ivflake_faiss::IdFilter::Allow(&red))
        .unwrap();
    let (status, found) = post("/v1/indexes/w/search", "reader", by_color.clone()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    filtered(&expected_red, &found, "filtered before compaction");
    let (status, body) = post(
        "/v1/indexes/w/upsert",
        "writer",
        json!({"ids": [5], "vectors": [vec![0.0; D]], "attributes": [{"color": 7}]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("attributes")),
        "a column keeps its type: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attributes[0].color"),
        "{body}"
    );

    let (status, report) = post("/v1/indexes/w/compact", "admin", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["compacted"]["trained"], true, "400 vectors train IVF8");
    let (_, after) = post("/v1/indexes/w/search", "reader", search).await;
    assert_eq!(after["version"], "v1");
    let (status, found) = post("/v1/indexes/w/search", "reader", by_color).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let trained = ivflake_faiss::read_index(&std::fs::read(format!("{root}/{}", after_base(&root))).unwrap()).unwrap();
    let expected_red = trained
        .search_filtered(&q, 10, 8, ivflake_faiss::IdFilter::Allow(&red))
        .unwrap();
    filtered(&expected_red, &found, "filtered after compaction");
    let status_json: Value = client()
        .get(server.url("/v1/indexes/w"))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status_json["nlist"].as_u64(), Some(8), "{status_json}");

    // Scopes: the write token searches and writes, nothing more; the
    // search token cannot write.
    let (status, _) = post(
        "/v1/indexes/w/search",
        "writer",
        json!({"vectors": [vec![0.0; D]], "k": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post("/v1/indexes", "writer", json!({"name": "x", "uri": root})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"), "{body}");
    let (status, _) = post("/v1/indexes/w/reload", "writer", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Read-only indexes and limits.
    let (status, body) = post(
        "/v1/indexes/w/upsert",
        "reader",
        json!({"ids": [1], "vectors": [vec![0.0; D]]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("write or admin"),
        "{body}"
    );
    let (status, body) = post(
        "/v1/indexes/ro/upsert",
        "admin",
        json!({"ids": [1], "vectors": [vec![0.0; D]]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_writable"))
    );
    let many: Vec<i64> = (0..501).collect();
    let (status, body) = post("/v1/indexes/w/delete", "admin", json!({"ids": many})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ids")),
        "{body}"
    );
    let (status, body) = post(
        "/v1/indexes/w/upsert",
        "admin",
        json!({"ids": [1], "vectors": [vec![0.0; 3]]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("vectors")),
        "{body}"
    );
    let (status, body) = post(
        "/v1/indexes/w/upsert",
        "admin",
        json!({"ids": [1, 1], "vectors": [vec![0.0; D], vec![0.0; D]]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ids")),
        "{body}"
    );
    server.stop().await;
}
