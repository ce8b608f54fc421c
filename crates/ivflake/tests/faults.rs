//! A store that fails or stalls: deadlines, hedged reads and partial results.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ivflake::{Error, FetchConfig, HedgeConfig, IndexLocation, IvfIndex, Metric, SearchParams};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

async fn faulty(config: FetchConfig) -> (IvfIndex, Arc<FaultyStore>, Vec<u8>) {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", bytes.clone()).await;
    // Open reads from byte 0; faults touch only reads that start later (list data).
    let faulty = Arc::new(faulty_store(inner, 1));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "i.faiss", "memory://f/i.faiss"),
        options(config),
    )
    .await
    .unwrap();
    (index, faulty, bytes)
}

#[tokio::test]
async fn a_stalled_store_fails_the_search_at_its_deadline_and_the_next_search_succeeds() {
    let (index, store, _) = faulty(uncached()).await;
    store.set(Fault::StallAll);
    let q = clustered(1, D, 1);
    let mut params = SearchParams::new(5, 4);
    params.deadline = Some(SHORT);
    let started = std::time::Instant::now();
    let err = index.search_with(&q, &params).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    store.set(Fault::None);
    let ok = index.search_with(&q, &params).await.unwrap();
    assert!(ok.ids[0] >= 0);
}

#[tokio::test]
async fn a_hedge_beats_a_stalled_first_get() {
    let hedge = HedgeConfig {
        percentile: 0.5,
        budget: 1.0,
        min_delay: Duration::from_millis(20),
    };
    let (index, store, bytes) = faulty(FetchConfig {
        hedge: Some(hedge),
        ..uncached()
    })
    .await;
    store.set(Fault::StallFirstPerRange);
    let q = clustered(1, D, 2);
    let mut params = SearchParams::new(5, 2);
    params.deadline = Some(Duration::from_secs(10));
    let r = index.search_with(&q, &params).await.unwrap();
    assert!(store.stalled.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(r.stats.hedged_gets as usize, r.stats.lists_probed);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    assert_same(&r, &reference.search(&q, 5, 2).unwrap(), "hedged");
}

#[tokio::test]
async fn failures_fail_the_search_unless_partial_results_are_allowed() {
    let (index, store, _) = faulty(uncached()).await;
    let q = clustered(1, D, 3);
    let all = index.search(&q, 5, 16).await.unwrap();
    let victim = index
        .layout()
        .iter()
        .find(|(_, l)| l.count > 0)
        .map(|(i, l)| (i, l.offset))
        .unwrap();
    store.set(Fault::FailAt(victim.1));
    let err = index.search(&q, 5, 16).await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    let mut params = SearchParams::new(5, 16);
    params.allow_partial = true;
    let partial = index.search_with(&q, &params).await.unwrap();
    assert_eq!(partial.stats.failed_lists, vec![victim.0]);
    assert_eq!(partial.stats.lists_probed, all.stats.lists_probed);
    store.set(Fault::FailAll);
    let none = index.search_with(&q, &params).await.unwrap();
    assert_eq!(none.stats.failed_lists.len(), all.stats.lists_probed);
    assert!(none.ids.iter().all(|&i| i == -1));
}

#[tokio::test]
async fn a_cancelled_search_does_not_cancel_the_load_another_search_waits_on() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", bytes.clone()).await;
    // Every list read takes a second (the header read is not delayed): long
    // enough that the second search surely starts while the loads run.
    let slow = ivflake_testkit::slow_store(inner, 1, Duration::from_secs(1));
    let counting = Arc::new(counting_store(Arc::new(slow)));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "i.faiss", "memory://c/i.faiss"),
        options(uncached()),
    )
    .await
    .unwrap();
    counting.reset();
    let q = clustered(1, D, 4);

    // The first search starts the loads, then is cancelled while they run.
    let first = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 2).await }
    });
    for _ in 0..1000 {
        if counting.gets() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(counting.gets() > 0, "the first search never started its loads");
    let second = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 2).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    let r = second.await.unwrap().unwrap();
    assert_eq!(
        r.stats.lists_shared, r.stats.lists_probed,
        "the second search joined the first's loads"
    );
    assert_eq!(counting.gets(), r.stats.lists_probed, "no list was fetched twice");
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    assert_same(&r, &reference.search(&q, 5, 2).unwrap(), "joined loads");
}

#[tokio::test]
async fn a_load_nobody_waits_for_is_aborted_and_frees_its_slot() {
    let (index, store, _) = faulty(uncached()).await;
    store.set(Fault::StallAll);
    let mut params = SearchParams::new(5, 4);
    params.deadline = Some(SHORT);
    let err = index.search_with(&clustered(1, D, 5), &params).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    // The stalled GETs were aborted with their last waiter, not left holding slots.
    let counters = index.scheduler().counters();
    for _ in 0..100 {
        if counters.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.in_flight.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_stalled_store_fails_an_open_at_the_get_time_limit() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", build_index("IVF16,Flat", Metric::L2, D, 2000)).await;
    // Faults from byte 0: the header read itself stalls.
    let faulty = Arc::new(faulty_store(inner, 0));
    faulty.set(Fault::StallAll);
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let config = FetchConfig {
        get_timeout: SHORT,
        ..FetchConfig::default()
    };
    let err = IvfIndex::open_at(
        IndexLocation::new(store, "i.faiss", "memory://s/i.faiss"),
        options(config),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    assert!(faulty.stalled.load(std::sync::atomic::Ordering::SeqCst));
}
