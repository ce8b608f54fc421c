//! The optional local-disk tier under the memory cache. It owns files in one
//! directory and nothing else; moka decides what to keep (weighted by file
//! bytes) and its eviction listener deletes the file.
//!
//! Each entry is one file, `<object>/<list>.<generation>.ivl`, where
//! `<object>` hashes the URI, ETag and size of one version of an index, so a
//! new version never reads old bytes. Every write gets a new generation, and
//! the index remembers which file is current: removing an entry (evicted,
//! replaced, invalidated) deletes exactly its own file, never a newer one. A
//! file is one frame of `crate::framing` whose body is the list number (u32)
//! then the payload. Files are written to a temporary
//! name and renamed, and every read checks length and hash, so a torn or
//! corrupted entry is dropped and counted, never served.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::DiskCacheConfig;
use crate::framing::{Framing, HEADER_LEN, TRAILER_LEN};

const FRAMING: Framing = Framing::new(b"IVFKDC02", 1);
/// Bytes of lists waiting to be written in the background. Each write pins
/// its list's bytes until it is done, so the queue is bounded by bytes, not
/// by count: 32 writes at a time dropped most of a wide search's lists (a
/// search probing 704 lists left 49 on disk). Past this a write is skipped
/// and counted (`disk_writes_skipped`); the list is fetched again later.
const MAX_PENDING_WRITE_BYTES: u64 = 256 << 20;
/// The write queue's permits are of this many bytes (a semaphore counts in u32).
const WRITE_PERMIT_BYTES: u64 = 4096;
const WRITE_PERMITS: u32 = (MAX_PENDING_WRITE_BYTES / WRITE_PERMIT_BYTES) as u32;
const SUFFIX: &str = "ivl";

/// Identity of one list of one index version, stable across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct DiskKey {
    pub object: u64,
    pub list: u32,
}

/// One entry's file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DiskFile {
    pub len: u64,
    pub generation: u64,
}

/// Counters the scheduler exports.
#[derive(Debug, Default)]
pub(super) struct DiskCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub corrupt: AtomicU64,
    pub write_errors: AtomicU64,
    pub writes_skipped: AtomicU64,
}

pub(super) struct DiskCache {
    dir: PathBuf,
    /// Keys to their current file; the files themselves hold the bytes.
    index: moka::future::Cache<DiskKey, DiskFile>,
    /// Generation of the next write; starts from the clock so a restarted
    /// process never reuses a name a previous one left.
    next_generation: AtomicU64,
    /// Entries a previous process left are re-admitted on first use.
    readmitted: tokio::sync::OnceCell<()>,
    writes: Arc<tokio::sync::Semaphore>,
    pub counters: Arc<DiskCounters>,
}

impl DiskCache {
    /// Opens (creating if needed) the cache directory. The entries a previous
    /// process left are re-admitted on first use, so the tier survives a restart.
    pub fn open(config: &DiskCacheConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let dir = config.dir.clone();
        let counters = Arc::new(DiskCounters::default());
        let listener_dir = dir.clone();
        let listener_counters = counters.clone();
        let index = moka::future::Cache::builder()
            .max_capacity(config.capacity_bytes)
            .weigher(|_k: &DiskKey, f: &DiskFile| u32::try_from(f.len).unwrap_or(u32::MAX))
            // Plain LRU: TinyLFU's admission would reject fresh entries whose
            // file was just written, costing a write and a delete for nothing.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |k: Arc<DiskKey>, file: DiskFile, cause| {
                if cause.was_evicted() {
                    listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("ivflake_cache_evictions_total", "tier" => "disk").increment(1);
                }
                let _ = std::fs::remove_file(entry_path(&listener_dir, &k, file.generation));
            })
            .build();
        Ok(Self {
            dir,
            index,
            readmitted: tokio::sync::OnceCell::new(),
            next_generation: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
            ),
            writes: Arc::new(tokio::sync::Semaphore::new(WRITE_PERMITS as usize)),
            counters,
        })
    }

    async fn ready(&self) {
        self.readmitted
            .get_or_init(|| async {
                let dir = self.dir.clone();
                let found = tokio::task::spawn_blocking(move || scan(&dir)).await;
                match found {
                    Ok(Ok(entries)) => {
                        // Oldest first: a newer file of the same key replaces
                        // (and so deletes) an older one a crash left behind.
                        for (key, file) in entries {
                            self.index.insert(key, file).await;
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot scan the disk cache; starting empty"),
                    Err(e) => tracing::warn!(error = %e, "disk cache scan failed; starting empty"),
                }
            })
            .await;
    }

    /// The list's bytes if a valid entry is on disk. A damaged entry is
    /// removed and reported as a miss.
    pub async fn get(&self, key: DiskKey, expected_len: u64) -> Option<Bytes> {
        self.ready().await;
        let Some(file) = self.index.get(&key).await else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let path = entry_path(&self.dir, &key, file.generation);
        let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
        match read.ok().and_then(|r| r.ok()).map(|raw| decode(raw, key, expected_len)) {
            Some(Some(bytes)) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(bytes)
            }
            found => {
                if matches!(found, Some(None)) {
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        object = key.object,
                        list = key.list,
                        "dropping a damaged disk cache entry"
                    );
                }
                // The listener deletes the current entry's file.
                self.index.invalidate(&key).await;
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes an entry in the background; a failed write only costs a future miss.
    pub fn put(self: &Arc<Self>, key: DiskKey, bytes: Bytes) {
        let permits = (bytes.len() as u64)
            .div_ceil(WRITE_PERMIT_BYTES)
            .clamp(1, WRITE_PERMITS as u64) as u32;
        let Ok(permit) = self.writes.clone().try_acquire_many_owned(permits) else {
            self.counters.writes_skipped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ivflake_cache_writes_skipped_total", "tier" => "disk").increment(1);
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            this.ready().await;
            let dir = this.dir.clone();
            let generation = this.next_generation.fetch_add(1, Ordering::Relaxed);
            let written = tokio::task::spawn_blocking(move || write_entry(&dir, key, generation, &bytes)).await;
            match written {
                Ok(Ok(len)) => {
                    this.index.insert(key, DiskFile { len, generation }).await;
                    metrics::gauge!("ivflake_cache_resident_bytes", "tier" => "disk")
                        .set(this.index.weighted_size() as f64);
                }
                Ok(Err(e)) => {
                    this.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot write a disk cache entry");
                }
                Err(_) => {
                    this.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Waits until every background write started so far has finished, and
    /// the evictions they caused have removed their files.
    pub async fn settle(&self) {
        if let Ok(all) = self.writes.acquire_many(WRITE_PERMITS).await {
            drop(all);
        }
        self.index.run_pending_tasks().await;
    }

    /// Bytes on disk now (after pending evictions run).
    pub async fn resident_bytes(&self) -> u64 {
        self.ready().await;
        self.index.run_pending_tasks().await;
        self.index.weighted_size()
    }

    /// Lists and bytes of one index version on disk.
    pub fn residency(&self, object: u64) -> (u64, u64) {
        self.index
            .iter()
            .filter(|(k, _)| k.object == object)
            .fold((0, 0), |(n, b), (_, f)| (n + 1, b + f.len))
    }

    pub fn capacity(&self) -> u64 {
        self.index.policy().max_capacity().unwrap_or(0)
    }
}

/// Every complete entry under `dir`; temporary files of a crashed write are removed.
/// One unreadable entry is skipped, not a reason to forget the rest (their
/// bytes would then sit outside the budget).
fn scan(dir: &Path) -> std::io::Result<Vec<(DiskKey, DiskFile)>> {
    let mut found = Vec::new();
    for object_dir in std::fs::read_dir(dir)?.flatten() {
        let Some(object) = object_dir
            .file_name()
            .to_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(object_dir.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match parse_entry_name(name) {
                Some((list, generation)) => {
                    if let Ok(meta) = entry.metadata() {
                        let file = DiskFile {
                            len: meta.len(),
                            generation,
                        };
                        found.push((DiskKey { object, list }, file));
                    }
                }
                // Leftover temporary files of a crash mid-write.
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    found.sort_by_key(|(_, f)| f.generation);
    Ok(found)
}

/// `<list>.<generation hex>.ivl`
fn parse_entry_name(name: &str) -> Option<(u32, u64)> {
    let (list, generation) = name.strip_suffix(".ivl")?.split_once('.')?;
    Some((list.parse().ok()?, u64::from_str_radix(generation, 16).ok()?))
}

fn entry_path(dir: &Path, key: &DiskKey, generation: u64) -> PathBuf {
    dir.join(format!("{:016x}", key.object))
        .join(format!("{}.{generation:x}.{SUFFIX}", key.list))
}

fn write_entry(dir: &Path, key: DiskKey, generation: u64, payload: &[u8]) -> std::io::Result<u64> {
    let path = entry_path(dir, &key, generation);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    // Unique per write: the generation is.
    let tmp = parent.join(format!("{}.{generation:x}.tmp", key.list));
    let mut file = std::fs::File::create(&tmp)?;
    let list = key.list.to_le_bytes();
    let written = file
        .write_all(&FRAMING.header())
        .and_then(|_| file.write_all(&list))
        .and_then(|_| file.write_all(payload))
        .and_then(|_| file.write_all(&FRAMING.trailer(&[&list, payload])));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((HEADER_LEN + list.len() + payload.len() + TRAILER_LEN) as u64)
}

/// The payload of an entry for `key`, if the file is whole, undamaged and
/// holds exactly `expected_len` bytes of that list.
fn decode(raw: Vec<u8>, key: DiskKey, expected_len: u64) -> Option<Bytes> {
    let body = FRAMING.decode(&raw).ok()?;
    let list = u32::from_le_bytes(raw.get(body.start..body.start + 4)?.try_into().ok()?);
    let payload = body.start + 4..body.end;
    (list == key.list && payload.len() as u64 == expected_len).then(|| Bytes::from(raw).slice(payload))
}
