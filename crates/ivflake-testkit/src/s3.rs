//! The S3-protocol server the tests talk to: moto on loopback, started by
//! `make test`, found through the environment it exports. Tests never reach
//! a real cloud store, so this refuses any endpoint that is not loopback.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

/// Where `make test`'s moto listens, and the bucket it made for this run.
#[derive(Debug, Clone)]
pub struct Moto {
    pub endpoint: String,
    pub bucket: String,
}

/// Reads `AWS_ENDPOINT_URL` and `IVFLAKE_S3_BUCKET`; panics with what to run
/// when they are not set, or when the endpoint is not loopback.
pub fn moto() -> Moto {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with `make test`, which starts moto's S3 server");
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "tests only talk to loopback, got {endpoint}"
    );
    let bucket = std::env::var("IVFLAKE_S3_BUCKET").expect("IVFLAKE_S3_BUCKET");
    Moto { endpoint, bucket }
}

impl Moto {
    /// A client for the bucket, with the credentials and endpoint from the environment.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .build()
            .expect("S3 store from the environment");
        Arc::new(store)
    }
}

/// A key no earlier run against the same store used (tests share one moto
/// across reruns): `<prefix>/<what>-<process id>-<nanoseconds>.faiss`.
pub fn unique_key(prefix: &str, what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}/{what}-{}-{nanos}.faiss", std::process::id())
}
