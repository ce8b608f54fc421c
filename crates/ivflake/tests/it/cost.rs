//! Each search's cost (`SearchStats::cost`) against what the store itself
//! saw: the GETs, LISTs and bytes a counting wrapper recorded, priced by hand.

use std::sync::Arc;

use crate::common::*;
use ivflake::{
    CompactOptions, FetchConfig, IndexLocation, Metric, MutableIndex, MutableOptions, Staleness, StorePrices,
};
use ivflake_testkit::counting_store;
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

/// Prices far from the defaults, each part visible in the sum.
const PRICES: StorePrices = StorePrices {
    per_get: 1e-6,
    per_list: 1e-3,
    per_gb: 2.0,
};

fn priced() -> FetchConfig {
    FetchConfig {
        prices: PRICES,
        ..FetchConfig::default()
    }
}

fn by_hand(gets: usize, lists: usize, bytes: u64) -> f64 {
    gets as f64 * PRICES.per_get + lists as f64 * PRICES.per_list + bytes as f64 / (1u64 << 30) as f64 * PRICES.per_gb
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[tokio::test]
async fn a_search_is_priced_by_the_gets_and_bytes_the_store_saw() {
    let bytes = build_index("IVF64,Flat", Metric::L2, D, 6000);
    let (index, counting) = open_in_memory(bytes, priced()).await;
    let queries = clustered(4, D, 3);
    counting.reset();
    let cold = index.search(&queries, 10, 16).await.unwrap().stats;
    let store_bytes: u64 = counting.ranges().iter().map(|r| r.end - r.start).sum();
    assert!(counting.gets() > 0);
    assert_eq!(cold.cost.get_requests, counting.gets() as u64);
    assert_eq!(cold.cost.list_requests, 0);
    assert_eq!(cold.cost.bytes, store_bytes);
    assert!(
        close(cold.cost.usd, by_hand(counting.gets(), 0, store_bytes)),
        "{:?}",
        cold.cost
    );

    // Warm: every list from memory, nothing sent, nothing owed.
    counting.reset();
    let warm = index.search(&queries, 10, 16).await.unwrap().stats;
    assert_eq!(counting.gets(), 0);
    assert_eq!((warm.cost.get_requests, warm.cost.bytes, warm.cost.usd), (0, 0, 0.0));
}

#[tokio::test]
async fn a_mutable_search_also_pays_for_reading_the_log() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let root = IndexLocation::new(store, "idx", "memory://cost/idx");
    let options = MutableOptions {
        staleness: Staleness::Strong,
        open: options(priced()),
        ..MutableOptions::default()
    };
    let writer = MutableIndex::create_at(root.clone(), D, Metric::L2, "IVF8,Flat", options.clone())
        .await
        .unwrap();
    let ids: Vec<i64> = (0..2000).collect();
    writer.upsert(&clustered(2000, D, 1), &ids).await.unwrap();
    writer.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let reader = MutableIndex::open_at(root, options).await.unwrap();
    let queries = clustered(2, D, 5);

    // Nothing new: the search's lists and the log's two LISTs (its head and the versions').
    counting.reset();
    let quiet = reader.search(&queries, 10, 4).await.unwrap().stats;
    assert_eq!(counting.lists(), 2);
    assert_eq!(quiet.cost.list_requests, 2);
    assert_eq!(quiet.cost.get_requests, counting.gets() as u64);
    assert!(close(quiet.cost.usd, by_hand(counting.gets(), 2, quiet.cost.bytes)));

    // Another process's write: the refresh GETs its record too.
    writer
        .upsert(&clustered(10, D, 9), &(5000..5010).collect::<Vec<_>>())
        .await
        .unwrap();
    counting.reset();
    let fresh = reader.search(&queries, 10, 4).await.unwrap().stats;
    assert_eq!(fresh.unindexed_entries, 10, "the search saw the write");
    assert_eq!(fresh.cost.list_requests, counting.lists() as u64);
    assert_eq!(fresh.cost.get_requests, counting.gets() as u64);
    assert!(fresh.cost.get_requests >= 1, "the record's GET");
    assert!(close(
        fresh.cost.usd,
        by_hand(counting.gets(), counting.lists(), fresh.cost.bytes)
    ));
}

#[tokio::test]
async fn a_refined_search_prices_its_refine_wave_too() {
    let bytes = std::fs::read(ivflake_testkit::fixtures::fixtures().join("ivfpq_rflat_l2.faiss")).unwrap();
    let (index, counting) = open_in_memory(bytes, priced()).await;
    let queries = clustered(2, index.info().d, 7);
    counting.reset();
    let stats = index.search(&queries, 10, 8).await.unwrap().stats;
    assert!(stats.refine_gets > 0, "the refine wave read codes: {stats:?}");
    assert_eq!(stats.cost.get_requests, counting.gets() as u64);
    assert_eq!(stats.cost.get_requests, stats.gets + stats.refine_gets);
    let store_bytes: u64 = counting.ranges().iter().map(|r| r.end - r.start).sum();
    assert_eq!(stats.cost.bytes, store_bytes);
}
