//! Test support shared by the ivflake crates: [`HookedStore`], one
//! object-store wrapper in the style of object_store's `limit.rs` and
//! `throttle.rs` (it forwards every trait method), with a [`GetHook`] that
//! sees each GET first and may rewrite its answer. Counting, fault injection,
//! gates, delays and damaged bodies are hooks. Also the generated data the
//! tests share, [`FaultProxy`] (`proxy.rs`), which damages a real
//! S3-protocol server's answers on the wire, a test's [`TempDir`]
//! (`tempdir.rs`), [`write_sidecar`] (`sidecar.rs`), a fixture's checksum
//! sidecar written by the library, [`moto`] (`s3.rs`), the loopback
//! S3-protocol server `make test` starts, and the faiss-cpu [`fixtures`]
//! it generates (`fixtures.rs`).

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod fixtures;
pub mod proxy;
pub mod s3;
pub mod sidecar;
pub mod tempdir;
pub use fixtures::{fixtures, npy_f32, npy_i64, read_npy};
pub use proxy::{proxied_retry, FaultProxy, ProxyFault, ProxyPlan};
pub use s3::{moto, unique_key, Moto};
pub use sidecar::write_sidecar;
pub use tempdir::TempDir;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs before every GET a [`HookedStore`] forwards; an error fails the GET.
/// `after_get` sees the store's answer and may replace it (by default it
/// passes it on untouched).
#[async_trait]
pub trait GetHook: fmt::Debug + Send + Sync + 'static {
    async fn before_get(&self, location: &Path, options: &GetOptions) -> Result<()>;

    async fn after_get(&self, _location: &Path, _options: &GetOptions, result: GetResult) -> Result<GetResult> {
        Ok(result)
    }

    /// The options a PUT reaches the store with (by default, the caller's).
    fn put_options(&self, options: PutOptions) -> PutOptions {
        options
    }

    /// Runs when a LIST starts (by default, nothing).
    fn on_list(&self) {}
}

/// A store that ignores conditional creates, as some S3-compatible servers
/// do (s3rver 3.7): every PUT overwrites.
#[derive(Debug, Default)]
pub struct IgnoreConditionalCreates;

#[async_trait]
impl GetHook for IgnoreConditionalCreates {
    async fn before_get(&self, _location: &Path, _options: &GetOptions) -> Result<()> {
        Ok(())
    }

    fn put_options(&self, options: PutOptions) -> PutOptions {
        PutOptions {
            mode: object_store::PutMode::Overwrite,
            ..options
        }
    }
}

/// Wraps a store; every GET goes through the hook, everything else straight through.
/// Derefs to the hook, so a test reads the hook's state on the store itself.
#[derive(Debug)]
pub struct HookedStore<H> {
    inner: Arc<dyn ObjectStore>,
    hook: H,
}

impl<H: GetHook> HookedStore<H> {
    pub fn new(inner: Arc<dyn ObjectStore>, hook: H) -> Self {
        Self { inner, hook }
    }
}

impl<H> Deref for HookedStore<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hook
    }
}

impl<H: fmt::Debug> fmt::Display for HookedStore<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookedStore({:?}, {})", self.hook, self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<H: GetHook> ObjectStore for HookedStore<H> {
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.hook.before_get(location, &options).await?;
        let result = self.inner.get_opts(location, options.clone()).await?;
        self.hook.after_get(location, &options, result).await
    }
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner
            .put_opts(location, payload, self.hook.put_options(opts))
            .await
    }
    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // Each range is a GET the hook sees, as the provided method would make.
        for r in ranges {
            let options = GetOptions::new().with_range(Some(r.clone()));
            self.hook.before_get(location, &options).await?;
        }
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.hook.on_list();
        self.inner.list(prefix)
    }
    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.hook.on_list();
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.hook.on_list();
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The byte range a GET asks for, when it asks for a bounded one.
pub fn requested(options: &GetOptions) -> Option<Range<u64>> {
    match &options.range {
        Some(object_store::GetRange::Bounded(r)) => Some(r.clone()),
        _ => None,
    }
}

/// Counts GETs (range reads and whole-object reads), the ranges asked
/// for, and LISTs.
#[derive(Debug, Default)]
pub struct GetCounter {
    gets: AtomicUsize,
    lists: AtomicUsize,
    ranges: Mutex<Vec<Range<u64>>>,
}

impl GetCounter {
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.gets.store(0, Ordering::SeqCst);
        self.lists.store(0, Ordering::SeqCst);
        self.ranges.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.ranges.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl GetHook for GetCounter {
    async fn before_get(&self, _location: &Path, options: &GetOptions) -> Result<()> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = requested(options) {
            self.ranges.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }
        Ok(())
    }

    fn on_list(&self) {
        self.lists.fetch_add(1, Ordering::SeqCst);
    }
}

pub type CountingStore = HookedStore<GetCounter>;

pub fn counting_store(inner: Arc<dyn ObjectStore>) -> CountingStore {
    HookedStore::new(inner, GetCounter::default())
}

/// What [`Faults`] does to GETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every GET hangs forever.
    StallAll,
    /// The first GET of each distinct range hangs forever; repeats answer.
    StallFirstPerRange,
    /// Every GET fails.
    FailAll,
    /// GETs whose range covers this byte offset fail.
    FailAt(u64),
}

/// Stalls or fails GETs of ranges starting at or past `after` (list data, so open still works).
#[derive(Debug)]
pub struct Faults {
    fault: Mutex<Fault>,
    after: u64,
    seen: Mutex<std::collections::HashSet<Range<u64>>>,
    /// Set once any GET was stalled.
    pub stalled: AtomicBool,
}

impl Faults {
    pub fn new(after: u64) -> Self {
        Self {
            fault: Mutex::new(Fault::None),
            after,
            seen: Mutex::new(std::collections::HashSet::new()),
            stalled: AtomicBool::new(false),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }
}

#[async_trait]
impl GetHook for Faults {
    async fn before_get(&self, _location: &Path, options: &GetOptions) -> Result<()> {
        let Some(r) = requested(options).filter(|r| r.start >= self.after) else {
            return Ok(());
        };
        let fault = *self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let injected = || object_store::Error::Generic {
            store: "Faults",
            source: "injected failure".into(),
        };
        let stall = match fault {
            Fault::None => false,
            Fault::StallAll => true,
            Fault::StallFirstPerRange => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.insert(r)
            }
            Fault::FailAll => return Err(injected()),
            Fault::FailAt(at) if r.contains(&at) => return Err(injected()),
            Fault::FailAt(_) => false,
        };
        if stall {
            self.stalled.store(true, Ordering::SeqCst);
            futures::future::pending::<()>().await;
        }
        Ok(())
    }
}

pub type FaultyStore = HookedStore<Faults>;

pub fn faulty_store(inner: Arc<dyn ObjectStore>, after: u64) -> FaultyStore {
    HookedStore::new(inner, Faults::new(after))
}

/// Delays GETs of ranges starting at or past `after` by `delay` (list data, not the header).
#[derive(Debug)]
pub struct Delay {
    pub after: u64,
    pub delay: Duration,
}

#[async_trait]
impl GetHook for Delay {
    async fn before_get(&self, _location: &Path, options: &GetOptions) -> Result<()> {
        if requested(options).is_some_and(|r| r.start >= self.after) {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
}

pub type SlowStore = HookedStore<Delay>;

pub fn slow_store(inner: Arc<dyn ObjectStore>, after: u64, delay: Duration) -> SlowStore {
    HookedStore::new(inner, Delay { after, delay })
}

/// Holds GETs of ranges starting at or past `after` (every GET when `after`
/// is 0) until the gate opens, and
/// counts how many wait at once: with the gate shut, the waiting count is the
/// number of GETs in flight, so a test can wait for an exact count (an event,
/// not a guess at timing) and read the peak afterwards.
#[derive(Debug)]
pub struct Gate {
    after: u64,
    open: tokio::sync::watch::Sender<bool>,
    waiting: AtomicUsize,
    peak: AtomicUsize,
    passed: AtomicUsize,
}

/// Decrements the waiting count however the GET ends (answered or dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A shut gate.
    pub fn new(after: u64) -> Self {
        Self {
            after,
            open: tokio::sync::watch::channel(false).0,
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            passed: AtomicUsize::new(0),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn shut(&self) {
        self.open.send_replace(false);
    }

    /// GETs held at the gate right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The most GETs ever held at the gate at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// GETs that went through the gate (it was open, or opened while they waited).
    pub fn passed(&self) -> usize {
        self.passed.load(Ordering::SeqCst)
    }

    /// Waits until exactly `n` GETs are held; panics after `limit` (a liveness
    /// guard: the count is the event, the limit only stops a broken test).
    pub async fn wait_for_waiting(&self, n: usize, limit: Duration) {
        let reached = tokio::time::timeout(limit, async {
            while self.waiting() != n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{} GETs held at the gate after {limit:?}, expected {n}",
            self.waiting()
        );
    }
}

#[async_trait]
impl GetHook for Gate {
    async fn before_get(&self, _location: &Path, options: &GetOptions) -> Result<()> {
        // `after == 0` holds every GET, whole-object ones (a sidecar) included.
        if self.after > 0 && requested(options).is_none_or(|r| r.start < self.after) {
            return Ok(());
        }
        let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        let _waiting = Waiting(&self.waiting);
        self.peak.fetch_max(now, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        // The sender lives as long as the gate, so this only ends when it opens.
        let _ = open.wait_for(|&o| o).await;
        self.passed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub type GatedStore = HookedStore<Gate>;

pub fn gated_store(inner: Arc<dyn ObjectStore>, after: u64) -> GatedStore {
    HookedStore::new(inner, Gate::new(after))
}

/// What [`Bodies`] does to the answer of a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    None,
    /// The body is one byte shorter than the range asked for.
    Short,
    /// One byte in the middle of the body is flipped.
    FlipMiddleByte,
}

/// Damages the bodies of GETs whose range starts at or past `after`.
#[derive(Debug)]
pub struct Bodies {
    fault: Mutex<BodyFault>,
    after: u64,
    damaged: AtomicUsize,
}

impl Bodies {
    pub fn new(after: u64) -> Self {
        Self {
            fault: Mutex::new(BodyFault::None),
            after,
            damaged: AtomicUsize::new(0),
        }
    }

    pub fn set(&self, fault: BodyFault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Bodies damaged so far.
    pub fn damaged(&self) -> usize {
        self.damaged.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl GetHook for Bodies {
    async fn before_get(&self, _location: &Path, _options: &GetOptions) -> Result<()> {
        Ok(())
    }

    async fn after_get(&self, _location: &Path, options: &GetOptions, mut result: GetResult) -> Result<GetResult> {
        let fault = *self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault == BodyFault::None || requested(options).is_none_or(|r| r.start < self.after) {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let range = result.range.clone();
        let attributes = result.attributes.clone();
        let extensions = std::mem::take(&mut result.extensions);
        let body = result.bytes().await?;
        let body = match fault {
            BodyFault::None => body,
            BodyFault::Short => body.slice(..body.len().saturating_sub(1)),
            BodyFault::FlipMiddleByte => {
                let mut v = body.to_vec();
                if let Some(b) = v.get_mut(body.len() / 2) {
                    *b ^= 0x01;
                }
                Bytes::from(v)
            }
        };
        self.damaged.fetch_add(1, Ordering::SeqCst);
        Ok(GetResult {
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(async move { Ok(body) }))),
            meta,
            range,
            attributes,
            extensions,
        })
    }
}

pub type DamagingStore = HookedStore<Bodies>;

pub fn damaging_store(inner: Arc<dyn ObjectStore>, after: u64) -> DamagingStore {
    HookedStore::new(inner, Bodies::new(after))
}

/// Clustered vectors, so IVF lists are uneven like real data.
pub fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centers: Vec<f32> = (0..20 * d).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.gen_range(0..20);
        for j in 0..d {
            out.push(centers[c * d + j] + rng.gen_range(-1.0..1.0));
        }
    }
    out
}

/// Search results made comparable across implementations: per query, the
/// distances sorted, and the ids strictly inside the k-th distance, sorted
/// (ties at the boundary may pick either id).
pub fn normalized_results(ids: &[i64], distances: &[f32], k: usize) -> Vec<(Vec<f32>, Vec<i64>)> {
    distances
        .chunks(k)
        .zip(ids.chunks(k))
        .map(|(d, l)| {
            let mut pairs: Vec<(f32, i64)> = d.iter().copied().zip(l.iter().copied()).collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let last = pairs.last().map_or(0.0, |p| p.0);
            let mut inside: Vec<i64> = pairs.iter().filter(|p| p.0 != last).map(|p| p.1).collect();
            inside.sort_unstable();
            (pairs.iter().map(|p| p.0).collect(), inside)
        })
        .collect()
}
