//! Attribute filters over HTTP: `attribute_filter` and `return_attributes`
//! in a JSON body, a 400 naming the filter's JSON path, and the OpenAPI
//! document describing both.

use std::sync::Arc;

use crate::common::*;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use ivflake::{IvfIndex, ParquetTable};
use serde_json::{json, Value};

/// Writes attributes beside the local index: `tag` = "a", "b" or "c" by id
/// modulo 3, `score` = the id as a float.
async fn attach(path: &str) {
    let index = IvfIndex::open(path).await.expect("open");
    let lists = index.list_ids().await.expect("ids");
    let ids: Vec<i64> = (0..N as i64).collect();
    let tags: Vec<&str> = ids.iter().map(|i| ["a", "b", "c"][(i % 3) as usize]).collect();
    let batch = RecordBatch::try_from_iter([
        ("tag", Arc::new(StringArray::from(tags)) as ArrayRef),
        (
            "score",
            Arc::new(Float64Array::from(ids.iter().map(|&i| i as f64).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .expect("batch");
    let bytes = ivflake::write_attributes(&ParquetTable { batch }, &ids, &lists).expect("attributes");
    std::fs::write(format!("{path}{}", ivflake::ATTRIBUTES_SUFFIX), bytes).expect("write attributes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_filters_in_the_json_body() {
    let (server, _dir, path) = local(|_, _| {}).await;
    attach(&path).await;
    let q = queries(6);
    let url = server.url("/v1/indexes/idx/search");

    let mut body = search_body(&q, 0..6, 10, 8);
    body["attribute_filter"] = json!({"tag": "b", "score": {"$lt": 3000}});
    body["return_attributes"] = json!(["score"]);
    body["filter"] = json!({"range": {"start": 0, "end": 3500}});
    let (status, response) = post_json(&url, &body).await;
    assert_eq!(status, 200, "{response}");
    let mut hits = 0;
    for result in response["results"].as_array().expect("results") {
        let attrs = result["attributes"].as_array().expect("attributes");
        for (id, a) in result["ids"].as_array().unwrap().iter().zip(attrs) {
            let id = id.as_i64().unwrap();
            if id < 0 {
                continue;
            }
            assert_eq!(id % 3, 1, "id {id} is not tagged b");
            assert!(id < 3000, "id {id} fails the score bound");
            assert_eq!(a["score"].as_f64(), Some(id as f64));
            hits += 1;
        }
    }
    assert!(hits >= 6 * 9, "too few hits: {hits}");

    // Bad filters are 400s naming the JSON path.
    for (filter, field) in [
        (json!({"score": {"$gt": "x"}}), "attribute_filter.score.$gt"),
        (json!({"colour": "red"}), "attribute_filter.colour"),
        (json!({"tag": {"$regex": "a"}}), "attribute_filter.tag.$regex"),
        (json!({"$or": [{"tag": "a"}, 3]}), "attribute_filter.$or[1]"),
    ] {
        let mut body = search_body(&q, 0..1, 5, 4);
        body["attribute_filter"] = filter.clone();
        let (status, response) = post_json(&url, &body).await;
        assert_eq!(status, 400, "{filter}: {response}");
        assert_eq!(response["error"]["field"], field, "{filter}: {response}");
    }

    let doc: Value = get_json(&server.url("/openapi.json")).await;
    let props = &doc["components"]["schemas"]["SearchRequest"]["properties"];
    assert!(props["attribute_filter"].is_object(), "{props}");
    assert!(props["return_attributes"].is_object(), "{props}");
}
