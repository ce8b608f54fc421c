//! Mutable indexes against Faiss in memory: upserts (with attributes) and
//! deletes on faiss-cpu-written IVF-Flat, IVF-PQ, IVF-SQ8 and OPQ files, searched
//! before and after compaction, equal Faiss after the same `remove_ids` and
//! `add_with_ids` on the same base; the compacted base is a file
//! `read_index` reads with the same results. From a local directory and
//! from moto. Also: an empty index (exact until trained), concurrent
//! writers, other processes' writes seen after a refresh, and bad input.

use std::sync::Arc;

use ivflake::{
    CompactOptions, Error, IdFilterSpec, IndexLocation, Metric, MutableIndex, MutableOptions, SearchParams, Staleness,
};
use ivflake_testkit::{normalized_results as normalized, HookedStore, IgnoreConditionalCreates};
use object_store::ObjectStoreExt;

use crate::common::{clustered, fixtures, manifest, moto, npy_f32, unique_key, TempDir};

const BATCHES: usize = 20;

pub(crate) fn assert_equal(ours: &ivflake::SearchResults, faiss: &ivflake_faiss::Neighbors, k: usize, what: &str) {
    let a = normalized(&ours.ids, &ours.distances, k);
    let b = normalized(&faiss.labels, &faiss.distances, k);
    for (q, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.1, y.1, "{what}: query {q} ids");
        for (dx, dy) in x.0.iter().zip(&y.0) {
            assert!(
                (dx - dy).abs() <= 1e-4 * dy.abs().max(1.0),
                "{what}: query {q} distances {x:?} {y:?}"
            );
        }
    }
}

/// Writes 20 batches (new ids, overwritten ids, deletes) to both, compares
/// searches after some of them, compacts, compares again, and reads the
/// new base with Faiss.
async fn writes_equal_faiss(index: &MutableIndex, file: &[u8], metric: Metric, what: &str) {
    let m = manifest();
    let (d, k, nprobe) = (m.d, m.k, m.nprobe);
    let (queries, _) = npy_f32(&fixtures().join("queries.npy"));
    let mut reference = ivflake_faiss::read_index(file).unwrap();
    let nb = reference.info().ntotal;
    // Each upsert's attributes: its batch. The base's rows have none.
    let mut batch_of: std::collections::HashMap<i64, i64> = Default::default();
    for batch in 0..BATCHES {
        let fresh = clustered(40, d, 100 + batch as u64);
        // 30 new ids, 10 overwriting base ids or earlier new ones.
        let mut ids: Vec<i64> = (0..30).map(|i| 1_000_000 + (batch * 30 + i) as i64).collect();
        ids.extend((0..10).map(|i| ((batch * 37 + i * 101) as i64 * 7919) % (nb + batch as i64 * 30)));
        ids.sort_unstable();
        ids.dedup();
        let vectors = &fresh[..ids.len() * d];
        let attributes = arrow_array::RecordBatch::try_from_iter([(
            "batch",
            Arc::new(arrow_array::Int64Array::from(vec![batch as i64; ids.len()])) as arrow_array::ArrayRef,
        )])
        .unwrap();
        index.upsert_with(vectors, &ids, Some(&attributes)).await.unwrap();
        batch_of.extend(ids.iter().map(|&id| (id, batch as i64)));
        reference.remove_ids(&ids).unwrap();
        reference.add_with_ids(vectors, &ids).unwrap();
        if batch % 3 == 1 {
            let deletes: Vec<i64> = (0..15)
                .map(|i| ((batch * 53 + i * 211) as i64 * 104_729) % nb)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            index.delete(&deletes).await.unwrap();
            reference.remove_ids(&deletes).unwrap();
            for id in &deletes {
                batch_of.remove(id);
            }
        }
        if batch % 5 == 4 {
            let ours = index.search(&queries, k, nprobe).await.unwrap();
            assert_eq!(ours.stats.log_position, index.log_position(), "{what}");
            assert!(ours.stats.unindexed_entries > 0, "{what}: the log was read");
            assert_equal(
                &ours,
                &reference.search(&queries, k, nprobe).unwrap(),
                k,
                &format!("{what} after batch {batch}"),
            );
        }
    }
    let expected = reference.search(&queries, k, nprobe).unwrap();
    // A filtered search: Faiss with the same IDSelector.
    let allowed: Vec<i64> = (0..nb).step_by(3).chain(1_000_000..1_000_300).collect();
    let filter = IdFilterSpec::Allow(allowed.clone());
    let ours = index
        .search_with(
            &queries,
            &SearchParams {
                filter: filter.clone(),
                ..SearchParams::new(k, nprobe)
            },
        )
        .await
        .unwrap();
    let faiss = reference
        .search_filtered(&queries, k, nprobe, ivflake_faiss::IdFilter::Allow(&allowed))
        .unwrap();
    assert_equal(&ours, &faiss, k, &format!("{what}: filtered"));
    // An attribute filter: Faiss with exactly the ids whose last write matches.
    let by_attribute = SearchParams {
        attribute_filter: Some(
            ivflake::AttributeFilter::from_json(&serde_json::json!({"batch": {"$gte": 10}})).unwrap(),
        ),
        probing: ivflake::FilterProbing::none(),
        ..SearchParams::new(k, nprobe)
    };
    let mut matching: Vec<i64> = batch_of.iter().filter(|(_, &b)| b >= 10).map(|(&id, _)| id).collect();
    matching.sort_unstable();
    let attribute_expected = reference
        .search_filtered(&queries, k, nprobe, ivflake_faiss::IdFilter::Allow(&matching))
        .unwrap();
    let ours = index.search_with(&queries, &by_attribute).await.unwrap();
    assert!(
        ours.ids.iter().any(|&id| id >= 1_000_000),
        "{what}: the filter finds written ids"
    );
    assert_equal(&ours, &attribute_expected, k, &format!("{what}: attribute filter"));

    let before = index.version_position();
    let report = index
        .compact(&CompactOptions::default())
        .await
        .unwrap()
        .expect("something to fold");
    assert_eq!(report.version, before + 1);
    assert_eq!(
        report.entries,
        reference.info().ntotal as u64,
        "{what}: entries after compaction"
    );
    assert_eq!(index.unindexed(), (0, 0), "{what}: the log is folded");
    assert!(
        index.base().is_verified(),
        "{what}: the new base has its checksum sidecar"
    );
    let ours = index.search(&queries, k, nprobe).await.unwrap();
    assert_equal(&ours, &expected, k, &format!("{what}: after compaction"));
    let filtered = index.search_with(&queries, &by_attribute).await.unwrap();
    assert_equal(
        &filtered,
        &attribute_expected,
        k,
        &format!("{what}: attribute filter after compaction"),
    );
    // The new base is a standard Faiss file.
    let base = index.base();
    let location = &base.object().location;
    let bytes = location.store.get(&location.path).await.unwrap().bytes().await.unwrap();
    let compacted = ivflake_faiss::read_index(&bytes).unwrap();
    assert_eq!(compacted.info().metric, metric);
    assert_equal(
        &ours,
        &compacted.search(&queries, k, nprobe).unwrap(),
        k,
        &format!("{what}: read_index of the new base"),
    );
    assert!(
        index.compact(&CompactOptions::default()).await.unwrap().is_none(),
        "nothing left to fold"
    );
}

const FIXTURES: [(&str, Metric); 4] = [
    ("ivfflat_l2", Metric::L2),
    ("ivfpq_l2", Metric::L2),
    ("ivfsq8_l2", Metric::L2),
    ("opq_ivfpq_ip", Metric::InnerProduct),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_a_local_directory_equal_faiss() {
    let dir = TempDir::new("mutable-local");
    for (name, metric) in FIXTURES {
        let file = fixtures().join(format!("{name}.faiss"));
        let root = dir.path().join(name);
        let index = MutableIndex::create_from(
            root.to_str().unwrap(),
            file.to_str().unwrap(),
            MutableOptions::default(),
        )
        .await
        .unwrap();
        writes_equal_faiss(&index, &std::fs::read(&file).unwrap(), metric, name).await;
        // The original file is the first version's base, untouched.
        assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&file).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_moto_equal_faiss() {
    let moto = moto();
    let store = moto.store();
    for (name, metric) in FIXTURES {
        let file = std::fs::read(fixtures().join(format!("{name}.faiss"))).unwrap();
        let key = unique_key("mutable", name);
        crate::common::put(&store, &key, file.clone()).await;
        let base_uri = format!("s3://{}/{key}", moto.bucket);
        let root = format!(
            "s3://{}/{}/",
            moto.bucket,
            unique_key("mutable", &format!("{name}-root"))
        );
        let index = MutableIndex::create_from(&root, &base_uri, MutableOptions::default())
            .await
            .unwrap();
        writes_equal_faiss(&index, &file, metric, &format!("{name} on moto")).await;
        // Another process opening the prefix sees the same index.
        let other = MutableIndex::open(&root, MutableOptions::default()).await.unwrap();
        assert_eq!(other.version_position(), index.version_position());
        assert_eq!(other.base_uri(), index.base_uri());
    }
}

/// An empty index searches exactly until the compaction that trains it;
/// then it equals Faiss trained on the same vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_index_is_exact_until_trained() {
    let dir = TempDir::new("mutable-empty");
    let d = 16;
    let root = dir.path().join("idx");
    let index = MutableIndex::create(
        root.to_str().unwrap(),
        d,
        Metric::L2,
        "IVF8,Flat",
        MutableOptions::default(),
    )
    .await
    .unwrap();
    let data = clustered(400, d, 5);
    let ids: Vec<i64> = (0..400).map(|i| i * 3).collect();
    index.upsert(&data[..200 * d], &ids[..200]).await.unwrap();
    let queries = clustered(5, d, 6);
    let ours = index.search(&queries, 5, 4).await.unwrap();
    let mut exact = ivflake_faiss::Index::factory(d, "Flat", Metric::L2).unwrap();
    // Flat ids are positions: map them back.
    exact.add(&data[..200 * d]).unwrap();
    let faiss = exact.search(&queries, 5, 1).unwrap();
    let mapped: Vec<i64> = faiss.labels.iter().map(|&p| ids[p as usize]).collect();
    assert_equal(
        &ours,
        &ivflake_faiss::Neighbors {
            labels: mapped,
            distances: faiss.distances,
        },
        5,
        "exact before training",
    );
    // Too few to train IVF8 (8 × 39): folded into the exact base.
    let first = index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    assert!(!first.trained);
    index.upsert(&data[200 * d..], &ids[200..]).await.unwrap();
    let trained = index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    assert!(trained.trained && trained.entries == 400);
    assert!(index.version().trained);
    assert_eq!(index.base().info().nlist, 8);
    // Writes after training are encoded by the trained codec.
    let more = clustered(10, d, 7);
    let more_ids: Vec<i64> = (5000..5010).collect();
    index.upsert(&more, &more_ids).await.unwrap();
    let found = index.search(&more[..d], 1, 8).await.unwrap();
    assert_eq!(found.ids[0], 5000, "a write after training is found by its own vector");
}

/// Two writers (separate handles, as separate processes would be) upsert
/// distinct ids at once into one index on moto: every id is found after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_moto_lose_nothing() {
    let moto = moto();
    let root = format!("s3://{}/{}/", moto.bucket, unique_key("mutable", "writers"));
    let d = 8;
    MutableIndex::create(&root, d, Metric::L2, "IVF4,Flat", MutableOptions::default())
        .await
        .unwrap();
    let writers: Vec<_> = (0..2i64)
        .map(|w| {
            let root = root.clone();
            tokio::spawn(async move {
                let index = MutableIndex::open(&root, MutableOptions::default()).await.unwrap();
                for batch in 0..10i64 {
                    let ids: Vec<i64> = (0..50).map(|i| w * 10_000 + batch * 50 + i).collect();
                    index
                        .upsert(&clustered(50, d, (w * 100 + batch) as u64), &ids)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let options = MutableOptions {
        staleness: Staleness::Strong,
        ..Default::default()
    };
    let reader = MutableIndex::open(&root, options).await.unwrap();
    assert_eq!(reader.unindexed().0, 1000, "all 1,000 upserts are present");
    assert_eq!(reader.log_position(), Some(19), "20 commits at 20 positions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_handle_sees_writes_within_the_staleness_bound() {
    let dir = TempDir::new("mutable-stale");
    let root = dir.path().join("idx");
    let root = root.to_str().unwrap();
    let d = 8;
    let writer = MutableIndex::create(root, d, Metric::L2, "IVF4,Flat", MutableOptions::default())
        .await
        .unwrap();
    let strong = MutableIndex::open(
        root,
        MutableOptions {
            staleness: Staleness::Strong,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let lazy = MutableIndex::open(
        root,
        MutableOptions {
            staleness: Staleness::Bounded(std::time::Duration::from_secs(3600)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let v = clustered(1, d, 1);
    writer.upsert(&v, &[42]).await.unwrap();
    let seen = strong.search(&v, 1, 1).await.unwrap();
    assert_eq!((seen.ids[0], seen.stats.log_position), (42, Some(0)));
    let stale = lazy.search(&v, 1, 1).await.unwrap();
    assert_eq!(stale.ids[0], -1, "within its bound, it may not have looked yet");
    lazy.refresh().await.unwrap();
    assert_eq!(lazy.search(&v, 1, 1).await.unwrap().ids[0], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_naming_the_field() {
    let dir = TempDir::new("mutable-bad");
    let root = dir.path().join("idx");
    let index = MutableIndex::create(
        root.to_str().unwrap(),
        4,
        Metric::L2,
        "IVF4,Flat",
        MutableOptions::default(),
    )
    .await
    .unwrap();
    let field = |e: Error| match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(index.upsert(&[0.0; 3], &[1]).await.unwrap_err()), "vectors");
    assert_eq!(
        field(index.upsert(&[f32::NAN, 0.0, 0.0, 0.0], &[1]).await.unwrap_err()),
        "vectors"
    );
    assert_eq!(field(index.upsert(&[0.0; 8], &[1, 1]).await.unwrap_err()), "ids");
    assert_eq!(field(index.upsert(&[0.0; 4], &[-1]).await.unwrap_err()), "ids");
    assert_eq!(field(index.delete(&[]).await.unwrap_err()), "ids");
    assert_eq!(index.log_position(), None, "nothing was written");
    // Opening a directory that is not there creates nothing.
    let missing = dir.path().join("missing");
    let err = MutableIndex::open(missing.to_str().unwrap(), MutableOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(!missing.exists());
    // The index is created once.
    let again = MutableIndex::create(
        root.to_str().unwrap(),
        4,
        Metric::L2,
        "IVF4,Flat",
        MutableOptions::default(),
    )
    .await;
    assert!(again.is_err());
    // Fast-scan lists cannot take writes.
    let fs = MutableIndex::create(
        dir.path().join("fs").to_str().unwrap(),
        8,
        Metric::L2,
        "IVF4,PQ4x4fs",
        MutableOptions::default(),
    )
    .await;
    assert!(matches!(fs, Err(Error::Unsupported { .. })), "{fs:?}");
}

/// A store that ignores conditional creates is refused for writing, before
/// anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_ignoring_conditional_creates_is_refused() {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(HookedStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        IgnoreConditionalCreates,
    ));
    let root = IndexLocation::new(store.clone(), "idx", "memory:///idx");
    let err = MutableIndex::create_at(root, 4, Metric::L2, "IVF4,Flat", MutableOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { reason, .. } if reason.contains("conditional")),
        "{err}"
    );
}

/// A writer that last looked before another process wrote, compacted and
/// ran `gc` commits after their records, losing nothing: records younger
/// than a writer's view may be old are never collected, so the writer
/// cannot create a folded position again (where the newer version would
/// not read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_moves_past_collected_records() {
    let dir = TempDir::new("mutable-stale-writer");
    let root = dir.path().join("idx");
    let root = root.to_str().unwrap();
    let d = 8;
    let lazy = MutableOptions {
        staleness: Staleness::Bounded(std::time::Duration::from_secs(3600)),
        ..Default::default()
    };
    MutableIndex::create(root, d, Metric::L2, "IVF4,Flat", MutableOptions::default())
        .await
        .unwrap();
    let stale = MutableIndex::open(root, lazy.clone()).await.unwrap();
    let other = MutableIndex::open(root, lazy).await.unwrap();
    for batch in 0..3i64 {
        let ids: Vec<i64> = (0..10).map(|i| batch * 10 + i).collect();
        other.upsert(&clustered(10, d, batch as u64), &ids).await.unwrap();
    }
    other.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let gone = other.gc(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(
        gone.log_records, 0,
        "records younger than a writer's view stay: {gone:?}"
    );
    let v = clustered(1, d, 99);
    let position = stale.upsert(&v, &[500]).await.unwrap();
    assert_eq!(position, 3, "committed after the others' records");
    let reader = MutableIndex::open(root, MutableOptions::default()).await.unwrap();
    assert_eq!(reader.version_position(), 1);
    assert_eq!(
        reader.search(&v, 1, 4).await.unwrap().ids[0],
        500,
        "the compacted version reads it"
    );
    assert_eq!(
        reader.unindexed(),
        (1, 1),
        "the 30 folded vectors are in the base, the new one in the log"
    );
}
