//! One suite, run on every backend, as object_store's `integration.rs` does:
//! a local directory, the in-memory store and the S3-protocol server (moto, on
//! loopback, as `make test` starts it) all run the same checks: open reads
//! the header in one GET, searches equal Faiss bit for bit, a cold search
//! makes one GET per distinct list of Faiss's coarse assignment and a warm one
//! none, an overwritten object is refused until reloaded, and a missing one
//! is `NotFound`. No backend gets a thinner copy.

use std::sync::Arc;

use crate::common::*;
use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, ManifestMode, Metric, OpenOptions};
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
