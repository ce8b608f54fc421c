//! The index registry: names → the version of each index being served.
//!
//! A reload opens the object's current version and swaps it in atomically.
//! Searches hold an `Arc` of the version they started on, so they finish on
//! it, and its memory (header, quantizer) is freed when the last one drops it.
//! Failures are [`RegistryError`]s; what they mean over HTTP is `routes`'s call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use ivflake::{IndexLocation, IvfIndex, MutableIndex, MutableOptions, OpenOptions};

use crate::config::IndexConfig;

/// What the registry refuses or fails to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Another index is served under this name; remove it first.
    #[error("an index named {name:?} is already served")]
    NameTaken { name: String },
    #[error("no index named {name:?}")]
    NotFound { name: String },
    /// The registry serves its limit of indexes; remove one first.
    #[error("the server serves its limit of {limit} indexes; remove one first")]
    Full { limit: usize },
    /// The URI or the object behind it could not be opened as an index.
    #[error("cannot open index {name:?} at {uri}")]
    OpenFailed {
        name: String,
        uri: String,
        source: ivflake::Error,
    },
    /// Reopening a served index failed; its previous version is still served.
    #[error("cannot reload index {name:?}")]
    ReloadFailed { name: String, source: ivflake::Error },
}

/// One opened version of an index.
#[derive(Debug)]
pub struct Loaded {
    /// The index file (a writable index's base when this version was loaded).
    pub index: IvfIndex,
    /// A writable index: searches and writes go through it, and it follows
    /// its own versions (compactions) without a reload.
    pub writable: Option<MutableIndex>,
    /// Counts the versions this name has served, from 1.
    pub generation: u64,
    /// The object's ETag, or its size when the store gives no ETag; a
    /// writable index's version number.
    pub version: String,
}

impl Loaded {
    fn new(index: IvfIndex, generation: u64) -> Self {
        let version = match index.e_tag() {
            Some(tag) => tag.trim_matches('"').to_string(),
            None => format!("size-{}", index.file_len()),
        };
        Self {
            index,
            writable: None,
            generation,
            version,
        }
    }

    fn writable(index: MutableIndex, generation: u64) -> Self {
        Self {
            index: index.base(),
            version: format!("v{}", index.version_position()),
            writable: Some(index),
            generation,
        }
    }

    /// The version searches read now: a writable index's moves with its
    /// compactions.
    pub fn version_now(&self) -> String {
        match &self.writable {
            Some(w) => format!("v{}", w.version_position()),
            None => self.version.clone(),
        }
    }

    /// The index file searches read now (a writable index's current base).
    pub fn base(&self) -> IvfIndex {
        match &self.writable {
            Some(w) => w.base(),
            None => self.index.clone(),
        }
    }
}

/// A served index: its configuration and current version.
#[derive(Debug)]
pub struct IndexEntry {
    pub name: String,
    pub config: IndexConfig,
    current: ArcSwap<Loaded>,
    generations: AtomicU64,
    /// One reload at a time per index, holding the outcome of the last one:
    /// callers that arrive while a reload runs wait, and all of them reuse
    /// the outcome of the one reload that starts next.
    reloading: tokio::sync::Mutex<Option<Result<ReloadOutcome, RegistryError>>>,
    /// Bumped when a reload starts and when it ends (under `reloading`), so
    /// it is odd while one runs.
    reload_epoch: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub changed: bool,
    pub previous: Arc<Loaded>,
    pub current: Arc<Loaded>,
}

impl IndexEntry {
    /// The version new searches use.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// Opens the object's current version and switches to it when it differs.
    /// Concurrent callers share one reload that started after they called.
    pub async fn reload(&self) -> Result<ReloadOutcome, RegistryError> {
        let arrived = self.reload_epoch.load(Ordering::Acquire);
        // The epoch at which the first reload started after our arrival ends:
        // two bumps on from an idle epoch, three from a running one.
        let wanted = ((arrived + 1) | 1) + 1;
        let mut last = self.reloading.lock().await;
        if self.reload_epoch.load(Ordering::Acquire) >= wanted {
            if let Some(outcome) = last.as_ref() {
                return outcome.clone();
            }
        }
        let outcome = self.reload_locked().await;
        *last = Some(outcome.clone());
        outcome
    }

    /// Reloads because a search on generation `stale` found the object changed.
    /// When another request already reloaded past it, that version is reused.
    pub async fn reload_after(&self, stale: u64) -> Result<Arc<Loaded>, RegistryError> {
        let mut last = self.reloading.lock().await;
        let current = self.current();
        if current.generation != stale {
            return Ok(current);
        }
        let outcome = self.reload_locked().await;
        *last = Some(outcome.clone());
        Ok(outcome?.current)
    }

    /// Runs one reload; the caller holds `reloading`.
    async fn reload_locked(&self) -> Result<ReloadOutcome, RegistryError> {
        self.reload_epoch.fetch_add(1, Ordering::AcqRel);
        let outcome = self.open_current().await;
        self.reload_epoch.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    async fn open_current(&self) -> Result<ReloadOutcome, RegistryError> {
        let previous = self.current();
        if let Some(writable) = &previous.writable {
            // A writable index reads its newest version and log itself.
            writable.refresh().await.map_err(|source| RegistryError::ReloadFailed {
                name: self.name.clone(),
                source,
            })?;
            return Ok(ReloadOutcome {
                changed: false,
                current: previous.clone(),
                previous,
            });
        }
        // One HEAD when the object is unchanged. Otherwise the reload saves
        // the probe counts first, so the new version resumes them from the
        // state directory.
        let reopened = previous
            .index
            .reload_if_changed()
            .await
            .map_err(|source| RegistryError::ReloadFailed {
                name: self.name.clone(),
                source,
            })?;
        let Some(index) = reopened else {
            return Ok(ReloadOutcome {
                changed: false,
                current: previous.clone(),
                previous,
            });
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let current = Arc::new(Loaded::new(index, generation));
        self.current.store(current.clone());
        tracing::info!(
            index = %self.name,
            from = %previous.version,
            to = %current.version,
            generation,
            "reloaded index"
        );
        Ok(ReloadOutcome {
            changed: true,
            previous,
            current,
        })
    }
}

/// How often a writable index checks whether its log is due for compaction.
const COMPACTION_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);
/// Unindexed entries past which a writable index compacts, unless its config says.
pub(crate) const DEFAULT_COMPACT_UNINDEXED_ENTRIES: u64 = 100_000;

/// Compacts a writable index when its log holds at least `threshold`
/// unindexed entries (0: never); the rule the server's background loop and
/// the compaction worker share.
pub(crate) async fn compact_if_due(
    index: &MutableIndex,
    threshold: u64,
) -> ivflake::Result<Option<ivflake::CompactReport>> {
    if threshold == 0 || index.unindexed().0 < threshold {
        return Ok(None);
    }
    index.compact(&ivflake::CompactOptions::default()).await
}

/// Compacts a writable index whenever its log holds more unindexed entries
/// than its threshold; stops once the index is no longer served. A failed
/// compaction (another replica committed first, the store failed) is
/// logged and tried again at the next check.
async fn compact_in_background(entry: std::sync::Weak<IndexEntry>) {
    let mut every = tokio::time::interval(COMPACTION_CHECK_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(entry) = entry.upgrade() else { return };
        let threshold = entry
            .config
            .compact_unindexed_entries
            .unwrap_or(DEFAULT_COMPACT_UNINDEXED_ENTRIES);
        let Some(writable) = entry.current().writable.clone() else {
            return;
        };
        match compact_if_due(&writable, threshold).await {
            Ok(Some(report)) => tracing::info!(index = %entry.name, version = report.version,
                entries = report.entries, ms = report.ms, "compacted"),
            Ok(None) => {}
            Err(error) => tracing::warn!(index = %entry.name, %error, "background compaction failed"),
        }
    }
}

/// Every index the server serves, and how to open more.
#[derive(Debug)]
pub struct Registry {
    indexes: RwLock<BTreeMap<String, Arc<IndexEntry>>>,
    open: OpenOptions,
    /// The most indexes served at once.
    max_indexes: usize,
    /// Writable indexes compact in the background (`[compaction] mode = "server"`).
    compact_in_server: bool,
}

impl Registry {
    /// An empty registry of at most `max_indexes`, whose indexes share
    /// `open`'s scheduler and compute pool.
    pub fn new(open: OpenOptions, max_indexes: usize, compact_in_server: bool) -> Self {
        Self {
            indexes: RwLock::new(BTreeMap::new()),
            open,
            max_indexes,
            compact_in_server,
        }
    }

    /// Opens `config.uri` (the header only) and serves it as `name`. A taken
    /// name is refused before the object is read.
    pub async fn add(&self, name: &str, config: IndexConfig) -> Result<Arc<IndexEntry>, RegistryError> {
        self.ensure_free(name)?;
        let location = self.locate(name, &config)?;
        let entry = self.open_at(name, location, config).await?;
        self.insert(entry.clone())?;
        Ok(entry)
    }

    /// [`Registry::add`] for an index in a store the caller built.
    pub async fn add_at(
        &self,
        name: &str,
        location: IndexLocation,
        config: IndexConfig,
    ) -> Result<Arc<IndexEntry>, RegistryError> {
        self.ensure_free(name)?;
        let entry = self.open_at(name, location, config).await?;
        self.insert(entry.clone())?;
        Ok(entry)
    }

    /// Opens `config.uri` (the header only) without registering it.
    pub async fn open(&self, name: &str, config: IndexConfig) -> Result<Arc<IndexEntry>, RegistryError> {
        let location = self.locate(name, &config)?;
        self.open_at(name, location, config).await
    }

    fn locate(&self, name: &str, config: &IndexConfig) -> Result<IndexLocation, RegistryError> {
        let located = if config.writable {
            IndexLocation::parse_prefix(&config.uri, self.open.scheduler.config())
        } else {
            IndexLocation::parse(&config.uri, self.open.scheduler.config())
        };
        located.map_err(|source| RegistryError::OpenFailed {
            name: name.to_string(),
            uri: config.uri.clone(),
            source,
        })
    }

    /// Opens an index in a store the caller built (wrapped stores, embedders),
    /// without registering it.
    pub async fn open_at(
        &self,
        name: &str,
        location: IndexLocation,
        config: IndexConfig,
    ) -> Result<Arc<IndexEntry>, RegistryError> {
        let mut options = self.open.clone();
        if let Some(max_bytes) = config.residual_table_max_bytes {
            options.residual_table = ivflake::ResidualTable::Auto { max_bytes };
        }
        if let Some(bytes) = config.id_map_memory_bytes {
            options.id_map_memory_bytes = bytes;
        }
        options.preload = config.preload_options();
        options.metrics_name = Some(name.to_string());
        if let Some(mode) = config.manifest {
            options.manifest = mode;
        }
        let opened = if config.writable {
            let options = MutableOptions {
                open: options,
                ..MutableOptions::default()
            };
            MutableIndex::open_at(location, options)
                .await
                .map(|w| Loaded::writable(w, 1))
        } else {
            IvfIndex::open_at(location, options).await.map(|i| Loaded::new(i, 1))
        };
        let loaded = match opened {
            Ok(loaded) => loaded,
            Err(source) => {
                return Err(RegistryError::OpenFailed {
                    name: name.to_string(),
                    uri: config.uri,
                    source,
                })
            }
        };
        let index = &loaded.index;
        tracing::info!(
            index = name,
            uri = %config.uri,
            ntotal = index.info().ntotal,
            nlist = index.info().nlist,
            "opened index"
        );
        let entry = Arc::new(IndexEntry {
            name: name.to_string(),
            config,
            current: ArcSwap::from_pointee(loaded),
            generations: AtomicU64::new(1),
            reloading: tokio::sync::Mutex::new(None),
            reload_epoch: AtomicU64::new(0),
        });
        if entry.config.writable && self.compact_in_server {
            tokio::spawn(compact_in_background(Arc::downgrade(&entry)));
        }
        Ok(entry)
    }

    /// The fetch scheduler (I/O limits and caches) every index here shares.
    pub fn scheduler(&self) -> &Arc<ivflake::FetchScheduler> {
        &self.open.scheduler
    }

    /// Registers an opened index; refuses a name already taken, or one
    /// index past the limit.
    pub fn insert(&self, entry: Arc<IndexEntry>) -> Result<(), RegistryError> {
        let mut map = self.write();
        self.refuse(&map, &entry.name)?;
        map.insert(entry.name.clone(), entry);
        Ok(())
    }

    /// Refuses a taken name or a full registry early, so no object is read
    /// for nothing; [`Registry::insert`] checks again under the lock, where
    /// it counts.
    fn ensure_free(&self, name: &str) -> Result<(), RegistryError> {
        self.refuse(&self.read(), name)
    }

    /// The one check before a name is registered, for whichever lock the caller holds.
    fn refuse(&self, map: &BTreeMap<String, Arc<IndexEntry>>, name: &str) -> Result<(), RegistryError> {
        if map.contains_key(name) {
            return Err(RegistryError::NameTaken { name: name.to_string() });
        }
        if map.len() >= self.max_indexes {
            return Err(RegistryError::Full {
                limit: self.max_indexes,
            });
        }
        Ok(())
    }

    /// Unregisters `name`. Searches already running on it finish.
    pub fn remove(&self, name: &str) -> Option<Arc<IndexEntry>> {
        self.write().remove(name)
    }

    pub fn get(&self, name: &str) -> Result<Arc<IndexEntry>, RegistryError> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound { name: name.to_string() })
    }

    pub fn all(&self) -> Vec<Arc<IndexEntry>> {
        self.read().values().cloned().collect()
    }

    /// How many indexes are served.
    pub fn count(&self) -> usize {
        self.read().len()
    }

    // The maps are only touched in short, non-panicking sections, so a
    // poisoned lock still holds a consistent map.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<IndexEntry>>> {
        self.indexes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<IndexEntry>>> {
        self.indexes.write().unwrap_or_else(|p| p.into_inner())
    }
}
