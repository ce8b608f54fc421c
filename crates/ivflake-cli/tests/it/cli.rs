//! The `ivflake` command run as a process, every subcommand, its output
//! checked: `demo` (with `make demo`'s later steps: a query file, then
//! `serve` and one search, stopped by SIGTERM instead of serving for ever),
//! `build`, `inspect`, `search`, `manifest`, `bench`, and `serve` with the
//! token from the environment, JSON logs, and SIGTERM readiness.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ivflake_testkit::TempDir;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");
/// Liveness guard for a process or a wait: fails loudly, never measures.
const LIVENESS: Duration = Duration::from_secs(120);

fn ivflake() -> Command {
    let mut c = Command::new(BIN);
    // Faiss's OpenMP threads spin otherwise; the tests share two cores.
    c.env("OMP_WAIT_POLICY", "PASSIVE").env("OPENBLAS_NUM_THREADS", "1");
    c.env_remove("IVFLAKE_API_TOKEN")
        .env_remove("IVFLAKE_LOG_FORMAT")
        .env_remove("RUST_LOG");
    c
}

/// Runs `ivflake args...` to completion; panics with its output unless it succeeds.
fn run(args: &[&str]) -> Output {
    let out = ivflake().args(args).output().expect("run ivflake");
    assert!(
        out.status.success(),
        "ivflake {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Reads a little-endian f4 `.npy` (as the CLI writes them): (values, rows, d).
fn read_npy(path: &Path) -> (Vec<f32>, usize, usize) {
    let raw = std::fs::read(path).expect("npy");
    assert_eq!(&raw[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let header = std::str::from_utf8(&raw[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = raw[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (values, dims[0], dims[1])
}

/// `ivflake demo` into `dir`, small: the index, vectors and queries it writes.
fn demo(dir: &Path) -> String {
    let out = run(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--n",
        "3000",
        "--d",
        "16",
        "--queries",
        "8",
        "--factory",
        "IVF32,PQ4np",
        "--nprobe",
        "8",
    ]);
    let text = stdout(&out);
    for file in ["index.faiss", "vectors.npy", "queries.npy"] {
        assert!(dir.join(file).is_file(), "demo wrote {file}:\n{text}");
    }
    text
}

/// The `ids` of one output line of `ivflake search`.
fn ids_of(line: &Value) -> Vec<i64> {
    line["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[test]
fn demo_then_inspect_search_manifest_and_build() {
    let tmp = TempDir::new("commands");
    let dir = tmp.path().join("demo-data");
    let text = demo(&dir);
    assert!(text.to_lowercase().contains("recall"), "{text}");
    assert!(
        text.contains("search 1 (cold)") && text.contains("search 2 (warm)"),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    let index = dir.join("index.faiss");
    let uri = index.to_str().unwrap();
    let bytes = std::fs::read(&index).unwrap();
    let reference = ivflake_faiss::read_index(&bytes).unwrap();

    // inspect: the header, as text and as JSON.
    let text = stdout(&run(&["inspect", uri]));
    assert!(text.contains("IndexIVFPQ"), "{text}");
    let info: Value = serde_json::from_str(&stdout(&run(&["inspect", uri, "--json"]))).expect("inspect --json");
    let rendered = info.to_string();
    assert!(
        rendered.contains("3000") && rendered.contains("32"),
        "ntotal and nlist: {rendered}"
    );
    assert!(rendered.contains("IndexIVFPQ"), "{rendered}");

    // search: one JSON line per query, equal to Faiss searching the file in memory.
    let queries = dir.join("queries.npy");
    let search = [
        "search",
        uri,
        "--queries",
        queries.to_str().unwrap(),
        "-k",
        "5",
        "--nprobe",
        "8",
        "--stats",
    ];
    let out = run(&search);
    let (q, rows, d) = read_npy(&queries);
    assert_eq!((rows, d), (8, 16));
    let expected = reference.search(&q, 5, 8).unwrap();
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), rows);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(ids_of(line), expected.labels[i * 5..(i + 1) * 5], "query {i}");
        for (j, dist) in line["distances"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                dist.as_f64().unwrap() as f32,
                expected.distances[i * 5 + j],
                "query {i}"
            );
        }
    }
    let stderr_lines = |out: &Output| -> Vec<Value> {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(|l| serde_json::from_str(l).expect("--stats lines are JSON"))
            .collect()
    };
    let stats = stderr_lines(&out);
    assert_eq!(stats.len(), 2, "an open line, then one per batch: {stats:?}");
    let open = &stats[0]["open"];
    assert!(
        open["gets"].as_u64().unwrap() >= 1 && open["bytes"].as_u64().unwrap() > 0,
        "{open}"
    );
    assert_eq!(stats[0]["preload"]["state"], "off");
    assert!(stats[1]["lists_probed"].as_u64().unwrap() > 0, "{}", stats[1]);

    // The open and fetch settings as flags: with everything preloaded before
    // the search, it finds every list in memory, with the same neighbours.
    let out = run(&[
        &search[..],
        &[
            "--preload",
            "auto",
            "--memory-cache-bytes",
            "16M",
            "--residual-table",
            "off",
            "--coalesce-gap",
            "0",
            "--max-in-flight-per-search",
            "2",
        ],
    ]
    .concat());
    let stats = stderr_lines(&out);
    assert_eq!(stats[0]["preload"]["state"], "done", "{}", stats[0]);
    assert_eq!(stats[1]["lists_from_memory"], stats[1]["lists_probed"], "{}", stats[1]);
    assert_eq!(stats[1]["gets"], 0, "{}", stats[1]);
    for (i, line) in stdout(&out).lines().enumerate() {
        let line: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ids_of(&line), expected.labels[i * 5..(i + 1) * 5], "query {i}");
    }
    let info: Value = serde_json::from_str(&stdout(&run(&["inspect", uri, "--json", "--residual-table", "off"])))
        .expect("inspect --json");
    assert_eq!(info["memory"]["residual_table_bytes"], 0, "{info}");
    assert!(
        info["memory"]["residual_table_size"].as_u64().unwrap() > 0,
        "an IVFPQ has one: {info}"
    );
    let text = stdout(&run(&["inspect", uri, "--residual-table", "off"]));
    assert!(text.contains("not built: --residual-table off"), "says why: {text}");
    assert!(info["open"]["gets"].as_u64().unwrap() >= 1, "{info}");

    // manifest: writes the sidecar, then checks the file against it.
    let text = stdout(&run(&["manifest", uri]));
    assert!(text.contains("wrote"), "{text}");
    assert!(dir.join("index.faiss.ivfmanifest").is_file());
    let text = stdout(&run(&["manifest", uri, "--check"]));
    assert!(text.contains("checked"), "{text}");
    // A damaged list: the check fails, and never advises blessing the damage.
    let file = dir.join("index.faiss");
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    std::fs::write(&file, &bad).unwrap();
    let out = ivflake().args(["manifest", uri, "--check"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match") && err.contains("damaged"), "{err}");
    assert!(
        err.contains("only then"),
        "rewriting is advised only for a deliberate replacement: {err}"
    );
    std::fs::write(&file, &good).unwrap();
    // inspect says the sidecar is there (and that there are no attributes).
    let after: Value = serde_json::from_str(&stdout(&run(&["inspect", uri, "--json"]))).unwrap();
    assert_eq!(
        (&info["checksum_sidecar"], &after["checksum_sidecar"]),
        (&Value::Bool(false), &Value::Bool(true)),
        "{after}"
    );
    assert_eq!(after["attributes"], Value::Null, "{after}");

    // build: from the demo's vectors, to a new file Faiss reads back.
    let built = tmp.path().join("built.faiss");
    let text = stdout(&run(&[
        "build",
        "--input",
        dir.join("vectors.npy").to_str().unwrap(),
        "--factory",
        "IVF16,SQ8",
        "--metric",
        "ip",
        "--output",
        built.to_str().unwrap(),
    ]));
    assert!(text.contains("IVF16,SQ8"), "{text}");
    // An existing output is refused before anything is built, unless
    // --overwrite, which also deletes the sidecar that no longer fits.
    let (input, output) = (dir.join("vectors.npy"), built.clone());
    let again = |extra: &[&str]| {
        let mut command = ivflake();
        command.arg("build").arg("--input").arg(&input);
        command.args(["--factory", "IVF16,SQ8", "--output"]).arg(&output);
        command.args(extra).output().unwrap()
    };
    let out = again(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    stdout(&run(&["manifest", built.to_str().unwrap()]));
    let sidecar = tmp.path().join("built.faiss.ivfmanifest");
    assert!(sidecar.is_file());
    let out = again(&["--overwrite", "--metric", "inner_product"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!sidecar.exists(), "the stale sidecar is gone");
    let built = ivflake_faiss::read_index(&std::fs::read(&built).unwrap()).expect("Faiss reads the built index");
    assert_eq!(built.info().ntotal, 3000);
    assert_eq!(built.info().metric, ivflake_faiss::Metric::InnerProduct);

    // A bad argument fails with a message, not a panic.
    let out = ivflake().args(["inspect", "s3://"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_prints_its_report() {
    let out = run(&[
        "bench",
        "--n",
        "2000",
        "--d",
        "8",
        "--nlist",
        "16",
        "--nprobe",
        "4",
        "--queries",
        "4",
        "--iterations",
        "2",
        "--latency-ms",
        "0",
        "--throughput-mbps",
        "0",
        "--gaps",
        "0,64K",
        "--max-seconds",
        "60",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("bench --json prints JSON");
    let rendered = report.to_string();
    assert!(rendered.contains("cold") && rendered.contains("warm"), "{rendered}");
}

/// A running `ivflake serve`, killed if a test fails before stopping it.
struct Serving {
    child: Child,
    addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ivflake serve args...` on an ephemeral loopback port and reads the
/// address it prints.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut command = ivflake();
    command
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn ivflake serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("the first line of serve's output");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep draining stdout; collect stderr lines for the log checks.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Serving {
        child,
        addr,
        stderr: rx,
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LIVENESS)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends SIGTERM to the process.
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn serve_takes_its_token_from_the_environment_logs_json_and_turns_unready_on_sigterm() {
    let tmp = TempDir::new("serve");
    let dir = tmp.path().join("demo-data");
    demo(&dir);
    // `make demo`'s next step: a JSON search body from the first query.
    let (q, _, d) = read_npy(&dir.join("queries.npy"));
    let body = serde_json::json!({"vectors": [q[..d].to_vec()], "k": 10, "nprobe": 16}).to_string();
    let config = tmp.path().join("ivflake.toml");
    // Long enough that /readyz is seen answering 503 before the listener closes.
    std::fs::write(&config, "shutdown_ready_delay_ms = 5000\n").unwrap();
    let index = format!("demo={}", dir.join("index.faiss").display());
    let mut server = serve(
        &[&index, "--config", config.to_str().unwrap()],
        &[("IVFLAKE_API_TOKEN", "tok-from-env\n"), ("IVFLAKE_LOG_FORMAT", "json")],
    );
    let addr = server.addr.clone();

    // The token came from the environment (trailing newline trimmed).
    let json = [("Content-Type", "application/json")];
    assert_eq!(http(&addr, "GET", "/v1/indexes", &[], "").0, 401);
    let (status, _) = http(&addr, "POST", "/v1/indexes/demo/search", &json, &body);
    assert_eq!(status, 401);
    let bearer = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer tok-from-env"),
    ];
    let (status, answer) = http(&addr, "POST", "/v1/indexes/demo/search", &bearer, &body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
    let got = ids_of(&answer["results"][0]);
    assert_eq!(got.len(), 10, "{answer}");
    let reference = ivflake_faiss::read_index(&std::fs::read(dir.join("index.faiss")).unwrap()).unwrap();
    let expected = reference.search(&q[..d], 10, 16).unwrap();
    assert_eq!(got, expected.labels);
    assert_eq!(http(&addr, "GET", "/healthz", &[], "").0, 200);
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 200);

    // SIGTERM: /readyz turns 503 while the server still accepts, then it exits cleanly.
    terminate(&server.child);
    let started = Instant::now();
    let mut unready = false;
    while started.elapsed() < LIVENESS {
        match TcpStream::connect(&addr) {
            Ok(_) => {
                if http(&addr, "GET", "/readyz", &[], "").0 == 503 {
                    unready = true;
                    // Still serving searches meanwhile.
                    let (status, _) = http(&addr, "POST", "/v1/indexes/demo/search", &bearer, &body);
                    assert_eq!(status, 200);
                    break;
                }
            }
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(unready, "/readyz never answered 503 after SIGTERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < LIVENESS, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");

    // Every log line is a JSON object with a level and a message.
    // The process has exited, so its stderr ends and the reader thread stops.
    let lines: Vec<String> = server.stderr.iter().collect();
    let logs: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(!logs.is_empty(), "serve logged nothing");
    for log in &logs {
        assert!(log["level"].is_string(), "{log}");
        assert!(log["fields"].is_object() || log["message"].is_string(), "{log}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("tok-from-env")),
        "the token never reaches the logs"
    );
}

/// Config keys the docs promise, each seen working through the binary:
/// custom token variables and their scopes, `http.keep_alive = false`,
/// `limits.max_timeout_ms`, `compute_threads`. Tokens reach the child
/// through its environment, never this process's (`setenv` races).
#[test]
fn serve_honours_the_documented_config_keys() {
    let tmp = TempDir::new("serve-keys");
    let dir = tmp.path().join("demo-data");
    demo(&dir);
    let (q, _, d) = read_npy(&dir.join("queries.npy"));
    let config = tmp.path().join("ivflake.toml");
    std::fs::write(
        &config,
        "compute_threads = 1\n\
         [defaults]\ntimeout_ms = 500\n\
         [limits]\nmax_timeout_ms = 1000\n\
         [http]\nkeep_alive = false\n\
         [auth]\ntoken_env = \"MY_ADMIN_TOKEN\"\nsearch_token_env = \"MY_SEARCH_TOKEN\"\n",
    )
    .unwrap();
    let index = format!("demo={}", dir.join("index.faiss").display());
    let server = serve(
        &[&index, "--config", config.to_str().unwrap()],
        &[
            ("MY_ADMIN_TOKEN", "admin-secret"),
            ("MY_SEARCH_TOKEN", "search-secret"),
            ("IVFLAKE_LOG_FORMAT", "json"),
        ],
    );
    let addr = server.addr.clone();
    let body = |timeout_ms: u64| {
        serde_json::json!({"vectors": [q[..d].to_vec()], "k": 5, "timeout_ms": timeout_ms}).to_string()
    };
    let as_search = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer search-secret"),
    ];
    let as_admin = [("Authorization", "Bearer admin-secret")];
    assert_eq!(http(&addr, "POST", "/v1/indexes/demo/search", &[], &body(500)).0, 401);
    let (status, answer) = http(&addr, "POST", "/v1/indexes/demo/search", &as_search, &body(500));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = http(&addr, "POST", "/v1/indexes/demo/search", &as_search, &body(2000));
    assert_eq!(status, 400, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["field"], "timeout_ms", "{answer}");
    assert_eq!(
        http(&addr, "POST", "/v1/indexes/demo/reload", &as_search[1..], "").0,
        403
    );
    assert_eq!(http(&addr, "POST", "/v1/indexes/demo/reload", &as_admin, "").0, 200);

    // Without keep-alive the server closes the connection after one
    // response, though the request did not ask it to.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(LIVENESS)).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response)
        .expect("the server closes the connection");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );

    terminate(&server.child);
    let lines: Vec<String> = server
        .stderr
        .iter()
        .take_while(|l| !l.contains("\"stopped\""))
        .collect();
    let pool = lines
        .iter()
        .find(|l| l.contains("compute pool"))
        .unwrap_or_else(|| panic!("no compute pool line in {lines:?}"));
    let pool: Value = serde_json::from_str(pool).unwrap();
    assert_eq!(pool["fields"]["threads"], 1, "{pool}");
    assert!(!lines
        .iter()
        .any(|l| l.contains("admin-secret") || l.contains("search-secret")));
}

/// `inspect` and `manifest` on an `s3://` index (moto), and each
/// `--residual-table` setting: `on` and `auto` build IVF-PQ's table (this one
/// is small), `off` does not.
#[test]
fn inspect_and_manifest_work_on_s3_with_each_residual_table_setting() {
    let tmp = TempDir::new("s3-cli");
    let dir = tmp.path().join("demo-data");
    demo(&dir);
    let bucket = std::env::var("IVFLAKE_S3_BUCKET")
        .expect("IVFLAKE_S3_BUCKET is not set: run the tests with `make test`, which starts moto's S3 server");
    let uri = format!("s3://{bucket}/cli-s3-{}/index.faiss", std::process::id());
    let vectors = dir.join("vectors.npy");
    run(&[
        "build",
        "--input",
        vectors.to_str().unwrap(),
        "--factory",
        "IVF32,PQ4np",
        "--output",
        &uri,
    ]);
    for (setting, built) in [("on", true), ("auto", true), ("off", false)] {
        let text = stdout(&run(&["inspect", &uri, "--json", "--residual-table", setting]));
        let info: Value = serde_json::from_str(&text).expect("inspect --json");
        let bytes = info["memory"]["residual_table_bytes"].as_u64().unwrap();
        assert_eq!(bytes > 0, built, "--residual-table {setting}: {info}");
        assert_eq!(
            info["type"].as_str().map(|t| t.contains("IndexIVFPQ")),
            Some(true),
            "{info}"
        );
    }
    let text = stdout(&run(&["manifest", &uri]));
    assert!(text.contains("wrote"), "{text}");
    let text = stdout(&run(&["manifest", &uri, "--check"]));
    assert!(text.contains("checked"), "{text}");
}
