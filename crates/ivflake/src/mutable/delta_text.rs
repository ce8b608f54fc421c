//! The writes since the base as text indexes in memory, kept the way the
//! delta keeps its runs: parts built once and shared by later snapshots of
//! the same version, a new part for the entries since, and the last parts
//! merged (their live documents indexed again) while a part is more than
//! half the one before it, so an entry is indexed O(log n) times, not once
//! per write. A part's documents overwritten or deleted since are masked
//! by the snapshot's live entries; their share of the statistics is
//! bounded by rebuilding everything once they are a quarter of the live.
//! Also the text of attribute rows, which the base's bundle is built from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use tantivy::Searcher;

use super::delta::{DeltaSnapshot, RowRef};
use crate::error::Result;
use crate::text::{MemoryText, TextField};

/// One entry as a text document: its id and attribute row.
pub(crate) type TextDoc = (i64, Option<RowRef>);

/// Part of the writes' text index: document `i` is `docs[i]`.
pub(crate) struct TextPart {
    pub text: MemoryText,
    pub docs: Vec<TextDoc>,
}

/// The writes' text index of one snapshot.
pub(crate) struct DeltaText {
    pub parts: Vec<Arc<TextPart>>,
    /// Each live entry's row: a part's document is current when it is its id's.
    live: HashMap<i64, Option<RowRef>>,
    /// The version and fields the parts were built for (rows are numbered per version).
    version: u64,
    fields: Vec<TextField>,
}

impl std::fmt::Debug for DeltaText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaText").field("parts", &self.parts.len()).finish()
    }
}

impl DeltaText {
    /// The text index of `delta` (of version `version`), reusing the parts
    /// of `previous` when it was built for the same version and fields.
    pub fn build(
        delta: &DeltaSnapshot,
        fields: &[TextField],
        version: u64,
        previous: Option<&DeltaText>,
    ) -> Result<Self> {
        let entries = delta.live_entries();
        let live: HashMap<i64, Option<RowRef>> = entries.iter().map(|&(id, _, row)| (id, row)).collect();
        let mut parts = previous
            .filter(|p| p.version == version && p.fields == fields)
            .map(|p| p.parts.clone())
            .unwrap_or_default();
        let is_live = |d: &TextDoc| live.get(&d.0) == Some(&d.1);
        let covered: HashSet<TextDoc> = parts
            .iter()
            .flat_map(|p| p.docs.iter().copied())
            .filter(is_live)
            .collect();
        let stale = parts.iter().map(|p| p.docs.len()).sum::<usize>() - covered.len();
        if stale * 4 > live.len() {
            parts.clear();
        }
        let indexed: HashSet<TextDoc> = if parts.is_empty() { HashSet::new() } else { covered };
        let fresh: Vec<TextDoc> = entries
            .iter()
            .map(|&(id, _, row)| (id, row))
            .filter(|d| !indexed.contains(d))
            .collect();
        if !fresh.is_empty() {
            parts.push(Arc::new(part(delta, fields, fresh)?));
        }
        while let [.., a, b] = &parts[..] {
            if b.docs.len() * 2 <= a.docs.len() {
                break;
            }
            let docs: Vec<TextDoc> = a.docs.iter().chain(&b.docs).copied().filter(is_live).collect();
            parts.truncate(parts.len() - 2);
            parts.push(Arc::new(part(delta, fields, docs)?));
        }
        Ok(Self {
            parts,
            live,
            version,
            fields: fields.to_vec(),
        })
    }

    /// Whether a part's document is its id's current entry.
    pub fn is_live(&self, doc: &TextDoc) -> bool {
        self.live.get(&doc.0) == Some(&doc.1)
    }

    pub fn searchers(&self) -> impl Iterator<Item = &Searcher> {
        self.parts.iter().map(|p| p.text.searcher())
    }
}

fn part(delta: &DeltaSnapshot, fields: &[TextField], docs: Vec<TextDoc>) -> Result<TextPart> {
    let schema = text_schema(fields, &delta.schema);
    let rows: Vec<Option<RowRef>> = docs.iter().map(|d| d.1).collect();
    let batch = delta.gather_rows(&schema, &rows)?;
    let texts = texts_of(fields, Some(&batch), rows.len());
    Ok(TextPart {
        text: MemoryText::build(fields, texts.into_iter())?,
        docs,
    })
}

/// Per row of `batch`, each field's text (a missing column: none).
pub(super) fn texts_of(fields: &[TextField], batch: Option<&RecordBatch>, rows: usize) -> Vec<Vec<Option<String>>> {
    let columns: Vec<Option<Arc<dyn Array>>> = fields
        .iter()
        .map(|f| batch.and_then(|b| b.column_by_name(&f.column).cloned()))
        .collect();
    (0..rows)
        .map(|row| {
            fields
                .iter()
                .zip(&columns)
                .map(|(f, column)| {
                    let column = column.as_ref()?;
                    if column.is_null(row) {
                        return None;
                    }
                    let value = match column.data_type() {
                        DataType::Utf8 => column.as_string::<i32>().value(row),
                        DataType::LargeUtf8 => column.as_string::<i64>().value(row),
                        DataType::Utf8View => column.as_string_view().value(row),
                        _ => return None,
                    };
                    f.text_of(value).map(|t| t.into_owned())
                })
                .collect()
        })
        .collect()
}

/// The attribute schema's text columns, as `schema` types them.
pub(super) fn text_schema(fields: &[TextField], schema: &Schema) -> SchemaRef {
    let mut out: Vec<arrow_schema::Field> = Vec::new();
    for f in fields {
        if let Ok(field) = schema.field_with_name(&f.column) {
            if !out.iter().any(|g| g.name() == field.name()) {
                out.push(field.clone());
            }
        }
    }
    Arc::new(Schema::new(out))
}
