//! Failed opens leak nothing. Faiss's reader leaks what it has built when it
//! throws halfway; the shim's parse arena frees it. Alone in its test binary,
//! so no other test's allocations move the resident size it measures.

#[path = "it/common.rs"]
mod common;

use std::sync::Arc;

use common::*;
use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, Metric};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const OPENS: usize = 1_000;
/// Growth allowed over 1,000 failed opens: allocator noise, far below the
/// ~100 KiB each open would leak (a 512-centroid quantizer and PQ codebooks).
const SLACK_BYTES: u64 = 4 << 20;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .expect("a number");
    pages * 4096
}

#[tokio::test]
async fn a_thousand_failed_opens_leak_nothing() {
    let intact = build_index("IVF512,PQ8np", Metric::L2, 32, 20_000);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    put(&store, "intact.faiss", intact.clone()).await;
    let header_len = {
        let location = IndexLocation::new(store.clone(), "intact.faiss", "memory://leaks/intact.faiss");
        let index = IvfIndex::open_at(location, options(FetchConfig::default()))
            .await
            .expect("open");
        index.info().list_data_offset as usize
    };
    // Cut inside the PQ codebooks: the quantizer is read in full, then the
    // parse fails; a small first read also takes the "needs more bytes"
    // path several times first, each retry discarding a partial parse.
    put(&store, "cut.faiss", intact[..header_len - 100].to_vec()).await;
    // A corrupt field late in the header: the lists' section tag.
    let mut bad_tag = intact.clone();
    let tag = bad_tag[..header_len]
        .windows(4)
        .rposition(|w| w == b"ilar")
        .expect("array lists tag");
    bad_tag[tag..tag + 4].copy_from_slice(b"ilXX");
    put(&store, "tag.faiss", bad_tag).await;

    let mut opts = options(FetchConfig::default());
    opts.header_probe_bytes = 16 << 10;
    let open_failing = |key: &'static str| {
        let location = IndexLocation::new(store.clone(), key, "memory://leaks/x.faiss");
        IvfIndex::open_at(location, opts.clone())
    };
    let mut baseline = 0;
    for i in 0..OPENS {
        let key = if i % 2 == 0 { "cut.faiss" } else { "tag.faiss" };
        let err = open_failing(key).await.expect_err("a corrupt file does not open");
        assert!(
            matches!(err, Error::Corrupt { .. } | Error::Unsupported { .. }),
            "{key}: {err}"
        );
        if i == 1 {
            baseline = resident_bytes();
        }
    }
    let after = resident_bytes();
    println!(
        "resident after 2 failed opens: {:.1} MiB, after {OPENS}: {:.1} MiB",
        baseline as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64
    );
    assert!(
        after <= baseline + SLACK_BYTES,
        "resident size grew by {} KiB over {OPENS} failed opens",
        (after - baseline) / 1024
    );
}
