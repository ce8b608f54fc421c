//! Warm searches per second through the library with `CONCURRENCY` searches
//! in flight, one query each: the reference `benchmarks/bench_http.py` puts
//! beside `wrk` against `ivflake serve` on the same file, in the same run.
//!
//! ```text
//! cargo run --release -p ivflake --example qps -- URI QUERIES.f32 CONCURRENCY SECONDS K NPROBE [TABLE]
//! ```
//!
//! TABLE is IVF-PQ's residual table: `off`, `on` or `auto` (the default).
//!
//! QUERIES.f32 holds little-endian float32 vectors of the index's dimension.
//! Every list is loaded into the memory cache first, so only warm searches
//! are timed. Prints one JSON object.

use std::time::{Duration, Instant};

use ivflake::{IndexLocation, IvfIndex, OpenOptions, Preload, PreloadState, ResidualTable};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (uri, queries, concurrency, seconds, k, nprobe, table) = match args.as_slice() {
        [u, q, c, s, k, n] => (u, q, c, s, k, n, ResidualTable::default()),
        [u, q, c, s, k, n, t] => (u, q, c, s, k, n, residual_table(t)?),
        _ => return Err("usage: qps URI QUERIES.f32 CONCURRENCY SECONDS K NPROBE [off|on|auto]".into()),
    };
    let (concurrency, k, nprobe): (usize, usize, usize) = (concurrency.parse()?, k.parse()?, nprobe.parse()?);
    let seconds: f64 = seconds.parse()?;

    let options = OpenOptions {
        preload: Preload::Auto {
            max_cache_fraction: 1.0,
        },
        residual_table: table,
        ..OpenOptions::default()
    };
    let location = IndexLocation::parse(uri, options.scheduler.config())?;
    let index = IvfIndex::open_at(location, options).await?;
    let status = index.preloaded().await;
    if status.state != PreloadState::Done {
        return Err(format!("the lists did not all load into the cache: {status:?}").into());
    }

    let d = index.info().d;
    let bytes = std::fs::read(queries)?;
    let vectors: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if vectors.is_empty() || !vectors.len().is_multiple_of(d) {
        return Err(format!(
            "{queries}: {} floats is not a whole number of {d}-d vectors",
            vectors.len()
        )
        .into());
    }
    let nq = vectors.len() / d;
    // One connection's reference: Faiss searching the same file fully in
    // memory, in turn with the library, on this thread.
    let faiss = if concurrency == 1 && std::path::Path::new(uri).is_file() {
        let (index, uri, vectors) = (index.clone(), uri.clone(), vectors.clone());
        // On a runtime worker, as a server's searches run.
        let run = tokio::spawn(async move {
            side_by_side(&index, &uri, &vectors, d, k, nprobe, seconds / 2.0)
                .await
                .map_err(|e| e.to_string())
        });
        Some(run.await??)
    } else {
        None
    };

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (index, vectors) = (index.clone(), vectors.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut stages = Vec::new();
            let mut q = w % nq;
            while Instant::now() < deadline {
                let t = Instant::now();
                let results = index.search(&vectors[q * d..(q + 1) * d], k, nprobe).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                let s = &results.stats;
                stages.push([s.quantizer_ms, s.fetch_ms, s.scan_ms, s.total_ms]);
                if results.stats.lists_from_memory != results.stats.lists_probed {
                    return Err(ivflake::Error::Internal(
                        "a timed search missed the memory cache".into(),
                    ));
                }
                q = (q + concurrency) % nq;
            }
            Ok::<_, ivflake::Error>((latencies, stages))
        }));
    }
    let (mut latencies, mut stages) = (Vec::new(), Vec::new());
    for w in workers {
        let (l, s) = w.await??;
        latencies.extend(l);
        stages.extend(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Each stage's median, as the library's stats time it.
    let stage_p50 = |i: usize| percentile(&mut stages.iter().map(|s| s[i]).collect::<Vec<_>>(), 0.5);
    println!(
        "{}",
        serde_json::json!({
            "concurrency": concurrency,
            "searches": latencies.len(),
            "seconds": elapsed,
            "qps": latencies.len() as f64 / elapsed,
            "p50_ms": percentile(&mut latencies, 0.5),
            "p99_ms": percentile(&mut latencies, 0.99),
            "mean_ms": latencies.iter().sum::<f64>() / latencies.len() as f64,
            "side_by_side": faiss,
            "residual_table_bytes": index.memory().residual_table_bytes,
            "stages_p50_ms": {
                "quantizer": stage_p50(0),
                "lookup": stage_p50(1),
                "scan": stage_p50(2),
                "total": stage_p50(3),
            },
        })
    );
    Ok(())
}

/// Faiss in memory and the library in alternating half-second blocks (A B
/// A B: per-query alternation would have each evict the other's copy of the
/// lists from the CPU caches) for `seconds`: both p50s and their ratio.
async fn side_by_side(
    index: &IvfIndex,
    path: &str,
    vectors: &[f32],
    d: usize,
    k: usize,
    nprobe: usize,
    seconds: f64,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let faiss = ivflake_faiss::read_index(&std::fs::read(path)?)?;
    let nq = vectors.len() / d;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let blocks = ((seconds / 0.5).round() as usize).max(2);
    for block in 0..blocks {
        let end = Instant::now() + Duration::from_millis(500);
        let mut i = 0;
        while Instant::now() < end {
            let query = &vectors[(i % nq) * d..(i % nq + 1) * d];
            let t = Instant::now();
            if block % 2 == 0 {
                std::hint::black_box(faiss.search(query, k, nprobe)?);
                theirs.push(t.elapsed().as_secs_f64() * 1e3);
            } else {
                std::hint::black_box(index.search(query, k, nprobe).await?);
                ours.push(t.elapsed().as_secs_f64() * 1e3);
            }
            i += 1;
        }
    }
    let searches = ours.len() + theirs.len();
    let (ours, theirs) = (percentile(&mut ours, 0.5), percentile(&mut theirs, 0.5));
    Ok(serde_json::json!({
        "searches": searches,
        "library_p50_ms": ours,
        "faiss_p50_ms": theirs,
        "library_over_faiss": ours / theirs,
    }))
}

fn residual_table(arg: &str) -> Result<ResidualTable, Box<dyn std::error::Error>> {
    Ok(match arg {
        "off" => ResidualTable::Off,
        "on" => ResidualTable::On,
        "auto" => ResidualTable::default(),
        other => return Err(format!("TABLE is off, on or auto, not {other:?}").into()),
    })
}

/// The value at `p` (0 to 1) of `values`, sorted in place.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}
