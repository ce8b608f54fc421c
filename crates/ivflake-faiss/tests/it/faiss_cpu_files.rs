//! Files written by faiss-cpu from PyPI (`scripts/make_fixtures.py`, run by
//! `make test`), read by the linked Faiss: searched lazily over lists cut from
//! the file they equal the in-memory search exactly, and they return
//! faiss-cpu's own ids; files this Faiss cannot read fail as Unsupported with
//! the type and the Faiss version named.
use std::path::{Path, PathBuf};

use crate::common::*;
use ivflake_faiss::{faiss_version, open_header, read_index, FaissErrorKind, IdFilter};

fn fixtures() -> PathBuf {
    PathBuf::from(
        std::env::var("IVFLAKE_FIXTURES")
            .expect("IVFLAKE_FIXTURES is not set: run the tests with `make test`, which generates the fixtures"),
    )
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest json")
}

/// The data of a little-endian `.npy` file (format 1.0 or 2.0), header skipped.
fn npy_data(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (len, at) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
    };
    bytes[at + len..].to_vec()
}

fn npy_f32(path: &Path) -> Vec<f32> {
    npy_data(path)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn npy_i64(path: &Path) -> Vec<i64> {
    npy_data(path)
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn faiss_cpu_files_search_like_faiss_cpu() {
    let m = manifest();
    let (k, nprobe) = (
        m["k"].as_u64().unwrap() as usize,
        m["nprobe"].as_u64().unwrap() as usize,
    );
    let queries = npy_f32(&fixtures().join("queries.npy"));
    let supported = m["supported"].as_array().unwrap();
    assert!(supported
        .iter()
        .any(|f| f["factory"].as_str().unwrap().contains("x4fs")));
    // An older faiss-cpu (the docs' version matrix) skips types it lacks.
    if m.get("skipped").is_none() {
        assert!(supported
            .iter()
            .any(|f| f["factory"].as_str().unwrap().contains("RaBitQ")));
    }
    let skipped = m.get("skipped").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    for f in supported.iter().filter(|f| !skipped.contains(&f["name"])) {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join(format!("{name}.faiss"))).unwrap();
        let full = read_index(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = full.search(&queries, k, nprobe).unwrap();

        let lazy = opened(&bytes);
        let fetched = FetchedLists::new(&lazy, &bytes);
        let xt = lazy.apply_transform(&queries).unwrap();
        let assignment = lazy.coarse_search(&xt, nprobe).unwrap();
        let slots: Vec<i32> = assignment.lists.iter().map(|&l| l as i32).collect();
        let ours = lazy
            .scan_lists(&xt, k, &assignment, &slots, &fetched.slices(), IdFilter::All)
            .unwrap();
        assert_eq!(ours, theirs, "{name}: lazy scan differs from the in-memory search");

        let cpu_ids = npy_i64(&fixtures().join(format!("{name}.ids.npy")));
        let same = ours.labels.iter().zip(&cpu_ids).filter(|(a, b)| a == b).count();
        let agreement = same as f64 / cpu_ids.len() as f64;
        eprintln!("{name}: {agreement:.4} of ids equal faiss-cpu's");
        assert!(
            agreement >= 0.99,
            "{name}: only {agreement:.3} of ids agree with faiss-cpu"
        );
    }
}

#[test]
fn files_this_faiss_cannot_read_name_the_type_and_version() {
    let m = manifest();
    let skipped = m.get("skipped").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    for f in m["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !skipped.contains(&f["name"]))
    {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join(format!("{name}.faiss"))).unwrap();
        // As ivflake opens files: lazily (the whole-file reader is a test
        // reference, and reads some of these, fast-scan under a refine say).
        let err = match open_header(&bytes, bytes.len() as u64, bytes.len() * 4) {
            Err(err) => err,
            Ok(_) => panic!("{name}: opened"),
        };
        assert_eq!(err.kind(), FaissErrorKind::Unsupported, "{name}: {err}");
        if name.starts_with("ivfrabitq_") {
            assert!(err.message().contains(&faiss_version()), "{name}: {err}");
        }
    }
}
