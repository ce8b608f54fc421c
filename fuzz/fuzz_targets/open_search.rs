//! Open + search of arbitrary bytes as a Faiss index file: must end in a
//! clean error or a search that runs, never a crash, hang or unbounded
//! allocation (run with `-rss_limit_mb`). Seed it with the faiss-cpu fixtures
//! (docs/robustness.md): random bytes rarely get past Faiss's first fourcc.
#![no_main]

use std::sync::{Arc, OnceLock};

use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, ManifestMode, OpenOptions};
use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = object_store::path::Path::from("f.faiss");
        store.put(&path, PutPayload::from(data.to_vec())).await.expect("put");
        let options = OpenOptions {
            scheduler: FetchScheduler::new(FetchConfig::default()),
            manifest: ManifestMode::Ignore,
            ..OpenOptions::default()
        };
        let location = IndexLocation::new(store, "f.faiss", "memory://fuzz/f.faiss");
        let Ok(index) = IvfIndex::open_at(location, options).await else {
            return;
        };
        let d = index.info().d;
        let queries: Vec<f32> = (0..d).map(|i| (i % 7) as f32 - 3.0).collect();
        let nlist = index.info().nlist.max(1);
        for nprobe in [1, 8.min(nlist), nlist] {
            if let Ok(results) = index.search(&queries, 10, nprobe).await {
                assert_eq!(results.ids.len(), 10);
            }
        }
    });
});
