//! `get(ids)` against what was written: raw vectors bit for bit and the
//! last attributes of each id, whether the write is still in the log or
//! kept in a compaction's rows segment (several, read newest first);
//! deleted and unknown ids are absent; an index that keeps no vectors
//! still returns attributes; a get reads a few pages of a large segment,
//! not the segment. `list_ids` lists every live id once, in order, across
//! the log and the segments. On a local directory and on moto.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use ivflake::{AttributeValue, CompactOptions, IndexLocation, KeptRow, Metric, MutableIndex, MutableOptions};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

use crate::common::{clustered, counting_store, moto, unique_key, TempDir};

const D: usize = 16;

/// What the model holds of a live id: its vector and attributes.
type Model = HashMap<i64, (Vec<f32>, Option<(String, i64)>)>;

fn attributes(ids: &[i64], round: usize) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "tag",
            Arc::new(StringArray::from(
                ids.iter().map(|id| format!("t{}-{round}", id % 7)).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "n",
            Arc::new(Int64Array::from(
                ids.iter().map(|id| id * 10 + round as i64).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// Upserts `ids` (with attributes unless `bare`) into both.
async fn upsert(index: &MutableIndex, model: &mut Model, ids: &[i64], round: usize, bare: bool) {
    let vectors = clustered(ids.len(), D, 500 + round as u64);
    let batch = attributes(ids, round);
    index
        .upsert_with(&vectors, ids, (!bare).then_some(&batch))
        .await
        .unwrap();
    for (i, &id) in ids.iter().enumerate() {
        let attrs = (!bare).then(|| (format!("t{}-{round}", id % 7), id * 10 + round as i64));
        model.insert(id, (vectors[i * D..(i + 1) * D].to_vec(), attrs));
    }
}

async fn delete(index: &MutableIndex, model: &mut Model, ids: &[i64]) {
    index.delete(ids).await.unwrap();
    for id in ids {
        model.remove(id);
    }
}

/// `list_ids` over three ranges, in small pages (so that each source is
/// cut short in turn): every live id once, in order.
async fn check_listing(index: &MutableIndex, model: &Model, what: &str) {
    let mut want: Vec<i64> = model.keys().copied().collect();
    want.sort_unstable();
    let mut listed = Vec::new();
    for range in [i64::MIN..=5_000, 5_001..=10_100, 10_101..=i64::MAX] {
        let mut after = None;
        for _ in 0..10_000 {
            let page = index.list_ids(range.clone(), after, 37).await.unwrap();
            assert!(page.ids.len() <= 37, "{what}: a page over its limit");
            assert!(
                page.ids.iter().all(|id| range.contains(id)),
                "{what}: an id outside the range"
            );
            listed.extend(page.ids);
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
    }
    assert_eq!(listed, want, "{what}: the listing");
}

/// Every id of the model, some deleted ids and unknown ones, through `get`
/// (and the listing).
async fn check(index: &MutableIndex, model: &Model, gone: &[i64], keep_vectors: bool, what: &str) {
    check_listing(index, model, what).await;
    let mut ids: Vec<i64> = model.keys().copied().collect();
    ids.sort_unstable();
    ids.extend_from_slice(gone);
    ids.extend([999_999_999, 123_456_789]);
    let got = index.get(&ids).await.unwrap();
    assert_eq!(got.len(), ids.len());
    for (id, row) in ids.iter().zip(&got) {
        match model.get(id) {
            None => assert_eq!(row, &None, "{what}: id {id} is not in the index"),
            Some((vector, attrs)) => {
                let row: &KeptRow = row.as_ref().unwrap_or_else(|| panic!("{what}: id {id} is missing"));
                if keep_vectors {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        row.vector.as_deref().map(bits),
                        Some(bits(vector)),
                        "{what}: id {id}'s vector"
                    );
                } else {
                    assert_eq!(row.vector, None, "{what}: id {id} keeps no vector");
                }
                let expected: Vec<(String, AttributeValue)> = match attrs {
                    Some((tag, n)) => vec![
                        ("n".into(), AttributeValue::Int64(*n)),
                        ("tag".into(), AttributeValue::Utf8(tag.clone())),
                    ],
                    None => Vec::new(),
                };
                let got: Vec<(String, AttributeValue)> = row.attributes.clone().into_iter().collect();
                assert_eq!(got, expected, "{what}: id {id}'s attributes");
            }
        }
    }
}

async fn get_returns_what_was_written(root: IndexLocation, keep_vectors: bool, what: &str) {
    let options = MutableOptions {
        keep_vectors,
        ..Default::default()
    };
    let index = MutableIndex::create_at(root, D, Metric::L2, "IVF8,Flat", options)
        .await
        .unwrap();
    let mut model = Model::new();
    let first: Vec<i64> = (0..600).map(|i| i * 3).collect();
    upsert(&index, &mut model, &first, 0, false).await;
    upsert(&index, &mut model, &first[..100], 1, true).await;
    delete(&index, &mut model, &first[500..520]).await;
    let mut gone: Vec<i64> = first[500..520].to_vec();
    check(&index, &model, &gone, keep_vectors, &format!("{what}: in the log")).await;

    // The first compaction trains and keeps the rows; the second folds.
    assert!(
        index
            .compact(&CompactOptions::default())
            .await
            .unwrap()
            .unwrap()
            .trained
    );
    check(&index, &model, &gone, keep_vectors, &format!("{what}: one segment")).await;
    let second: Vec<i64> = (0..200).map(|i| 10_000 + i).collect();
    upsert(&index, &mut model, &second, 2, false).await;
    upsert(&index, &mut model, &first[100..150], 3, false).await;
    delete(&index, &mut model, &first[..10]).await;
    gone.extend_from_slice(&first[..10]);
    index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    assert_eq!(index.version().rows.len(), 2, "{what}: a segment per compaction");
    // And some in the log on top.
    upsert(&index, &mut model, &first[150..160], 4, false).await;
    delete(&index, &mut model, &second[..5]).await;
    gone.extend_from_slice(&second[..5]);
    check(
        &index,
        &model,
        &gone,
        keep_vectors,
        &format!("{what}: segments and log"),
    )
    .await;

    // Another handle (no cached segments) reads the same.
    let other = MutableIndex::open_at(index_root(&index), MutableOptions::default())
        .await
        .unwrap();
    check(&other, &model, &gone, keep_vectors, &format!("{what}: reopened")).await;
    let err = index.get(&[]).await.unwrap_err();
    assert!(
        matches!(err, ivflake::Error::InvalidArgument { field: "ids", .. }),
        "{err}"
    );

    // A retrain trains a fresh quantizer and codec on every kept vector.
    let retrain = CompactOptions {
        retrain: true,
        ..Default::default()
    };
    if !keep_vectors {
        let err = index.compact(&retrain).await.unwrap_err();
        assert!(
            matches!(&err, ivflake::Error::Unsupported { reason, .. } if reason.contains("vectors")),
            "{err}"
        );
        return;
    }
    let codec = index.version().codec;
    let report = index.compact(&retrain).await.unwrap().unwrap();
    assert!(
        report.trained && report.entries == model.len() as u64,
        "{what}: {report:?}"
    );
    assert_ne!(index.version().codec, codec, "{what}: a new codec");
    // A write after it is encoded with the new codec.
    upsert(&index, &mut model, &[77_777], 5, false).await;
    check(&index, &model, &gone, true, &format!("{what}: retrained")).await;
    // Every list probed, IVF-Flat is exact: brute force over the model.
    let mut exact = ivflake_faiss::Index::factory(D, "IDMap,Flat", Metric::L2).unwrap();
    let (ids, vectors): (Vec<i64>, Vec<Vec<f32>>) = model.iter().map(|(id, (v, _))| (*id, v.clone())).unzip();
    exact.add_with_ids(&vectors.concat(), &ids).unwrap();
    let queries = clustered(20, D, 4242);
    let ours = index.search(&queries, 5, 8).await.unwrap();
    crate::mutable::assert_equal(
        &ours,
        &exact.search(&queries, 5, 1).unwrap(),
        5,
        &format!("{what}: retrained"),
    );
}

fn index_root(index: &MutableIndex) -> IndexLocation {
    let base = index.base();
    let location = &base.object().location;
    let prefix = location.path.as_ref().rsplit_once("/bases/").unwrap().0.to_string();
    let uri = index.uri().to_string();
    IndexLocation::new(location.store.clone(), prefix.as_str(), &uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_a_local_directory() {
    let dir = TempDir::new("mutable-get");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let root = IndexLocation::new(store.clone(), "kept", "file:///kept");
    get_returns_what_was_written(root, true, "local").await;
    let root = IndexLocation::new(store, "ids-only", "file:///ids-only");
    get_returns_what_was_written(root, false, "local, no vectors kept").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_moto() {
    let moto = moto();
    let prefix = unique_key("mutable-get", "root");
    let root = IndexLocation::new(moto.store(), prefix.as_str(), format!("s3://{}/{prefix}", moto.bucket));
    get_returns_what_was_written(root, true, "moto").await;
}

/// A get of a few ids from a segment of 100,000 rows reads pages, not the segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_reads_a_few_pages_of_a_large_segment() {
    let dir = TempDir::new("mutable-get-pages");
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let counting = Arc::new(counting_store(local));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let root = IndexLocation::new(store, "big", "file:///big");
    let index = MutableIndex::create_at(root, D, Metric::L2, "IVF8,Flat", MutableOptions::default())
        .await
        .unwrap();
    let n = 100_000;
    let ids: Vec<i64> = (0..n as i64).collect();
    let vectors = clustered(n, D, 3);
    index
        .upsert_with(&vectors, &ids, Some(&attributes(&ids, 0)))
        .await
        .unwrap();
    index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let segment = dir.path().join("big").join(&index.version().rows[0]);
    let size = std::fs::metadata(&segment).unwrap().len();
    let wanted = [7i64, 40_000, 99_999];
    // A fresh handle: its first get also opens the segment (footer, page index).
    let fresh = MutableIndex::open_at(index_root(&index), MutableOptions::default())
        .await
        .unwrap();
    counting.reset();
    let got = fresh.get(&wanted).await.unwrap();
    let ranges = counting.ranges();
    // Every GET but one is a bounded range read; that one is the segment's
    // tail (a suffix read of at most 1 MiB: footer and page index).
    assert_eq!(ranges.len() + 1, counting.gets(), "one suffix read, the rest ranges");
    let read: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    for (id, row) in wanted.iter().zip(got) {
        let v = row.unwrap().vector.unwrap();
        assert_eq!(v, vectors[*id as usize * D..(*id as usize + 1) * D].to_vec());
    }
    assert!(
        read * 20 < size,
        "a get of 3 ids read {read} bytes of pages of a {size}-byte segment"
    );
    assert!(ranges.len() < 20, "{} range reads", ranges.len());
}
