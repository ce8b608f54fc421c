//! A filter's JSON read straight into [`AttributeFilter`], token by token,
//! and checked against [`FilterLimits`] as it is read. No `serde_json::Value`
//! of the filter is built, and a filter is refused at the first item past a
//! limit, so what a client can make us hold is bounded by the limits, not by
//! the request body limit. This module owns parsing only: `check` and
//! evaluation live in the parent module.
//!
//! One set of visitors serves JSON text (`serde_json::Deserializer`), a
//! `&serde_json::Value` (which is a deserializer too) and a caller's own
//! streaming parse through [`FilterParser`], so every entry point gives the
//! same errors with the same paths. The structure (`$and`/`$or`, columns,
//! operators) is read here; the operands (literals, `$in` arrays, `$exists`)
//! in `operands`.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{AttributeFilter, CmpOp, Condition, Literal, Test};
use crate::error::{Error, Result};

/// serde_json refuses text nested deeper than this many arrays and objects
/// (its recursion limit). Each `$and`/`$or` level takes two: `{"$and": [`.
const JSON_NESTING_LIMIT: usize = 128;

/// Bounds on one attribute filter, checked while it is parsed; a filter past
/// any of them is an [`Error::InvalidFilter`] naming its JSON path and the
/// limit. Each is a setting. The defaults keep legal every filter that S3
/// Vectors' data model gives a use for, a few thousand `$in` values among
/// them, and keep a parsed filter to a few MiB beyond its own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterLimits {
    /// Levels of `$and`/`$or` inside one another. 32 (JMAP servers cap filter
    /// nesting at 32 as well): far beyond a hand-written filter, and parsing
    /// recurses once per level, so it also bounds stack use. JSON text holds
    /// at most 63 levels (serde_json allows 127 nested brackets); deeper text
    /// is refused with the same error whatever this is set to.
    pub max_depth: usize,
    /// Conditions (one operator on one column) in the whole filter. 1,024:
    /// S3 Vectors allows 50 metadata keys per vector, so a filter may test
    /// each of them, with several operators, in many `$or` branches.
    pub max_conditions: usize,
    /// Values in one `$in` or `$nin`. 10,000: a list of a few thousand ids
    /// or tags, the common large filter, stays legal.
    pub max_in_values: usize,
    /// Values in the whole filter: every `$in`/`$nin` value and every
    /// single-value operand. 20,000, two full `$in`s. `$in` builds a hash set
    /// of its values for each list it filters, so this also bounds the work a
    /// filter adds to each list.
    pub max_total_values: usize,
    /// Bytes in one string: a column name, an operator or a string value.
    /// 2,048: S3 Vectors keeps at most 2 KB of filterable metadata per
    /// vector, so no longer string can equal a value it stores.
    pub max_string_bytes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_depth: 32,
            max_conditions: 1_024,
            max_in_values: 10_000,
            max_total_values: 20_000,
            max_string_bytes: 2_048,
        }
    }
}

/// Reads one filter as a [`DeserializeSeed`] (through `&mut FilterParser`),
/// for a caller that parses a larger document itself, such as a request body:
/// `map.next_value_seed(&mut parser)`. When that fails,
/// [`FilterParser::error`] turns the deserializer's error into the filter
/// error with its path. A refusal stops the parse at once, so the rest of
/// the filter is never read.
#[derive(Debug)]
pub struct FilterParser {
    limits: FilterLimits,
    /// The path of the filter itself, e.g. `attribute_filter`.
    root: String,
    conditions: usize,
    values: usize,
    /// The rule or limit that stopped the parse.
    refusal: Option<Error>,
    /// Where the deserializer's own error (bad JSON, its recursion limit)
    /// surfaced: the innermost value being read.
    surfaced_at: Option<String>,
}

impl FilterParser {
    /// A parser for a filter at `root` (the start of every error path).
    pub fn new(root: &str, limits: &FilterLimits) -> Self {
        FilterParser {
            limits: *limits,
            root: root.to_string(),
            conditions: 0,
            values: 0,
            refusal: None,
            surfaced_at: None,
        }
    }

    /// The filter error for a parse that failed with `error`: the rule or
    /// limit that refused it, or else the deserializer's error, at the path
    /// where it surfaced.
    pub fn error(&mut self, error: &dyn fmt::Display) -> Error {
        if let Some(refusal) = self.refusal.take() {
            return refusal;
        }
        let path = self.surfaced_at.take().unwrap_or_else(|| self.root.clone());
        let message = error.to_string();
        if message.starts_with("recursion limit exceeded") {
            return Error::filter(
                path,
                format!(
                    "$and/$or nested deeper than JSON text allows ({JSON_NESTING_LIMIT} levels of brackets, two per \
                     level); the limit is max_depth = {}",
                    self.limits.max_depth
                ),
            );
        }
        Error::filter(path, format!("not valid JSON: {message}"))
    }

    /// Keeps the refusal for [`FilterParser::error`] and gives the
    /// deserializer an error with the same message, which ends the parse.
    fn refuse<E: de::Error>(&mut self, path: impl Into<String>, reason: impl Into<String>) -> E {
        let error = Error::filter(path, reason);
        let message = error.to_string();
        self.refusal.get_or_insert(error);
        E::custom(message)
    }

    /// Notes `path` as where the deserializer's own error surfaced, unless a
    /// refusal or a deeper value already explains it.
    fn surfaced<T, E>(&mut self, read: Result<T, E>, path: impl FnOnce() -> String) -> Result<T, E> {
        if read.is_err() && self.refusal.is_none() && self.surfaced_at.is_none() {
            self.surfaced_at = Some(path());
        }
        read
    }

    fn count_condition<E: de::Error>(&mut self, path: &str) -> Result<(), E> {
        self.conditions += 1;
        let max = self.limits.max_conditions;
        if self.conditions > max {
            return Err(self.refuse(
                path,
                format!("more than {max} conditions in the filter; the limit is max_conditions = {max}"),
            ));
        }
        Ok(())
    }

    fn count_value<E: de::Error>(&mut self, path: &str) -> Result<(), E> {
        self.values += 1;
        let max = self.limits.max_total_values;
        if self.values > max {
            return Err(self.refuse(
                path,
                format!("more than {max} values in the filter; the limit is max_total_values = {max}"),
            ));
        }
        Ok(())
    }

    fn long_string<E: de::Error>(&mut self, what: &str, bytes: usize, path: impl FnOnce() -> String) -> Result<(), E> {
        let max = self.limits.max_string_bytes;
        if bytes > max {
            return Err(self.refuse(
                path(),
                format!("{what} of {bytes} bytes; the limit is max_string_bytes = {max}"),
            ));
        }
        Ok(())
    }

    fn string<E: de::Error>(&mut self, s: &str, path: impl FnOnce() -> String) -> Result<Literal, E> {
        self.long_string("a string", s.len(), path)?;
        Ok(Literal::Str(s.to_owned()))
    }

    fn float<E: de::Error>(&mut self, f: f64, path: impl FnOnce() -> String) -> Result<Literal, E> {
        if !f.is_finite() {
            return Err(self.refuse(path(), format!("{f} is out of range")));
        }
        Ok(Literal::Float(f))
    }
}

/// An integer beyond `i64` is kept as the nearest float, as
/// `serde_json::Number::as_f64` gives it.
fn unsigned(u: u64) -> Literal {
    i64::try_from(u).map_or(Literal::Float(u as f64), Literal::Int)
}

impl<'de> DeserializeSeed<'de> for &mut FilterParser {
    type Value = AttributeFilter;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AttributeFilter, D::Error> {
        // One parser may read several filters in turn; each has its own budget.
        self.conditions = 0;
        self.values = 0;
        self.refusal = None;
        self.surfaced_at = None;
        let path = self.root.clone();
        Node {
            parser: self,
            path,
            depth: 0,
        }
        .deserialize(deserializer)
    }
}

/// Parses a filter given as a `serde_json::Value`.
pub(super) fn parse(value: &Value, root: &str, limits: &FilterLimits) -> Result<AttributeFilter> {
    let mut parser = FilterParser::new(root, limits);
    (&mut parser).deserialize(value).map_err(|e| parser.error(&e))
}

/// Parses a filter given as JSON text, which must hold nothing else.
pub(super) fn parse_text<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    root: &str,
    limits: &FilterLimits,
) -> Result<AttributeFilter> {
    let mut parser = FilterParser::new(root, limits);
    let parsed = (&mut parser)
        .deserialize(&mut *deserializer)
        .and_then(|filter| deserializer.end().map(|()| filter));
    parsed.map_err(|e| parser.error(&e))
}

fn condition(column: &str, test: Test, path: String) -> AttributeFilter {
    AttributeFilter::Condition(Condition {
        column: column.to_string(),
        test,
        path,
    })
}

/// Several conditions at one level mean AND.
fn all_of(mut parts: Vec<AttributeFilter>) -> AttributeFilter {
    if parts.len() == 1 {
        parts.swap_remove(0)
    } else {
        AttributeFilter::And(parts)
    }
}

/// Visitor methods for the JSON kinds a visitor does not take: each refuses
/// the value through the visitor's own `wrong(kind)`, which says what it
/// expected instead.
macro_rules! refuse_kinds {
    ($($kind:ident)*) => { $(refuse_kinds!(@ $kind);)* };
    (@ bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong("a bool"))
        }
    };
    (@ number) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong("a number"))
        }
    };
    (@ string) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong("a string"))
        }
    };
    (@ null) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong("null"))
        }
    };
    (@ array) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong("an array"))
        }
    };
    (@ object) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong("an object"))
        }
    };
}

/// One filter object at `path`, inside `depth` levels of `$and`/`$or`.
struct Node<'p> {
    parser: &'p mut FilterParser,
    path: String,
    depth: usize,
}

impl Node<'_> {
    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser.refuse(self.path, format!("expected an object, got {kind}"))
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = AttributeFilter;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AttributeFilter, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = AttributeFilter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a filter object")
    }

    refuse_kinds!(bool number string null array);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeFilter, A::Error> {
        let Node { parser: p, path, depth } = self;
        let mut parts = Vec::new();
        // Keys read so far: a key given twice is refused, where a `Value`
        // would silently keep the last one.
        let mut keys = HashSet::new();
        loop {
            let key = map.next_key_seed(Key {
                parser: &mut *p,
                path: &path,
            });
            let Some(key) = p.surfaced(key, || path.clone())? else {
                break;
            };
            let key_path = format!("{path}.{key}");
            if keys.contains(&key) {
                return Err(p.refuse(key_path, "given twice; the keys of one object must differ"));
            }
            let part = match key.as_str() {
                "$and" | "$or" => {
                    let max = p.limits.max_depth;
                    if depth >= max {
                        return Err(p.refuse(
                            key_path,
                            format!("$and/$or nested more than {max} deep; the limit is max_depth = {max}"),
                        ));
                    }
                    let subs = map.next_value_seed(List {
                        parser: &mut *p,
                        path: key_path.clone(),
                        depth: depth + 1,
                    });
                    let subs = p.surfaced(subs, || key_path)?;
                    if key == "$and" {
                        AttributeFilter::And(subs)
                    } else {
                        AttributeFilter::Or(subs)
                    }
                }
                op if op.starts_with('$') => {
                    return Err(p.refuse(
                        key_path,
                        format!("unknown operator {op:?} at the top level; use $and, $or or a column name"),
                    ))
                }
                column => {
                    let tests = map.next_value_seed(Column {
                        parser: &mut *p,
                        column,
                        path: key_path.clone(),
                    });
                    p.surfaced(tests, || key_path)?
                }
            };
            parts.push(part);
            keys.insert(key);
        }
        if parts.is_empty() {
            return Err(p.refuse(path, "an empty filter matches nothing; leave the filter out instead"));
        }
        Ok(all_of(parts))
    }
}

/// An object key: a column name or an operator, at most `max_string_bytes`.
struct Key<'p> {
    parser: &'p mut FilterParser,
    /// The object's path.
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name or an operator")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        self.parser.long_string("a key", key.len(), || self.path.to_string())?;
        Ok(key.to_owned())
    }
}

/// The array of an `$and` or `$or`, whose filters sit at `depth`.
struct List<'p> {
    parser: &'p mut FilterParser,
    path: String,
    depth: usize,
}

impl List<'_> {
    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser
            .refuse(self.path, format!("expected an array of filters, got {kind}"))
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = Vec<AttributeFilter>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = Vec<AttributeFilter>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of filters")
    }

    refuse_kinds!(bool number string null object);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let List { parser: p, path, depth } = self;
        // Each filter holds at least one condition, so `max_conditions`
        // bounds this.
        let mut parts = Vec::new();
        loop {
            let item_path = format!("{path}[{}]", parts.len());
            let item = seq.next_element_seed(Node {
                parser: &mut *p,
                path: item_path.clone(),
                depth,
            });
            match p.surfaced(item, || item_path)? {
                Some(filter) => parts.push(filter),
                None => break,
            }
        }
        if parts.is_empty() {
            return Err(p.refuse(path, "expected at least one filter"));
        }
        Ok(parts)
    }
}

/// What a column is tested for: `{"$op": value, ...}` or a bare value
/// (`$eq`).
struct Column<'p, 'k> {
    parser: &'p mut FilterParser,
    column: &'k str,
    path: String,
}

impl Column<'_, '_> {
    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser
            .refuse(self.path, format!("expected a string, number or bool, got {kind}"))
    }

    /// `{"column": value}`, read as `$eq`.
    fn equals<E: de::Error>(
        self,
        literal: impl FnOnce(&mut FilterParser, &str) -> Result<Literal, E>,
    ) -> Result<AttributeFilter, E> {
        let Column {
            parser: p,
            column,
            path,
        } = self;
        p.count_condition(&path)?;
        p.count_value(&path)?;
        let value = literal(p, &path)?;
        Ok(condition(column, Test::Cmp(CmpOp::Eq, value), path))
    }
}

impl<'de> DeserializeSeed<'de> for Column<'_, '_> {
    type Value = AttributeFilter;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AttributeFilter, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const COMPARISONS: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Gte, CmpOp::Lt, CmpOp::Lte];

impl<'de> Visitor<'de> for Column<'_, '_> {
    type Value = AttributeFilter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or an object of operators")
    }

    refuse_kinds!(null array);

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AttributeFilter, E> {
        self.equals(|_, _| Ok(Literal::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AttributeFilter, E> {
        self.equals(|_, _| Ok(Literal::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AttributeFilter, E> {
        self.equals(|_, _| Ok(unsigned(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AttributeFilter, E> {
        self.equals(|p, path| p.float(v, || path.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AttributeFilter, E> {
        self.equals(|p, path| p.string(v, || path.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeFilter, A::Error> {
        let Column {
            parser: p,
            column,
            path,
        } = self;
        let mut parts = Vec::new();
        // Only known operators get here, so this stays short.
        let mut seen: Vec<String> = Vec::new();
        loop {
            let op = map.next_key_seed(Key {
                parser: &mut *p,
                path: &path,
            });
            let Some(op) = p.surfaced(op, || path.clone())? else {
                break;
            };
            let op_path = format!("{path}.{op}");
            if seen.contains(&op) {
                return Err(p.refuse(op_path, "given twice; the keys of one object must differ"));
            }
            let test = if let Some(cmp) = COMPARISONS.into_iter().find(|c| c.name() == op) {
                p.count_condition(&op_path)?;
                p.count_value(&op_path)?;
                let value = map.next_value_seed(Lit {
                    parser: &mut *p,
                    path: &op_path,
                    index: None,
                });
                Test::Cmp(cmp, p.surfaced(value, || op_path.clone())?)
            } else {
                match op.as_str() {
                    "$in" | "$nin" => {
                        p.count_condition(&op_path)?;
                        let values = map.next_value_seed(Values {
                            parser: &mut *p,
                            path: &op_path,
                        });
                        let values = p.surfaced(values, || op_path.clone())?;
                        if op == "$in" {
                            Test::In(values)
                        } else {
                            Test::NotIn(values)
                        }
                    }
                    "$exists" => {
                        p.count_condition(&op_path)?;
                        let exists = map.next_value_seed(Exists {
                            parser: &mut *p,
                            path: &op_path,
                        });
                        Test::Exists(p.surfaced(exists, || op_path.clone())?)
                    }
                    other => {
                        return Err(p.refuse(
                            op_path,
                            format!(
                                "unknown operator {other:?}; known: $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, \
                                 $exists"
                            ),
                        ))
                    }
                }
            };
            parts.push(condition(column, test, op_path));
            seen.push(op);
        }
        if parts.is_empty() {
            return Err(p.refuse(path, "expected an operator such as {\"$eq\": value}"));
        }
        Ok(all_of(parts))
    }
}

mod operands;

use operands::{Exists, Lit, Values};

#[cfg(test)]
mod tests;
