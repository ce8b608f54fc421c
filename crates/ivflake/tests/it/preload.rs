//! The background preload after open (`OpenOptions::preload`): what it loads,
//! in how many GETs, what stays resident, and that searches after it read
//! nothing and answer exactly as without it.

use std::sync::Arc;

use crate::common::*;
use ivflake::{
    FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions, Preload, PreloadState,
    BACKGROUND_GET_BYTES,
};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

fn preloading(config: FetchConfig, preload: Preload) -> OpenOptions {
    OpenOptions {
        manifest: ManifestMode::Ignore,
        preload,
        ..options(config)
    }
}

async fn stored(bytes: Vec<u8>, key: &str) -> (IndexLocation, Arc<CountingStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, key, bytes).await;
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    (
        IndexLocation::new(store, key, format!("memory://preload/{key}")),
        counting,
    )
}

#[tokio::test]
async fn an_index_that_fits_is_loaded_whole_in_few_large_gets_and_searches_read_nothing() {
    let bytes = build_index("IVF64,PQ8np", Metric::L2, D, 20_000);
    let (location, counting) = stored(bytes.clone(), "fits.faiss").await;
    let index = IvfIndex::open_at(location, preloading(FetchConfig::default(), Preload::auto()))
        .await
        .unwrap();
    let status = index.preloaded().await;
    assert_eq!(status.state, PreloadState::Done, "{status:?}");
    let lists = index.list_ranges().iter().filter(|(_, r)| r.count > 0).count();
    let data = index.list_ranges().data_len();
    assert_eq!(status.lists_planned, lists);
    assert_eq!(status.load.lists_loaded, lists);
    assert_eq!(status.load.bytes_loaded, data);
    assert!(status.load.failed_lists.is_empty());
    // Lists are contiguous in the file: one GET per 8 MiB, not one per list.
    assert_eq!(status.load.gets, data.div_ceil(BACKGROUND_GET_BYTES));
    assert_eq!(status.load.bytes_fetched, data);
    // moka took every list: what is resident is what was loaded.
    let residency = index.residency().await;
    assert_eq!(residency.lists_in_memory, lists as u64);
    assert_eq!(residency.bytes_in_memory, data);

    // Novel queries now read nothing, and answer as a cold index does.
    let (cold_location, _) = stored(bytes, "cold.faiss").await;
    let cold = IvfIndex::open_at(cold_location, preloading(uncached(), Preload::Off))
        .await
        .unwrap();
    counting.reset();
    let queries = clustered(20, D, 99);
    for nprobe in [1, 8, 64] {
        let warm = index.search(&queries, 10, nprobe).await.unwrap();
        let fresh = cold.search(&queries, 10, nprobe).await.unwrap();
        assert_eq!(warm.ids, fresh.ids, "nprobe {nprobe}");
        assert_eq!(bits(&warm.distances), bits(&fresh.distances), "nprobe {nprobe}");
        assert_eq!(warm.stats.gets, 0);
        assert_eq!(warm.stats.lists_from_memory, warm.stats.lists_probed);
    }
    assert_eq!(counting.gets(), 0, "no search went to the store");
}

#[tokio::test]
async fn too_large_without_probe_counts_is_skipped_with_the_reason() {
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 6000);
    let (location, counting) = stored(bytes, "large.faiss").await;
    // The lists take 6000 × 16 × 4 + ids ≈ 432 KB; a quarter of 1 MiB does not hold them.
    let config = FetchConfig {
        memory_cache_bytes: 1 << 20,
        ..FetchConfig::default()
    };
    let index = IvfIndex::open_at(location, preloading(config, Preload::auto()))
        .await
        .unwrap();
    let status = index.preloaded().await;
    assert_eq!(status.state, PreloadState::Skipped);
    assert!(
        status.reason.as_deref().unwrap().contains("no probe counts"),
        "{status:?}"
    );
    assert_eq!(counting.gets(), 1, "open's header read alone");
}

#[tokio::test]
async fn too_large_loads_the_lists_probed_most_in_the_last_run() {
    let state = TempDir::new("preload-state");
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 6000);
    let (location, counting) = stored(bytes, "hot.faiss").await;
    let config = FetchConfig {
        memory_cache_bytes: 1 << 20,
        coalesce_gap: 0,
        ..FetchConfig::default()
    };
    let with_state = |preload| OpenOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..preloading(config.clone(), preload)
    };
    // The last run: one query, asked often.
    let query = clustered(1, D, 7);
    let first = IvfIndex::open_at(location.clone(), with_state(Preload::Off))
        .await
        .unwrap();
    let hot = first.search(&query, 5, 3).await.unwrap();
    first.persist_probe_counts().unwrap();
    drop(first);

    counting.reset();
    let index = IvfIndex::open_at(location, with_state(Preload::auto())).await.unwrap();
    let status = index.preloaded().await;
    assert_eq!(status.state, PreloadState::Done, "{status:?}");
    assert_eq!(status.load.lists_loaded, hot.stats.lists_probed);
    assert_eq!(index.residency().await.lists_in_memory, hot.stats.lists_probed as u64);
    counting.reset();
    let again = index.search(&query, 5, 3).await.unwrap();
    assert_eq!(counting.gets(), 0, "the hot lists were preloaded");
    assert_eq!(again.ids, hot.ids);
}

#[tokio::test]
async fn a_preload_fills_only_free_room_and_evicts_nothing() {
    let bytes = build_index("IVF32,Flat", Metric::L2, D, 6000);
    let (first_location, _) = stored(bytes.clone(), "first.faiss").await;
    let (second_location, _) = stored(bytes, "second.faiss").await;
    // Room for the first index's lists and a little more, shared by both.
    let config = FetchConfig {
        memory_cache_bytes: 600_000,
        ..FetchConfig::default()
    };
    let shared = options(config);
    let first = IvfIndex::open_at(
        first_location,
        OpenOptions {
            preload: Preload::Auto {
                max_cache_fraction: 1.0,
            },
            manifest: ManifestMode::Ignore,
            ..shared.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.preloaded().await.state, PreloadState::Done);
    let resident = first.residency().await;
    assert_eq!(resident.bytes_in_memory, first.list_ranges().data_len());

    let second = IvfIndex::open_at(
        second_location,
        OpenOptions {
            preload: Preload::Auto {
                max_cache_fraction: 1.0,
            },
            manifest: ManifestMode::Ignore,
            ..shared
        },
    )
    .await
    .unwrap();
    let status = second.preloaded().await;
    assert_eq!(status.state, PreloadState::Skipped, "{status:?}");
    assert_eq!(first.residency().await, resident, "the first index lost nothing");
}

#[tokio::test]
async fn a_bad_fraction_is_refused_by_name() {
    let bytes = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let (location, _) = stored(bytes, "bad.faiss").await;
    let err = IvfIndex::open_at(
        location,
        preloading(
            FetchConfig::default(),
            Preload::Auto {
                max_cache_fraction: 1.5,
            },
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ivflake::Error::InvalidArgument { field: "preload", .. }),
        "{err}"
    );
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
