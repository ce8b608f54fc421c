//! Attributes beside an index: a Parquet object `<index>.attrs.parquet` with
//! one row group per non-empty inverted list, rows in the list's own order,
//! so one column chunk range read brings a column of one list. Its footer
//! (read once, on the first search that needs it) holds the per-list
//! summaries: row-group statistics, plus small value sets of string columns.
//!
//! Parts: `filter` (the filter language), `summary` (pruning), `value` (typed
//! values of hits), `rows` (attribute rows as writes carry them), `write`
//! (building the object from a Parquet table and the
//! lists' ids). This module
//! opens the object and decodes fetched column chunks with the `parquet`
//! crate's own reader. Its reads go through the [`FetchScheduler`], like lists.
//! It must not know Faiss or the search flow.

pub mod filter;
pub mod rows;
pub mod summary;
pub mod value;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::{Buf, Bytes};
use object_store::path::Path;
use object_store::GetOptions;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Result};
use crate::fetch::{FetchScheduler, ListRequest, VersionPin};
use crate::layout::{ListRange, ListRanges};
use crate::location::IndexLocation;
use crate::object::IndexObject;
use crate::stats::{SearchIo, StoreCost};
use filter::{type_name, Literal};
use summary::ListSummary;

/// Appended to the index's path to name its attributes object.
pub const ATTRIBUTES_SUFFIX: &str = ".attrs.parquet";
/// Footer key: a JSON array, per list, of its row group (`null` for an empty list).
pub(crate) const KV_LIST_ROW_GROUPS: &str = "ivflake.list_row_groups";
/// Footer key: JSON `{column: [values of row group 0 or null, ...]}` for string columns.
pub(crate) const KV_VALUE_SETS: &str = "ivflake.value_sets";
/// The first read of the footer: the tail holding it, for footers of up to
/// 256 KiB (thousands of lists with a few columns) in one GET.
const FOOTER_PROBE_BYTES: u64 = 256 * 1024;
/// A footer larger than this is not one we wrote: refuse rather than buffer it.
const MAX_FOOTER_BYTES: u64 = 256 * 1024 * 1024;

/// The attributes object's path for an index path.
pub fn attributes_path(index: &Path) -> Path {
    let key = format!("{index}{ATTRIBUTES_SUFFIX}");
    Path::parse(&key).unwrap_or_else(|_| Path::from(key.as_str()))
}

/// An opened attributes object: its pinned version, schema and per-list summaries.
pub struct Attributes {
    object: Arc<IndexObject>,
    metadata: ArrowReaderMetadata,
    /// Row group of each list; `None` for empty lists.
    row_group_of_list: Vec<Option<usize>>,
    /// Per row group.
    summaries: Vec<ListSummary>,
    /// Keeps this version's chunks wanted in the memory cache, and keys them there.
    pin: VersionPin,
    /// What opening read: the footer probe, and the footer when the probe
    /// fell short of it.
    opened: StoreCost,
}

impl std::fmt::Debug for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attributes")
            .field("uri", &self.object.uri())
            .field("schema", self.metadata.schema())
            .finish()
    }
}

impl Attributes {
    /// Opens the attributes beside `index` (one GET of the footer, two if
    /// it is large); `None` when there is no such object. Every count is
    /// checked against the index's lists and the object's length.
    pub(crate) async fn open(
        index: &IndexLocation,
        layout: &ListRanges,
        scheduler: &Arc<FetchScheduler>,
    ) -> Result<Option<Self>> {
        let location = IndexLocation::new(
            index.store.clone(),
            attributes_path(&index.path),
            format!("{}{ATTRIBUTES_SUFFIX}", index.uri),
        );
        let uri = location.uri.clone();
        let probe = GetOptions::new().with_range(Some(object_store::GetRange::Suffix(FOOTER_PROBE_BYTES)));
        let got = match location.store.get_opts(&location.path, probe).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::from_store(&uri, None, e)),
        };
        let meta = got.meta.clone();
        let size = meta.size;
        let start = got.range.start;
        let tail = got.bytes().await.map_err(|e| Error::from_store(&uri, None, e))?;
        let mut opened = StoreCost {
            get_requests: 1,
            bytes: tail.len() as u64,
            ..StoreCost::default()
        };
        if size < 8 || tail.len() < 8 {
            return Err(Error::attributes(&uri, "too short to be a Parquet file"));
        }
        let mut last = [0u8; 8];
        last.copy_from_slice(&tail[tail.len() - 8..]);
        let footer = FooterTail::try_new(&last).map_err(|e| Error::attributes(&uri, format!("not Parquet: {e}")))?;
        let meta_len = footer.metadata_length() as u64;
        if meta_len + 8 > size || meta_len > MAX_FOOTER_BYTES {
            return Err(Error::attributes(
                &uri,
                format!("footer of {meta_len} bytes in a {size}-byte file"),
            ));
        }
        let meta_start = size - 8 - meta_len;
        let footer_bytes = if meta_start >= start {
            tail.slice((meta_start - start) as usize..tail.len() - 8)
        } else {
            let opts = GetOptions::new()
                .with_range(Some(meta_start..size - 8))
                .with_if_match(meta.e_tag.clone());
            let got = location
                .store
                .get_opts(&location.path, opts)
                .await
                .map_err(|e| Error::from_store(&uri, meta.e_tag.as_deref(), e))?;
            let footer = got.bytes().await.map_err(|e| Error::from_store(&uri, None, e))?;
            opened.get_requests += 1;
            opened.bytes += footer.len() as u64;
            footer
        };
        let parquet_meta = ParquetMetaDataReader::decode_metadata(&footer_bytes)
            .map_err(|e| Error::attributes(&uri, format!("bad footer: {e}")))?;
        let metadata = ArrowReaderMetadata::try_new(Arc::new(parquet_meta), Default::default())
            .map_err(|e| Error::attributes(&uri, format!("bad schema: {e}")))?;
        let mut object = IndexObject::new(location, size, meta.e_tag.clone());
        if let Some(modified) = meta.last_modified.timestamp_nanos_opt() {
            object = object.with_last_modified(modified);
        }
        let object = Arc::new(object);
        let pin = scheduler.pin_version(&object);
        let (row_group_of_list, summaries) =
            check_and_summarize(&metadata, layout, size).map_err(|r| Error::attributes(&uri, r))?;
        Ok(Some(Self {
            object,
            metadata,
            row_group_of_list,
            summaries,
            pin,
            opened,
        }))
    }

    /// What opening read from the store.
    pub fn open_cost(&self) -> &StoreCost {
        &self.opened
    }

    pub fn uri(&self) -> &str {
        self.object.uri()
    }

    /// The attribute columns and their Arrow types.
    pub fn schema(&self) -> &SchemaRef {
        self.metadata.schema()
    }

    /// What the footer says of list `list`; `None` for an empty list.
    pub fn summary(&self, list: usize) -> Option<&ListSummary> {
        let rg = (*self.row_group_of_list.get(list)?)?;
        self.summaries.get(rg)
    }

    /// Column indices of `names`, in schema order.
    pub(crate) fn column_indices(&self, names: &[String]) -> Result<Vec<usize>> {
        let schema = self.schema();
        let mut out = names
            .iter()
            .map(|n| {
                schema
                    .index_of(n)
                    .map_err(|_| Error::filter(format!("return_attributes.{n}"), format!("unknown column {n:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Range reads of `columns` of `lists` (non-empty ones), keyed for the scheduler.
    pub(crate) fn chunk_requests(&self, lists: &[usize], columns: &[usize]) -> Vec<ListRequest> {
        let ncols = self.schema().fields().len();
        let meta = self.metadata.metadata();
        let mut out = Vec::new();
        for &list in lists {
            let Some(Some(rg)) = self.row_group_of_list.get(list).copied() else {
                continue;
            };
            let group = meta.row_group(rg);
            for &c in columns {
                let (offset, len) = group.column(c).byte_range();
                out.push(ListRequest {
                    list: rg * ncols + c,
                    range: ListRange {
                        offset,
                        len,
                        count: group.num_rows() as u64,
                    },
                    align_at: 0,
                });
            }
        }
        out
    }

    /// Fetches `columns` of `lists` in one wave through the scheduler.
    pub(crate) async fn fetch(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &Arc<SearchIo>,
    ) -> Result<FetchedColumns> {
        let requests = self.chunk_requests(lists, columns);
        let offsets: HashMap<usize, u64> = requests.iter().map(|r| (r.list, r.range.offset)).collect();
        let mut chunks = Vec::with_capacity(requests.len());
        for (key, outcome) in scheduler.fetch(&self.object, &requests, io).await {
            chunks.push((offsets[&key], outcome?));
        }
        chunks.sort_by_key(|(o, _)| *o);
        Ok(FetchedColumns {
            len: self.object.size,
            chunks,
        })
    }

    /// `columns` of `lists` when the memory cache holds every chunk: a warm
    /// search reads them without leaving its compute job.
    pub(crate) fn memory_hits(
        &self,
        scheduler: &FetchScheduler,
        lists: &[usize],
        columns: &[usize],
        io: &SearchIo,
    ) -> Option<FetchedColumns> {
        let requests = self.chunk_requests(lists, columns);
        let offsets: HashMap<usize, u64> = requests.iter().map(|r| (r.list, r.range.offset)).collect();
        let hits = scheduler.memory_hits(&self.pin, &requests, io)?;
        let mut chunks: Vec<(u64, Bytes)> = hits
            .into_iter()
            .map(|(key, bytes)| (offsets[&key], Bytes::clone(&bytes)))
            .collect();
        chunks.sort_by_key(|(o, _)| *o);
        Some(FetchedColumns {
            len: self.object.size,
            chunks,
        })
    }

    /// Decodes `columns` of list `list` from fetched chunks; `None` for an empty list.
    pub(crate) fn decode(
        &self,
        fetched: &FetchedColumns,
        list: usize,
        columns: &[usize],
    ) -> Result<Option<RecordBatch>> {
        let Some(Some(rg)) = self.row_group_of_list.get(list).copied() else {
            return Ok(None);
        };
        let rows = self.metadata.metadata().row_group(rg).num_rows() as usize;
        let mask = ProjectionMask::roots(self.metadata.parquet_schema(), columns.iter().copied());
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(fetched.clone(), self.metadata.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| Error::attributes(self.uri(), format!("list {list}: {e}")))?;
        let mut batches = Vec::new();
        for batch in reader {
            batches.push(batch.map_err(|e| Error::attributes(self.uri(), format!("list {list}: {e}")))?);
        }
        let batch = match batches.len() {
            1 => batches.remove(0),
            _ => arrow_select::concat::concat_batches(
                &batches
                    .first()
                    .map(|b| b.schema())
                    .unwrap_or_else(|| self.schema().clone()),
                &batches,
            )
            .map_err(filter::arrow_error)?,
        };
        if batch.num_rows() != rows {
            return Err(Error::attributes(
                self.uri(),
                format!("list {list}: decoded {} rows, expected {rows}", batch.num_rows()),
            ));
        }
        Ok(Some(batch))
    }
}

/// Checks the footer against the index (a list per entry, row counts equal
/// to list sizes, chunks inside the file, supported types) and reads the summaries.
fn check_and_summarize(
    metadata: &ArrowReaderMetadata,
    layout: &ListRanges,
    size: u64,
) -> std::result::Result<(Vec<Option<usize>>, Vec<ListSummary>), String> {
    for field in metadata.schema().fields() {
        if type_name(field.data_type()).is_none() {
            return Err(format!(
                "column {:?} has type {}, not string, int64, float64 or bool",
                field.name(),
                field.data_type()
            ));
        }
    }
    let meta = metadata.metadata();
    // Cache keys number chunks `row_group * columns + column` in a `u32`.
    let chunks = meta
        .num_row_groups()
        .checked_mul(metadata.schema().fields().len().max(1));
    if chunks.is_none_or(|c| c > u32::MAX as usize) {
        return Err("too many row groups × columns to address".to_string());
    }
    let kv = meta.file_metadata().key_value_metadata();
    let find = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
    };
    let lists = find(KV_LIST_ROW_GROUPS).ok_or("no list map in the footer: not written by ivflake")?;
    let row_group_of_list: Vec<Option<usize>> =
        serde_json::from_str(&lists).map_err(|e| format!("bad list map: {e}"))?;
    if row_group_of_list.len() != layout.nlist() {
        return Err(format!(
            "describes {} lists; the index has {}",
            row_group_of_list.len(),
            layout.nlist()
        ));
    }
    let groups = meta.row_groups();
    let mut used = vec![false; groups.len()];
    for (list, rg) in row_group_of_list.iter().enumerate() {
        let expected = layout.get(list).map(|r| r.count).unwrap_or(0);
        let rows = match rg {
            None => 0,
            Some(rg) => {
                let group = groups
                    .get(*rg)
                    .ok_or_else(|| format!("list {list}: row group {rg} does not exist"))?;
                if std::mem::replace(&mut used[*rg], true) {
                    return Err(format!("row group {rg} is claimed by two lists"));
                }
                for c in group.columns() {
                    let (offset, len) = c.byte_range();
                    if offset.checked_add(len).is_none_or(|end| end > size) {
                        return Err(format!("row group {rg}: a column chunk ends past the file's end"));
                    }
                }
                group.num_rows().max(0) as u64
            }
        };
        if rows != expected {
            return Err(format!(
                "list {list} has {expected} vectors but {rows} attribute rows; rebuild with `ivflake attributes`"
            ));
        }
    }
    let mut value_sets: Vec<HashMap<String, Vec<Literal>>> = vec![HashMap::new(); groups.len()];
    if let Some(text) = find(KV_VALUE_SETS) {
        let sets: HashMap<String, Vec<Option<Vec<String>>>> =
            serde_json::from_str(&text).map_err(|e| format!("bad value sets: {e}"))?;
        for (column, per_group) in sets {
            if per_group.len() != groups.len() {
                return Err(format!(
                    "value sets of {column:?} cover {} row groups, not {}",
                    per_group.len(),
                    groups.len()
                ));
            }
            for (rg, set) in per_group.into_iter().enumerate() {
                if let Some(set) = set {
                    value_sets[rg].insert(column.clone(), set.into_iter().map(Literal::Str).collect());
                }
            }
        }
    }
    let summaries = groups
        .iter()
        .zip(value_sets)
        .map(|(g, sets)| ListSummary::from_row_group(g, sets))
        .collect();
    Ok((row_group_of_list, summaries))
}

/// Column chunks of one wave, by file offset: the `ChunkReader` the parquet
/// reader decodes from. Cheap to clone (refcounted `Bytes`).
#[derive(Clone, Default)]
pub(crate) struct FetchedColumns {
    len: u64,
    chunks: Vec<(u64, Bytes)>,
}

impl FetchedColumns {
    /// Byte ranges of an object of `len` bytes, by offset.
    pub(crate) fn new(len: u64, mut chunks: Vec<(u64, Bytes)>) -> Self {
        chunks.sort_by_key(|(o, _)| *o);
        Self { len, chunks }
    }

    fn find(&self, start: u64, length: u64) -> Option<Bytes> {
        let i = self.chunks.partition_point(|(o, _)| *o <= start).checked_sub(1)?;
        let (offset, bytes) = &self.chunks[i];
        let from = (start - offset) as usize;
        let to = from.checked_add(length as usize)?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }
}

impl Length for FetchedColumns {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for FetchedColumns {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let i = self
            .chunks
            .partition_point(|(o, _)| *o <= start)
            .checked_sub(1)
            .ok_or_else(|| parquet::errors::ParquetError::General(format!("offset {start} was not fetched")))?;
        let (offset, bytes) = &self.chunks[i];
        let from = (start - offset) as usize;
        if from > bytes.len() {
            return Err(parquet::errors::ParquetError::General(format!(
                "offset {start} was not fetched"
            )));
        }
        Ok(bytes.slice(from..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.find(start, length as u64)
            .ok_or_else(|| parquet::errors::ParquetError::General(format!("bytes {start}+{length} were not fetched")))
    }
}
