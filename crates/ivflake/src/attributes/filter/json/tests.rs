//! The limits, each refused with its path and accepted at exactly its value;
//! huge inputs refused after reading little of them; text and `Value` giving
//! the same answers.

use super::*;

fn defaults() -> FilterLimits {
    FilterLimits::default()
}

fn from_text(text: &str, limits: &FilterLimits) -> Result<AttributeFilter> {
    AttributeFilter::from_json_str(text, "filter", limits)
}

/// Parses `text` both as text and as a `Value`, asserts they agree, and
/// gives the answer. For input a `Value` holds as written: no repeated keys,
/// keys in sorted order, nesting within serde_json's limit.
fn both(text: &str, limits: &FilterLimits) -> Result<AttributeFilter> {
    let streamed = from_text(text, limits);
    let value: Value = serde_json::from_str(text).expect("valid JSON");
    let from_value = AttributeFilter::from_json_value(&value, "filter", limits);
    assert_eq!(
        format!("{streamed:?}"),
        format!("{from_value:?}"),
        "text and Value differ"
    );
    streamed
}

fn refused(answer: Result<AttributeFilter>) -> (String, String) {
    match answer {
        Err(Error::InvalidFilter { path, reason }) => (path, reason),
        other => panic!("expected InvalidFilter, got {other:?}"),
    }
}

/// `depth` levels of `op`, each holding the next, around `{"a": 1}`.
fn nested(depth: usize, op: &str) -> String {
    format!(
        "{}{{\"a\":1}}{}",
        format!("{{\"{op}\":[").repeat(depth),
        "]}".repeat(depth)
    )
}

/// The path of the `$and` key found inside `depth` levels of `$and`.
fn and_at_depth(depth: usize) -> String {
    format!("filter{}.$and", ".$and[0]".repeat(depth))
}

fn numbers(n: usize) -> String {
    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// `{"column": {"op": [0, 1, ..., n-1]}}`
fn in_list(column: &str, op: &str, n: usize) -> String {
    format!("{{\"{column}\":{{\"{op}\":[{}]}}}}", numbers(n))
}

#[test]
fn depth_is_refused_past_its_limit_and_accepted_at_it() {
    both(&nested(32, "$and"), &defaults()).expect("32 levels are legal");
    let (path, reason) = refused(both(&nested(33, "$and"), &defaults()));
    assert_eq!(path, and_at_depth(32));
    assert!(reason.contains("the limit is max_depth = 32"), "{reason}");

    let limits = FilterLimits {
        max_depth: 2,
        ..defaults()
    };
    both(&nested(2, "$or"), &limits).expect("2 levels");
    let (path, reason) = refused(both(&nested(3, "$or"), &limits));
    assert_eq!(path, "filter.$or[0].$or[0].$or");
    assert!(reason.contains("max_depth = 2"), "{reason}");
}

#[test]
fn a_5000_deep_and_is_refused_after_reading_its_first_levels() {
    let text = nested(5_000, "$and");
    let (path, reason) = refused(from_text(&text, &defaults()));
    assert_eq!(path, and_at_depth(32));
    assert!(reason.contains("max_depth = 32"), "{reason}");

    // Through a reader (serde_json reads it a byte at a time): the parse
    // stops at the 33rd `$and` key, about 300 bytes into 55 KB.
    let mut rest = text.as_bytes();
    let error = parse_text(
        &mut serde_json::Deserializer::from_reader(&mut rest),
        "filter",
        &defaults(),
    )
    .expect_err("too deep");
    assert!(matches!(error, Error::InvalidFilter { ref path, .. } if *path == and_at_depth(32)));
    let read = text.len() - rest.len();
    let through_key = r#"{"$and":["#.len() * 32 + r#"{"$and""#.len();
    assert!(
        read <= through_key + 1,
        "read {read} bytes, the 33rd key ends at {through_key}"
    );
}

#[test]
fn nesting_past_serde_json_s_own_limit_names_the_path_and_the_limit() {
    // max_depth above what JSON text can hold: serde_json's recursion limit
    // (127 nested brackets: the outer object, then two per level) stops the
    // parse at the array of the 64th level, and the error still says where
    // and which limit.
    let limits = FilterLimits {
        max_depth: 1_000,
        ..defaults()
    };
    let (path, reason) = refused(from_text(&nested(5_000, "$and"), &limits));
    assert_eq!(path, and_at_depth(63));
    assert!(reason.contains("nested deeper than JSON text allows"), "{reason}");
    assert!(reason.contains("the limit is max_depth = 1000"), "{reason}");
}

#[test]
fn conditions_are_counted_across_the_filter() {
    let branches = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| format!("{{\"c\":{i}}}")).collect();
        format!("{{\"$or\":[{}]}}", items.join(","))
    };
    both(&branches(1_024), &defaults()).expect("1,024 conditions are legal");
    let (path, reason) = refused(both(&branches(1_025), &defaults()));
    assert_eq!(path, "filter.$or[1024].c");
    assert!(reason.contains("the limit is max_conditions = 1024"), "{reason}");

    // Each operator on a column is one condition; `$exists` and `$in` too.
    let limits = FilterLimits {
        max_conditions: 3,
        ..defaults()
    };
    both(r#"{"a":{"$exists":true,"$gt":1},"b":{"$in":[1]}}"#, &limits).expect("3 conditions");
    let (path, _) = refused(both(
        r#"{"a":{"$exists":true,"$gt":1,"$lt":5},"b":{"$in":[1]}}"#,
        &limits,
    ));
    assert_eq!(path, "filter.b.$in");
}

#[test]
fn values_in_one_in_are_bounded() {
    both(&in_list("c", "$in", 10_000), &defaults()).expect("10,000 values are legal");
    for op in ["$in", "$nin"] {
        let (path, reason) = refused(both(&in_list("c", op, 10_001), &defaults()));
        assert_eq!(path, format!("filter.c.{op}"));
        assert!(reason.contains("the limit is max_in_values = 10000"), "{reason}");
    }
    let text = format!(r#"{{"$and":[{{"a":1}},{}]}}"#, in_list("price", "$in", 10_001));
    let (path, _) = refused(both(&text, &defaults()));
    assert_eq!(path, "filter.$and[1].price.$in");
}

#[test]
fn a_million_and_a_half_value_in_is_refused_after_the_limit_plus_one() {
    let text = in_list("price", "$in", 1_500_000);
    let (path, reason) = refused(from_text(&text, &defaults()));
    assert_eq!(path, "filter.price.$in");
    assert!(reason.contains("max_in_values = 10000"), "{reason}");

    // What this proves: the parse stopped reading right after the 10,001st
    // value (0-based index 10,000), 60 KB into 11 MB, so neither its time
    // nor what it holds (at most 10,000 values) grows with the rest of the
    // input. It does not measure memory itself.
    let mut rest = text.as_bytes();
    parse_text(
        &mut serde_json::Deserializer::from_reader(&mut rest),
        "filter",
        &defaults(),
    )
    .expect_err("too many values");
    let read = text.len() - rest.len();
    let value_10000_ends = text.find(",10000,").expect("present") + ",10000".len();
    // serde_json reads past a number's end to see that it has ended (two
    // bytes with this reader).
    assert!(
        read <= value_10000_ends + 2,
        "read {read} bytes; value 10,000 ends at {value_10000_ends}"
    );
    assert!(read * 100 < text.len());
}

#[test]
fn values_are_counted_across_the_filter() {
    let two_full = format!(
        r#"{{"$and":[{},{}]}}"#,
        in_list("a", "$in", 10_000),
        in_list("b", "$nin", 10_000)
    );
    both(&two_full, &defaults()).expect("20,000 values are legal");
    let one_more = format!(
        r#"{{"$and":[{},{},{{"c":1}}]}}"#,
        in_list("a", "$in", 10_000),
        in_list("b", "$nin", 10_000)
    );
    let (path, reason) = refused(both(&one_more, &defaults()));
    assert_eq!(path, "filter.$and[2].c");
    assert!(reason.contains("the limit is max_total_values = 20000"), "{reason}");

    let limits = FilterLimits {
        max_total_values: 5,
        ..defaults()
    };
    both(r#"{"a":{"$in":[1,2,3]},"b":{"$lt":4,"$ne":5}}"#, &limits).expect("5 values");
    let (path, _) = refused(both(r#"{"a":{"$in":[1,2,3]},"b":{"$nin":[4,5,6]}}"#, &limits));
    assert_eq!(path, "filter.b.$nin");
}

#[test]
fn strings_are_bounded_in_keys_operators_and_values() {
    let at_limit = "x".repeat(2_048);
    let over = "x".repeat(2_049);
    let text = format!(r#"{{"{at_limit}":{{"$in":["{at_limit}"]}}}}"#);
    both(&text, &defaults()).expect("2,048-byte strings are legal");

    let cases = [
        (format!(r#"{{"c":"{over}"}}"#), "filter.c", "a string of 2049 bytes"),
        (
            format!(r#"{{"c":{{"$in":["a","{over}"]}}}}"#),
            "filter.c.$in[1]",
            "a string of 2049 bytes",
        ),
        (
            format!(r#"{{"c":{{"$gt":"{over}"}}}}"#),
            "filter.c.$gt",
            "a string of 2049 bytes",
        ),
        (
            format!(r#"{{"$and":[{{"{over}":1}}]}}"#),
            "filter.$and[0]",
            "a key of 2049 bytes",
        ),
        (format!(r#"{{"c":{{"{over}":1}}}}"#), "filter.c", "a key of 2049 bytes"),
    ];
    for (text, want_path, words) in cases {
        let (path, reason) = refused(both(&text, &defaults()));
        assert_eq!(path, want_path);
        assert!(reason.contains(words), "{reason}");
        assert!(reason.contains("the limit is max_string_bytes = 2048"), "{reason}");
    }
}

#[test]
fn text_and_value_parse_alike() {
    for text in [
        r#"{"category":"shoes","price":{"$lt":10}}"#,
        r#"{"$or":[{"stock":{"$in":[1,2]}},{"active":{"$exists":false}}]}"#,
        r#"{"n":{"$gte":-3,"$lt":2.5},"u":18446744073709551615}"#,
        r#"{"c":{"$nin":[]}}"#,
    ] {
        both(text, &defaults()).expect("parses");
    }
    let f = from_text(r#"{"u":18446744073709551615,"v":-1}"#, &defaults()).unwrap();
    let AttributeFilter::And(parts) = f else { panic!() };
    let ops: Vec<&Test> = parts
        .iter()
        .map(|p| match p {
            AttributeFilter::Condition(c) => &c.test,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            &Test::Cmp(CmpOp::Eq, Literal::Float(18446744073709551615.0)),
            &Test::Cmp(CmpOp::Eq, Literal::Int(-1))
        ]
    );
}

#[test]
fn text_a_value_cannot_hold_is_refused_clearly() {
    // A `Value` keeps the last of a repeated key; the parser refuses it.
    let (path, reason) = refused(from_text(r#"{"a":1,"a":2}"#, &defaults()));
    assert_eq!(path, "filter.a");
    assert!(reason.contains("given twice"), "{reason}");
    let (path, _) = refused(from_text(r#"{"a":{"$gt":1,"$gt":2}}"#, &defaults()));
    assert_eq!(path, "filter.a.$gt");

    // Bad JSON is named where it was found.
    let (path, reason) = refused(from_text(r#"{"a":{"$in":[1,"#, &defaults()));
    assert_eq!(path, "filter.a.$in[1]");
    assert!(reason.starts_with("not valid JSON: EOF"), "{reason}");
    let (path, reason) = refused(from_text(r#"{"a":1} x"#, &defaults()));
    assert_eq!(path, "filter");
    assert!(reason.contains("trailing characters"), "{reason}");
    let (path, reason) = refused(from_text(r#"{"a":1e999}"#, &defaults()));
    assert_eq!(path, "filter.a");
    assert!(reason.contains("number out of range"), "{reason}");
}

#[test]
fn a_parser_is_a_seed_with_a_fresh_budget_each_time() {
    let limits = FilterLimits {
        max_total_values: 3,
        ..defaults()
    };
    let mut parser = FilterParser::new("attribute_filter", &limits);
    for _ in 0..2 {
        let mut de = serde_json::Deserializer::from_str(r#"{"a":{"$in":[1,2,3]}}"#);
        (&mut parser).deserialize(&mut de).expect("within the budget each time");
    }
    let mut de = serde_json::Deserializer::from_str(r#"{"a":{"$in":[1,2,3,4]}}"#);
    let e = (&mut parser).deserialize(&mut de).expect_err("over");
    match parser.error(&e) {
        Error::InvalidFilter { path, reason } => {
            assert_eq!(path, "attribute_filter.a.$in");
            assert!(reason.contains("max_total_values = 3"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deserialize_applies_the_default_limits() {
    let f: AttributeFilter = serde_json::from_str(r#"{"a":{"$in":[1,2]}}"#).unwrap();
    assert_eq!(f, AttributeFilter::is_in("a", vec![Literal::Int(1), Literal::Int(2)]));
    let e = serde_json::from_str::<AttributeFilter>(&in_list("a", "$in", 10_001)).unwrap_err();
    assert!(e.to_string().contains("filter.a.$in: more than 10000 values"), "{e}");
}
