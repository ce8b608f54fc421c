//! Full-text search over text attributes: BM25 with tantivy, and Reciprocal
//! Rank Fusion with vector search. Its parts, bottom up:
//!
//! - `analyzer`: each language's terms (build and query share it);
//! - `bundle`: a base's text index as one object beside it, `<base>.text`,
//!   written by `build` and opened from its tail alone (Quickwit's split and
//!   hotcache are the model), its postings fetched per query;
//! - `directory`: the read-only tantivy `Directory` over a bundle;
//! - `ids`: a bundle's document ids, bit-packed;
//! - `segment`: one searchable text index (a bundle, or the writes since
//!   the base in memory), scored with statistics summed over all of them;
//! - `fuse`: Reciprocal Rank Fusion.
//!
//! It knows nothing of mutable indexes: `mutable/text.rs` wires it in.

mod analyzer;
mod bundle;
mod directory;
mod fuse;
mod ids;
mod segment;

use serde::{Deserialize, Serialize};

pub use analyzer::Language;
pub use bundle::BundleRef;
pub(crate) use bundle::{build_bundle, TextBundle};
pub use fuse::{rrf, RRF_K};
pub(crate) use segment::{Ask, Mask, MemoryText, Statistics};

use crate::error::{Error, Result};

/// At most this many text fields per index (S3 Vectors' limit).
pub const MAX_TEXT_FIELDS: usize = 10;
/// At most this many text queries in one search.
pub const MAX_TEXT_QUERIES: usize = 10;
/// At most this many bytes of text in one query.
pub const MAX_QUERY_TEXT_BYTES: usize = 1024;
/// At most this many distinct terms in one text query.
pub const MAX_QUERY_TERMS: usize = 64;

/// A text field: what a text query names, and where its text is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextField {
    /// What queries name it by.
    pub name: String,
    /// The attribute column holding its text (a string column).
    pub column: String,
    /// When set, the column holds JSON objects and the text is this key's
    /// string value (or its strings, joined, for an array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_key: Option<String>,
    #[serde(default)]
    pub language: Language,
}

impl TextField {
    /// A field over a string column of the same name.
    pub fn column(name: &str, language: Language) -> Self {
        Self {
            name: name.to_string(),
            column: name.to_string(),
            json_key: None,
            language,
        }
    }

    /// The field's text in one row's column value.
    pub(crate) fn text_of<'a>(&self, value: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let Some(key) = &self.json_key else {
            return Some(std::borrow::Cow::Borrowed(value));
        };
        let object: serde_json::Value = serde_json::from_str(value).ok()?;
        match object.get(key)? {
            serde_json::Value::String(s) => Some(std::borrow::Cow::Owned(s.clone())),
            serde_json::Value::Array(items) => {
                let parts: Vec<&str> = items.iter().filter_map(|v| v.as_str()).collect();
                (!parts.is_empty()).then(|| std::borrow::Cow::Owned(parts.join(" ")))
            }
            _ => None,
        }
    }

    /// Checks a set of fields: names distinct and non-empty, at most
    /// [`MAX_TEXT_FIELDS`].
    pub fn check_all(fields: &[TextField]) -> Result<()> {
        if fields.len() > MAX_TEXT_FIELDS {
            return Err(Error::invalid(
                "text_fields",
                format!("{} fields; at most {MAX_TEXT_FIELDS}", fields.len()),
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.name.is_empty() || f.column.is_empty() {
                return Err(Error::invalid("text_fields", "a field's name and column are not empty"));
            }
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(Error::invalid("text_fields", format!("{:?} is named twice", f.name)));
            }
        }
        Ok(())
    }
}

/// One text query: the field it searches and the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextQuery {
    pub field: String,
    pub text: String,
}

impl TextQuery {
    pub fn new(field: &str, text: &str) -> Self {
        Self {
            field: field.to_string(),
            text: text.to_string(),
        }
    }

    /// Checks a search's text queries against the index's fields; each
    /// query's field index.
    pub fn check_all(queries: &[TextQuery], fields: &[TextField]) -> Result<Vec<usize>> {
        if queries.len() > MAX_TEXT_QUERIES {
            return Err(Error::invalid(
                "text",
                format!("{} text queries; at most {MAX_TEXT_QUERIES}", queries.len()),
            ));
        }
        queries
            .iter()
            .map(|q| {
                if q.text.is_empty() || q.text.len() > MAX_QUERY_TEXT_BYTES {
                    return Err(Error::invalid(
                        "text",
                        format!(
                            "a query text is 1 to {MAX_QUERY_TEXT_BYTES} bytes, got {}",
                            q.text.len()
                        ),
                    ));
                }
                fields.iter().position(|f| f.name == q.field).ok_or_else(|| {
                    let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    Error::invalid(
                        "text",
                        format!("{:?} is not a text field of this index (it has {known:?})", q.field),
                    )
                })
            })
            .collect()
    }
}

/// The distinct terms of a query text, in first-seen order (a repeated
/// word counts once, as a set of terms).
pub(crate) fn query_terms(language: Language, text: &str) -> Result<Vec<String>> {
    let mut terms = language.terms(text);
    let mut seen = std::collections::HashSet::new();
    terms.retain(|t| seen.insert(t.clone()));
    if terms.len() > MAX_QUERY_TERMS {
        return Err(Error::invalid(
            "text",
            format!("{} distinct terms; at most {MAX_QUERY_TERMS}", terms.len()),
        ));
    }
    Ok(terms)
}

fn tantivy_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("text index: {e}"))
}
