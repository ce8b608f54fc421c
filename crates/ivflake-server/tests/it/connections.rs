//! Slow and idle clients, in process on loopback: a stalled or too-slow
//! body gets 408 and holds no request slot; half-sent heads and idle
//! keep-alive connections are closed after `http.header_read_timeout_ms`;
//! at `http.max_connections` a new client waits until the time-outs free a
//! slot. (`ivflake-cli/tests/slow_clients.rs` runs thousands of them
//! against the binary.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use ivflake_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short time-outs, so each test takes about a second.
const HEAD_TIMEOUT: Duration = Duration::from_millis(600);
const BODY_STALL: Duration = Duration::from_millis(1_500);
/// Slack for scheduling on two shared cores: a close counts as "after the
/// time-out" when it comes within this of it (either side).
const SLACK: Duration = Duration::from_millis(2_500);
/// Liveness guard for any read: fails loudly, never measures.
const LIVENESS: Duration = Duration::from_secs(30);

fn tune(c: &mut ServerConfig) {
    c.http.header_read_timeout_ms = HEAD_TIMEOUT.as_millis() as u64;
    c.http.body_stall_timeout_ms = BODY_STALL.as_millis() as u64;
}

/// Reads until the server closes the connection: what it sent, and when it closed.
async fn until_closed(mut s: TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIVENESS, s.read(&mut buf)).await {
            Err(_) => panic!("the server kept a stalled connection open past {LIVENESS:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Complete request heads of a search whose body never comes.
async fn stalled_body(addr: SocketAddr, content_length: usize) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/indexes/idx/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    (s, Instant::now())
}

/// Closed no sooner than the time-out allows. Only the lower bound is a
/// fact (the server's clock starts after `sent`); how much later a loaded
/// machine gets to it is not, and `until_closed` bounds that by `LIVENESS`.
fn assert_closed_after(what: &str, sent: Instant, closed: Instant, timeout: Duration) {
    let held = closed - sent;
    assert!(
        held + SLACK / 10 >= timeout,
        "{what}: closed after {held:?}, before the time-out of {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_no_request_slot_and_get_408() {
    const SLOTS: usize = 2;
    let (server, _dir, _) = local(|c, _| {
        tune(c);
        c.limits.max_requests_in_flight = SLOTS;
    })
    .await;
    // Four times the request slots, each with its head sent and its body owed.
    let mut stalled = Vec::new();
    for _ in 0..4 * SLOTS {
        stalled.push(stalled_body(server.addr, 100_000).await);
    }
    // A fresh client is served while they are all still waiting (nothing
    // sent to them yet): the stalled ones hold no slot.
    let (status, body) = post_json(
        &server.url("/v1/indexes/idx/search"),
        &search_body(&queries(1), 0..1, 5, 4),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (s, _) in &stalled {
        let mut buf = [0u8; 1];
        let e = s.try_read(&mut buf).expect_err("nothing sent yet");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
    // Each stalled one gets a 408 naming the body, and its connection is closed.
    for (s, sent) in stalled {
        let (response, closed) = until_closed(s).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("body_timeout"), "{response}");
        assert_closed_after("stalled body", sent, closed, BODY_STALL);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_floor_rate_gets_408() {
    // No pause is long (a byte every 50 ms), but the whole body takes 100 s.
    const TOTAL: Duration = Duration::from_millis(800);
    let (server, _dir, _) = local(|c, _| {
        tune(c);
        c.http.body_read_timeout_ms = TOTAL.as_millis() as u64;
    })
    .await;
    let (mut s, sent) = stalled_body(server.addr, 2_000).await;
    let trickle = async {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        // Bounded: 2,000 bytes would take 100 s, the server cuts it off long before.
        for _ in 0..2_000 {
            every.tick().await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
        s
    };
    let s = tokio::time::timeout(LIVENESS, trickle)
        .await
        .expect("the server cut the trickle off");
    let (response, closed) = until_closed(s).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_closed_after("slow body", sent, closed, TOTAL);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_and_idle_connections_are_closed() {
    let (server, _dir, _) = local(|c, _| tune(c)).await;
    // Half a request head, then nothing.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST /v1/indexes/idx/search HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();
    let half_sent = Instant::now();
    // Connected, nothing sent.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    let silent_sent = Instant::now();
    // One request answered, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(LIVENESS, idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_since = Instant::now();

    for (what, s, since) in [
        ("half-sent head", half, half_sent),
        ("silent connection", silent, silent_sent),
        ("idle keep-alive", idle, idle_since),
    ] {
        let (_, closed) = until_closed(s).await;
        assert_closed_after(what, since, closed, HEAD_TIMEOUT);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_client_waits_for_a_slot() {
    const CAP: usize = 4;
    let (server, _dir, _) = local(|c, _| {
        tune(c);
        c.http.max_connections = CAP;
    })
    .await;
    // CAP silent connections take every slot (the kernel accepts in order).
    let first_connect = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..CAP {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let fresh = tokio::spawn({
        let url = server.url("/healthz");
        async move {
            let r = client().get(&url).send().await.expect("served once a slot frees");
            (r.status().as_u16(), Instant::now())
        }
    });
    for s in silent {
        until_closed(s).await;
    }
    let (status, answered) = tokio::time::timeout(LIVENESS, fresh).await.unwrap().unwrap();
    assert_eq!(status, 200);
    // Served only once the time-out had shed a silent connection: the
    // silent ones' clocks started after `first_connect`.
    let waited = answered - first_connect;
    assert!(
        waited >= HEAD_TIMEOUT,
        "served after {waited:?}, before any slot was free"
    );
    server.stop().await;
}
