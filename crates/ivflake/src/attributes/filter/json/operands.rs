//! The operands of a condition: one literal, the array of an `$in` or
//! `$nin` (read no further than one value past its limit), and the boolean
//! of `$exists`. Each is a `DeserializeSeed` that reports to the parser of
//! the filter it belongs to.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{unsigned, FilterParser};
use crate::attributes::filter::Literal;

/// The array of an `$in` or `$nin`, read no further than one value past
/// `max_in_values`.
pub(super) struct Values<'p> {
    pub(super) parser: &'p mut FilterParser,
    pub(super) path: &'p str,
}

impl Values<'_> {
    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser
            .refuse(self.path, format!("expected an array of values, got {kind}"))
    }
}

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = Vec<Literal>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = Vec<Literal>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of values")
    }

    refuse_kinds!(bool number string null object);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Values { parser: p, path } = self;
        let max = p.limits.max_in_values;
        // A size hint comes from a `Value` (text gives none); trust it no
        // further than the limit.
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max));
        loop {
            let index = values.len();
            let value = seq.next_element_seed(Lit {
                parser: &mut *p,
                path,
                index: Some(index),
            });
            let Some(value) = p.surfaced(value, || format!("{path}[{index}]"))? else {
                break;
            };
            if index >= max {
                return Err(p.refuse(
                    path,
                    format!("more than {max} values in one $in or $nin; the limit is max_in_values = {max}"),
                ));
            }
            p.count_value(path)?;
            values.push(value);
        }
        Ok(values)
    }
}

/// One value: an operand, or the `index`th value of an `$in`/`$nin`.
pub(super) struct Lit<'p> {
    pub(super) parser: &'p mut FilterParser,
    pub(super) path: &'p str,
    pub(super) index: Option<usize>,
}

impl Lit<'_> {
    /// Built only for an error, so a long `$in` formats no paths.
    fn path(path: &str, index: Option<usize>) -> String {
        match index {
            Some(i) => format!("{path}[{i}]"),
            None => path.to_string(),
        }
    }

    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser.refuse(
            Lit::path(self.path, self.index),
            format!("expected a string, number or bool, got {kind}"),
        )
    }
}

impl<'de> DeserializeSeed<'de> for Lit<'_> {
    type Value = Literal;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Literal, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lit<'_> {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or bool")
    }

    refuse_kinds!(null array object);

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
        Ok(Literal::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
        Ok(Literal::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
        Ok(unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
        let Lit { parser, path, index } = self;
        parser.float(v, || Lit::path(path, index))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
        let Lit { parser, path, index } = self;
        parser.string(v, || Lit::path(path, index))
    }
}

/// The operand of `$exists`: true or false.
pub(super) struct Exists<'p> {
    pub(super) parser: &'p mut FilterParser,
    pub(super) path: &'p str,
}

impl Exists<'_> {
    fn wrong<E: de::Error>(self, kind: &str) -> E {
        self.parser
            .refuse(self.path, format!("expected true or false, got {kind}"))
    }
}

impl<'de> DeserializeSeed<'de> for Exists<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Exists<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    refuse_kinds!(number string null array object);

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
}
