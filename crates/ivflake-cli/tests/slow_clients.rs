//! `ivflake serve` facing 3,000 slow or idle clients on loopback, as a
//! child process: a fresh client's search is answered while they are all
//! open (its latency is printed, not asserted), every slow client is
//! disconnected once its time-out has passed, the
//! server's resident memory comes back down once they are gone, and the
//! server never falls over.
//!
//! Alone in its test binary, not in `it/`: it raises this process's
//! open-file limit and holds 3,000 sockets, and it times a fresh client's
//! search, which other tests' child processes would slow down.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");
/// Slow clients of each kind: complete heads owing a 100 kB body, half-sent
/// heads, idle keep-alive connections. 3 × 1,000 = the 3,000.
const PER_KIND: usize = 1_000;
/// The server's time-outs in this test: long enough that all 3,000 are
/// open (connecting them takes about a second on two busy cores) when the
/// fresh client searches, short enough for a quick test.
const HEAD_TIMEOUT: Duration = Duration::from_secs(6);
const BODY_STALL: Duration = Duration::from_secs(6);
/// A disconnect may come this much before the time-out seen from here: the server's clock for an idle connection starts
/// as it sends its answer, a little before the client has read it.
const EARLY: Duration = Duration::from_millis(250);
/// Most resident memory 1,000 slow clients may cost the server: hyper's
/// 8 KiB read buffer, the connection task and its timers, with room for
/// the allocator's rounding (measured: about 17 MiB).
const MAX_MIB_PER_THOUSAND: f64 = 32.0;
/// Liveness guard for any wait: fails loudly, never measures.
const LIVENESS: Duration = Duration::from_secs(120);

struct Serving {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ivflake() -> Command {
    let mut c = Command::new(BIN);
    // Faiss's OpenMP threads spin otherwise; the tests share two cores.
    c.env("OMP_WAIT_POLICY", "PASSIVE").env("OPENBLAS_NUM_THREADS", "1");
    c.env_remove("IVFLAKE_API_TOKEN").env_remove("RUST_LOG");
    c
}

/// A small demo index in `dir`, then `ivflake serve` over it with `config`.
fn serve(dir: &Path, http: &str) -> Serving {
    let out = ivflake()
        .args(["demo", "--dir", dir.to_str().unwrap(), "--n", "3000", "--d", "16"])
        .args(["--queries", "4", "--factory", "IVF32,Flat", "--nprobe", "8"])
        .output()
        .expect("run ivflake demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = dir.join("ivflake.toml");
    let index = dir.join("index.faiss");
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[indexes.demo]\nuri = {:?}\n[http]\n{http}",
        index.to_str().unwrap()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = ivflake()
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ivflake serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("serve's first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Serving {
        child,
        addr,
        dir: dir.to_path_buf(),
    }
}

/// Resident memory of a process, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server is running");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// One request on a fresh connection; the status.
async fn request(addr: &str, head: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let text = format!(
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(LIVENESS, s.read_to_string(&mut response))
        .await
        .expect("answered")
        .expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A GET on a fresh connection; the response body.
async fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(LIVENESS, s.read_to_string(&mut response))
        .await
        .expect("answered")
        .expect("read");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn search_request(addr: &str) -> (String, String) {
    let head = format!("POST /v1/indexes/demo/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n");
    let body = serde_json::json!({"vectors": [vec![0.5f32; 16]], "k": 5}).to_string();
    (head, body)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slow {
    /// Complete head with `Content-Length: 100000`, then nothing.
    OwedBody,
    /// Half a request head, then nothing.
    HalfHead,
    /// One request answered, then idle on the kept-alive connection.
    IdleKeepAlive,
}

/// Opens one slow client; returns it and when it last sent anything.
async fn open_slow(addr: &str, kind: Slow) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).await.expect("connect a slow client");
    match kind {
        Slow::OwedBody => {
            let head = format!(
                "POST /v1/indexes/demo/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
        }
        Slow::HalfHead => s
            .write_all(b"POST /v1/indexes/demo/search HTTP/1.1\r\nHost: x\r\nCont")
            .await
            .unwrap(),
        Slow::IdleKeepAlive => {
            s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(LIVENESS, s.read(&mut buf)).await.unwrap().unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
    (s, Instant::now())
}

/// Reads until the server closes: what it sent, and how long after `since`.
async fn until_closed(mut s: TcpStream, since: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(LIVENESS, s.read(&mut buf)).await {
            Err(_) => panic!("a slow client was kept past {LIVENESS:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), since.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// What one wave of 3,000 slow clients showed.
struct Wave {
    /// A fresh client's search latency with all of them open.
    fresh: Duration,
    /// The server's RSS (MiB) then.
    during: f64,
    /// The longest any was held, and how long until all were disconnected.
    longest: Duration,
    all_closed: Duration,
}

/// Opens `PER_KIND` slow clients of each kind, searches as a fresh client,
/// then waits for the server to disconnect every slow one, checking each
/// was held for its time-out.
async fn wave(addr: &str, pid: u32, head: &str, body: &str) -> Wave {
    let mut slow = Vec::new();
    for kind in [Slow::OwedBody, Slow::HalfHead, Slow::IdleKeepAlive] {
        let opened = futures::future::join_all((0..PER_KIND).map(|_| open_slow(addr, kind))).await;
        slow.extend(opened.into_iter().map(|(s, since)| (kind, s, since)));
    }
    let opened_all = Instant::now();

    // A fresh client's search, with all 3,000 open.
    let started = Instant::now();
    let status = request(addr, head, body).await;
    let fresh = started.elapsed();
    // Served while every slow client is still open (checked next); its
    // latency is reported, not asserted: a loaded machine may take longer.
    assert_eq!(status, 200);
    // They were all still open then (the server had sent none of them anything).
    for (kind, s, _) in &slow {
        let mut buf = [0u8; 256];
        match s.try_read(&mut buf) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{kind:?}"),
            Ok(n) => panic!(
                "a {kind:?} slow client was answered or closed too early: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
    let during = rss_mib(pid);

    // Every one is disconnected at its time-out; owed bodies get a 408 first.
    let closes = futures::future::join_all(slow.into_iter().map(|(kind, s, since)| async move {
        let (response, held) = until_closed(s, since).await;
        (kind, response, held)
    }))
    .await;
    let mut longest = Duration::ZERO;
    for (kind, response, held) in &closes {
        let timeout = match kind {
            Slow::OwedBody => {
                assert!(response.starts_with("HTTP/1.1 408"), "{kind:?}: {response}");
                BODY_STALL
            }
            Slow::HalfHead | Slow::IdleKeepAlive => {
                assert!(response.is_empty(), "{kind:?}: {response}");
                HEAD_TIMEOUT
            }
        };
        // Never before its time-out; how late is the machine's load, bounded
        // by `until_closed`'s liveness limit.
        assert!(
            *held + EARLY >= timeout,
            "{kind:?} closed after {held:?}, before its time-out of {timeout:?}"
        );
        longest = longest.max(*held);
    }
    Wave {
        fresh,
        during,
        longest,
        all_closed: opened_all.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_slow_clients_neither_starve_a_fresh_one_nor_keep_memory() {
    // This process holds 3,000 sockets and more: raise its own soft limit.
    let needed = (3 * PER_KIND + 512) as u64;
    let limit = rlimit::increase_nofile_limit(needed).expect("raise the open-file limit");
    assert!(
        limit >= needed,
        "the hard open-file limit {limit} is below the {needed} this test needs"
    );

    let dir = std::env::temp_dir().join(format!("ivflake-slow-clients-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = format!(
        "max_connections = 4096\nheader_read_timeout_ms = {}\nbody_stall_timeout_ms = {}\nbody_read_timeout_ms = 60000\n",
        HEAD_TIMEOUT.as_millis(),
        BODY_STALL.as_millis()
    );
    let mut server = serve(&dir, &http);
    let addr = server.addr.clone();
    let pid = server.child.id();
    let (head, body) = search_request(&addr);

    // Warm: the index's lists are cached and the runtime's threads exist.
    for _ in 0..20 {
        assert_eq!(request(&addr, &head, &body).await, 200);
    }
    let before = rss_mib(pid);

    let first = wave(&addr, pid, &head, &body).await;
    let after_first = settled_rss_mib(pid, before).await;
    // A second wave: memory the first one left with the allocator is reused, not added to.
    let second = wave(&addr, pid, &head, &body).await;
    // The server is up and serving, and its memory came back down.
    assert_eq!(request(&addr, &head, &body).await, 200);
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
    let after = settled_rss_mib(pid, before).await;
    for (i, w) in [&first, &second].iter().enumerate() {
        eprintln!(
            "wave {i}: fresh search {:?} with {} slow clients open; RSS during {:.1} MiB; all closed {:?} \
             after the last opened (longest held {:?})",
            w.fresh,
            3 * PER_KIND,
            w.during,
            w.all_closed,
            w.longest
        );
    }
    eprintln!("RSS before {before:.1} MiB, after the first wave {after_first:.1} MiB, after the second {after:.1} MiB");
    // Every connection task is gone: only this scrape's own connection is open.
    let metrics = get(&addr, "/metrics").await;
    let open = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ivflake_http_connections_open "))
        .unwrap_or_else(|| panic!("no connection gauge in\n{metrics}"));
    assert_eq!(
        open.trim(),
        "1",
        "connections still open after every slow client was dropped"
    );
    // Memory: each wave's cost is bounded per client, and memory comes back
    // near its level before once the server's upkeep has handed the freed
    // pages back (glibc keeps them otherwise).
    let wave_cost = first.during - before;
    assert!(
        wave_cost > 0.0,
        "the slow clients cost no memory: the measure is broken"
    );
    assert!(
        wave_cost <= MAX_MIB_PER_THOUSAND * 3.0,
        "3,000 slow clients cost {wave_cost:.1} MiB"
    );
    for (wave, rss) in [("first", after_first), ("second", after)] {
        assert!(
            rss <= before + SETTLED_MARGIN_MIB,
            "RSS did not come back after the {wave} wave: before {before:.1} MiB, after {rss:.1} MiB"
        );
    }
}

/// How far above its level before the waves the server's memory may settle:
/// allocator bookkeeping and runtime buffers, a fraction of one wave's cost.
const SETTLED_MARGIN_MIB: f64 = 16.0;

/// The server's RSS once it has settled: polled until it is within the
/// margin of `before` (the server hands free pages back every few seconds),
/// or a liveness bound passes; the last reading either way.
async fn settled_rss_mib(pid: u32, before: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let rss = rss_mib(pid);
        if rss <= before + SETTLED_MARGIN_MIB || Instant::now() > until {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
