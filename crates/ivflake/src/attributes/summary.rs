//! Per-list summaries of the attributes (loaded with the Parquet footer):
//! min, max and null count from each row group's column statistics, and for
//! string columns the set of distinct values when it is small. `may_match`
//! proves a list cannot hold a matching row, so the search skips it unfetched.
//! Pure: no I/O, no Arrow arrays.

use std::collections::HashMap;

use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

use super::filter::{AttributeFilter, CmpOp, Condition, Literal, Test};

/// String columns whose list holds at most this many distinct values keep
/// the set in the footer: category-like columns then prune on `$eq`/`$in`
/// exactly, while the footer stays small (a few KiB per column and list).
pub const MAX_VALUE_SET: usize = 64;

/// What is known of one column within one list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSummary {
    pub rows: u64,
    /// `None` when the writer did not record it.
    pub nulls: Option<u64>,
    /// Exact bounds of the non-null values, when recorded.
    pub min: Option<Literal>,
    pub max: Option<Literal>,
    /// Every distinct non-null value, when there are few.
    pub values: Option<Vec<Literal>>,
}

/// One list's summaries, by column name.
#[derive(Debug, Clone, Default)]
pub struct ListSummary {
    pub columns: HashMap<String, ColumnSummary>,
}

impl ListSummary {
    /// Reads the statistics of one row group; `values` are the footer's value sets for it.
    pub(crate) fn from_row_group(rg: &RowGroupMetaData, mut values: HashMap<String, Vec<Literal>>) -> Self {
        let rows = rg.num_rows().max(0) as u64;
        let mut columns = HashMap::new();
        for col in rg.columns() {
            let name = col.column_descr().name().to_string();
            let mut s = ColumnSummary {
                rows,
                values: values.remove(&name),
                ..Default::default()
            };
            if let Some(stats) = col.statistics() {
                s.nulls = stats.null_count_opt();
                let exact = stats.min_is_exact() && stats.max_is_exact();
                let (min, max) = match stats {
                    Statistics::Boolean(v) => (
                        v.min_opt().map(|x| Literal::Bool(*x)),
                        v.max_opt().map(|x| Literal::Bool(*x)),
                    ),
                    Statistics::Int64(v) => (
                        v.min_opt().map(|x| Literal::Int(*x)),
                        v.max_opt().map(|x| Literal::Int(*x)),
                    ),
                    Statistics::Double(v) => (
                        v.min_opt().map(|x| Literal::Float(*x)),
                        v.max_opt().map(|x| Literal::Float(*x)),
                    ),
                    Statistics::ByteArray(v) => (
                        v.min_opt()
                            .and_then(|x| x.as_utf8().ok())
                            .map(|s| Literal::Str(s.to_string())),
                        v.max_opt()
                            .and_then(|x| x.as_utf8().ok())
                            .map(|s| Literal::Str(s.to_string())),
                    ),
                    _ => (None, None),
                };
                if exact {
                    s.min = min;
                    s.max = max;
                }
            }
            columns.insert(name, s);
        }
        Self { columns }
    }

    /// False only when no row of the list can match `filter`.
    pub fn may_match(&self, filter: &AttributeFilter) -> bool {
        match filter {
            AttributeFilter::Condition(c) => self.columns.get(&c.column).is_none_or(|s| condition_may_match(c, s)),
            AttributeFilter::And(parts) => parts.iter().all(|p| self.may_match(p)),
            AttributeFilter::Or(parts) => parts.iter().any(|p| self.may_match(p)),
        }
    }
}

/// Orders two literals of one column (ints and floats compare as numbers).
fn order(a: &Literal, b: &Literal) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Literal::Str(x), Literal::Str(y)) => Some(x.cmp(y)),
        (Literal::Int(x), Literal::Int(y)) => Some(x.cmp(y)),
        (Literal::Bool(x), Literal::Bool(y)) => Some(x.cmp(y)),
        (Literal::Float(x), Literal::Float(y)) => x.partial_cmp(y),
        (Literal::Int(x), Literal::Float(y)) => (*x as f64).partial_cmp(y),
        (Literal::Float(x), Literal::Int(y)) => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
}

fn condition_may_match(c: &Condition, s: &ColumnSummary) -> bool {
    use std::cmp::Ordering::*;
    let nulls = s.nulls;
    let all_null = nulls == Some(s.rows);
    let any_null = nulls.is_none_or(|n| n > 0);
    // Could a non-null value equal `v`?
    let may_equal = |v: &Literal| {
        if all_null {
            return false;
        }
        if let Some(values) = &s.values {
            return values.iter().any(|x| order(x, v) == Some(Equal));
        }
        let above_min = s.min.as_ref().and_then(|m| order(v, m)).is_none_or(|o| o != Less);
        let below_max = s.max.as_ref().and_then(|m| order(v, m)).is_none_or(|o| o != Greater);
        above_min && below_max
    };
    // Could every non-null value equal one of `vs` (so "not in" fails for all)?
    let all_within = |vs: &[&Literal]| -> bool {
        if let Some(values) = &s.values {
            return values.iter().all(|x| vs.iter().any(|v| order(x, v) == Some(Equal)));
        }
        match (&s.min, &s.max) {
            (Some(lo), Some(hi)) if order(lo, hi) == Some(Equal) => vs.iter().any(|v| order(lo, v) == Some(Equal)),
            _ => false,
        }
    };
    match &c.test {
        Test::Exists(true) => !all_null,
        Test::Exists(false) => any_null,
        Test::Cmp(CmpOp::Eq, v) => may_equal(v),
        Test::In(vs) => vs.iter().any(may_equal),
        Test::Cmp(CmpOp::Ne, v) => any_null || !all_within(&[v]),
        Test::NotIn(vs) => any_null || !all_within(&vs.iter().collect::<Vec<_>>()),
        Test::Cmp(op, v) => {
            if all_null {
                return false;
            }
            match op {
                CmpOp::Gt => s.max.as_ref().and_then(|m| order(m, v)).is_none_or(|o| o == Greater),
                CmpOp::Gte => s.max.as_ref().and_then(|m| order(m, v)).is_none_or(|o| o != Less),
                CmpOp::Lt => s.min.as_ref().and_then(|m| order(m, v)).is_none_or(|o| o == Less),
                CmpOp::Lte => s.min.as_ref().and_then(|m| order(m, v)).is_none_or(|o| o != Greater),
                CmpOp::Eq | CmpOp::Ne => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(values: Option<Vec<&str>>, min: i64, max: i64, nulls: u64) -> ListSummary {
        let mut columns = HashMap::new();
        columns.insert(
            "cat".to_string(),
            ColumnSummary {
                rows: 10,
                nulls: Some(0),
                min: values
                    .as_ref()
                    .map(|v| Literal::Str(v.iter().min().unwrap().to_string())),
                max: values
                    .as_ref()
                    .map(|v| Literal::Str(v.iter().max().unwrap().to_string())),
                values: values.map(|v| v.into_iter().map(Literal::from).collect()),
            },
        );
        columns.insert(
            "n".to_string(),
            ColumnSummary {
                rows: 10,
                nulls: Some(nulls),
                min: Some(Literal::Int(min)),
                max: Some(Literal::Int(max)),
                values: None,
            },
        );
        ListSummary { columns }
    }

    fn may(s: &ListSummary, f: serde_json::Value) -> bool {
        s.may_match(&AttributeFilter::from_json(&f).unwrap())
    }

    #[test]
    fn prunes_only_what_it_can_prove() {
        let s = list(Some(vec!["a", "c"]), 5, 9, 0);
        assert!(
            !may(&s, json!({"cat": "b"})),
            "b lies between min and max but is not in the set"
        );
        assert!(may(&s, json!({"cat": "c"})));
        assert!(!may(&s, json!({"cat": {"$nin": ["a", "c"]}})));
        assert!(may(&s, json!({"cat": {"$ne": "a"}})));
        assert!(!may(&s, json!({"n": {"$gt": 9}})));
        assert!(may(&s, json!({"n": {"$gte": 9}})));
        assert!(!may(&s, json!({"n": {"$lt": 5}})));
        assert!(!may(&s, json!({"n": {"$exists": false}})));
        assert!(may(&list(None, 5, 9, 1), json!({"n": {"$exists": false}})));
        assert!(!may(&s, json!({"$and": [{"cat": "a"}, {"n": 4}]})));
        assert!(may(&s, json!({"$or": [{"cat": "x"}, {"n": 6}]})));
        assert!(!may(&list(None, 5, 5, 0), json!({"n": {"$ne": 5}})));
    }
}
