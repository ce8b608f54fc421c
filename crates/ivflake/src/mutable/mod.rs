//! `MutableIndex`: an index that takes writes, kept as a prefix of a store
//! (`version.rs` has the layout): a standard Faiss base file, the write log
//! since it, and commit points naming both. Searches read the base as any
//! index is read plus the log's entries as further runs of each list (the one
//! pipeline, `index/plan.rs`); writes go through group commit
//! (`writer.rs`); `compact.rs` folds the log into a new base and collects
//! old files. Its parts: `record` (a log object's format), `delta` (the
//! log as searches read it), `version`, `writer`, `compact` (with
//! `fold_attrs`, the new base's attributes, and `retrain`), `kept` (the
//! kept-rows segments), `get` (reading them and the log by id) and `list`
//! (their ids in order), `gate` (the crash tests' pause points).

mod compact;
mod delta;
mod delta_text;
mod fold_attrs;
mod gate;
mod get;
mod kept;
mod list;
mod record;
mod retrain;
mod text;
mod version;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::{StreamExt, TryStreamExt};
use ivflake_faiss::Metric;
use object_store::path::Path;

pub use compact::{CompactOptions, CompactReport, GcReport};
use delta::DeltaBuilder;
pub(crate) use delta::DeltaSnapshot;
pub use get::MAX_GET_IDS;
pub use kept::KeptRow;
pub use list::{ListedIds, MAX_LIST_IDS};
use record::Record;
pub use text::{HybridHit, HybridQuery, HybridResults};
pub use version::Version;
use version::{BASES_DIR, LOG_DIR, LOG_SUFFIX, VERSIONS_DIR, VERSION_SUFFIX};

use crate::commit::Sequence;
use crate::error::{Error, Result};
use crate::index::{IvfIndex, OpenOptions, SearchParams, SearchResults};
use crate::location::IndexLocation;
use crate::stats::StoreCost;

/// How fresh the writes of other processes a search sees are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Every search first reads the log's head: it sees every write
    /// acknowledged anywhere before it started.
    Strong,
    /// The log's head is read when the last read is older than this.
    Bounded(Duration),
}

/// How a mutable index is opened and written.
#[derive(Debug, Clone)]
pub struct MutableOptions {
    pub open: OpenOptions,
    pub staleness: Staleness,
    /// Writes arriving within this window of the first share one commit;
    /// writes arriving while a commit is in flight always share the next.
    pub group_commit_window: Duration,
    /// Most vectors one upsert call may carry.
    pub max_batch: usize,
    /// For a new index: whether writes keep their raw vectors (read by
    /// `get`, and what a retrain trains on). Ids and attributes are kept
    /// either way.
    pub keep_vectors: bool,
    /// For a new index: its text fields (full-text search, `text/`).
    pub text_fields: Vec<crate::text::TextField>,
}

impl Default for MutableOptions {
    fn default() -> Self {
        Self {
            open: OpenOptions::default(),
            staleness: Staleness::Bounded(Duration::from_secs(1)),
            group_commit_window: Duration::ZERO,
            max_batch: 100_000,
            keep_vectors: true,
            text_fields: Vec::new(),
        }
    }
}

/// The version a search reads: a base and the writes since it.
struct Current {
    position: u64,
    version: Version,
    base: IvfIndex,
    delta: Arc<DeltaSnapshot>,
}

/// What applying the log needs, behind one lock: whoever holds it may
/// append to the log or move to a newer version.
struct State {
    position: u64,
    version: Version,
    base: IvfIndex,
    builder: DeltaBuilder,
}

struct Shared {
    root: IndexLocation,
    options: MutableOptions,
    versions: Sequence,
    log: Sequence,
    current: ArcSwap<Current>,
    state: tokio::sync::Mutex<State>,
    last_refresh: std::sync::Mutex<Instant>,
    writer: tokio::sync::OnceCell<writer::GroupCommit>,
    /// Kept-rows segments opened so far, by name (immutable objects).
    segments: std::sync::Mutex<std::collections::HashMap<String, Arc<kept::Segment>>>,
    /// Text bundles opened so far, by name (immutable objects; single-flight opens).
    text_bundles: moka::future::Cache<String, Arc<crate::text::TextBundle>>,
    /// The writes' text index built last: the next snapshot's starts from its parts.
    last_delta_text: std::sync::Mutex<Option<Arc<delta_text::DeltaText>>>,
}

/// A writable index under a prefix. Cheap to clone.
#[derive(Clone)]
pub struct MutableIndex {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MutableIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableIndex")
            .field("uri", &self.shared.root.uri)
            .finish()
    }
}

impl MutableIndex {
    /// Creates an empty index under `uri`: it searches exactly until a
    /// compaction has enough vectors to train `factory`'s quantizer and codec.
    pub async fn create(uri: &str, d: usize, metric: Metric, factory: &str, options: MutableOptions) -> Result<Self> {
        let root = new_prefix(uri, &options)?;
        Self::create_at(root, d, metric, factory, options).await
    }

    pub async fn create_at(
        root: IndexLocation,
        d: usize,
        metric: Metric,
        factory: &str,
        options: MutableOptions,
    ) -> Result<Self> {
        if d == 0 || d > 65_536 {
            return Err(Error::invalid("d", format!("must be between 1 and 65536, got {d}")));
        }
        check_store(&root).await?;
        // The factory must build a served index (checked before anything is written).
        let target = ivflake_faiss::Index::factory(d, factory, metric)?;
        compact::check_writable(&root.uri, target.info())?;
        let mut bootstrap = ivflake_faiss::Index::factory(d, "IVF1,Flat", metric)?;
        // One centroid at the origin: every vector in list 0, scanned exactly.
        // (39 points: Faiss warns below 39 per centroid.)
        bootstrap.train(&vec![0.0; d * 39])?;
        let bytes = bootstrap.to_bytes()?;
        let name = version::new_base_name();
        put_new(&root, &name, bytes.into()).await?;
        let first = Version::new(d, metric.name(), factory, name, false, 0);
        Self::commit_first(root, first, options).await
    }

    /// Makes the Faiss IVF file at `base_uri` the base of a new mutable
    /// index under `uri`, in place: nothing is copied, and the file is
    /// never deleted by `gc` (it is not under the prefix).
    pub async fn create_from(uri: &str, base_uri: &str, options: MutableOptions) -> Result<Self> {
        let root = new_prefix(uri, &options)?;
        Self::create_from_at(root, base_uri, options).await
    }

    /// [`MutableIndex::create_from`] in a store the caller built; `base` is
    /// a URI, or a name under the prefix (`bases/…`) already in place.
    pub async fn create_from_at(root: IndexLocation, base_uri: &str, options: MutableOptions) -> Result<Self> {
        check_store(&root).await?;
        let base = IvfIndex::open_at(base_location(&root, base_uri, &options)?, options.open.clone()).await?;
        compact::check_writable(base_uri, base.info())?;
        let info = base.info();
        let first = Version::new(info.d, info.metric.name(), "", base_uri.to_string(), true, 0);
        Self::commit_first(root, first, options).await
    }

    async fn commit_first(root: IndexLocation, mut first: Version, options: MutableOptions) -> Result<Self> {
        first.keep_vectors = options.keep_vectors;
        crate::text::TextField::check_all(&options.text_fields)?;
        // A Faiss file's entries need a text bundle, built from the opened
        // base in a version of its own; an empty index's fields need none yet.
        let from_file = first.trained;
        let text_fields = options.text_fields.clone();
        if !from_file {
            first.text_fields = text_fields.clone();
        }
        let versions = Sequence::new(
            root.store.clone(),
            child(&root, VERSIONS_DIR),
            VERSION_SUFFIX,
            &root.uri,
        );
        if !versions.create_at(0, first.encode()).await? {
            return Err(Error::invalid(
                "uri",
                format!("{} already holds a mutable index", root.uri),
            ));
        }
        let index = Self::open_at(root, options).await?;
        if from_file && !text_fields.is_empty() {
            index.set_text_fields(text_fields).await?;
        }
        Ok(index)
    }

    /// Opens the mutable index under `uri` at its newest version.
    pub async fn open(uri: &str, options: MutableOptions) -> Result<Self> {
        let root = IndexLocation::parse_prefix(uri, options.open.scheduler.config())?;
        Self::open_at(root, options).await
    }

    pub async fn open_at(root: IndexLocation, options: MutableOptions) -> Result<Self> {
        let versions = Sequence::new(
            root.store.clone(),
            child(&root, VERSIONS_DIR),
            VERSION_SUFFIX,
            &root.uri,
        );
        let log = Sequence::new(root.store.clone(), child(&root, LOG_DIR), LOG_SUFFIX, &root.uri);
        let position = *versions.positions().await?.last().ok_or_else(|| Error::NotFound {
            uri: root.uri.clone(),
            source: Arc::new(object_store::Error::NotFound {
                path: format!("{}/{VERSIONS_DIR}", root.path),
                source: "no commit point: not a mutable index (create one first)".into(),
            }),
        })?;
        let (state, text_tail) = load_version(&root, &versions, &options, position).await?;
        let current = Current {
            position,
            version: state.version.clone(),
            base: state.base.clone(),
            delta: state.builder.snapshot(),
        };
        let index = Self {
            shared: Arc::new(Shared {
                root,
                options,
                versions,
                log,
                current: ArcSwap::from_pointee(current),
                state: tokio::sync::Mutex::new(state),
                last_refresh: std::sync::Mutex::new(Instant::now()),
                writer: tokio::sync::OnceCell::new(),
                segments: Default::default(),
                text_bundles: moka::future::Cache::new(4),
                last_delta_text: Default::default(),
            }),
        };
        index.adopt_bundle(&index.version(), text_tail).await;
        index.refresh().await?;
        Ok(index)
    }

    pub fn uri(&self) -> &str {
        &self.shared.root.uri
    }

    /// The current version's commit point.
    pub fn version(&self) -> Version {
        self.shared.current.load().version.clone()
    }

    /// The current version's position.
    pub fn version_position(&self) -> u64 {
        self.shared.current.load().position
    }

    /// The URI of the current base file.
    pub fn base_uri(&self) -> String {
        self.shared.current.load().base.uri().to_string()
    }

    /// The current base, opened as any index is.
    pub fn base(&self) -> IvfIndex {
        self.shared.current.load().base.clone()
    }

    /// Entries written since the base (live, not deleted) and ids changed.
    pub fn unindexed(&self) -> (u64, usize) {
        let current = self.shared.current.load();
        (current.delta.entries, current.delta.tombstones.len())
    }

    /// The attribute columns: the base's, then those writes added.
    pub fn attribute_schema(&self) -> arrow_schema::SchemaRef {
        self.shared.current.load().delta.schema.clone()
    }

    /// The last log position applied.
    pub fn log_position(&self) -> Option<u64> {
        self.shared.current.load().delta.position
    }

    pub async fn search(&self, queries: &[f32], k: usize, nprobe: usize) -> Result<SearchResults> {
        self.search_with(queries, &SearchParams::new(k, nprobe)).await
    }

    /// Searches the base and every write this process acknowledged, and
    /// other processes' writes within the staleness bound. `nprobe` is
    /// capped at the base's list count (an untrained index has one).
    ///
    /// Under [`Staleness::Strong`] the log's head is read while the search
    /// runs on what this process knows: when nothing is new (the common
    /// case) that search is the answer, and the check cost no round trip;
    /// when something is, the search runs again on it, its lists now warm.
    pub async fn search_with(&self, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        match self.shared.options.staleness {
            Staleness::Strong => {
                let before = self.shared.current.load_full();
                let (refreshed, first) = tokio::join!(
                    self.refresh_older_than(Duration::ZERO),
                    self.search_on(&before, queries, params)
                );
                let refresh = refreshed?;
                let after = self.shared.current.load_full();
                if after.position == before.position && Arc::ptr_eq(&after.delta, &before.delta) {
                    return first.map(|r| self.charge(r, refresh));
                }
                let mut again = self.search_on(&after, queries, params).await?;
                // The first search's requests were sent too (and counted
                // in the metrics by that search).
                if let Ok(first) = first {
                    let prices = self.shared.options.open.scheduler.config().prices;
                    again.stats.cost.add(&first.stats.cost, &prices);
                }
                Ok(self.charge(again, refresh))
            }
            Staleness::Bounded(bound) => {
                let mut refresh = None;
                if self.since_refresh() >= bound {
                    refresh = self.refresh_older_than(bound).await?;
                }
                let results = self
                    .search_on(&self.shared.current.load_full(), queries, params)
                    .await?;
                Ok(self.charge(results, refresh))
            }
        }
    }

    /// Adds to a search's cost, and to the metrics, the requests of the
    /// refresh it ran (the searches that found the log read recently
    /// enough ran none).
    fn charge(&self, mut results: SearchResults, extra: Option<StoreCost>) -> SearchResults {
        if let Some(extra) = extra {
            let prices = self.shared.options.open.scheduler.config().prices;
            results.stats.cost.add(&extra, &prices);
            let mut priced = extra;
            priced.usd = prices.price(priced.get_requests, priced.list_requests, priced.bytes);
            priced.record_metrics(&self.shared.current.load().base.metrics_name());
        }
        results
    }

    async fn search_on(&self, current: &Current, queries: &[f32], params: &SearchParams) -> Result<SearchResults> {
        let mut params = params.clone();
        params.nprobe = params.nprobe.min(current.base.info().nlist);
        let mut results = current
            .base
            .search_delta(queries, &params, Some(current.delta.clone()))
            .await?;
        results.stats.version = Some(current.position);
        results.stats.log_position = current.delta.position;
        results.stats.unindexed_entries = current.delta.entries;
        Ok(results)
    }

    fn since_refresh(&self) -> Duration {
        self.shared.last_refresh.lock().map_or(Duration::MAX, |t| t.elapsed())
    }

    /// Reads what other processes committed since this one last looked:
    /// a newer version (a compaction), and the log past the last position
    /// applied. One LIST each, in parallel, when nothing is new.
    pub async fn refresh(&self) -> Result<()> {
        self.refresh_older_than(Duration::ZERO).await.map(drop)
    }

    /// [`MutableIndex::refresh`] unless another caller refreshed within
    /// `bound` while this one waited for the state: searches that find the
    /// bound passed at once refresh once, not once each. What the refresh
    /// cost, when this caller ran it.
    async fn refresh_older_than(&self, bound: Duration) -> Result<Option<StoreCost>> {
        let mut state = self.shared.state.lock().await;
        if !bound.is_zero() && self.since_refresh() < bound {
            return Ok(None);
        }
        self.refresh_locked(&mut state).await.map(Some)
    }

    /// The refresh, by the holder of the state: its requests counted (a
    /// LIST that pages past 1,000 names counts once).
    async fn refresh_locked(&self, state: &mut State) -> Result<StoreCost> {
        let started = Instant::now();
        let mut cost = StoreCost {
            list_requests: 2,
            ..StoreCost::default()
        };
        let (newer, log) = tokio::join!(
            self.shared.versions.positions_from(state.position + 1),
            self.shared.log.positions_from(state.builder.next_position())
        );
        if let Some(&latest) = newer?.last() {
            let (loaded, text_tail) =
                load_version(&self.shared.root, &self.shared.versions, &self.shared.options, latest).await?;
            *state = loaded;
            // The commit point's GET, the new base's open (its attributes'
            // footer too) and its text tail.
            let open = state.base.open_stats();
            cost.get_requests += 1 + open.gets;
            cost.bytes += open.bytes;
            if let Some(attributes) = state.base.attributes().await? {
                cost.get_requests += attributes.open_cost().get_requests;
                cost.bytes += attributes.open_cost().bytes;
            }
            if let Some(tail) = &text_tail {
                cost.get_requests += 1;
                cost.bytes += tail.len() as u64;
            }
            self.adopt_bundle(&state.version, text_tail).await;
            cost.list_requests += 1;
            let log = self.shared.log.positions_from(state.builder.next_position()).await?;
            self.catch_up(state, &log, &mut cost).await?;
        } else {
            self.catch_up(state, &log?, &mut cost).await?;
        }
        self.publish(state);
        if let Ok(mut last) = self.shared.last_refresh.lock() {
            *last = started;
        }
        Ok(cost)
    }

    /// Applies the log records at `positions` that follow the state's,
    /// in order, fetched a few at a time; stops at a gap.
    async fn catch_up(&self, state: &mut State, positions: &[u64], cost: &mut StoreCost) -> Result<()> {
        let next = state.builder.next_position();
        let contiguous: Vec<u64> = positions
            .iter()
            .copied()
            .skip_while(|&p| p < next)
            .enumerate()
            .take_while(|&(i, p)| p == next + i as u64)
            .map(|(_, p)| p)
            .collect();
        let shape = (state.base.info().d, code_size(state.base.info()));
        let mut records =
            futures::stream::iter(contiguous.into_iter().map(|p| self.read_record_sized(shape, p))).buffered(8);
        while let Some(record) = records.next().await {
            let (record, bytes) = record?;
            cost.get_requests += 1;
            cost.bytes += bytes;
            self.apply(state, record).await?;
        }
        Ok(())
    }

    /// The record at `position`, for an index of `(d, code size)`.
    async fn read_record(&self, shape: (usize, usize), position: u64) -> Result<Record> {
        Ok(self.read_record_sized(shape, position).await?.0)
    }

    /// [`Self::read_record`] and the bytes it read.
    async fn read_record_sized(&self, (d, code_size): (usize, usize), position: u64) -> Result<(Record, u64)> {
        let raw = self.shared.log.read(position).await?;
        let record = Record::decode(&raw, d, code_size).map_err(|reason| Error::Corrupt {
            uri: format!("{}/{LOG_DIR}/{position:020}{LOG_SUFFIX}", self.shared.root.uri),
            reason,
        })?;
        Ok((record, raw.len() as u64))
    }

    /// Applies one record at the state's next position, re-encoding its
    /// vectors first when another codec encoded them (a retrain since).
    async fn apply(&self, state: &mut State, mut record: Record) -> Result<()> {
        if record.codec != state.version.codec && !record.ids.is_empty() {
            let encoded = encode(&self.shared.options, &state.base, record.vectors.clone()).await?;
            record.lists = encoded.lists;
            record.codes = encoded.codes;
            record.codec = state.version.codec.clone();
        }
        state.builder.apply(&record).map_err(|reason| Error::Corrupt {
            uri: format!("{}/{LOG_DIR}", self.shared.root.uri),
            reason,
        })
    }

    fn publish(&self, state: &State) {
        self.shared.current.store(Arc::new(Current {
            position: state.position,
            version: state.version.clone(),
            base: state.base.clone(),
            delta: state.builder.snapshot(),
        }));
    }
}

/// A base's encoded entries: each vector's list and code.
struct Encoded {
    lists: Vec<i64>,
    codes: Vec<u8>,
}

/// Encodes `vectors` with `base`'s quantizer and codec on the compute
/// pool, in chunks across its threads (Faiss's own calls run single
/// threaded there): the coarse assignment is most of a write's CPU.
async fn encode(options: &MutableOptions, base: &IvfIndex, vectors: Vec<f32>) -> Result<Encoded> {
    use rayon::prelude::*;
    let base = base.clone();
    let compute = options.open.compute.clone();
    let d = base.info().d;
    let chunk_rows = (vectors.len() / d.max(1))
        .div_ceil(compute.threads().max(1))
        .max(ENCODE_CHUNK_ROWS);
    options
        .open
        .compute
        .run(move || {
            let parts: Vec<Result<ivflake_faiss::EncodedEntries>> = compute.install(|| {
                vectors
                    .par_chunks(chunk_rows * d.max(1))
                    .map(|chunk| Ok(base.faiss().encode_entries(chunk)?))
                    .collect()
            });
            let mut out = Encoded {
                lists: Vec::new(),
                codes: Vec::new(),
            };
            for part in parts {
                let part = part?;
                out.lists.extend(part.lists);
                out.codes.extend(part.codes);
            }
            Ok(out)
        })
        .await
}

/// Fewest vectors one encoding job takes: below it, splitting costs more
/// than it saves.
const ENCODE_CHUNK_ROWS: usize = 128;

fn code_size(info: &ivflake_faiss::IndexInfo) -> usize {
    match info.list_format {
        ivflake_faiss::ListFormat::Array { code_size } => code_size,
        _ => 0,
    }
}

/// Opens version `position`: its commit point, its base, an empty delta
/// from its log start.
async fn load_version(
    root: &IndexLocation,
    versions: &Sequence,
    options: &MutableOptions,
    position: u64,
) -> Result<(State, Option<bytes::Bytes>)> {
    let raw = versions.read(position).await?;
    let version = Version::decode(
        &raw,
        &format!("{}/{VERSIONS_DIR}/{position:020}{VERSION_SUFFIX}", root.uri),
    )?;
    // The text bundle's tail is read beside the base's open, whose round
    // trips hide it: a cold text query is then one wave of postings.
    let (base, text_tail) = tokio::join!(
        async { IvfIndex::open_at(base_location(root, &version.base, options)?, options.open.clone()).await },
        text::read_bundle_tail(root, &version)
    );
    let base = base?;
    let info = base.info();
    if info.d != version.d {
        return Err(Error::Corrupt {
            uri: base.uri().to_string(),
            reason: format!("its d is {}, its commit point says {}", info.d, version.d),
        });
    }
    // The base's attribute columns start the schema writes extend.
    let schema = match base.attributes().await? {
        Some(attrs) => attrs.schema().clone(),
        None => Arc::new(arrow_schema::Schema::empty()),
    };
    let builder = DeltaBuilder::new(info.nlist, code_size(info), version.log_start, schema);
    let state = State {
        position,
        version,
        base,
        builder,
    };
    Ok((state, text_tail))
}

/// The prefix a new index is created under; a local directory is made.
fn new_prefix(uri: &str, options: &MutableOptions) -> Result<IndexLocation> {
    if let Some(dir) = IndexLocation::local_dir(uri) {
        std::fs::create_dir_all(&dir).map_err(|e| Error::InvalidUri {
            uri: uri.to_string(),
            reason: format!("cannot create the directory: {e}"),
        })?;
    }
    IndexLocation::parse_prefix(uri, options.open.scheduler.config())
}

/// Where a version's base is: a name under the prefix (`bases/…`), or a URI.
fn base_location(root: &IndexLocation, base: &str, options: &MutableOptions) -> Result<IndexLocation> {
    if base.starts_with(BASES_DIR) {
        root.child(base)
    } else {
        IndexLocation::parse(base, options.open.scheduler.config())
    }
}

/// Refuses a store that ignores conditional creates, before anything is written.
async fn check_store(root: &IndexLocation) -> Result<()> {
    Sequence::new(root.store.clone(), child(root, VERSIONS_DIR), VERSION_SUFFIX, &root.uri)
        .check_store()
        .await
}

fn child(root: &IndexLocation, name: &str) -> Path {
    root.child(name).map(|l| l.path).unwrap_or_else(|_| Path::from(name))
}

/// Writes a new object that must not exist yet (a base's random name).
async fn put_new(root: &IndexLocation, name: &str, bytes: bytes::Bytes) -> Result<()> {
    let location = root.child(name)?;
    location
        .store
        .put_opts(
            &location.path,
            bytes.into(),
            object_store::PutOptions::from(object_store::PutMode::Create),
        )
        .await
        .map_err(|e| Error::from_store(&location.uri, None, e))?;
    Ok(())
}

/// The objects under a prefix, for garbage collection.
async fn list_under(root: &IndexLocation, name: &str) -> Result<Vec<object_store::ObjectMeta>> {
    let prefix = child(root, name);
    root.store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::from_store(&root.uri, None, e))
}
