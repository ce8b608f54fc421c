//! `$in` and `$nin` over one column: the filter's values go into a hash set
//! once, then one pass over the rows looks each row up. It replaces one
//! equality kernel pass per value (rows × values work, and a mask per value).
//! It owns only this kernel; parsing and the other operators live in the
//! parent module.
//!
//! Equality is exactly `arrow_ord::cmp::eq`'s, which the per-value kernel
//! used: strings and integers compare by value, floats by IEEE 754 total
//! order, which is equality of their bits (so `-0.0` is not `0.0`, and a NaN
//! equals only a NaN with the same bits). An integer value on a float64
//! column is converted with `as f64` and a float on an int64 column with
//! `as i64`, as the scalar for `eq` was. Nulls are in no set: they never
//! match `$in` and always match `$nin`.

use std::collections::HashSet;
use std::hash::Hash;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, BooleanArray};
use arrow_buffer::BooleanBuffer;
use arrow_schema::DataType;

use super::{describe, Literal};
use crate::error::{Error, Result};

/// Which rows of `array` hold one of `values` (`negate`: which do not); a
/// mask without nulls. The filter must have passed `check`, so every value
/// fits the column's type; one that does not is an internal error.
pub(super) fn in_list(array: &dyn Array, values: &[Literal], negate: bool) -> Result<BooleanArray> {
    let rows = array.len();
    // Nothing is in an empty set, whatever the column's type.
    if values.is_empty() {
        return Ok(BooleanArray::new(BooleanBuffer::collect_bool(rows, |_| negate), None));
    }
    let ty = array.data_type();
    let misfit = |v: &Literal| Error::Internal(format!("$in over a {ty} column holds {}", describe(v)));
    let member: Box<dyn Fn(usize) -> bool + '_> = match ty {
        DataType::Utf8 => {
            let set = value_set(values, |v| match v {
                Literal::Str(s) => Ok(s.as_str()),
                other => Err(misfit(other)),
            })?;
            let column = array.as_string::<i32>();
            Box::new(move |i| set.contains(column.value(i)))
        }
        DataType::Int64 => {
            let set = value_set(values, |v| match v {
                Literal::Int(i) => Ok(*i),
                Literal::Float(f) => Ok(*f as i64),
                other => Err(misfit(other)),
            })?;
            let column = array.as_primitive::<Int64Type>();
            Box::new(move |i| set.contains(&column.value(i)))
        }
        DataType::Float64 => {
            let set = value_set(values, |v| match v {
                Literal::Int(i) => Ok((*i as f64).to_bits()),
                Literal::Float(f) => Ok(f.to_bits()),
                other => Err(misfit(other)),
            })?;
            let column = array.as_primitive::<Float64Type>();
            Box::new(move |i| set.contains(&column.value(i).to_bits()))
        }
        DataType::Boolean => {
            let (mut has_true, mut has_false) = (false, false);
            for v in values {
                match v {
                    Literal::Bool(b) => {
                        has_true |= *b;
                        has_false |= !*b;
                    }
                    other => return Err(misfit(other)),
                }
            }
            let column = array.as_boolean();
            Box::new(move |i| if column.value(i) { has_true } else { has_false })
        }
        other => return Err(Error::Internal(format!("$in over a {other} column"))),
    };
    let mask = BooleanBuffer::collect_bool(rows, |i| (array.is_valid(i) && member(i)) != negate);
    Ok(BooleanArray::new(mask, None))
}

/// The filter's values as a set of keys. std's `HashSet` (SipHash with a
/// random key) because the values come from clients: a faster unkeyed hash
/// would let one pick values that all collide.
fn value_set<'a, K: Hash + Eq>(values: &'a [Literal], key: impl Fn(&'a Literal) -> Result<K>) -> Result<HashSet<K>> {
    values.iter().map(key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_arith::boolean::{not, or};
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    use crate::attributes::filter::{definite, scalar};

    /// The evaluation this kernel replaced, kept here as the reference: one
    /// `eq` kernel pass per value, OR-ed together, then negated for `$nin`.
    fn per_value(array: &dyn Array, values: &[Literal], negate: bool) -> BooleanArray {
        let mut acc = BooleanArray::from(vec![false; array.len()]);
        for v in values {
            let scalar = scalar(v, array.data_type());
            let eq = arrow_ord::cmp::eq(&array, scalar.as_ref()).unwrap();
            acc = or(&acc, &definite(eq)).unwrap();
        }
        if negate {
            not(&acc).unwrap()
        } else {
            acc
        }
    }

    fn same_as_per_value(array: &ArrayRef, values: &[Literal]) {
        for negate in [false, true] {
            let got = in_list(array.as_ref(), values, negate).unwrap();
            let want = per_value(array.as_ref(), values, negate);
            assert_eq!(got.null_count(), 0);
            assert_eq!(got, want, "{} negate={negate} values={values:?}", array.data_type());
        }
    }

    /// A random column of `rows` drawn from a small domain (so values repeat
    /// and sets hit), with about one null in eight.
    fn column(rng: &mut StdRng, ty: &DataType, rows: usize) -> ArrayRef {
        let null = |rng: &mut StdRng| rng.gen_ratio(1, 8);
        match ty {
            DataType::Utf8 => Arc::new(StringArray::from_iter(
                (0..rows).map(|_| (!null(rng)).then(|| format!("v{}", rng.gen_range(0..40)))),
            )),
            DataType::Int64 => Arc::new(Int64Array::from_iter(
                (0..rows).map(|_| (!null(rng)).then(|| rng.gen_range(-20..20))),
            )),
            DataType::Float64 => {
                // Halves, signed zeros and NaNs: the cases where float equality is subtle.
                let specials = [0.0, -0.0, f64::NAN, -f64::NAN, f64::INFINITY];
                Arc::new(Float64Array::from_iter((0..rows).map(|_| {
                    (!null(rng)).then(|| {
                        if rng.gen_ratio(1, 5) {
                            specials[rng.gen_range(0..specials.len())]
                        } else {
                            f64::from(rng.gen_range(-20..20)) / 2.0
                        }
                    })
                })))
            }
            _ => Arc::new(BooleanArray::from_iter(
                (0..rows).map(|_| (!null(rng)).then(|| rng.gen())),
            )),
        }
    }

    /// Values that fit `ty` as `check` allows, including integers on float
    /// columns and integral floats on int columns.
    fn values(rng: &mut StdRng, ty: &DataType, n: usize) -> Vec<Literal> {
        (0..n)
            .map(|_| match ty {
                DataType::Utf8 => Literal::Str(format!("v{}", rng.gen_range(0..60))),
                DataType::Int64 if rng.gen() => Literal::Float(f64::from(rng.gen_range(-30..30))),
                DataType::Int64 => Literal::Int(rng.gen_range(-30..30)),
                DataType::Float64 if rng.gen() => Literal::Int(rng.gen_range(-30..30)),
                DataType::Float64 => Literal::Float(f64::from(rng.gen_range(-30..30)) / 2.0),
                _ => Literal::Bool(rng.gen()),
            })
            .collect()
    }

    #[test]
    fn equals_the_per_value_evaluation_on_random_data() {
        let mut rng = StdRng::seed_from_u64(21);
        for ty in [DataType::Utf8, DataType::Int64, DataType::Float64, DataType::Boolean] {
            for round in 0..50 {
                let rows = rng.gen_range(0..300);
                let array = column(&mut rng, &ty, rows);
                // Empty, small and larger sets, repeats included.
                let n = [0, 1, 3, 40][round % 4];
                same_as_per_value(&array, &values(&mut rng, &ty, n));
            }
        }
    }

    #[test]
    fn floats_compare_by_bits_as_the_kernel_did() {
        let array: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.0), Some(-0.0), Some(f64::NAN), None]));
        let cases = [
            vec![Literal::Int(0)],
            vec![Literal::Float(-0.0)],
            vec![Literal::Float(f64::NAN)],
            vec![Literal::Float(-f64::NAN)],
        ];
        for values in &cases {
            same_as_per_value(&array, values);
        }
        let got = in_list(array.as_ref(), &[Literal::Float(0.0)], false).unwrap();
        assert_eq!(got, BooleanArray::from(vec![true, false, false, false]));
        let got = in_list(array.as_ref(), &[Literal::Float(0.0)], true).unwrap();
        assert_eq!(
            got,
            BooleanArray::from(vec![false, true, true, true]),
            "a null is not in any set"
        );
    }
}
