//! Cold searches of a refined index against one store round trip, from a
//! store that serves GETs in parallel: object_store's `ThrottledStore`
//! (`DELAY_MS` before each GET) over an in-memory copy of the files. The
//! reference `benchmarks/bench_refine.py` puts beside its s3rver rows, whose
//! server answers parallel GETs about one at a time.
//!
//! ```text
//! cargo run --release -p ivflake --example refine_latency -- FILE QUERIES.f32 GT.i64 D DELAY_MS NPROBES K_FACTORS [IN_FLIGHT]
//! ```
//!
//! FILE is read whole into memory (a 4 GiB file needs 4 GiB). QUERIES.f32
//! holds little-endian float32 queries of dimension D, GT.i64 their exact
//! top-10 (little-endian i64, 10 a query). NPROBES and K_FACTORS are
//! comma-separated (`0` for an index without refine). Every search opens
//! with an empty memory cache: each one reads its lists, then its
//! candidates' refine codes. Prints one JSON line per (nprobe, k_factor).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, OpenOptions, SearchParams};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const K: usize = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, queries, gt, d, delay, nprobes, k_factors, rest @ ..] = args.as_slice() else {
        return Err("usage: refine_latency FILE QUERIES.f32 GT.i64 D DELAY_MS NPROBES K_FACTORS [IN_FLIGHT]".into());
    };
    let d: usize = d.parse()?;
    let delay = Duration::from_secs_f64(delay.parse::<f64>()? / 1e3);
    let list = |s: &str| -> Result<Vec<f32>, std::num::ParseFloatError> { s.split(',').map(str::parse).collect() };
    let (nprobes, k_factors) = (list(nprobes)?, list(k_factors)?);
    let in_flight: usize = match rest.first() {
        Some(n) => n.parse()?,
        None => FetchConfig::default().max_in_flight_per_search,
    };
    let queries: Vec<f32> = std::fs::read(queries)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let gt: Vec<i64> = std::fs::read(gt)?
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();

    let memory = InMemory::new();
    memory
        .put(&Path::from("index.faiss"), PutPayload::from(std::fs::read(file)?))
        .await?;
    let store: Arc<dyn ObjectStore> = Arc::new(ThrottledStore::new(
        memory,
        ThrottleConfig {
            wait_get_per_call: delay,
            ..ThrottleConfig::default()
        },
    ));
    let location = IndexLocation::new(store.clone(), "index.faiss", "memory://bench/index.faiss");

    // One bare GET of 1 KiB: the round trip every figure is divided by.
    let mut bare = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        store
            .get_opts(
                &Path::from("index.faiss"),
                object_store::GetOptions::new().with_range(Some(0..1024)),
            )
            .await?
            .bytes()
            .await?;
        bare.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let round_trip = percentile(&mut bare, 50.0);

    for &nprobe in &nprobes {
        for &k_factor in &k_factors {
            let mut latencies = Vec::new();
            let (mut hits, mut gets, mut refine_gets) = (0usize, 0u64, 0u64);
            for (q, query) in queries.chunks_exact(d).enumerate() {
                let options = OpenOptions {
                    scheduler: FetchScheduler::new(FetchConfig {
                        memory_cache_bytes: 0,
                        max_in_flight_per_search: in_flight,
                        ..FetchConfig::default()
                    }),
                    ..OpenOptions::default()
                };
                let index = IvfIndex::open_at(location.clone(), options).await?;
                let params = SearchParams {
                    k_factor: (k_factor > 0.0).then_some(k_factor),
                    ..SearchParams::new(K, nprobe as usize)
                };
                let results = index.search_with(query, &params).await?;
                latencies.push(results.stats.total_ms);
                gets += results.stats.gets + results.stats.refine_gets;
                refine_gets += results.stats.refine_gets;
                let truth = &gt[q * K..(q + 1) * K];
                hits += results.ids.iter().filter(|id| truth.contains(id)).count();
            }
            let n = latencies.len();
            let p50 = percentile(&mut latencies, 50.0);
            let p99 = percentile(&mut latencies, 99.0);
            println!(
                "{}",
                serde_json::json!({
                    "nprobe": nprobe, "k_factor": k_factor, "in_flight": in_flight,
                    "delay_ms": delay.as_secs_f64() * 1e3, "round_trip_ms": round_trip,
                    "p50_ms": p50, "p99_ms": p99, "round_trips_p50": p50 / round_trip,
                    "recall": hits as f64 / (n * K) as f64,
                    "gets_per_query": gets as f64 / n as f64,
                    "refine_gets_per_query": refine_gets as f64 / n as f64,
                })
            );
        }
    }
    Ok(())
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
