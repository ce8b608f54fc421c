//! A store that fails or stalls: deadlines, hedged reads and partial results.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
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
    // The store never answers, so only the deadline can end the search; the
    // outer limit is a liveness guard, far past the deadline.
    let err = tokio::time::timeout(LIVENESS, index.search_with(&q, &params))
        .await
        .expect("the deadline ended the search")
        .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    assert!(
        store.stalled.load(Ordering::SeqCst),
        "the search reached the stalled store"
    );
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
    assert!(store.stalled.load(Ordering::SeqCst));
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
        .list_ranges()
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

/// An index over a gated store (list GETs wait until the gate opens) behind a counter.
async fn gated(bytes: &[u8], config: FetchConfig) -> (IvfIndex, Arc<GatedStore>, Arc<CountingStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", bytes.to_vec()).await;
    // The header read starts at byte 0 and passes; list reads start later and wait.
    let gate = Arc::new(gated_store(inner, 1));
    let counting = Arc::new(counting_store(gate.clone()));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "i.faiss", "memory://g/i.faiss"),
        options(config),
    )
    .await
    .unwrap();
    counting.reset();
    (index, gate, counting)
}

#[tokio::test]
async fn a_cancelled_search_does_not_cancel_the_load_another_search_waits_on() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let (index, gate, counting) = gated(&bytes, uncached()).await;
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let q = clustered(1, D, 4);
    let lists = probed_lists(&reference, &q, 2).len();
    assert!(lists > 0);

    // The first search starts the loads; its GETs wait at the gate.
    let first = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 2).await }
    });
    gate.wait_for_waiting(lists, LIVENESS).await;
    // The second joins them (the counter moves when the join is decided).
    let joined = &index.scheduler().counters().loads_joined;
    let joined_before = joined.load(Ordering::SeqCst);
    let second = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 2).await }
    });
    tokio::time::timeout(LIVENESS, async {
        while joined.load(Ordering::SeqCst) < joined_before + lists as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the second search joins the first's loads");
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(gate.waiting(), lists, "the loads outlived the search that started them");
    gate.open();

    let r = tokio::time::timeout(LIVENESS, second)
        .await
        .expect("liveness")
        .unwrap()
        .unwrap();
    assert_eq!(r.stats.lists_probed, lists);
    assert_eq!(
        r.stats.lists_shared, lists,
        "the second search joined the first's loads"
    );
    assert_eq!(counting.gets(), lists, "no list was fetched twice");
    assert_same(&r, &reference.search(&q, 5, 2).unwrap(), "joined loads");
}

#[tokio::test]
async fn a_load_nobody_waits_for_is_aborted_and_frees_its_slot() {
    // 128 lists, every one probed: more GETs than the 64 slots of the default config.
    let bytes = build_index("IVF128,Flat", Metric::L2, D, 6000);
    let config = FetchConfig {
        max_in_flight_per_search: 128,
        ..uncached()
    };
    let slots = config.max_in_flight;
    assert_eq!(slots, FetchConfig::default().max_in_flight);
    let (index, gate, _) = gated(&bytes, config).await;
    let nonempty = index.list_ranges().iter().filter(|(_, l)| l.count > 0).count();
    assert!(nonempty > slots, "{nonempty} lists");
    let q = clustered(1, D, 5);

    // Every process-wide slot held by one search's stalled GETs...
    let search = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 128).await }
    });
    gate.wait_for_waiting(slots, LIVENESS).await;
    assert_eq!(
        index.scheduler().counters().in_flight.load(Ordering::SeqCst),
        slots as u64
    );
    // ...then nobody waits for them any more: the GETs are dropped with their loads.
    search.abort();
    assert!(search.await.unwrap_err().is_cancelled());
    gate.wait_for_waiting(0, LIVENESS).await;
    assert_eq!(index.scheduler().counters().in_flight.load(Ordering::SeqCst), 0);

    // The slots are free again: another search gets all of them, then succeeds.
    let again = tokio::spawn({
        let (index, q) = (index.clone(), q.clone());
        async move { index.search(&q, 5, 128).await }
    });
    gate.wait_for_waiting(slots, LIVENESS).await;
    gate.open();
    let r = tokio::time::timeout(LIVENESS, again)
        .await
        .expect("liveness")
        .unwrap()
        .unwrap();
    assert_eq!(r.stats.lists_probed, nonempty);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    assert_same(&r, &reference.search(&q, 5, 128).unwrap(), "after the slots were freed");
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
    assert!(faulty.stalled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn hedges_stay_within_their_budget_under_many_slow_gets() {
    // Every list GET takes far longer than the hedge delay, so every one would
    // hedge without a budget; the budget allows `budget` hedges per GET sent.
    let bytes = build_index("IVF128,Flat", Metric::L2, D, 6000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", bytes.clone()).await;
    let slow: Arc<dyn ObjectStore> = Arc::new(ivflake_testkit::slow_store(inner, 1, Duration::from_millis(500)));
    let budget = 0.1;
    let config = FetchConfig {
        hedge: Some(HedgeConfig {
            percentile: 0.5,
            budget,
            min_delay: Duration::from_millis(20),
        }),
        max_in_flight: 512,
        max_in_flight_per_search: 512,
        ..uncached()
    };
    let index = IvfIndex::open_at(
        IndexLocation::new(slow, "i.faiss", "memory://h/i.faiss"),
        options(config),
    )
    .await
    .unwrap();
    let q = clustered(1, D, 6);
    let r = tokio::time::timeout(LIVENESS, index.search(&q, 5, 128))
        .await
        .expect("liveness")
        .unwrap();
    let counters = index.scheduler().counters();
    let (gets, hedges) = (
        counters.gets.load(Ordering::SeqCst),
        counters.hedges.load(Ordering::SeqCst),
    );
    println!("{} lists, {gets} GETs, {hedges} hedges", r.stats.lists_probed);
    assert!(r.stats.lists_probed > 64, "{} lists", r.stats.lists_probed);
    assert!(hedges >= 1, "the budget was spent");
    assert!(
        hedges as f64 <= budget * gets as f64,
        "{hedges} hedges for {gets} GETs: over the {budget} budget"
    );
    assert_eq!(r.stats.hedged_gets, hedges);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    assert_same(&r, &reference.search(&q, 5, 128).unwrap(), "hedged within budget");
}

#[tokio::test]
async fn a_get_past_its_time_limit_is_re_sent_and_counted() {
    let config = FetchConfig {
        get_timeout: SHORT,
        get_retries: 1,
        ..uncached()
    };
    let (index, store, bytes) = faulty(config.clone()).await;
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let q = clustered(1, D, 7);
    let lists = probed_lists(&reference, &q, 4).len();
    // The first GET of each list never answers; its re-send does.
    store.set(Fault::StallFirstPerRange);
    let r = tokio::time::timeout(LIVENESS, index.search(&q, 5, 4))
        .await
        .expect("liveness")
        .unwrap();
    assert_eq!(r.stats.lists_probed, lists);
    assert_eq!(r.stats.retries as usize, lists, "one re-send per list");
    assert_eq!(
        r.stats.gets as usize,
        2 * lists,
        "each list: the stalled GET and its re-send"
    );
    assert_eq!(
        index.scheduler().counters().retries.load(Ordering::SeqCst) as usize,
        lists
    );
    assert_same(&r, &reference.search(&q, 5, 4).unwrap(), "re-sent GETs");

    // With no re-send allowed, the same stall fails the search and says why.
    let (index, store, _) = faulty(FetchConfig {
        get_retries: 0,
        ..config
    })
    .await;
    store.set(Fault::StallFirstPerRange);
    let err = tokio::time::timeout(LIVENESS, index.search(&q, 5, 4))
        .await
        .expect("liveness")
        .unwrap_err();
    assert!(matches!(err, Error::GetTimedOut { attempts: 1, .. }), "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(index.scheduler().counters().retries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_short_body_is_an_error_and_is_never_cached() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "i.faiss", bytes.clone()).await;
    let damaging = Arc::new(damaging_store(inner, 1));
    let counting = Arc::new(counting_store(damaging.clone()));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let cached = FetchConfig {
        coalesce_gap: 0,
        max_coalesced: 0,
        ..FetchConfig::default()
    };
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "i.faiss", "memory://s/i.faiss"),
        options(cached),
    )
    .await
    .unwrap();
    let q = clustered(2, D, 8);
    let lists = probed_lists(&reference, &q, 4);

    damaging.set(BodyFault::Short);
    let err = index.search(&q, 5, 4).await.unwrap_err();
    assert!(matches!(err, Error::TruncatedGet { .. }), "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("returned"),
        "the message says the body was short: {err}"
    );
    assert!(damaging.damaged() >= 1);
    let mut params = SearchParams::new(5, 4);
    params.allow_partial = true;
    let partial = index.search_with(&q, &params).await.unwrap();
    let mut failed = partial.stats.failed_lists.clone();
    failed.sort_unstable();
    assert_eq!(
        failed,
        lists.iter().copied().collect::<Vec<_>>(),
        "every short list failed"
    );
    assert_eq!(index.residency().await.lists_in_memory, 0, "no short list was cached");

    damaging.set(BodyFault::None);
    counting.reset();
    let r = index.search(&q, 5, 4).await.unwrap();
    assert_eq!(counting.gets(), lists.len(), "every list is fetched again, whole");
    assert_same(&r, &reference.search(&q, 5, 4).unwrap(), "after short reads");
}
