//! Committing to object storage without a lock server: each commit is an
//! immutable object at the next free position of a sequence
//! (`<prefix>/<position, 20 digits><suffix>`), created with
//! `PutMode::Create` (If-None-Match: * on S3, native on GCS, Azure and local
//! files). Two writers racing for one position never overwrite each other:
//! the store refuses the second create, and its writer retries at the next
//! position. A store that ignores conditional creates would lose one of the
//! two silently, so it is refused for writing ([`Sequence::check_store`]).
//! The primitive the write log and commit points of mutable indexes are
//! built on; it owns no format of what it stores.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

/// Attempts at the next free position before an append gives up: each
/// failure means another writer committed first, so this many in a row is a
/// store answering "exists" for everything, not contention.
const MAX_ATTEMPTS: usize = 64;

/// One sequence of immutable objects under a prefix of a store.
#[derive(Debug, Clone)]
pub struct Sequence {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    suffix: String,
    /// For messages: where the sequence lives, as the user named it.
    uri: String,
}

impl Sequence {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, suffix: &str, uri: &str) -> Self {
        Self {
            store,
            prefix,
            suffix: suffix.to_string(),
            uri: uri.to_string(),
        }
    }

    pub(crate) fn path(&self, position: u64) -> Path {
        self.prefix.clone().join(format!("{position:020}{}", self.suffix))
    }

    /// Whether the store honours conditional creates: a probe object is
    /// created twice under the prefix and the second create must be refused.
    /// `Error::Unsupported` (the store would let writers overwrite each
    /// other) otherwise. The probe is deleted after.
    pub async fn check_store(&self) -> Result<()> {
        let probe = self
            .prefix
            .clone()
            .join(format!("conditional-create-probe-{:016x}", unique_id()));
        let create = PutOptions::from(PutMode::Create);
        let store_error = |e| Error::from_store(&self.uri, None, e);
        self.store
            .put_opts(&probe, PutPayload::from_static(b"1"), create.clone())
            .await
            .map_err(store_error)?;
        let second = self.store.put_opts(&probe, PutPayload::from_static(b"2"), create).await;
        // Best effort: a probe left behind is a few bytes, never read.
        let _ = self.store.delete(&probe).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
            Ok(_) => Err(Error::Unsupported {
                uri: self.uri.clone(),
                reason: "the store ignores conditional creates (If-None-Match): concurrent writers \
                         could overwrite each other's commits, so it is refused for writing"
                    .into(),
            }),
        }
    }

    /// The positions committed so far, in order.
    pub async fn positions(&self) -> Result<Vec<u64>> {
        self.positions_from(0).await
    }

    /// The positions at or after `start`, in order: one LIST from there on,
    /// so a reader that caught up pays for what is new only.
    pub async fn positions_from(&self, start: u64) -> Result<Vec<u64>> {
        let stream = match start.checked_sub(1) {
            Some(before) => self.store.list_with_offset(Some(&self.prefix), &self.path(before)),
            None => self.store.list(Some(&self.prefix)),
        };
        let listed: Vec<_> = stream
            .try_collect()
            .await
            .map_err(|e| Error::from_store(&self.uri, None, e))?;
        let mut positions: Vec<u64> = listed
            .iter()
            .filter_map(|meta| self.position_of(meta.location.filename()?))
            .filter(|&p| p >= start)
            .collect();
        positions.sort_unstable();
        Ok(positions)
    }

    /// The position an object name holds, when it is one of this sequence's.
    pub(crate) fn position_of(&self, name: &str) -> Option<u64> {
        let digits = name.strip_suffix(self.suffix.as_str())?;
        (digits.len() == 20).then(|| digits.parse().ok()).flatten()
    }

    /// Creates `payload` at exactly `position`: `Ok(false)` when another
    /// writer holds it (the caller reads theirs and moves on), `Ok(true)`
    /// once the store acknowledged the create.
    pub async fn create_at(&self, position: u64, payload: Bytes) -> Result<bool> {
        let put = self
            .store
            .put_opts(
                &self.path(position),
                PutPayload::from(payload),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::from_store(&self.uri, None, e)),
        }
    }

    /// Deletes the object at `position` (garbage collection of what no
    /// retained version names).
    pub async fn delete(&self, position: u64) -> Result<()> {
        match self.store.delete(&self.path(position)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(&self.uri, None, e)),
        }
    }

    /// Commits `payload` at the next free position and returns it, once
    /// the store has acknowledged the create: the commit is durable then.
    /// Losing a race to another writer moves on to the next position.
    pub async fn append(&self, payload: Bytes) -> Result<u64> {
        let mut position = self.positions().await?.last().map_or(0, |p| p + 1);
        for _ in 0..MAX_ATTEMPTS {
            let put = self
                .store
                .put_opts(
                    &self.path(position),
                    PutPayload::from(payload.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => return Ok(position),
                Err(object_store::Error::AlreadyExists { .. }) => position += 1,
                Err(e) => return Err(Error::from_store(&self.uri, None, e)),
            }
        }
        Err(Error::Unsupported {
            uri: self.uri.clone(),
            reason: format!(
                "{MAX_ATTEMPTS} positions in a row were taken while committing: the store answers \
                 every conditional create as a conflict"
            ),
        })
    }

    /// The object committed at `position`.
    pub async fn read(&self, position: u64) -> Result<Bytes> {
        let store_error = |e| Error::from_store(&self.uri, None, e);
        self.store
            .get(&self.path(position))
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)
    }
}

/// A name no other writer picks: the time, the process, a counter and a
/// stack address mixed (probe objects, base files).
pub(crate) fn unique_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let process = u64::from(std::process::id());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let local = 0u8;
    let address = &local as *const u8 as u64;
    xxhash_rust::xxh3::xxh3_64(&[nanos, process, count, address].map(u64::to_le_bytes).concat())
}
