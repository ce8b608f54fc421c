//! Vector buckets and indexes as prefixes of one root in a store, and the
//! opened indexes (bounded, least recently used dropped).
//!
//! ```text
//! <root>/<bucket>/bucket.json                      the bucket (created once, conditionally)
//! <root>/<bucket>/settings.json                    its policy, tags, default index mode (replaced)
//! <root>/<bucket>/indexes/<index>/index.json       the index (created once, conditionally)
//! <root>/<bucket>/indexes/<index>/settings.json    its tags and mode (replaced)
//! <root>/<bucket>/indexes/<index>/data/            the mutable index (`ivflake::MutableIndex`)
//! ```
//!
//! Names are checked against the service's pattern before they become
//! path parts, so a name never escapes its prefix.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ivflake::{IndexLocation, Metric, MutableIndex, MutableOptions};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::error::{S3vError, S3vResult};
use super::wire::{EncryptionConfiguration, MetadataConfiguration};

/// A bucket as created (never changes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created: f64,
    pub encryption: Option<EncryptionConfiguration>,
}

/// A bucket's or an index's settings that later calls replace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub policy: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A bucket's `defaultIndexMode`, or an index's `indexMode`.
    pub mode: Option<String>,
}

/// An index as created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexRecord {
    pub bucket: String,
    pub name: String,
    pub created: f64,
    pub dimension: usize,
    /// `euclidean` or `cosine`.
    pub distance_metric: String,
    pub data_type: String,
    pub metadata: MetadataConfiguration,
    pub encryption: Option<EncryptionConfiguration>,
    /// The mode it was created with (the bucket's default then).
    pub mode: String,
}

impl IndexRecord {
    pub fn cosine(&self) -> bool {
        self.distance_metric == "cosine"
    }
}

/// An opened index.
#[derive(Debug)]
pub struct OpenIndex {
    pub record: IndexRecord,
    pub index: MutableIndex,
    /// Held by the one compaction of this index this server runs at a time.
    pub compacting: tokio::sync::Mutex<()>,
}

/// The root, the records read so far, and the opened indexes.
#[derive(Debug)]
pub struct Catalog {
    root: IndexLocation,
    pub region: String,
    pub account: String,
    options: MutableOptions,
    indexes: moka::future::Cache<String, Arc<OpenIndex>>,
    buckets: moka::future::Cache<String, Arc<BucketRecord>>,
    /// Settings read in the last `SETTINGS_TTL`: a query reads its index's
    /// mode without a round trip; another replica's change shows within it.
    settings: moka::future::Cache<String, Arc<Settings>>,
}

/// How long settings read from the store are trusted.
pub const SETTINGS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks a bucket or index name against the service's pattern
/// `[a-z0-9][a-z0-9-.]{1,61}[a-z0-9]`.
pub fn check_name(member: &str, name: &str) -> S3vResult<()> {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (3..=63).contains(&b.len()) && edge(&b[0]) && edge(&b[b.len() - 1]) && b.iter().all(inner);
    if ok {
        Ok(())
    } else {
        Err(S3vError::invalid(
            member,
            "must be 3 to 63 characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit",
        ))
    }
}

pub fn now_secs() -> f64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    ms as f64 / 1000.0
}

impl Catalog {
    /// The catalog under `root`, refused when its store ignores
    /// conditional creates (writers could overwrite each other).
    pub async fn open(
        root: IndexLocation,
        region: &str,
        account: &str,
        options: MutableOptions,
        max_open: u64,
    ) -> ivflake::Result<Self> {
        ivflake::Sequence::new(root.store.clone(), root.path.clone().join("_probe"), ".json", &root.uri)
            .check_store()
            .await?;
        Ok(Self {
            root,
            region: region.to_string(),
            account: account.to_string(),
            options,
            indexes: moka::future::Cache::new(max_open.max(1)),
            buckets: moka::future::Cache::new(10_000),
            settings: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SETTINGS_TTL)
                .build(),
        })
    }

    pub fn bucket_arn(&self, bucket: &str) -> String {
        format!("arn:aws:s3vectors:{}:{}:bucket/{bucket}", self.region, self.account)
    }

    pub fn index_arn(&self, bucket: &str, index: &str) -> String {
        format!("{}/index/{index}", self.bucket_arn(bucket))
    }

    /// The bucket and (when it names one) index of an ARN of this server's
    /// region and account.
    pub fn parse_arn(&self, member: &str, arn: &str) -> S3vResult<(String, Option<String>)> {
        let prefix = format!("arn:aws:s3vectors:{}:{}:bucket/", self.region, self.account);
        let Some(rest) = arn.strip_prefix(&prefix) else {
            return Err(S3vError::invalid(
                member,
                format!("not an ARN of this server: it must start with {prefix}"),
            ));
        };
        match rest.split_once("/index/") {
            Some((bucket, index)) => {
                check_name(member, bucket)?;
                check_name(member, index)?;
                Ok((bucket.to_string(), Some(index.to_string())))
            }
            None => {
                check_name(member, rest)?;
                Ok((rest.to_string(), None))
            }
        }
    }

    fn path(&self, parts: &[&str]) -> Path {
        parts.iter().fold(self.root.path.clone(), |p, part| p.join(*part))
    }

    fn index_prefix(&self, bucket: &str, index: &str) -> Vec<String> {
        vec![bucket.to_string(), "indexes".to_string(), index.to_string()]
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> S3vResult<Option<T>> {
        match self.root.store.get(path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(store_error)?;
                serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    tracing::warn!(%path, error = %e, "vector root: a record does not parse");
                    S3vError::internal("a bucket or index record in the store is corrupt; the server log has which")
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Writes `value` at `path`; with `create`, only if nothing is there
    /// (false when something is).
    async fn write_json<T: Serialize>(&self, path: &Path, value: &T, create: bool) -> S3vResult<bool> {
        let bytes = Bytes::from(serde_json::to_vec(value).map_err(|e| S3vError::internal(e.to_string()))?);
        let mode = if create { PutMode::Create } else { PutMode::Overwrite };
        match self
            .root
            .store
            .put_opts(path, PutPayload::from(bytes), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Deletes every object under `prefix`.
    async fn delete_under(&self, prefix: &Path) -> S3vResult<()> {
        let store = self.root.store.clone();
        let listed = store.list(Some(prefix)).map_ok(|meta| meta.location).boxed();
        store
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The names of the folders directly under `parts` that are valid names.
    async fn children(&self, parts: &[&str]) -> S3vResult<Vec<String>> {
        let listed = self
            .root
            .store
            .list_with_delimiter(Some(&self.path(parts)))
            .await
            .map_err(store_error)?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| check_name("name", n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn create_bucket(&self, record: BucketRecord, settings: Settings) -> S3vResult<()> {
        let name = record.name.clone();
        if !self
            .write_json(&self.path(&[&name, "bucket.json"]), &record, true)
            .await?
        {
            return Err(S3vError::conflict(format!(
                "a vector bucket named {name} already exists"
            )));
        }
        self.write_json(&self.path(&[&name, "settings.json"]), &settings, false)
            .await?;
        Ok(())
    }

    pub async fn bucket(&self, name: &str) -> S3vResult<Arc<BucketRecord>> {
        if let Some(b) = self.buckets.get(name).await {
            return Ok(b);
        }
        let record: BucketRecord = self
            .read_json(&self.path(&[name, "bucket.json"]))
            .await?
            .ok_or_else(|| S3vError::not_found(format!("no vector bucket named {name}")))?;
        let record = Arc::new(record);
        self.buckets.insert(name.to_string(), record.clone()).await;
        Ok(record)
    }

    pub async fn bucket_names(&self) -> S3vResult<Vec<String>> {
        self.children(&[]).await
    }

    /// Deletes an empty bucket (a `ConflictException` while it holds an index).
    pub async fn delete_bucket(&self, name: &str) -> S3vResult<()> {
        self.bucket(name).await?;
        // A local directory keeps the empty folders of deleted indexes.
        let mut held = false;
        for index in self.index_names(name).await? {
            match self.index_record(name, &index).await {
                Ok(_) => held = true,
                Err(e) if e.kind == super::error::Kind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if held {
            return Err(S3vError::conflict(format!(
                "vector bucket {name} is not empty: delete its indexes first"
            )));
        }
        self.buckets.invalidate(name).await;
        self.settings.invalidate(name).await;
        self.delete_under(&self.path(&[name])).await
    }

    pub async fn settings(&self, parts: &[&str]) -> S3vResult<Settings> {
        let key = parts.join("/");
        if let Some(s) = self.settings.get(&key).await {
            return Ok((*s).clone());
        }
        let mut path: Vec<&str> = parts.to_vec();
        path.push("settings.json");
        let settings: Settings = self.read_json(&self.path(&path)).await?.unwrap_or_default();
        self.settings.insert(key, Arc::new(settings.clone())).await;
        Ok(settings)
    }

    /// Reads the settings at `parts`, changes them with `change`, writes them.
    pub async fn update_settings(&self, parts: &[&str], change: impl FnOnce(&mut Settings)) -> S3vResult<()> {
        let mut settings = self.settings(parts).await?;
        change(&mut settings);
        self.put_settings(parts, &settings).await
    }

    async fn put_settings(&self, parts: &[&str], settings: &Settings) -> S3vResult<()> {
        let mut path: Vec<&str> = parts.to_vec();
        path.push("settings.json");
        self.write_json(&self.path(&path), settings, false).await?;
        self.settings.insert(parts.join("/"), Arc::new(settings.clone())).await;
        Ok(())
    }

    pub async fn index_names(&self, bucket: &str) -> S3vResult<Vec<String>> {
        self.children(&[bucket, "indexes"]).await
    }

    pub async fn index_record(&self, bucket: &str, index: &str) -> S3vResult<IndexRecord> {
        if let Some(open) = self.indexes.get(&format!("{bucket}/{index}")).await {
            return Ok(open.record.clone());
        }
        let p = self.index_prefix(bucket, index);
        let parts: Vec<&str> = p.iter().map(String::as_str).collect();
        let mut path = parts.clone();
        path.push("index.json");
        self.read_json(&self.path(&path))
            .await?
            .ok_or_else(|| S3vError::not_found(format!("no index named {index} in vector bucket {bucket}")))
    }

    /// Claims the name, then creates the (empty) mutable index under it.
    pub async fn create_index(
        &self,
        record: IndexRecord,
        settings: Settings,
        factory: &str,
        text_fields: Vec<ivflake::text::TextField>,
    ) -> S3vResult<()> {
        let (bucket, name) = (record.bucket.clone(), record.name.clone());
        let p = self.index_prefix(&bucket, &name);
        let parts: Vec<&str> = p.iter().map(String::as_str).collect();
        let mut path = parts.clone();
        path.push("index.json");
        if !self.write_json(&self.path(&path), &record, true).await? {
            return Err(S3vError::conflict(format!(
                "an index named {name} already exists in vector bucket {bucket}"
            )));
        }
        self.put_settings(&parts, &settings).await?;
        // What a crashed DeleteIndex of an earlier index of this name left.
        let mut data = parts.clone();
        data.push("data");
        self.delete_under(&self.path(&data)).await?;
        let location = self.data_location(&bucket, &name)?;
        let options = ivflake::MutableOptions {
            text_fields,
            ..self.options.clone()
        };
        if let Err(e) = MutableIndex::create_at(location, record.dimension, metric_of(&record), factory, options).await
        {
            // The name is given back: a retry creates the index again.
            let mut path = parts.clone();
            path.push("index.json");
            let _ = self.root.store.delete(&self.path(&path)).await;
            return Err(e.into());
        }
        Ok(())
    }

    fn data_location(&self, bucket: &str, index: &str) -> S3vResult<IndexLocation> {
        self.root
            .child(&format!("{bucket}/indexes/{index}/data"))
            .map_err(S3vError::from)
    }

    /// The index, opened once and kept while it is used.
    pub async fn index(&self, bucket: &str, index: &str) -> S3vResult<Arc<OpenIndex>> {
        let key = format!("{bucket}/{index}");
        if let Some(open) = self.indexes.get(&key).await {
            return Ok(open);
        }
        let record = self.index_record(bucket, index).await?;
        let location = self.data_location(bucket, index)?;
        let options = self.options.clone();
        let opened = self
            .indexes
            .try_get_with(key, async move {
                let index = MutableIndex::open_at(location, options).await?;
                Ok::<_, ivflake::Error>(Arc::new(OpenIndex {
                    record,
                    index,
                    compacting: tokio::sync::Mutex::new(()),
                }))
            })
            .await
            .map_err(|e| S3vError::from((*e).clone()))?;
        Ok(opened)
    }

    /// The indexes opened now.
    pub fn opened(&self) -> Vec<Arc<OpenIndex>> {
        self.indexes.iter().map(|(_, v)| v).collect()
    }

    pub async fn delete_index(&self, bucket: &str, index: &str) -> S3vResult<()> {
        self.index_record(bucket, index).await?;
        let p = self.index_prefix(bucket, index);
        let parts: Vec<&str> = p.iter().map(String::as_str).collect();
        let mut record = parts.clone();
        record.push("index.json");
        // The record first: from then on the index is gone to every caller.
        self.root.store.delete(&self.path(&record)).await.map_err(store_error)?;
        self.indexes.invalidate(&format!("{bucket}/{index}")).await;
        self.settings.invalidate(&parts.join("/")).await;
        self.delete_under(&self.path(&parts)).await
    }
}

pub fn metric_of(record: &IndexRecord) -> Metric {
    if record.cosine() {
        Metric::InnerProduct
    } else {
        Metric::L2
    }
}

/// A store failure, told without its endpoint, bucket or key (logged in full).
fn store_error(e: object_store::Error) -> S3vError {
    tracing::warn!(error = %e, "vector root: the store failed");
    S3vError::new(super::error::Kind::ServiceUnavailable, "the object store failed; retry")
}
