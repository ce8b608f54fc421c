//! `ivflake bench`: search latency and I/O, measured side by side in one run.
//!
//! Generates clustered vectors, builds an index in memory and puts the file in
//! a store with injected latency (object_store's `ThrottledStore` over
//! `InMemory`, or a real store given by `--uri`). Then, query by query and
//! interleaved so the machine's drift hits every row alike, it times in-memory
//! Faiss on the same file, ivflake warm (lists in the memory cache), ivflake
//! cold (no cache) once per `coalesce_gap` of the sweep, and one bare range
//! GET. It only measures and reports: every search goes through the library.

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
use crate::util::{human_bytes, positive, progress_bar, shell_quote, spinner, write_object, write_stdout};
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
    let mut round_trip_ms = Vec::with_capacity(args.iterations);
    let mut cold_rows: Vec<RowSamples> = variants.iter().map(|_| RowSamples::default()).collect();
    let mut identical = 0;
    let default_index = variants.iter().position(|v| *v == default_variant).unwrap_or(0);
    let mut batch_faiss_ms = Vec::new();
    let mut batch_warm = RowSamples::default();
    let mut batch_cold = RowSamples::default();
    let mut rng = StdRng::seed_from_u64(SEED);
    let rt_len = ROUND_TRIP_BYTES.min(file_len);
    let rt_lo = warm.layout().header_len().min(file_len - rt_len);
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

        let (elapsed, expected) = {
            let (reference, query, k, nprobe) = (reference.clone(), query.clone(), args.k, args.nprobe);
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let found = reference.search(&query, k, nprobe);
                (started.elapsed(), found)
            })
            .await
            .context("the in-memory Faiss task failed")?
        };
        let expected = expected.context("in-memory Faiss search failed")?;
        faiss_ms.push(ms(elapsed));

        let started = Instant::now();
        let found = warm
            .search(&query, args.k, args.nprobe)
            .await
            .with_context(|| format!("warm search {i} failed"))?;
        warm_row.record(started.elapsed(), &found.stats);
        if found.ids == expected.labels && same_bits(&found.distances, &expected.distances) {
            identical += 1;
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
            header_bytes: warm.layout().header_len(),
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

fn check_sizes(args: &BenchArgs) -> Result<()> {
    for (what, count) in [("--n", args.n), ("--queries", args.queries), ("--batch", args.batch)] {
        if count.checked_mul(args.d).is_none_or(|f| f > MAX_FLOATS) {
            bail!(
                "{what} × d = {count} × {} is more than the bench's limit of {MAX_FLOATS} floats",
                args.d
            );
        }
    }
    if args.k > ivflake::MAX_K {
        bail!("-k {} is more than a search allows ({})", args.k, ivflake::MAX_K);
    }
    if args.batch.saturating_mul(args.k) > ivflake::MAX_RESULT_SLOTS {
        bail!(
            "--batch {} × k {} is more than the {} result slots one search allows",
            args.batch,
            args.k,
            ivflake::MAX_RESULT_SLOTS
        );
    }
    if args.k > args.n {
        bail!("-k {} asks for more neighbours than the {} vectors", args.k, args.n);
    }
    if args.factory.is_none() && args.nlist > args.n {
        bail!(
            "--nlist {} needs at least as many vectors to train on; --n is {}",
            args.nlist,
            args.n
        );
    }
    Ok(())
}

/// The store's injected delay per GET.
#[derive(Debug, Clone, Copy)]
struct Delay {
    per_call: Duration,
    per_byte: Duration,
}

impl Delay {
    fn new(latency_ms: f64, throughput_mbps: f64) -> Result<Self> {
        if !(0.0..=MAX_LATENCY_MS).contains(&latency_ms) {
            bail!("--latency-ms must be between 0 and {MAX_LATENCY_MS}, got {latency_ms}");
        }
        if !(0.0..=MAX_THROUGHPUT_MBPS).contains(&throughput_mbps) {
            bail!("--throughput-mbps must be between 0 (unlimited) and {MAX_THROUGHPUT_MBPS}, got {throughput_mbps}");
        }
        let per_byte = if throughput_mbps == 0.0 {
            Duration::ZERO
        } else {
            // Whole nanoseconds: ThrottledStore multiplies a Duration per byte.
            Duration::from_nanos((1e3 / throughput_mbps).round() as u64)
        };
        Ok(Self {
            per_call: Duration::from_secs_f64(latency_ms / 1e3),
            per_byte,
        })
    }

    fn is_zero(&self) -> bool {
        self.per_call.is_zero() && self.per_byte.is_zero()
    }

    fn describe(&self) -> String {
        if self.is_zero() {
            return "no injected delay".into();
        }
        let rate = if self.per_byte.is_zero() {
            "unlimited".to_string()
        } else {
            format!("{:.0} MB/s", 1e3 / self.per_byte.as_nanos() as f64)
        };
        format!(
            "ThrottledStore: {} ms before each GET, then {rate}",
            self.per_call.as_secs_f64() * 1e3
        )
    }
}

struct Built {
    bytes: Bytes,
    /// The same file read back whole by Faiss: the in-memory reference.
    reference: ivflake_faiss::Index,
    trained_on: usize,
}

/// Trains (on the first rows, which the generator already draws in random
/// order) and fills the index, serializes it, and reads the bytes back whole.
fn build(database: &Vectors, factory: &str) -> Result<Built> {
    let mut index = ivflake_faiss::Index::factory(database.d, factory, Metric::L2)
        .with_context(|| format!("Faiss cannot build {factory:?} for d={}", database.d))?;
    let nlist = index.info().nlist;
    if nlist == 0 {
        bail!("{factory:?} is not an IVF index; ivflake serves IVF indexes (e.g. \"IVF1024,Flat\")");
    }
    let mut trained_on = database.n.min(nlist.saturating_mul(TRAIN_PER_LIST));
    ensure!(
        trained_on >= nlist,
        "{factory:?} has {nlist} lists but only {} vectors to train them on; raise --n",
        database.n
    );
    if !index.is_trained() {
        train_showing(
            &mut index,
            factory,
            &database.data[..trained_on * database.d],
            database.d,
        )?;
    } else {
        trained_on = 0;
    }
    add_showing(&mut index, &database.data, database.d)?;
    let bytes = Bytes::from(index.to_bytes().context("serializing the index failed")?);
    drop(index);
    let reference =
        ivflake_faiss::read_index(&bytes).context("cannot load the built index whole as the in-memory reference")?;
    Ok(Built {
        bytes,
        reference,
        trained_on,
    })
}

/// The store the bench searches, with the delay in front of it.
struct Target {
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: String,
    description: String,
}

/// Where the index goes, checked before the expensive build: `--uri` parsed,
/// not a local file when delays are asked for, and not already there.
async fn destination(args: &BenchArgs, delay: &Delay) -> Result<IndexLocation> {
    let Some(uri) = &args.uri else {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        return Ok(IndexLocation::new(store, MEMORY_KEY, format!("memory:///{MEMORY_KEY}")));
    };
    let local = !uri.contains("://") || uri.starts_with("file://");
    if local && !delay.is_zero() {
        bail!(
            "{uri} is a local file, and object_store's ThrottledStore cannot delay local file reads; \
             pass --latency-ms 0 --throughput-mbps 0, or bench an s3:// URI"
        );
    }
    let location = IndexLocation::parse(uri, &FetchConfig::default()).context("invalid --uri")?;
    match location.store.head(&location.path).await {
        Ok(_) if !args.overwrite => {
            bail!("{uri} already exists; pass --overwrite to replace it with the bench's index")
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(location),
        Err(e) => Err(e).with_context(|| format!("cannot check whether {uri} exists")),
    }
}

/// Writes the index to its destination and puts the delay in front of the store.
async fn fill(location: IndexLocation, bytes: &Bytes, delay: &Delay, in_memory: bool) -> Result<Target> {
    if in_memory {
        location
            .store
            .put(&location.path, PutPayload::from(bytes.clone()))
            .await
            .context("cannot put the index in the in-memory store")?;
    } else {
        write_object(&location, bytes).await?;
    }
    let store: Arc<dyn ObjectStore> = if delay.is_zero() {
        location.store
    } else {
        Arc::new(ThrottledStore::new(
            location.store,
            ThrottleConfig {
                wait_get_per_call: delay.per_call,
                wait_get_per_byte: delay.per_byte,
                ..Default::default()
            },
        ))
    };
    let kind = if in_memory {
        "object_store InMemory"
    } else {
        "the store at --uri"
    };
    Ok(Target {
        store,
        path: location.path,
        uri: location.uri,
        description: format!("{kind}; {}", delay.describe()),
    })
}

/// Opens the bench's index with its own scheduler (and so its own cache).
async fn open(target: &Target, config: FetchConfig) -> Result<IvfIndex> {
    let location = IndexLocation::new(target.store.clone(), target.path.clone(), target.uri.clone());
    let options = OpenOptions {
        scheduler: FetchScheduler::new(config),
        ..Default::default()
    };
    IvfIndex::open_at(location, options)
        .await
        .with_context(|| format!("cannot open the index at {}", target.uri))
}

/// One cold configuration: no cache, these scheduler settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ColdVariant {
    coalesce_gap: u64,
    in_flight_per_search: usize,
}

impl std::fmt::Display for ColdVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coalesce_gap {} and max_in_flight_per_search {}",
            self.coalesce_gap, self.in_flight_per_search
        )
    }
}

/// Samples of one row of the table.
#[derive(Debug, Default)]
struct RowSamples {
    latency_ms: Vec<f64>,
    quantizer_ms: Vec<f64>,
    fetch_ms: Vec<f64>,
    scan_ms: Vec<f64>,
    gets: u64,
    bytes_fetched: u64,
    bytes_probed: u64,
    lists_probed: u64,
    lists_from_memory: u64,
}

impl RowSamples {
    fn record(&mut self, elapsed: Duration, stats: &SearchStats) {
        self.latency_ms.push(ms(elapsed));
        self.quantizer_ms.push(stats.quantizer_ms);
        self.fetch_ms.push(stats.fetch_ms);
        self.scan_ms.push(stats.scan_ms);
        self.gets += stats.gets;
        self.bytes_fetched += stats.bytes_fetched;
        self.bytes_probed += stats.bytes_probed;
        self.lists_probed += stats.lists_probed as u64;
        self.lists_from_memory += stats.lists_from_memory as u64;
    }

    fn report(&self) -> Option<RowReport> {
        let latency_ms = Summary::of(&self.latency_ms)?;
        let n = self.latency_ms.len() as f64;
        let p50 = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.p50);
        Some(RowReport {
            latency_ms,
            quantizer_ms_p50: p50(&self.quantizer_ms),
            fetch_ms_p50: p50(&self.fetch_ms),
            scan_ms_p50: p50(&self.scan_ms),
            gets_per_search: self.gets as f64 / n,
            bytes_fetched_per_search: self.bytes_fetched as f64 / n,
            bytes_probed_per_search: self.bytes_probed as f64 / n,
            fetched_over_probed: ratio(self.bytes_fetched as f64, self.bytes_probed as f64),
            lists_probed_per_search: self.lists_probed as f64 / n,
            lists_from_memory_per_search: self.lists_from_memory as f64 / n,
        })
    }
}

/// Distribution of a row's latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Summary {
    count: usize,
    min: f64,
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

impl Summary {
    /// `None` for no samples. NaNs sort last (`total_cmp`) rather than panicking.
    fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            min: *sorted.first()?,
            p50: percentile(&sorted, 0.50)?,
            p99: percentile(&sorted, 0.99)?,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max: *sorted.last()?,
        })
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least a fraction `p` of all samples at or below it. Never interpolates, so
/// p99 of 100 samples is the 99th, of 50 samples the 50th (the max).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    // The epsilon keeps 0.99 × 100 (98.99999…) from rounding up to rank 100.
    let rank = (p * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `"256K"`, `"1M"`, `"64KiB"`, `"4096"` → bytes (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 0, 4096, 64K or 1M"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use K, M or G")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Debug, Clone, Serialize)]
struct RowReport {
    latency_ms: Summary,
    quantizer_ms_p50: f64,
    fetch_ms_p50: f64,
    scan_ms_p50: f64,
    gets_per_search: f64,
    bytes_fetched_per_search: f64,
    bytes_probed_per_search: f64,
    /// Bytes read from the store over bytes of the probed lists (`None` when nothing was fetched).
    fetched_over_probed: Option<f64>,
    lists_probed_per_search: f64,
    lists_from_memory_per_search: f64,
}

#[derive(Debug, Serialize)]
struct SweepRow {
    coalesce_gap: u64,
    max_in_flight_per_search: usize,
    is_default: bool,
    #[serde(flatten)]
    row: RowReport,
    p50_over_round_trip: Option<f64>,
    p99_over_round_trip: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    /// 1-minute load average when the report was made (other work on the box skews tails).
    load_average: Option<f64>,
    os: &'static str,
    arch: &'static str,
}

impl Machine {
    fn here() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
            cpu,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok())),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Debug, Serialize)]
struct Dataset {
    n: usize,
    d: usize,
    clusters: usize,
    seed: u64,
    factory: String,
    index_type: String,
    nlist: usize,
    file_bytes: u64,
    header_bytes: u64,
    trained_on: usize,
    build_seconds: f64,
}

#[derive(Debug, Serialize)]
struct StoreReport {
    uri: String,
    latency_ms: f64,
    throughput_mbps: f64,
    description: String,
}

#[derive(Debug, Serialize)]
struct Ratios {
    warm_over_faiss_p50: Option<f64>,
    warm_over_faiss_p99: Option<f64>,
    cold_over_round_trip_p50: Option<f64>,
    cold_over_round_trip_p99: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    command: String,
    machine: Machine,
    dataset: Dataset,
    store: StoreReport,
    k: usize,
    nprobe: usize,
    queries: usize,
    iterations: usize,
    iterations_run: usize,
    /// Opening the warm index: its header GET(s) and parse.
    open_ms: f64,
    in_memory_faiss: Summary,
    warm: RowReport,
    /// The sweep's row for the library's default `coalesce_gap`.
    cold: RowReport,
    round_trip: Summary,
    round_trip_bytes: u64,
    ratios: Ratios,
    /// Every cold configuration: each --gaps value with each --in-flight-per-search value.
    coalesce_sweep: Vec<SweepRow>,
    /// Warm searches whose ids and distance bits equal in-memory Faiss's.
    warm_identical_to_faiss: usize,
    batch: Option<BatchReport>,
}

/// Rows for batches of queries; `None` without `--batch`.
#[derive(Debug, Serialize)]
struct BatchReport {
    size: usize,
    /// Threads of ivflake's compute pool, which splits a batch's scan; Faiss runs on one.
    compute_threads: usize,
    faiss: Summary,
    warm: RowReport,
    cold: RowReport,
    warm_over_faiss_p50: Option<f64>,
}

impl Report {
    fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let ds = &self.dataset;
        let x = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}×"));
        let _ = writeln!(out, "$ {}", self.command);
        let load = self
            .machine
            .load_average
            .map_or(String::new(), |l| format!(", load average {l:.2}"));
        let _ = writeln!(
            out,
            "machine: {} cores, {}, {} {}{load}",
            self.machine.cores, self.machine.cpu, self.machine.os, self.machine.arch
        );
        let _ = writeln!(
            out,
            "data:    {} vectors, d={}, {} clusters (seed {}); {:?} = {} with {} lists, \
             trained on {}, built in {:.1} s",
            ds.n, ds.d, ds.clusters, ds.seed, ds.factory, ds.index_type, ds.nlist, ds.trained_on, ds.build_seconds
        );
        let _ = writeln!(
            out,
            "file:    {} ({} header); opened in {:.1} ms",
            human_bytes(ds.file_bytes),
            human_bytes(ds.header_bytes),
            self.open_ms
        );
        let _ = writeln!(out, "store:   {}, {}", self.store.uri, self.store.description);
        let stopped = if self.iterations_run < self.iterations {
            format!(
                " (time budget: stopped after {} of {})",
                self.iterations_run, self.iterations
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "search:  one query per search, k={}, nprobe={}; {} iterations over {} queries, rows interleaved{stopped}",
            self.k, self.nprobe, self.iterations_run, self.queries
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11} {:>8}",
            "", "p50 ms", "p99 ms", "mean ms", "GETs", "fetched", "probed", "f/p"
        );
        let plain = |out: &mut String, name: &str, s: &Summary| {
            let _ = writeln!(out, "{name:<36} {:>8.3} {:>8.3} {:>8.3}", s.p50, s.p99, s.mean);
        };
        let row = |out: &mut String, name: &str, r: &RowReport| {
            let _ = writeln!(
                out,
                "{name:<36} {:>8.3} {:>8.3} {:>8.3} {:>7.1} {:>11} {:>11} {:>8}",
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.mean,
                r.gets_per_search,
                human_bytes(r.bytes_fetched_per_search.round() as u64),
                human_bytes(r.bytes_probed_per_search.round() as u64),
                r.fetched_over_probed.map_or("-".into(), |v| format!("{v:.3}")),
            );
        };
        plain(&mut out, "in-memory Faiss, 1 thread", &self.in_memory_faiss);
        row(&mut out, "ivflake warm (memory cache)", &self.warm);
        let default_gap = self
            .coalesce_sweep
            .iter()
            .find(|s| s.is_default)
            .map_or(0, |s| s.coalesce_gap);
        row(
            &mut out,
            &format!("ivflake cold (gap {})", human_bytes(default_gap)),
            &self.cold,
        );
        plain(
            &mut out,
            &format!("one store round trip ({} GET)", human_bytes(self.round_trip_bytes)),
            &self.round_trip,
        );
        let _ = writeln!(out);
        let r = &self.ratios;
        let _ = writeln!(
            out,
            "warm / in-memory Faiss:  p50 {}  p99 {}",
            x(r.warm_over_faiss_p50),
            x(r.warm_over_faiss_p99)
        );
        let _ = writeln!(
            out,
            "cold / one round trip:   p50 {}  p99 {}",
            x(r.cold_over_round_trip_p50),
            x(r.cold_over_round_trip_p99)
        );
        let _ = writeln!(
            out,
            "stages, p50 ms:          warm quantizer {:.3} fetch {:.3} scan {:.3}; cold quantizer {:.3} fetch {:.3} scan {:.3}",
            self.warm.quantizer_ms_p50,
            self.warm.fetch_ms_p50,
            self.warm.scan_ms_p50,
            self.cold.quantizer_ms_p50,
            self.cold.fetch_ms_p50,
            self.cold.scan_ms_p50
        );
        let _ = writeln!(
            out,
            "lists per search:        {:.1} probed; warm {:.1} from memory, cold {:.1} from memory",
            self.warm.lists_probed_per_search,
            self.warm.lists_from_memory_per_search,
            self.cold.lists_from_memory_per_search
        );
        let _ = writeln!(
            out,
            "warm results identical to in-memory Faiss (ids and distance bits): {}/{}",
            self.warm_identical_to_faiss, self.iterations_run
        );
        if let Some(b) = &self.batch {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "batches of {} queries (ivflake's compute pool has {} threads; Faiss runs on 1):",
                b.size, b.compute_threads
            );
            plain(&mut out, "in-memory Faiss, 1 thread", &b.faiss);
            row(&mut out, "ivflake warm (memory cache)", &b.warm);
            row(
                &mut out,
                &format!("ivflake cold (gap {})", human_bytes(default_gap)),
                &b.cold,
            );
            let _ = writeln!(out, "warm / in-memory Faiss:  p50 {}", x(b.warm_over_faiss_p50));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "coalesce_gap sweep (cold, no cache):");
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>7} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "gap", "in flight", "GETs", "fetched", "f/p", "p50 ms", "p99 ms", "p50/RT", "p99/RT"
        );
        for s in &self.coalesce_sweep {
            let mark = if s.is_default { " *" } else { "" };
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>7.1} {:>11} {:>8} {:>8.3} {:>8.3} {:>9} {:>9}",
                format!("{}{mark}", human_bytes(s.coalesce_gap)),
                s.max_in_flight_per_search,
                s.row.gets_per_search,
                human_bytes(s.row.bytes_fetched_per_search.round() as u64),
                s.row.fetched_over_probed.map_or("-".into(), |v| format!("{v:.3}")),
                s.row.latency_ms.p50,
                s.row.latency_ms.p99,
                x(s.p50_over_round_trip),
                x(s.p99_over_round_trip),
            );
        }
        let _ = writeln!(
            out,
            "* the library's defaults; in flight = max_in_flight_per_search; \
             f/p = bytes fetched / bytes of the probed lists; RT = one round trip"
        );
        out
    }
}

/// The command as typed, program name shortened to `ivflake`.
fn command_line() -> String {
    let mut parts = vec!["ivflake".to_string()];
    parts.extend(std::env::args().skip(1).map(|a| shell_quote(&a)));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(50.0));
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&two_hundred, 0.99), Some(198.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.5), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&hundred, 1.5), None);
        assert_eq!(percentile(&hundred, f64::NAN), None);
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.count, s.min, s.p50, s.p99, s.max), (4, 1.0, 2.0, 4.0, 4.0));
        assert_eq!(s.mean, 2.5);
        assert_eq!(Summary::of(&[]), None);
        // A NaN sorts last instead of panicking.
        let s = Summary::of(&[f64::NAN, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.p50), (1.0, 2.0));
    }

    #[test]
    fn row_averages_and_ratio() {
        let mut row = RowSamples::default();
        let stats = |gets, fetched, probed| SearchStats {
            gets,
            bytes_fetched: fetched,
            bytes_probed: probed,
            lists_probed: 4,
            ..Default::default()
        };
        row.record(Duration::from_millis(10), &stats(2, 300, 200));
        row.record(Duration::from_millis(30), &stats(4, 500, 400));
        let r = row.report().unwrap();
        assert_eq!(r.gets_per_search, 3.0);
        assert_eq!(r.bytes_fetched_per_search, 400.0);
        assert_eq!(r.fetched_over_probed, Some(800.0 / 600.0));
        assert_eq!(r.lists_probed_per_search, 4.0);
        assert_eq!(r.latency_ms.p50, 10.0);
        assert_eq!(r.latency_ms.p99, 30.0);
        assert!(RowSamples::default().report().is_none());
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16K"), Ok(16 << 10));
        assert_eq!(parse_size(" 64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("18446744073709551615G").is_err());
    }

    #[test]
    fn delay_bounds() {
        let d = Delay::new(20.0, 100.0).unwrap();
        assert_eq!(d.per_call, Duration::from_millis(20));
        assert_eq!(d.per_byte, Duration::from_nanos(10));
        assert!(Delay::new(0.0, 0.0).unwrap().is_zero());
        assert!(Delay::new(-1.0, 0.0).is_err());
        assert!(Delay::new(f64::NAN, 0.0).is_err());
        assert!(Delay::new(5.0, 1e6).is_err());
    }
}
