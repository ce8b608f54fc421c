//! I/O is counted through a store wrapper, as Lance's tracking store does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ivflake::{FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions, HEADER_PROBE_BYTES};
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
    let bytes = build_index("IVF64,PQ8np", Metric::L2, D, 5000);
    let total = bytes.len() as u64;
    let (index, counting) = open_in_memory_with(bytes.clone(), header_only()).await;
    assert_eq!(counting.gets(), 1, "open is a single GET");
    // Looking for a sidecar that is not there costs one more.
    let (_, counting) = open_in_memory(bytes, FetchConfig::default()).await;
    assert_eq!(counting.gets(), 2, "sidecar lookup + header");
    let header = index.list_ranges().header_len();
    assert!(header < total, "the header is a strict prefix");
    assert_eq!(index.list_ranges().data_len() + header, total);
    assert_eq!(index.info().ntotal, 5000);
}

#[tokio::test]
async fn open_is_one_round_trip_and_the_first_query_one_more() {
    const LIVENESS: Duration = Duration::from_secs(30);
    let bytes = build_index("IVF64,PQ8np", Metric::L2, D, 5000);
    for with_sidecar in [true, false] {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        put(&inner, "idx.faiss", bytes.clone()).await;
        if with_sidecar {
            let plain = IndexLocation::new(inner.clone(), "idx.faiss", "memory://rt/idx.faiss");
            let index = IvfIndex::open_at(plain.clone(), options(uncached())).await.unwrap();
            index.build_manifest(|_| {}).await.unwrap().write(&plain).await.unwrap();
        }
        // Every GET waits at the gate: what is in flight at once is one round trip.
        let gate = Arc::new(gated_store(inner, 0));
        let store: Arc<dyn ObjectStore> = gate.clone();
        let location = IndexLocation::new(store, "idx.faiss", "memory://rt/idx.faiss");
        let opening = tokio::spawn(IvfIndex::open_at(location, options(uncached())));
        // Round trip 1: the sidecar and the header's first bytes, together.
        gate.wait_for_waiting(2, LIVENESS).await;
        gate.open();
        let index = opening.await.unwrap().unwrap();
        assert_eq!(gate.passed(), 2, "open made two GETs (sidecar: {with_sidecar})");
        assert_eq!(index.is_verified(), with_sidecar);
        // Its own account agrees: two GETs, and the whole (small) file read.
        let open = index.open_stats();
        assert_eq!((open.gets, open.bytes), (2, bytes.len() as u64));
        gate.shut();
        // Round trip 2: every list the first query probes, in one wave.
        let queries = clustered(1, D, 9);
        let searching = tokio::spawn(async move { index.search(&queries, 10, 8).await });
        gate.wait_for_waiting(8, LIVENESS).await;
        gate.open();
        searching.await.unwrap().unwrap();
        assert_eq!(gate.passed(), 2 + 8, "one GET per probed list, nothing else");
    }
}

#[tokio::test]
async fn a_large_header_takes_two_gets() {
    // 4096 lists of 64-d and of 128-d centroids: 1 MiB+ and 2 MiB+ quantizers,
    // past the first probe. The second read takes what Faiss asked for and
    // some slack, so the rest of the header (codebooks, list sizes) needs no
    // third round trip.
    for d in [64, 128] {
        let bytes = build_index("IVF4096,Flat", Metric::L2, d, 4096 * 2);
        let (index, counting) = open_in_memory_with(bytes, header_only()).await;
        let header = index.list_ranges().header_len();
        assert!(header > ivflake::HEADER_PROBE_BYTES);
        assert_eq!(counting.gets(), 2, "d = {d}: {:?}", counting.ranges());
        assert_eq!(index.open_stats().gets, 2);
        let asked: u64 = counting
            .ranges()
            .iter()
            .map(|r| r.end.min(index.file_len()) - r.start)
            .sum();
        assert_eq!(index.open_stats().bytes, asked);
        for r in counting.ranges() {
            assert!(r.end <= header * 2 + 64, "open never reads far into list data: {r:?}");
        }
    }
}

#[tokio::test]
async fn a_cold_search_makes_one_get_per_distinct_nonempty_list() {
    let bytes = build_index("IVF64,Flat", Metric::L2, D, 3000);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let (index, counting) = open_in_memory(bytes, uncached()).await;
    let queries = clustered(20, D, 8);
    for nprobe in [1, 8, 32] {
        // The lists to fetch, from Faiss's own coarse assignment of the batch.
        let expected = probed_lists(&reference, &queries, nprobe);
        assert!(!expected.is_empty());
        counting.reset();
        let r = index.search(&queries, 10, nprobe).await.unwrap();
        assert_eq!(counting.gets(), expected.len(), "nprobe {nprobe}");
        assert_eq!(r.stats.gets as usize, expected.len());
        assert_eq!(r.stats.lists_probed, expected.len());
        // Each GET is exactly one of those lists' ranges, each list once.
        let mut ranges = counting.ranges();
        ranges.sort_by_key(|r| r.start);
        let wanted: Vec<_> = expected
            .iter()
            .map(|&l| index.list_ranges().get(l).unwrap().range())
            .collect();
        assert_eq!(ranges, wanted, "nprobe {nprobe}");
        let bytes: u64 = expected.iter().map(|&l| index.list_ranges().get(l).unwrap().len).sum();
        assert_eq!(r.stats.bytes_fetched, bytes);
        assert_eq!(r.stats.bytes_probed, bytes);
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
        index.list_ranges().iter().filter(|(_, l)| l.count > 0).count()
    );
    assert_eq!(counting.gets(), 1, "{:?}", counting.ranges());
    assert_eq!(r.stats.bytes_fetched, index.list_ranges().data_len());
}

/// An index over a gated store (list GETs wait until the gate opens) behind a
/// counter, opened with `options`; the counter starts at zero after open.
async fn gated(
    bytes: &[u8],
    keys: &[&str],
    options: OpenOptions,
) -> (Vec<IvfIndex>, Arc<GatedStore>, Arc<CountingStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for key in keys {
        put(&inner, key, bytes.to_vec()).await;
    }
    let gate = Arc::new(gated_store(inner, 1));
    let counting = Arc::new(counting_store(gate.clone()));
    let mut indexes = Vec::new();
    for key in keys {
        let store: Arc<dyn ObjectStore> = counting.clone();
        let location = IndexLocation::new(store, *key, format!("memory://gated/{key}"));
        indexes.push(IvfIndex::open_at(location, options.clone()).await.unwrap());
    }
    counting.reset();
    (indexes, gate, counting)
}

#[tokio::test]
async fn concurrent_cold_searches_share_one_get_per_list() {
    const SEARCHES: usize = 32;
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 3000);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    // No memory cache: a list can only reach a later search by joining the load.
    let (indexes, gate, counting) = gated(&bytes, &["idx.faiss"], options(uncached())).await;
    let index = &indexes[0];
    let q = clustered(1, D, 77);
    let lists = probed_lists(&reference, &q, 4).len();
    let searches: Vec<_> = (0..SEARCHES)
        .map(|_| {
            let index = index.clone();
            let q = q.clone();
            tokio::spawn(async move { index.search(&q, 10, 4).await.unwrap() })
        })
        .collect();
    // Every search is cold when it asks: the first one's GETs are held at the
    // gate until all the others have joined its loads.
    gate.wait_for_waiting(lists, LIVENESS).await;
    let joined = &index.scheduler().counters().loads_joined;
    tokio::time::timeout(LIVENESS, async {
        while joined.load(Ordering::SeqCst) < ((SEARCHES - 1) * lists) as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("every search joins");
    assert_eq!(gate.waiting(), lists);
    gate.open();
    let results = tokio::time::timeout(LIVENESS, futures::future::join_all(searches))
        .await
        .expect("liveness");
    assert_eq!(
        counting.gets(),
        lists,
        "{SEARCHES} searches of the same lists make one GET per list"
    );
    let expected = reference.search(&q, 10, 4).unwrap();
    let (mut shared, mut from_store) = (0, 0);
    for r in results {
        let r = r.unwrap();
        assert_same(&r, &expected, "a shared load");
        shared += r.stats.lists_shared;
        from_store += r.stats.lists_from_store;
    }
    assert_eq!(
        shared,
        (SEARCHES - 1) * lists,
        "all searches but the first shared every list"
    );
    assert_eq!(from_store, lists);
}

#[tokio::test]
async fn in_flight_gets_peak_at_the_per_search_and_process_wide_limits() {
    const PER_SEARCH: usize = 4;
    const PROCESS: usize = 6;
    let bytes = build_index("IVF64,Flat", Metric::L2, D, 3000);
    let config = FetchConfig {
        max_in_flight: PROCESS,
        max_in_flight_per_search: PER_SEARCH,
        ..uncached()
    };
    let q = clustered(1, D, 9);

    // One search wants every list at once: the per-search limit holds it.
    let (indexes, gate, _) = gated(&bytes, &["a.faiss"], options(config.clone())).await;
    let search = tokio::spawn({
        let (index, q) = (indexes[0].clone(), q.clone());
        async move { index.search(&q, 5, 64).await }
    });
    // The limit is proven by the gate's peak below, a count over the whole
    // search; waiting for the limit's worth only lets them all queue first.
    gate.wait_for_waiting(PER_SEARCH, LIVENESS).await;
    gate.open();
    let r = tokio::time::timeout(LIVENESS, search)
        .await
        .expect("liveness")
        .unwrap()
        .unwrap();
    assert!(r.stats.gets as usize > 2 * PROCESS, "{} GETs", r.stats.gets);
    assert_eq!(gate.peak(), PER_SEARCH, "peak of GETs in flight for one search");

    // Three searches over three objects on one scheduler want 3 × 4: the process-wide limit holds them.
    let shared = options(config);
    let (indexes, gate, _) = gated(&bytes, &["a.faiss", "b.faiss", "c.faiss"], shared).await;
    let searches: Vec<_> = indexes
        .iter()
        .map(|index| {
            let (index, q) = (index.clone(), q.clone());
            tokio::spawn(async move { index.search(&q, 5, 64).await })
        })
        .collect();
    gate.wait_for_waiting(PROCESS, LIVENESS).await;
    gate.open();
    for r in tokio::time::timeout(LIVENESS, futures::future::join_all(searches))
        .await
        .expect("liveness")
    {
        r.unwrap().unwrap();
    }
    assert_eq!(gate.peak(), PROCESS, "peak of GETs in flight in the process");
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
        .list_ranges()
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
    let header = index.list_ranges().header_len();
    assert_eq!(counting.gets(), 2, "header + one pass over the lists");
    assert_eq!(counting.ranges().last(), Some(&(header..total)));
    assert_eq!(index.list_ranges().data_len() + header, total);
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
    assert_eq!(counting.gets(), 2, "sidecar + header, asked for together");
    // The header GET is the probe open sends before it has the sidecar (the
    // store answers what the file has); no pass over the lists follows.
    assert_eq!(counting.ranges(), vec![0..HEADER_PROBE_BYTES]);
    for (list, range) in index.list_ranges().iter() {
        assert_eq!(with_sidecar.list_ranges().get(list), Some(range), "list {list}");
    }
    // Every fetched list is verified against the sidecar and scanned exactly.
    let ours = with_sidecar.search(&queries, 10, 8).await.unwrap();
    assert_same(&ours, &theirs, "with sidecar");
}
