//! The checksum sidecar in use: open takes 2 requests with it, every fetched
//! list is verified, and a corrupted list is an error that no cache keeps.

use std::sync::Arc;

use crate::common::*;
use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions, SearchParams};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

/// Writes `bytes` and its sidecar to a fresh store and returns the store.
async fn with_sidecar(bytes: Vec<u8>) -> Arc<dyn ObjectStore> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, "idx.faiss", bytes).await;
    write_sidecar(IndexLocation::new(store.clone(), "idx.faiss", "memory://m/idx.faiss")).await;
    store
}

async fn open_counted(
    store: Arc<dyn ObjectStore>,
    options: OpenOptions,
) -> (ivflake::Result<IvfIndex>, Arc<CountingStore>) {
    let counting = Arc::new(counting_store(store));
    let dyn_store: Arc<dyn ObjectStore> = counting.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(dyn_store, "idx.faiss", "memory://m/idx.faiss"),
        options,
    )
    .await;
    (index, counting)
}

#[tokio::test]
async fn with_a_sidecar_open_takes_two_requests_and_lists_are_verified() {
    // The sidecar and the first 1 MiB are read together; a header larger than
    // that takes one more read, of exactly the rest the sidecar records.
    for (factory, d, n) in [("IVF32,Flat", D, 3000), ("IVF4096,Flat", 64, 4096 * 2)] {
        let store = with_sidecar(build_index(factory, Metric::L2, d, n)).await;
        // List reads start past byte 0; the damage is switched on after open.
        let damaging = Arc::new(damaging_store(store, 1));
        let (index, counting) = open_counted(damaging.clone(), options(uncached())).await;
        let index = index.unwrap();
        let header = index.list_ranges().header_len();
        let expected = if header > ivflake::HEADER_PROBE_BYTES { 3 } else { 2 };
        assert_eq!(counting.gets(), expected, "{factory}: sidecar + a {header}-byte header");
        assert!(index.is_verified(), "{factory}");
        let q = clustered(4, d, 2);
        let clean = index.search(&q, 5, 8).await.unwrap();
        assert!(clean.stats.lists_probed > 0);

        // One flipped byte in every list's body: each list fails its hash.
        damaging.set(BodyFault::FlipMiddleByte);
        let err = index.search(&q, 5, 8).await.unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{factory}: {err}");
        let failures = index
            .scheduler()
            .counters()
            .checksum_failures
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            failures as usize, clean.stats.lists_probed,
            "{factory}: every fetched list was hashed"
        );
        assert_eq!(damaging.damaged(), clean.stats.lists_probed);
    }
}

#[tokio::test]
async fn a_corrupted_list_byte_is_a_checksum_error_and_is_never_cached() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let store = with_sidecar(bytes.clone()).await;

    // Flip one byte inside list data, leaving the header (and the sidecar) as they were.
    let (clean, _) = open_counted(store.clone(), OpenOptions::default()).await;
    let clean = clean.unwrap();
    let (victim, range) = clean
        .list_ranges()
        .iter()
        .find(|(_, r)| r.count > 0)
        .map(|(l, r)| (l, *r))
        .unwrap();
    let mut corrupted = bytes.clone();
    corrupted[(range.offset + range.len / 2) as usize] ^= 0x01;
    put(&store, "idx.faiss", corrupted).await;

    let cached = FetchConfig {
        coalesce_gap: 0,
        ..FetchConfig::default()
    };
    let (index, counting) = open_counted(store, options(cached)).await;
    let index = index.unwrap();
    assert!(index.is_verified());
    let all = index.info().nlist;
    let queries = clustered(16, D, 4);

    for attempt in 0..2 {
        counting.reset();
        let err = index.search(&queries, 5, all).await.unwrap_err();
        assert!(
            matches!(&err, Error::Checksum { list, .. } if *list == victim),
            "attempt {attempt}: {err}"
        );
        // Not cached: the bad list is fetched again each time.
        assert!(
            counting.ranges().iter().any(|r| r.start == range.offset),
            "attempt {attempt}: list {victim} was not refetched"
        );
    }
    let residency = index.residency().await;
    let clean_lists = index.list_ranges().iter().filter(|(_, r)| r.count > 0).count() as u64;
    assert_eq!(
        residency.lists_in_memory,
        clean_lists - 1,
        "every list but the bad one is cached"
    );

    // With partial results allowed, the search names the bad list and answers from the rest.
    let mut params = SearchParams::new(5, all);
    params.allow_partial = true;
    let partial = index.search_with(&queries, &params).await.unwrap();
    assert_eq!(partial.stats.failed_lists, vec![victim]);
    assert_eq!(
        index
            .scheduler()
            .counters()
            .checksum_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn a_sidecar_of_another_file_is_ignored_or_refused() {
    let store = with_sidecar(build_index("IVF16,Flat", Metric::L2, D, 2000)).await;
    // Replace the index, keep the old sidecar.
    put(&store, "idx.faiss", build_index("IVF32,Flat", Metric::L2, D, 2000)).await;

    let (auto, _) = open_counted(store.clone(), OpenOptions::default()).await;
    assert!(!auto.unwrap().is_verified(), "a stale sidecar is not used");

    let require = OpenOptions {
        manifest: ManifestMode::Require,
        ..OpenOptions::default()
    };
    let (refused, _) = open_counted(store.clone(), require.clone()).await;
    let err = refused.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("ivflake manifest"), "{err}");

    let bare: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&bare, "idx.faiss", build_index("IVF16,Flat", Metric::L2, D, 2000)).await;
    let (missing, _) = open_counted(bare, require).await;
    let err = missing.unwrap_err();
    // Not `NotFound`, which would read as if the index were missing.
    assert!(matches!(err, Error::SidecarMissing { .. }), "{err}");
    assert!(err.to_string().contains("ivflake manifest"), "{err}");
}
