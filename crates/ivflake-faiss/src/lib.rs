//! The one crate in ivflake with C++ and `unsafe`: a small, safe binding to
//! the parts of Faiss that serving IVF indexes from object storage needs.
//!
//! It owns: parsing an index *header* (everything before the inverted-list
//! data) from a byte prefix, running the coarse quantizer, and scanning
//! inverted lists that the caller fetched into its own buffers with Faiss's
//! own search code. It must not own I/O, caching or async: callers hand it
//! bytes and get bytes' worth of answers back.
//!
//! Every bridge function returns `Result`, so a C++ exception becomes a
//! [`FaissError`] with a [`FaissErrorKind`] instead of aborting the process
//! (cxx's rule). Every buffer crosses as a slice whose length the shim checks,
//! so no bridge function is `unsafe`.

use std::fmt;

// The bridge is the crate's one `unsafe` seam: cxx generates the extern
// declarations and checks every signature against the shim's header.
#[allow(unsafe_code)]
#[cxx::bridge(namespace = "ivflake")]
mod ffi {
    struct IndexInfo {
        type_name: String,
        d: usize,
        ivf_d: usize,
        metric_l2: bool,
        ntotal: i64,
        nlist: usize,
        code_size: usize,
        default_nprobe: usize,
        has_transform: bool,
        list_data_offset: u64,
        /// Block lists ("ilbl", fast-scan): sizes sit inline in the file.
        block_lists: bool,
        n_per_block: usize,
        block_size: usize,
    }

    /// Bytes a parsed header holds in memory, by part.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    struct MemoryReport {
        /// Centroids, and an HNSW quantizer's graph.
        quantizer: u64,
        /// PQ codebooks (and symmetric table), SQ ranges.
        codec: u64,
        /// Pre-transform matrices (OPQ, PCA).
        transforms: u64,
        /// IVF-PQ's precomputed residual table (nlist x M x ksub floats).
        residual_table: u64,
        /// The header's table of list sizes.
        list_sizes: u64,
    }

    /// Which ids a search may return; mirrors the public `IdFilter`.
    enum FilterKind {
        All,
        Allow,
        Deny,
        Range,
    }

    /// An id filter as it crosses the bridge: `ids` for `Allow`/`Deny`,
    /// `start..end` for `Range`.
    struct FilterSpec<'a> {
        kind: FilterKind,
        ids: &'a [i64],
        start: i64,
        end: i64,
    }

    /// One fetched inverted list: `ids.len()` vectors, their codes in the
    /// index's list layout.
    struct ListBuffer<'a> {
        codes: &'a [u8],
        ids: &'a [i64],
    }

    /// One scan: transformed queries, their coarse assignment, the fetched
    /// lists and a filter. `slots[q * nprobe + j]` names the entry of
    /// `buffers` holding list `lists[q * nprobe + j]`, or is negative when
    /// that list was not fetched (empty, or failed under `allow_partial`).
    struct ScanRequest<'a> {
        queries: &'a [f32],
        k: usize,
        nprobe: usize,
        lists: &'a [i64],
        coarse_distances: &'a [f32],
        slots: &'a [i32],
        buffers: &'a [ListBuffer<'a>],
        filter: FilterSpec<'a>,
    }

    unsafe extern "C++" {
        include!("shim.h");

        type IvfIndex;

        fn open_header(prefix: &[u8], file_len: u64, alloc_cap: usize, needed: &mut u64)
            -> Result<UniquePtr<IvfIndex>>;
        fn read_index_bytes(bytes: &[u8]) -> Result<UniquePtr<IvfIndex>>;
        fn info(index: &IvfIndex) -> Result<IndexInfo>;
        fn list_sizes(index: &IvfIndex) -> Result<Vec<u64>>;
        fn apply_transform(index: &IvfIndex, n: usize, x: &[f32], out: &mut [f32]) -> Result<()>;
        fn coarse_search(
            index: &IvfIndex,
            n: usize,
            x: &[f32],
            nprobe: usize,
            coarse_dis: &mut [f32],
            assign: &mut [i64],
        ) -> Result<()>;
        fn scan_lists(index: &IvfIndex, request: &ScanRequest, distances: &mut [f32], labels: &mut [i64])
            -> Result<()>;
        fn search_full(
            index: &IvfIndex,
            x: &[f32],
            k: usize,
            nprobe: usize,
            filter: &FilterSpec,
            distances: &mut [f32],
            labels: &mut [i64],
        ) -> Result<()>;
        fn index_factory(d: usize, description: &str, metric_l2: bool) -> Result<UniquePtr<IvfIndex>>;
        fn is_trained(index: &IvfIndex) -> Result<bool>;
        fn train(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn add(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn add_with_ids(index: Pin<&mut IvfIndex>, n: usize, x: &[f32], ids: &[i64]) -> Result<()>;
        fn write_index_bytes(index: &IvfIndex) -> Result<UniquePtr<CxxVector<u8>>>;
        fn faiss_version() -> Result<String>;
        fn release_free_memory() -> Result<bool>;
        fn build_residual_table(index: Pin<&mut IvfIndex>, max_bytes: u64) -> Result<u64>;
        fn residual_table_size(index: &IvfIndex) -> Result<u64>;
        fn memory_report(index: &IvfIndex) -> Result<MemoryReport>;
    }
}

pub use ffi::MemoryReport;

impl MemoryReport {
    /// Every part together.
    pub fn total(&self) -> u64 {
        self.quantizer + self.codec + self.transforms + self.residual_table + self.list_sizes
    }
}

/// What went wrong, as the shim classifies it, so callers never match
/// message text.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaissErrorKind {
    /// A valid file of a type or layout this binding (or the linked Faiss)
    /// cannot serve; the message names the type and the Faiss version.
    Unsupported,
    /// The bytes are not a well-formed index: truncated, inconsistent counts.
    Corrupt,
    /// The parser ran past the bytes it was given (a header is probed with
    /// [`open_header`], which reports this as [`HeaderProbe::NeedBytes`]).
    NeedMoreBytes,
    /// A length read from the file asked for more memory than the file could
    /// hold, and the shim's allocation cap refused it: a corrupt file.
    AllocationRefused,
    /// The allocator failed: the process is out of memory.
    OutOfMemory,
    /// The caller broke a precondition (buffer lengths, alignment, slots).
    InvalidArgument,
    /// Anything else Faiss threw.
    Other,
}

impl FaissErrorKind {
    /// The one-letter tag the shim's `trycatch` puts before its message.
    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'U' => Self::Unsupported,
            b'C' => Self::Corrupt,
            b'N' => Self::NeedMoreBytes,
            b'A' => Self::AllocationRefused,
            b'M' => Self::OutOfMemory,
            b'I' => Self::InvalidArgument,
            b'O' => Self::Other,
            _ => return None,
        })
    }
}

/// A C++ exception from Faiss or the shim, or a precondition the binding
/// checked before calling into C++.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaissError {
    kind: FaissErrorKind,
    message: String,
}

impl FaissError {
    fn new(kind: FaissErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(FaissErrorKind::InvalidArgument, message)
    }

    pub fn kind(&self) -> FaissErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FaissError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FaissError {}

impl From<cxx::Exception> for FaissError {
    /// The shim's `trycatch` writes `<tag>|<message>`; see `cpp/shim.h`.
    fn from(e: cxx::Exception) -> Self {
        let what = e.what();
        match what.as_bytes() {
            [tag, b'|', ..] => match FaissErrorKind::from_tag(*tag) {
                Some(kind) => Self::new(kind, &what[2..]),
                None => Self::new(FaissErrorKind::Other, what),
            },
            _ => Self::new(FaissErrorKind::Other, what),
        }
    }
}

pub type Result<T, E = FaissError> = std::result::Result<T, E>;

/// The IVF classes this binding serves (the shim's open refuses the others),
/// as they appear in [`IndexInfo::type_name`].
pub const SERVED_IVF_TYPES: &[&str] = &[
    "IndexIVFFlat",
    "IndexIVFPQ",
    "IndexIVFScalarQuantizer",
    "IndexIVFPQFastScan",
    "IndexIVFRaBitQ",
];

/// Hands the heap's free pages back to the operating system (glibc's
/// `malloc_trim`). glibc keeps what a burst of work freed (thousands of
/// connections, a large load) for later reuse, so resident memory stays at
/// the burst's peak; a server calls this now and then so it falls back.
/// Returns whether any memory was released.
pub fn release_free_memory() -> bool {
    ffi::release_free_memory().unwrap_or(false)
}

/// The version of the Faiss library linked in, e.g. `"1.12.0"`.
pub fn faiss_version() -> String {
    ffi::faiss_version().unwrap_or_else(|e| format!("unknown ({e})"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    L2,
    InnerProduct,
}

/// What the header says about an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Pre-transforms, IVF type and `[quantizer]`, e.g. `OPQMatrix,IndexIVFPQ[IndexFlat]`.
    pub type_name: String,
    /// Dimension of the vectors callers search with.
    pub d: usize,
    /// Dimension the IVF layer works in, after pre-transforms.
    pub ivf_d: usize,
    pub metric: Metric,
    pub ntotal: i64,
    pub nlist: usize,
    /// Bytes per vector code inside a list (for block lists, per vector
    /// before packing into blocks).
    pub code_size: usize,
    /// The nprobe stored in the file.
    pub default_nprobe: usize,
    pub has_transform: bool,
    /// Offset of the first list's data in the file (0 when fully loaded).
    /// For [`ListLayout::Blocks`] it is where list 0's id count starts.
    pub list_data_offset: u64,
}

/// How the file stores inverted lists, which fixes each list's byte range.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListLayout {
    /// Faiss's `ArrayInvertedLists` ("ilar"): list sizes in the header; list
    /// `i` is `size * code_size` code bytes then `size` little-endian `i64`
    /// ids, lists back to back.
    Array,
    /// Faiss's `BlockInvertedLists` ("ilbl", fast-scan PQ): list `i` is a
    /// `u64` count `n`, `n` ids, a `u64` byte count `m`, then `m` code bytes,
    /// `m = ceil(n / n_per_block) * block_size`. Sizes are inline, not in the
    /// header, so they come from a manifest or a pass over the lists.
    Blocks { n_per_block: usize, block_size: usize },
}

impl ListLayout {
    /// Code bytes of a list holding `n` vectors, `None` on overflow.
    pub fn codes_len(&self, n: u64, code_size: usize) -> Option<u64> {
        match *self {
            ListLayout::Array => n.checked_mul(code_size as u64),
            ListLayout::Blocks {
                n_per_block,
                block_size,
            } => n.div_ceil(n_per_block as u64).checked_mul(block_size as u64),
        }
    }

    /// Alignment Faiss's scan needs of a list's codes (AVX2 fast-scan kernels
    /// load 32-byte blocks with aligned loads).
    pub fn codes_alignment(&self) -> usize {
        match self {
            ListLayout::Array => 4,
            ListLayout::Blocks { .. } => 32,
        }
    }
}

/// The outcome of parsing a header from a prefix of the file.
pub enum HeaderProbe {
    Opened(Index),
    /// The prefix ended inside the header; it needs at least this many bytes.
    NeedBytes(u64),
}

/// One fetched inverted list: its codes (in the index's [`ListLayout`]) and
/// its ids.
#[derive(Debug, Clone, Copy)]
pub struct ListSlice<'a> {
    pub codes: &'a [u8],
    pub ids: &'a [i64],
}

/// Restricts which ids a search may return, through Faiss's `IDSelector`s.
#[derive(Debug, Clone, Copy, Default)]
pub enum IdFilter<'a> {
    #[default]
    All,
    Allow(&'a [i64]),
    Deny(&'a [i64]),
    /// Ids in `start..end`.
    Range(i64, i64),
}

impl<'a> IdFilter<'a> {
    fn spec(self) -> ffi::FilterSpec<'a> {
        let (kind, ids, start, end): (ffi::FilterKind, &[i64], i64, i64) = match self {
            IdFilter::All => (ffi::FilterKind::All, &[], 0, 0),
            IdFilter::Allow(ids) => (ffi::FilterKind::Allow, ids, 0, 0),
            IdFilter::Deny(ids) => (ffi::FilterKind::Deny, ids, 0, 0),
            IdFilter::Range(start, end) => (ffi::FilterKind::Range, &[], start, end),
        };
        ffi::FilterSpec { kind, ids, start, end }
    }
}

/// Distances and labels of a batch, `k` per query, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbors {
    pub distances: Vec<f32>,
    pub labels: Vec<i64>,
}

/// The coarse quantizer's answer for a batch, `nprobe` per query.
#[derive(Debug, Clone, PartialEq)]
pub struct CoarseAssignment {
    pub distances: Vec<f32>,
    pub lists: Vec<i64>,
}

/// An owned Faiss index: either a header opened lazily (no list data) or a
/// fully loaded one (reference searches, building).
pub struct Index {
    inner: cxx::UniquePtr<ffi::IvfIndex>,
    info: IndexInfo,
    layout: ListLayout,
}

// SAFETY: `IvfIndex` owns its Faiss objects through `unique_ptr`s and holds no
// thread-affine state; the lazy lists' per-scan table is a thread-local set
// and cleared within one `scan_lists` call. So it may move between threads.
#[allow(unsafe_code)]
unsafe impl Send for Index {}
// SAFETY: every `&self` method calls only `const` Faiss methods (quantizer
// search, `apply_chain`, `search_preassigned`), which Faiss documents as safe
// to call concurrently; each call builds its own scanner and heaps, and the
// lazy lists resolve list buffers through a table private to the calling
// thread (Faiss's OpenMP is held to one thread inside the shim, so no other
// thread reads it). Mutation (`train`, `add`) takes `&mut self`.
#[allow(unsafe_code)]
unsafe impl Sync for Index {}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("info", &self.info)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Parses the header of an index file from `prefix`, its first bytes.
///
/// `alloc_cap` bounds any single C++ allocation while parsing, so a corrupt
/// length field fails instead of exhausting memory.
pub fn open_header(prefix: &[u8], file_len: u64, alloc_cap: usize) -> Result<HeaderProbe> {
    let mut needed = 0u64;
    let ptr = ffi::open_header(prefix, file_len, alloc_cap, &mut needed)?;
    if ptr.is_null() {
        return Ok(HeaderProbe::NeedBytes(needed));
    }
    Ok(HeaderProbe::Opened(Index::wrap(ptr)?))
}

/// Reads a whole index file, lists included, as `faiss.read_index` would.
pub fn read_index(bytes: &[u8]) -> Result<Index> {
    Index::wrap(ffi::read_index_bytes(bytes)?)
}

impl Index {
    fn wrap(inner: cxx::UniquePtr<ffi::IvfIndex>) -> Result<Self> {
        let raw = ffi::info(&inner)?;
        let layout = if raw.block_lists {
            ListLayout::Blocks {
                n_per_block: raw.n_per_block,
                block_size: raw.block_size,
            }
        } else {
            ListLayout::Array
        };
        let info = IndexInfo {
            type_name: raw.type_name,
            d: raw.d,
            ivf_d: raw.ivf_d,
            metric: if raw.metric_l2 {
                Metric::L2
            } else {
                Metric::InnerProduct
            },
            ntotal: raw.ntotal,
            nlist: raw.nlist,
            code_size: raw.code_size,
            default_nprobe: raw.default_nprobe,
            has_transform: raw.has_transform,
            list_data_offset: raw.list_data_offset,
        };
        Ok(Self { inner, info, layout })
    }

    /// Builds an empty index from a Faiss factory string, e.g. `"OPQ16,IVF256,PQ16"`.
    pub fn factory(d: usize, description: &str, metric: Metric) -> Result<Self> {
        if d == 0 {
            return Err(FaissError::invalid("dimension must be positive"));
        }
        Self::wrap(ffi::index_factory(d, description, metric == Metric::L2)?)
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// How the file lays out inverted lists.
    pub fn list_layout(&self) -> ListLayout {
        self.layout
    }

    /// Number of vectors in each inverted list, as the header states them.
    /// Empty for a lazily opened [`ListLayout::Blocks`] index, whose sizes
    /// are inline in the list data, not in the header.
    pub fn list_sizes(&self) -> Result<Vec<u64>> {
        Ok(ffi::list_sizes(&self.inner)?)
    }

    /// Bytes this index holds in memory, by part.
    pub fn memory(&self) -> Result<MemoryReport> {
        Ok(ffi::memory_report(&self.inner)?)
    }

    /// Bytes IVF-PQ's residual table takes when built: nlist × M × ksub
    /// floats, or 0 for codecs and metrics that have none.
    pub fn residual_table_size(&self) -> Result<u64> {
        Ok(ffi::residual_table_size(&self.inner)?)
    }

    /// Builds the residual table when it takes at most `max_bytes`, else
    /// makes searches compute each list's table per query (same results);
    /// returns the bytes built. A lazily opened header has none until this.
    pub fn build_residual_table(&mut self, max_bytes: u64) -> Result<u64> {
        Ok(ffi::build_residual_table(self.inner.pin_mut(), max_bytes)?)
    }

    fn rows(&self, x: &[f32], d: usize) -> Result<usize> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(FaissError::invalid(format!(
                "vector buffer of {} floats is not a whole number of {d}-dimensional vectors",
                x.len()
            )));
        }
        Ok(x.len() / d)
    }

    /// Applies the pre-transform chain (OPQ, PCA, ...) to queries; a copy
    /// when there is none.
    pub fn apply_transform(&self, x: &[f32]) -> Result<Vec<f32>> {
        let n = self.rows(x, self.info.d)?;
        if !self.info.has_transform {
            return Ok(x.to_vec());
        }
        let mut out = vec![0f32; n * self.info.ivf_d];
        ffi::apply_transform(&self.inner, n, x, &mut out)?;
        Ok(out)
    }

    /// Runs the coarse quantizer on already transformed queries.
    pub fn coarse_search(&self, xt: &[f32], nprobe: usize) -> Result<CoarseAssignment> {
        let n = self.rows(xt, self.info.ivf_d)?;
        let mut distances = vec![0f32; n * nprobe];
        let mut lists = vec![-1i64; n * nprobe];
        ffi::coarse_search(&self.inner, n, xt, nprobe, &mut distances, &mut lists)?;
        Ok(CoarseAssignment { distances, lists })
    }

    /// Scans fetched lists for transformed queries `xt` with Faiss's own
    /// `search_preassigned`. `slots[q * nprobe + j]` names the entry of
    /// `lists` holding list `assignment.lists[q * nprobe + j]`, or is
    /// negative when that list was not fetched.
    pub fn scan_lists(
        &self,
        xt: &[f32],
        k: usize,
        assignment: &CoarseAssignment,
        slots: &[i32],
        lists: &[ListSlice<'_>],
        filter: IdFilter<'_>,
    ) -> Result<Neighbors> {
        let n = self.rows(xt, self.info.ivf_d)?;
        let probes = assignment.lists.len();
        if n == 0 || !probes.is_multiple_of(n) || assignment.distances.len() != probes || slots.len() != probes {
            return Err(FaissError::invalid("coarse assignment does not match the queries"));
        }
        let buffers: Vec<ffi::ListBuffer<'_>> = lists
            .iter()
            .map(|l| ffi::ListBuffer {
                codes: l.codes,
                ids: l.ids,
            })
            .collect();
        let request = ffi::ScanRequest {
            queries: xt,
            k,
            nprobe: probes / n,
            lists: &assignment.lists,
            coarse_distances: &assignment.distances,
            slots,
            buffers: &buffers,
            filter: filter.spec(),
        };
        let mut distances = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        ffi::scan_lists(&self.inner, &request, &mut distances, &mut labels)?;
        Ok(Neighbors { distances, labels })
    }

    /// Searches a fully loaded index, as Faiss does in memory.
    pub fn search(&self, x: &[f32], k: usize, nprobe: usize) -> Result<Neighbors> {
        self.search_filtered(x, k, nprobe, IdFilter::All)
    }

    /// Searches a fully loaded index with Faiss's own `IndexIVF::search`,
    /// `SearchParametersIVF { nprobe, sel }` carrying the same `IDSelector`
    /// that [`Index::scan_lists`] builds for `filter`: the in-memory reference
    /// for filtered searches.
    pub fn search_filtered(&self, x: &[f32], k: usize, nprobe: usize, filter: IdFilter<'_>) -> Result<Neighbors> {
        let n = self.rows(x, self.info.d)?;
        let mut distances = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        let spec = filter.spec();
        ffi::search_full(&self.inner, x, k, nprobe, &spec, &mut distances, &mut labels)?;
        Ok(Neighbors { distances, labels })
    }

    pub fn is_trained(&self) -> Result<bool> {
        Ok(ffi::is_trained(&self.inner)?)
    }

    pub fn train(&mut self, x: &[f32]) -> Result<()> {
        let n = self.rows(x, self.info.d)?;
        ffi::train(self.pinned()?, n, x)?;
        Ok(())
    }

    pub fn add(&mut self, x: &[f32]) -> Result<()> {
        let n = self.rows(x, self.info.d)?;
        ffi::add(self.pinned()?, n, x)?;
        self.info.ntotal += n as i64;
        Ok(())
    }

    /// Adds vectors under the caller's ids (Faiss's `add_with_ids`).
    pub fn add_with_ids(&mut self, x: &[f32], ids: &[i64]) -> Result<()> {
        let n = self.rows(x, self.info.d)?;
        if ids.len() != n {
            return Err(FaissError::invalid(format!("{} ids for {n} vectors", ids.len())));
        }
        ffi::add_with_ids(self.pinned()?, n, x, ids)?;
        self.info.ntotal += n as i64;
        Ok(())
    }

    /// Serializes the index as `faiss.write_index` would.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = ffi::write_index_bytes(&self.inner)?;
        Ok(bytes.as_slice().to_vec())
    }

    fn pinned(&mut self) -> Result<std::pin::Pin<&mut ffi::IvfIndex>> {
        self.inner
            .as_mut()
            .ok_or_else(|| FaissError::invalid("index handle is null"))
    }
}
