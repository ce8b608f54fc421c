//! Attribute values as the library returns them: typed as their Arrow
//! column is, never JSON. The server and Python turn them into their own
//! values at the edge.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use serde::Serialize;

use crate::error::{Error, Result};

/// One attribute of a hit. Serializes as the plain value (`null` when missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// The row has no value in this column.
    Null,
    Bool(bool),
    Int64(i64),
    Float64(f64),
    Utf8(String),
}

/// The asked columns of one hit, by name.
pub type AttributeRow = BTreeMap<String, AttributeValue>;

impl AttributeValue {
    /// The value of `column` (named `name`) at `row`; a type the library
    /// cannot carry is an error naming the column.
    pub(crate) fn from_arrow(name: &str, column: &dyn Array, row: usize, uri: &str) -> Result<Self> {
        if column.is_null(row) {
            return Ok(AttributeValue::Null);
        }
        Ok(match column.data_type() {
            DataType::Utf8 => AttributeValue::Utf8(column.as_string::<i32>().value(row).to_string()),
            DataType::Int64 => AttributeValue::Int64(column.as_primitive::<Int64Type>().value(row)),
            DataType::Float64 => AttributeValue::Float64(column.as_primitive::<Float64Type>().value(row)),
            DataType::Boolean => AttributeValue::Bool(column.as_boolean().value(row)),
            other => {
                return Err(Error::attributes(
                    uri,
                    format!("column {name:?} is {other}, which ivflake cannot return (string, int64, float64, bool)"),
                ))
            }
        })
    }

    /// Every column of `batch` at `row`, nulls as [`AttributeValue::Null`].
    pub(crate) fn row_of(batch: &arrow_array::RecordBatch, row: usize, uri: &str) -> Result<AttributeRow> {
        batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| Ok((f.name().clone(), Self::from_arrow(f.name(), c.as_ref(), row, uri)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn values_keep_their_type_and_unknown_types_name_the_column() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None]));
        assert_eq!(
            AttributeValue::from_arrow("n", &ints, 0, "u").unwrap(),
            AttributeValue::Int64(7)
        );
        assert_eq!(
            AttributeValue::from_arrow("n", &ints, 1, "u").unwrap(),
            AttributeValue::Null
        );
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["red"]));
        assert_eq!(
            serde_json::to_string(&AttributeValue::from_arrow("c", &strings, 0, "u").unwrap()).unwrap(),
            "\"red\""
        );
        let small: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        let err = AttributeValue::from_arrow("size", &small, 0, "u").unwrap_err();
        assert!(err.to_string().contains("\"size\""), "{err}");
    }
}
