//! Full-text and hybrid search at the boundary: text fields and text
//! queries from their Python forms (dicts keyed by field), and a hybrid
//! query's hits out as a list of dicts. The search itself is the library's
//! `MutableIndex::query`; nothing here scores or fuses.

use ivflake::text::{Language, TextField, TextQuery, MAX_QUERY_TEXT_BYTES};
use ivflake::HybridHit;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::convert::to_dict;
use crate::errors::to_py;

/// `repr(value)` for a message.
fn repr_of(value: &Bound<'_, PyAny>) -> String {
    value.repr().map_or_else(|_| "a value".to_string(), |r| r.to_string())
}

/// A field's language when a list of columns names none.
const DEFAULT_LANGUAGE: Language = Language::En;

/// Text fields from `{"column": "language code"}` or a list of column
/// names (each in English), checked as the library checks them.
pub(crate) fn text_fields(value: &Bound<'_, PyAny>) -> PyResult<Vec<TextField>> {
    let usage = "text_fields must be a dict {column: language code} or a list of column names";
    let named = |name: &Bound<'_, PyAny>| -> PyResult<String> {
        name.extract::<String>()
            .map_err(|_| PyValueError::new_err(format!("{usage}; {} is not a column name", repr_of(name))))
    };
    let fields = if let Ok(dict) = value.cast::<PyDict>() {
        dict.iter()
            .map(|(name, code)| {
                let name = named(&name)?;
                let code: String = code.extract().map_err(|_| {
                    PyValueError::new_err(format!("text_fields[{name:?}]: the language is a code such as \"en\""))
                })?;
                let language = Language::from_code(&code)
                    .map_err(|e| PyValueError::new_err(format!("text_fields[{name:?}]: {e}")))?;
                Ok(TextField::column(&name, language))
            })
            .collect::<PyResult<Vec<_>>>()?
    } else if value.is_instance_of::<PyString>() || value.is_instance_of::<pyo3::types::PyBytes>() {
        // A str is a sequence of letters; one column is a list of one.
        return Err(PyValueError::new_err(format!("{usage}, not one string")));
    } else {
        let names = value.try_iter().map_err(|_| PyValueError::new_err(usage))?;
        names
            .map(|name| Ok(TextField::column(&named(&name?)?, DEFAULT_LANGUAGE)))
            .collect::<PyResult<Vec<_>>>()?
    };
    TextField::check_all(&fields).map_err(to_py)?;
    Ok(fields)
}

/// The fields as `{"name": "language code"}` (a field made from a column
/// is named as the column).
pub(crate) fn fields_dict<'py>(py: Python<'py>, fields: &[TextField]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for f in fields {
        dict.set_item(&f.name, f.language.code())?;
    }
    Ok(dict)
}

/// Text queries from `{"field": "query text", ...}`, one per entry, in the
/// dict's order. An empty or too long text is refused here, naming its
/// field (the library's message does not); unknown fields are the
/// library's to name.
pub(crate) fn text_queries(value: &Bound<'_, PyAny>) -> PyResult<Vec<TextQuery>> {
    let usage = "text must be a dict {text field: query text}";
    let dict = value.cast::<PyDict>().map_err(|_| PyValueError::new_err(usage))?;
    if dict.is_empty() {
        return Err(PyValueError::new_err(format!("{usage}, with at least one entry")));
    }
    dict.iter()
        .map(|(field, text)| {
            let field: String = field
                .extract()
                .map_err(|_| PyValueError::new_err(format!("{usage}; {} is not a field name", repr_of(&field))))?;
            let text: String = text
                .extract()
                .map_err(|_| PyValueError::new_err(format!("text[{field:?}] must be a str")))?;
            if text.is_empty() || text.len() > MAX_QUERY_TEXT_BYTES {
                return Err(PyValueError::new_err(format!(
                    "text[{field:?}] is {} bytes; a query text is 1 to {MAX_QUERY_TEXT_BYTES}",
                    text.len()
                )));
            }
            Ok(TextQuery::new(&field, &text))
        })
        .collect()
}

/// A hybrid query's hits, best first, as dicts: `id`, `fused`, `distance`,
/// `bm25` (`{field: score}` for the text queries that ranked the hit) and
/// `attributes` (a dict, or None when none were asked for).
pub(crate) fn hits_list<'py>(py: Python<'py>, hits: &[HybridHit], texts: &[TextQuery]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for hit in hits {
        let bm25 = PyDict::new(py);
        for (query, score) in texts.iter().zip(&hit.bm25) {
            if let Some(score) = score {
                bm25.set_item(&query.field, f64::from(*score))?;
            }
        }
        let attributes = match &hit.attributes {
            Some(row) => to_dict(py, row)?,
            None => py.None().into_bound(py),
        };
        let dict = PyDict::new(py);
        dict.set_item("id", hit.id)?;
        dict.set_item("fused", hit.fused.map(f64::from))?;
        dict.set_item("distance", hit.distance.map(f64::from))?;
        dict.set_item("bm25", bm25)?;
        dict.set_item("attributes", attributes)?;
        list.append(dict)?;
    }
    Ok(list)
}
