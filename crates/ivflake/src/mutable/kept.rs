//! Kept rows: the last write of every id, by id, so that `get(ids)` reads
//! a few pages rather than scanning lists, and a retrain has the raw
//! vectors. Each compaction writes one segment, `rows/<random>.parquet`,
//! of the ids its log changed, sorted: `id`, `deleted`, `vector` (the raw
//! vector; null when deleted or not kept) and the attribute columns.
//! Pages hold 64 rows and the page index is written, so a lookup reads the
//! `id` pages whose min/max hold a wanted id, then only its rows' pages of
//! the other columns, each a range read. Segments are read newest first:
//! an id's first row is its last write before the base, and a `deleted`
//! row ends the search.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, WriteMultipart};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::attributes::filter::arrow_error;
use crate::attributes::value::{AttributeRow, AttributeValue};
use crate::attributes::FetchedColumns;
use crate::error::{Error, Result};
use crate::location::IndexLocation;

/// Rows per page: a lookup reads about this many rows of each column.
const PAGE_ROWS: usize = 64;
/// Rows per row group: the writer holds one row group's pages until it
/// is flushed, so this bounds a compaction's segment buffer (25 MiB at d = 96).
pub(super) const ROW_GROUP_ROWS: usize = 65_536;
/// Multipart parts of a segment.
const PART_BYTES: usize = 8 << 20;
/// The most bytes of footer and page index a segment may have.
const MAX_FOOTER_BYTES: u64 = 256 << 20;
/// Row groups a lookup reads at once.
const ROW_GROUPS_IN_FLIGHT: usize = 16;
/// The first read of a segment's tail, footer and page index.
const TAIL_PROBE: u64 = 1 << 20;

/// One id's kept row: its raw vector (when kept) and its non-null attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRow {
    pub vector: Option<Vec<f32>>,
    pub attributes: AttributeRow,
}

impl KeptRow {
    /// Row `row` of `vectors` (a `d`-wide list column, or none) and `attributes`.
    pub(crate) fn from_arrow(
        vectors: Option<&FixedSizeListArray>,
        attributes: &RecordBatch,
        row: usize,
        uri: &str,
    ) -> Result<Self> {
        let vector = vectors.filter(|v| !v.is_null(row)).map(|v| {
            let values = v.value(row);
            values.as_primitive::<Float32Type>().values().to_vec()
        });
        let mut out = AttributeValue::row_of(attributes, row, uri)?;
        out.retain(|_, value| *value != AttributeValue::Null);
        Ok(Self {
            vector,
            attributes: out,
        })
    }
}

fn segment_schema(d: usize, attributes: &Schema) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("deleted", DataType::Boolean, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), d as i32),
            true,
        ),
    ];
    fields.extend(attributes.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

/// A segment being written, streamed through a multipart upload.
pub(super) struct SegmentWriter {
    writer: ArrowWriter<Vec<u8>>,
    upload: WriteMultipart,
    schema: SchemaRef,
    d: usize,
    uri: String,
    pub bytes_written: u64,
}

impl SegmentWriter {
    pub async fn start(root: &IndexLocation, name: &str, d: usize, attributes: &Schema) -> Result<Self> {
        let to = root.child(name)?;
        let schema = segment_schema(d, attributes);
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_write_batch_size(PAGE_ROWS)
            // Pages are read alone: no dictionary page to fetch first.
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Page)
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let upload = to
            .store
            .put_multipart(&to.path)
            .await
            .map_err(|e| Error::from_store(&to.uri, None, e))?;
        Ok(Self {
            writer,
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            schema,
            d,
            uri: to.uri,
            bytes_written: 0,
        })
    }

    /// The next rows, ids ascending past the last: `vectors` holds `d`
    /// floats per row, used where `has_vector`; `attributes` is row for row.
    pub async fn write(
        &mut self,
        ids: Vec<i64>,
        deleted: Vec<bool>,
        vectors: Vec<f32>,
        has_vector: Vec<bool>,
        attributes: &RecordBatch,
    ) -> Result<()> {
        let vector = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            self.d as i32,
            Arc::new(Float32Array::from(vectors)),
            Some(has_vector.into()),
        )
        .map_err(arrow_error)?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(BooleanArray::from(deleted)),
            Arc::new(vector),
        ];
        columns.extend(attributes.columns().iter().cloned());
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_error)?;
        self.writer.write(&batch).map_err(|e| Error::Internal(e.to_string()))?;
        self.drain();
        self.upload
            .wait_for_capacity(4)
            .await
            .map_err(|e| Error::from_store(&self.uri, None, e))
    }

    fn drain(&mut self) {
        let out = std::mem::take(self.writer.inner_mut());
        self.bytes_written += out.len() as u64;
        self.upload.write(&out);
    }

    pub async fn finish(mut self) -> Result<u64> {
        self.writer.flush().map_err(|e| Error::Internal(e.to_string()))?;
        self.drain();
        let tail = self.writer.into_inner().map_err(|e| Error::Internal(e.to_string()))?;
        self.upload.write(&tail);
        self.upload
            .finish()
            .await
            .map_err(|e| Error::from_store(&self.uri, None, e))?;
        Ok(self.bytes_written + tail.len() as u64)
    }
}

/// An opened segment: its footer and page index.
pub(super) struct Segment {
    location: IndexLocation,
    size: u64,
    metadata: ArrowReaderMetadata,
}

impl Segment {
    /// Reads the footer and page index (one suffix GET, more only for a
    /// larger tail), checked against the layout a segment has.
    pub async fn open(location: IndexLocation) -> Result<Self> {
        Self::open_probing(location, TAIL_PROBE).await
    }

    /// `open` whose first read is the last `probe` bytes.
    async fn open_probing(location: IndexLocation, probe: u64) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: location.uri.clone(),
            reason,
        };
        // One suffix read gives the size and, usually, the whole tail.
        let probe = object_store::GetOptions::new().with_range(Some(object_store::GetRange::Suffix(probe)));
        let got = location
            .store
            .get_opts(&location.path, probe)
            .await
            .map_err(|e| Error::from_store(&location.uri, None, e))?;
        let size = got.meta.size;
        let mut want = size - got.range.start;
        let mut tail = got
            .bytes()
            .await
            .map_err(|e| Error::from_store(&location.uri, None, e))?;
        loop {
            // The tail alone, shorter than the file: the parser reads it
            // as a suffix and says how much more it needs.
            let mut parser = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Required);
            match parser.try_parse_sized(&tail, size) {
                Ok(()) => {
                    let meta = parser.finish().map_err(|e| corrupt(format!("bad footer: {e}")))?;
                    let metadata = ArrowReaderMetadata::try_new(Arc::new(meta), Default::default())
                        .map_err(|e| corrupt(format!("bad schema: {e}")))?;
                    let schema = metadata.schema();
                    let shaped = schema.fields().len() >= 3
                        && schema.field(0).name() == "id"
                        && *schema.field(0).data_type() == DataType::Int64
                        && *schema.field(1).data_type() == DataType::Boolean
                        && matches!(schema.field(2).data_type(), DataType::FixedSizeList(..));
                    let indexed = metadata.metadata().page_index().is_some_and(|p| p.is_complete());
                    if !shaped || !indexed {
                        return Err(corrupt("not a kept-rows segment".into()));
                    }
                    return Ok(Self {
                        location,
                        size,
                        metadata,
                    });
                }
                Err(parquet::errors::ParquetError::NeedMoreData(n))
                    if (n as u64) > want && (n as u64) <= size.min(MAX_FOOTER_BYTES) =>
                {
                    want = n as u64;
                    tail = location
                        .store
                        .get_range(&location.path, size - want..size)
                        .await
                        .map_err(|e| Error::from_store(&location.uri, None, e))?;
                }
                Err(e) => return Err(corrupt(format!("bad footer: {e}"))),
            }
        }
    }

    /// The rows of `wanted` (sorted, distinct) this segment holds: `None`
    /// for an id it records as deleted. Row groups are read concurrently.
    pub async fn lookup(&self, wanted: &[i64]) -> Result<HashMap<i64, Option<KeptRow>>> {
        let groups = self.metadata.metadata().num_row_groups();
        let found: Vec<Vec<(i64, Option<KeptRow>)>> = futures::stream::iter(0..groups)
            .map(|rg| self.lookup_in(rg, wanted))
            .buffer_unordered(ROW_GROUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Row group `rg`'s id pages (from the page index): each page's
    /// smallest and largest id and its rows.
    fn id_pages(&self, rg: usize) -> Result<Vec<(i64, i64, std::ops::Range<usize>)>> {
        let meta = self.metadata.metadata();
        let rows = meta.row_group(rg).num_rows() as usize;
        let index = meta.page_index_for_row_group(rg);
        let (Some(ColumnIndexMetaData::INT64(ids)), Some(pages)) = (index.column_index(0), index.offset_index(0))
        else {
            return Err(self.corrupt("no page index of its ids"));
        };
        let locations = pages.page_locations();
        Ok(locations
            .iter()
            .enumerate()
            .filter_map(|(p, location)| {
                let (Some(&min), Some(&max)) = (ids.min_value(p), ids.max_value(p)) else {
                    return None;
                };
                let start = location.first_row_index as usize;
                let end = locations.get(p + 1).map_or(rows, |n| n.first_row_index as usize);
                Some((min, max, start..end.min(rows)))
            })
            .collect())
    }

    /// `lookup` in row group `rg`: its id pages whose min/max hold a wanted
    /// id, then every column of the rows found.
    async fn lookup_in(&self, rg: usize, wanted: &[i64]) -> Result<Vec<(i64, Option<KeptRow>)>> {
        // The id pages that may hold a wanted id, as row ranges.
        let ranges: Vec<std::ops::Range<usize>> = self
            .id_pages(rg)?
            .into_iter()
            .filter(|&(min, max, _)| {
                let from = wanted.partition_point(|&w| w < min);
                wanted.get(from).is_some_and(|&w| w <= max)
            })
            .map(|(_, _, rows)| rows)
            .collect();
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        // Pass 1: the ids of those pages, to find the wanted rows.
        let found_ids = self.read(rg, &ranges, &[0]).await?;
        let column = found_ids.column(0).as_primitive::<Int64Type>();
        let mut positions = Vec::new();
        let mut at = 0;
        for range in &ranges {
            for row in range.clone() {
                let id = column.value(at);
                at += 1;
                if wanted.binary_search(&id).is_ok() {
                    positions.push((row, id));
                }
            }
        }
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        // Pass 2: every column of those rows alone.
        let exact: Vec<std::ops::Range<usize>> = positions.iter().map(|&(r, _)| r..r + 1).collect();
        let all: Vec<usize> = (0..self.metadata.schema().fields().len()).collect();
        let batch = self.read(rg, &exact, &all).await?;
        let deleted = batch.column(1).as_boolean();
        let vectors = batch.column(2).as_fixed_size_list_opt();
        let attributes = batch
            .project(&(3..batch.num_columns()).collect::<Vec<_>>())
            .map_err(arrow_error)?;
        positions
            .iter()
            .enumerate()
            .map(|(i, &(_, id))| {
                let row = match deleted.value(i) {
                    true => None,
                    false => Some(KeptRow::from_arrow(vectors, &attributes, i, &self.location.uri)?),
                };
                Ok((id, row))
            })
            .collect()
    }

    /// Up to `limit` of this segment's ids in `range`, ascending, each with
    /// whether it is recorded deleted. Reads only the id and `deleted`
    /// pages from the first that may hold one, in order, until `limit`
    /// rows are read.
    pub async fn ids_in(&self, range: &std::ops::RangeInclusive<i64>, limit: usize) -> Result<Vec<(i64, bool)>> {
        let (from, to) = (*range.start(), *range.end());
        let mut out = Vec::new();
        for rg in 0..self.metadata.metadata().num_row_groups() {
            // Ids are sorted across the segment: the pages overlapping
            // [from, to], in order, and no more rows than `limit` needs.
            let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
            let mut planned = 0;
            for (min, max, rows) in self.id_pages(rg)? {
                if max < from || min > to || planned >= limit + PAGE_ROWS {
                    continue;
                }
                let (start, end) = (rows.start, rows.end);
                planned += end - start;
                match ranges.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => ranges.push(start..end),
                }
            }
            if ranges.is_empty() {
                continue;
            }
            let batch = self.read(rg, &ranges, &[0, 1]).await?;
            let column = batch.column(0).as_primitive::<Int64Type>();
            let deleted = batch.column(1).as_boolean();
            for i in 0..batch.num_rows() {
                let id = column.value(i);
                if (from..=to).contains(&id) {
                    out.push((id, deleted.value(i)));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The object's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every row, read whole (a retrain's input).
    pub async fn scan(&self) -> Result<RecordBatch> {
        let bytes = self
            .location
            .store
            .get(&self.location.path)
            .await
            .map_err(|e| Error::from_store(&self.location.uri, None, e))?
            .bytes()
            .await
            .map_err(|e| Error::from_store(&self.location.uri, None, e))?;
        let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, self.metadata.clone())
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.corrupt(e.to_string()))?;
        arrow_select::concat::concat_batches(self.metadata.schema(), &batches).map_err(arrow_error)
    }

    /// The rows `ranges` (ascending, disjoint) of row group `rg`, columns
    /// `roots`: only the pages holding them are fetched.
    async fn read(&self, rg: usize, ranges: &[std::ops::Range<usize>], roots: &[usize]) -> Result<RecordBatch> {
        let meta = self.metadata.metadata();
        let index = meta.page_index_for_row_group(rg);
        let descr = meta.file_metadata().schema_descr();
        let rows = meta.row_group(rg).num_rows() as usize;
        let mut wanted_pages = BTreeSet::new();
        for leaf in 0..descr.num_columns() {
            if !roots.contains(&descr.get_column_root_idx(leaf)) {
                continue;
            }
            let pages = index
                .offset_index(leaf)
                .ok_or_else(|| self.corrupt("no offset index"))?;
            let locations = pages.page_locations();
            for (p, location) in locations.iter().enumerate() {
                let start = location.first_row_index as usize;
                let end = locations.get(p + 1).map_or(rows, |n| n.first_row_index as usize);
                if ranges.iter().any(|r| r.start < end && start < r.end) {
                    let offset = u64::try_from(location.offset).map_err(|_| self.corrupt("a negative page offset"))?;
                    let len = u64::try_from(location.compressed_page_size)
                        .map_err(|_| self.corrupt("a negative page size"))?;
                    if offset.checked_add(len).is_none_or(|end| end > self.size) {
                        return Err(self.corrupt("a page past the end"));
                    }
                    wanted_pages.insert((offset, len));
                }
            }
        }
        let wanted: Vec<std::ops::Range<u64>> = wanted_pages.iter().map(|&(o, l)| o..o + l).collect();
        let fetched = self
            .location
            .store
            .get_ranges(&self.location.path, &wanted)
            .await
            .map_err(|e| Error::from_store(&self.location.uri, None, e))?;
        let chunks: Vec<(u64, Bytes)> = wanted.iter().map(|r| r.start).zip(fetched).collect();
        let reader = FetchedColumns::new(self.size, chunks);
        let mut selectors = Vec::new();
        let mut at = 0;
        for r in ranges {
            if r.start > at {
                selectors.push(RowSelector::skip(r.start - at));
            }
            selectors.push(RowSelector::select(r.len()));
            at = r.end;
        }
        if at < rows {
            selectors.push(RowSelector::skip(rows - at));
        }
        let selected: usize = ranges.iter().map(|r| r.len()).sum();
        let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, self.metadata.clone())
            .with_row_groups(vec![rg])
            .with_projection(ProjectionMask::roots(descr, roots.iter().copied()))
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(selected.max(1))
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.corrupt(e.to_string()))?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(arrow_error)?;
        if batch.num_rows() != selected {
            return Err(self.corrupt(format!("{} rows read of {selected} selected", batch.num_rows())));
        }
        Ok(batch)
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            uri: self.location.uri.clone(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use object_store::memory::InMemory;

    use super::*;

    /// A segment whose footer and page index outgrow the first read is
    /// opened by reading more, and looks up rows by id.
    #[tokio::test]
    async fn a_tail_past_the_probe_is_read_in_a_second_request() {
        let root = IndexLocation::new(Arc::new(InMemory::new()), "r", "memory:///r");
        let (d, n) = (4, 20_000);
        let ids: Vec<i64> = (0..n as i64).map(|i| i * 2).collect();
        let vectors: Vec<f32> = (0..n * d).map(|i| i as f32).collect();
        let attrs = RecordBatch::try_from_iter([(
            "k",
            Arc::new(Int64Array::from(ids.iter().map(|i| i + 1).collect::<Vec<_>>())) as ArrayRef,
        )])
        .unwrap();
        let mut writer = SegmentWriter::start(&root, "rows/s.parquet", d, &attrs.schema())
            .await
            .unwrap();
        let mut deleted = vec![false; n];
        deleted[7] = true;
        writer
            .write(ids.clone(), deleted, vectors.clone(), vec![true; n], &attrs)
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let segment = Segment::open_probing(root.child("rows/s.parquet").unwrap(), 1024)
            .await
            .unwrap();
        let found = segment.lookup(&[14, 15, 4000, 39_998]).await.unwrap();
        assert_eq!(found.get(&14), Some(&None), "a deleted row");
        assert!(!found.contains_key(&15), "an id it does not hold");
        let row = found[&4000].as_ref().unwrap();
        assert_eq!(row.vector.as_deref(), Some(&vectors[2000 * d..2001 * d]));
        assert_eq!(row.attributes["k"], AttributeValue::Int64(4001));
        assert!(found[&39_998].is_some());
        let scanned = segment.scan().await.unwrap();
        assert_eq!(scanned.num_rows(), n);
    }
}
