//! The files people write for big indexes, written by faiss-cpu from PyPI:
//! IVF-PQ refined with `RFlat` and `Refine(SQfp16)` (under OPQ too), id maps
//! (`IDMap`, `IDMap2` with random 63-bit user ids) and on-disk lists merged
//! with `merge_ondisk`, from a local directory and from moto. Each is checked
//! against the linked Faiss searching the whole file in memory (bit for bit)
//! and against faiss-cpu's own answers at every k_factor.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::common::*;
use ivflake::{Error, IdFilterSpec, IndexLocation, IvfIndex, OpenOptions, SearchParams};
use ivflake_faiss::IdFilter;

struct Wrapped {
    name: String,
    k_factors: Vec<f32>,
}

fn wrapped() -> Vec<Wrapped> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["wrapped"]
        .as_array()
        .expect("the fixtures have wrapped indexes (make_fixtures.py)")
        .iter()
        .map(|w| Wrapped {
            name: w["name"].as_str().unwrap().into(),
            k_factors: w["k_factors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn on_disk() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["on_disk"]
        .as_array()
        .expect("the fixtures have on-disk indexes (make_fixtures.py)")
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

fn path(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// Every id equal to faiss-cpu's, distances within 1e-5 (relative above 1):
/// faiss-cpu is another Faiss build, with other SIMD.
fn assert_like_faiss_cpu(ours: &ivflake::SearchResults, stem: &str) {
    let cpu_ids = npy_i64(&path(&format!("{stem}.ids.npy")));
    let (cpu_dist, _) = npy_f32(&path(&format!("{stem}.dist.npy")));
    assert_eq!(ours.ids.len(), cpu_ids.len(), "{stem}");
    let same = ours.ids.iter().zip(&cpu_ids).filter(|(a, b)| a == b).count();
    assert!(
        same == cpu_ids.len(),
        "{stem}: {same} of {} ids equal faiss-cpu's",
        cpu_ids.len()
    );
    for (i, ((id, cpu_id), (d, cpu_d))) in ours
        .ids
        .iter()
        .zip(&cpu_ids)
        .zip(ours.distances.iter().zip(&cpu_dist))
        .enumerate()
    {
        if id == cpu_id && *id >= 0 {
            assert!(
                (d - cpu_d).abs() <= 1e-5 * cpu_d.abs().max(1.0),
                "{stem}: result {i} (id {id}): {d} here, {cpu_d} from faiss-cpu"
            );
        }
    }
}

async fn check_wrapped(index: &IvfIndex, w: &Wrapped) {
    let m = manifest();
    let (queries, _) = npy_f32(&path("queries.npy"));
    let reference = ivflake_faiss::read_index(&std::fs::read(path(&format!("{}.faiss", w.name))).unwrap()).unwrap();
    let factors: Vec<Option<f32>> = if w.k_factors.is_empty() {
        vec![None]
    } else {
        w.k_factors.iter().map(|k| Some(*k)).collect()
    };
    for k_factor in factors {
        let params = SearchParams {
            k_factor,
            ..SearchParams::new(m.k, m.nprobe)
        };
        let ours = index.search_with(&queries, &params).await.unwrap();
        let faiss = reference
            .search_refined(&queries, m.k, m.nprobe, k_factor.unwrap_or(0.0), IdFilter::All)
            .unwrap();
        let what = format!("{} at k_factor {k_factor:?}", w.name);
        assert_same(&ours, &faiss, &what);
        let stem = format!("{}.kf{}", w.name, k_factor.unwrap_or(0.0) as u32);
        assert_like_faiss_cpu(&ours, &stem);
        if index.info().refine.is_some() {
            assert!(ours.stats.refine_candidates >= queries.len() / m.d * m.k, "{what}");
            assert!(ours.stats.refine_bytes > 0, "{what}: {:?}", ours.stats);
        }
    }
}

#[tokio::test]
async fn refined_and_id_mapped_files_from_a_local_directory() {
    let all = wrapped();
    assert!(all.len() >= 4, "an older faiss-cpu may skip one");
    for w in &all {
        let index = IvfIndex::open(path(&format!("{}.faiss", w.name)).to_str().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", w.name));
        check_wrapped(&index, w).await;
    }
}

#[tokio::test]
async fn refined_and_id_mapped_files_from_the_s3_server() {
    let env = moto();
    for w in &wrapped() {
        let uri = format!("s3://{}/fixtures/{}.faiss", env.bucket, w.name);
        let index = IvfIndex::open(&uri).await.unwrap_or_else(|e| panic!("{uri}: {e}"));
        check_wrapped(&index, w).await;
    }
}

#[tokio::test]
async fn the_refine_wave_reads_candidates_once_then_from_memory() {
    let name = "ivfpq_rflat_l2";
    let index = IvfIndex::open(path(&format!("{name}.faiss")).to_str().unwrap())
        .await
        .unwrap();
    let refine = index.info().refine.expect("a refine index");
    assert_eq!(refine.code_size, 4 * index.info().d, "RFlat keeps float vectors");
    let (queries, _) = npy_f32(&path("queries.npy"));
    let q = &queries[..8 * index.info().d];
    let params = SearchParams {
        k_factor: Some(4.0),
        ..SearchParams::new(10, 8)
    };
    let cold = index.search_with(q, &params).await.unwrap();
    assert!(
        cold.stats.refine_gets > 0 && cold.stats.refine_gets < 8 * 40,
        "{:?}",
        cold.stats
    );
    assert_eq!(cold.stats.refine_candidates, 8 * 40);
    let gets = index.scheduler().counters().gets.load(Ordering::Relaxed);
    let warm = index.search_with(q, &params).await.unwrap();
    assert_eq!(warm.ids, cold.ids);
    assert_eq!(warm.stats.refine_gets, 0, "refine codes come from memory");
    assert_eq!(index.scheduler().counters().gets.load(Ordering::Relaxed), gets);
    assert_eq!(warm.stats.compute_jobs, 1, "a warm refined search is one compute job");
}

#[tokio::test]
async fn id_filters_take_user_ids_and_a_paged_map_gives_the_same_results() {
    let name = "idmap2_ivfpq_rflat_l2";
    let file = path(&format!("{name}.faiss"));
    let reference = ivflake_faiss::read_index(&std::fs::read(&file).unwrap()).unwrap();
    let user_ids = npy_i64(&path(&format!("{name}.user_ids.npy")));
    assert!(user_ids.iter().any(|&id| id > 1 << 62), "ids span the 63-bit range");
    let index = IvfIndex::open(file.to_str().unwrap()).await.unwrap();
    assert!(index.info().id_map.is_some_and(|m| m.map2));
    let (queries, _) = npy_f32(&path("queries.npy"));
    let q = &queries[..20 * index.info().d];
    // Every other user id allowed: a filter in the user's words.
    let allowed: Vec<i64> = user_ids.iter().step_by(2).copied().collect();
    for filter in [
        IdFilterSpec::Allow(allowed.clone()),
        IdFilterSpec::Deny(allowed.clone()),
    ] {
        let params = SearchParams {
            filter: filter.clone(),
            ..SearchParams::new(10, 8)
        };
        let ours = index.search_with(q, &params).await.unwrap();
        let faiss_filter = match &filter {
            IdFilterSpec::Allow(ids) => IdFilter::Allow(ids),
            IdFilterSpec::Deny(ids) => IdFilter::Deny(ids),
            _ => unreachable!(),
        };
        let faiss = reference.search_refined(q, 10, 8, 0.0, faiss_filter).unwrap();
        assert_same(&ours, &faiss, &format!("{name} with {filter:?}"));
        let set: std::collections::HashSet<i64> = allowed.iter().copied().collect();
        let allow = matches!(filter, IdFilterSpec::Allow(_));
        assert!(ours
            .ids
            .iter()
            .filter(|&&id| id >= 0)
            .all(|id| set.contains(id) == allow));
    }

    // A map too large for the budget is read by page, for the results only.
    let location = IndexLocation::parse(file.to_str().unwrap(), &Default::default()).unwrap();
    let paged = IvfIndex::open_at(
        location,
        OpenOptions {
            id_map_memory_bytes: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(paged.memory().id_map_bytes, 0);
    assert_eq!(index.memory().id_map_bytes, 8 * user_ids.len() as u64);
    let plain = SearchParams::new(10, 8);
    let a = index.search_with(q, &plain).await.unwrap();
    let b = paged.search_with(q, &plain).await.unwrap();
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.distances, b.distances);
    assert!(b.stats.id_map_gets > 0 && b.stats.id_map_bytes > 0, "{:?}", b.stats);
    let filtered = SearchParams {
        filter: IdFilterSpec::Allow(allowed),
        ..SearchParams::new(10, 8)
    };
    let err = paged.search_with(q, &filtered).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { field: "filter", reason } if reason.contains("id_map_memory_bytes")),
        "{err}"
    );
}

#[tokio::test]
async fn k_factor_is_checked() {
    let index = IvfIndex::open(path("ivfpq_rflat_l2.faiss").to_str().unwrap())
        .await
        .unwrap();
    let q = vec![0.5f32; index.info().d];
    for bad in [0.5f32, f32::NAN, 1e9] {
        let params = SearchParams {
            k_factor: Some(bad),
            ..SearchParams::new(10, 8)
        };
        let err = index.search_with(&q, &params).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { field: "k_factor", .. }),
            "{bad}: {err}"
        );
    }
}

async fn check_on_disk(index: &IvfIndex, name: &str) {
    let m = manifest();
    let (queries, _) = npy_f32(&path("queries.npy"));
    assert!(index.info().on_disk.is_some(), "{name}");
    assert!(index.info().type_name.contains("OnDisk"), "{}", index.info().type_name);
    let twin = ivflake_faiss::read_index(&std::fs::read(path(&format!("{name}.twin.faiss"))).unwrap()).unwrap();
    let ours = index.search(&queries, m.k, m.nprobe).await.unwrap();
    assert_same(&ours, &twin.search(&queries, m.k, m.nprobe).unwrap(), name);
    assert_like_faiss_cpu(&ours, name);
    assert!(ours.stats.gets > 0);
    // The lists come from the data object, the header from the index file.
    assert_ne!(index.lists_object().uri(), index.object().uri());
    assert!(index.lists_object().uri().ends_with(".ivfdata"));
}

#[tokio::test]
async fn on_disk_lists_from_a_local_directory_and_the_s3_server() {
    let env = moto();
    let names = on_disk();
    assert!(names.len() >= 2);
    for name in &names {
        let local = IvfIndex::open(path(&format!("{name}.faiss")).to_str().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_on_disk(&local, name).await;
        let uri = format!("s3://{}/fixtures/{name}.faiss", env.bucket);
        let s3 = IvfIndex::open(&uri).await.unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert!(
            s3.lists_object().e_tag.is_some(),
            "the data object's version is pinned too"
        );
        check_on_disk(&s3, name).await;
    }
}

/// Opens `index` (and an on-disk data object) from a fresh in-memory store.
async fn open_bytes(index: Vec<u8>, data: Option<(&str, Vec<u8>)>) -> ivflake::Result<IvfIndex> {
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    put(&store, "x.faiss", index).await;
    if let Some((name, bytes)) = data {
        put(&store, name, bytes).await;
    }
    IvfIndex::open_at(
        IndexLocation::new(store, "x.faiss", "memory://t/x.faiss"),
        OpenOptions::default(),
    )
    .await
}

fn corrupt_saying(result: ivflake::Result<IvfIndex>, words: &str) {
    match result {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains(words), "{reason}"),
        Err(Error::Faiss(e)) => assert!(e.message().contains(words), "{e}"),
        other => panic!("expected a corrupt file naming {words:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_wrappers_are_refused_naming_the_structure() {
    let file = std::fs::read(path("idmap2_ivfpq_rflat_l2.faiss")).unwrap();
    let info = open_bytes(file.clone(), None).await.unwrap().info().clone();
    let (refine, id_map) = (info.refine.unwrap(), info.id_map.unwrap());
    let set_u64 = |at: u64, v: u64| {
        let mut f = file.clone();
        f[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        f
    };
    // The refine codes' count is checked against ntotal (in floats for RFlat).
    let count_at = refine.codes_offset - 8;
    let n = info.ntotal as u64 * info.d as u64;
    corrupt_saying(open_bytes(set_u64(count_at, n + 1), None).await, "refine");
    corrupt_saying(open_bytes(set_u64(count_at, u64::MAX / 2), None).await, "refine");
    // The id map's length is checked against ntotal.
    corrupt_saying(
        open_bytes(set_u64(id_map.offset - 8, info.ntotal as u64 - 1), None).await,
        "IndexIDMap",
    );
    // k_factor: finite, at least 1.
    let kf_at = (refine.codes_offset + info.ntotal as u64 * refine.code_size as u64) as usize;
    for bad in [f32::NAN, 0.5, 1e9] {
        let mut f = file.clone();
        f[kf_at..kf_at + 4].copy_from_slice(&bad.to_le_bytes());
        corrupt_saying(open_bytes(f, None).await, "k_factor");
    }
    // Trailing bytes after the last structure, and a file cut short inside the id map.
    let mut longer = file.clone();
    longer.extend_from_slice(&[0; 8]);
    corrupt_saying(open_bytes(longer, None).await, "bytes follow");
    corrupt_saying(open_bytes(file[..file.len() - 8].to_vec(), None).await, "id map");
}

#[tokio::test]
async fn hostile_on_disk_lists_are_refused_naming_the_list() {
    let name = "ondisk_ivfflat_l2";
    let file = std::fs::read(path(&format!("{name}.faiss"))).unwrap();
    let data = std::fs::read(path(&format!("{name}.ivfdata"))).unwrap();
    let data_name = format!("{name}.ivfdata");
    let ok = open_bytes(file.clone(), Some((&data_name, data.clone())))
        .await
        .unwrap();
    assert!(ok.info().on_disk.is_some());
    // The 'ilod' table: nlist, code_size, then (size, capacity, offset) per list.
    let ilod = file.windows(4).position(|w| w == b"ilod").expect("an ilod section");
    let list0 = ilod + 4 + 8 + 8 + 8;
    let field = |f: &[u8], at: usize| u64::from_le_bytes(f[at..at + 8].try_into().unwrap());
    let (size, capacity) = (field(&file, list0), field(&file, list0 + 8));
    assert!(size > 0 && capacity >= size);
    let with = |at: usize, v: u64| {
        let mut f = file.clone();
        f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        f
    };
    let cases = [
        (with(list0 + 8, size - 1), "on-disk list 0"), // capacity below size
        (with(list0 + 16, data.len() as u64), "on-disk list 0"), // offset past the data
        (with(list0 + 16, u64::MAX - 4), "on-disk list 0"), // offset that overflows
    ];
    for (bytes, words) in cases {
        corrupt_saying(open_bytes(bytes, Some((&data_name, data.clone()))).await, words);
    }
    // A data object of another length than the header's.
    corrupt_saying(
        open_bytes(file.clone(), Some((&data_name, data[..data.len() - 1].to_vec()))).await,
        "bytes where the index",
    );
    // No data object beside the index: not found, naming it.
    let err = open_bytes(file, None).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. }) && err.to_string().contains(".ivfdata"),
        "{err}"
    );
}

#[tokio::test]
async fn on_disk_lists_are_verified_by_the_data_objects_sidecar() {
    let name = "ondisk_ivfpq_l2";
    let dir = ivflake_testkit::TempDir::new("ondisk-sidecar");
    for file in [format!("{name}.faiss"), format!("{name}.ivfdata")] {
        std::fs::copy(path(&file), dir.path().join(&file)).unwrap();
    }
    let index_path = dir.path().join(format!("{name}.faiss"));
    let location = || IndexLocation::parse(index_path.to_str().unwrap(), &Default::default()).unwrap();
    let require = || OpenOptions {
        manifest: ivflake::ManifestMode::Require,
        ..Default::default()
    };
    // Without the data object's sidecar, `Require` refuses, naming it.
    ivflake_testkit::write_sidecar(location()).await;
    let data_sidecar = dir.path().join(format!("{name}.ivfdata.ivfmanifest"));
    assert!(
        data_sidecar.exists(),
        "`ivflake manifest` writes the data object's sidecar too"
    );
    let saved = std::fs::read(&data_sidecar).unwrap();
    std::fs::remove_file(&data_sidecar).unwrap();
    let err = IvfIndex::open_at(location(), require()).await.unwrap_err();
    assert!(
        matches!(&err, Error::SidecarMissing { sidecar, .. } if sidecar.ends_with(".ivfdata.ivfmanifest")),
        "{err}"
    );
    std::fs::write(&data_sidecar, saved).unwrap();
    let index = IvfIndex::open_at(location(), require()).await.unwrap();
    assert!(index.is_verified());
    let (queries, _) = npy_f32(&path("queries.npy"));
    let m = manifest();
    let clean = index.search(&queries, m.k, m.nprobe).await.unwrap();
    assert_like_faiss_cpu(&clean, name);

    // A flipped byte in a list of the data object is caught before any cache keeps it.
    let data_path = dir.path().join(format!("{name}.ivfdata"));
    let mut data = std::fs::read(&data_path).unwrap();
    let range = *index.list_ranges().iter().find(|(_, r)| r.count > 0).unwrap().1;
    data[range.offset as usize] ^= 0x40;
    std::fs::write(&data_path, &data).unwrap();
    let reopened = IvfIndex::open_at(location(), require()).await.unwrap();
    let err = reopened.search(&queries, m.k, reopened.info().nlist).await.unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
}

#[tokio::test]
async fn the_refine_wave_counts_in_the_byte_budget_before_any_get() {
    let file = path("ivfpq_rflat_l2.faiss");
    let location = || IndexLocation::parse(file.to_str().unwrap(), &Default::default()).unwrap();
    let index = IvfIndex::open_at(location(), OpenOptions::default()).await.unwrap();
    let (queries, _) = npy_f32(&path("queries.npy"));
    let q = &queries[..4 * index.info().d];
    let lists = index.search(q, 10, 8).await.unwrap().stats.bytes_probed;
    // Enough for the lists alone, not for the candidates' codes as well.
    let fresh = IvfIndex::open_at(location(), OpenOptions::default()).await.unwrap();
    let gets = || fresh.scheduler().counters().gets.load(Ordering::Relaxed);
    let before = gets();
    let tight = SearchParams {
        max_bytes: Some(lists),
        k_factor: Some(16.0),
        ..SearchParams::new(10, 8)
    };
    let err = fresh.search_with(q, &tight).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { field: "max_bytes_per_search", reason } if reason.contains("refine codes")),
        "{err}"
    );
    assert_eq!(gets(), before, "nothing fetched");
    let roomy = SearchParams {
        max_bytes: Some(lists + 4 * 10 * 16 * 1024),
        ..tight
    };
    assert!(fresh.search_with(q, &roomy).await.is_ok());
}

#[tokio::test]
async fn a_refine_wave_may_take_every_process_wide_slot_at_once() {
    // Refine pages are about 1 KiB: their wave is bound by round trips, so it
    // is not held to the per-search share that bounds list waves.
    let bytes = std::fs::read(path("ivfpq_rflat_l2.faiss")).unwrap();
    let inner: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    put(&inner, "r.faiss", bytes).await;
    let gate = std::sync::Arc::new(gated_store(inner, 1));
    let store: std::sync::Arc<dyn object_store::ObjectStore> = gate.clone();
    let config = ivflake::FetchConfig {
        max_in_flight: 16,
        max_in_flight_per_search: 2,
        // Every page apart: this small file's codes would share one GET.
        coalesce_gap: 0,
        ..ivflake::FetchConfig::default()
    };
    let index = IvfIndex::open_at(
        IndexLocation::new(store, "r.faiss", "memory://g/r.faiss"),
        options(config),
    )
    .await
    .unwrap();
    let (queries, _) = npy_f32(&path("queries.npy"));
    let q = queries[..8 * index.info().d].to_vec();
    // The lists (and the first candidates' codes) into the memory cache.
    gate.open();
    let first = SearchParams {
        k_factor: Some(1.0),
        ..SearchParams::new(10, 8)
    };
    index.search_with(&q, &first).await.unwrap();
    // Now only the refine wave reads the store: 640 candidates, far more pages than 16.
    gate.shut();
    let search = tokio::spawn({
        let index = index.clone();
        async move {
            let params = SearchParams {
                k_factor: Some(8.0),
                ..SearchParams::new(10, 8)
            };
            index.search_with(&q, &params).await
        }
    });
    gate.wait_for_waiting(16, LIVENESS).await;
    gate.open();
    let results = tokio::time::timeout(LIVENESS, search).await.unwrap().unwrap().unwrap();
    assert_eq!(results.stats.gets, 0, "the lists came from memory");
    assert!(results.stats.refine_gets > 16, "{:?}", results.stats);
    assert_eq!(gate.peak(), 16, "the process-wide limit, not the per-search 2");
}
