//! The attributes object of a compaction's new base, written list by list
//! beside its lists: each list's surviving base rows (read through the
//! scheduler, a batch of lists at a time) and then its rows from the log,
//! widened to the index's schema, streamed out through a multipart upload
//! so memory holds a batch of lists, not the table.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::delta::DeltaSnapshot;
use crate::attributes::filter::arrow_error;
use crate::attributes::rows;
use crate::attributes::write::ListAttributeWriter;
use crate::attributes::{attributes_path, Attributes, FetchedColumns};
use crate::error::{Error, Result};
use crate::index::IvfIndex;
use crate::location::IndexLocation;
use crate::stats::SearchIo;

/// Multipart parts of the attributes object.
const PART_BYTES: usize = 8 << 20;

pub(super) struct AttributeFold {
    base: IvfIndex,
    attrs: Option<Arc<Attributes>>,
    /// Every column of the base's attributes object, by index.
    base_columns: Vec<usize>,
    delta: Arc<DeltaSnapshot>,
    schema: SchemaRef,
    writer: ListAttributeWriter<Vec<u8>>,
    to: IndexLocation,
    upload: WriteMultipart,
    io: Arc<SearchIo>,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl AttributeFold {
    /// Starts `<new base>.attrs.parquet` beside `to_base`; `None` when
    /// neither the base nor any write has attributes.
    pub async fn start(base: &IvfIndex, delta: Arc<DeltaSnapshot>, to_base: &IndexLocation) -> Result<Option<Self>> {
        if !delta.has_attributes() {
            return Ok(None);
        }
        let schema = delta.schema.clone();
        let writer = ListAttributeWriter::new(schema.clone(), Vec::new())?;
        let path = attributes_path(&to_base.path);
        let to = IndexLocation::new(
            to_base.store.clone(),
            path.clone(),
            format!("{}{}", to_base.uri, crate::attributes::ATTRIBUTES_SUFFIX),
        );
        let upload = to
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| Error::from_store(&to.uri, None, e))?;
        let attrs = base.attributes().await?;
        Ok(Some(Self {
            base: base.clone(),
            base_columns: attrs
                .as_ref()
                .map_or(Vec::new(), |a| (0..a.schema().fields().len()).collect()),
            attrs,
            delta,
            schema,
            writer,
            to,
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            io: Arc::new(SearchIo::default()),
            bytes_read: 0,
            bytes_written: 0,
        }))
    }

    /// The base's attribute columns of `lists`, read in one wave.
    pub async fn read(&mut self, lists: &[usize]) -> Result<FetchedColumns> {
        match &self.attrs {
            Some(attrs) => {
                let columns = &self.base_columns;
                self.bytes_read += attrs
                    .chunk_requests(lists, columns)
                    .iter()
                    .map(|r| r.range.len)
                    .sum::<u64>();
                attrs.fetch(self.base.scheduler(), lists, columns, &self.io).await
            }
            None => Ok(FetchedColumns::default()),
        }
    }

    /// List `list`'s rows: the base rows `survives` keeps, then the log's.
    pub fn push(&mut self, list: usize, fetched: &FetchedColumns, survives: &[bool]) -> Result<()> {
        let batch = self.rows_of(list, fetched, survives)?;
        self.push_batch(batch.as_ref())
    }

    /// The next list's rows as given (`None`: an empty list).
    pub fn push_batch(&mut self, batch: Option<&RecordBatch>) -> Result<()> {
        self.writer.push_list(batch)?;
        let out = std::mem::take(self.writer.sink());
        self.bytes_written += out.len() as u64;
        self.upload.write(&out);
        Ok(())
    }

    /// List `list`'s surviving base rows then its rows from the log, as
    /// the index's schema; `None` when there are none.
    pub fn rows_of(&self, list: usize, fetched: &FetchedColumns, survives: &[bool]) -> Result<Option<RecordBatch>> {
        let mut parts: Vec<RecordBatch> = Vec::new();
        let kept = survives.iter().filter(|&&s| s).count();
        if kept > 0 {
            let base_rows = match &self.attrs {
                Some(attrs) => attrs.decode(fetched, list, &self.base_columns)?,
                None => None,
            };
            parts.push(match base_rows {
                Some(batch) => {
                    let mask = BooleanArray::from(survives.to_vec());
                    let batch = arrow_select::filter::filter_record_batch(&batch, &mask).map_err(arrow_error)?;
                    rows::widen(&batch, &self.schema)?
                }
                // A base without attributes: its rows have none.
                None => rows::gather(&self.schema, &[], &vec![(0, 0); kept])?,
            });
        }
        if let Some(later) = self.delta.run_attributes(list, &self.schema)? {
            parts.push(later);
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(arrow_select::concat::concat_batches(&self.schema, &parts).map_err(arrow_error)?),
        })
    }

    /// Waits while too many parts are in flight.
    pub async fn wait(&mut self, parts: usize) -> Result<()> {
        self.upload
            .wait_for_capacity(parts)
            .await
            .map_err(|e| Error::from_store(&self.to.uri, None, e))
    }

    /// Writes the footer and completes the upload.
    pub async fn finish(self) -> Result<u64> {
        let tail = self.writer.finish()?;
        let mut upload = self.upload;
        upload.write(&tail);
        upload
            .finish()
            .await
            .map_err(|e| Error::from_store(&self.to.uri, None, e))?;
        Ok(self.bytes_written + tail.len() as u64)
    }

    pub async fn abort(self) {
        let _ = self.upload.abort().await;
    }
}
