//! `Index::search_filtered`: Faiss's in-memory search with an `IDSelector`
//! honours every filter kind and, with no filter, equals `search`.
use crate::common::{vectors, D};
use ivflake_faiss::{IdFilter, Index, Metric};

fn built(factory: &str, metric: Metric) -> Index {
    let data = vectors(2000, 1);
    let mut index = Index::factory(D, factory, metric).expect("factory");
    index.train(&data).expect("train");
    index.add(&data).expect("add");
    index
}

#[test]
fn no_filter_equals_search() {
    let index = built("IVF16,Flat", Metric::L2);
    let queries = vectors(5, 7);
    let plain = index.search(&queries, 10, 4).unwrap();
    let filtered = index.search_filtered(&queries, 10, 4, IdFilter::All).unwrap();
    assert_eq!(plain, filtered);
}

#[test]
fn every_filter_kind_restricts_the_ids() {
    for (factory, metric) in [("IVF16,Flat", Metric::L2), ("IVF16,PQ4np", Metric::InnerProduct)] {
        let index = built(factory, metric);
        let queries = vectors(5, 9);
        let unfiltered = index.search(&queries, 10, 16).unwrap();
        // Deny the unfiltered winners: none of them may come back.
        let winners: Vec<i64> = unfiltered.labels.iter().copied().filter(|&l| l >= 0).collect();
        let denied = index
            .search_filtered(&queries, 10, 16, IdFilter::Deny(&winners))
            .unwrap();
        assert!(
            denied.labels.iter().all(|l| !winners.contains(l)),
            "{factory}: a denied id came back"
        );
        assert!(
            denied.labels.iter().all(|&l| l >= 0),
            "{factory}: enough other ids exist"
        );

        let allowed_ids: Vec<i64> = (0..2000).step_by(7).collect();
        let allowed = index
            .search_filtered(&queries, 10, 16, IdFilter::Allow(&allowed_ids))
            .unwrap();
        assert!(
            allowed.labels.iter().all(|&l| l % 7 == 0),
            "{factory}: an id outside the allow list"
        );

        let ranged = index
            .search_filtered(&queries, 10, 16, IdFilter::Range(100, 200))
            .unwrap();
        assert!(
            ranged.labels.iter().all(|&l| (100..200).contains(&l)),
            "{factory}: an id outside the range"
        );
        // nprobe = nlist visits every list, so an allow-all filter equals no filter.
        let everything: Vec<i64> = (0..2000).collect();
        let all = index
            .search_filtered(&queries, 10, 16, IdFilter::Allow(&everything))
            .unwrap();
        assert_eq!(all, unfiltered, "{factory}");
    }
}
