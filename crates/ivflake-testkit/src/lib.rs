//! Test support shared by the ivflake crates: [`HookedStore`], one
//! object-store wrapper in the style of object_store's `limit.rs` and
//! `throttle.rs` (it forwards every trait method), with a [`GetHook`] that
//! sees each GET first. Counting, fault injection and delays are hooks.
//! Also the generated data the tests share.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs before every GET a [`HookedStore`] forwards; an error fails the GET.
#[async_trait]
pub trait GetHook: fmt::Debug + Send + Sync + 'static {
    async fn before_get(&self, location: &Path, options: &GetOptions) -> Result<()>;
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
        self.inner.get_opts(location, options).await
    }
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
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
        self.inner.list(prefix)
    }
    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
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

/// Counts GETs (range reads and whole-object reads) and the ranges asked for.
#[derive(Debug, Default)]
pub struct GetCounter {
    gets: AtomicUsize,
    ranges: Mutex<Vec<Range<u64>>>,
}

impl GetCounter {
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.gets.store(0, Ordering::SeqCst);
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
