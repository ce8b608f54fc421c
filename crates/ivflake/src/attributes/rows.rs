//! Attribute rows as writes carry them, before they reach a Parquet object:
//! a write's batch checked against the columns the index already has, JSON
//! rows typed into a batch, schemas merged, rows gathered from several
//! batches (nulls where a batch lacks a column), and the Arrow IPC bytes a
//! write log record holds them in. One column has one type for the life
//! of an index: the type it was first written with.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use super::filter::{arrow_error, type_name};
use crate::error::{Error, Result};

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid("attributes", reason)
}

/// An error at one value: `path` is where, e.g. `attributes[3].price`.
fn invalid_at(path: String, reason: impl Into<String>) -> Error {
    invalid(format!("{path}: {}", reason.into()))
}

/// Checks a write's attributes: one row per id, supported types, no NaN,
/// and each column of the type `established` (the index's columns so far)
/// gives it. Columns are made nullable: a row without a value is null.
pub fn check_write(batch: &RecordBatch, rows: usize, established: &Schema) -> Result<RecordBatch> {
    if batch.num_rows() != rows {
        return Err(invalid(format!(
            "{} rows of attributes for {rows} ids",
            batch.num_rows()
        )));
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        if type_name(field.data_type()).is_none() {
            return Err(invalid(format!(
                "column {name:?} is {}; attributes are string, int64, float64 or bool",
                field.data_type()
            )));
        }
        if let Ok(known) = established.field_with_name(name) {
            if known.data_type() != field.data_type() {
                return Err(invalid(format!(
                    "column {name:?} is {} in this write, but the index holds it as {}",
                    field.data_type(),
                    known.data_type()
                )));
            }
        }
        if let Some(values) = column.as_primitive_opt::<Float64Type>() {
            if values.iter().flatten().any(f64::is_nan) {
                return Err(invalid(format!("column {name:?} holds NaN; write a null instead")));
            }
        }
        fields.push(Field::new(name, field.data_type().clone(), true));
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        batch.columns().to_vec(),
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(arrow_error)
}

/// `base` with the columns of `more` it lacks appended. A column `more`
/// types otherwise than `base` is left out and named in the second value.
pub fn merge_schemas(base: &Schema, more: &Schema) -> (SchemaRef, Vec<String>) {
    let mut fields: Vec<Field> = base
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let mut conflicts = Vec::new();
    for f in more.fields() {
        match base.field_with_name(f.name()) {
            Ok(known) if known.data_type() != f.data_type() => conflicts.push(f.name().clone()),
            Ok(_) => {}
            Err(_) => fields.push(Field::new(f.name(), f.data_type().clone(), true)),
        }
    }
    (Arc::new(Schema::new(fields)), conflicts)
}

/// A batch of `schema` whose row `i` is row `picks[i].1` of
/// `sources[picks[i].0]`; a `None` source, or a source without a column
/// of the schema's type, gives nulls.
pub fn gather(schema: &SchemaRef, sources: &[Option<&RecordBatch>], picks: &[(usize, usize)]) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        // Source 0 is a one-row null: rows from sources without the column.
        let null = new_null_array(field.data_type(), 1);
        let mut arrays: Vec<&dyn Array> = vec![null.as_ref()];
        let mut slot = Vec::with_capacity(sources.len());
        for source in sources {
            let column = source
                .and_then(|b| b.column_by_name(field.name()))
                .filter(|c| c.data_type() == field.data_type());
            match column {
                Some(c) => {
                    slot.push(Some(arrays.len()));
                    arrays.push(c.as_ref());
                }
                None => slot.push(None),
            }
        }
        let indices: Vec<(usize, usize)> = picks
            .iter()
            .map(|&(s, row)| match slot.get(s).copied().flatten() {
                Some(at) => (at, row),
                None => (0, 0),
            })
            .collect();
        columns.push(arrow_select::interleave::interleave(&arrays, &indices).map_err(arrow_error)?);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(picks.len())),
    )
    .map_err(arrow_error)
}

/// `batch` as `schema` (a superset of its columns): missing columns null.
pub fn widen(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let picks: Vec<(usize, usize)> = (0..batch.num_rows()).map(|r| (0, r)).collect();
    gather(schema, &[Some(batch)], &picks)
}

/// Rows typed by JSON: `rows[i]` an object of column → value (string,
/// number, bool or null). A column `established` has keeps its type; a new
/// one is int64 when every value is an integer, float64 when numbers mix,
/// otherwise the one type its values share. Errors name `field[i].column`.
pub fn from_json_rows(field: &str, rows: &[Value], established: &Schema) -> Result<RecordBatch> {
    let mut names: BTreeMap<&str, Option<DataType>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(object) = row.as_object() else {
            return Err(invalid_at(
                format!("{field}[{i}]"),
                "each row of attributes is an object",
            ));
        };
        for (name, value) in object {
            let ty = names.entry(name.as_str()).or_insert(None);
            let here = match value {
                Value::Null => continue,
                Value::Bool(_) => DataType::Boolean,
                Value::String(_) => DataType::Utf8,
                Value::Number(n) if n.is_i64() => DataType::Int64,
                Value::Number(_) => DataType::Float64,
                Value::Array(_) | Value::Object(_) => {
                    return Err(invalid_at(
                        format!("{field}[{i}].{name}"),
                        "attributes are strings, numbers, booleans or null",
                    ))
                }
            };
            *ty = Some(match (ty.take(), here) {
                (None, t) => t,
                (Some(a), b) if a == b => a,
                (Some(DataType::Int64 | DataType::Float64), DataType::Int64 | DataType::Float64) => DataType::Float64,
                (Some(a), b) => {
                    return Err(invalid_at(
                        format!("{field}[{i}].{name}"),
                        format!("a {} where earlier rows have a {}", type_label(&b), type_label(&a)),
                    ))
                }
            });
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (name, seen) in names {
        let ty = match established.field_with_name(name) {
            Ok(known) => known.data_type().clone(),
            Err(_) => seen.unwrap_or(DataType::Utf8),
        };
        let column: ArrayRef = match &ty {
            DataType::Utf8 => Arc::new(StringArray::from(typed_column(
                field,
                rows,
                name,
                |v| v.as_str().map(str::to_string),
                "strings",
            )?)),
            DataType::Int64 => Arc::new(Int64Array::from(typed_column(
                field,
                rows,
                name,
                Value::as_i64,
                "int64 integers",
            )?)),
            DataType::Float64 => Arc::new(Float64Array::from(typed_column(
                field,
                rows,
                name,
                Value::as_f64,
                "numbers",
            )?)),
            DataType::Boolean => Arc::new(BooleanArray::from(typed_column(
                field,
                rows,
                name,
                Value::as_bool,
                "booleans",
            )?)),
            other => return Err(Error::Internal(format!("column {name:?} has type {other}"))),
        };
        fields.push(Field::new(name, ty, true));
        columns.push(column);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(arrow_error)
}

/// Each row's value of column `name` as `T` (`None` when absent or
/// null); a value of another kind is an error naming it.
fn typed_column<T>(
    field: &str,
    rows: &[Value],
    name: &str,
    extract: fn(&Value) -> Option<T>,
    holds: &str,
) -> Result<Vec<Option<T>>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| match r.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => extract(v)
                .map(Some)
                .ok_or_else(|| invalid_at(format!("{field}[{i}].{name}"), format!("this column holds {holds}"))),
        })
        .collect()
}

fn type_label(ty: &DataType) -> &'static str {
    type_name(ty).unwrap_or("value")
}

/// A batch as Arrow IPC stream bytes.
pub fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).map_err(arrow_error)?;
    writer.write(batch).map_err(arrow_error)?;
    writer.finish().map_err(arrow_error)?;
    drop(writer);
    Ok(out)
}

/// Arrow IPC stream bytes back to one batch of `rows` rows of supported
/// types (the reader validates every buffer against its message).
pub fn from_ipc(bytes: &[u8], rows: usize) -> std::result::Result<RecordBatch, String> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("its attributes are not Arrow IPC: {e}"))?;
    let schema = reader.schema();
    if let Some(f) = schema.fields().iter().find(|f| type_name(f.data_type()).is_none()) {
        return Err(format!("its attribute column {:?} is {}", f.name(), f.data_type()));
    }
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|e| format!("its attributes: {e}"))?);
    }
    let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    if batch.num_rows() != rows {
        return Err(format!("{} rows of attributes for {rows} upserts", batch.num_rows()));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_rows_take_the_established_types_and_infer_new_ones() {
        let established = Schema::new(vec![Field::new("price", DataType::Float64, true)]);
        let rows = vec![json!({"price": 3, "n": 1, "tag": "a"}), json!({"n": 2.5, "ok": true})];
        let b = from_json_rows("attributes", &rows, &established).unwrap();
        let ty = |n: &str| b.schema().field_with_name(n).unwrap().data_type().clone();
        assert_eq!(ty("price"), DataType::Float64);
        assert_eq!(ty("n"), DataType::Float64);
        assert_eq!(ty("tag"), DataType::Utf8);
        assert_eq!(ty("ok"), DataType::Boolean);
        assert!(b.column_by_name("tag").unwrap().is_null(1));
        let err = from_json_rows("attributes", &[json!({"price": "x"})], &established).unwrap_err();
        assert!(err.to_string().contains("attributes[0].price"), "{err}");
        let err = from_json_rows("attributes", &[json!({"a": 1}), json!({"a": "s"})], &established).unwrap_err();
        assert!(err.to_string().contains("attributes[1].a"), "{err}");
    }

    #[test]
    fn gather_fills_missing_columns_with_nulls_and_ipc_round_trips() {
        let a = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)]).unwrap();
        let b = RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["p"])) as ArrayRef)]).unwrap();
        let (schema, conflicts) = merge_schemas(&a.schema(), &b.schema());
        assert!(conflicts.is_empty());
        let g = gather(&schema, &[Some(&a), None, Some(&b)], &[(2, 0), (0, 1), (1, 5)]).unwrap();
        let x = g.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((x.is_null(0), x.value(1), x.is_null(2)), (true, 2, true));
        assert_eq!(g.column(1).as_string::<i32>().value(0), "p");
        let back = from_ipc(&to_ipc(&g).unwrap(), 3).unwrap();
        assert_eq!(back, g);
        assert!(from_ipc(&to_ipc(&g).unwrap(), 4).is_err());
        assert!(from_ipc(b"garbage", 1).is_err());
        let (_, conflicts) = merge_schemas(&a.schema(), &Schema::new(vec![Field::new("x", DataType::Utf8, true)]));
        assert_eq!(conflicts, vec!["x".to_string()]);
    }
}
