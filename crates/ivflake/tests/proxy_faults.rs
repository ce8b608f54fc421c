//! Faults on the wire: the library searches a faiss-cpu fixture on the real
//! S3-protocol server (moto) through `ivflake_testkit::FaultProxy`, which
//! answers list GETs with 500s, stalls, resets, truncated and flipped
//! bodies. Each fault is a clean error of its own kind within the search's
//! deadline; with the checksum sidecar present no search ever returns a
//! wrong answer; once the proxy forwards untouched again, the same search
//! is exact. (`faults.rs` injects the same kinds in process, `HookedStore`.)
//!
//! Alone in its test binary, not in `it/`: each GET has a bound, and a reset
//! must come back as a reset after object_store's retries through the
//! proxy, which runs in this process. Beside the CPU-heavy tests of `it/`
//! (Faiss training, compute pools) the retries outran the 500 ms and the
//! reset came back as a time-out.

#[path = "it/common.rs"]
mod common;

use std::time::Duration;

use common::*;
use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, ManifestMode, OpenOptions, SearchParams};
use ivflake_testkit::{FaultProxy, ProxyFault};

/// Each GET gets this long, and is re-sent once: a stall fails a search in
/// about 2 × this, far inside its deadline. Generous because a reset's
/// three attempts each go through moto (Python) with the whole wave's
/// other GETs: on CI's fresh machine 500 ms ran out and the reset came
/// back as a time-out.
const GET_TIMEOUT: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(15);
/// Far past the deadline: a search still running then never ends.
const LIVENESS: Duration = Duration::from_secs(120);
const FIXTURE: &str = "ivfpq_l2";

/// The fixture copied under a key of this test run, with its checksum
/// sidecar written by the library's manifest API (straight to moto).
async fn fixture_with_sidecar(s3: &Moto) -> String {
    let (store, bucket) = (s3.store(), &s3.bucket);
    let key = unique_key("proxy-tests", FIXTURE);
    put(
        &store,
        &key,
        std::fs::read(fixtures().join(format!("{FIXTURE}.faiss"))).unwrap(),
    )
    .await;
    write_sidecar(IndexLocation::new(store, key.as_str(), format!("s3://{bucket}/{key}"))).await;
    key
}

/// What each fault must come back as: object_store gives up on 500s and
/// resets after its retries (a store error carrying the cause), the
/// library's own checks catch the rest.
fn expected_error(fault: ProxyFault, e: &Error) -> bool {
    let cause = format!("{e:?}");
    match fault {
        ProxyFault::ServerError => matches!(e, Error::Store { .. }) && cause.contains("status: 500"),
        ProxyFault::Stall => matches!(e, Error::GetTimedOut { attempts: 2, .. }),
        ProxyFault::Reset => matches!(e, Error::Store { .. }) && cause.contains("ConnectionReset"),
        ProxyFault::Truncate => matches!(e, Error::TruncatedGet { .. }),
        ProxyFault::FlipByte => matches!(e, Error::Checksum { .. }),
        ProxyFault::None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_faults_are_clean_errors_never_wrong_answers_and_the_index_recovers() {
    let s3 = moto();
    let key = fixture_with_sidecar(&s3).await;
    let Moto { endpoint, bucket } = s3;
    let proxy = FaultProxy::start(&endpoint).await;
    let m = manifest();
    let (queries, _) = npy_f32(&fixtures().join("queries.npy"));
    let queries = &queries[..8 * m.d];
    let expected_ids = &npy_i64(&fixtures().join(format!("{FIXTURE}.ids.npy")))[..8 * m.k];

    // No cache, so every search GETs its lists through the proxy.
    let config = FetchConfig {
        get_timeout: GET_TIMEOUT,
        ..uncached()
    };
    let index = IvfIndex::open_at(
        IndexLocation::new(proxy.s3_store(&bucket), key.as_str(), format!("s3://{bucket}/{key}")),
        OpenOptions {
            manifest: ManifestMode::Require,
            ..options(config)
        },
    )
    .await
    .expect("open through the healthy proxy");
    let params = SearchParams {
        deadline: Some(DEADLINE),
        ..SearchParams::new(m.k, m.nprobe)
    };
    let healthy = index.search_with(queries, &params).await.expect("healthy search");
    // The same answer faiss-cpu gave, up to its other build's ties.
    let same = healthy.ids.iter().zip(expected_ids).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= 0.97 * expected_ids.len() as f64,
        "{same} of {}",
        expected_ids.len()
    );

    for fault in [
        ProxyFault::ServerError,
        ProxyFault::Stall,
        ProxyFault::Reset,
        ProxyFault::Truncate,
        ProxyFault::FlipByte,
    ] {
        let faulted_before = proxy.faulted();
        proxy.inject(fault, &key);
        // The search's deadline ends a stall; the liveness bound only
        // catches a deadline that never fires, and measures nothing.
        let outcome = tokio::time::timeout(LIVENESS, index.search_with(queries, &params))
            .await
            .unwrap_or_else(|_| panic!("{fault:?}: the search outlived its deadline by {LIVENESS:?}"));
        assert!(proxy.faulted() > faulted_before, "{fault:?} was never injected");
        match outcome {
            Ok(r) => panic!(
                "{fault:?}: a search through a damaged store answered ({})",
                if r.ids == healthy.ids {
                    "correctly, so the fault missed"
                } else {
                    "WRONGLY"
                }
            ),
            Err(e) => {
                assert!(expected_error(fault, &e), "{fault:?}: unexpected error {e:?}");
                // All but a flipped byte are the store's passing trouble: worth a retry.
                assert_eq!(e.is_transient(), fault != ProxyFault::FlipByte, "{fault:?}: {e}");
            }
        }

        proxy.clear();
        let recovered = index
            .search_with(queries, &params)
            .await
            .expect("search after the fault");
        assert_eq!(recovered.ids, healthy.ids, "{fault:?}: not exact after recovery");
        assert_eq!(recovered.distances, healthy.distances, "{fault:?}");
    }
}
