//! `ivflake.create` and the `MutableIndex` class: an index under a prefix
//! that takes `upsert` and `delete` (Faiss's `add_with_ids` order: vectors,
//! then ids), searched as `Index` is, and compacted into standard Faiss files;
//! and searched by text too (`query`, BM25 and hybrid; conversions in `text.rs`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ivflake::{
    CompactOptions, HybridQuery, Metric, MutableIndex as Inner, MutableOptions, SearchParams, SearchStats, Staleness,
};
use numpy::{IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::convert::{queries, to_dict, Neighbours};
use crate::errors::to_py;
use crate::index::{positive, search_params, SearchKeywords};
use crate::runtime::wait;
use crate::text::{fields_dict, hits_list, text_fields, text_queries};

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
/// `text_fields` makes string attribute columns searchable by text
/// (`query`): a dict `{"column": "language code"}` ("en", "fr", "zh"...; an
/// unknown code raises ValueError listing them) or a list of columns (in
/// English).
#[pyfunction]
#[pyo3(signature = (uri, *, d=None, metric="l2", factory=None, from_uri=None, staleness=None, keep_vectors=true, text_fields=None))]
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
    text_fields: Option<&Bound<'_, PyAny>>,
) -> PyResult<MutableIndex> {
    let text_fields = match text_fields.filter(|f| !f.is_none()) {
        Some(fields) => crate::text::text_fields(fields)?,
        None => Vec::new(),
    };
    let options = MutableOptions {
        keep_vectors,
        text_fields,
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

/// The one query vector of a hybrid query: `xq` 1-D, or one row.
fn one_vector(xq: &Bound<'_, PyAny>, d: usize) -> PyResult<Vec<f32>> {
    let array = queries(xq, d)?;
    let rows = array.shape()[0];
    if rows != 1 {
        return Err(PyValueError::new_err(format!(
            "xq holds {rows} vectors; a query by text takes one (1-D, or shape (1, d))"
        )));
    }
    Ok(array
        .as_slice()
        .map_err(|e| PyValueError::new_err(format!("xq: {e}")))?
        .to_vec())
}

/// The columns `return_attributes` names: a list of str (a bare str is
/// refused, not read as its letters).
fn column_names(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let usage = "return_attributes must be a list of column names";
    match value.filter(|v| !v.is_none()) {
        None => Ok(Vec::new()),
        Some(v) if v.is_instance_of::<PyString>() => Err(PyValueError::new_err(format!("{usage}, not one string"))),
        Some(v) => v.extract().map_err(|_| PyValueError::new_err(usage)),
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
    /// attributes and those writes carried. With `text` (`{"field": "query
    /// text"}`), it is `query(xq, k, text=text, ...)`: `xq` one vector (or
    /// None), and a list of hit dicts instead of `(D, I)`.
    #[pyo3(signature = (xq, k, *, nprobe=16, filter=None, ids=None, timeout=None, attribute_filter=None, text=None))]
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
        text: Option<&Bound<'py, PyAny>>,
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
        if let Some(text) = text.filter(|t| !t.is_none()) {
            return Ok(self.hybrid(py, Some(xq), Some(text), params)?.into_any());
        }
        let array = queries(xq, self.inner.version().d)?;
        let vectors = array
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("xq: {e}")))?;
        let results = wait(py, self.inner.search_with(vectors, &params))?.map_err(to_py)?;
        *self.last_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(results.stats.clone());
        Ok(Neighbours(results).into_pyobject(py)?.into_any())
    }

    /// A full-text, vector or hybrid search: the best `k` hits for the query
    /// vector `xq` (1-D, or shape (1, d); None for text only) and the text
    /// queries `text`, `{"field": "query text", ...}` (BM25 over the
    /// index's text fields; any of a query's words matches). With more than
    /// one ranking (a vector and a text, or two texts) each ranks `k` and
    /// they are fused by Reciprocal Rank Fusion, sum of 1 / (60 + rank).
    ///
    /// Returns a list of dicts, best first: `id`, `fused` (RRF's score, None
    /// for one ranking), `distance` (when the vector search ranked it),
    /// `bm25` (`{field: score}` for the text queries that ranked it) and
    /// `attributes` (the `return_attributes` columns, or None). `filter`
    /// (the id filter forms of `search`) and `attribute_filter` apply to
    /// every ranking. `timeout` in seconds bounds the whole query
    /// (DeadlineExceeded). Raises ValueError for an unknown text field, an
    /// empty text, or neither `xq` nor `text`.
    ///
    /// Example::
    ///
    ///     hits = index.query(xq, 10, text={"body": "red shoes"}, return_attributes=["title"])
    #[pyo3(signature = (xq=None, k=10, *, text=None, nprobe=16, filter=None, attribute_filter=None, return_attributes=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn query<'py>(
        &self,
        py: Python<'py>,
        xq: Option<&Bound<'py, PyAny>>,
        k: i64,
        text: Option<&Bound<'py, PyAny>>,
        nprobe: i64,
        filter: Option<&Bound<'py, PyAny>>,
        attribute_filter: Option<&Bound<'py, PyAny>>,
        return_attributes: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let params = SearchParams {
            return_attributes: column_names(return_attributes)?,
            ..search_params(
                SearchKeywords {
                    k,
                    nprobe: Some(nprobe),
                    filter,
                    ids: None,
                    allow_partial: false,
                    timeout,
                    attribute_filter,
                    k_factor: None,
                },
                16,
            )?
        };
        self.hybrid(py, xq, text, params)
    }

    /// Makes these the index's text fields (a dict `{"column": "language
    /// code"}` or a list of columns, in English) in place of the current
    /// ones: builds the base's text index for them and commits a version.
    /// Writes may go on meanwhile.
    fn set_text_fields(&self, py: Python<'_>, fields: &Bound<'_, PyAny>) -> PyResult<()> {
        let fields = text_fields(fields)?;
        wait(py, self.inner.set_text_fields(fields))?.map_err(to_py)?;
        Ok(())
    }

    /// The text fields `query` searches, as `{"column": "language code"}`.
    #[getter(text_fields)]
    fn get_text_fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        fields_dict(py, &self.inner.version().text_fields)
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

impl MutableIndex {
    /// One hybrid query of `query` or `search(text=...)`: checks the
    /// vector and the texts, runs it with the GIL released, bounded by the
    /// parameters' deadline as a whole (the library bounds only its vector
    /// search), and keeps its stats.
    fn hybrid<'py>(
        &self,
        py: Python<'py>,
        xq: Option<&Bound<'py, PyAny>>,
        text: Option<&Bound<'py, PyAny>>,
        params: SearchParams,
    ) -> PyResult<Bound<'py, PyList>> {
        let vector = match xq.filter(|x| !x.is_none()) {
            Some(xq) => Some(one_vector(xq, self.inner.version().d)?),
            None => None,
        };
        let texts = match text.filter(|t| !t.is_none()) {
            Some(text) => text_queries(text)?,
            None => Vec::new(),
        };
        let deadline = params.deadline;
        let query = HybridQuery { vector, texts, params };
        let work = self.inner.query(&query);
        let results = wait(py, async move {
            match deadline {
                None => work.await,
                Some(deadline) => {
                    tokio::time::timeout(deadline, work)
                        .await
                        .unwrap_or(Err(ivflake::Error::DeadlineExceeded {
                            deadline,
                            stage: "querying",
                        }))
                }
            }
        })?
        .map_err(to_py)?;
        *self.last_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(results.stats.clone());
        hits_list(py, &results.hits, &query.texts)
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
