//! Results equal Faiss searching the same file fully in memory, bit for bit,
//! for every supported type and metric.

mod common;

use common::*;
use ivflake::Metric;

const D: usize = 24;
const N: usize = 4000;

async fn check(factory: &str, metric: Metric) {
    let bytes = build_index(factory, metric, D, N);
    let reference = ivflake_faiss::read_index(&bytes).expect("full read");
    let (index, _) = open_in_memory(bytes, FetchConfig::default()).await;
    assert_eq!(index.info().metric, metric);
    let queries = clustered(300, D, 99);
    for (k, nprobe) in [(1, 1), (10, 4), (25, 16), (5, 32)] {
        // Batched, then a few single queries, which take another code path in Faiss.
        let ours = index.search(&queries, k, nprobe).await.expect("search");
        let theirs = reference.search(&queries, k, nprobe).expect("faiss search");
        assert_same(&ours, &theirs, &format!("{factory} {metric:?} k={k} nprobe={nprobe}"));
        for q in queries.chunks(D).take(5) {
            let ours = index.search(q, k, nprobe).await.expect("search");
            let theirs = reference.search(q, k, nprobe).expect("faiss search");
            assert_same(&ours, &theirs, &format!("{factory} {metric:?} single k={k}"));
        }
    }
}

use ivflake::FetchConfig;

macro_rules! equivalence {
    ($($name:ident: $factory:expr, $metric:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check($factory, $metric).await;
        }
    )*};
}

equivalence! {
    ivfflat_l2: "IVF32,Flat", Metric::L2;
    ivfflat_ip: "IVF32,Flat", Metric::InnerProduct;
    ivfpq_l2: "IVF32,PQ8", Metric::L2;
    ivfpq_ip: "IVF32,PQ8", Metric::InnerProduct;
    ivfpq_nores_l2: "IVF32,PQ6np", Metric::L2;
    ivfsq8_l2: "IVF32,SQ8", Metric::L2;
    ivfsq8_ip: "IVF32,SQ8", Metric::InnerProduct;
    ivfsq4_l2: "IVF32,SQ4", Metric::L2;
    ivfsqfp16_ip: "IVF32,SQfp16", Metric::InnerProduct;
    ivfsq6_l2: "IVF32,SQ6", Metric::L2;
    opq_ivfpq_l2: "OPQ8,IVF32,PQ8", Metric::L2;
    opq_ivfpq_ip: "OPQ8,IVF32,PQ8", Metric::InnerProduct;
    pca_ivfflat_l2: "PCA12,IVF32,Flat", Metric::L2;
    pcar_ivfsq8_ip: "PCAR16,IVF32,SQ8", Metric::InnerProduct;
    hnsw_quantizer_l2: "IVF32_HNSW8,Flat", Metric::L2;
    hnsw_quantizer_pq_ip: "IVF32_HNSW8,PQ8", Metric::InnerProduct;
    fastscan_l2: "IVF32,PQ8x4fs", Metric::L2;
    fastscan_ip: "IVF32,PQ8x4fs", Metric::InnerProduct;
    opq_fastscan_l2: "OPQ8,IVF32,PQ8x4fs", Metric::L2;
    hnsw_quantizer_fastscan_ip: "IVF32_HNSW8,PQ12x4fs", Metric::InnerProduct;
    rabitq_l2: "IVF32,RaBitQ", Metric::L2;
    rabitq_ip: "IVF32,RaBitQ", Metric::InnerProduct;
}

#[tokio::test]
async fn id_filters_match_a_post_filter() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, N);
    let (index, _) = open_in_memory(bytes, FetchConfig::default()).await;
    let q = clustered(1, D, 5);
    let mut params = ivflake::SearchParams::new(50, 16);
    params.filter = ivflake::IdFilterSpec::Range { start: 100, end: 200 };
    let r = index.search_with(&q, &params).await.unwrap();
    assert!(r.ids.iter().all(|&id| id == -1 || (100..200).contains(&id)));
    assert!(r.ids.iter().any(|&id| id != -1));
    params.filter = ivflake::IdFilterSpec::Allow(vec![7, 8, 9]);
    let r = index.search_with(&q, &params).await.unwrap();
    let mut found: Vec<i64> = r.ids.iter().copied().filter(|&i| i != -1).collect();
    found.sort();
    assert_eq!(found, vec![7, 8, 9]);
    params.filter = ivflake::IdFilterSpec::Deny(vec![]);
    let unfiltered = index.search(&q, 50, 16).await.unwrap();
    assert_eq!(index.search_with(&q, &params).await.unwrap().ids, unfiltered.ids);
    let denied = unfiltered.ids[0];
    params.filter = ivflake::IdFilterSpec::Deny(vec![denied]);
    assert!(!index.search_with(&q, &params).await.unwrap().ids.contains(&denied));
}
