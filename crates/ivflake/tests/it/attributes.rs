//! Attribute filters against real parts: a Parquet attributes object written
//! by the library, real Faiss (`IndexIVF::search` with an `IDSelector` of
//! exactly the matching ids as the reference), counted stores and the
//! S3-protocol server. Ground truth for recall is a brute-force scan of the
//! matching rows, computed here independently of arrow and Faiss.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use ivflake::{
    AttributeFilter, Error, FetchConfig, FilterProbing, IdFilterSpec, IndexLocation, IvfIndex, Metric, ParquetTable,
    SearchParams,
};
use object_store::memory::InMemory;
use object_store::ObjectStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{self, assert_same, counting_store, moto, options, put, uncached, CountingStore};

pub(crate) const D: usize = 32;
const N: usize = 20_000;
const NLIST: usize = 64;
const BLOBS: usize = 64;
const NQ: usize = 40;
pub(crate) const K: usize = 10;
pub(crate) const NPROBE: usize = 8;

/// One generated row's attributes, kept in plain Rust to judge filters independently.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) category: Option<String>,
    pub(crate) price: f64,
    pub(crate) stock: Option<i64>,
    pub(crate) active: bool,
    pub(crate) blob: i64,
    /// Uniform over 0..333 in every list: `rare == 166` is 0.3% and no
    /// summary can prune it.
    pub(crate) rare: i64,
}

pub(crate) struct Data {
    pub(crate) vectors: Vec<f32>,
    pub(crate) rows: Vec<Row>,
    pub(crate) queries: Vec<f32>,
    pub(crate) index_bytes: Vec<u8>,
}

/// Vectors from `BLOBS` Gaussian-ish blobs; `blob` records each row's blob,
/// so it is correlated with the lists (what pruning needs), while the other
/// attributes are independent of the vectors.
pub(crate) fn data() -> Data {
    let mut rng = StdRng::seed_from_u64(7);
    let centers: Vec<f32> = (0..BLOBS * D).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let mut vectors = Vec::with_capacity(N * D);
    let mut rows = Vec::with_capacity(N);
    for i in 0..N {
        let blob = rng.gen_range(0..BLOBS);
        vectors.extend((0..D).map(|j| centers[blob * D + j] + rng.gen_range(-1.5..1.5)));
        rows.push(Row {
            id: 100_000 + 3 * i as i64,
            category: (rng.gen_range(0..50) != 0).then(|| format!("c{}", rng.gen_range(0..10))),
            price: rng.gen_range(0.0..100.0),
            stock: (rng.gen_range(0..20) != 0).then(|| rng.gen_range(0..1000)),
            active: rng.gen_bool(0.5),
            blob: blob as i64,
            rare: rng.gen_range(0..333),
        });
    }
    let queries: Vec<f32> = (0..NQ)
        .flat_map(|_| {
            let blob = rng.gen_range(0..BLOBS);
            (0..D)
                .map(|j| centers[blob * D + j] + rng.gen_range(-1.5..1.5))
                .collect::<Vec<_>>()
        })
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut index = ivflake_faiss::Index::factory(D, &format!("IVF{NLIST},Flat"), Metric::L2).expect("factory");
    index.train(&vectors).expect("train");
    index.add_with_ids(&vectors, &ids).expect("add_with_ids");
    let index_bytes = index.to_bytes().expect("serialize");
    Data {
        vectors,
        rows,
        queries,
        index_bytes,
    }
}

pub(crate) fn table(rows: &[Row]) -> ParquetTable {
    let col = |a: ArrayRef| a;
    let batch = RecordBatch::try_from_iter([
        (
            "category",
            col(Arc::new(StringArray::from(
                rows.iter().map(|r| r.category.clone()).collect::<Vec<_>>(),
            ))),
        ),
        (
            "price",
            col(Arc::new(Float64Array::from(
                rows.iter().map(|r| r.price).collect::<Vec<_>>(),
            ))),
        ),
        (
            "stock",
            col(Arc::new(Int64Array::from(
                rows.iter().map(|r| r.stock).collect::<Vec<_>>(),
            ))),
        ),
        (
            "active",
            col(Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.active).collect::<Vec<_>>(),
            ))),
        ),
        (
            "blob",
            col(Arc::new(Int64Array::from(
                rows.iter().map(|r| r.blob).collect::<Vec<_>>(),
            ))),
        ),
        (
            "rare",
            col(Arc::new(Int64Array::from(
                rows.iter().map(|r| r.rare).collect::<Vec<_>>(),
            ))),
        ),
    ])
    .expect("batch");
    ParquetTable { batch }
}

/// Puts the index and its attributes (written through the library, joined on
/// the ids Faiss stored in each list) under `key` in `store`.
pub(crate) async fn publish(store: &Arc<dyn ObjectStore>, key: &str, uri: &str, data: &Data) {
    put(store, key, data.index_bytes.clone()).await;
    let index = IvfIndex::open_at(
        IndexLocation::new(store.clone(), key, uri),
        options(FetchConfig::default()),
    )
    .await
    .expect("open");
    let lists = index.list_ids().await.expect("list ids");
    let ids: Vec<i64> = data.rows.iter().map(|r| r.id).collect();
    let bytes = ivflake::write_attributes(&table(&data.rows), &ids, &lists).expect("write attributes");
    put(store, &format!("{key}{}", ivflake::ATTRIBUTES_SUFFIX), bytes).await;
}

async fn in_memory(data: &Data, config: FetchConfig) -> (IvfIndex, Arc<CountingStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    publish(&inner, "idx.faiss", "memory://t/idx.faiss", data).await;
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "idx.faiss", "memory://t/idx.faiss"),
        options(config),
    )
    .await
    .expect("open");
    (index, counting)
}

pub(crate) fn params(filter: &Value, probing: FilterProbing) -> SearchParams {
    SearchParams {
        attribute_filter: Some(AttributeFilter::from_json(filter).expect("filter parses")),
        probing,
        ..SearchParams::new(K, NPROBE)
    }
}

/// Filters in JSON with the same predicate in plain Rust.
pub(crate) type Predicate = fn(&Row) -> bool;

pub(crate) fn filters() -> Vec<(Value, Predicate)> {
    vec![
        (json!({"category": "c3"}), |r| r.category.as_deref() == Some("c3")),
        (json!({"price": {"$lt": 50}}), |r| r.price < 50.0),
        (
            json!({"$or": [{"category": {"$in": ["c1", "c2"]}}, {"stock": {"$gte": 900}}]}),
            |r| matches!(r.category.as_deref(), Some("c1" | "c2")) || r.stock.is_some_and(|s| s >= 900),
        ),
        (json!({"active": true, "stock": {"$exists": true}}), |r| {
            r.active && r.stock.is_some()
        }),
        (json!({"category": {"$ne": "c0"}}), |r| {
            r.category.as_deref() != Some("c0")
        }),
        (
            json!({"category": {"$nin": ["c0", "c1"]}, "price": {"$gte": 20.5, "$lte": 80}}),
            |r| !matches!(r.category.as_deref(), Some("c0" | "c1")) && (20.5..=80.0).contains(&r.price),
        ),
        (json!({"blob": {"$in": [3, 4]}, "active": {"$eq": false}}), |r| {
            (r.blob == 3 || r.blob == 4) && !r.active
        }),
        // An explicit `$and`, as the docs show it.
        (
            json!({"$and": [{"price": {"$lt": 50}}, {"category": {"$in": ["c1", "c3"]}}]}),
            |r| r.price < 50.0 && matches!(r.category.as_deref(), Some("c1" | "c3")),
        ),
    ]
}

pub(crate) fn matching(rows: &[Row], pred: impl Fn(&Row) -> bool) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter(|r| pred(r)).map(|r| r.id).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn filtered_search_equals_faiss_with_exactly_the_matching_ids() {
    let data = data();
    let (index, _) = in_memory(&data, FetchConfig::default()).await;
    let reference = ivflake_faiss::read_index(&data.index_bytes).expect("faiss reads the file");
    for (filter, pred) in filters() {
        let allowed = matching(&data.rows, pred);
        let ours = index
            .search_with(&data.queries, &params(&filter, FilterProbing::none()))
            .await
            .expect("filtered search");
        let theirs = reference
            .search_filtered(&data.queries, K, NPROBE, ivflake_faiss::IdFilter::Allow(&allowed))
            .expect("faiss search with an IDSelector");
        assert_same(&ours, &theirs, &format!("{filter}"));
        assert_eq!(ours.stats.extra_lists_probed, 0);

        // An id filter combines with it: both must pass.
        let range = IdFilterSpec::Range {
            start: 100_000,
            end: 130_000,
        };
        let both: Vec<i64> = allowed.iter().copied().filter(|&id| id < 130_000).collect();
        let combined = SearchParams {
            filter: range,
            ..params(&filter, FilterProbing::none())
        };
        let ours = index
            .search_with(&data.queries, &combined)
            .await
            .expect("combined search");
        let theirs = reference
            .search_filtered(&data.queries, K, NPROBE, ivflake_faiss::IdFilter::Allow(&both))
            .expect("faiss search");
        assert_same(&ours, &theirs, &format!("{filter} with an id range"));
    }
}

/// Exact filtered neighbours: every matching row, by squared L2.
fn ground_truth(data: &Data, pred: impl Fn(&Row) -> bool) -> Vec<Vec<i64>> {
    let candidates: Vec<usize> = (0..N).filter(|&i| pred(&data.rows[i])).collect();
    data.queries
        .chunks(D)
        .map(|q| {
            let mut scored: Vec<(f32, i64)> = candidates
                .iter()
                .map(|&i| {
                    let v = &data.vectors[i * D..(i + 1) * D];
                    let dist: f32 = q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
                    (dist, data.rows[i].id)
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            scored.into_iter().take(K).map(|(_, id)| id).collect()
        })
        .collect()
}

#[tokio::test]
async fn every_hit_matches_and_recall_holds_at_each_selectivity() {
    let data = data();
    let by_id: std::collections::HashMap<i64, &Row> = data.rows.iter().map(|r| (r.id, r)).collect();
    // (selectivity, filter, predicate, least recall@10 the issue asks for);
    // `price` bounds prune lists whose minimum is above them; `rare == 166`, in
    // the middle of every list's range, cannot be pruned.
    type Case = (f64, Value, Predicate, f64);
    let cases: [Case; 6] = [
        (0.5, json!({"price": {"$lt": 50}}), |r| r.price < 50.0, 0.9),
        (0.1, json!({"price": {"$lt": 10}}), |r| r.price < 10.0, 0.9),
        (0.01, json!({"price": {"$lt": 1}}), |r| r.price < 1.0, 0.8),
        (0.003, json!({"price": {"$lt": 0.3}}), |r| r.price < 0.3, 0.8),
        (0.003, json!({"rare": 166}), |r| r.rare == 166, 0.8),
        // Measured 1.000 here; 0.8 as for the other selective filters, where
        // it was once 0.0, a bound that could not fail.
        (0.001, json!({"price": {"$lt": 0.1}}), |r| r.price < 0.1, 0.8),
    ];
    println!(
        "selectivity  filter                   matching  recall@10  lists probed  extra lists  pruned  bytes fetched"
    );
    for (selectivity, filter, pred, least) in cases {
        // A fresh index and cache each time, so the bytes are a cold search's.
        let (index, _) = in_memory(&data, FetchConfig::default()).await;
        let results = index
            .search_with(&data.queries, &params(&filter, FilterProbing::default()))
            .await
            .expect("filtered search");
        // Precision: every returned id matches.
        for &id in results.ids.iter().filter(|&&id| id >= 0) {
            assert!(pred(by_id[&id]), "id {id} does not match {filter}");
        }
        let truth = ground_truth(&data, pred);
        let mut found = 0;
        let mut total = 0;
        for (q, exact) in truth.iter().enumerate() {
            let (ids, _) = results.query(q);
            total += exact.len();
            found += exact.iter().filter(|id| ids.contains(id)).count();
        }
        let recall = found as f64 / total.max(1) as f64;
        let s = &results.stats;
        println!(
            "{:>10.1}%  {:<23}  {:>8}  {recall:>9.3}  {:>12}  {:>11}  {:>6}  {:>13}",
            selectivity * 100.0,
            filter.to_string(),
            data.rows.iter().filter(|r| pred(r)).count(),
            s.lists_probed,
            s.extra_lists_probed,
            s.lists_pruned,
            s.bytes_fetched
        );
        assert!(
            recall >= least,
            "recall@10 {recall:.3} at {}% selectivity is below {least}",
            selectivity * 100.0
        );
        if selectivity <= 0.01 {
            assert!(s.extra_lists_probed > 0, "a selective filter probes past nprobe");
        }
    }
}

#[tokio::test]
async fn pruning_skips_lists_without_fetching_them() {
    let data = data();
    let (index, counting) = in_memory(&data, uncached()).await;
    let filter = json!({"blob": 5});
    let p = params(&filter, FilterProbing::none());
    // The first filtered search reads the attributes' footer once.
    index.search_with(&data.queries, &p).await.expect("search");
    counting.reset();
    let unfiltered = index.search(&data.queries, K, NPROBE).await.expect("search");
    let unfiltered_gets = counting.gets();
    counting.reset();
    let filtered = index.search_with(&data.queries, &p).await.expect("filtered search");
    let s = &filtered.stats;
    println!(
        "unfiltered: {} lists, {} GETs; blob = 5: {} lists fetched, {} pruned, {} GETs",
        unfiltered.stats.lists_probed, unfiltered_gets, s.lists_probed, s.lists_pruned, s.gets
    );
    assert!(s.lists_pruned > 0, "no list was pruned");
    assert_eq!(s.lists_probed + s.lists_pruned, unfiltered.stats.lists_probed);
    // Uncached and uncoalesced: one GET for each fetched list's codes and one
    // for its filter column's chunk; none for a pruned list.
    assert_eq!(counting.gets() as u64, s.gets);
    assert_eq!(s.gets, 2 * s.lists_probed as u64);
    assert!(s.gets < unfiltered_gets as u64 * 2 - s.lists_pruned as u64);
    let reference = ivflake_faiss::read_index(&data.index_bytes).expect("faiss reads the file");
    let allowed = matching(&data.rows, |r| r.blob == 5);
    let theirs = reference
        .search_filtered(&data.queries, K, NPROBE, ivflake_faiss::IdFilter::Allow(&allowed))
        .expect("faiss");
    assert_same(&filtered, &theirs, "pruned search");
}

#[tokio::test]
async fn bad_filters_are_errors_that_name_the_json_path() {
    let data = data();
    let (index, _) = in_memory(&data, FetchConfig::default()).await;
    let cases = [
        (json!({"colour": "red"}), "filter.colour", "unknown column"),
        (
            json!({"$and": [{"price": {"$gt": "cheap"}}]}),
            "filter.$and[0].price.$gt",
            "float64",
        ),
        (json!({"stock": {"$in": [1, true]}}), "filter.stock.$in[1]", "int64"),
        (
            json!({"category": {"$like": "c%"}}),
            "filter.category.$like",
            "unknown operator",
        ),
        (json!({"$or": "x"}), "filter.$or", "expected an array"),
        (
            json!({"category": null}),
            "filter.category",
            "expected a string, number or bool",
        ),
    ];
    for (filter, path, words) in cases {
        let outcome = match AttributeFilter::from_json(&filter) {
            Err(e) => Err(e),
            Ok(f) => {
                let p = SearchParams {
                    attribute_filter: Some(f),
                    ..SearchParams::new(K, NPROBE)
                };
                index.search_with(&data.queries, &p).await.map(|_| ())
            }
        };
        match outcome {
            Err(Error::InvalidFilter { path: got, reason }) => {
                assert_eq!(got, path, "{filter}");
                assert!(reason.contains(words), "{filter}: {reason}");
            }
            other => panic!("{filter}: expected InvalidFilter, got {other:?}"),
        }
    }
    // An index without attributes says how to attach them.
    let (plain, _) = common::open_in_memory(data.index_bytes.clone(), FetchConfig::default()).await;
    let err = plain
        .search_with(&data.queries, &params(&json!({"price": 1}), FilterProbing::none()))
        .await
        .expect_err("no attributes");
    assert!(err.to_string().contains("ivflake attributes"), "{err}");
}

#[tokio::test]
async fn hits_come_with_the_attributes_asked_for() {
    let data = data();
    let (index, _) = in_memory(&data, FetchConfig::default()).await;
    let by_id: std::collections::HashMap<i64, &Row> = data.rows.iter().map(|r| (r.id, r)).collect();
    let p = SearchParams {
        return_attributes: vec!["category".into(), "stock".into()],
        ..params(&json!({"active": true}), FilterProbing::none())
    };
    let results = index.search_with(&data.queries, &p).await.expect("search");
    let attributes = results.attributes.as_ref().expect("attributes returned");
    assert_eq!(attributes.len(), results.ids.len());
    let mut checked = 0;
    for (id, attrs) in results.ids.iter().zip(attributes) {
        let row = by_id[id];
        let attrs = attrs.as_ref().expect("a hit has attributes");
        assert_eq!(json!(attrs["category"]), json!(row.category), "id {id}");
        assert_eq!(json!(attrs["stock"]), json!(row.stock), "id {id}");
        assert_eq!(attrs.len(), 2);
        checked += 1;
    }
    assert_eq!(checked, NQ * K);
    // Without a filter too: the plain search's ids, with attributes.
    let p = SearchParams {
        return_attributes: vec!["price".into()],
        ..SearchParams::new(K, NPROBE)
    };
    let with = index.search_with(&data.queries, &p).await.expect("search");
    let without = index.search(&data.queries, K, NPROBE).await.expect("search");
    assert_eq!(with.ids, without.ids);
    let attributes = with.attributes.expect("attributes");
    assert_eq!(
        json!(attributes[0].as_ref().expect("hit")["price"]),
        json!(by_id[&with.ids[0]].price)
    );
}

#[tokio::test]
async fn the_attributes_object_works_from_the_s3_server() {
    let env = moto();
    let data = data();
    let key = format!("attrs-{}/idx.faiss", std::process::id());
    let uri = format!("s3://{}/{key}", env.bucket);
    let location = IndexLocation::parse(&uri, &FetchConfig::default()).expect("s3 uri");
    publish(&location.store, &key, &uri, &data).await;
    let index = IvfIndex::open(&uri).await.expect("open from s3");
    let (local, _) = in_memory(&data, FetchConfig::default()).await;
    for (filter, pred) in filters().into_iter().take(3) {
        let p = params(&filter, FilterProbing::default());
        let ours = index.search_with(&data.queries, &p).await.expect("search on s3");
        let same = local.search_with(&data.queries, &p).await.expect("search in memory");
        assert_eq!(ours.ids, same.ids, "{filter}");
        assert!(ours.stats.gets > 0);
        let allowed = matching(&data.rows, pred);
        assert!(ours.ids.iter().all(|id| *id < 0 || allowed.binary_search(id).is_ok()));
    }
}

#[tokio::test]
async fn attributes_attach_to_an_index_faiss_cpu_built() {
    let dir = common::fixtures();
    let bytes = std::fs::read(dir.join("attrs_ivfflat.faiss")).expect("fixture index");
    let input = ParquetTable::read(
        std::fs::read(dir.join("attrs_ivfflat.parquet"))
            .expect("fixture table")
            .into(),
    )
    .expect("parquet");
    let (queries, shape) = common::npy_f32(&dir.join("attrs_queries.npy"));
    let ids = input.ids("id").expect("ids");
    let attributes = input.without(&["id"]).expect("columns");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, "cpu.faiss", bytes.clone()).await;
    let index = IvfIndex::open_at(
        IndexLocation::new(store.clone(), "cpu.faiss", "memory://t/cpu.faiss"),
        options(FetchConfig::default()),
    )
    .await
    .expect("open");
    let lists = index.list_ids().await.expect("ids");
    let object = ivflake::write_attributes(&attributes, &ids, &lists).expect("attach");
    put(&store, "cpu.faiss.attrs.parquet", object).await;

    // Every id in a list must have a row: a table missing one is refused.
    let short = ParquetTable {
        batch: attributes.batch.slice(1, attributes.rows() - 1),
    };
    let err = ivflake::write_attributes(&short, &ids[1..], &lists).expect_err("a missing row is refused");
    assert!(err.to_string().contains("has no row of attributes"), "{err}");

    let reference = ivflake_faiss::read_index(&bytes).expect("faiss");
    let tags = attributes.batch.column_by_name("tag").expect("tag column");
    let tags = tags.as_any().downcast_ref::<StringArray>().expect("strings");
    let mut allowed: Vec<i64> = (0..ids.len())
        .filter(|&i| tags.value(i) == "b")
        .map(|i| ids[i])
        .collect();
    allowed.sort_unstable();
    let nprobe = 4;
    let k = 5;
    let p = SearchParams {
        attribute_filter: Some(AttributeFilter::eq("tag", "b")),
        probing: FilterProbing::none(),
        ..SearchParams::new(k, nprobe)
    };
    let ours = index.search_with(&queries, &p).await.expect("filtered search");
    let theirs = reference
        .search_filtered(&queries, k, nprobe, ivflake_faiss::IdFilter::Allow(&allowed))
        .expect("faiss");
    assert_eq!(shape[0] * k, ours.ids.len());
    assert_same(&ours, &theirs, "faiss-cpu index with attached attributes");
}

/// The one pipeline: a search with an attribute filter (or returning
/// attributes) whose lists and column chunks are all in memory runs as one
/// compute job and reads nothing, like a warm plain search; cold, each fetch
/// wave adds a job.
#[tokio::test]
async fn a_warm_filtered_search_is_one_compute_job() {
    let data = data();
    let (index, counting) = in_memory(&data, FetchConfig::default()).await;
    let query = &data.queries[..D];
    let selective = params(&json!({"price": {"$lt": 10.0}}), FilterProbing::default());
    let returning = SearchParams {
        return_attributes: vec!["category".into()],
        ..params(&json!({"active": true}), FilterProbing::none())
    };
    // Plain first: the others probe its lists and more, and read columns it does not.
    for p in [&SearchParams::new(K, NPROBE), &returning, &selective] {
        let cold = index.search_with(query, p).await.expect("cold search");
        assert!(
            cold.stats.compute_jobs >= 2 && cold.stats.gets > 0,
            "a cold search waits for at least one wave: {:?}",
            cold.stats
        );
        counting.reset();
        let warm = index.search_with(query, p).await.expect("warm search");
        assert_eq!(warm.stats.compute_jobs, 1, "{:?}", warm.stats);
        assert_eq!(counting.gets(), 0, "a warm search reads nothing");
        assert_eq!(warm.ids, cold.ids);
        assert_eq!(warm.attributes.is_some(), !p.return_attributes.is_empty());
    }
}
