//! The cache tiers and warm-up: the disk tier survives a restart, drops damaged
//! entries and never serves another version; the memory tier stays inside its
//! byte budget under random workloads; warm-up loads what it is asked for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use ivflake::{DiskCacheConfig, FetchConfig, IndexLocation, IvfIndex, Metric, OpenOptions, WarmSpec};
use object_store::memory::InMemory;
use object_store::ObjectStore;
use proptest::prelude::*;

const D: usize = 16;

fn with_disk(dir: &Path, capacity_bytes: u64) -> FetchConfig {
    FetchConfig {
        disk_cache: Some(DiskCacheConfig {
            dir: dir.to_path_buf(),
            capacity_bytes,
        }),
        ..uncached()
    }
}

async fn open(store: &Arc<CountingStore>, uri: &str, config: FetchConfig) -> IvfIndex {
    let store: Arc<dyn ObjectStore> = store.clone();
    IvfIndex::open_at(IndexLocation::new(store, "idx.faiss", uri), options(config))
        .await
        .expect("open")
}

/// Disk writes happen in the background: wait until they are done, then
/// check that `n` lists are on disk.
async fn settled_on_disk(index: &IvfIndex, n: u64) {
    tokio::time::timeout(LIVENESS, index.scheduler().settle_disk_writes())
        .await
        .expect("background disk writes finish");
    let residency = index.residency().await;
    assert_eq!(residency.lists_on_disk, n, "{residency:?}");
}

fn ivl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for object in std::fs::read_dir(dir).unwrap() {
        for entry in std::fs::read_dir(object.unwrap().path()).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "ivl") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn disk_tier_survives_a_restart_and_drops_a_damaged_entry() {
    let dir = TempDir::new("disk");
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 3000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let uri = format!("memory://disk-{}/idx.faiss", rand::random::<u64>());
    let queries = clustered(8, D, 3);

    let first = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    let cold = first.search(&queries, 5, 4).await.unwrap();
    assert_eq!(cold.stats.lists_from_disk, 0);
    assert_eq!(cold.stats.lists_from_store, cold.stats.lists_probed);
    settled_on_disk(&first, cold.stats.lists_probed as u64).await;
    drop(first);

    // A new process: a fresh scheduler over the same directory.
    let second = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    counting.reset();
    let warm = second.search(&queries, 5, 4).await.unwrap();
    assert_eq!(counting.gets(), 0, "every list came from disk");
    assert_eq!(warm.stats.lists_from_disk, warm.stats.lists_probed);
    assert_eq!(warm.stats.bytes_from_disk, cold.stats.bytes_probed);
    assert_eq!((&warm.ids, &warm.distances), (&cold.ids, &cold.distances));
    drop(second);

    // Damage one entry and truncate another: both are dropped and refetched.
    let files = ivl_files(dir.path());
    assert_eq!(files.len(), cold.stats.lists_probed);
    let mut raw = std::fs::read(&files[0]).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x40;
    std::fs::write(&files[0], &raw).unwrap();
    let raw = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &raw[..raw.len() / 2]).unwrap();

    let third = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    counting.reset();
    let again = third.search(&queries, 5, 4).await.unwrap();
    assert_eq!(counting.gets(), 2, "the two damaged lists are fetched again");
    assert_eq!(again.stats.lists_from_disk, again.stats.lists_probed - 2);
    assert_eq!((&again.ids, &again.distances), (&cold.ids, &cold.distances));
    let report = third.scheduler().cache_report().await;
    assert_eq!(report.disk_corrupt_entries, 2);
    // And rewritten whole: the next process reads everything from disk.
    settled_on_disk(&third, again.stats.lists_probed as u64).await;
    let fourth = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    counting.reset();
    fourth.search(&queries, 5, 4).await.unwrap();
    assert_eq!(counting.gets(), 0);
}

#[tokio::test]
async fn disk_tier_never_serves_another_version() {
    let dir = TempDir::new("versions");
    let root = TempDir::new("versions-store");
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let counting = Arc::new(counting_store(store.clone()));
    let uri = "file:///versions/idx.faiss";
    let queries = clustered(8, D, 5);

    put(&store, "idx.faiss", build_index("IVF16,Flat", Metric::L2, D, 2000)).await;
    let v1 = open(&counting, uri, with_disk(dir.path(), 1 << 30)).await;
    let r1 = v1.search(&queries, 5, 4).await.unwrap();
    settled_on_disk(&v1, r1.stats.lists_probed as u64).await;

    // Same URI, same size, different vectors: a new version.
    let mut index = ivflake_faiss::Index::factory(D, "IVF16,Flat", Metric::L2).unwrap();
    let data = clustered(2000, D, 99);
    index.train(&data).unwrap();
    index.add(&data).unwrap();
    let v2_bytes = index.to_bytes().unwrap();
    put(&store, "idx.faiss", v2_bytes.clone()).await;

    let v2 = open(&counting, uri, with_disk(dir.path(), 1 << 30)).await;
    assert_eq!(v1.file_len(), v2.file_len(), "the new version has the same size");
    counting.reset();
    let r2 = v2.search(&queries, 5, 4).await.unwrap();
    assert_eq!(
        r2.stats.lists_from_disk, 0,
        "old version's entries are not this version's"
    );
    assert_eq!(counting.gets(), r2.stats.lists_probed);
    let expected = ivflake_faiss::read_index(&v2_bytes)
        .unwrap()
        .search(&queries, 5, 4)
        .unwrap();
    assert_same(&r2, &expected, "new version through the disk tier");
}

#[tokio::test]
async fn disk_tier_stays_within_its_budget() {
    let dir = TempDir::new("budget");
    let bytes = build_index("IVF64,Flat", Metric::L2, D, 6000);
    let (index, _) = open_in_memory(bytes.clone(), uncached()).await;
    let total = index.list_ranges().data_len();
    let budget = total / 4;
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let uri = format!("memory://budget-{}/idx.faiss", rand::random::<u64>());
    let index = open(&counting, &uri, with_disk(dir.path(), budget)).await;
    for seed in 0..6 {
        index.search(&clustered(20, D, 100 + seed), 5, 16).await.unwrap();
        let report = index.scheduler().cache_report().await;
        assert!(
            report.disk_resident_bytes <= budget,
            "{} > {budget}",
            report.disk_resident_bytes
        );
    }
    // Once the background writes and the evictions they caused are done, the
    // files themselves fit the budget.
    tokio::time::timeout(LIVENESS, index.scheduler().settle_disk_writes())
        .await
        .expect("background disk writes finish");
    let on_disk: u64 = ivl_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let report = index.scheduler().cache_report().await;
    assert!(on_disk <= budget, "files on disk: {on_disk} > {budget}");
    assert_eq!(
        on_disk, report.disk_resident_bytes,
        "the files are what the tier accounts for"
    );
    assert!(report.disk_evictions > 0, "the budget was reached");
}

#[tokio::test]
async fn warm_up_loads_given_largest_and_most_probed_lists() {
    let state = TempDir::new("state");
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 3000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let location = IndexLocation::new(store, "idx.faiss", "memory://warm/idx.faiss");
    let opts = |config: FetchConfig| OpenOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..options(config)
    };
    let cached = FetchConfig {
        coalesce_gap: 0,
        ..FetchConfig::default()
    };
    let index = IvfIndex::open_at(location.clone(), opts(cached.clone())).await.unwrap();

    // Given lists.
    let report = index
        .warm(&WarmSpec {
            lists: vec![0, 1, 1, 2],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.lists_requested, 3);
    assert_eq!(report.lists_from_store, 3);
    assert_eq!(index.residency().await.lists_in_memory, 3);

    // The largest lists.
    let mut sizes: Vec<(u64, usize)> = index.list_ranges().iter().map(|(l, r)| (r.len, l)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let report = index
        .warm(&WarmSpec {
            largest: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.lists_requested, 4);
    let residency = index.residency().await;
    let biggest: u64 = sizes.iter().take(4).map(|(b, _)| b).sum();
    assert!(residency.bytes_in_memory >= biggest);

    // Lists that do not exist are refused by name.
    let err = index
        .warm(&WarmSpec {
            lists: vec![32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ivflake::Error::InvalidArgument { field: "lists", .. }),
        "{err}"
    );

    // The most probed lists, remembered across a restart.
    let query = clustered(1, D, 77);
    let probed = index.search(&query, 5, 2).await.unwrap().stats.lists_probed;
    for _ in 0..4 {
        index.search(&query, 5, 2).await.unwrap();
    }
    index.persist_probe_counts().unwrap();
    drop(index);

    let restarted = IvfIndex::open_at(location, opts(cached)).await.unwrap();
    counting.reset();
    let report = restarted
        .warm(&WarmSpec {
            most_probed: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.lists_requested, probed);
    assert_eq!(report.lists_from_store, probed);
    counting.reset();
    let r = restarted.search(&query, 5, 2).await.unwrap();
    assert_eq!(counting.gets(), 0, "the hot lists were warmed");
    assert_eq!(r.stats.lists_from_memory, probed);
}

/// One shared index for the property test; building it per case would dominate.
fn shared_index_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| build_index("IVF64,Flat", Metric::L2, D, 6000))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the budget and the sequence of searches and warm-ups, the
    /// memory tier never holds more bytes than its budget.
    #[test]
    fn memory_cache_never_exceeds_its_budget(
        budget_kib in 1u64..256,
        ops in prop::collection::vec((0u64..1000, 1usize..64, any::<bool>()), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let budget = budget_kib * 1024;
            let config = FetchConfig { memory_cache_bytes: budget, ..FetchConfig::default() };
            let (index, _) = open_in_memory(shared_index_bytes().to_vec(), config).await;
            for (seed, nprobe, warm) in ops {
                if warm {
                    index.warm(&WarmSpec { largest: nprobe, ..Default::default() }).await.unwrap();
                } else {
                    index.search(&clustered(4, D, seed), 3, nprobe).await.unwrap();
                }
                let resident = index.scheduler().memory_resident_bytes().await;
                prop_assert!(resident <= budget, "{resident} bytes resident, budget {budget}");
                let residency = index.residency().await;
                prop_assert!(residency.bytes_in_memory <= budget);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_version_s_memory_entries_go_when_its_last_handle_does() {
    let cached = FetchConfig {
        coalesce_gap: 0,
        ..FetchConfig::default()
    };
    let (index, _) = open_in_memory(build_index("IVF16,Flat", Metric::L2, D, 2000), cached).await;
    let scheduler = index.scheduler().clone();
    index.search(&clustered(4, D, 1), 5, 8).await.unwrap();
    let held = scheduler.memory_resident_bytes().await;
    assert!(held > 0);

    // A reload of an unchanged object is the same version: the entries stay.
    let same = index.reload().await.unwrap();
    drop(index);
    assert_eq!(scheduler.memory_resident_bytes().await, held);
    let r = same.search(&clustered(4, D, 1), 5, 8).await.unwrap();
    assert_eq!(r.stats.lists_from_memory, r.stats.lists_probed);

    // The last handle gone (clones and searches included), the bytes are freed.
    let clone = same.clone();
    drop(same);
    assert_eq!(scheduler.memory_resident_bytes().await, held);
    drop(clone);
    assert_eq!(scheduler.memory_resident_bytes().await, 0);
}

/// A search that probes hundreds of lists with no memory tier leaves every
/// one of them on disk: the background writes queue by bytes, where a queue
/// of 32 writes dropped all but a few dozen of 512.
#[tokio::test]
async fn a_wide_search_leaves_every_list_on_disk() {
    let dir = TempDir::new("disk-wide");
    let bytes = build_index("IVF512,Flat", Metric::L2, D, 20_000);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let uri = format!("memory://disk-wide-{}/idx.faiss", rand::random::<u64>());
    let queries = clustered(4, D, 3);
    let first = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    let cold = first.search(&queries, 5, 512).await.unwrap();
    assert!(cold.stats.lists_from_store > 400, "{:?}", cold.stats);
    settled_on_disk(&first, cold.stats.lists_from_store as u64).await;
    let report = first.scheduler().cache_report().await;
    assert_eq!(report.disk_writes_skipped, 0, "{report:?}");
    drop(first);
    let second = open(&counting, &uri, with_disk(dir.path(), 1 << 30)).await;
    counting.reset();
    let warm = second.search(&queries, 5, 512).await.unwrap();
    assert_eq!(counting.gets(), 0, "every list came from disk");
    assert_eq!((&warm.ids, &warm.distances), (&cold.ids, &cold.distances));
}
