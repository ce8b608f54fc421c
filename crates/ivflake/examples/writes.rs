//! Writes to a mutable index on a large base, measured side by side in one
//! run: ingest from one client and from eight, acknowledgement latency,
//! warm and cold queries with 0, 10k, 100k and 1M unindexed vectors (and
//! strong staleness beside bounded), compaction, and Faiss adding the same
//! vectors to the trained base in memory. The store is a local directory,
//! or the same directory behind object_store's `ThrottledStore` with
//! `DELAY_MS` before every GET, PUT and LIST (it honours conditional
//! creates, as S3 does; the throttled store holds the files in memory, as
//! `ThrottledStore` cannot wrap local files). `benchmarks/bench_writes.py`
//! runs it and plots.
//!
//! ```text
//! cargo run --release -p ivflake --example writes -- BASE.faiss VECTORS.f32 QUERIES.f32 D DELAY_MS WORKDIR
//! ```
//!
//! VECTORS.f32 holds little-endian float32 rows of dimension D; the writes
//! take its first 1,010,200 rows under new ids. Prints one JSON line per
//! measurement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivflake::{
    CompactOptions, FetchConfig, FetchScheduler, IndexLocation, MutableIndex, MutableOptions, OpenOptions,
    SearchParams, Staleness,
};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;

const K: usize = 10;
const NPROBE: usize = 16;
const BATCH: usize = 1000;
const WARM_QUERIES: usize = 200;
const COLD_QUERIES: usize = 50;
const ID_BASE: i64 = 1 << 40;

fn floats(path: &str) -> std::io::Result<Vec<f32>> {
    Ok(std::fs::read(path)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn percentile(ms: &mut [f64], p: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn options(cache_bytes: u64, staleness: Staleness) -> MutableOptions {
    MutableOptions {
        open: OpenOptions {
            scheduler: FetchScheduler::new(FetchConfig {
                memory_cache_bytes: cache_bytes,
                ..FetchConfig::default()
            }),
            ..OpenOptions::default()
        },
        staleness,
        ..MutableOptions::default()
    }
}

/// One query at a time, `n` of them; p50 and p99 in ms.
async fn queries(index: &MutableIndex, q: &[f32], d: usize, n: usize) -> (f64, f64) {
    let mut ms = Vec::with_capacity(n);
    for query in q.chunks(d).take(n) {
        let started = Instant::now();
        index
            .search_with(query, &SearchParams::new(K, NPROBE))
            .await
            .expect("search");
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    (percentile(&mut ms, 0.5), percentile(&mut ms, 0.99))
}

/// `get` of 100 ids spread over the `written` ones: the first call (a fresh
/// handle opens each segment's footer and page index) and the p50/p99 of
/// 20 more, each of other ids.
async fn gets(index: &MutableIndex, written: usize) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut ms = Vec::new();
    for round in 0..21u64 {
        let ids: Vec<i64> = (0..100u64)
            .map(|i| ID_BASE + ((i * 7919 + round * 104_729) % written as u64) as i64)
            .collect();
        let started = Instant::now();
        let rows = index.get(&ids).await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        if rows.iter().any(|r| r.as_ref().is_none_or(|r| r.vector.is_none())) {
            return Err("a written id came back without its vector".into());
        }
    }
    let first = ms.remove(0);
    Ok(
        json!({"ids": 100, "first_ms": first, "p50_ms": percentile(&mut ms.clone(), 0.5),
        "p99_ms": percentile(&mut ms, 0.99)}),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, vectors, query_file, d, delay, work] = args.as_slice() else {
        return Err("usage: writes BASE.faiss VECTORS.f32 QUERIES.f32 D DELAY_MS WORKDIR".into());
    };
    let d: usize = d.parse()?;
    let delay_ms: f64 = delay.parse()?;
    let delay = Duration::from_secs_f64(delay_ms / 1e3);
    let store_name = if delay.is_zero() { "local" } else { "throttled" };
    let q = floats(query_file)?;
    // The writes' vectors: 1M for the levels, 10k more for the clients.
    let data = {
        let bytes = std::fs::read(vectors)?;
        let n = (bytes.len() / (4 * d)).min(1_010_200);
        bytes[..n * d * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>()
    };
    let dir = std::path::Path::new(work).join(store_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bases"))?;
    if std::fs::hard_link(base, dir.join("bases/base.faiss")).is_err() {
        std::fs::copy(base, dir.join("bases/base.faiss"))?;
    }
    let store: Arc<dyn ObjectStore> = if delay.is_zero() {
        Arc::new(LocalFileSystem::new_with_prefix(&dir)?)
    } else {
        let memory = Arc::new(InMemory::new());
        memory
            .put(&Path::from("bases/base.faiss"), PutPayload::from(std::fs::read(base)?))
            .await?;
        Arc::new(ThrottledStore::new(
            memory,
            ThrottleConfig {
                wait_get_per_call: delay,
                wait_put_per_call: delay,
                wait_list_per_call: delay,
                wait_list_with_delimiter_per_call: delay,
                wait_delete_per_call: delay,
                ..ThrottleConfig::default()
            },
        ))
    };
    let root = IndexLocation::new(store, Path::default(), format!("bench://{store_name}"));
    let emit = |what: &str, value: serde_json::Value| {
        println!(
            "{}",
            json!({"store": store_name, "delay_ms": delay_ms, "what": what, "value": value})
        );
    };
    let bounded = Staleness::Bounded(Duration::from_secs(1));
    let index = MutableIndex::create_from_at(root.clone(), "bases/base.faiss", options(2 << 30, bounded)).await?;
    let ntotal = index.base().info().ntotal;
    emit("base", json!({"ntotal": ntotal, "nlist": index.base().info().nlist}));

    let mut written = 0usize;
    let upsert = |index: MutableIndex, from: usize, n: usize| {
        let rows = data[from * d..(from + n) * d].to_vec();
        let ids: Vec<i64> = (from..from + n).map(|i| ID_BASE + i as i64).collect();
        async move {
            let started = Instant::now();
            index.upsert(&rows, &ids).await.expect("upsert");
            started.elapsed().as_secs_f64() * 1e3
        }
    };
    let level = |index: &MutableIndex, unindexed: usize| {
        let index = index.clone();
        let root = root.clone();
        let q = &q;
        async move {
            for _ in 0..2 {
                // The first pass warms the cache; the second is measured.
                let _ = queries(&index, q, d, WARM_QUERIES).await;
            }
            let (p50, p99) = queries(&index, q, d, WARM_QUERIES).await;
            // The same queries on the base alone (the same warm cache),
            // interleaved query by query with the index and its log.
            let base = index.base();
            let (mut alone, mut with_log) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                for query in q.chunks(d).take(WARM_QUERIES) {
                    let params = SearchParams::new(K, NPROBE);
                    let started = Instant::now();
                    base.search_with(query, &params).await.expect("search");
                    alone.push(started.elapsed().as_secs_f64() * 1e3);
                    let started = Instant::now();
                    index.search_with(query, &params).await.expect("search");
                    with_log.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            let (alone50, log50) = (percentile(&mut alone, 0.5), percentile(&mut with_log, 0.5));
            let cold_index = MutableIndex::open_at(root.clone(), options(0, bounded))
                .await
                .expect("open");
            let (c50, c99) = queries(&cold_index, q, d, COLD_QUERIES).await;
            let strong = MutableIndex::open_at(root, options(2 << 30, Staleness::Strong))
                .await
                .expect("open");
            let _ = queries(&strong, q, d, WARM_QUERIES).await;
            let (s50, s99) = queries(&strong, q, d, WARM_QUERIES).await;
            json!({"unindexed": unindexed, "warm_p50_ms": p50, "warm_p99_ms": p99,
                   "interleaved_base_p50_ms": alone50, "interleaved_with_log_p50_ms": log50,
                   "interleaved_ratio": log50 / alone50, "cold_p50_ms": c50,
                   "cold_p99_ms": c99, "strong_warm_p50_ms": s50, "strong_warm_p99_ms": s99})
        }
    };
    emit("queries", level(&index, 0).await);

    // One client, batches of 1,000, to 10k then 100k unindexed.
    let mut ack = Vec::new();
    let started = Instant::now();
    while written < 100_000 {
        ack.push(upsert(index.clone(), written, BATCH).await);
        written += BATCH;
        if written == 10_000 {
            let pause = Instant::now();
            emit("queries", level(&index, written).await);
            // The level's queries are not ingest time.
            let _ = pause;
        }
    }
    let one_client_s = started.elapsed().as_secs_f64();
    let one_client_rate = written as f64 / one_client_s;
    emit(
        "ingest",
        json!({"clients": 1, "batch": BATCH, "vectors_per_s": one_client_rate,
        "ack_p50_ms": percentile(&mut ack.clone(), 0.5), "ack_p99_ms": percentile(&mut ack, 0.99)}),
    );
    emit("queries", level(&index, written).await);

    // Eight clients at once, to 1M unindexed.
    let started = Instant::now();
    let per_client = (1_000_000 - written) / 8;
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let index = index.clone();
            let from = written + c * per_client;
            let upsert = &upsert;
            async move {
                let mut ack = Vec::new();
                for b in (0..per_client).step_by(BATCH) {
                    ack.push(upsert(index.clone(), from + b, BATCH.min(per_client - b)).await);
                }
                ack
            }
        })
        .collect();
    let mut ack: Vec<f64> = futures::future::join_all(clients).await.concat();
    written += 8 * per_client;
    let rate = (8 * per_client) as f64 / started.elapsed().as_secs_f64();
    emit(
        "ingest",
        json!({"clients": 8, "batch": BATCH, "vectors_per_s": rate,
        "ack_p50_ms": percentile(&mut ack.clone(), 0.5), "ack_p99_ms": percentile(&mut ack, 0.99),
        "log_records": index.log_position().map_or(0, |p| p + 1)}),
    );

    // Single-vector writes, one at a time: the acknowledgement's latency.
    let mut small = Vec::new();
    for i in 0..200 {
        small.push(upsert(index.clone(), 1_000_000 + i, 1).await);
    }
    emit(
        "ack_single",
        json!({"p50_ms": percentile(&mut small.clone(), 0.5),
        "p99_ms": percentile(&mut small, 0.99), "store_round_trip_ms": delay_ms}),
    );
    written += 200;
    emit("queries", level(&index, index.unindexed().0 as usize).await);
    emit("get_log", gets(&index, written).await?);

    // Compaction of the 10M base and 1M unindexed, in a handle of its own.
    drop(index);
    ivflake::release_free_memory();
    let compactor = MutableIndex::open_at(root.clone(), options(64 << 20, bounded)).await?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = peak_rss_mb();
    let started = Instant::now();
    let report = compactor
        .compact(&CompactOptions::default())
        .await?
        .expect("something to fold");
    let compact_s = started.elapsed().as_secs_f64();
    emit(
        "compaction",
        json!({"seconds": compact_s, "entries": report.entries, "bytes_read": report.bytes_read,
        "bytes_written": report.bytes_written, "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
        "unindexed_folded": written}),
    );
    let index = MutableIndex::open_at(root.clone(), options(2 << 30, bounded)).await?;
    emit("get_kept", gets(&index, written).await?);
    emit("queries_after_compaction", level(&index, 0).await);

    // The reference: Faiss adding the same 1M vectors to the trained base in memory.
    if delay.is_zero() {
        let bytes = std::fs::read(base)?;
        let mut faiss = ivflake_faiss::read_index(&bytes)?;
        drop(bytes);
        let n = 1_000_000;
        let ids: Vec<i64> = (0..n as i64).map(|i| ID_BASE + i).collect();
        let started = Instant::now();
        faiss.add_with_ids(&data[..n * d], &ids)?;
        emit(
            "faiss_add",
            json!({"vectors": n, "seconds": started.elapsed().as_secs_f64(),
            "vectors_per_s": n as f64 / started.elapsed().as_secs_f64()}),
        );
    }
    Ok(())
}
