//! The layout of a mutable index's prefix and its commit points.
//!
//! ```text
//! <prefix>/_versions/<position, 20 digits>.json   commit points, one per version (conditional creates)
//! <prefix>/_log/<position, 20 digits>.wal         the write log (conditional creates)
//! <prefix>/bases/<random>.faiss                   base files, standard Faiss IVF files
//! <prefix>/bases/<random>.faiss.attrs.parquet      a base's attributes, one row group per list
//! <prefix>/bases/<random>.faiss.ivfmanifest        a base's checksum sidecar
//! <prefix>/rows/<random>.parquet                   kept rows: each compaction's writes by id
//! <prefix>/bases/<random>.text                     a base's text index (`text/bundle.rs`)
//! ```
//!
//! A version names its base and the first log position not folded into
//! it: the index at that version is the base plus the log from there on.
//! The newest version is current (Lance's manifest per version); the log
//! lives in the bucket beside it (turbopuffer's write-ahead log).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub(crate) const VERSIONS_DIR: &str = "_versions";
pub(crate) const VERSION_SUFFIX: &str = ".json";
pub(crate) const LOG_DIR: &str = "_log";
pub(crate) const LOG_SUFFIX: &str = ".wal";
pub(crate) const BASES_DIR: &str = "bases";
pub(crate) const ROWS_DIR: &str = "rows";

/// The format of commit points this build writes and reads.
const FORMAT: u32 = 1;

/// One commit point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub format: u32,
    pub d: usize,
    /// `l2` or `inner_product`.
    pub metric: String,
    /// The Faiss factory string a trained base is built with.
    pub factory: String,
    /// The base file: a name under the prefix (`bases/…`), or the URI of
    /// a file elsewhere that the index was created from (never deleted).
    pub base: String,
    /// The base whose training the codes follow: records encoded for
    /// another are re-encoded from their vectors.
    pub codec: String,
    /// False while the base is the exact bootstrap (one list, flat codes)
    /// that an empty index starts from.
    pub trained: bool,
    /// The first log position not in the base.
    pub log_start: u64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The kept-rows segments (`rows/…`), oldest first: each holds, by id,
    /// the last write of every id one compaction folded (`kept.rs`).
    #[serde(default)]
    pub rows: Vec<String>,
    /// Whether writes keep their raw vectors in the rows (for `get` and a
    /// retrain), or only ids and attributes.
    #[serde(default = "yes")]
    pub keep_vectors: bool,
    /// The text fields full-text search reads (`text/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_fields: Vec<crate::text::TextField>,
    /// The base's text index of those fields; `None` while the base has
    /// no entries (or no text fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<crate::text::BundleRef>,
}

fn yes() -> bool {
    true
}

impl Version {
    pub fn new(d: usize, metric: &str, factory: &str, base: String, trained: bool, log_start: u64) -> Self {
        Self {
            format: FORMAT,
            d,
            metric: metric.to_string(),
            factory: factory.to_string(),
            codec: base.clone(),
            base,
            trained,
            log_start,
            created_ms: now_ms(),
            rows: Vec::new(),
            keep_vectors: true,
            text_fields: Vec::new(),
            text: None,
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    pub fn decode(raw: &[u8], uri: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: uri.to_string(),
            reason,
        };
        if raw.len() > 1 << 20 {
            return Err(corrupt(format!("a commit point of {} bytes", raw.len())));
        }
        let v: Self = serde_json::from_slice(raw).map_err(|e| corrupt(format!("not a commit point: {e}")))?;
        if v.format != FORMAT {
            return Err(corrupt(format!(
                "commit point format {}, this build reads {FORMAT}",
                v.format
            )));
        }
        Ok(v)
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A base file name no other writer picks: 128 random bits.
pub(crate) fn new_text_name() -> String {
    new_base_name().replace(".faiss", ".text")
}

pub(crate) fn new_base_name() -> String {
    let id = crate::commit::unique_id();
    format!(
        "{BASES_DIR}/{:016x}{:016x}.faiss",
        id,
        crate::commit::unique_id() ^ id.rotate_left(17)
    )
}
