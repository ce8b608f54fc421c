//! Writes that carry attributes, against Faiss and a model kept in plain
//! Rust: a base with an attributes object takes 20 batches of upserts (new
//! ids, overwritten ids, some without attributes, some adding a column the
//! base lacks) and deletes; then every filter's search equals Faiss after
//! the same `remove_ids` + `add_with_ids` with an `IDSelector` of exactly the
//! ids the model says match, before and after compaction, and the hits'
//! attributes are the last ones written. On a local directory and on moto.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use ivflake::{CompactOptions, FilterProbing, IndexLocation, MutableIndex, SearchParams};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::attributes::{data, filters, params, publish, table, Data, Predicate, Row, D, K, NPROBE};
use crate::common::{moto, unique_key, TempDir};
use crate::mutable::assert_equal;

/// What the model holds of an id: its attributes (`None`: written without)
/// and the column writes added, `tier`.
type Attrs = Option<(Row, Option<String>)>;

/// Whether the model's attributes of an id match a filter.
type Matches = Box<dyn Fn(&Attrs) -> bool>;

/// A generated row for `id`, as `data()` makes them.
fn row(rng: &mut StdRng, id: i64) -> Row {
    Row {
        id,
        category: (rng.gen_range(0..50) != 0).then(|| format!("c{}", rng.gen_range(0..10))),
        price: rng.gen_range(0.0..100.0),
        stock: (rng.gen_range(0..20) != 0).then(|| rng.gen_range(0..1000)),
        active: rng.gen_bool(0.5),
        blob: rng.gen_range(0..64),
        rare: rng.gen_range(0..333),
    }
}

/// The filters of the attribute tests, one on the written column, and
/// whether a row without attributes (all null) matches each.
fn cases() -> Vec<(Value, Matches)> {
    let mut out: Vec<(Value, Matches)> = filters()
        .into_iter()
        .map(|(filter, pred): (Value, Predicate)| {
            // Only `$ne` is true of a null (as in the filter language's docs).
            let null_matches = filter == json!({"category": {"$ne": "c0"}});
            let f: Matches = Box::new(move |a: &Attrs| match a {
                Some((row, _)) => pred(row),
                None => null_matches,
            });
            (filter, f)
        })
        .collect();
    out.push((
        json!({"tier": "gold", "price": {"$lt": 70}}),
        Box::new(|a: &Attrs| matches!(a, Some((r, Some(t))) if t == "gold" && r.price < 70.0)),
    ));
    out.push((
        json!({"tier": {"$exists": false}, "active": true}),
        Box::new(|a: &Attrs| matches!(a, Some((r, None)) if r.active)),
    ));
    out
}

async fn check(
    index: &MutableIndex,
    reference: &ivflake_faiss::Index,
    model: &HashMap<i64, Attrs>,
    data: &Data,
    what: &str,
) {
    for (filter, matches) in cases() {
        let mut allowed: Vec<i64> = model.iter().filter(|(_, a)| matches(a)).map(|(id, _)| *id).collect();
        allowed.sort_unstable();
        let ours = index
            .search_with(&data.queries, &params(&filter, FilterProbing::none()))
            .await
            .unwrap_or_else(|e| panic!("{what}: {filter}: {e}"));
        let theirs = reference
            .search_filtered(&data.queries, K, NPROBE, ivflake_faiss::IdFilter::Allow(&allowed))
            .unwrap();
        assert_equal(&ours, &theirs, K, &format!("{what}: {filter}"));
        assert!(ours.ids.iter().any(|&id| id >= 0), "{what}: {filter} finds something");
    }
    // The hits' attributes are the last written, wherever they are kept.
    let p = SearchParams {
        return_attributes: vec!["category".into(), "tier".into(), "stock".into()],
        ..SearchParams::new(K, NPROBE)
    };
    let results = index.search_with(&data.queries, &p).await.unwrap();
    let attributes = results.attributes.as_ref().expect("attributes");
    let mut seen_tier = false;
    for (id, got) in results.ids.iter().zip(attributes) {
        if *id < 0 {
            continue;
        }
        let got = got.as_ref().expect("a hit has its row");
        let (category, tier, stock) = match &model[id] {
            Some((row, tier)) => (json!(row.category), json!(tier), json!(row.stock)),
            None => (Value::Null, Value::Null, Value::Null),
        };
        seen_tier |= !tier.is_null();
        assert_eq!(json!(got["category"]), category, "{what}: id {id}");
        assert_eq!(json!(got["tier"]), tier, "{what}: id {id}");
        assert_eq!(json!(got["stock"]), stock, "{what}: id {id}");
    }
    assert!(seen_tier, "{what}: some hit has the written column");
}

/// The writes: 20 batches into `index` and into `reference` and `model`.
async fn write(
    index: &MutableIndex,
    reference: &mut ivflake_faiss::Index,
    model: &mut HashMap<i64, Attrs>,
    data: &Data,
) {
    let mut rng = StdRng::seed_from_u64(24);
    for batch in 0..20usize {
        let mut ids: Vec<i64> = (0..30).map(|i| 2_000_000 + (batch * 30 + i) as i64).collect();
        let present: Vec<i64> = model.keys().copied().collect();
        ids.extend((0..10).map(|_| present[rng.gen_range(0..present.len())]));
        ids.sort_unstable();
        ids.dedup();
        let mut vectors = Vec::with_capacity(ids.len() * D);
        for _ in &ids {
            let from = rng.gen_range(0..data.rows.len());
            for &x in &data.vectors[from * D..(from + 1) * D] {
                vectors.push(x + rng.gen_range(-0.3..0.3));
            }
        }
        let rows: Vec<Row> = ids.iter().map(|&id| row(&mut rng, id)).collect();
        let tiers: Vec<Option<String>> = ids
            .iter()
            .map(|_| {
                rng.gen_bool(0.7)
                    .then(|| ["gold", "silver"][rng.gen_range(0..2)].to_string())
            })
            .collect();
        let with_tier = batch % 2 == 0;
        let attributes = (batch % 4 != 3).then(|| {
            let mut batch = table(&rows).batch;
            if with_tier {
                let tier: ArrayRef = Arc::new(StringArray::from(tiers.clone()));
                let mut columns = batch.columns().to_vec();
                columns.push(tier);
                let mut fields: Vec<_> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
                fields.push(arrow_schema::Field::new("tier", arrow_schema::DataType::Utf8, true));
                batch = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
            }
            batch
        });
        index.upsert_with(&vectors, &ids, attributes.as_ref()).await.unwrap();
        reference.remove_ids(&ids).unwrap();
        reference.add_with_ids(&vectors, &ids).unwrap();
        for (i, (&id, r)) in ids.iter().zip(rows).enumerate() {
            let attrs = attributes
                .as_ref()
                .map(|_| (r, if with_tier { tiers[i].clone() } else { None }));
            model.insert(id, attrs);
        }
        if batch % 3 == 1 {
            let present: Vec<i64> = model.keys().copied().collect();
            let mut deletes: Vec<i64> = (0..15).map(|_| present[rng.gen_range(0..present.len())]).collect();
            deletes.sort_unstable();
            deletes.dedup();
            index.delete(&deletes).await.unwrap();
            reference.remove_ids(&deletes).unwrap();
            for id in deletes {
                model.remove(&id);
            }
        }
    }
}

async fn writes_with_attributes_equal_faiss(store: Arc<dyn ObjectStore>, root_uri: &str, prefix: &str, what: &str) {
    let data = data();
    let key = format!("{prefix}/bases/base.faiss");
    publish(&store, &key, &format!("{root_uri}/bases/base.faiss"), &data).await;
    let root = IndexLocation::new(store, prefix, root_uri);
    let index = MutableIndex::create_from_at(root, "bases/base.faiss", Default::default())
        .await
        .unwrap();
    let mut reference = ivflake_faiss::read_index(&data.index_bytes).unwrap();
    let mut model: HashMap<i64, Attrs> = data.rows.iter().map(|r| (r.id, Some((r.clone(), None)))).collect();
    write(&index, &mut reference, &mut model, &data).await;
    assert!(index.unindexed().0 > 0);
    check(&index, &reference, &model, &data, &format!("{what}: unindexed")).await;

    let report = index
        .compact(&CompactOptions::default())
        .await
        .unwrap()
        .expect("folded");
    assert_eq!(report.entries, model.len() as u64);
    let attrs = index
        .base()
        .attributes()
        .await
        .unwrap()
        .expect("the new base has attributes");
    assert!(
        attrs.schema().field_with_name("tier").is_ok(),
        "{what}: the written column is kept"
    );
    check(&index, &reference, &model, &data, &format!("{what}: compacted")).await;

    // Writes after the compaction sit on the new base's attributes.
    write(&index, &mut reference, &mut model, &data).await;
    check(&index, &reference, &model, &data, &format!("{what}: written again")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_attributes_on_a_local_directory_equal_faiss() {
    let dir = TempDir::new("mutable-attrs");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    writes_with_attributes_equal_faiss(store, "file:///attrs", "attrs", "local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_attributes_on_moto_equal_faiss() {
    let moto = moto();
    let prefix = unique_key("mutable-attrs", "root");
    let uri = format!("s3://{}/{prefix}", moto.bucket);
    writes_with_attributes_equal_faiss(moto.store(), &uri, &prefix, "moto").await;
}
