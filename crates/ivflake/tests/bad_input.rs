//! Bad input gets a clear, typed error, never a panic or an unbounded allocation.
//!
//! Alone in its test binary, not in `it/`: the allocation-cap test compares
//! the process's peak resident memory (VmHWM) before and after, so another
//! test's allocations in the same process would move what it measures.

#[path = "it/common.rs"]
mod common;

use std::sync::Arc;

use common::*;
use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, Metric};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const D: usize = 16;

async fn open_bytes(bytes: Vec<u8>) -> ivflake::Result<IvfIndex> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, "x.faiss", bytes).await;
    IvfIndex::open_at(
        IndexLocation::new(store, "x.faiss", "memory://t/x.faiss"),
        options(FetchConfig::default()),
    )
    .await
}

fn ivfpq() -> Vec<u8> {
    build_index("IVF16,PQ4np", Metric::L2, D, 2000)
}

#[tokio::test]
async fn missing_object_is_not_found() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let err = IvfIndex::open_at(
        IndexLocation::new(store, "nope.faiss", "memory://t/nope"),
        options(FetchConfig::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = IvfIndex::open("/definitely/not/here/x.faiss").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let dir = std::env::temp_dir();
    let err = IvfIndex::open(&format!(
        "{}/ivflake-missing-{}.faiss",
        dir.display(),
        std::process::id()
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn bad_uris_are_refused() {
    for uri in ["s3://", "ftp://host/x", "s3://bucket/"] {
        let err = IvfIndex::open(uri).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUri { .. }), "{uri}: {err}");
    }
}

#[tokio::test]
async fn truncated_files_are_corrupt_at_every_cut() {
    // Small files, so every cut (inside the header and inside the list data) is tried.
    for (factory, d, n) in [("IVF4,Flat", 4, 64), ("IVF4,PQ2x4np", 4, 300)] {
        let bytes = build_index(factory, Metric::L2, d, n);
        for cut in 0..bytes.len() {
            let err = open_bytes(bytes[..cut].to_vec()).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{factory}, cut at {cut}: {err}");
        }
        open_bytes(bytes).await.expect("the whole file opens");
    }
}

#[tokio::test]
async fn wrong_magic_and_garbage_are_refused() {
    let mut bytes = ivfpq();
    bytes[..4].copy_from_slice(b"\0\x01\x02\x03");
    assert!(matches!(open_bytes(bytes).await.unwrap_err(), Error::Corrupt { .. }));
    let mut bytes = ivfpq();
    bytes[..4].copy_from_slice(b"ZZZZ");
    let err = open_bytes(bytes).await.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { .. } | Error::Corrupt { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ZZZZ"), "the error names the magic: {err}");
    // A text file is no Faiss index of any version, not a newer one.
    let err = open_bytes(b"hello, this is a text file\n".repeat(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a Faiss index file"), "{err}");
    assert!(!err.to_string().contains("newer"), "{err}");
}

/// The most resident memory this process has had (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

#[tokio::test]
async fn corrupt_length_fields_are_refused_by_the_allocation_cap() {
    // Overwrite each 8-byte word of the header in turn with a length just past
    // the cap (max(2 × file size, 256 MiB)) for a vector of bytes. malloc would
    // grant it (lazily), and Faiss zero-fills a vector it resizes, so without
    // the cap a length field would be allocated and touched: the error below
    // would be another one, and the peak resident memory would jump.
    const LENGTH: u64 = (1 << 28) + 1;
    let bytes = build_index("IVF8,Flat", Metric::L2, D, 500);
    let (index, _) = open_in_memory(bytes.clone(), FetchConfig::default()).await;
    let header = index.list_ranges().header_len() as usize;
    let peak_before = peak_rss();
    let mut capped = Vec::new();
    for at in (4..header.saturating_sub(8)).step_by(4) {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&LENGTH.to_le_bytes());
        match open_bytes(b).await {
            Err(Error::Corrupt { reason, .. }) if reason.contains("allocation larger than the file") => capped.push(at),
            Err(Error::Corrupt { .. } | Error::Unsupported { .. }) => {}
            Err(e) => panic!("offset {at}: unexpected error kind {e:?}"),
            // The word was not a length (a float, say): nothing to refuse.
            Ok(_) => {}
        }
    }
    // The centroids' vector length, the lists' sizes and ids: several fields are lengths.
    assert!(capped.len() >= 2, "the cap refused lengths at offsets {capped:?}");
    let growth = peak_rss().saturating_sub(peak_before);
    assert!(growth < 128 << 20, "peak resident memory grew by {} MiB", growth >> 20);
}

#[tokio::test]
async fn list_sizes_that_do_not_fit_the_file_are_corrupt() {
    let mut bytes = build_index("IVF8,Flat", Metric::L2, D, 500);
    bytes.extend_from_slice(&[0u8; 16]);
    let err = open_bytes(bytes).await.unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}

#[tokio::test]
async fn unsupported_types_name_the_type() {
    let flat = ivflake_faiss::Index::factory(D, "Flat", Metric::L2)
        .unwrap()
        .to_bytes()
        .unwrap();
    let err = open_bytes(flat).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("IndexFlat"), "{err}");
    let hnsw = build_index("HNSW8", Metric::L2, D, 300);
    let err = open_bytes(hnsw).await.unwrap_err();
    assert!(err.to_string().contains("IndexHNSW"), "{err}");
    // An IVF whose codec the binding does not serve (additive quantizers).
    let rq = build_index("IVF8,RQ2x4", Metric::L2, D, 1000);
    let err = open_bytes(rq).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("IndexIVFResidualQuantizer"), "{err}");
}

#[tokio::test]
async fn bad_queries_and_parameters_are_invalid_arguments() {
    let (index, counting) = open_in_memory(ivfpq(), FetchConfig::default()).await;
    let nlist = index.info().nlist;
    let q = clustered(2, D, 3);
    let field = |e: Error| match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    counting.reset();
    assert_eq!(field(index.search(&q[..D - 1], 5, 4).await.unwrap_err()), "queries");
    assert_eq!(field(index.search(&[], 5, 4).await.unwrap_err()), "queries");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut q = q.clone();
        q[D + 3] = bad;
        let err = index.search(&q, 5, 4).await.unwrap_err();
        assert!(err.to_string().contains("query 1"), "{err}");
    }
    assert_eq!(field(index.search(&q, 0, 4).await.unwrap_err()), "k");
    assert_eq!(field(index.search(&q, ivflake::MAX_K + 1, 4).await.unwrap_err()), "k");
    assert_eq!(field(index.search(&q, usize::MAX, 4).await.unwrap_err()), "k");
    assert_eq!(field(index.search(&q, 5, 0).await.unwrap_err()), "nprobe");
    assert_eq!(field(index.search(&q, 5, nlist + 1).await.unwrap_err()), "nprobe");
    assert_eq!(field(index.search(&q, 5, usize::MAX).await.unwrap_err()), "nprobe");
    let many = clustered(2000, D, 4);
    assert_eq!(
        field(index.search(&many, ivflake::MAX_K, 1).await.unwrap_err()),
        "queries"
    );
    assert_eq!(counting.gets(), 0, "invalid searches never reach the store");
    // k larger than ntotal is valid: Faiss pads with -1.
    let r = index.search(&q[..D], 5000, nlist).await.unwrap();
    assert_eq!(r.ids.iter().filter(|&&i| i == -1).count(), 5000 - 2000);
}
