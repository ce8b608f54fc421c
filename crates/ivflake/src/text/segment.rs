//! One searchable text index and how every one of them is scored: the same
//! schema (field `i` is the index's text field `i`, analyzed in its
//! language), BM25 with statistics summed over the base's bundle and the
//! writes since it (so a score means the same in both and results merge by
//! score), and a mask of the documents a search may return.
//!
//! `MemoryText` is the writes since the base: a tantivy index in memory,
//! built from their rows when a text search first reads that snapshot.

use std::sync::Arc;

use tantivy::collector::TopDocs;
use tantivy::directory::RamDirectory;
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocId, Index, IndexSettings, Searcher, SingleSegmentIndexWriter, TantivyDocument, Term};

use super::{analyzer, tantivy_error, TextField};
use crate::error::Result;

/// Memory the build's tantivy writer may use before it flushes (its minimum is 15 MB).
const WRITER_BUDGET: usize = 64 << 20;

/// Scored documents of one text index, best first.
pub(crate) type Candidates = Vec<(DocId, f32)>;

/// The schema of every text index of an index with `fields`: term
/// frequencies and field norms, no positions and nothing stored.
pub(super) fn schema(fields: &[TextField]) -> Schema {
    let mut builder = Schema::builder();
    for (i, f) in fields.iter().enumerate() {
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(f.language.tokenizer_name())
            .set_index_option(IndexRecordOption::WithFreqs)
            .set_fieldnorms(true);
        builder.add_text_field(&format!("f{i}"), TextOptions::default().set_indexing_options(indexing));
    }
    builder.build()
}

/// Writes `docs` (per document, each field's text) into one segment in
/// `dir`, document `i` being the `i`-th given.
pub(super) fn write_index(
    dir: RamDirectory,
    fields: &[TextField],
    docs: impl Iterator<Item = Vec<Option<String>>>,
) -> Result<Index> {
    let index = Index::create(dir, schema(fields), IndexSettings::default()).map_err(tantivy_error)?;
    analyzer::register_all(&index);
    let mut writer: SingleSegmentIndexWriter<TantivyDocument> =
        SingleSegmentIndexWriter::new(index, WRITER_BUDGET).map_err(tantivy_error)?;
    for texts in docs {
        let mut doc = TantivyDocument::default();
        for (i, text) in texts.iter().enumerate() {
            if let Some(text) = text {
                doc.add_text(Field::from_field_id(i as u32), text);
            }
        }
        writer.add_document(doc).map_err(tantivy_error)?;
    }
    writer.finalize().map_err(tantivy_error)
}

/// The one searcher of an index, its reader never reloaded.
pub(super) fn searcher_of(index: &Index) -> Result<Searcher> {
    let reader = index
        .reader_builder()
        .reload_policy(tantivy::ReloadPolicy::Manual)
        .try_into()
        .map_err(tantivy_error)?;
    Ok(reader.searcher())
}

/// BM25 statistics of several text indexes together.
pub(crate) struct Statistics<'a> {
    pub parts: Vec<&'a Searcher>,
}

impl Bm25StatisticsProvider for Statistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        self.parts.iter().map(|s| s.total_num_tokens(field)).sum()
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        self.parts.iter().map(|s| s.total_num_docs()).sum()
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.parts.iter().map(|s| s.doc_freq(term)).sum()
    }
}

/// Documents a search may return (ids written since, filtered out...).
pub(crate) type Mask = Arc<dyn Fn(DocId) -> bool + Send + Sync>;

/// One ranking asked of a text index: the best `n` documents `mask`
/// allows for `terms` (analyzed) in field `field`, any term matching,
/// scored by BM25 with `stats`.
pub(crate) struct Ask<'a> {
    pub field: usize,
    pub terms: &'a [String],
    pub stats: &'a Statistics<'a>,
    pub n: usize,
    pub mask: Mask,
}

pub(super) fn top(searcher: &Searcher, ask: Ask<'_>) -> Result<Candidates> {
    let Ask {
        field,
        terms,
        stats,
        n,
        mask,
    } = ask;
    if terms.is_empty() || n == 0 {
        return Ok(Vec::new());
    }
    let field = Field::from_field_id(field as u32);
    let clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .map(|t| {
            let q: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(field, t),
                IndexRecordOption::WithFreqs,
            ));
            (Occur::Should, q)
        })
        .collect();
    let query = BooleanQuery::new(clauses);
    // Masked documents sort last, below any score, and are dropped.
    let collector = TopDocs::with_limit(n).tweak_score(move |_: &tantivy::SegmentReader| {
        let mask = mask.clone();
        move |doc: DocId, score: f32| if mask(doc) { score } else { f32::NEG_INFINITY }
    });
    let found = searcher
        .search_with_statistics_provider(&query, &collector, stats)
        .map_err(tantivy_error)?;
    Ok(found
        .into_iter()
        .filter(|(score, _)| score.is_finite())
        .map(|(score, at)| (at.doc_id, score))
        .collect())
}

/// The writes since the base as a text index in memory; document `i` is
/// their `i`-th entry as the snapshot lists them.
pub(crate) struct MemoryText {
    searcher: Searcher,
}

impl MemoryText {
    pub fn build(fields: &[TextField], docs: impl Iterator<Item = Vec<Option<String>>>) -> Result<Self> {
        let index = write_index(RamDirectory::create(), fields, docs)?;
        Ok(Self {
            searcher: searcher_of(&index)?,
        })
    }

    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    pub fn top(&self, ask: Ask<'_>) -> Result<Candidates> {
        top(&self.searcher, ask)
    }
}
