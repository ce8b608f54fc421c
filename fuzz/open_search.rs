// The body of the `open_search` fuzz target: open arbitrary bytes as a
// Faiss index file and search it. It must end in a clean error or a search
// that runs, never a crash, hang or unbounded allocation. Shared, by
// `include!` and `#[path]`, between the cargo-fuzz target
// (`fuzz_targets/open_search.rs`, nightly) and `make test`, which compiles
// and runs it on the faiss-cpu fixtures (`crates/ivflake/tests/it/fuzz_body.rs`),
// so the target cannot rot unseen.
use std::sync::{Arc, OnceLock};

use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, ManifestMode, OpenOptions};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Opens `data` as an index and searches it at three nprobes.
pub fn open_search(data: &[u8]) {
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
}
