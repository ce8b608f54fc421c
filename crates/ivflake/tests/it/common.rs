//! Shared test support: generated data and fixtures. The store wrappers
//! (counting, faults) are `ivflake_testkit`'s hooks on one `HookedStore`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, Metric, OpenOptions};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use ivflake_testkit::{
    clustered, counting_store, damaging_store, faulty_store, fixtures, gated_store, moto, npy_f32, npy_i64, read_npy,
    unique_key, write_sidecar, BodyFault, CountingStore, DamagingStore, Fault, FaultyStore, GatedStore, Moto, TempDir,
};

/// Builds, trains and serializes an index with Faiss. Test PQ factories say
/// `np` (no polysemous training): Faiss's default anneals the codebooks'
/// order, about 12 s of a 2-core machine per `IVF64,PQ8` and nothing a
/// search here reads. The faiss-cpu fixtures keep the default.
pub fn build_index(factory: &str, metric: Metric, d: usize, n: usize) -> Vec<u8> {
    let data = clustered(n, d, 1);
    let mut index = ivflake_faiss::Index::factory(d, factory, metric).expect("factory");
    index.train(&data).expect("train");
    index.add(&data).expect("add");
    index.to_bytes().expect("serialize")
}

pub fn scheduler(config: FetchConfig) -> Arc<FetchScheduler> {
    FetchScheduler::new(config)
}

/// No caching and no coalescing: one GET per list, every time.
pub fn uncached() -> FetchConfig {
    FetchConfig {
        memory_cache_bytes: 0,
        coalesce_gap: 0,
        max_coalesced: 0,
        ..FetchConfig::default()
    }
}

pub fn options(config: FetchConfig) -> OpenOptions {
    OpenOptions {
        scheduler: scheduler(config),
        ..OpenOptions::default()
    }
}

pub async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store.put(&Path::from(key), PutPayload::from(bytes)).await.expect("put");
}

/// Puts `bytes` into a fresh in-memory store behind a counting wrapper and opens it.
pub async fn open_in_memory(bytes: Vec<u8>, config: FetchConfig) -> (IvfIndex, Arc<CountingStore>) {
    open_in_memory_with(bytes, options(config)).await
}

pub async fn open_in_memory_with(bytes: Vec<u8>, options: OpenOptions) -> (IvfIndex, Arc<CountingStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&inner, "idx.faiss", bytes).await;
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "idx.faiss", "memory://test/idx.faiss"),
        options,
    )
    .await
    .expect("open");
    (index, counting)
}

pub struct Fixture {
    pub name: String,
    pub metric: String,
    pub factory: String,
}

pub struct Manifest {
    pub d: usize,
    pub k: usize,
    pub nprobe: usize,
    pub supported: Vec<Fixture>,
    /// Name and factory string of each file ivflake must refuse.
    pub unsupported: Vec<(String, String)>,
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("manifest json");
    Manifest {
        d: v["d"].as_u64().unwrap() as usize,
        k: v["k"].as_u64().unwrap() as usize,
        nprobe: v["nprobe"].as_u64().unwrap() as usize,
        supported: v["supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| Fixture {
                name: f["name"].as_str().unwrap().into(),
                metric: f["metric"].as_str().unwrap().into(),
                factory: f["factory"].as_str().unwrap_or_default().into(),
            })
            .collect(),
        unsupported: v["unsupported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().into(),
                    f["factory"].as_str().unwrap_or_default().into(),
                )
            })
            .collect(),
    }
}

/// Asserts two result sets are bit-identical.
pub fn assert_same(ours: &ivflake::SearchResults, faiss: &ivflake_faiss::Neighbors, what: &str) {
    assert_eq!(ours.ids, faiss.labels, "{what}: ids differ");
    let a: Vec<u32> = ours.distances.iter().map(|f| f.to_bits()).collect();
    let b: Vec<u32> = faiss.distances.iter().map(|f| f.to_bits()).collect();
    assert_eq!(a, b, "{what}: distances differ");
}

pub const SHORT: Duration = Duration::from_millis(300);

/// A liveness guard: a test that waits for an event fails loudly after this
/// instead of hanging. It bounds, never measures.
pub const LIVENESS: Duration = Duration::from_secs(60);

/// The distinct non-empty lists a search of `queries` with `nprobe` probes,
/// computed by Faiss from the file itself (its transform and coarse
/// quantizer), independently of ivflake's own statistics.
pub fn probed_lists(
    reference: &ivflake_faiss::Index,
    queries: &[f32],
    nprobe: usize,
) -> std::collections::BTreeSet<usize> {
    let sizes = reference.list_sizes().unwrap();
    let xt = reference.apply_transform(queries).expect("transform");
    let assignment = reference.coarse_search(&xt, nprobe).expect("coarse search");
    assignment
        .lists
        .iter()
        .filter(|&&l| l >= 0 && sizes[l as usize] > 0)
        .map(|&l| l as usize)
        .collect()
}

/// The same filter, as Faiss's own search takes it (an `IDSelector` per kind).
pub fn faiss_filter(spec: &ivflake::IdFilterSpec) -> ivflake_faiss::IdFilter<'_> {
    match spec {
        ivflake::IdFilterSpec::All => ivflake_faiss::IdFilter::All,
        ivflake::IdFilterSpec::Allow(ids) => ivflake_faiss::IdFilter::Allow(ids),
        ivflake::IdFilterSpec::Deny(ids) => ivflake_faiss::IdFilter::Deny(ids),
        ivflake::IdFilterSpec::Range { start, end } => ivflake_faiss::IdFilter::Range(*start, *end),
    }
}

/// An allow list, a deny list and a range over ids `0..ntotal`, each keeping
/// part of what the unfiltered answer `ids` holds and reaching past it.
pub fn filters_for(ids: &[i64], ntotal: i64) -> Vec<ivflake::IdFilterSpec> {
    let mut allow: Vec<i64> = (0..ntotal).filter(|i| i % 3 == 0).collect();
    // Some ids of the answer itself, unsorted, as a client may send them.
    allow.extend(ids.iter().rev().step_by(2).filter(|&&i| i >= 0 && i % 3 != 0));
    // Deny the first half of the answer's ids, so the filtered answer reaches further.
    let deny: Vec<i64> = ids.iter().copied().filter(|&i| i >= 0).take(ids.len() / 2).collect();
    vec![
        ivflake::IdFilterSpec::Allow(allow),
        ivflake::IdFilterSpec::Deny(deny),
        ivflake::IdFilterSpec::Range {
            start: ntotal / 4,
            end: ntotal / 2,
        },
    ]
}

/// ivflake's filtered search equals Faiss's `IndexIVF::search` with the same
/// `IDSelector`, ids and distance bits, for each of [`filters_for`].
pub async fn assert_filters_match_faiss(
    index: &IvfIndex,
    reference: &ivflake_faiss::Index,
    queries: &[f32],
    k: usize,
    nprobe: usize,
    what: &str,
) {
    let unfiltered = index.search(queries, k, nprobe).await.expect("search");
    for spec in filters_for(&unfiltered.ids, reference.info().ntotal) {
        let kind = match &spec {
            ivflake::IdFilterSpec::Allow(_) => "allow",
            ivflake::IdFilterSpec::Deny(_) => "deny",
            ivflake::IdFilterSpec::Range { .. } => "range",
            ivflake::IdFilterSpec::All => "all",
        };
        let params = ivflake::SearchParams {
            filter: spec.clone(),
            ..ivflake::SearchParams::new(k, nprobe)
        };
        let ours = index.search_with(queries, &params).await.expect("filtered search");
        let theirs = reference
            .search_filtered(queries, k, nprobe, faiss_filter(&spec))
            .expect("faiss filtered search");
        assert_same(&ours, &theirs, &format!("{what} {kind} filter k={k} nprobe={nprobe}"));
        assert_ne!(ours.ids, unfiltered.ids, "{what} {kind}: the filter changed the answer");
    }
}
