//! Commits without a lock server (`ivflake::Sequence`): concurrent writers
//! each get their own position and no acknowledged commit is overwritten, on
//! a real S3-protocol server (moto, which honours If-None-Match), on local
//! files and in memory; a store that ignores conditional creates is refused.

use std::sync::Arc;

use bytes::Bytes;
use ivflake::{Error, FetchConfig, IndexLocation, Sequence};
use ivflake_testkit::{moto, HookedStore, IgnoreConditionalCreates, TempDir};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;

const WRITERS: usize = 4;
const COMMITS_EACH: usize = 5;

/// `WRITERS` writers, each on its own store client (as separate processes
/// would be), commit `COMMITS_EACH` payloads each at once; every
/// acknowledged position holds exactly the payload acknowledged for it.
async fn concurrent_writers_never_overwrite(stores: Vec<Arc<dyn ObjectStore>>, prefix: &str) {
    let sequences: Vec<Sequence> = stores
        .into_iter()
        .map(|store| Sequence::new(store, Path::from(prefix), ".log", prefix))
        .collect();
    sequences[0]
        .check_store()
        .await
        .expect("this store honours conditional creates");
    let tasks = sequences.iter().enumerate().flat_map(|(w, sequence)| {
        (0..COMMITS_EACH).map(move |i| {
            let sequence = sequence.clone();
            async move {
                let payload = Bytes::from(format!("writer {w} commit {i}"));
                let position = sequence.append(payload.clone()).await.expect("append");
                (position, payload)
            }
        })
    });
    let acknowledged = futures::future::join_all(tasks).await;
    let mut positions: Vec<u64> = acknowledged.iter().map(|(p, _)| *p).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(
        positions.len(),
        WRITERS * COMMITS_EACH,
        "every commit at its own position"
    );
    assert_eq!(sequences[0].positions().await.unwrap(), positions);
    for (position, payload) in &acknowledged {
        assert_eq!(
            &sequences[1].read(*position).await.unwrap(),
            payload,
            "position {position}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_s3_server() {
    let env = moto();
    let prefix = format!("commits/{}", std::process::id());
    let stores = (0..WRITERS)
        .map(|_| {
            let uri = format!("s3://{}/{prefix}/x", env.bucket);
            IndexLocation::parse(&uri, &FetchConfig::default()).unwrap().store
        })
        .collect();
    concurrent_writers_never_overwrite(stores, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_local_files_and_in_memory() {
    let dir = TempDir::new("commits");
    let local = (0..WRITERS)
        .map(|_| Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()) as Arc<dyn ObjectStore>)
        .collect();
    concurrent_writers_never_overwrite(local, "log").await;
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    concurrent_writers_never_overwrite(vec![memory; WRITERS], "log").await;
}

#[tokio::test]
async fn a_store_that_ignores_conditional_creates_is_refused_for_writing() {
    let store: Arc<dyn ObjectStore> = Arc::new(HookedStore::new(Arc::new(InMemory::new()), IgnoreConditionalCreates));
    let sequence = Sequence::new(store, Path::from("log"), ".log", "memory://forgetful/log");
    let err = sequence.check_store().await.unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { reason, .. } if reason.contains("conditional creates")),
        "{err}"
    );
    assert!(sequence.positions().await.unwrap().is_empty(), "the probe is gone");
}
