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

mod error;
mod kinds;
mod list_format;
mod open;
mod tombstones;
mod wrappers;

pub use error::{FaissError, FaissErrorKind, Result};
pub use kinds::{served_types, IvfKind, Metric};
pub use list_format::ListFormat;
pub use open::{open_header, open_header_parts, read_index, HeaderProbe};
pub use tombstones::{add_to_hidden_bloom, hidden_bloom, hidden_bloom_words};
pub use wrappers::{IdMapInfo, OnDiskInfo, OnDiskList, RefineInfo};

// The bridge is the crate's one `unsafe` seam: cxx generates the extern
// declarations and checks every signature against the shim's header.
#[allow(unsafe_code)]
#[cxx::bridge(namespace = "ivflake")]
mod ffi {
    /// The distance an index ranks by.
    #[derive(Debug)]
    enum Metric {
        L2,
        InnerProduct,
    }

    /// How the file stores inverted lists (see the public `ListFormat`).
    #[derive(Debug)]
    enum ListFormat {
        /// Faiss's `ArrayInvertedLists` ("ilar").
        Array,
        /// Faiss's `BlockInvertedLists` ("ilbl", fast-scan).
        Blocks,
    }

    /// The IVF classes ivflake serves. `shim.cc`'s table of served types maps
    /// each Faiss class to one of these; everything else is `NotServed`.
    #[derive(Debug)]
    enum IvfKind {
        NotServed,
        Flat,
        Pq,
        ScalarQuantizer,
        PqFastScan,
        RaBitQ,
    }

    /// One row of the shim's table of served types.
    struct ServedType {
        kind: IvfKind,
        class_name: String,
    }

    struct IndexInfo {
        type_name: String,
        d: usize,
        ivf_d: usize,
        metric: Metric,
        ivf_kind: IvfKind,
        ntotal: i64,
        nlist: usize,
        code_size: usize,
        default_nprobe: usize,
        has_transform: bool,
        list_data_offset: u64,
        list_data_end: u64,
        /// Block lists ("ilbl", fast-scan): sizes sit inline in the file.
        list_format: ListFormat,
        n_per_block: usize,
        block_size: usize,
        /// IndexRefine: the file's k_factor (0: none), refine code bytes, where codes start.
        k_factor: f32,
        refine_code_size: usize,
        refine_codes_offset: u64,
        /// IndexIDMap / IndexIDMap2: where the ntotal user ids start.
        id_map: bool,
        id_map2: bool,
        id_map_offset: u64,
        /// On-disk lists ("ilod") in a data file of `on_disk_totsize` bytes.
        on_disk: bool,
        on_disk_totsize: u64,
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

    /// One fetched run of entries of an inverted list: `ids.len()` vectors,
    /// their codes in the index's list format.
    struct ListBuffer<'a> {
        codes: &'a [u8],
        ids: &'a [i64],
    }

    /// One layer of a scan: for each probe, the entry of `buffers` holding
    /// that layer's part of the probed list (negative: none), and ids this
    /// layer hides (tombstones, sorted ascending) with their bloom filter
    /// (`hidden_bloom`; empty: none).
    struct ScanLayer<'a> {
        slots: &'a [i32],
        hidden: &'a [i64],
        hidden_bloom: &'a [u64],
    }

    /// One scan: transformed queries, their coarse assignment, the fetched
    /// buffers and a filter. Each layer is scanned with Faiss's own
    /// `search_preassigned` and the layers' results merged, so a list made of
    /// a base run and later runs reads as one list.
    struct ScanRequest<'a> {
        queries: &'a [f32],
        k: usize,
        nprobe: usize,
        lists: &'a [i64],
        coarse_distances: &'a [f32],
        layers: &'a [ScanLayer<'a>],
        buffers: &'a [ListBuffer<'a>],
        filter: FilterSpec<'a>,
    }

    unsafe extern "C++" {
        include!("shim.h");

        type IvfIndex;

        fn open_header(
            prefix: &[u8],
            segments: &[u8],
            segment_offsets: &[u64],
            file_len: u64,
            alloc_cap: usize,
            needed_start: &mut u64,
            needed_end: &mut u64,
        ) -> Result<UniquePtr<IvfIndex>>;
        fn on_disk_lists(index: &IvfIndex) -> Result<Vec<u64>>;
        fn on_disk_filename(index: &IvfIndex) -> Result<String>;
        #[allow(clippy::too_many_arguments)]
        fn refine(
            index: &IvfIndex,
            x: &[f32],
            k: usize,
            k_base: usize,
            base_labels: &[i64],
            base_distances: &[f32],
            codes: &[u8],
            distances: &mut [f32],
            labels: &mut [i64],
        ) -> Result<()>;
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
        #[allow(clippy::too_many_arguments)]
        fn search_full(
            index: &IvfIndex,
            x: &[f32],
            k: usize,
            nprobe: usize,
            k_factor: f32,
            filter: &FilterSpec,
            distances: &mut [f32],
            labels: &mut [i64],
        ) -> Result<()>;
        fn index_factory(d: usize, description: &str, metric: Metric) -> Result<UniquePtr<IvfIndex>>;
        fn served_types() -> Result<Vec<ServedType>>;
        fn encode_entries(index: &IvfIndex, n: usize, x: &[f32], lists: &mut [i64], codes: &mut [u8]) -> Result<()>;
        fn pack_list_codes(index: &IvfIndex, n: usize, codes: &[u8], out: &mut [u8]) -> Result<()>;
        fn remove_ids(index: Pin<&mut IvfIndex>, ids: &[i64]) -> Result<usize>;
        fn is_trained(index: &IvfIndex) -> Result<bool>;
        fn train(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn add(index: Pin<&mut IvfIndex>, n: usize, x: &[f32]) -> Result<()>;
        fn add_with_ids(index: Pin<&mut IvfIndex>, n: usize, x: &[f32], ids: &[i64]) -> Result<()>;
        fn write_index_bytes(index: &IvfIndex) -> Result<UniquePtr<CxxVector<u8>>>;
        fn write_header(index: Pin<&mut IvfIndex>, sizes: &[u64]) -> Result<UniquePtr<CxxVector<u8>>>;
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

/// What the header says about an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Pre-transforms, IVF type and `[quantizer]`, e.g. `OPQMatrix,IndexIVFPQ[IndexFlat]`.
    pub type_name: String,
    /// The IVF class, `None` when ivflake does not serve it (an index built
    /// from a factory string can be anything).
    pub ivf_kind: Option<IvfKind>,
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
    /// For [`ListFormat::Blocks`] it is where list 0's id count starts.
    pub list_data_offset: u64,
    /// Where list data ends when wrappers' parts follow it (a refine
    /// index, an id map); `None`: at the end of the file.
    pub list_data_end: Option<u64>,
    /// How the file stores inverted lists.
    pub list_format: ListFormat,
    /// An `IndexRefine` around the IVF: candidates re-ranked with finer codes.
    pub refine: Option<RefineInfo>,
    /// An `IndexIDMap`/`IndexIDMap2` around it all: user ids by position.
    pub id_map: Option<IdMapInfo>,
    /// Lists in a separate data file (`OnDiskInvertedLists`).
    pub on_disk: Option<OnDiskInfo>,
}

/// One fetched inverted list (or run of one): its codes (in the index's
/// [`ListFormat`]) and its ids.
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

/// One scan of fetched buffers (see [`Index::scan`]): the transformed
/// queries, their coarse assignment (`lists`, `coarse_distances`: nprobe per
/// query, row-major), the buffers, and one or more layers naming, per probe,
/// the buffer of that layer's part of the list.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    pub queries: &'a [f32],
    pub k: usize,
    pub lists: &'a [i64],
    pub coarse_distances: &'a [f32],
    pub buffers: &'a [ListSlice<'a>],
    /// At least one; the base's entries first, later runs after.
    pub layers: &'a [ScanLayer<'a>],
    /// Applies to every layer.
    pub filter: IdFilter<'a>,
}

/// One layer of a [`Scan`]: `slots[p]` is the entry of the buffers holding
/// this layer's part of probe `p`'s list (negative: none), and `hidden` the
/// ids this layer must not return (tombstones of entries replaced or deleted
/// after it was written), sorted ascending, with `hidden_bloom` from
/// [`hidden_bloom`] (or empty). Nothing is built per scan from them, so a
/// large set of tombstones costs a scan only its lookups.
#[derive(Debug, Clone, Copy)]
pub struct ScanLayer<'a> {
    pub slots: &'a [i32],
    pub hidden: &'a [i64],
    pub hidden_bloom: &'a [u64],
}

/// Vectors encoded as an index stores them ([`Index::encode_entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEntries {
    pub code_size: usize,
    /// Each vector's list.
    pub lists: Vec<i64>,
    /// `code_size` bytes per vector, in order.
    pub codes: Vec<u8>,
}

impl EncodedEntries {
    /// The code of entry `i`.
    pub fn code(&self, i: usize) -> &[u8] {
        &self.codes[i * self.code_size..(i + 1) * self.code_size]
    }
}

/// An owned Faiss index: either a header opened lazily (no list data) or a
/// fully loaded one (reference searches, building).
pub struct Index {
    inner: cxx::UniquePtr<ffi::IvfIndex>,
    info: IndexInfo,
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
        f.debug_struct("Index").field("info", &self.info).finish()
    }
}

impl Index {
    /// Builds an empty index from a Faiss factory string, e.g. `"OPQ16,IVF256,PQ16"`.
    pub fn factory(d: usize, description: &str, metric: Metric) -> Result<Self> {
        if d == 0 {
            return Err(FaissError::invalid("dimension must be positive"));
        }
        Self::wrap(ffi::index_factory(d, description, metric.to_ffi())?)
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// How the file stores inverted lists.
    pub fn list_format(&self) -> ListFormat {
        self.info.list_format
    }

    /// Number of vectors in each inverted list, as the header states them.
    /// Empty for a lazily opened [`ListFormat::Blocks`] index, whose sizes
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
    /// `search_preassigned`: the one-layer form of [`Index::scan`].
    /// `slots[q * nprobe + j]` names the entry of `lists` holding list
    /// `assignment.lists[q * nprobe + j]`, or is negative when that list was
    /// not fetched.
    pub fn scan_lists(
        &self,
        xt: &[f32],
        k: usize,
        assignment: &CoarseAssignment,
        slots: &[i32],
        lists: &[ListSlice<'_>],
        filter: IdFilter<'_>,
    ) -> Result<Neighbors> {
        self.scan(&Scan {
            queries: xt,
            k,
            lists: &assignment.lists,
            coarse_distances: &assignment.distances,
            buffers: lists,
            layers: &[ScanLayer {
                slots,
                hidden: &[],
                hidden_bloom: &[],
            }],
            filter,
        })
    }

    /// Scans fetched buffers for transformed queries, layer by layer, with
    /// Faiss's own `search_preassigned`, and merges the layers' top `k`
    /// (Faiss's `merge_knn_results`, as `IndexShards` does). One layer gives
    /// exactly Faiss's in-memory result; more read a list as the union of its
    /// layers' buffers, less each layer's hidden ids.
    pub fn scan(&self, scan: &Scan<'_>) -> Result<Neighbors> {
        let n = self.rows(scan.queries, self.info.ivf_d)?;
        let probes = scan.lists.len();
        if n == 0
            || !probes.is_multiple_of(n)
            || scan.coarse_distances.len() != probes
            || scan.layers.is_empty()
            || scan.layers.iter().any(|l| l.slots.len() != probes)
        {
            return Err(FaissError::invalid("coarse assignment does not match the queries"));
        }
        let buffers: Vec<ffi::ListBuffer<'_>> = scan
            .buffers
            .iter()
            .map(|l| ffi::ListBuffer {
                codes: l.codes,
                ids: l.ids,
            })
            .collect();
        let layers: Vec<ffi::ScanLayer<'_>> = scan
            .layers
            .iter()
            .map(|l| {
                debug_assert!(l.hidden.is_sorted(), "tombstones must be sorted");
                ffi::ScanLayer {
                    slots: l.slots,
                    hidden: l.hidden,
                    hidden_bloom: l.hidden_bloom,
                }
            })
            .collect();
        let request = ffi::ScanRequest {
            queries: scan.queries,
            k: scan.k,
            nprobe: probes / n,
            lists: scan.lists,
            coarse_distances: scan.coarse_distances,
            layers: &layers,
            buffers: &buffers,
            filter: scan.filter.spec(),
        };
        let mut distances = vec![0f32; n * scan.k];
        let mut labels = vec![-1i64; n * scan.k];
        ffi::scan_lists(&self.inner, &request, &mut distances, &mut labels)?;
        Ok(Neighbors { distances, labels })
    }

    /// Encodes vectors as the index would store them: each one's list (the
    /// coarse quantizer's nearest, after pre-transforms) and its code
    /// (`code_size` bytes, unpacked even for block lists; see
    /// [`Index::pack_list_codes`]).
    pub fn encode_entries(&self, x: &[f32]) -> Result<EncodedEntries> {
        let n = self.rows(x, self.info.d)?;
        let mut lists = vec![-1i64; n];
        let mut codes = vec![0u8; n * self.info.code_size];
        ffi::encode_entries(&self.inner, n, x, &mut lists, &mut codes)?;
        Ok(EncodedEntries {
            code_size: self.info.code_size,
            lists,
            codes,
        })
    }

    /// The codes of `n` entries of one list (`n * code_size` bytes, as
    /// [`Index::encode_entries`] gives them) in the index's list format: the
    /// same bytes for array lists, packed into blocks for block lists.
    pub fn pack_list_codes(&self, codes: &[u8]) -> Result<Vec<u8>> {
        let code_size = self.info.code_size.max(1);
        if !codes.len().is_multiple_of(code_size) {
            return Err(FaissError::invalid(format!(
                "{} code bytes are not whole {code_size}-byte codes",
                codes.len()
            )));
        }
        let n = codes.len() / code_size;
        let len = self
            .info
            .list_format
            .codes_len(n as u64)
            .ok_or_else(|| FaissError::invalid("list too large"))?;
        let mut out = vec![0u8; len as usize];
        ffi::pack_list_codes(&self.inner, n, codes, &mut out)?;
        Ok(out)
    }

    /// Removes entries by id from a fully loaded index (Faiss's
    /// `remove_ids`); returns how many were removed.
    pub fn remove_ids(&mut self, ids: &[i64]) -> Result<usize> {
        let removed = ffi::remove_ids(self.pinned()?, ids)?;
        self.info.ntotal -= removed as i64;
        Ok(removed)
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
        ffi::search_full(&self.inner, x, k, nprobe, 0.0, &spec, &mut distances, &mut labels)?;
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

    /// The file Faiss writes for this index holding lists of `sizes`, up
    /// to where list data starts; each non-empty list's codes then ids
    /// follow in list order (a compaction streams them).
    pub fn header_for_sizes(&mut self, sizes: &[u64]) -> Result<Vec<u8>> {
        let bytes = ffi::write_header(self.pinned()?, sizes)?;
        Ok(bytes.as_slice().to_vec())
    }

    fn pinned(&mut self) -> Result<std::pin::Pin<&mut ffi::IvfIndex>> {
        self.inner
            .as_mut()
            .ok_or_else(|| FaissError::invalid("index handle is null"))
    }
}
