//! Many concurrent searches on a small runtime: no deadlock, correct answers.

use crate::common::*;
use ivflake::{FetchConfig, Metric};

#[test]
fn five_hundred_concurrent_searches_on_two_workers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let d = 16;
        let bytes = build_index("IVF32,PQ8np", Metric::L2, d, 4000);
        let reference = ivflake_faiss::read_index(&bytes).unwrap();
        // A small cache, so searches both hit and miss while others fetch.
        let config = FetchConfig {
            memory_cache_bytes: 16 * 1024,
            max_in_flight: 8,
            ..FetchConfig::default()
        };
        let (index, _) = open_in_memory(bytes, config).await;
        let queries = clustered(500, d, 11);
        let tasks: Vec<_> = queries
            .chunks(d)
            .enumerate()
            .map(|(i, q)| {
                let index = index.clone();
                let q = q.to_vec();
                tokio::spawn(async move { (i, index.search(&q, 10, 1 + i % 8).await) })
            })
            .collect();
        let done = tokio::time::timeout(std::time::Duration::from_secs(120), futures::future::join_all(tasks))
            .await
            .expect("500 searches finish well within two minutes");
        assert_eq!(done.len(), 500);
        for joined in done {
            let (i, result) = joined.unwrap();
            let result = result.unwrap();
            let q = &queries[i * d..(i + 1) * d];
            assert_same(
                &result,
                &reference.search(q, 10, 1 + i % 8).unwrap(),
                &format!("query {i}"),
            );
        }
    });
}
