//! `ivflake.open` and the `Index` class: faiss's `(D, I) = index.search(xq, k)`
//! over an index in a bucket.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ivflake::{
    DiskCacheConfig, FetchConfig, FetchScheduler, IvfIndex, ManifestMode, OpenOptions, Preload, SearchParams,
    SearchStats, WarmSpec,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::convert::{id_filter, queries, to_dict, Neighbours};
use crate::errors::to_py;
use crate::runtime::wait;
use crate::store::locate;

/// A count or size given as a Python int: negative is a `ValueError` naming
/// the parameter (PyO3 would raise `OverflowError` for an unsigned one).
fn non_negative(name: &str, value: Option<i64>) -> PyResult<Option<u64>> {
    value
        .map(|v| u64::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be 0 or more, not {v}"))))
        .transpose()
}

/// Disk tier budget when `disk_cache_dir` is given without `disk_cache_bytes`:
/// the server's default, several times the memory tier and small beside a data disk.
const DEFAULT_DISK_CACHE_BYTES: u64 = 10 << 30;

/// Opens the Faiss IVF index at `uri`, reading only its header.
///
/// A mutable index's prefix (a URI ending in "/", or a local directory)
/// opens as a `MutableIndex` instead, as `open_mutable` opens it.
///
/// `uri` is ``s3://bucket/key``, ``gs://bucket/key``, ``az://container/key``,
/// ``file:///abs/path`` or a path. Credentials and endpoints come from the
/// environment as in the CLI (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``);
/// `store_options` override them with object_store config keys, e.g.
/// ``endpoint="http://127.0.0.1:9000", allow_http=True, region="us-east-1"``.
///
/// `memory_cache_bytes` bounds this index's list cache (default 256 MiB, 0
/// disables it). `disk_cache_dir` adds a disk tier of `disk_cache_bytes`
/// (default 10 GiB) that survives restarts. `manifest` says what to do with
/// the checksum sidecar ``ivflake manifest`` writes: use it when present
/// ("auto"), never look ("ignore"), or refuse to open without it ("require").
/// `preload` loads list data into the memory cache in the background after
/// open ("auto": every list when they fit a quarter of the cache, else the
/// most probed of earlier runs; a float sets the share); searches run
/// meanwhile, and `Index.preloaded()` waits for it. An IndexIDMap's user ids
/// are loaded at open when they take at most `id_map_memory_bytes` (default
/// 64 MiB), else read per search (and id filters are refused).
///
/// Raises IndexNotFound, CorruptIndex, UnsupportedIndex, ValueError (bad URI
/// or option) or IvflakeError (the store failed). Ctrl-C interrupts it.
///
/// Example::
///
///     index = ivflake.open("s3://bucket/index.faiss", memory_cache_bytes=1 << 30)
///     D, I = index.search(xq, 10, nprobe=16)
#[pyfunction]
#[pyo3(signature = (uri, *, memory_cache_bytes=None, disk_cache_dir=None, disk_cache_bytes=None, manifest="auto", preload=None, id_map_memory_bytes=None, **store_options))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn open(
    py: Python<'_>,
    uri: &Bound<'_, PyAny>,
    memory_cache_bytes: Option<i64>,
    disk_cache_dir: Option<PathBuf>,
    disk_cache_bytes: Option<i64>,
    manifest: &str,
    preload: Option<&Bound<'_, PyAny>>,
    id_map_memory_bytes: Option<i64>,
    store_options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Index> {
    // A str, or an os.PathLike for local files.
    let uri: String = match uri.extract::<String>() {
        Ok(s) => s,
        Err(_) => uri.extract::<PathBuf>()?.to_string_lossy().into_owned(),
    };
    let manifest = match manifest {
        "auto" => ManifestMode::Auto,
        "ignore" => ManifestMode::Ignore,
        "require" => ManifestMode::Require,
        other => {
            return Err(PyValueError::new_err(format!(
                "manifest must be \"auto\", \"ignore\" or \"require\", not {other:?}"
            )))
        }
    };
    let preload = preload_option(preload)?;
    let mut fetch = FetchConfig::default();
    let memory_cache_bytes = non_negative("memory_cache_bytes", memory_cache_bytes)?;
    let disk_cache_bytes = non_negative("disk_cache_bytes", disk_cache_bytes)?;
    let id_map_memory_bytes =
        non_negative("id_map_memory_bytes", id_map_memory_bytes)?.unwrap_or(ivflake::DEFAULT_ID_MAP_MEMORY_BYTES);
    if let Some(bytes) = memory_cache_bytes {
        fetch.memory_cache_bytes = bytes;
    }
    if disk_cache_bytes.is_some() && disk_cache_dir.is_none() {
        return Err(PyValueError::new_err("disk_cache_bytes needs disk_cache_dir"));
    }
    fetch.disk_cache = disk_cache_dir.map(|dir| DiskCacheConfig {
        dir,
        capacity_bytes: disk_cache_bytes.unwrap_or(DEFAULT_DISK_CACHE_BYTES),
    });
    let mut options: Vec<(String, String)> = Vec::new();
    if let Some(store_options) = store_options {
        for (key, value) in store_options.iter() {
            let key: String = key.extract()?;
            // Booleans as object_store spells them; everything else by str().
            let value = match value.extract::<bool>() {
                Ok(b) => b.to_string(),
                Err(_) => value.str()?.to_string(),
            };
            options.push((key, value));
        }
    }
    let location = locate(&uri, &options, &fetch)?;
    let opened = wait(py, async move {
        // The scheduler owns the disk tier, whose setup does file I/O: build it in the runtime.
        let scheduler = FetchScheduler::try_new(fetch)?;
        let options = OpenOptions {
            scheduler,
            manifest,
            preload,
            id_map_memory_bytes,
            ..OpenOptions::default()
        };
        IvfIndex::open_at(location, options).await
    })?
    .map_err(to_py)?;
    let nprobe = opened.info().default_nprobe.clamp(1, opened.info().nlist.max(1));
    Ok(Index {
        current: RwLock::new(opened),
        nprobe: AtomicUsize::new(nprobe),
        last_stats: Arc::new(Mutex::new(None)),
    })
}

/// `preload`: None or "off", "auto" (a quarter of the memory cache), or the
/// share of the cache as a float.
fn preload_option(preload: Option<&Bound<'_, PyAny>>) -> PyResult<Preload> {
    let Some(value) = preload else { return Ok(Preload::Off) };
    if let Ok(word) = value.extract::<String>() {
        return match word.as_str() {
            "off" => Ok(Preload::Off),
            "auto" => Ok(Preload::auto()),
            other => Err(PyValueError::new_err(format!(
                "preload must be \"off\", \"auto\" or a share of the memory cache in (0, 1], not {other:?}"
            ))),
        };
    }
    let share: f64 = value
        .extract()
        .map_err(|_| PyValueError::new_err("preload must be \"off\", \"auto\" or a float in (0, 1]"))?;
    let preload = Preload::Auto {
        max_cache_fraction: share,
    };
    preload.validate().map_err(to_py)?;
    Ok(preload)
}

/// A Faiss IVF index served from object storage: only its header is in
/// memory; each search fetches the lists it probes. Thread-safe: searches
/// release the GIL and run in parallel.
#[pyclass(module = "ivflake", frozen)]
pub(crate) struct Index {
    /// Replaced whole by `reload()`; searches clone the handle (an `Arc`) and
    /// finish on the version they started on.
    current: RwLock<IvfIndex>,
    nprobe: AtomicUsize,
    last_stats: Arc<Mutex<Option<SearchStats>>>,
}

impl Index {
    fn handle(&self) -> IvfIndex {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn params(&self, keywords: SearchKeywords<'_, '_>) -> PyResult<SearchParams> {
        search_params(keywords, self.nprobe.load(Ordering::Relaxed))
    }
}

/// The search parameters of one call, checked before any work; `nprobe`
/// when the call gives none.
pub(crate) fn search_params(keywords: SearchKeywords<'_, '_>, default_nprobe: usize) -> PyResult<SearchParams> {
    {
        let SearchKeywords {
            k,
            nprobe,
            filter,
            ids,
            allow_partial,
            timeout,
            attribute_filter,
            k_factor,
        } = keywords;
        let k = positive(k, "k")?;
        let nprobe = match nprobe {
            Some(n) => positive(n, "nprobe")?,
            None => default_nprobe,
        };
        let deadline = match timeout {
            None => None,
            Some(secs) => Some(
                Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        PyValueError::new_err(format!("timeout must be a positive number of seconds, not {secs}"))
                    })?,
            ),
        };
        Ok(SearchParams {
            filter: id_filter(filter, ids)?,
            attribute_filter: attribute_filter.map(parse_attribute_filter).transpose()?,
            allow_partial,
            deadline,
            k_factor: k_factor.map(|f| f as f32),
            ..SearchParams::new(k, nprobe)
        })
    }
}

/// The keywords `search` and `search_async` share, as Python passed them.
pub(crate) struct SearchKeywords<'a, 'py> {
    pub k: i64,
    pub nprobe: Option<i64>,
    pub filter: Option<&'a Bound<'py, PyAny>>,
    pub ids: Option<&'a Bound<'py, PyAny>>,
    pub allow_partial: bool,
    pub timeout: Option<f64>,
    pub attribute_filter: Option<&'a Bound<'py, PyAny>>,
    pub k_factor: Option<f64>,
}

/// An attribute filter given as a dict (or a JSON string), in S3 Vectors' language.
fn parse_attribute_filter(value: &Bound<'_, PyAny>) -> PyResult<ivflake::AttributeFilter> {
    let text: String = match value.extract::<String>() {
        Ok(text) => text,
        Err(_) => value.py().import("json")?.call_method1("dumps", (value,))?.extract()?,
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PyValueError::new_err(format!("attribute_filter is not JSON: {e}")))?;
    ivflake::AttributeFilter::from_json_at(&json, "attribute_filter").map_err(to_py)
}

pub(crate) fn positive(value: i64, name: &str) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a positive integer, not {value}")))
}

/// One `search_async` call, checked and holding its own copy of the
/// queries, waiting for the coroutine that awaits it to start it.
#[pyclass(module = "ivflake._ivflake", frozen)]
pub(crate) struct PendingSearch {
    /// Taken by the one `start`.
    search: Mutex<Option<AsyncSearch>>,
}

struct AsyncSearch {
    index: IvfIndex,
    vectors: Vec<f32>,
    params: SearchParams,
    last_stats: Arc<Mutex<Option<SearchStats>>>,
}

#[pymethods]
impl PendingSearch {
    /// Starts the search and returns it as a future of the running asyncio
    /// loop (RuntimeError with none). Cancelling the future drops the search,
    /// which aborts its GETs unless another search awaits the same lists.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let AsyncSearch {
            index,
            vectors,
            params,
            last_stats,
        } = self
            .search
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this search_async call was already awaited"))?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let results = index.search_with(&vectors, &params).await.map_err(to_py)?;
            *last_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(results.stats.clone());
            Ok(Neighbours(results))
        })
    }
}

#[pymethods]
impl Index {
    /// `(D, I)` for the `k` nearest neighbours of each row of `xq`, as faiss returns them.
    ///
    /// `xq` is an (n, d) float32 array (used without a copy when C-contiguous;
    /// other dtypes and layouts are converted) or one d-vector. `ids` keeps
    /// only those ids (an allow-list); `filter` takes the id filter forms of
    /// the HTTP API. `allow_partial` returns what could be scanned when lists
    /// fail to fetch (named in `last_stats["failed_lists"]`). `timeout` is in
    /// seconds (DeadlineExceeded past it). `attribute_filter` (a dict or JSON
    /// string in Amazon S3 Vectors' language, e.g. `{"category": "shoes",
    /// "price": {"$lt": 50}}`) keeps only rows whose attributes match; it
    /// needs the `<index>.attrs.parquet` that `ivflake build --input x.parquet`
    /// or `ivflake attributes` writes. `k_factor` sets how many candidates a
    /// refined index (`…,RFlat`, IndexRefine) re-ranks per result; the file's
    /// when left out.
    ///
    /// Releases the GIL for the whole search; Ctrl-C cancels it. Raises
    /// ValueError for a bad dimension, NaN/inf, k, nprobe or attribute filter
    /// (naming its JSON path).
    ///
    /// Example::
    ///
    ///     D, I = index.search(xq, 10, nprobe=16, attribute_filter={"price": {"$lt": 50}})
    #[pyo3(signature = (xq, k, *, nprobe=None, filter=None, ids=None, allow_partial=false, timeout=None, attribute_filter=None, k_factor=None))]
    // Python's keyword arguments, one parameter each.
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        xq: &Bound<'py, PyAny>,
        k: i64,
        nprobe: Option<i64>,
        filter: Option<&Bound<'py, PyAny>>,
        ids: Option<&Bound<'py, PyAny>>,
        allow_partial: bool,
        timeout: Option<f64>,
        attribute_filter: Option<&Bound<'py, PyAny>>,
        k_factor: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let params = self.params(SearchKeywords {
            k,
            nprobe,
            filter,
            ids,
            allow_partial,
            timeout,
            attribute_filter,
            k_factor,
        })?;
        let index = self.handle();
        let array = queries(xq, index.info().d)?;
        let vectors = array
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("xq: {e}")))?;
        let results = wait(py, index.search_with(vectors, &params))?.map_err(to_py)?;
        *self.last_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(results.stats.clone());
        Ok(Neighbours(results).into_pyobject(py)?.into_any())
    }

    /// `search` for asyncio: `D, I = await index.search_async(xq, k)`.
    ///
    /// Returns a coroutine, as an `async def` does, so `asyncio.run` takes it
    /// and it may be made before the event loop runs. The arguments are
    /// checked and the queries copied now (the array may change before the
    /// await); the search starts on the process's tokio runtime when the
    /// coroutine is first awaited. Cancelling the task cancels the search.
    #[pyo3(signature = (xq, k, *, nprobe=None, filter=None, ids=None, allow_partial=false, timeout=None, attribute_filter=None, k_factor=None))]
    // Python's keyword arguments, one parameter each.
    #[allow(clippy::too_many_arguments)]
    fn search_async<'py>(
        &self,
        py: Python<'py>,
        xq: &Bound<'py, PyAny>,
        k: i64,
        nprobe: Option<i64>,
        filter: Option<&Bound<'py, PyAny>>,
        ids: Option<&Bound<'py, PyAny>>,
        allow_partial: bool,
        timeout: Option<f64>,
        attribute_filter: Option<&Bound<'py, PyAny>>,
        k_factor: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let params = self.params(SearchKeywords {
            k,
            nprobe,
            filter,
            ids,
            allow_partial,
            timeout,
            attribute_filter,
            k_factor,
        })?;
        let vectors = queries(xq, self.handle().info().d)?
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("xq: {e}")))?
            .to_vec();
        let pending = PendingSearch {
            search: Mutex::new(Some(AsyncSearch {
                index: self.handle(),
                vectors,
                params,
                last_stats: self.last_stats.clone(),
            })),
        };
        // An asyncio future belongs to the loop running when it is made, and
        // there may be none yet: the coroutine of `ivflake/_aio.py` makes it
        // inside the loop that awaits it.
        static COROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        COROUTINE.import(py, "ivflake._aio", "search_async")?.call1((pending,))
    }

    /// Loads lists into the caches before searches ask for them: `lists` by
    /// number, the `largest` lists by bytes, and the `most_probed` so far.
    /// Returns what was loaded, as a dict.
    #[pyo3(signature = (lists=None, *, largest=0, most_probed=0))]
    fn warm<'py>(
        &self,
        py: Python<'py>,
        lists: Option<Vec<i64>>,
        largest: i64,
        most_probed: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lists = lists
            .unwrap_or_default()
            .into_iter()
            .map(|l| usize::try_from(l).map_err(|_| PyValueError::new_err(format!("lists: {l} is not a list number"))))
            .collect::<PyResult<Vec<usize>>>()?;
        let spec = WarmSpec {
            lists,
            largest: non_negative("largest", Some(largest))?.unwrap_or(0) as usize,
            most_probed: non_negative("most_probed", Some(most_probed))?.unwrap_or(0) as usize,
        };
        let index = self.handle();
        let report = wait(py, async move { index.warm(&spec).await })?.map_err(to_py)?;
        to_dict(py, &report)
    }

    /// Waits for the background preload `open(preload=...)` started, and
    /// returns where it stands as a dict (`state`: "off", "skipped" with a
    /// `reason`, or "done"; the lists and bytes planned; `load`: what loaded).
    fn preloaded<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let index = self.handle();
        let status = wait(py, async move { index.preloaded().await })?;
        to_dict(py, &status)
    }

    /// Switches to the object's current version in the store (after it was
    /// rewritten). Searches already running finish on the old version.
    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        let index = self.handle();
        let fresh = wait(py, async move { index.reload().await })?.map_err(to_py)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Cache counters of this index's scheduler (hits, misses, evictions,
    /// resident and capacity bytes per tier) and `residency`: the lists and
    /// bytes of this index held in memory and on disk.
    fn cache_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let index = self.handle();
        let (report, residency) = wait(py, async move {
            (index.scheduler().cache_report().await, index.residency().await)
        })?;
        let info = to_dict(py, &report)?;
        info.set_item("residency", to_dict(py, &residency)?)?;
        Ok(info)
    }

    /// Stats of the last search that finished on this index (from any thread),
    /// as a dict: lists probed and where each came from, GETs, bytes, and
    /// the time spent in the quantizer, fetching and scanning. None before any search.
    #[getter]
    fn last_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let stats = self.last_stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
        stats.map(|s| to_dict(py, &s)).transpose()
    }

    /// What opening this index cost, as a dict: `gets`, `bytes` of the index
    /// file read, and `ms` from the first request to a searchable index.
    #[getter]
    fn open_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_dict(py, &self.handle().open_stats())
    }

    /// Dimension of the query vectors.
    #[getter]
    fn d(&self) -> usize {
        self.handle().info().d
    }

    /// Number of vectors in the index.
    #[getter]
    fn ntotal(&self) -> i64 {
        self.handle().info().ntotal
    }

    /// Number of inverted lists.
    #[getter]
    fn nlist(&self) -> usize {
        self.handle().info().nlist
    }

    /// "l2" or "inner_product".
    #[getter]
    fn metric(&self) -> &'static str {
        self.handle().info().metric.name()
    }

    /// Faiss type, e.g. "IndexIVFPQ[IndexFlat]".
    #[getter(r#type)]
    fn type_name(&self) -> String {
        self.handle().info().type_name.clone()
    }

    /// The version being served: the object's ETag, or its size where the store gives none.
    #[getter]
    fn version(&self) -> String {
        let index = self.handle();
        index
            .e_tag()
            .map(str::to_string)
            .unwrap_or_else(|| index.file_len().to_string())
    }

    /// The URI the index was opened from.
    #[getter]
    fn uri(&self) -> String {
        self.handle().uri().to_string()
    }

    /// Lists probed per query when `search` is not given `nprobe`; starts at
    /// the nprobe stored in the file. Settable, as in faiss.
    #[getter]
    fn get_nprobe(&self) -> usize {
        self.nprobe.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_nprobe(&self, nprobe: i64) -> PyResult<()> {
        let nlist = self.handle().info().nlist;
        let nprobe = positive(nprobe, "nprobe")?;
        if nprobe > nlist {
            return Err(PyValueError::new_err(format!(
                "nprobe must be at most nlist ({nlist}), not {nprobe}"
            )));
        }
        self.nprobe.store(nprobe, Ordering::Relaxed);
        Ok(())
    }

    fn __repr__(&self) -> String {
        let index = self.handle();
        let info = index.info();
        format!(
            "ivflake.Index({:?}, type={:?}, d={}, ntotal={}, nlist={}, nprobe={})",
            index.uri(),
            info.type_name,
            info.d,
            info.ntotal,
            info.nlist,
            self.nprobe.load(Ordering::Relaxed)
        )
    }
}
