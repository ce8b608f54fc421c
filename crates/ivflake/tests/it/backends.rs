//! One suite, run on every backend, as object_store's `integration.rs` does:
//! a local directory, the in-memory store and the S3-protocol server (moto, on
//! loopback, as `make test` starts it) all run the same checks: open reads
//! the header in one GET, searches equal Faiss bit for bit, a cold search
//! makes one GET per distinct list of Faiss's coarse assignment and a warm one
//! none, an overwritten object is refused until reloaded, a missing one is
//! `NotFound`, a checksum sidecar verifies every list, a preload leaves
//! nothing for searches to read, the disk tier serves a restarted process,
//! and an attributes object filters. No backend gets a thinner copy.

use std::sync::Arc;

use crate::common::*;
use arrow_array::{Int64Array, RecordBatch};
use ivflake::{
    AttributeFilter, DiskCacheConfig, Error, FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions,
    ParquetTable, Preload, PreloadState, SearchParams,
};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

/// A backend: a location for `key` (through the URI parser where the backend has a URI).
type Locate = Box<dyn Fn(&str) -> IndexLocation>;

/// The same location, its store wrapped in a GET counter.
fn counted(location: IndexLocation) -> (IndexLocation, Arc<CountingStore>) {
    let counting = Arc::new(counting_store(location.store.clone()));
    let store: Arc<dyn ObjectStore> = counting.clone();
    (IndexLocation { store, ..location }, counting)
}

/// Memory cache on (for the warm check), no coalescing (so GETs count lists), no sidecar lookup.
fn suite_options() -> OpenOptions {
    OpenOptions {
        manifest: ManifestMode::Ignore,
        ..options(FetchConfig {
            coalesce_gap: 0,
            max_coalesced: 0,
            ..FetchConfig::default()
        })
    }
}

async fn suite(backend: &str, locate: Locate) {
    let v1 = build_index("IVF32,Flat", Metric::L2, D, 3000);
    let v2 = build_index("IVF32,SQ8", Metric::L2, D, 3000);
    let key = unique_key("backends", backend);
    let (location, counting) = counted(locate(&key));
    put(&location.store, location.path.as_ref(), v1.clone()).await;

    // Open: the header, in one GET from byte 0.
    counting.reset();
    let index = IvfIndex::open_at(location.clone(), suite_options())
        .await
        .unwrap_or_else(|e| panic!("{backend}: open: {e}"));
    assert_eq!(counting.gets(), 1, "{backend}: open is one GET");
    assert_eq!(counting.ranges()[0].start, 0, "{backend}");
    assert_eq!(index.file_len(), v1.len() as u64, "{backend}");
    assert_eq!(index.info().ntotal, 3000, "{backend}");
    assert!(index.e_tag().is_some(), "{backend}: an ETag to pin the version");

    // Searches equal Faiss in memory; a cold one makes one GET per distinct
    // non-empty list of Faiss's own coarse assignment; a warm one makes none.
    let reference = ivflake_faiss::read_index(&v1).unwrap();
    let queries = clustered(12, D, 3);
    let mut cached = std::collections::BTreeSet::new();
    for nprobe in [1, 8] {
        let lists = probed_lists(&reference, &queries, nprobe);
        counting.reset();
        let cold = index.search(&queries, 10, nprobe).await.unwrap();
        assert_same(
            &cold,
            &reference.search(&queries, 10, nprobe).unwrap(),
            &format!("{backend} nprobe {nprobe}"),
        );
        let mut ranges = counting.ranges();
        ranges.sort_by_key(|r| r.start);
        let wanted: Vec<_> = lists
            .difference(&cached)
            .map(|&l| index.list_ranges().get(l).unwrap().range())
            .collect();
        assert!(!wanted.is_empty(), "{backend} nprobe {nprobe}");
        assert_eq!(
            ranges, wanted,
            "{backend} nprobe {nprobe}: one GET per list not yet cached"
        );
        cached.extend(lists.iter().copied());
        counting.reset();
        let warm = index.search(&queries, 10, nprobe).await.unwrap();
        assert_eq!(
            counting.gets(),
            0,
            "{backend} nprobe {nprobe}: a warm search makes no GET"
        );
        assert_eq!(warm.stats.lists_from_memory, lists.len(), "{backend}");
        assert_eq!((&warm.ids, &warm.distances), (&cold.ids, &cold.distances));
    }
    // Another handle on the same object, over its own scheduler: cold again.
    let all = probed_lists(&reference, &queries, 32);
    let wide = IvfIndex::open_at(location.clone(), suite_options()).await.unwrap();
    counting.reset();
    wide.search(&queries, 10, 32).await.unwrap();
    assert_eq!(counting.gets(), all.len(), "{backend}: a cold search of every list");

    // Version pinning: a handle without a cache reads the store on every
    // search; once the object is overwritten, it is refused until reloaded.
    let pinned = IvfIndex::open_at(
        location.clone(),
        OpenOptions {
            manifest: ManifestMode::Ignore,
            ..options(uncached())
        },
    )
    .await
    .unwrap();
    pinned.search(&queries, 10, 8).await.unwrap();
    put(&location.store, location.path.as_ref(), v2.clone()).await;
    let err = pinned.search(&queries, 10, 8).await.unwrap_err();
    assert!(matches!(err, Error::IndexChanged { .. }), "{backend}: {err:?}");
    let reloaded = pinned.reload().await.unwrap();
    assert_ne!(reloaded.e_tag(), pinned.e_tag(), "{backend}");
    assert!(reloaded.info().type_name.contains("ScalarQuantizer"), "{backend}");
    let reference = ivflake_faiss::read_index(&v2).unwrap();
    let r = reloaded.search(&queries, 10, 8).await.unwrap();
    assert_same(
        &r,
        &reference.search(&queries, 10, 8).unwrap(),
        &format!("{backend} reloaded"),
    );

    // A missing object.
    let (missing, _) = counted(locate(&unique_key("backends", "absent")));
    let err = IvfIndex::open_at(missing, suite_options()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{backend}: {err}");

    extras(backend, &location, &counting, &v2).await;
}

/// The features beyond reading lists, on the same backend and object (`v2`).
async fn extras(backend: &str, location: &IndexLocation, counting: &CountingStore, bytes: &[u8]) {
    let reference = ivflake_faiss::read_index(bytes).unwrap();
    let queries = clustered(12, D, 3);
    let expected = reference.search(&queries, 10, 8).unwrap();

    // Checksums: with the sidecar required, every fetched list is verified.
    write_sidecar(location.clone()).await;
    let verified = IvfIndex::open_at(
        location.clone(),
        OpenOptions {
            manifest: ManifestMode::Require,
            ..options(uncached())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{backend}: open with the sidecar: {e}"));
    assert!(verified.is_verified(), "{backend}");
    let r = verified.search(&queries, 10, 8).await.unwrap();
    assert_same(&r, &expected, &format!("{backend} verified"));

    // Preload: every list loaded in the background; then searches read nothing.
    let preloaded = IvfIndex::open_at(
        location.clone(),
        OpenOptions {
            preload: Preload::Auto {
                max_cache_fraction: 1.0,
            },
            ..suite_options()
        },
    )
    .await
    .unwrap();
    assert_eq!(preloaded.preloaded().await.state, PreloadState::Done, "{backend}");
    counting.reset();
    let r = preloaded.search(&queries, 10, 32).await.unwrap();
    assert_eq!(
        counting.gets(),
        0,
        "{backend}: a search after the preload reads nothing"
    );
    assert_eq!(r.stats.lists_from_memory, r.stats.lists_probed, "{backend}");

    // The disk tier: a second scheduler (a restarted process) over the same
    // directory serves every list from disk.
    let dir = TempDir::new("backend-disk");
    let with_disk = || OpenOptions {
        manifest: ManifestMode::Ignore,
        ..options(FetchConfig {
            disk_cache: Some(DiskCacheConfig {
                dir: dir.path().to_path_buf(),
                capacity_bytes: 1 << 30,
            }),
            ..uncached()
        })
    };
    let first = IvfIndex::open_at(location.clone(), with_disk()).await.unwrap();
    let cold = first.search(&queries, 10, 8).await.unwrap();
    first.scheduler().settle_disk_writes().await;
    drop(first);
    let second = IvfIndex::open_at(location.clone(), with_disk()).await.unwrap();
    counting.reset();
    let warm = second.search(&queries, 10, 8).await.unwrap();
    assert_eq!(counting.gets(), 0, "{backend}: every list from disk");
    assert_eq!(warm.stats.lists_from_disk, warm.stats.lists_probed, "{backend}");
    assert_eq!((&warm.ids, &warm.distances), (&cold.ids, &cold.distances), "{backend}");

    // Attributes: an object beside the index (`bucket` = id mod 10) filters.
    let index = IvfIndex::open_at(location.clone(), suite_options()).await.unwrap();
    let lists = index.list_ids().await.unwrap();
    let ids: Vec<i64> = (0..index.info().ntotal).collect();
    let bucket = Int64Array::from(ids.iter().map(|id| id % 10).collect::<Vec<_>>());
    let batch = RecordBatch::try_from_iter([("bucket", Arc::new(bucket) as _)]).unwrap();
    let written = ivflake::write_attributes(&ParquetTable { batch }, &ids, &lists).unwrap();
    let attributes_key = format!("{}{}", location.path.as_ref(), ivflake::ATTRIBUTES_SUFFIX);
    put(&location.store, &attributes_key, written).await;
    let filtered = IvfIndex::open_at(location.clone(), suite_options()).await.unwrap();
    let params = SearchParams {
        attribute_filter: Some(AttributeFilter::from_json(&serde_json::json!({"bucket": 3})).unwrap()),
        ..SearchParams::new(10, 8)
    };
    let r = filtered.search_with(&queries, &params).await.unwrap();
    let hits: Vec<i64> = r.ids.iter().copied().filter(|&id| id >= 0).collect();
    assert!(!hits.is_empty(), "{backend}: the filter matched nothing");
    assert!(hits.iter().all(|id| id % 10 == 3), "{backend}: {hits:?}");
}

#[tokio::test]
async fn every_check_on_a_local_directory() {
    let dir = std::env::temp_dir().join(format!("ivflake-backends-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("backends")).unwrap();
    let root = dir.clone();
    // Plain paths, through the URI parser (as `ivflake serve` gets them).
    suite(
        "local",
        Box::new(move |key| {
            let path = root.join(key);
            IndexLocation::parse(path.to_str().unwrap(), &FetchConfig::default()).expect("a local path parses")
        }),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn every_check_on_the_in_memory_store() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    suite(
        "memory",
        Box::new(move |key| IndexLocation::new(store.clone(), key, format!("memory://suite/{key}"))),
    )
    .await;
}

#[tokio::test]
async fn every_check_on_the_s3_server() {
    let env = moto();
    // One store for every key: a parsed URI builds a client per location.
    let store = IndexLocation::parse(&format!("s3://{}/x", env.bucket), &FetchConfig::default())
        .expect("an s3 URI parses")
        .store;
    let bucket = env.bucket.clone();
    suite(
        "s3",
        Box::new(move |key| {
            let uri = format!("s3://{bucket}/{key}");
            let parsed = IndexLocation::parse(&uri, &FetchConfig::default()).expect("an s3 URI parses");
            assert_eq!(parsed.path.as_ref(), key);
            IndexLocation {
                store: store.clone(),
                ..parsed
            }
        }),
    )
    .await;
}
