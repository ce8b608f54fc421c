//! The binding's one error type: a C++ exception from Faiss or the shim,
//! classified by the tag the shim's `trycatch` writes, or a precondition the
//! binding checked before calling into C++.

use std::fmt;

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
    pub(crate) fn new(kind: FaissErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
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
