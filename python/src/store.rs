//! `ivflake.open(uri, **store_options)`: a store built here from the URI,
//! the environment and the caller's object_store settings, in the manner of
//! LanceDB's `storage_options`.

use std::sync::Arc;

use ivflake::{FetchConfig, IndexLocation};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};
use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use url::Url;

/// The location of `uri`. Without options it is exactly the CLI's
/// (`IndexLocation::parse`). With options the cloud store is built here: the
/// environment first (as the CLI reads it), then ivflake's retry policy and
/// timeouts, then each option, so an option wins over both. Option keys are
/// object_store's config keys (`endpoint`, `region`, `allow_http`,
/// `aws_access_key_id`, `timeout`...); an unknown key is a `ValueError`, not
/// silently dropped.
pub(crate) fn locate(uri: &str, options: &[(String, String)], fetch: &FetchConfig) -> PyResult<IndexLocation> {
    if options.is_empty() {
        return IndexLocation::parse(uri, fetch).map_err(crate::errors::to_py);
    }
    let url = Url::parse(uri)
        .map_err(|e| PyValueError::new_err(format!("store options need an s3://, gs:// or az:// URI; {uri:?}: {e}")))?;
    let path = url.path().trim_start_matches('/');
    if path.is_empty() {
        return Err(PyValueError::new_err(format!(
            "invalid index URI {uri:?}: no object key"
        )));
    }
    let path = Path::parse(path).map_err(|e| PyValueError::new_err(format!("invalid index URI {uri:?}: {e}")))?;
    let timeout = format!("{}ms", fetch.request_timeout.as_millis());
    let connect_timeout = format!("{}ms", fetch.connect_timeout.as_millis());

    // Each builder takes the same steps; only the key type differs.
    macro_rules! build {
        ($builder:ty, $key:ty, $client:expr) => {{
            let mut builder = <$builder>::from_env()
                .with_url(uri)
                .with_retry(fetch.retry.clone())
                .with_config($client(ClientConfigKey::Timeout), timeout)
                .with_config($client(ClientConfigKey::ConnectTimeout), connect_timeout);
            for (key, value) in options {
                let parsed: $key = key.to_ascii_lowercase().parse().map_err(|_| {
                    PyValueError::new_err(format!("unknown store option {key:?} for {}://", url.scheme()))
                })?;
                builder = builder.with_config(parsed, value.clone());
            }
            let store = builder
                .build()
                .map_err(|e| PyValueError::new_err(format!("cannot configure the store for {uri:?}: {e}")))?;
            Arc::new(store) as Arc<dyn ObjectStore>
        }};
    }
    let store = match url.scheme() {
        "s3" | "s3a" => build!(AmazonS3Builder, AmazonS3ConfigKey, AmazonS3ConfigKey::Client),
        "gs" => build!(GoogleCloudStorageBuilder, GoogleConfigKey, GoogleConfigKey::Client),
        "az" | "azure" | "abfs" | "abfss" => build!(MicrosoftAzureBuilder, AzureConfigKey, AzureConfigKey::Client),
        other => {
            return Err(PyValueError::new_err(format!(
                "store options apply to s3://, gs:// and az:// URIs, not {other}://"
            )))
        }
    };
    Ok(IndexLocation::new(store, path, uri))
}
