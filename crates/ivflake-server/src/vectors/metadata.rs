//! Vector keys and metadata as an index's ids and attribute columns.
//!
//! - A key's id is the top 63 bits of its XXH3-64 hash: computed, never
//!   looked up, so it costs no read and is the same after any compaction.
//!   The key itself is stored in the `_key` column and checked on every
//!   read, so a collision (likely only past billions of keys) never
//!   returns another key's vector; `PutVectors` refuses a key whose id
//!   another key holds.
//! - The metadata object is stored whole, as JSON, in `_metadata`, and
//!   returned from there as it was put.
//! - Each filterable key's scalar value is also stored in a column of its
//!   type: `s:<key>` (string), `n:<key>` (number, float64), `b:<key>`
//!   (boolean). A value of another type leaves that column null, so a
//!   filter comparing with a value of another type never matches it, as
//!   S3 Vectors' filters do. Arrays are stored and returned; `a:<key>`
//!   records only that one is there (for `$exists`): their elements are
//!   not filtered.
//! - A cosine index keeps each raw vector, little-endian and base64, in
//!   `_raw` (the index holds it normalized), so `GetVectors` returns it bit
//!   for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ivflake::{AttributeRow, AttributeValue};
use serde_json::{Map, Value};

use super::error::{Kind, S3vError, S3vResult};

pub const KEY_COLUMN: &str = "_key";
pub const METADATA_COLUMN: &str = "_metadata";
pub const RAW_COLUMN: &str = "_raw";

/// Per vector: all metadata, filterable metadata, and keys.
pub const MAX_METADATA_BYTES: usize = 40 * 1024;
pub const MAX_FILTERABLE_BYTES: usize = 2 * 1024;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_LEN: usize = 63;

/// The id a key is stored under.
pub fn key_id(key: &str) -> i64 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 1) as i64
}

/// The typed column of a filterable key's value (`a:<key>`, true, for an array).
pub fn column_of(key: &str, value: &Value) -> Option<(String, DataType)> {
    match value {
        Value::String(_) => Some((format!("s:{key}"), DataType::Utf8)),
        Value::Number(_) => Some((format!("n:{key}"), DataType::Float64)),
        Value::Bool(_) => Some((format!("b:{key}"), DataType::Boolean)),
        // Only whether it is there, for `$exists`.
        Value::Array(_) => Some((format!("a:{key}"), DataType::Boolean)),
        _ => None,
    }
}

/// Checks one vector's metadata (at `path`) against the service's rules.
pub fn check(path: &str, metadata: &Value, non_filterable: &[String]) -> S3vResult<()> {
    let Value::Object(map) = metadata else {
        return Err(S3vError::invalid(path, "metadata must be a JSON object"));
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(S3vError::invalid(
            path,
            format!("{} metadata keys; at most {MAX_METADATA_KEYS}", map.len()),
        ));
    }
    let mut filterable = Map::new();
    for (key, value) in map {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_LEN {
            return Err(S3vError::invalid(
                format!("{path}.{key}"),
                format!("a metadata key is 1 to {MAX_METADATA_KEY_LEN} bytes"),
            ));
        }
        let ok = match value {
            Value::String(_) | Value::Bool(_) => true,
            Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
            Value::Array(items) => {
                !items.is_empty()
                    && (items.iter().all(Value::is_string)
                        || items.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)))
            }
            Value::Null | Value::Object(_) => false,
        };
        if !ok {
            return Err(S3vError::invalid(
                format!("{path}.{key}"),
                "a metadata value is a string, a finite number, a boolean, or a non-empty array of strings or \
                 of numbers",
            ));
        }
        if !non_filterable.iter().any(|k| k == key) {
            filterable.insert(key.clone(), value.clone());
        }
    }
    let total = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(usize::MAX);
    if total > MAX_METADATA_BYTES {
        return Err(S3vError::invalid(
            path,
            format!("{total} bytes of metadata; at most {MAX_METADATA_BYTES} (as compact JSON)"),
        ));
    }
    let filterable_bytes = serde_json::to_vec(&Value::Object(filterable))
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if filterable_bytes > MAX_FILTERABLE_BYTES {
        return Err(S3vError::invalid(
            path,
            format!(
                "{filterable_bytes} bytes of filterable metadata; at most {MAX_FILTERABLE_BYTES} (as compact JSON; \
                 name larger keys in nonFilterableMetadataKeys)"
            ),
        ));
    }
    Ok(())
}

/// One vector of a put, checked.
pub struct PutRow<'a> {
    pub key: &'a str,
    pub raw: &'a [f32],
    pub metadata: Option<&'a Value>,
}

/// The attribute rows of a put: `_key`, `_metadata`, `_raw` (cosine) and
/// the typed columns of filterable keys. Refused past `max_columns`
/// columns in the index (`established` and the new ones together).
pub fn rows_batch(
    rows: &[PutRow<'_>],
    non_filterable: &[String],
    cosine: bool,
    established: &Schema,
    max_columns: usize,
) -> S3vResult<RecordBatch> {
    let mut typed: BTreeMap<String, (DataType, Vec<Option<&Value>>)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(Value::Object(map)) = row.metadata else {
            continue;
        };
        for (key, value) in map {
            if non_filterable.iter().any(|k| k == key) {
                continue;
            }
            if let Some((column, ty)) = column_of(key, value) {
                let slot = typed.entry(column).or_insert_with(|| (ty, vec![None; rows.len()]));
                slot.1[i] = Some(value);
            }
        }
    }
    let new = typed.keys().filter(|c| established.field_with_name(c).is_err()).count();
    let reserved = [KEY_COLUMN, METADATA_COLUMN, RAW_COLUMN]
        .iter()
        .filter(|c| established.field_with_name(c).is_err())
        .count();
    if established.fields().len() + new + reserved > max_columns + 3 {
        return Err(S3vError::new(
            Kind::ServiceQuotaExceeded,
            format!(
                "this write would give the index {} metadata columns (one per filterable key and value type); the \
                 server allows {max_columns} (vectors.max_metadata_columns)",
                established.fields().len() + new
            ),
        ));
    }
    let mut fields = vec![
        Field::new(KEY_COLUMN, DataType::Utf8, true),
        Field::new(METADATA_COLUMN, DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key))),
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.metadata.map(|m| m.to_string()))
                .collect::<Vec<_>>(),
        )),
    ];
    if cosine {
        fields.push(Field::new(RAW_COLUMN, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| encode_raw(r.raw)),
        )));
    }
    for (column, (ty, values)) in typed {
        let array: ArrayRef = match ty {
            DataType::Utf8 => Arc::new(StringArray::from(
                values.iter().map(|v| v.and_then(Value::as_str)).collect::<Vec<_>>(),
            )),
            DataType::Float64 => Arc::new(Float64Array::from(
                values.iter().map(|v| v.and_then(Value::as_f64)).collect::<Vec<_>>(),
            )),
            _ => Arc::new(BooleanArray::from(
                values
                    .iter()
                    .map(|v| v.and_then(|v| v.as_bool().or(v.is_array().then_some(true))))
                    .collect::<Vec<_>>(),
            )),
        };
        fields.push(Field::new(column, ty, true));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| S3vError::internal(format!("building the metadata columns failed: {e}")))
}

pub fn encode_raw(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

pub fn decode_raw(text: &str, d: usize) -> S3vResult<Vec<f32>> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| S3vError::internal(format!("a stored raw vector is not base64: {e}")))?;
    if bytes.len() != d * 4 {
        return Err(S3vError::internal("a stored raw vector has the wrong length"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn text<'a>(row: &'a AttributeRow, column: &str) -> Option<&'a str> {
    match row.get(column) {
        Some(AttributeValue::Utf8(s)) => Some(s),
        _ => None,
    }
}

/// The key a stored row holds.
pub fn stored_key(row: &AttributeRow) -> Option<&str> {
    text(row, KEY_COLUMN)
}

/// The metadata a stored row holds, as it was put (`{}` when none was).
pub fn stored_metadata(row: &AttributeRow) -> Value {
    text(row, METADATA_COLUMN)
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// The raw vector of a cosine index's row.
pub fn stored_raw(row: &AttributeRow, d: usize) -> S3vResult<Option<Vec<f32>>> {
    text(row, RAW_COLUMN).map(|t| decode_raw(t, d)).transpose()
}

/// The distinct keys of a put, refused when one repeats.
pub fn distinct_keys<'a>(member: &str, keys: impl Iterator<Item = &'a str>) -> S3vResult<()> {
    let mut seen = BTreeSet::new();
    for (i, key) in keys.enumerate() {
        if key.is_empty() || key.chars().count() > 1024 {
            return Err(S3vError::invalid(
                format!("{member}[{i}].key"),
                "a key is 1 to 1024 characters",
            ));
        }
        if !seen.insert(key) {
            return Err(S3vError::invalid(
                format!("{member}[{i}].key"),
                format!("the key {key:?} appears twice in one request"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_rules_and_columns() {
        let nf = vec!["body".to_string()];
        check(
            "m",
            &json!({"genre": "x", "year": 2020, "ok": true, "tags": ["a"], "body": "long"}),
            &nf,
        )
        .unwrap();
        for bad in [
            json!(null),
            json!([]),
            json!({"x": null}),
            json!({"x": {"y": 1}}),
            json!({"x": []}),
            json!({"x": ["a", 1]}),
            json!({"x": [true]}),
        ] {
            assert!(check("m", &bad, &nf).is_err(), "{bad}");
        }
        let big = "x".repeat(3000);
        let e = check("m", &json!({"f": big.clone()}), &nf).unwrap_err();
        assert!(e.message.contains("filterable"), "{}", e.message);
        check("m", &json!({"body": big}), &nf).unwrap();
        let raw = [1.5f32, -0.0, f32::MIN_POSITIVE];
        assert_eq!(
            decode_raw(&encode_raw(&raw), 3)
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            raw.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let m1 = json!({"genre": "a", "year": 1999});
        let m2 = json!({"genre": 7, "body": "b"});
        let rows = [
            PutRow {
                key: "k1",
                raw: &raw,
                metadata: Some(&m1),
            },
            PutRow {
                key: "k2",
                raw: &raw,
                metadata: Some(&m2),
            },
        ];
        let batch = rows_batch(&rows, &nf, false, &Schema::empty(), 100).unwrap();
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["_key", "_metadata", "n:genre", "n:year", "s:genre"]);
        let t = json!({"tags": ["a", "b"]});
        let b = rows_batch(
            &[PutRow {
                key: "k",
                raw: &raw,
                metadata: Some(&t),
            }],
            &nf,
            false,
            &Schema::empty(),
            9,
        )
        .unwrap();
        assert_eq!(b.schema().field(2).name(), "a:tags");
        assert!(rows_batch(&rows, &nf, false, &Schema::empty(), 2).is_err());
        assert_ne!(key_id("a"), key_id("b"));
        assert!(key_id("a") >= 0);
    }
}
