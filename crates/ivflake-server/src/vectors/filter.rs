//! S3 Vectors' metadata filters as ivflake attribute filters over the
//! typed columns of `metadata.rs`.
//!
//! A comparison reads the column of its operand's type: `{"year":
//! {"$gt": 2000}}` tests `n:year`, so a row whose `year` is a string
//! never matches it (no error, as S3 Vectors does). A key with no value
//! (or a value of another type) fails `$eq`, `$in` and the ordering
//! operators and passes `$ne` and `$nin`. Several keys, or several
//! operators on one key, mean AND. Filtering on a non-filterable key is
//! a `ValidationException`, as in S3 Vectors.

use arrow_schema::Schema;
use ivflake::{AttributeFilter, CmpOp, Literal};
use serde_json::{Map, Value};

use super::error::{S3vError, S3vResult};
use super::metadata::{column_of, KEY_COLUMN};

/// Conditions one filter may hold.
pub const MAX_CONDITIONS: usize = 1024;

struct Translate<'a> {
    schema: &'a Schema,
    non_filterable: &'a [String],
    conditions: usize,
}

/// Always true / always false: every row has a key.
fn always(value: bool) -> AttributeFilter {
    AttributeFilter::exists(KEY_COLUMN, value)
}

fn all(mut parts: Vec<AttributeFilter>) -> AttributeFilter {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        AttributeFilter::And(parts)
    }
}

fn any(mut parts: Vec<AttributeFilter>) -> AttributeFilter {
    match parts.len() {
        0 => always(false),
        1 => parts.remove(0),
        _ => AttributeFilter::Or(parts),
    }
}

/// The ivflake filter for `filter`, read against the index's columns.
pub fn translate(filter: &Value, schema: &Schema, non_filterable: &[String]) -> S3vResult<AttributeFilter> {
    let mut t = Translate {
        schema,
        non_filterable,
        conditions: 0,
    };
    t.filter(filter, "filter")
}

impl Translate<'_> {
    fn filter(&mut self, value: &Value, path: &str) -> S3vResult<AttributeFilter> {
        let Value::Object(map) = value else {
            return Err(S3vError::invalid(path, "a filter is a JSON object"));
        };
        if map.is_empty() {
            return Err(S3vError::invalid(path, "a filter names at least one key or operator"));
        }
        let mut parts = Vec::new();
        for (key, operand) in map {
            let at = format!("{path}.{key}");
            parts.push(match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = operand else {
                        return Err(S3vError::invalid(
                            at,
                            format!("{key} takes a non-empty array of filters"),
                        ));
                    };
                    if items.is_empty() {
                        return Err(S3vError::invalid(
                            at,
                            format!("{key} takes a non-empty array of filters"),
                        ));
                    }
                    let subs = items
                        .iter()
                        .enumerate()
                        .map(|(i, f)| self.filter(f, &format!("{at}[{i}]")))
                        .collect::<S3vResult<Vec<_>>>()?;
                    if key == "$and" {
                        all(subs)
                    } else {
                        any(subs)
                    }
                }
                k if k.starts_with('$') => {
                    return Err(S3vError::invalid(
                        at,
                        format!("unknown operator {k} at the top of a filter"),
                    ));
                }
                field => self.field(field, operand, &at)?,
            });
        }
        Ok(all(parts))
    }

    fn field(&mut self, key: &str, operand: &Value, path: &str) -> S3vResult<AttributeFilter> {
        if self.non_filterable.iter().any(|k| k == key) {
            return Err(S3vError::invalid(
                path,
                format!("{key} is a non-filterable metadata key of this index"),
            ));
        }
        match operand {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => self.operators(key, ops, path),
            Value::Object(_) | Value::Array(_) | Value::Null => Err(S3vError::invalid(
                path,
                "a value to match is a string, number or boolean, or an object of operators",
            )),
            literal => self.compare(key, CmpOp::Eq, literal, path),
        }
    }

    fn operators(&mut self, key: &str, ops: &Map<String, Value>, path: &str) -> S3vResult<AttributeFilter> {
        let mut parts = Vec::new();
        for (op, operand) in ops {
            let at = format!("{path}.{op}");
            let cmp = match op.as_str() {
                "$eq" => Some(CmpOp::Eq),
                "$ne" => Some(CmpOp::Ne),
                "$gt" => Some(CmpOp::Gt),
                "$gte" => Some(CmpOp::Gte),
                "$lt" => Some(CmpOp::Lt),
                "$lte" => Some(CmpOp::Lte),
                _ => None,
            };
            parts.push(match (cmp, op.as_str()) {
                (Some(cmp), _) => {
                    if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) && !operand.is_number() {
                        return Err(S3vError::invalid(at, format!("{op} takes a number")));
                    }
                    self.compare(key, cmp, operand, &at)?
                }
                (None, "$in" | "$nin") => self.membership(key, op == "$in", operand, &at)?,
                (None, "$exists") => {
                    let Value::Bool(exists) = operand else {
                        return Err(S3vError::invalid(at, "$exists takes true or false"));
                    };
                    self.exists(key, *exists, &at)?
                }
                (None, other) => {
                    return Err(S3vError::invalid(
                        at,
                        format!(
                            "unsupported operator {other}: $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin and $exists are"
                        ),
                    ))
                }
            });
        }
        Ok(all(parts))
    }

    fn count(&mut self, path: &str) -> S3vResult<()> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(S3vError::invalid(
                path,
                format!("the filter has more than {MAX_CONDITIONS} conditions"),
            ));
        }
        Ok(())
    }

    /// The column `value` would be stored in, when the index has it.
    fn column(&self, key: &str, value: &Value) -> Option<String> {
        column_of(key, value)
            .map(|(c, _)| c)
            .filter(|c| self.schema.field_with_name(c).is_ok())
    }

    fn compare(&mut self, key: &str, op: CmpOp, value: &Value, path: &str) -> S3vResult<AttributeFilter> {
        self.count(path)?;
        let literal = literal(value, path)?;
        Ok(match self.column(key, value) {
            Some(column) => AttributeFilter::cmp(&column, op, literal),
            // No row holds a value of this type: only "not equal" holds.
            None => always(op == CmpOp::Ne),
        })
    }

    fn membership(&mut self, key: &str, is_in: bool, operand: &Value, path: &str) -> S3vResult<AttributeFilter> {
        self.count(path)?;
        let Value::Array(values) = operand else {
            return Err(S3vError::invalid(path, "takes a non-empty array of values"));
        };
        if values.is_empty() {
            return Err(S3vError::invalid(path, "takes a non-empty array of values"));
        }
        // One test per value type, on that type's column.
        let mut by_column: std::collections::BTreeMap<String, Vec<Literal>> = Default::default();
        for (i, v) in values.iter().enumerate() {
            let lit = literal(v, &format!("{path}[{i}]"))?;
            if let Some(column) = self.column(key, v) {
                by_column.entry(column).or_default().push(lit);
            }
        }
        Ok(if is_in {
            any(by_column
                .into_iter()
                .map(|(c, lits)| AttributeFilter::is_in(&c, lits))
                .collect())
        } else if by_column.is_empty() {
            always(true)
        } else {
            all(by_column
                .into_iter()
                .map(|(c, lits)| AttributeFilter::not_in(&c, lits))
                .collect())
        })
    }

    fn exists(&mut self, key: &str, exists: bool, path: &str) -> S3vResult<AttributeFilter> {
        self.count(path)?;
        let columns: Vec<String> = ["s", "n", "b", "a"]
            .iter()
            .map(|t| format!("{t}:{key}"))
            .filter(|c| self.schema.field_with_name(c).is_ok())
            .collect();
        Ok(if exists {
            any(columns.iter().map(|c| AttributeFilter::exists(c, true)).collect())
        } else if columns.is_empty() {
            always(true)
        } else {
            all(columns.iter().map(|c| AttributeFilter::exists(c, false)).collect())
        })
    }
}

fn literal(value: &Value, path: &str) -> S3vResult<Literal> {
    match value {
        Value::String(s) => Ok(Literal::Str(s.clone())),
        Value::Bool(b) => Ok(Literal::Bool(*b)),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Literal::Float)
            .ok_or_else(|| S3vError::invalid(path, "a number must be finite")),
        _ => Err(S3vError::invalid(path, "a value is a string, number or boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};
    use serde_json::json;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("_key", DataType::Utf8, true),
            Field::new("s:genre", DataType::Utf8, true),
            Field::new("n:year", DataType::Float64, true),
            Field::new("s:year", DataType::Utf8, true),
        ])
    }

    #[test]
    fn filters_read_the_column_of_their_operand_type() {
        let nf = vec!["body".to_string()];
        let t = |v: Value| translate(&v, &schema(), &nf);
        assert_eq!(t(json!({"genre": "x"})).unwrap(), AttributeFilter::eq("s:genre", "x"));
        assert_eq!(
            t(json!({"year": {"$gt": 2000}})).unwrap(),
            AttributeFilter::cmp("n:year", CmpOp::Gt, 2000.0)
        );
        // No boolean genre is stored: $eq never matches, $ne always does.
        assert_eq!(t(json!({"genre": true})).unwrap(), always(false));
        assert_eq!(t(json!({"genre": {"$ne": true}})).unwrap(), always(true));
        assert_eq!(
            t(json!({"year": {"$in": [1999, "1999"]}})).unwrap(),
            AttributeFilter::Or(vec![
                AttributeFilter::is_in("n:year", vec![Literal::Float(1999.0)]),
                AttributeFilter::is_in("s:year", vec![Literal::Str("1999".into())])
            ])
        );
        assert_eq!(
            t(json!({"year": {"$exists": true}})).unwrap(),
            AttributeFilter::Or(vec![
                AttributeFilter::exists("s:year", true),
                AttributeFilter::exists("n:year", true)
            ])
        );
        for bad in [
            json!({"body": "x"}),
            json!({"genre": {"$gt": "a"}}),
            json!({"$not": {}}),
            json!({"genre": {"$startsWith": "a"}}),
            json!({"genre": {"$in": []}}),
            json!({"$and": []}),
            json!([1]),
            json!({"genre": null}),
        ] {
            let e = t(bad.clone()).unwrap_err();
            assert!(!e.fields.is_empty(), "{bad}");
        }
    }
}
