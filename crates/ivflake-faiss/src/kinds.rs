//! The kinds an index has, as the bridge's shared enums carry them: its
//! metric, with the one spelling users see, and the IVF class of a served
//! index, read from the shim's one table of served types.

use std::fmt;

use crate::{ffi, FaissError, Result};

/// The distance an index ranks by. Spelled `l2` and `inner_product`
/// wherever users see it ([`Metric::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    L2,
    InnerProduct,
}

impl Metric {
    /// The one spelling users see: `"l2"` or `"inner_product"`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner_product",
        }
    }

    /// Reads a metric name: `l2` or `inner_product`, and the deprecated
    /// `ip` (see [`Metric::is_deprecated_name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "l2" => Some(Metric::L2),
            "inner_product" | "ip" => Some(Metric::InnerProduct),
            _ => None,
        }
    }

    /// Whether `name` is an old spelling still accepted on input (`ip`),
    /// which callers should warn about.
    pub fn is_deprecated_name(name: &str) -> bool {
        name.trim().eq_ignore_ascii_case("ip")
    }

    pub(crate) fn from_ffi(m: ffi::Metric) -> Result<Self> {
        match m {
            ffi::Metric::L2 => Ok(Metric::L2),
            ffi::Metric::InnerProduct => Ok(Metric::InnerProduct),
            _ => Err(FaissError::invalid("the shim reported an unknown metric")),
        }
    }

    pub(crate) fn to_ffi(self) -> ffi::Metric {
        match self {
            Metric::L2 => ffi::Metric::L2,
            Metric::InnerProduct => ffi::Metric::InnerProduct,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IVF class of a served index. Which Faiss classes these are is listed
/// once, in the shim (`served_types()` in `cpp/shim.cc`); [`served_types`]
/// reads that table.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IvfKind {
    /// `IndexIVFFlat`.
    Flat,
    /// `IndexIVFPQ`.
    Pq,
    /// `IndexIVFScalarQuantizer`.
    ScalarQuantizer,
    /// `IndexIVFPQFastScan` (block lists).
    PqFastScan,
    /// `IndexIVFRaBitQ`.
    RaBitQ,
}

impl IvfKind {
    /// `None` for a class ivflake does not serve.
    pub(crate) fn from_ffi(k: ffi::IvfKind) -> Option<Self> {
        match k {
            ffi::IvfKind::Flat => Some(IvfKind::Flat),
            ffi::IvfKind::Pq => Some(IvfKind::Pq),
            ffi::IvfKind::ScalarQuantizer => Some(IvfKind::ScalarQuantizer),
            ffi::IvfKind::PqFastScan => Some(IvfKind::PqFastScan),
            ffi::IvfKind::RaBitQ => Some(IvfKind::RaBitQ),
            _ => None,
        }
    }
}

/// The Faiss classes ivflake serves, with their class names, from the
/// shim's one table of them.
pub fn served_types() -> Vec<(IvfKind, String)> {
    ffi::served_types()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| IvfKind::from_ffi(t.kind).map(|k| (k, t.class_name)))
        .collect()
}
