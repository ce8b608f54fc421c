//! Writes through the `ivflake` command, as separate processes: two
//! writers at once lose nothing on moto, and a writer or compactor killed
//! with SIGKILL at every step (held there by a gate, `IVFLAKE_GATE`) loses
//! no acknowledged write, leaves no unacknowledged one half-present, and
//! leaves an index that opens; a killed compaction leaves the previous
//! version current and its new base collectable by `gc`. On moto (which
//! honours If-None-Match) and a local directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivflake::{MutableIndex, MutableOptions, Staleness};
use ivflake_testkit::{clustered, moto, unique_key, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");
const D: usize = 8;
/// A gated process is killed once it reports reaching its gate; this bounds the wait.
const GATE_WAIT: Duration = Duration::from_secs(60);

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> String {
    let out = command(args).output().expect("run ivflake");
    assert!(
        out.status.success(),
        "ivflake {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A float32 .npy of `n` vectors of `D` dimensions.
fn write_npy(path: &Path, data: &[f32]) {
    let n = data.len() / D;
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {D}), }}");
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// One batch of the test: its vectors (in a file) and ids.
struct Batch {
    file: std::path::PathBuf,
    vectors: Vec<f32>,
    first_id: i64,
}

fn batch(dir: &Path, i: u64, n: usize) -> Batch {
    let vectors = clustered(n, D, 1000 + i);
    let file = dir.join(format!("batch{i}.npy"));
    write_npy(&file, &vectors);
    Batch {
        file,
        vectors,
        first_id: i as i64 * 100_000,
    }
}

fn upsert_args<'a>(uri: &'a str, b: &'a Batch, first: &'a str) -> Vec<&'a str> {
    vec!["upsert", uri, "--input", b.file.to_str().unwrap(), "--first-id", first]
}

/// How many of the batch's vectors the index finds as themselves (exact:
/// every list probed).
async fn found(uri: &str, b: &Batch) -> usize {
    let options = MutableOptions {
        staleness: Staleness::Strong,
        ..Default::default()
    };
    let index = MutableIndex::open(uri, options).await.expect("the index opens");
    let nlist = index.base().info().nlist;
    let r = index.search(&b.vectors, 1, nlist).await.unwrap();
    r.ids
        .iter()
        .enumerate()
        .filter(|&(i, &id)| id == b.first_id + i as i64)
        .count()
}

/// Runs `args` held at `gate`, kills it with SIGKILL there, and checks it
/// died of that (not by finishing).
fn kill_at(gate: &str, args: &[&str], gates: &Path) {
    let marker = gates.join(format!("{}.reached", gate.replace(':', "-")));
    let _ = std::fs::remove_file(&marker);
    let mut child: Child = command(args)
        .env("IVFLAKE_GATE", gate)
        .env("IVFLAKE_GATE_DIR", gates)
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("{args:?} ended ({status}) before reaching {gate}: {err}");
        }
        assert!(started.elapsed() < GATE_WAIT, "{args:?} never reached {gate}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{gate}: killed, not finished");
}

/// Every acknowledged write is found.
async fn check(uri: &str, acknowledged: &[Batch], what: &str) {
    for b in acknowledged {
        assert_eq!(
            found(uri, b).await,
            b.vectors.len() / D,
            "{what}: an acknowledged write was lost"
        );
    }
}

async fn kills_lose_nothing(uri: &str, dir: &Path) {
    let gates = dir.join("gates");
    std::fs::create_dir_all(&gates).unwrap();
    run(&["create", uri, "--d", "8", "--factory", "IVF4,Flat"]);
    let mut acknowledged = Vec::new();
    for i in 0..2 {
        let b = batch(dir, i, 200);
        run(&upsert_args(uri, &b, &b.first_id.to_string()));
        acknowledged.push(b);
    }
    // A compaction that trains IVF4 (200+ vectors ≥ 4 × 39), so later
    // compactions stream list by list.
    run(&["compact", uri]);
    for (i, gate, lands) in [(10, "write:encoded", false), (11, "write:committed", true)] {
        let b = batch(dir, i, 50);
        let first = b.first_id.to_string();
        kill_at(gate, &upsert_args(uri, &b, &first), &gates);
        check(uri, &acknowledged, gate).await;
        let seen = found(uri, &b).await;
        assert!(seen == 0 || seen == 50, "{gate}: a write half-present ({seen} of 50)");
        assert_eq!(seen == 50, lands, "{gate}: in the store exactly when its create was");
        // The next writer goes on from there.
        let after = batch(dir, i + 10, 20);
        run(&upsert_args(uri, &after, &after.first_id.to_string()));
        acknowledged.push(after);
    }
    for (gate, moves_on) in [("compact:uploaded", false), ("compact:committed", true)] {
        let before = MutableIndex::open(uri, MutableOptions::default()).await.unwrap();
        let version = before.version_position();
        kill_at(gate, &["compact", uri], &gates);
        let after = MutableIndex::open(uri, MutableOptions::default()).await.unwrap();
        assert_eq!(
            after.version_position() == version + 1,
            moves_on,
            "{gate}: which version is current"
        );
        check(uri, &acknowledged, gate).await;
        if !moves_on {
            // Its new base is named by no version: gc collects it.
            let report: serde_json::Value = serde_json::from_str(&run(&["gc", uri, "--retention-secs", "0"])).unwrap();
            assert!(report["deleted"]["bases"].as_u64().unwrap() >= 1, "{report}");
            check(uri, &acknowledged, "after gc").await;
        }
        let next = batch(dir, 30 + version, 20);
        run(&upsert_args(uri, &next, &next.first_id.to_string()));
        acknowledged.push(next);
    }
    run(&["compact", uri]);
    run(&["gc", uri, "--retention-secs", "0"]);
    check(uri, &acknowledged, "after the last compaction and gc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_and_compactions_lose_nothing_on_a_local_directory() {
    let dir = TempDir::new("writes-kill-local");
    let root = dir.path().join("idx");
    kills_lose_nothing(root.to_str().unwrap(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_and_compactions_lose_nothing_on_moto() {
    let moto = moto();
    let dir = TempDir::new("writes-kill-moto");
    let uri = format!("s3://{}/{}/", moto.bucket, unique_key("writes", "kill"));
    kills_lose_nothing(&uri, dir.path()).await;
}

/// Two `ivflake upsert` processes write 10,000 distinct ids each into one
/// index on moto at the same time: all 20,000 are found after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writer_processes_on_moto_lose_nothing() {
    let moto = moto();
    let dir = TempDir::new("writes-two");
    let uri = format!("s3://{}/{}/", moto.bucket, unique_key("writes", "two"));
    run(&["create", &uri, "--d", "8", "--factory", "IVF16,Flat"]);
    let batches: Vec<Batch> = (0..2).map(|i| batch(dir.path(), i, 10_000)).collect();
    let firsts: Vec<String> = batches.iter().map(|b| b.first_id.to_string()).collect();
    let children: Vec<Child> = batches
        .iter()
        .zip(&firsts)
        .map(|(b, first)| {
            let mut args = upsert_args(&uri, b, first);
            args.extend(["--batch", "500"]);
            command(&args).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for b in &batches {
        assert_eq!(found(&uri, b).await, 10_000);
    }
    let index = MutableIndex::open(&uri, MutableOptions::default()).await.unwrap();
    assert_eq!(index.log_position(), Some(39), "40 records, each at its own position");
}

/// `ivflake upsert` from Parquet keeps every other column as attributes:
/// a filtered search then equals exact search over the matching ids, with
/// each hit's attributes as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_from_parquet_keeps_its_attributes() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field};

    let dir = TempDir::new("cli-parquet-attrs");
    let n = 250;
    let vectors = clustered(n, D, 77);
    let ids: Vec<i64> = (0..n as i64).map(|i| 5 * i).collect();
    let tags: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
    let vector = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        D as i32,
        Arc::new(Float32Array::from(vectors.clone())),
        None,
    );
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        ("vector", Arc::new(vector) as ArrayRef),
        ("tag", Arc::new(StringArray::from(tags.clone())) as ArrayRef),
        (
            "n",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .unwrap();
    let input = dir.path().join("in.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&input).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let root = dir.path().join("idx");
    let uri = root.to_str().unwrap();
    run(&["create", uri, "--d", &D.to_string(), "--factory", "IVF4,Flat"]);
    let out = run(&["upsert", uri, "--input", input.to_str().unwrap(), "--batch", "100"]);
    assert!(out.contains("\"upserted\":250"), "{out}");

    let index = MutableIndex::open(uri, MutableOptions::default()).await.unwrap();
    let allowed: Vec<i64> = ids
        .iter()
        .zip(&tags)
        .filter(|(_, t)| **t == "a")
        .map(|(id, _)| *id)
        .collect();
    let mut exact = ivflake_faiss::Index::factory(D, "IDMap,Flat", ivflake::Metric::L2).unwrap();
    exact.add_with_ids(&vectors, &ids).unwrap();
    let q = &vectors[..10 * D];
    let expected = exact
        .search_filtered(q, 5, 1, ivflake_faiss::IdFilter::Allow(&allowed))
        .unwrap();
    let params = ivflake::SearchParams {
        attribute_filter: Some(ivflake::AttributeFilter::from_json(&serde_json::json!({"tag": "a"})).unwrap()),
        return_attributes: vec!["n".into()],
        ..ivflake::SearchParams::new(5, 1)
    };
    let got = index.search_with(q, &params).await.unwrap();
    assert_eq!(got.ids, expected.labels);
    for (id, row) in got.ids.iter().zip(got.attributes.unwrap()) {
        let row = row.expect("a hit has its row");
        assert_eq!(row["n"], ivflake::AttributeValue::Int64(id / 5), "id {id}");
    }
    // `ivflake get` prints each id's vector and attributes, null for absent ids.
    let out: serde_json::Value = serde_json::from_str(&run(&["get", uri, "10", "3"])).unwrap();
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows[0]["attributes"], serde_json::json!({"tag": "c", "n": 2}), "{out}");
    let vector: Vec<f32> = serde_json::from_value(rows[0]["vector"].clone()).unwrap();
    assert_eq!(vector, vectors[2 * D..3 * D].to_vec());
    assert!(rows[1].is_null(), "{out}");
}
