//! `ivflake.create` and the `MutableIndex` class: an index under a prefix
//! that takes `upsert` and `delete` (Faiss's `add_with_ids` order: vectors,
//! then ids), searched as `Index` is, and compacted into standard Faiss files.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ivflake::{CompactOptions, Metric, MutableIndex as Inner, MutableOptions, SearchStats, Staleness};
use numpy::{IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::convert::{queries, to_dict, Neighbours};
use crate::errors::to_py;
use crate::index::{positive, search_params, SearchKeywords};
use crate::runtime::wait;

fn options(staleness: Option<f64>) -> PyResult<MutableOptions> {
    let staleness = match staleness {
        None => MutableOptions::default().staleness,
        Some(0.0) => Staleness::Strong,
        Some(secs) => Staleness::Bounded(Duration::try_from_secs_f64(secs).map_err(|_| {
            PyValueError::new_err(format!(
                "staleness must be 0 (strong) or a positive number of seconds, not {secs}"
            ))
        })?),
    };
    Ok(MutableOptions {
        staleness,
        ..MutableOptions::default()
    })
}

/// Creates a mutable index under the prefix `uri` (``s3://bucket/products/``
/// or a local directory): empty, of dimension `d` with `metric` ("l2" or
/// "inner_product"), searched exactly until a compaction has enough vectors
/// to train `factory` (e.g. "IVF1024,PQ32"); or, with `from_uri`, on an
/// existing Faiss IVF file, used in place. Raises UnsupportedIndex for a
/// store that ignores conditional writes (it would let writers overwrite
/// each other) or an index that cannot take writes. `keep_vectors=False`
/// keeps no raw vectors for `get` (ids and attributes are kept).
#[pyfunction]
#[pyo3(signature = (uri, *, d=None, metric="l2", factory=None, from_uri=None, staleness=None, keep_vectors=true))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn create(
    py: Python<'_>,
    uri: String,
    d: Option<i64>,
    metric: &str,
    factory: Option<String>,
    from_uri: Option<String>,
    staleness: Option<f64>,
    keep_vectors: bool,
) -> PyResult<MutableIndex> {
    let options = MutableOptions {
        keep_vectors,
        ..options(staleness)?
    };
    let metric = Metric::from_name(metric)
        .ok_or_else(|| PyValueError::new_err(format!("metric must be \"l2\" or \"inner_product\", not {metric:?}")))?;
    let inner = match (from_uri, d, factory) {
        (Some(from), None, None) => wait(py, Inner::create_from(&uri, &from, options))?,
        (None, Some(d), Some(factory)) => {
            let d = positive(d, "d")?;
            wait(py, Inner::create(&uri, d, metric, &factory, options))?
        }
        _ => return Err(PyValueError::new_err("give from_uri, or d and factory")),
    }
    .map_err(to_py)?;
    Ok(MutableIndex::new(inner))
}

/// Opens the mutable index under `uri`. `staleness`: seconds after which a
/// search first reads what other processes wrote (0: every search does).
#[pyfunction]
#[pyo3(signature = (uri, *, staleness=None))]
pub(crate) fn open_mutable(py: Python<'_>, uri: String, staleness: Option<f64>) -> PyResult<MutableIndex> {
    let options = options(staleness)?;
    let inner = wait(py, Inner::open(&uri, options))?.map_err(to_py)?;
    Ok(MutableIndex::new(inner))
}

/// An index that takes writes. Each write returns once it is durable in the
/// store, and searches in this process see it at once.
#[pyclass(module = "ivflake", frozen)]
pub(crate) struct MutableIndex {
    inner: Inner,
    last_stats: Arc<Mutex<Option<SearchStats>>>,
}

impl MutableIndex {
    fn new(inner: Inner) -> Self {
        Self {
            inner,
            last_stats: Arc::new(Mutex::new(None)),
        }
    }
}

/// An id array: int64, one dimension.
fn ids_of<'py>(ids: &Bound<'py, PyAny>) -> PyResult<Vec<i64>> {
    let np = ids.py().import("numpy")?;
    let array = np.call_method1("ascontiguousarray", (ids, np.getattr("int64")?))?;
    let array: PyReadonlyArray1<'py, i64> = array
        .extract()
        .map_err(|_| PyValueError::new_err("ids must be a 1-D array of integers"))?;
    Ok(array.as_slice()?.to_vec())
}

#[pymethods]
impl MutableIndex {
    /// `(D, I)` for the `k` nearest neighbours of each row of `xq` among the
    /// base and every write since. `nprobe` is capped at the base's lists.
    /// `attribute_filter` (S3 Vectors' filter language) reads the base's
    /// attributes and those writes carried.
    #[pyo3(signature = (xq, k, *, nprobe=16, filter=None, ids=None, timeout=None, attribute_filter=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        xq: &Bound<'py, PyAny>,
        k: i64,
        nprobe: i64,
        filter: Option<&Bound<'py, PyAny>>,
        ids: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        attribute_filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let params = search_params(
            SearchKeywords {
                k,
                nprobe: Some(nprobe),
                filter,
                ids,
                allow_partial: false,
                timeout,
                attribute_filter,
                k_factor: None,
            },
            16,
        )?;
        let array = queries(xq, self.inner.version().d)?;
        let vectors = array
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("xq: {e}")))?;
        let results = wait(py, self.inner.search_with(vectors, &params))?.map_err(to_py)?;
        *self.last_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(results.stats.clone());
        Ok(Neighbours(results).into_pyobject(py)?.into_any())
    }

    /// Inserts the rows of `xb` under `ids`, replacing any id present
    /// (vector and attributes). `attributes`, when given, is one row per
    /// id: a list of dicts, a dict of columns, or a pyarrow Table; values
    /// are str, int, float, bool or None, and a column keeps the type it
    /// was first written with. Returns the log position it was committed
    /// at, once durable.
    #[pyo3(signature = (xb, ids, attributes=None))]
    fn upsert(
        &self,
        py: Python<'_>,
        xb: &Bound<'_, PyAny>,
        ids: &Bound<'_, PyAny>,
        attributes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let array = queries(xb, self.inner.version().d)?;
        let vectors = array
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("xb: {e}")))?;
        let ids = ids_of(ids)?;
        if ids.len() != array.shape()[0] {
            return Err(PyValueError::new_err(format!(
                "{} ids for {} vectors",
                ids.len(),
                array.shape()[0]
            )));
        }
        let attributes = match attributes {
            Some(a) => Some(attribute_rows(a, ids.len(), &self.inner.attribute_schema())?),
            None => None,
        };
        wait(py, self.inner.upsert_with(vectors, &ids, attributes.as_ref()))?.map_err(to_py)
    }

    /// `(xb, attributes)` for `ids`: `xb` an (n, d) float32 array of their
    /// raw vectors (rows of NaN where an id is absent or keeps no vector),
    /// `attributes` a list with a dict of each id's attributes, or None
    /// where the id is absent.
    fn get<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let ids = ids_of(ids)?;
        let d = self.inner.version().d;
        let rows = wait(py, self.inner.get(&ids))?.map_err(to_py)?;
        let mut xb = vec![f32::NAN; ids.len() * d];
        let mut attributes = Vec::with_capacity(ids.len());
        for (i, row) in rows.iter().enumerate() {
            match row {
                Some(row) => {
                    if let Some(v) = &row.vector {
                        xb[i * d..(i + 1) * d].copy_from_slice(v);
                    }
                    attributes.push(to_dict(py, &row.attributes)?);
                }
                None => attributes.push(py.None().into_bound(py)),
            }
        }
        let xb = xb.into_pyarray(py).reshape([ids.len(), d])?;
        (xb, attributes).into_pyobject(py).map(|t| t.into_any())
    }

    /// Deletes `ids` (absent ones are ignored). Returns the log position.
    fn delete(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<u64> {
        let ids = ids_of(ids)?;
        wait(py, self.inner.delete(&ids))?.map_err(to_py)
    }

    /// Folds the write log into a new standard Faiss base (training an
    /// empty index's quantizer and codec once it has enough vectors).
    /// Returns what it did as a dict, or None when there was nothing to fold.
    /// `retrain=True` trains a fresh quantizer and codec with the index's
    /// factory on every kept raw vector instead.
    #[pyo3(signature = (*, min_train_per_list=39, retrain=false))]
    fn compact<'py>(
        &self,
        py: Python<'py>,
        min_train_per_list: usize,
        retrain: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let options = CompactOptions {
            min_train_per_list,
            retrain,
            ..CompactOptions::default()
        };
        let report = wait(py, self.inner.compact(&options))?.map_err(to_py)?;
        report.map(|r| to_dict(py, &r)).transpose()
    }

    /// Deletes files no version younger than `retention_secs` names.
    #[pyo3(signature = (*, retention_secs=3600.0))]
    fn gc<'py>(&self, py: Python<'py>, retention_secs: f64) -> PyResult<Bound<'py, PyAny>> {
        let retention = Duration::try_from_secs_f64(retention_secs)
            .map_err(|_| PyValueError::new_err("retention_secs must be 0 or more"))?;
        let report = wait(py, self.inner.gc(retention))?.map_err(to_py)?;
        to_dict(py, &report)
    }

    /// Reads what other processes wrote since this one last looked.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        wait(py, self.inner.refresh())?.map_err(to_py)
    }

    /// The URI of the current base file (a standard Faiss file).
    #[getter]
    fn base_uri(&self) -> String {
        self.inner.base_uri()
    }

    /// The current version's number.
    #[getter]
    fn version(&self) -> u64 {
        self.inner.version_position()
    }

    /// The last write log position applied; None before the first write.
    #[getter]
    fn log_position(&self) -> Option<u64> {
        self.inner.log_position()
    }

    /// Entries written since the base and not yet compacted.
    #[getter]
    fn unindexed(&self) -> u64 {
        self.inner.unindexed().0
    }

    #[getter]
    fn d(&self) -> usize {
        self.inner.version().d
    }

    #[getter]
    fn metric(&self) -> String {
        self.inner.version().metric
    }

    /// Lists of the current base (1 until the first trained compaction).
    #[getter]
    fn nlist(&self) -> usize {
        self.inner.base().info().nlist
    }

    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string()
    }

    /// Stats of the last search, as a dict (with `version` and `log_position`).
    #[getter]
    fn last_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let stats = self.last_stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
        stats.map(|s| to_dict(py, &s)).transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "ivflake.MutableIndex({:?}, version={}, base={:?}, unindexed={})",
            self.inner.uri(),
            self.inner.version_position(),
            self.inner.base_uri(),
            self.inner.unindexed().0
        )
    }
}

/// A write's attributes as a batch: rows of dicts, a dict of columns, or
/// anything with `to_pylist()` (pyarrow), through JSON (numpy values by
/// their `tolist()`).
fn attribute_rows(
    value: &Bound<'_, PyAny>,
    n: usize,
    schema: &arrow_schema::Schema,
) -> PyResult<arrow_array::RecordBatch> {
    let py = value.py();
    let value = if value.hasattr("to_pylist")? {
        value.call_method0("to_pylist")?
    } else {
        value.clone()
    };
    let tolist = py.import("operator")?.call_method1("methodcaller", ("tolist",))?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("default", tolist)?;
    kwargs.set_item("allow_nan", false)?;
    let text: String = py
        .import("json")?
        .call_method("dumps", (&value,), Some(&kwargs))
        .map_err(|e| PyValueError::new_err(format!("attributes: {e}")))?
        .extract()?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PyValueError::new_err(format!("attributes: {e}")))?;
    let rows = match json {
        serde_json::Value::Array(rows) => rows,
        serde_json::Value::Object(columns) => {
            let mut rows = vec![serde_json::Map::new(); n];
            for (name, column) in columns {
                let values = column.as_array().filter(|v| v.len() == n).ok_or_else(|| {
                    PyValueError::new_err(format!("attributes: column {name:?} is not a sequence of {n} values"))
                })?;
                for (row, v) in rows.iter_mut().zip(values) {
                    row.insert(name.clone(), v.clone());
                }
            }
            rows.into_iter().map(serde_json::Value::Object).collect()
        }
        _ => {
            return Err(PyValueError::new_err(
                "attributes: give a list of dicts, a dict of columns or a pyarrow Table",
            ))
        }
    };
    if rows.len() != n {
        return Err(PyValueError::new_err(format!(
            "attributes: {} rows for {n} ids",
            rows.len()
        )));
    }
    ivflake::attributes_from_json("attributes", &rows, schema).map_err(to_py)
}
