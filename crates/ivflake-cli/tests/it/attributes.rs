//! `ivflake build --input data.parquet` with string, float, int and bool
//! attributes, then `ivflake search --filter` from a directory and from the
//! S3-protocol server: every returned id matches the filter, and bad filters
//! fail with their JSON path.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field};
use ivflake_testkit::TempDir;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");
const N: usize = 4000;
const D: usize = 16;
const NQ: usize = 12;

fn ivflake(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run ivflake")
}

fn ok(args: &[&str]) -> String {
    let out = ivflake(args);
    assert!(
        out.status.success(),
        "ivflake {args:?} failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A tiny deterministic generator (no dependency needed for test data).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Attributes of row `i` as the test judges them.
struct Rows {
    category: Vec<Option<&'static str>>,
    price: Vec<f64>,
    stock: Vec<i64>,
    in_stock: Vec<bool>,
}

const CATEGORIES: [&str; 4] = ["shoes", "hats", "bags", "coats"];

fn write_input(path: &Path, queries: &Path) -> Rows {
    let mut rng = Lcg(3);
    let centers: Vec<f32> = (0..8 * D).map(|_| (rng.next() * 8.0 - 4.0) as f32).collect();
    let vectors: Vec<f32> = (0..N)
        .flat_map(|_| {
            let c = (rng.next() * 8.0) as usize;
            (0..D)
                .map(|j| centers[c * D + j] + rng.next() as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let rows = Rows {
        category: (0..N)
            .map(|_| {
                let r = rng.next();
                (r < 0.95).then(|| CATEGORIES[(r * 4.0 / 0.95) as usize % 4])
            })
            .collect(),
        price: (0..N).map(|_| rng.next() * 100.0).collect(),
        stock: (0..N).map(|_| (rng.next() * 500.0) as i64).collect(),
        in_stock: (0..N).map(|_| rng.next() < 0.7).collect(),
    };
    let ids: Vec<i64> = (0..N as i64).map(|i| 1_000_000 + i).collect();
    let vector = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        D as i32,
        Arc::new(Float32Array::from(vectors.clone())),
        None,
    );
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("vector", Arc::new(vector) as ArrayRef),
        (
            "category",
            Arc::new(StringArray::from(rows.category.clone())) as ArrayRef,
        ),
        ("price", Arc::new(Float64Array::from(rows.price.clone())) as ArrayRef),
        ("stock", Arc::new(Int64Array::from(rows.stock.clone())) as ArrayRef),
        (
            "in_stock",
            Arc::new(BooleanArray::from(rows.in_stock.clone())) as ArrayRef,
        ),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    // The first NQ vectors, as a float32 .npy of shape (NQ, D).
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({NQ}, {D}), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&((header.len() + pad + 1) as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend(std::iter::repeat_n(b' ', pad));
    npy.push(b'\n');
    for v in &vectors[..NQ * D] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(queries, npy).expect("write queries");
    rows
}

/// Runs a filtered search and checks every returned id against `pred`;
/// returns how many hits there were.
fn search_checked(uri: &str, queries: &Path, filter: &str, rows: &Rows, pred: impl Fn(usize) -> bool) -> usize {
    let out = ok(&[
        "search",
        uri,
        "--queries",
        queries.to_str().unwrap(),
        "-k",
        "10",
        "--nprobe",
        "4",
        "--filter",
        filter,
        "--return-attributes",
        "category,price",
    ]);
    let mut hits = 0;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), NQ, "one line per query:\n{out}");
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("json line");
        let ids = v["ids"].as_array().expect("ids");
        assert_eq!(v["distances"].as_array().expect("distances").len(), ids.len());
        let attributes = v["attributes"].as_array().expect("attributes");
        for (id, attrs) in ids.iter().zip(attributes) {
            let id = id.as_i64().unwrap();
            if id < 0 {
                continue;
            }
            let row = (id - 1_000_000) as usize;
            assert!(pred(row), "{uri}: id {id} does not match {filter}");
            // serde_json's default float parsing may differ in the last bit.
            let price = attrs["price"].as_f64().expect("price");
            assert!(
                (price - rows.price[row]).abs() <= 1e-9 * rows.price[row].abs(),
                "price of {id}"
            );
            assert_eq!(attrs["category"].as_str(), rows.category[row], "category of {id}");
            hits += 1;
        }
    }
    hits
}

#[test]
fn build_from_parquet_then_filtered_search_from_a_directory_and_s3() {
    let dir = TempDir::new("attrs");
    let input = dir.path().join("data.parquet");
    let queries = dir.path().join("q.npy");
    let rows = write_input(&input, &queries);
    let local = dir.path().join("idx.faiss");
    let bucket = std::env::var("IVFLAKE_S3_BUCKET")
        .expect("IVFLAKE_S3_BUCKET is not set: run the tests with `make test`, which starts moto's S3 server");
    let s3 = format!("s3://{bucket}/cli-attrs-{}/idx.faiss", std::process::id());
    for output in [local.to_str().unwrap(), s3.as_str()] {
        let text = ok(&[
            "build",
            "--input",
            input.to_str().unwrap(),
            "--factory",
            "IVF32,Flat",
            "--output",
            output,
        ]);
        assert!(text.contains("wrote 4 attribute columns"), "{text}");
    }
    assert!(dir.path().join("idx.faiss.attrs.parquet").is_file());
    // `attributes --from` the same table: its vector column is no attribute,
    // and the error says how to leave it out.
    let out = ivflake(&[
        "attributes",
        local.to_str().unwrap(),
        "--from",
        input.to_str().unwrap(),
        "--id-column",
        "id",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--drop vector"), "{err}");
    ok(&[
        "attributes",
        local.to_str().unwrap(),
        "--from",
        input.to_str().unwrap(),
        "--id-column",
        "id",
        "--drop",
        "vector",
    ]);
    let text = ok(&["inspect", local.to_str().unwrap()]);
    let line = text
        .lines()
        .find(|l| l.starts_with("attributes"))
        .expect("an attributes line");
    assert!(line.contains("category") && line.contains("price"), "{line}");

    type RowTest<'a> = Box<dyn Fn(usize) -> bool + 'a>;
    let cases: Vec<(&str, RowTest)> = vec![
        (
            r#"{"category": {"$eq": "shoes"}}"#,
            Box::new(|r| rows.category[r] == Some("shoes")),
        ),
        (
            r#"{"category": "hats", "price": {"$lt": 40}, "in_stock": true}"#,
            Box::new(|r| rows.category[r] == Some("hats") && rows.price[r] < 40.0 && rows.in_stock[r]),
        ),
        (
            r#"{"$or": [{"stock": {"$gte": 490}}, {"category": {"$exists": false}}]}"#,
            Box::new(|r| rows.stock[r] >= 490 || rows.category[r].is_none()),
        ),
        (
            r#"{"category": {"$nin": ["shoes", "bags"]}, "price": {"$gt": 10.5}}"#,
            Box::new(|r| !matches!(rows.category[r], Some("shoes" | "bags")) && rows.price[r] > 10.5),
        ),
    ];
    for uri in [local.to_str().unwrap(), s3.as_str()] {
        for (filter, pred) in &cases {
            let hits = search_checked(uri, &queries, filter, &rows, pred);
            assert!(hits > 0, "{uri} {filter}: no hits at all");
        }
    }

    // Bad filters: a clear error naming the JSON path, and a failing exit.
    for (filter, words) in [
        (r#"{"colour": "red"}"#, "filter.colour: unknown column"),
        (
            r#"{"price": {"$gt": "x"}}"#,
            "filter.price.$gt: column \"price\" is float64",
        ),
        (r#"{"price": {"$approx": 1}}"#, "filter.price.$approx: unknown operator"),
        (r#"{"price": "#, "--filter is not JSON"),
    ] {
        let out = ivflake(&[
            "search",
            local.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
            "-k",
            "5",
            "--nprobe",
            "4",
            "--filter",
            filter,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{filter} was accepted");
        assert!(stderr.contains(words), "{filter}: {stderr}");
    }
}
