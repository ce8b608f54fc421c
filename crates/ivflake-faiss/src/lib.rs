//! The one crate in ivflake with C++ and `unsafe`: a small, safe binding to
//! the parts of Faiss that serving IVF indexes from object storage needs.
//!
//! It owns: parsing an index *header* (everything before the inverted-list
//! data) from a byte prefix, running the coarse quantizer, and scanning
//! inverted lists that the caller fetched into its own buffers with Faiss's
//! own list scanners. It must not own I/O, caching or async: callers hand it
//! bytes and get bytes' worth of answers back.
//!
//! Every bridge function returns `Result`, so a C++ exception becomes a
//! [`FaissError`] instead of aborting the process (cxx's rule).

use std::fmt;

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

    unsafe extern "C++" {
        include!("shim.h");

        type IvfIndex;

        fn open_header(prefix: &[u8], file_len: u64, alloc_cap: usize, needed: &mut u64)
            -> Result<UniquePtr<IvfIndex>>;
        fn read_index_bytes(bytes: &[u8]) -> Result<UniquePtr<IvfIndex>>;
        fn info(index: &IvfIndex) -> IndexInfo;
        fn list_sizes(index: &IvfIndex) -> Vec<u64>;
        fn apply_transform(index: &IvfIndex, n: usize, x: &[f32], out: &mut [f32]) -> Result<()>;
        fn coarse_search(
            index: &IvfIndex,
            n: usize,
            x: &[f32],
            nprobe: usize,
            coarse_dis: &mut [f32],
            assign: &mut [i64],
        ) -> Result<()>;
        /// # Safety
        /// `codes_addr[i]` must point at `sizes[i] * code_size` readable bytes
        /// and `ids_addr[i]` at `sizes[i]` aligned `i64`s, alive for the call.
        #[allow(clippy::too_many_arguments)]
        unsafe fn scan_lists(
            index: &IvfIndex,
            n: usize,
            xt: &[f32],
            k: usize,
            nprobe: usize,
            assign: &[i64],
            coarse_dis: &[f32],
            slots: &[i32],
            codes_addr: &[usize],
            ids_addr: &[usize],
            sizes: &[usize],
            filter: &FilterSpec,
            distances: &mut [f32],
            labels: &mut [i64],
        ) -> Result<()>;
        #[allow(clippy::too_many_arguments)]
        fn search_full(
            index: &IvfIndex,
            n: usize,
            x: &[f32],
            k: usize,
            nprobe: usize,
            filter: &FilterSpec,
            distances: &mut [f32],
            labels: &mut [i64],
        ) -> Result<()>;
        fn index_factory(d: usize, description: &str, metric_l2: bool) -> Result<UniquePtr<IvfIndex>>;
        fn is_trained(index: &IvfIndex) -> bool;
        fn train(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn add(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn write_index_bytes(index: &IvfIndex) -> Result<UniquePtr<CxxVector<u8>>>;
    }
}

/// A C++ exception from Faiss or the shim, or a precondition the binding
/// checked before calling into C++.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaissError {
    message: String,
}

impl FaissError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
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
    fn from(e: cxx::Exception) -> Self {
        Self::new(e.what())
    }
}

pub type Result<T, E = FaissError> = std::result::Result<T, E>;

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
    /// Bytes per vector code inside a list.
    pub code_size: usize,
    /// The nprobe stored in the file.
    pub default_nprobe: usize,
    pub has_transform: bool,
    /// Offset of the first list's data in the file (0 when fully loaded).
    pub list_data_offset: u64,
}

/// The outcome of parsing a header from a prefix of the file.
pub enum HeaderProbe {
    Opened(Index),
    /// The prefix ended inside the header; it needs at least this many bytes.
    NeedBytes(u64),
}

/// One fetched inverted list: codes followed, in the file, by ids.
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
}

// SAFETY: `IvfIndex` owns its Faiss objects through `unique_ptr`s and holds no
// thread-affine state (no thread-locals, no handles tied to a thread), so it
// may move between threads.
unsafe impl Send for Index {}
// SAFETY: every `&self` method calls only `const` Faiss methods (quantizer
// search, `apply_chain`, `get_InvertedListScanner`), which Faiss documents as
// safe to call concurrently; each call builds its own scanner and heaps.
// Mutation (`train`, `add`) takes `&mut self`.
unsafe impl Sync for Index {}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index").field("info", &self.info).finish()
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
    Ok(HeaderProbe::Opened(Index::wrap(ptr)))
}

/// Reads a whole index file, lists included, as `faiss.read_index` would.
pub fn read_index(bytes: &[u8]) -> Result<Index> {
    Ok(Index::wrap(ffi::read_index_bytes(bytes)?))
}

impl Index {
    fn wrap(inner: cxx::UniquePtr<ffi::IvfIndex>) -> Self {
        let raw = ffi::info(&inner);
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
        Self { inner, info }
    }

    /// Builds an empty index from a Faiss factory string, e.g. `"OPQ16,IVF256,PQ16"`.
    pub fn factory(d: usize, description: &str, metric: Metric) -> Result<Self> {
        if d == 0 {
            return Err(FaissError::new("dimension must be positive"));
        }
        Ok(Self::wrap(ffi::index_factory(d, description, metric == Metric::L2)?))
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// Number of vectors in each inverted list.
    pub fn list_sizes(&self) -> Vec<u64> {
        ffi::list_sizes(&self.inner)
    }

    fn rows(&self, x: &[f32], d: usize) -> Result<usize> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(FaissError::new(format!(
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

    /// Scans fetched lists for transformed queries `xt`. `slots[q * nprobe + j]`
    /// names the entry of `lists` holding list `assignment.lists[q * nprobe + j]`,
    /// or is negative when that list is empty.
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
            return Err(FaissError::new("coarse assignment does not match the queries"));
        }
        let nprobe = probes / n;
        let mut codes_addr = Vec::with_capacity(lists.len());
        let mut ids_addr = Vec::with_capacity(lists.len());
        let mut sizes = Vec::with_capacity(lists.len());
        for (i, list) in lists.iter().enumerate() {
            if list.codes.len() != list.ids.len() * self.info.code_size {
                return Err(FaissError::new(format!(
                    "list slot {i}: {} code bytes for {} ids of {} bytes each",
                    list.codes.len(),
                    list.ids.len(),
                    self.info.code_size
                )));
            }
            // IVFFlat reads codes as floats and SQfp16 as u16s.
            if !(list.codes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>()) {
                return Err(FaissError::new(format!("list slot {i}: codes are not 4-byte aligned")));
            }
            codes_addr.push(list.codes.as_ptr() as usize);
            ids_addr.push(list.ids.as_ptr() as usize);
            sizes.push(list.ids.len());
        }
        if let Some(bad) = slots.iter().find(|&&s| s >= 0 && s as usize >= lists.len()) {
            return Err(FaissError::new(format!("list slot {bad} out of range")));
        }
        let spec = filter.spec();
        let mut distances = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        // SAFETY: every address comes from a slice in `lists`, borrowed for
        // this call, with lengths checked against `code_size` above; ids are
        // `&[i64]` and so aligned; codes alignment is checked above.
        unsafe {
            ffi::scan_lists(
                &self.inner,
                n,
                xt,
                k,
                nprobe,
                &assignment.lists,
                &assignment.distances,
                slots,
                &codes_addr,
                &ids_addr,
                &sizes,
                &spec,
                &mut distances,
                &mut labels,
            )?;
        }
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
        ffi::search_full(&self.inner, n, x, k, nprobe, &spec, &mut distances, &mut labels)?;
        Ok(Neighbors { distances, labels })
    }

    pub fn is_trained(&self) -> bool {
        ffi::is_trained(&self.inner)
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

    /// Serializes the index as `faiss.write_index` would.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = ffi::write_index_bytes(&self.inner)?;
        Ok(bytes.as_slice().to_vec())
    }

    fn pinned(&mut self) -> Result<std::pin::Pin<&mut ffi::IvfIndex>> {
        self.inner
            .as_mut()
            .ok_or_else(|| FaissError::new("index handle is null"))
    }
}
