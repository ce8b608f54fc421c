//! Every URI scheme the README documents parses to the right store, bucket
//! and key, without touching the network; malformed ones are refused by name.
//!
//! Alone in its test binary, not in `it/`: it sets an environment variable
//! (Azure's account name), and `setenv` races with C code reading the
//! environment on other tests' threads (Faiss's OpenMP, glibc); Rust's own
//! reads are locked, theirs are not.

use ivflake::{Error, FetchConfig, IndexLocation};

/// Azure's builder needs an account name; tests never carry real
/// credentials. Set once, before either test reads the environment: the
/// second caller waits on the `Once` until the first has set it, so no
/// read ever races the write.
fn azure_account_name() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            std::env::set_var("AZURE_STORAGE_ACCOUNT_NAME", "ivflaketest");
        }
    });
}

fn parse(uri: &str) -> IndexLocation {
    IndexLocation::parse(uri, &FetchConfig::default()).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

#[test]
fn every_documented_scheme_parses_to_its_store_bucket_and_key() {
    azure_account_name();
    let dir = std::env::temp_dir();
    let local = dir.join("x.faiss");
    let cases = [
        (
            "s3://bucket-a/dir/x.faiss".to_string(),
            "AmazonS3",
            "bucket-a",
            "dir/x.faiss",
        ),
        ("s3a://bucket-a/x.faiss".to_string(), "AmazonS3", "bucket-a", "x.faiss"),
        (
            "gs://bucket-g/dir/x.faiss".to_string(),
            "GoogleCloudStorage",
            "bucket-g",
            "dir/x.faiss",
        ),
        (
            "az://container-z/dir/x.faiss".to_string(),
            "MicrosoftAzure",
            "container-z",
            "dir/x.faiss",
        ),
        (
            "azure://container-z/x.faiss".to_string(),
            "MicrosoftAzure",
            "container-z",
            "x.faiss",
        ),
        (format!("file://{}", local.display()), "LocalFileSystem", "", "x.faiss"),
        (local.display().to_string(), "LocalFileSystem", "", "x.faiss"),
        ("memory://m/dir/x.faiss".to_string(), "InMemory", "", "dir/x.faiss"),
    ];
    for (uri, store, bucket, key) in cases {
        let location = parse(&uri);
        let shown = location.store.to_string();
        assert!(shown.contains(store), "{uri}: store {shown}");
        assert!(shown.contains(bucket), "{uri}: bucket {bucket:?} in {shown}");
        assert_eq!(location.path.as_ref(), key, "{uri}");
        assert_eq!(location.uri, uri);
    }
}

#[test]
fn malformed_uris_are_invalid() {
    azure_account_name();
    for uri in [
        "s3://",
        "s3://bucket",
        "s3://bucket/",
        "gs://",
        "gs://bucket/",
        "az://",
        "az://container/",
        "ftp://host/x",
        "file://relative/x.faiss",
    ] {
        match IndexLocation::parse(uri, &FetchConfig::default()) {
            Err(Error::InvalidUri { uri: named, .. }) => assert_eq!(named, uri),
            other => panic!("{uri}: expected InvalidUri, got {other:?}"),
        }
    }
}
