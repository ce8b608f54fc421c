//! The attribute filter language: Amazon S3 Vectors' operators (`$eq`, `$ne`,
//! `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`, `$and`, `$or`) as a
//! typed value, parsed from JSON with errors that name the JSON path, checked
//! against an Arrow schema, and evaluated with arrow's compute kernels.
//! It owns no I/O and knows nothing of lists or summaries. `json` parses a
//! filter token by token within [`FilterLimits`]; `in_list` evaluates `$in`
//! and `$nin` in one pass over the rows.
//!
//! Missing values (nulls) never match a comparison, `$eq` or `$in`; they do
//! match `$ne` and `$nin` (as in MongoDB and S3 Vectors: "not equal to x"
//! holds for a row without a value), and `$exists: false`.

mod in_list;
mod json;

pub use json::{FilterLimits, FilterParser};

use arrow_arith::boolean::{and, is_not_null, is_null, or};
use arrow_array::{Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, Scalar, StringArray};
use arrow_schema::{DataType, Schema};
use serde_json::Value;

use crate::error::{Error, Result};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "$eq",
            CmpOp::Ne => "$ne",
            CmpOp::Gt => "$gt",
            CmpOp::Gte => "$gte",
            CmpOp::Lt => "$lt",
            CmpOp::Lte => "$lte",
        }
    }
}

/// A value in a filter, as JSON gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::Str(v.to_string())
    }
}
impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::Str(v)
    }
}
impl From<i64> for Literal {
    fn from(v: i64) -> Self {
        Literal::Int(v)
    }
}
impl From<f64> for Literal {
    fn from(v: f64) -> Self {
        Literal::Float(v)
    }
}
impl From<bool> for Literal {
    fn from(v: bool) -> Self {
        Literal::Bool(v)
    }
}

/// What a condition tests of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Cmp(CmpOp, Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Exists(bool),
}

/// One test of one column. `path` is where it sits in the filter's JSON, for errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub test: Test,
    path: String,
}

/// A filter over an index's attributes. Build it from JSON with
/// [`AttributeFilter::from_json`] or in code with the constructors.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeFilter {
    Condition(Condition),
    And(Vec<AttributeFilter>),
    Or(Vec<AttributeFilter>),
}

impl AttributeFilter {
    pub fn cmp(column: &str, op: CmpOp, value: impl Into<Literal>) -> Self {
        Self::leaf(column, op.name(), Test::Cmp(op, value.into()))
    }
    pub fn eq(column: &str, value: impl Into<Literal>) -> Self {
        Self::cmp(column, CmpOp::Eq, value)
    }
    pub fn is_in(column: &str, values: Vec<Literal>) -> Self {
        Self::leaf(column, "$in", Test::In(values))
    }
    pub fn not_in(column: &str, values: Vec<Literal>) -> Self {
        Self::leaf(column, "$nin", Test::NotIn(values))
    }
    pub fn exists(column: &str, exists: bool) -> Self {
        Self::leaf(column, "$exists", Test::Exists(exists))
    }

    fn leaf(column: &str, op: &str, test: Test) -> Self {
        AttributeFilter::Condition(Condition {
            column: column.to_string(),
            test,
            path: format!("filter.{column}.{op}"),
        })
    }

    /// Parses S3 Vectors' JSON form within the default [`FilterLimits`].
    /// Several keys at one level mean AND; `{"field": value}` means `$eq`.
    pub fn from_json(value: &Value) -> Result<Self> {
        Self::from_json_at(value, "filter")
    }

    /// As [`AttributeFilter::from_json`], with error paths starting at
    /// `root` (the HTTP API's field is `attribute_filter`).
    pub fn from_json_at(value: &Value, root: &str) -> Result<Self> {
        Self::from_json_value(value, root, &FilterLimits::default())
    }

    /// As [`AttributeFilter::from_json_at`], within `limits`.
    pub fn from_json_value(value: &Value, root: &str, limits: &FilterLimits) -> Result<Self> {
        json::parse(value, root, limits)
    }

    /// Parses a filter's JSON text straight into the typed filter, without
    /// building a `serde_json::Value`, and refuses it at the first value past
    /// a limit: a million-value `$in` is read no further than its
    /// `max_in_values + 1`th value. Errors name the JSON path under `root`.
    pub fn from_json_str(text: &str, root: &str, limits: &FilterLimits) -> Result<Self> {
        json::parse_text(&mut serde_json::Deserializer::from_str(text), root, limits)
    }

    /// As [`AttributeFilter::from_json_str`], from bytes (a request body).
    pub fn from_json_slice(bytes: &[u8], root: &str, limits: &FilterLimits) -> Result<Self> {
        json::parse_text(&mut serde_json::Deserializer::from_slice(bytes), root, limits)
    }

    /// Every column the filter reads, sorted, without repeats.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.visit(&mut |c| out.push(c.column.clone()));
        out.sort();
        out.dedup();
        out
    }

    fn visit(&self, f: &mut impl FnMut(&Condition)) {
        match self {
            AttributeFilter::Condition(c) => f(c),
            AttributeFilter::And(v) | AttributeFilter::Or(v) => v.iter().for_each(|x| x.visit(f)),
        }
    }

    /// Checks every column exists and every value fits its column's type.
    pub fn check(&self, schema: &Schema) -> Result<()> {
        let mut first = Ok(());
        self.visit(&mut |c| {
            if first.is_ok() {
                first = check_condition(c, schema);
            }
        });
        first
    }

    /// Which rows of `batch` match: a mask without nulls. `column` finds a
    /// column by name; the filter must have passed [`AttributeFilter::check`].
    pub fn evaluate(&self, rows: usize, column: &dyn Fn(&str) -> Option<ArrayRef>) -> Result<BooleanArray> {
        match self {
            AttributeFilter::Condition(c) => {
                let array = column(&c.column)
                    .ok_or_else(|| Error::Internal(format!("column {:?} was not decoded", c.column)))?;
                evaluate_condition(c, array.as_ref())
            }
            AttributeFilter::And(parts) => fold(parts, rows, true, column, and),
            AttributeFilter::Or(parts) => fold(parts, rows, false, column, or),
        }
    }
}

type Kernel = fn(&BooleanArray, &BooleanArray) -> std::result::Result<BooleanArray, arrow_schema::ArrowError>;

fn fold(
    parts: &[AttributeFilter],
    rows: usize,
    start: bool,
    column: &dyn Fn(&str) -> Option<ArrayRef>,
    kernel: Kernel,
) -> Result<BooleanArray> {
    let mut acc = BooleanArray::from(vec![start; rows]);
    for p in parts {
        acc = kernel(&acc, &p.evaluate(rows, column)?).map_err(arrow_error)?;
    }
    Ok(acc)
}

pub(crate) fn arrow_error(e: arrow_schema::ArrowError) -> Error {
    Error::Internal(format!("arrow: {e}"))
}

/// Nulls (missing values) become `false`.
fn definite(mask: BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        return mask;
    }
    arrow_select::filter::prep_null_mask_filter(&mask)
}

fn evaluate_condition(c: &Condition, array: &dyn Array) -> Result<BooleanArray> {
    let mask = match &c.test {
        Test::Exists(true) => is_not_null(array).map_err(arrow_error)?,
        Test::Exists(false) => is_null(array).map_err(arrow_error)?,
        Test::Cmp(op, lit) => {
            let scalar = scalar(lit, array.data_type());
            let rhs: &dyn Datum = scalar.as_ref();
            let r = match op {
                CmpOp::Eq => arrow_ord::cmp::eq(&array, rhs),
                CmpOp::Ne => arrow_ord::cmp::neq(&array, rhs),
                CmpOp::Gt => arrow_ord::cmp::gt(&array, rhs),
                CmpOp::Gte => arrow_ord::cmp::gt_eq(&array, rhs),
                CmpOp::Lt => arrow_ord::cmp::lt(&array, rhs),
                CmpOp::Lte => arrow_ord::cmp::lt_eq(&array, rhs),
            }
            .map_err(arrow_error)?;
            if *op == CmpOp::Ne {
                return or(&definite(r), &is_null(array).map_err(arrow_error)?).map_err(arrow_error);
            }
            r
        }
        // One pass over the rows against a hash set; nulls are in no set.
        Test::In(values) => return in_list::in_list(array, values, false),
        Test::NotIn(values) => return in_list::in_list(array, values, true),
    };
    Ok(definite(mask))
}

/// A literal as a one-value array of the column's type; `check` made sure it fits.
fn scalar(lit: &Literal, ty: &DataType) -> Box<dyn Datum> {
    match (ty, lit) {
        (DataType::Float64, Literal::Int(i)) => Box::new(Float64Array::new_scalar(*i as f64)),
        (DataType::Int64, Literal::Float(f)) => Box::new(Int64Array::new_scalar(*f as i64)),
        (_, Literal::Str(s)) => Box::new(StringArray::new_scalar(s.as_str())),
        (_, Literal::Int(i)) => Box::new(Int64Array::new_scalar(*i)),
        (_, Literal::Float(f)) => Box::new(Float64Array::new_scalar(*f)),
        (_, Literal::Bool(b)) => Box::new(Scalar::new(BooleanArray::from(vec![*b]))),
    }
}

/// The attribute types the language supports, named as errors name them.
pub(crate) fn type_name(ty: &DataType) -> Option<&'static str> {
    Some(match ty {
        DataType::Utf8 => "string",
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        _ => return None,
    })
}

fn check_condition(c: &Condition, schema: &Schema) -> Result<()> {
    let Ok(field) = schema.field_with_name(&c.column) else {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(Error::filter(
            &c.path,
            format!("unknown column {:?}; the attributes are {names:?}", c.column),
        ));
    };
    let ty = field.data_type();
    let tname = type_name(ty).unwrap_or("unsupported");
    let fits = |lit: &Literal, path: &str| -> Result<()> {
        let ok = match (ty, lit) {
            (DataType::Utf8, Literal::Str(_)) => true,
            (DataType::Int64, Literal::Int(_)) => true,
            (DataType::Int64, Literal::Float(f)) => f.fract() == 0.0 && f.abs() < 9.0e15,
            (DataType::Float64, Literal::Int(_) | Literal::Float(_)) => true,
            (DataType::Boolean, Literal::Bool(_)) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::filter(
                path,
                format!("column {:?} is {tname}, but the value is {}", c.column, describe(lit)),
            ))
        }
    };
    match &c.test {
        Test::Exists(_) => Ok(()),
        Test::Cmp(op, lit) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) && *ty == DataType::Boolean {
                return Err(Error::filter(
                    &c.path,
                    format!("{} orders values; column {:?} is bool", op.name(), c.column),
                ));
            }
            fits(lit, &c.path)
        }
        Test::In(values) | Test::NotIn(values) => values
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| fits(v, &format!("{}[{i}]", c.path))),
    }
}

fn describe(lit: &Literal) -> String {
    match lit {
        Literal::Str(s) => format!("the string {s:?}"),
        Literal::Int(i) => format!("the integer {i}"),
        Literal::Float(f) => format!("the number {f}"),
        Literal::Bool(b) => format!("the bool {b}"),
    }
}

/// Within the default [`FilterLimits`], with paths under `filter`; a refusal
/// becomes the deserializer's error, with the same message.
impl<'de> serde::Deserialize<'de> for AttributeFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(&mut FilterParser::new("filter", &FilterLimits::default()), d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use serde_json::json;
    use std::sync::Arc;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("stock", DataType::Int64, true),
            Field::new("active", DataType::Boolean, true),
        ])
    }

    fn err(v: Value) -> String {
        match AttributeFilter::from_json(&v).and_then(|f| f.check(&schema())) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted {v}"),
        }
    }

    #[test]
    fn parses_the_s3_vectors_forms() {
        let f = AttributeFilter::from_json(&json!({"category": "shoes", "price": {"$lt": 10}})).unwrap();
        let AttributeFilter::And(parts) = &f else {
            panic!("{f:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(f.columns(), ["category", "price"]);
        let f =
            AttributeFilter::from_json(&json!({"$or": [{"stock": {"$in": [1, 2]}}, {"active": {"$exists": false}}]}))
                .unwrap();
        f.check(&schema()).unwrap();
    }

    #[test]
    fn errors_name_the_json_path() {
        assert!(err(json!({"colour": "red"})).contains("filter.colour: unknown column"));
        assert!(err(json!({"$and": [{"price": 1}, {"price": {"$gt": "x"}}]}))
            .contains("filter.$and[1].price.$gt: column \"price\" is float64, but the value is the string \"x\""));
        assert!(err(json!({"price": {"$near": 1}})).contains("filter.price.$near: unknown operator"));
        assert!(err(json!({"stock": {"$in": [1, "a"]}})).contains("filter.stock.$in[1]"));
        assert!(err(json!({"$or": {}})).contains("filter.$or: expected an array"));
        assert!(err(json!([1])).contains("filter: expected an object"));
        assert!(err(json!({"active": {"$gt": true}})).contains("is bool"));
        assert!(err(json!({"$not": {}})).contains("unknown operator \"$not\""));
    }

    #[test]
    fn evaluates_with_null_semantics() {
        let cat: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("b")]));
        let col = |_: &str| Some(cat.clone());
        let run = |v: Value| {
            let f = AttributeFilter::from_json(&json!({ "category": v })).unwrap();
            let m = f.evaluate(3, &col).unwrap();
            (0..3).map(|i| m.value(i)).collect::<Vec<_>>()
        };
        assert_eq!(run(json!("a")), [true, false, false]);
        assert_eq!(run(json!({"$ne": "a"})), [false, true, true]);
        assert_eq!(run(json!({"$in": ["a", "b"]})), [true, false, true]);
        assert_eq!(run(json!({"$nin": ["a"]})), [false, true, true]);
        assert_eq!(run(json!({"$exists": true})), [true, false, true]);
        assert_eq!(run(json!({"$gte": "b"})), [false, false, true]);
    }
}
