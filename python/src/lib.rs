//! The `ivflake` Python package's native module (`ivflake._ivflake`).
//!
//! It owns the binding only: argument conversion, the process's one tokio
//! runtime, GIL release and Ctrl-C handling, and the mapping of
//! `ivflake::Error` to Python exceptions. Search logic stays in the `ivflake`
//! crate; the HTTP client is pure Python (`ivflake/client.py`).

mod convert;
mod errors;
mod index;
mod mutable;
mod runtime;
mod store;
mod text;

use pyo3::prelude::*;

#[pymodule]
fn _ivflake(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(index::open, m)?)?;
    m.add_class::<index::Index>()?;
    m.add_function(wrap_pyfunction!(mutable::create, m)?)?;
    m.add_function(wrap_pyfunction!(mutable::open_mutable, m)?)?;
    m.add_class::<mutable::MutableIndex>()?;
    m.add("IvflakeError", py.get_type::<errors::IvflakeError>())?;
    m.add("IndexNotFound", py.get_type::<errors::IndexNotFound>())?;
    m.add("CorruptIndex", py.get_type::<errors::CorruptIndex>())?;
    m.add("UnsupportedIndex", py.get_type::<errors::UnsupportedIndex>())?;
    m.add("IndexChanged", py.get_type::<errors::IndexChanged>())?;
    m.add("DeadlineExceeded", py.get_type::<errors::DeadlineExceeded>())?;
    m.add("MAX_K", ivflake::MAX_K)?;
    // The crate's version is the package's: maturin takes it from Cargo.toml.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
