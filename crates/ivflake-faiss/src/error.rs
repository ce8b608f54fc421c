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
    /// Where in Faiss's sources it was thrown (function, file and line).
    location: Option<String>,
}

impl FaissError {
    /// The message loses Faiss's `Error in <function> at <file>:<line>: `
    /// prefix: the build machine's paths help nobody reading an error (and
    /// a server must not show them); [`FaissError::location`] keeps them.
    pub(crate) fn new(kind: FaissErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        match split_location(&message) {
            Some((location, rest)) => Self {
                kind,
                location: Some(location),
                message: rest,
            },
            None => Self {
                kind,
                message,
                location: None,
            },
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

    /// The function, file and line of Faiss's sources that threw, for logs.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
}

/// Splits a message holding Faiss's `Error in <function> at <file>:<line>: `
/// (anywhere: the shim may say what it was doing first) into that location
/// and the message without it; `None` when there is none.
fn split_location(what: &str) -> Option<(String, String)> {
    const START: &str = "Error in ";
    let start = what.find(START)?;
    let rest = &what[start..];
    let mut from = rest.find(" at ")? + 4;
    // The location ends at the first `:<digits>: ` after " at ".
    while let Some(colon) = rest[from..].find(':') {
        let i = from + colon + 1;
        let digits = rest[i..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[i + digits..].starts_with(": ") {
            let end = i + digits;
            let message = format!("{}{}", &what[..start], &rest[end + 2..]);
            return Some((rest[..end].to_string(), message));
        }
        from = i;
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faiss_locations_leave_the_message() {
        let what = "Error in faiss::Index* faiss::read_index(IOReader*, int) at \
                    /build/faiss/faiss/impl/index_read.cpp:1180: Index type 0x74736554 (\"Test\") not recognized";
        let e = FaissError::new(FaissErrorKind::Corrupt, what);
        assert_eq!(e.message(), "Index type 0x74736554 (\"Test\") not recognized");
        assert_eq!(
            e.location(),
            Some("Error in faiss::Index* faiss::read_index(IOReader*, int) at /build/faiss/faiss/impl/index_read.cpp:1180")
        );
        assert!(!e.to_string().contains(".cpp"));
        let wrapped = FaissError::new(
            FaissErrorKind::Unsupported,
            format!("a type Faiss does not know: {what}"),
        );
        assert_eq!(
            wrapped.message(),
            "a type Faiss does not know: Index type 0x74736554 (\"Test\") not recognized"
        );
        let plain = FaissError::new(FaissErrorKind::Other, "out of memory: 12 at a:b");
        assert_eq!((plain.message(), plain.location()), ("out of memory: 12 at a:b", None));
    }
}
