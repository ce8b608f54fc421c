//! Python exceptions for `ivflake::Error`, mapped by variant.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    ivflake,
    IvflakeError,
    PyException,
    "Base class of every ivflake error; raised as such for store and internal failures."
);
create_exception!(
    ivflake,
    IndexNotFound,
    IvflakeError,
    "The index object (or its directory, bucket or HTTP index name) does not exist."
);
create_exception!(
    ivflake,
    CorruptIndex,
    IvflakeError,
    "The index file is damaged: its header does not parse, or a list fails its checksum."
);
create_exception!(
    ivflake,
    UnsupportedIndex,
    IvflakeError,
    "A valid Faiss file that ivflake cannot serve (not an IVF index it supports)."
);
create_exception!(
    ivflake,
    IndexChanged,
    IvflakeError,
    "The object changed in the store since it was opened; call Index.reload()."
);
create_exception!(
    ivflake,
    DeadlineExceeded,
    IvflakeError,
    "The search's timeout passed before it finished."
);

/// The exception for a library error. The enum is `#[non_exhaustive]`:
/// variants added later land on the base class until mapped here.
pub(crate) fn to_py(err: ivflake::Error) -> PyErr {
    use ivflake::Error as E;
    let message = err.to_string();
    match err {
        E::NotFound { .. } => IndexNotFound::new_err(message),
        E::Corrupt { .. } | E::Checksum { .. } => CorruptIndex::new_err(message),
        E::Unsupported { .. } => UnsupportedIndex::new_err(message),
        E::IndexChanged { .. } => IndexChanged::new_err(message),
        E::DeadlineExceeded { .. } => DeadlineExceeded::new_err(message),
        E::InvalidArgument { .. } | E::InvalidUri { .. } | E::InvalidFilter { .. } => PyValueError::new_err(message),
        _ => IvflakeError::new_err(message),
    }
}
