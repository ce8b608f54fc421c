//! I/O is counted through a store wrapper, as Lance's tracking store does.

mod common;

use std::sync::Arc;

use common::*;
use ivflake::{FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions};
use object_store::memory::InMemory;
use object_store::ObjectStore;

/// Open without looking for a checksum sidecar: the header alone.
fn header_only() -> OpenOptions {
    OpenOptions {
        manifest: ManifestMode::Ignore,
        ..options(FetchConfig::default())
    }
}

const D: usize = 16;

#[tokio::test]
async fn open_reads_only_the_header_in_one_get() {
    let bytes = build_index("IVF64,PQ8", Metric::L2, D, 5000);
    let total = bytes.len() as u64;
    let (index, counting) = open_in_memory_with(bytes.clone(), header_only()).await;
    assert_eq!(counting.gets(), 1, "open is a single GET");
    // Looking for a sidecar that is not there costs one more.
    let (_, counting) = open_in_memory(bytes, FetchConfig::default()).await;
    assert_eq!(counting.gets(), 2, "sidecar lookup + header");
    let header = index.layout().header_len();
    assert!(header < total, "the header is a strict prefix");
    assert_eq!(index.layout().data_len() + header, total);
    assert_eq!(index.info().ntotal, 5000);
}

#[tokio::test]
async fn a_large_header_takes_a_bounded_number_of_gets() {
    // 4096 lists of 64-d centroids: a 1 MiB+ quantizer, past the first probe.
    let bytes = build_index("IVF4096,Flat", Metric::L2, 64, 4096 * 2);
    let (index, counting) = open_in_memory_with(bytes, header_only()).await;
    assert!(index.layout().header_len() > ivflake::HEADER_PROBE_BYTES);
    let gets = counting.gets();
    assert!((2..=3).contains(&gets), "{gets} GETs");
    for r in counting.ranges() {
        assert!(
            r.end <= index.layout().header_len() * 2 + 64,
            "open never reads far into list data: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_cold_search_makes_one_get_per_distinct_nonempty_list() {
    let bytes = build_index("IVF64,Flat", Metric::L2, D, 3000);
    let (index, counting) = open_in_memory(bytes, uncached()).await;
    let queries = clustered(20, D, 8);
    for nprobe in [1, 8, 32] {
        counting.reset();
        let r = index.search(&queries, 10, nprobe).await.unwrap();
        assert_eq!(counting.gets(), r.stats.lists_probed, "nprobe {nprobe}");
        assert_eq!(r.stats.gets as usize, r.stats.lists_probed);
        assert!(r.stats.lists_probed > 0);
        // Each GET is exactly one list's range.
        let mut ranges = counting.ranges();
        ranges.sort_by_key(|r| r.start);
        ranges.dedup();
        assert_eq!(ranges.len(), r.stats.lists_probed);
        for range in &ranges {
            assert!(
                index.layout().iter().any(|(_, l)| l.range() == *range && l.count > 0),
                "{range:?}"
            );
        }
        assert_eq!(r.stats.bytes_fetched, r.stats.bytes_probed);
    }
}

#[tokio::test]
async fn a_warm_search_makes_no_gets() {
    let bytes = build_index("IVF32,SQ8", Metric::L2, D, 3000);
    let (index, counting) = open_in_memory(bytes, FetchConfig::default()).await;
    let q = clustered(10, D, 2);
    let cold = index.search(&q, 10, 8).await.unwrap();
    assert!(cold.stats.gets > 0);
    counting.reset();
    let warm = index.search(&q, 10, 8).await.unwrap();
    assert_eq!(counting.gets(), 0);
    assert_eq!(warm.stats.gets, 0);
    assert_eq!(warm.stats.lists_from_memory, warm.stats.lists_probed);
    assert_eq!(warm.ids, cold.ids);
    assert_eq!(warm.distances, cold.distances);
}

#[tokio::test]
async fn adjacent_lists_are_fetched_with_one_get() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let config = FetchConfig {
        memory_cache_bytes: 0,
        coalesce_gap: 0,
        ..FetchConfig::default()
    };
    let (index, counting) = open_in_memory(bytes, config).await;
    let nlist = index.info().nlist;
    counting.reset();
    let r = index.search(&clustered(50, D, 3), 5, nlist).await.unwrap();
    // Every list probed, all adjacent in the file: one merged GET.
    assert_eq!(
        r.stats.lists_probed,
        index.layout().iter().filter(|(_, l)| l.count > 0).count()
    );
    assert_eq!(counting.gets(), 1, "{:?}", counting.ranges());
    assert_eq!(r.stats.bytes_fetched, index.layout().data_len());
}

#[tokio::test]
async fn concurrent_cold_searches_share_one_get_per_list() {
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 3000);
    let config = FetchConfig {
        coalesce_gap: 0,
        max_coalesced: 0,
        ..FetchConfig::default()
    };
    let (index, counting) = open_in_memory(bytes, config).await;
    counting.reset();
    let q = clustered(1, D, 77);
    let searches: Vec<_> = (0..32)
        .map(|_| {
            let index = index.clone();
            let q = q.clone();
            tokio::spawn(async move { index.search(&q, 10, 1).await.unwrap() })
        })
        .collect();
    let results = futures::future::join_all(searches).await;
    assert_eq!(counting.gets(), 1, "32 searches of the same list make one GET");
    let first = results[0].as_ref().unwrap();
    for r in &results {
        assert_eq!(r.as_ref().unwrap().ids, first.ids);
    }
    let from_store: usize = results.iter().map(|r| r.as_ref().unwrap().stats.lists_from_store).sum();
    assert_eq!(from_store, 1);
}

#[tokio::test]
async fn huge_lists_are_split_into_parallel_parts() {
    let bytes = build_index("IVF2,Flat", Metric::L2, 64, 4000);
    let config = FetchConfig {
        split_threshold: 64 * 1024,
        part_size: 32 * 1024,
        memory_cache_bytes: 0,
        ..FetchConfig::default()
    };
    let (index, counting) = open_in_memory(bytes.clone(), config).await;
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    counting.reset();
    let q = clustered(3, 64, 1);
    let r = index.search(&q, 10, 2).await.unwrap();
    assert_same(&r, &reference.search(&q, 10, 2).unwrap(), "split lists");
    let expected_parts: u64 = index
        .layout()
        .iter()
        .map(|(_, l)| if l.len > 0 { l.len.div_ceil(32 * 1024) } else { 0 })
        .sum();
    assert_eq!(counting.gets() as u64, expected_parts);
}

#[tokio::test]
async fn fast_scan_lists_come_from_the_sidecar_or_one_streamed_pass() {
    // Block lists keep their sizes inline: without a sidecar open reads the
    // header, then the list data once (keeping only positions).
    let bytes = build_index("IVF64,PQ8x4fs", Metric::L2, D, 5000);
    let total = bytes.len() as u64;
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let (index, counting) = open_in_memory_with(bytes.clone(), header_only()).await;
    let header = index.layout().header_len();
    assert_eq!(counting.gets(), 2, "header + one pass over the lists");
    assert_eq!(counting.ranges().last(), Some(&(header..total)));
    assert_eq!(index.layout().data_len() + header, total);
    let queries = clustered(30, D, 4);
    let theirs = reference.search(&queries, 10, 8).unwrap();
    assert_same(&index.search(&queries, 10, 8).await.unwrap(), &theirs, "no sidecar");

    // With the checksum sidecar, open takes the lists' extents from it: two
    // small GETs, none into list data.
    let manifest = index.build_manifest(|_| {}).await.unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let location = IndexLocation::new(store, "idx.faiss", "memory://test/idx.faiss");
    manifest.write(&location).await.unwrap();
    counting.reset();
    let with_sidecar = IvfIndex::open_at(location, options(uncached())).await.unwrap();
    assert_eq!(counting.gets(), 2, "sidecar + header");
    assert!(
        counting.ranges().iter().all(|r| r.end <= header),
        "{:?}",
        counting.ranges()
    );
    for (list, range) in index.layout().iter() {
        assert_eq!(with_sidecar.layout().get(list), Some(range), "list {list}");
    }
    // Every fetched list is verified against the sidecar and scanned exactly.
    let ours = with_sidecar.search(&queries, 10, 8).await.unwrap();
    assert_same(&ours, &theirs, "with sidecar");
}
