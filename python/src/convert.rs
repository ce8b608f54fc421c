//! Conversions at the boundary: query arrays in, `(D, I)` arrays and dicts out,
//! id filters from their Python forms.

use ivflake::{IdFilterSpec, SearchResults};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The query batch as a read-only float32 C-contiguous `(n, d)` view, for an
/// index of dimension `d`: a 2-D array must have `d` columns and a 1-D one
/// `d` elements, or a `ValueError` says both dimensions (the total number of
/// floats alone would let `(2, 32)` pass for one 64-d query). A float32
/// C-contiguous array is used as it is; anything else (float64, a list, a
/// strided view) goes through `numpy.ascontiguousarray(xq, dtype=float32)`,
/// the one copy.
pub(crate) fn queries<'py>(xq: &Bound<'py, PyAny>, d: usize) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let checked = |a: Bound<'py, PyArray2<f32>>, one_vector: bool| {
        let columns = a.shape()[1];
        if columns != d {
            return Err(PyValueError::new_err(if one_vector {
                format!("xq is one vector of {columns} values; the index has d = {d}")
            } else {
                format!("xq has d = {columns} (shape {:?}); the index has d = {d}", a.shape())
            }));
        }
        a.try_readonly().map_err(|e| PyValueError::new_err(e.to_string()))
    };
    if let Ok(a) = xq.cast::<PyArray2<f32>>() {
        if a.is_c_contiguous() {
            return checked(a.clone(), false);
        }
    }
    let py = xq.py();
    let np = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let converted = np
        .call_method("ascontiguousarray", (xq,), Some(&kwargs))
        .map_err(|e| PyTypeError::new_err(format!("xq must be an array of float32 vectors: {e}")))?;
    let ndim: usize = converted.getattr("ndim")?.extract()?;
    let converted = match ndim {
        1 => converted.call_method1("reshape", ((1, -1),))?,
        2 => converted,
        n => {
            return Err(PyValueError::new_err(format!(
                "xq must be a 2-D array (n, d) or one 1-D vector, not {n}-D"
            )))
        }
    };
    checked(converted.cast_into::<PyArray2<f32>>()?, ndim == 1)
}

/// `(D, I)` as faiss returns them: float32 distances and int64 ids, shape
/// `(n, k)`, -1 ids where fewer were found. The result vectors become the
/// arrays' buffers without a copy.
pub(crate) struct Neighbours(pub SearchResults);

impl<'py> IntoPyObject<'py> for Neighbours {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let results = self.0;
        let shape = (results.len(), results.k);
        let shape_error = |e: numpy::ndarray::ShapeError| PyValueError::new_err(format!("result shape: {e}"));
        let distances = Array2::from_shape_vec(shape, results.distances).map_err(shape_error)?;
        let ids = Array2::from_shape_vec(shape, results.ids).map_err(shape_error)?;
        (distances.into_pyarray(py), ids.into_pyarray(py)).into_pyobject(py)
    }
}

/// The id filter of a search from `ids=` (an allow-list) or `filter=` (the
/// HTTP API's forms: `{"allow": ids}`, `{"deny": ids}`,
/// `{"range": [start, end]}` or `{"range": {"start": s, "end": e}}`, end excluded).
pub(crate) fn id_filter(filter: Option<&Bound<'_, PyAny>>, ids: Option<&Bound<'_, PyAny>>) -> PyResult<IdFilterSpec> {
    let filter = filter.filter(|f| !f.is_none());
    let ids = ids.filter(|i| !i.is_none());
    match (filter, ids) {
        (None, None) => Ok(IdFilterSpec::All),
        (Some(_), Some(_)) => Err(PyValueError::new_err("pass ids= or filter=, not both")),
        (None, Some(ids)) => Ok(IdFilterSpec::Allow(id_vec(ids, "ids")?)),
        (Some(filter), None) => filter_spec(filter),
    }
}

fn filter_spec(filter: &Bound<'_, PyAny>) -> PyResult<IdFilterSpec> {
    let usage = "filter must be {\"allow\": ids}, {\"deny\": ids} or {\"range\": [start, end]}";
    let dict = filter.cast::<PyDict>().map_err(|_| PyValueError::new_err(usage))?;
    if dict.len() != 1 {
        return Err(PyValueError::new_err(usage));
    }
    let Some((key, value)) = dict.iter().next() else {
        return Err(PyValueError::new_err(usage));
    };
    let key: String = key.extract().map_err(|_| PyValueError::new_err(usage))?;
    match key.as_str() {
        "allow" => Ok(IdFilterSpec::Allow(id_vec(&value, "filter allow")?)),
        "deny" => Ok(IdFilterSpec::Deny(id_vec(&value, "filter deny")?)),
        "range" => {
            let (start, end) = if let Ok(bounds) = value.cast::<PyDict>() {
                let get = |name: &str| -> PyResult<i64> {
                    bounds
                        .get_item(name)?
                        .ok_or_else(|| PyValueError::new_err(format!("filter range needs {name:?}")))?
                        .extract()
                };
                (get("start")?, get("end")?)
            } else {
                let bounds = || PyValueError::new_err("filter range must be [start, end] (end excluded)");
                match value.extract::<Vec<i64>>().map_err(|_| bounds())?[..] {
                    [start, end] => (start, end),
                    _ => return Err(bounds()),
                }
            };
            if start > end {
                return Err(PyValueError::new_err(format!(
                    "filter range start {start} is past its end {end}"
                )));
            }
            Ok(IdFilterSpec::Range { start, end })
        }
        other => Err(PyValueError::new_err(format!("unknown filter {other:?}; {usage}"))),
    }
}

/// Ids from a list, tuple, range or integer array. Floats are refused rather
/// than truncated.
fn id_vec(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<i64>> {
    if let Ok(a) = value.cast::<PyArray1<i64>>() {
        if let Ok(ro) = a.try_readonly() {
            if let Ok(slice) = ro.as_slice() {
                return Ok(slice.to_vec());
            }
        }
    }
    let np = value.py().import("numpy")?;
    let array = np.call_method1("asarray", (value,))?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    let size: usize = array.getattr("size")?.extract()?;
    let ndim: usize = array.getattr("ndim")?.extract()?;
    if ndim != 1 || (size > 0 && kind != "i" && kind != "u") {
        return Err(PyValueError::new_err(format!(
            "{what} must be a 1-D sequence of integer ids"
        )));
    }
    let array = array.call_method1("astype", ("int64",))?;
    let array = array.cast_into::<PyArray1<i64>>()?;
    let ro = array.try_readonly().map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(ro.as_array().to_vec())
}

/// A serializable report as a plain dict (through JSON: reports are small).
pub(crate) fn to_dict<'py>(py: Python<'py>, report: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(report).map_err(|e| PyValueError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}
