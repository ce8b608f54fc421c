//! Writing the attributes object: a user's Parquet table joined on its id
//! column to the ids stored in each inverted list, written with the
//! `parquet` crate as one row group per non-empty list in list order, with
//! chunk statistics (untruncated, so exact) and value sets of string columns
//! in the footer. Also reads a build input: vectors, ids, attributes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::filter::{arrow_error, type_name};
use super::summary::MAX_VALUE_SET;
use super::{KV_LIST_ROW_GROUPS, KV_VALUE_SETS};
use crate::error::{Error, Result};

/// A Parquet table read whole: its columns by name.
#[derive(Debug, Clone)]
pub struct ParquetTable {
    pub batch: RecordBatch,
}

/// What `ivflake build --input` indexes: vectors, their ids, and the attributes.
#[derive(Debug, Clone)]
pub struct BuildInput {
    pub d: usize,
    /// Row-major, `d` floats per row.
    pub vectors: Vec<f32>,
    pub ids: Vec<i64>,
    /// Every other column, row for row.
    pub attributes: ParquetTable,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid("attributes", reason)
}

impl ParquetTable {
    /// Reads a whole Parquet file (all row groups, all columns).
    pub fn read(bytes: Bytes) -> Result<Self> {
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| invalid(format!("not Parquet: {e}")))?;
        let schema = builder.schema().clone();
        let batches = builder
            .build()
            .map_err(|e| invalid(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(arrow_error)?;
        Ok(Self { batch })
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The int64 id column, without nulls.
    pub fn ids(&self, id_column: &str) -> Result<Vec<i64>> {
        let col = self
            .batch
            .column_by_name(id_column)
            .ok_or_else(|| invalid(format!("no id column {id_column:?}; columns are {:?}", self.names())))?;
        let ids = col
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| invalid(format!("id column {id_column:?} is {}, not int64", col.data_type())))?;
        if ids.null_count() > 0 {
            return Err(invalid(format!(
                "id column {id_column:?} has {} nulls",
                ids.null_count()
            )));
        }
        Ok(ids.values().to_vec())
    }

    fn names(&self) -> Vec<String> {
        self.batch.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    /// The table without `columns`.
    pub fn without(&self, columns: &[&str]) -> Result<Self> {
        let schema = self.batch.schema();
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| !columns.contains(&schema.field(i).name().as_str()))
            .collect();
        Ok(Self {
            batch: self.batch.project(&keep).map_err(arrow_error)?,
        })
    }
}

impl BuildInput {
    /// Splits a Parquet table into vectors (a fixed-size list of float32),
    /// ids (int64) and attributes (the rest).
    pub fn from_table(table: ParquetTable, vector_column: &str, id_column: &str) -> Result<Self> {
        let col = table.batch.column_by_name(vector_column).ok_or_else(|| {
            invalid(format!(
                "no vector column {vector_column:?}; columns are {:?}",
                table.names()
            ))
        })?;
        let list = col.as_fixed_size_list_opt().ok_or_else(|| {
            invalid(format!(
                "vector column {vector_column:?} is {}, not a fixed-size list of float32",
                col.data_type()
            ))
        })?;
        let d = list.value_length() as usize;
        let values = list.values().as_primitive_opt::<Float32Type>().ok_or_else(|| {
            invalid(format!(
                "vector column {vector_column:?} holds {}, not float32",
                list.value_type()
            ))
        })?;
        if list.null_count() > 0 || values.null_count() > 0 {
            return Err(invalid(format!("vector column {vector_column:?} has nulls")));
        }
        if d == 0 {
            return Err(invalid("vectors have dimension 0"));
        }
        let start = list.offset() * d;
        let vectors = values.values()[start..start + list.len() * d].to_vec();
        let ids = table.ids(id_column)?;
        let attributes = table.without(&[vector_column, id_column])?;
        Ok(Self {
            d,
            vectors,
            ids,
            attributes,
        })
    }
}

/// Writes the attributes object: `table` (one row per id, `ids[i]` the id
/// of row `i`) in the order of `lists`, the ids each inverted list holds.
/// Every id stored in a list must have exactly one row.
pub fn write_attributes(table: &ParquetTable, ids: &[i64], lists: &[Vec<i64>]) -> Result<Vec<u8>> {
    let schema = table.batch.schema();
    check_schema(&schema)?;
    check_values(&table.batch)?;
    if ids.len() != table.rows() {
        return Err(invalid(format!("{} ids for {} rows", ids.len(), table.rows())));
    }
    let mut row_of: HashMap<i64, u32> = HashMap::with_capacity(ids.len());
    for (row, &id) in ids.iter().enumerate() {
        if row_of.insert(id, row as u32).is_some() {
            return Err(invalid(format!("id {id} has two rows of attributes")));
        }
    }
    let mut writer = ListAttributeWriter::new(schema, Vec::new())?;
    for (list, list_ids) in lists.iter().enumerate() {
        if list_ids.is_empty() {
            writer.push_list(None)?;
            continue;
        }
        let rows = list_ids
            .iter()
            .map(|id| {
                row_of
                    .get(id)
                    .copied()
                    .ok_or_else(|| invalid(format!("list {list} holds id {id}, which has no row of attributes")))
            })
            .collect::<Result<Vec<u32>>>()?;
        let batch =
            arrow_select::take::take_record_batch(&table.batch, &UInt32Array::from(rows)).map_err(arrow_error)?;
        writer.push_list(Some(&batch))?;
    }
    writer.finish()
}

/// Writes an attributes object list by list into `W`: a row group per
/// non-empty list, the footer's list map and value sets at the end. A
/// compaction streams it, taking what `sink` holds after each list.
pub struct ListAttributeWriter<W: std::io::Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    string_columns: Vec<usize>,
    value_sets: HashMap<String, Vec<Option<Vec<String>>>>,
    row_group_of_list: Vec<Option<usize>>,
    groups: usize,
}

impl<W: std::io::Write + Send> ListAttributeWriter<W> {
    pub fn new(schema: SchemaRef, sink: W) -> Result<Self> {
        check_schema(&schema)?;
        let props = WriterProperties::builder()
            // One row group per list, however long.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            // Chunk statistics are the summaries; untruncated so bounds are exact.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_statistics_truncate_length(None)
            .build();
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(|e| invalid(e.to_string()))?;
        let string_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| *schema.field(i).data_type() == DataType::Utf8)
            .collect();
        let value_sets = string_columns
            .iter()
            .map(|&i| (schema.field(i).name().clone(), Vec::new()))
            .collect();
        Ok(Self {
            writer,
            schema,
            string_columns,
            value_sets,
            row_group_of_list: Vec::new(),
            groups: 0,
        })
    }

    /// The next list's rows, in its order (`None` or no rows: an empty list).
    pub fn push_list(&mut self, batch: Option<&RecordBatch>) -> Result<()> {
        let Some(batch) = batch.filter(|b| b.num_rows() > 0) else {
            self.row_group_of_list.push(None);
            return Ok(());
        };
        check_values(batch)?;
        for &c in &self.string_columns {
            let col = batch.column(c).as_string::<i32>();
            let distinct: HashSet<&str> = col.iter().flatten().collect();
            let set = (distinct.len() <= MAX_VALUE_SET).then(|| {
                let mut v: Vec<String> = distinct.into_iter().map(str::to_string).collect();
                v.sort();
                v
            });
            if let Some(sets) = self.value_sets.get_mut(self.schema.field(c).name()) {
                sets.push(set);
            }
        }
        self.writer.write(batch).map_err(|e| invalid(e.to_string()))?;
        self.writer.flush().map_err(|e| invalid(e.to_string()))?;
        self.row_group_of_list.push(Some(self.groups));
        self.groups += 1;
        Ok(())
    }

    /// The sink, to take what has been written so far.
    pub fn sink(&mut self) -> &mut W {
        self.writer.inner_mut()
    }

    /// Writes the footer; returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.writer.append_key_value_metadata(KeyValue::new(
            KV_LIST_ROW_GROUPS.to_string(),
            to_json(&self.row_group_of_list),
        ));
        self.writer
            .append_key_value_metadata(KeyValue::new(KV_VALUE_SETS.to_string(), to_json(&self.value_sets)));
        // Writes the footer too.
        self.writer.into_inner().map_err(|e| invalid(e.to_string()))
    }
}

/// The footer's JSON values (plain vectors and maps: they cannot fail to serialize).
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn check_schema(schema: &Arc<Schema>) -> Result<()> {
    if schema.fields().is_empty() {
        return Err(invalid("the table has no attribute columns"));
    }
    for f in schema.fields() {
        if type_name(f.data_type()).is_none() {
            // A table written for `ivflake build` also holds the vectors.
            let hint = if matches!(f.data_type(), DataType::FixedSizeList(..) | DataType::List(..)) {
                format!(" (a vector column? leave it out with `--drop {}`)", f.name())
            } else {
                String::new()
            };
            return Err(invalid(format!(
                "column {:?} is {}; attributes are string, int64, float64 or bool{hint}",
                f.name(),
                f.data_type()
            )));
        }
    }
    Ok(())
}

/// NaN has no place in a min/max summary: refuse it instead of mis-pruning.
fn check_values(batch: &RecordBatch) -> Result<()> {
    for (i, f) in batch.schema().fields().iter().enumerate() {
        if let Some(col) = batch.column(i).as_primitive_opt::<Float64Type>() {
            if col.iter().flatten().any(f64::is_nan) {
                return Err(invalid(format!(
                    "column {:?} holds NaN; store a null instead",
                    f.name()
                )));
            }
        }
    }
    Ok(())
}
