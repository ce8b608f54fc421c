//! Results equal Faiss searching the same file fully in memory, bit for bit,
//! for every supported type and metric.

use crate::common::*;
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
    // Filtered: Faiss's own search with the same IDSelector is the reference.
    let what = format!("{factory} {metric:?}");
    for (k, nprobe) in [(10, 4), (25, 16)] {
        assert_filters_match_faiss(&index, &reference, &queries[..40 * D], k, nprobe, &what).await;
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
    ivfpq_l2: "IVF32,PQ8np", Metric::L2;
    ivfpq_ip: "IVF32,PQ8np", Metric::InnerProduct;
    ivfpq_nores_l2: "IVF32,PQ6np", Metric::L2;
    ivfsq8_l2: "IVF32,SQ8", Metric::L2;
    ivfsq8_ip: "IVF32,SQ8", Metric::InnerProduct;
    ivfsq4_l2: "IVF32,SQ4", Metric::L2;
    ivfsqfp16_ip: "IVF32,SQfp16", Metric::InnerProduct;
    ivfsq6_l2: "IVF32,SQ6", Metric::L2;
    opq_ivfpq_l2: "OPQ8,IVF32,PQ8np", Metric::L2;
    opq_ivfpq_ip: "OPQ8,IVF32,PQ8np", Metric::InnerProduct;
    pca_ivfflat_l2: "PCA12,IVF32,Flat", Metric::L2;
    pcar_ivfsq8_ip: "PCAR16,IVF32,SQ8", Metric::InnerProduct;
    hnsw_quantizer_l2: "IVF32_HNSW8,Flat", Metric::L2;
    hnsw_quantizer_pq_ip: "IVF32_HNSW8,PQ8np", Metric::InnerProduct;
    fastscan_l2: "IVF32,PQ8x4fs", Metric::L2;
    fastscan_ip: "IVF32,PQ8x4fs", Metric::InnerProduct;
    opq_fastscan_l2: "OPQ8,IVF32,PQ8x4fs", Metric::L2;
    hnsw_quantizer_fastscan_ip: "IVF32_HNSW8,PQ12x4fs", Metric::InnerProduct;
    rabitq_l2: "IVF32,RaBitQ", Metric::L2;
    rabitq_ip: "IVF32,RaBitQ", Metric::InnerProduct;
}

/// Faiss's unfiltered answer over the same probed lists with every candidate
/// kept (k = ntotal), filtered afterwards and cut to `k`: what a filtered
/// search must return, since a filter only removes candidates.
fn post_filtered(
    reference: &ivflake_faiss::Index,
    queries: &[f32],
    k: usize,
    nprobe: usize,
    keep: impl Fn(i64) -> bool,
) -> (Vec<i64>, Vec<u32>) {
    let all = reference.info().ntotal as usize;
    let everything = reference.search(queries, all, nprobe).expect("faiss search");
    let (mut ids, mut bits) = (Vec::new(), Vec::new());
    for q in 0..queries.len() / D {
        let row = q * all..(q + 1) * all;
        let kept: Vec<(i64, f32)> = everything.labels[row.clone()]
            .iter()
            .zip(&everything.distances[row])
            .filter(|(&id, _)| id >= 0 && keep(id))
            .map(|(&id, &d)| (id, d))
            .take(k)
            .collect();
        ids.extend(kept.iter().map(|p| p.0));
        bits.extend(kept.iter().map(|p| p.1.to_bits()));
        ids.extend(std::iter::repeat_n(-1, k - kept.len()));
        bits.extend(std::iter::repeat_n(u32::MAX, k - kept.len()));
    }
    (ids, bits)
}

/// ivflake's filtered results, with the distances of padding slots (id -1)
/// masked as `post_filtered` masks them.
fn masked(r: &ivflake::SearchResults) -> (Vec<i64>, Vec<u32>) {
    let bits = r
        .ids
        .iter()
        .zip(&r.distances)
        .map(|(&id, d)| if id < 0 { u32::MAX } else { d.to_bits() })
        .collect();
    (r.ids.clone(), bits)
}

/// Which ids a filter keeps, as a plain predicate.
type Keep = Box<dyn Fn(i64) -> bool>;

#[tokio::test]
async fn id_filters_match_a_post_filter() {
    use ivflake::IdFilterSpec;
    for (factory, metric) in [
        ("IVF16,Flat", Metric::L2),
        ("IVF16,PQ8np", Metric::InnerProduct),
        ("IVF16,SQ8", Metric::L2),
    ] {
        let bytes = build_index(factory, metric, D, N);
        let reference = ivflake_faiss::read_index(&bytes).expect("full read");
        let (index, _) = open_in_memory(bytes, FetchConfig::default()).await;
        let q = clustered(6, D, 5);
        let (k, nprobe) = (20, 4);
        let unfiltered = index.search(&q, k, nprobe).await.unwrap();
        // Deny the best half of each row, so the filtered answer reaches further.
        let denied: Vec<i64> = unfiltered.ids.chunks(k).flat_map(|row| row[..k / 2].to_vec()).collect();
        let allowed: Vec<i64> = (0..N as i64).filter(|i| i % 3 == 0).collect();
        // A few ids, some of them in the first row's answer (unsorted, as a client may send them).
        let mut few: Vec<i64> = unfiltered.ids[k / 2..k].iter().rev().copied().collect();
        few.extend([9, 8, 7]);
        let cases: Vec<(IdFilterSpec, Keep)> = vec![
            (
                IdFilterSpec::Range { start: 1000, end: 2500 },
                Box::new(|id| (1000..2500).contains(&id)),
            ),
            (
                IdFilterSpec::Allow(allowed.clone()),
                Box::new(move |id| allowed.binary_search(&id).is_ok()),
            ),
            (IdFilterSpec::Allow(few.clone()), Box::new(move |id| few.contains(&id))),
            (
                IdFilterSpec::Deny(denied.clone()),
                Box::new(move |id| !denied.contains(&id)),
            ),
            (IdFilterSpec::Deny(vec![]), Box::new(|_| true)),
        ];
        for (spec, keep) in cases {
            let what = format!("{factory} {metric:?} {:?}", std::mem::discriminant(&spec));
            let mut params = ivflake::SearchParams::new(k, nprobe);
            params.filter = spec;
            let ours = index.search_with(&q, &params).await.unwrap();
            let expected = post_filtered(&reference, &q, k, nprobe, keep);
            assert!(
                expected.0.iter().any(|&id| id >= 0),
                "{what}: the filter keeps something"
            );
            assert_eq!(masked(&ours), expected, "{what}");
        }
    }
}
