//! One version of an index object, pinned at open: where it is, its size and
//! ETag, the identities cache keys are made of, and the optional verifier of
//! its lists. It sits below the scheduler, the index and the manifest, and
//! does no I/O of its own.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use object_store::GetOptions;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::Result;
use crate::location::IndexLocation;

/// A version of an index object, pinned at open: its size and ETag.
#[derive(Debug)]
pub struct IndexObject {
    pub location: IndexLocation,
    pub size: u64,
    pub e_tag: Option<String>,
    /// Identity of this version for memory-cache keys: URI, ETag, size and store instance.
    pub(crate) id: u64,
    /// Identity of this version on disk: URI, ETag and size, stable across restarts.
    pub(crate) disk_id: u64,
    /// Per-list checksums from the manifest sidecar, when there is one.
    verifier: Option<Arc<dyn ListVerifier>>,
    /// A region of small fixed-size entries (`region`), not lists.
    entries: bool,
}

/// Checks a fetched list before anything caches it.
pub trait ListVerifier: Send + Sync + std::fmt::Debug {
    /// `Err` (for instance `Error::Checksum`) when `bytes` are not list `list` of the file at `uri`.
    fn verify(&self, list: usize, bytes: &[u8], uri: &str) -> Result<()>;
}

impl IndexObject {
    pub fn new(location: IndexLocation, size: u64, e_tag: Option<String>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        location.uri.hash(&mut h);
        e_tag.hash(&mut h);
        size.hash(&mut h);
        (Arc::as_ptr(&location.store) as *const () as usize).hash(&mut h);
        Self {
            id: h.finish(),
            disk_id: object_key(&location.uri, e_tag.as_deref(), size),
            location,
            size,
            e_tag,
            verifier: None,
            entries: false,
        }
    }

    /// Every list fetched for this object is verified first. Verified and
    /// unverified handles on one version never share cache entries, so a
    /// list that was never checked cannot be served as checked.
    pub fn with_verifier(mut self, verifier: Arc<dyn ListVerifier>) -> Self {
        self.verifier = Some(verifier);
        self.mix_into_ids(b"verified");
        self
    }

    /// For stores that give no ETag: the modification time joins the cache
    /// keys, so a rewrite of the same size is still another version.
    pub fn with_last_modified(mut self, nanos: i64) -> Self {
        if self.e_tag.is_none() {
            self.mix_into_ids(&nanos.to_le_bytes());
        }
        self
    }

    /// The same version under cache keys of its own and without the list
    /// verifier: for reads of this object that are not lists (a refine
    /// index's codes, an id map), cached beside its lists, never mixed up.
    pub(crate) fn region(&self, salt: &str) -> Self {
        let mut out = Self {
            location: self.location.clone(),
            size: self.size,
            e_tag: self.e_tag.clone(),
            id: self.id,
            disk_id: self.disk_id,
            verifier: None,
            entries: true,
        };
        out.mix_into_ids(salt.as_bytes());
        out
    }

    fn mix_into_ids(&mut self, salt: &[u8]) {
        let mix = |id: u64| {
            let mut buf = id.to_le_bytes().to_vec();
            buf.extend_from_slice(salt);
            xxh3_64(&buf)
        };
        self.id = mix(self.id);
        self.disk_id = mix(self.disk_id);
    }

    /// Whether this handle reads entries (`region`), whose pages are small:
    /// a wave of them is bound by round trips, not bandwidth.
    pub(crate) fn holds_entries(&self) -> bool {
        self.entries
    }

    pub fn is_verified(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    /// Checks a fetched list against the sidecar, when there is one.
    pub(crate) fn verify(&self, list: usize, bytes: &[u8]) -> Result<()> {
        match &self.verifier {
            Some(verifier) => verifier.verify(list, bytes, self.uri()),
            None => Ok(()),
        }
    }

    /// A range GET pinned to this version.
    pub(crate) fn get_options(&self, range: Range<u64>) -> GetOptions {
        GetOptions::new()
            .with_range(Some(range))
            .with_if_match(self.e_tag.clone())
    }
}

/// Stable across processes (unlike the std hasher): names an index version's directory.
fn object_key(uri: &str, e_tag: Option<&str>, size: u64) -> u64 {
    let mut buf = Vec::with_capacity(uri.len() + 64);
    buf.extend_from_slice(uri.as_bytes());
    buf.push(0);
    buf.extend_from_slice(e_tag.unwrap_or("").as_bytes());
    buf.push(0);
    buf.extend_from_slice(&size.to_le_bytes());
    xxh3_64(&buf)
}
