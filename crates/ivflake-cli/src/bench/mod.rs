//! `ivflake bench`: search latency and I/O, measured side by side in one run.
//!
//! Generates clustered vectors, builds an index in memory and puts the file in
//! a store with injected latency (object_store's `ThrottledStore` over
//! `InMemory`, or a real store given by `--uri`). Then, query by query and
//! interleaved so the machine's drift hits every row alike, it times in-memory
//! Faiss on the same file, ivflake warm (lists in the memory cache), ivflake
//! cold (no cache) once per `coalesce_gap` of the sweep, and one bare range
//! GET. It only measures and reports: every search goes through the library.

mod report;
mod setup;

use report::*;
use setup::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, Metric, OpenOptions, SearchStats};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::build::{add_showing, train_showing};
use crate::demo::{generate, BLOBS, SEED};
use crate::util::{human_bytes, parse_size, positive, progress_bar, shell_quote, spinner, write_object, write_stdout};
use crate::vectors::Vectors;

/// Size of the bare round-trip GET: one page, so it costs the request, not the transfer.
const ROUND_TRIP_BYTES: u64 = 4096;
/// Training vectors per list. Faiss warns below 39; more only slows k-means,
/// which dominates the bench's setup on a small machine.
const TRAIN_PER_LIST: usize = 64;
/// Most floats the bench generates for either the database or the queries (1 GiB):
/// the vectors, the built index, its bytes and the reference copy all sit in memory.
const MAX_FLOATS: usize = 1 << 28;
/// Key of the index in the default in-memory store.
const MEMORY_KEY: &str = "bench/index.faiss";
/// Injected latency above this (10 s) is a typo, not a store.
const MAX_LATENCY_MS: f64 = 10_000.0;
/// The preloaded index's cache: four times the file (at least the default),
/// so the default preload share of a quarter holds every list.
fn warm_config_bytes(file_len: u64) -> u64 {
    FetchConfig::default()
        .memory_cache_bytes
        .max(file_len.saturating_mul(4))
}
/// Above this the per-byte delay rounds to 0 ns, which is "unlimited" (0) anyway.
const MAX_THROUGHPUT_MBPS: f64 = 1000.0;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Database vectors to generate.
    #[arg(long, default_value_t = 200_000, value_parser = positive)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub d: usize,
    /// Inverted lists: the index is IVF<nlist>,<codec>.
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    pub nlist: usize,
    /// What each list stores: Flat, SQ8, PQ16np, ... (`np` skips polysemous training).
    #[arg(long, default_value = "Flat")]
    pub codec: String,
    /// A whole Faiss factory string instead of IVF<nlist>,<codec>, e.g. "OPQ16,IVF1024,PQ16np".
    #[arg(long, conflicts_with_all = ["nlist", "codec"])]
    pub factory: Option<String>,
    /// Lists probed per query.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub nprobe: usize,
    /// Neighbours per query.
    #[arg(short = 'k', default_value_t = 10, value_parser = positive)]
    pub k: usize,
    /// Distinct query vectors; iterations cycle through them.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub queries: usize,
    /// Searches measured per row: each iteration runs one of every row.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub iterations: usize,
    /// Latency injected before every GET, in milliseconds (0: none).
    #[arg(long, default_value_t = 20.0)]
    pub latency_ms: f64,
    /// Transfer rate of each GET after its latency, in MB/s (0: unlimited). One S3
    /// connection gives roughly 50-100 MB/s.
    #[arg(long, default_value_t = 100.0)]
    pub throughput_mbps: f64,
    /// coalesce_gap values of the cold sweep, comma-separated; K and M mean KiB and MiB.
    /// The library's default is always added.
    #[arg(long, value_delimiter = ',', default_value = "0,16K,64K,256K,1M", value_parser = parse_size)]
    pub gaps: Vec<u64>,
    /// max_in_flight_per_search values for the cold rows, comma-separated: every gap is
    /// run with each (GETs beyond the limit wait for a second wave). The library's default is always added.
    #[arg(long, value_delimiter = ',', value_parser = positive)]
    pub in_flight_per_search: Vec<usize>,
    /// Upload the index here and bench this store instead of an in-memory one:
    /// s3://bucket/key, gs://…, az://…, or a path (local files take no injected delay).
    #[arg(long)]
    pub uri: Option<String>,
    /// Replace an existing object at --uri.
    #[arg(long, requires = "uri")]
    pub overwrite: bool,
    /// Stop measuring after this many seconds, whatever --iterations says.
    #[arg(long, default_value_t = 600, value_parser = positive)]
    pub max_seconds: usize,
    /// Also time batches of this many queries per iteration: in-memory Faiss,
    /// warm, and cold at the default coalesce_gap (0: no batch rows).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let delay = Delay::new(args.latency_ms, args.throughput_mbps)?;
    check_sizes(&args)?;
    let factory = args
        .factory
        .clone()
        .unwrap_or_else(|| format!("IVF{},{}", args.nlist, args.codec));
    let defaults = FetchConfig::default();
    let (default_gap, default_in_flight) = (defaults.coalesce_gap, defaults.max_in_flight_per_search);
    let mut in_flight = args.in_flight_per_search.clone();
    in_flight.push(default_in_flight);
    let mut variants: Vec<ColdVariant> = args
        .gaps
        .iter()
        .chain([&default_gap])
        .flat_map(|&coalesce_gap| {
            in_flight.iter().map(move |&in_flight_per_search| ColdVariant {
                coalesce_gap,
                in_flight_per_search,
            })
        })
        .collect();
    variants.sort_unstable();
    variants.dedup();
    let default_variant = ColdVariant {
        coalesce_gap: default_gap,
        in_flight_per_search: default_in_flight,
    };

    let destination = destination(&args, &delay).await?;

    // 1. Data and the index, built in memory.
    let (n, d, nq) = (args.n, args.d, args.queries);
    let spinner = spinner(format!("generating {n} + {nq} vectors of d={d}"));
    let (database, queries) = tokio::task::spawn_blocking(move || generate(n, nq, d))
        .await
        .context("the data-generating task failed")?;
    spinner.finish_and_clear();
    let build_started = Instant::now();
    let built = {
        let factory = factory.clone();
        tokio::task::spawn_blocking(move || build(&database, &factory))
            .await
            .context("the index-building task failed")??
    };
    let build_secs = build_started.elapsed().as_secs_f64();
    let queries = Arc::new(queries);

    // 2. The store, and the indexes opened from it.
    let target = fill(destination, &built.bytes, &delay, args.uri.is_none()).await?;
    let file_len = built.bytes.len() as u64;
    let open_started = Instant::now();
    let warm_config = FetchConfig::default();
    // Twice the file, so the cache never has to choose what to admit: warm means every list resident.
    let warm_cache = warm_config.memory_cache_bytes.max(file_len.saturating_mul(2));
    let warm = open(
        &target,
        FetchConfig {
            memory_cache_bytes: warm_cache,
            ..warm_config
        },
    )
    .await?;
    let open_ms = ms(open_started.elapsed());
    let info = warm.info().clone();
    ensure!(
        args.nprobe <= info.nlist,
        "--nprobe {} is more than the index's {} lists",
        args.nprobe,
        info.nlist
    );
    let mut cold = Vec::with_capacity(variants.len());
    for v in &variants {
        let config = FetchConfig {
            coalesce_gap: v.coalesce_gap,
            max_in_flight_per_search: v.in_flight_per_search,
            memory_cache_bytes: 0,
            ..Default::default()
        };
        cold.push(open(&target, config).await?);
    }

    // An index preloaded in the background after open, its cache four times
    // the file so the default share (a quarter) takes every list: its
    // queries are novel to it, never searched before.
    let preload_started = Instant::now();
    let preloaded = open_with(
        &target,
        FetchConfig {
            memory_cache_bytes: warm_config_bytes(file_len),
            ..FetchConfig::default()
        },
        ivflake::Preload::auto(),
    )
    .await?;
    let preload_status = preloaded.preloaded().await;
    let preload_ms = ms(preload_started.elapsed());
    ensure!(
        preload_status.state == ivflake::PreloadState::Done,
        "the preload did not run: {preload_status:?}"
    );

    // 3. Fill the warm cache with every list the queries probe.
    let bar = progress_bar(queries.n as u64, "warming the cache", "queries");
    for q in 0..queries.n {
        warm.search(queries.row(q), args.k, args.nprobe)
            .await
            .with_context(|| format!("warm-up search of query {q} failed"))?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    // 4. Measure, every row once per iteration.
    let reference = Arc::new(built.reference);
    let mut faiss_ms = Vec::with_capacity(args.iterations);
    let mut warm_row = RowSamples::default();
    let mut preloaded_row = RowSamples::default();
    let mut round_trip_ms = Vec::with_capacity(args.iterations);
    let mut cold_rows: Vec<RowSamples> = variants.iter().map(|_| RowSamples::default()).collect();
    let mut identical = 0;
    let default_index = variants.iter().position(|v| *v == default_variant).unwrap_or(0);
    let mut batch_faiss_ms = Vec::new();
    let mut batch_warm = RowSamples::default();
    let mut batch_cold = RowSamples::default();
    let mut rng = StdRng::seed_from_u64(SEED);
    let rt_len = ROUND_TRIP_BYTES.min(file_len);
    let rt_lo = warm.list_ranges().header_len().min(file_len - rt_len);
    let rt_hi = file_len - rt_len;
    let budget = Duration::from_secs(args.max_seconds as u64);
    let measure_started = Instant::now();
    let bar = progress_bar(args.iterations as u64, "measuring", "iterations");
    let mut iterations_run = 0;
    for i in 0..args.iterations {
        if measure_started.elapsed() > budget {
            break;
        }
        let query: Vec<f32> = queries.row(i % queries.n).to_vec();

        // The in-memory rows in a rotating order: whichever runs first after
        // the I/O rows finds the CPU's caches colder, by about 10% here.
        let mut expected = None;
        let mut found_warm = None;
        for j in 0..3 {
            match (i + j) % 3 {
                0 => {
                    let (reference, query, k, nprobe) = (reference.clone(), query.clone(), args.k, args.nprobe);
                    let (elapsed, found) = tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        let found = reference.search(&query, k, nprobe);
                        (started.elapsed(), found)
                    })
                    .await
                    .context("the in-memory Faiss task failed")?;
                    expected = Some(found.context("in-memory Faiss search failed")?);
                    faiss_ms.push(ms(elapsed));
                }
                1 => {
                    let started = Instant::now();
                    let found = warm
                        .search(&query, args.k, args.nprobe)
                        .await
                        .with_context(|| format!("warm search {i} failed"))?;
                    warm_row.record(started.elapsed(), &found.stats);
                    found_warm = Some(found);
                }
                _ => {
                    // Novel to this index while i < --queries: each query once.
                    let started = Instant::now();
                    let found = preloaded
                        .search(&query, args.k, args.nprobe)
                        .await
                        .with_context(|| format!("search {i} after the preload failed"))?;
                    preloaded_row.record(started.elapsed(), &found.stats);
                }
            }
        }
        if let (Some(expected), Some(found)) = (expected, found_warm) {
            if found.ids == expected.labels && same_bits(&found.distances, &expected.distances) {
                identical += 1;
            }
        }

        let offset = if rt_hi > rt_lo {
            rng.gen_range(rt_lo..=rt_hi)
        } else {
            rt_lo
        };
        let started = Instant::now();
        target
            .store
            .get_opts(
                &target.path,
                GetOptions::new().with_range(Some(offset..offset + rt_len)),
            )
            .await
            .with_context(|| format!("round-trip GET of {} failed", target.uri))?
            .bytes()
            .await
            .with_context(|| format!("round-trip GET of {} failed", target.uri))?;
        round_trip_ms.push(ms(started.elapsed()));

        // Rotate the order of the cold rows so none always runs first.
        for j in 0..cold.len() {
            let g = (i + j) % cold.len();
            let started = Instant::now();
            let found = cold[g]
                .search(&query, args.k, args.nprobe)
                .await
                .with_context(|| format!("cold search {i} with {} failed", variants[g]))?;
            cold_rows[g].record(started.elapsed(), &found.stats);
        }
        if args.batch > 0 {
            let first = (i * args.batch) % queries.n;
            let batch: Vec<f32> = (first..first + args.batch)
                .flat_map(|q| queries.row(q % queries.n).iter().copied())
                .collect();
            let elapsed = {
                let (reference, batch, k, nprobe) = (reference.clone(), batch.clone(), args.k, args.nprobe);
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    reference.search(&batch, k, nprobe).map(|_| started.elapsed())
                })
                .await
                .context("the in-memory Faiss task failed")?
                .context("in-memory Faiss batch search failed")?
            };
            batch_faiss_ms.push(ms(elapsed));
            for (index, row) in [(&warm, &mut batch_warm), (&cold[default_index], &mut batch_cold)] {
                let started = Instant::now();
                let found = index
                    .search(&batch, args.k, args.nprobe)
                    .await
                    .with_context(|| format!("batch search {i} failed"))?;
                row.record(started.elapsed(), &found.stats);
            }
        }
        iterations_run += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();

    // 5. Report.
    let round_trip = Summary::of(&round_trip_ms).ok_or_else(|| anyhow!("no iteration finished"))?;
    let faiss = Summary::of(&faiss_ms).ok_or_else(|| anyhow!("no iteration finished"))?;
    let warm_report = warm_row.report().ok_or_else(|| anyhow!("no iteration finished"))?;
    let preloaded_report = preloaded_row.report().ok_or_else(|| anyhow!("no iteration finished"))?;
    let mut sweep = Vec::with_capacity(variants.len());
    for (v, row) in variants.iter().zip(&cold_rows) {
        let row = row.report().ok_or_else(|| anyhow!("no iteration finished"))?;
        sweep.push(SweepRow {
            coalesce_gap: v.coalesce_gap,
            max_in_flight_per_search: v.in_flight_per_search,
            is_default: *v == default_variant,
            p50_over_round_trip: ratio(row.latency_ms.p50, round_trip.p50),
            p99_over_round_trip: ratio(row.latency_ms.p99, round_trip.p99),
            row,
        });
    }
    let cold_default = sweep
        .iter()
        .find(|s| s.is_default)
        .map(|s| s.row.clone())
        .ok_or_else(|| anyhow!("the default coalesce_gap row is missing"))?;
    let report = Report {
        command: command_line(),
        machine: Machine::here(),
        dataset: Dataset {
            n: args.n,
            d: args.d,
            clusters: BLOBS.min(args.n),
            seed: SEED,
            factory,
            index_type: info.type_name.clone(),
            nlist: info.nlist,
            file_bytes: file_len,
            header_bytes: warm.list_ranges().header_len(),
            trained_on: built.trained_on,
            build_seconds: build_secs,
        },
        store: StoreReport {
            uri: target.uri.clone(),
            latency_ms: args.latency_ms,
            throughput_mbps: args.throughput_mbps,
            description: target.description.clone(),
        },
        k: args.k,
        nprobe: args.nprobe,
        queries: args.queries,
        iterations: args.iterations,
        iterations_run,
        open_ms,
        ratios: Ratios {
            warm_over_faiss_p50: ratio(warm_report.latency_ms.p50, faiss.p50),
            warm_over_faiss_p99: ratio(warm_report.latency_ms.p99, faiss.p99),
            cold_over_round_trip_p50: ratio(cold_default.latency_ms.p50, round_trip.p50),
            cold_over_round_trip_p99: ratio(cold_default.latency_ms.p99, round_trip.p99),
        },
        preload: PreloadReport {
            ms: preload_ms,
            gets: preload_status.load.gets,
            bytes: preload_status.load.bytes_fetched,
            lists: preload_status.load.lists_loaded,
            novel_over_warm_p50: ratio(preloaded_report.latency_ms.p50, warm_report.latency_ms.p50),
            novel: preloaded_report,
        },
        in_memory_faiss: faiss,
        warm: warm_report,
        cold: cold_default,
        round_trip,
        round_trip_bytes: rt_len,
        coalesce_sweep: sweep,
        warm_identical_to_faiss: identical,
        batch: match (Summary::of(&batch_faiss_ms), batch_warm.report(), batch_cold.report()) {
            (Some(faiss), Some(warm), Some(cold)) => Some(BatchReport {
                size: args.batch,
                compute_threads: ivflake::ComputePool::global().threads(),
                warm_over_faiss_p50: ratio(warm.latency_ms.p50, faiss.p50),
                faiss,
                warm,
                cold,
            }),
            _ => None,
        },
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("cannot encode the report")? + "\n"
    } else {
        report.table()
    };
    write_stdout(text.as_bytes())?;
    Ok(())
}
