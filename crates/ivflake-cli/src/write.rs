//! The commands of a mutable index: `create` (empty, or from a Faiss file
//! in place), `upsert` (from .npy, .fvecs or Parquet with attribute
//! columns, in batches, with a progress bar), `delete`, `get`, `compact`
//! and `gc`. Each prints one JSON object on stdout saying what it did.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use ivflake::{BuildInput, CompactOptions, Metric, MutableIndex, MutableOptions};
use serde_json::json;

use crate::attributes::read_table;
use crate::util::{load_vectors, parse_metric, positive, progress_bar};

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Where the index lives: a prefix (s3://bucket/products/) or a local directory.
    pub uri: String,
    /// Make this Faiss IVF file the first base, in place (nothing is copied).
    #[arg(long, conflicts_with_all = ["d", "factory"])]
    pub from: Option<String>,
    /// Dimension of an empty index.
    #[arg(long, value_parser = positive, required_unless_present = "from")]
    pub d: Option<usize>,
    /// Faiss factory string the first compaction with enough vectors trains, e.g. "IVF1024,PQ32".
    #[arg(long, required_unless_present = "from")]
    pub factory: Option<String>,
    /// `l2` or `inner_product`.
    #[arg(long, value_parser = parse_metric, default_value_t = Metric::L2)]
    pub metric: Metric,
    /// Keep no raw vectors of writes (`get` returns ids' attributes only,
    /// and the index cannot be retrained).
    #[arg(long)]
    pub no_keep_vectors: bool,
    /// A string attribute made full-text searchable, `COLUMN` or
    /// `COLUMN:LANGUAGE` (standard, en, fr, es, pt, it, de, nl, zh, ja, ko;
    /// standard when left out). Repeat for more.
    #[arg(long = "text-field", value_parser = parse_text_field)]
    pub text_fields: Vec<ivflake::text::TextField>,
}

fn parse_text_field(spec: &str) -> Result<ivflake::text::TextField, String> {
    let (column, language) = spec.split_once(':').unwrap_or((spec, "standard"));
    let language = ivflake::text::Language::from_code(language).map_err(|e| e.to_string())?;
    if column.is_empty() {
        return Err("a text field names its column".into());
    }
    Ok(ivflake::text::TextField::column(column, language))
}

#[derive(Debug, clap::Args)]
pub struct UpsertArgs {
    pub uri: String,
    /// Vectors: float32 .npy of shape (n, d) or .fvecs; or .parquet with a
    /// vector column, an id column and attribute columns (string, int64,
    /// float64, bool).
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Ids of .npy/.fvecs input count up from this (Parquet input names its own).
    #[arg(long, default_value_t = 0)]
    pub first_id: i64,
    #[arg(long, default_value = "vector")]
    pub vector_column: String,
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Vectors per write (each one log record, acknowledged when durable).
    #[arg(long, value_parser = positive, default_value_t = 10_000)]
    pub batch: usize,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    pub uri: String,
    /// Ids to delete.
    #[arg(required = true, num_args = 1..)]
    pub ids: Vec<i64>,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    pub uri: String,
    /// Ids to read.
    #[arg(required = true, num_args = 1..)]
    pub ids: Vec<i64>,
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The index to compact once (not with --watch).
    #[arg(required_unless_present = "watch", conflicts_with = "watch")]
    pub uri: Option<String>,
    /// Run as the compaction worker: every `[compaction] interval_ms`,
    /// compact each writable index and S3 Vectors index of --config whose
    /// log passed its threshold, and gc them every `gc_interval_secs`,
    /// until Ctrl-C or SIGTERM. Pair with `[compaction] mode = "worker"`
    /// in the replicas' config so they never compact themselves.
    #[arg(long, requires = "config")]
    pub watch: bool,
    /// The server config the worker shares with the replicas (--watch).
    #[arg(long, short = 'c', env = "IVFLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Stop after this many rounds (--watch); 0 runs until stopped.
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// An untrained index trains once it holds this many vectors per list.
    #[arg(long, default_value_t = 39, conflicts_with = "watch")]
    pub min_train_per_list: usize,
    /// Train a fresh quantizer and codec with the index's factory on every
    /// kept raw vector, in memory (the index must keep vectors).
    #[arg(long, conflicts_with = "watch")]
    pub retrain: bool,
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    pub uri: String,
    /// Keep what versions younger than this name, in seconds. It must
    /// exceed the longest compaction and the longest a reader keeps an old version.
    #[arg(long, default_value_t = 3600)]
    pub retention_secs: u64,
}

pub async fn create(args: CreateArgs) -> Result<()> {
    let options = MutableOptions {
        keep_vectors: !args.no_keep_vectors,
        text_fields: args.text_fields.clone(),
        ..MutableOptions::default()
    };
    let index = match (&args.from, args.d, &args.factory) {
        (Some(from), _, _) => MutableIndex::create_from(&args.uri, from, options).await?,
        (None, Some(d), Some(factory)) => MutableIndex::create(&args.uri, d, args.metric, factory, options).await?,
        _ => bail!("give --from, or --d and --factory"),
    };
    print(json!({"created": index.uri(), "base": index.base_uri(), "version": index.version()}))
}

pub async fn upsert(args: UpsertArgs) -> Result<()> {
    let input = read_input(&args).await?;
    let (d, n) = (input.d, input.ids.len());
    let index = MutableIndex::open(&args.uri, MutableOptions::default()).await?;
    let bar = progress_bar(n as u64, "upserting", "vectors");
    let started = Instant::now();
    let mut last = None;
    for start in (0..n).step_by(args.batch) {
        let end = (start + args.batch).min(n);
        let attributes = input.attributes.as_ref().map(|a| a.slice(start, end - start));
        let vectors = &input.vectors[start * d..end * d];
        last = Some(
            index
                .upsert_with(vectors, &input.ids[start..end], attributes.as_ref())
                .await?,
        );
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    print(json!({
        "upserted": n,
        "log_position": last,
        "seconds": secs,
        "vectors_per_second": n as f64 / secs.max(1e-9),
    }))
}

/// What one `upsert` writes: vectors, ids and, from Parquet, every other
/// column as attributes.
struct UpsertInput {
    d: usize,
    vectors: Vec<f32>,
    ids: Vec<i64>,
    attributes: Option<RecordBatch>,
}

async fn read_input(args: &UpsertArgs) -> Result<UpsertInput> {
    let parquet = args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if parquet {
        let table = read_table(&args.input).await?;
        let input = BuildInput::from_table(table, &args.vector_column, &args.id_column)
            .with_context(|| format!("reading {}", args.input.display()))?;
        let batch = input.attributes.batch;
        return Ok(UpsertInput {
            d: input.d,
            vectors: input.vectors,
            ids: input.ids,
            attributes: (batch.num_columns() > 0).then_some(batch),
        });
    }
    let vectors = load_vectors(&args.input).await?;
    let ids = (0..vectors.n as i64).map(|i| args.first_id + i).collect();
    Ok(UpsertInput {
        d: vectors.d,
        vectors: vectors.data.clone(),
        ids,
        attributes: None,
    })
}

pub async fn delete(args: DeleteArgs) -> Result<()> {
    let index = MutableIndex::open(&args.uri, MutableOptions::default()).await?;
    let position = index.delete(&args.ids).await?;
    print(json!({"deleted": args.ids.len(), "log_position": position}))
}

pub async fn get(args: GetArgs) -> Result<()> {
    let index = MutableIndex::open(&args.uri, MutableOptions::default()).await?;
    let rows = index.get(&args.ids).await?;
    let rows: Vec<serde_json::Value> = args
        .ids
        .iter()
        .zip(rows)
        .map(|(id, row)| match row {
            Some(r) => json!({"id": id, "vector": r.vector, "attributes": r.attributes}),
            None => serde_json::Value::Null,
        })
        .collect();
    print(json!({ "rows": rows }))
}

pub async fn compact(args: CompactArgs) -> Result<()> {
    if args.watch {
        return watch(&args).await;
    }
    let uri = args.uri.as_deref().context("give the index's URI, or --watch")?;
    let index = MutableIndex::open(uri, MutableOptions::default()).await?;
    let options = CompactOptions {
        min_train_per_list: args.min_train_per_list,
        retrain: args.retrain,
        ..CompactOptions::default()
    };
    match index.compact(&options).await? {
        Some(report) => print(json!({"compacted": report})),
        None => print(json!({"compacted": null, "reason": "nothing to fold"})),
    }
}

/// The compaction worker: one JSON line per round that did something.
async fn watch(args: &CompactArgs) -> Result<()> {
    let path = args.config.as_ref().context("--watch needs --config")?;
    let mut config = ivflake_server::ServerConfig::load(path)?;
    config.resolve_env();
    let worker = ivflake_server::CompactionWorker::open(config).await?;
    eprintln!("ivflake compaction worker on {} (Ctrl-C stops)", path.display());
    worker
        .run(args.rounds, crate::serve::shutdown_signal(), |round| {
            if !round.is_empty() {
                println!("{}", json!({ "round": round }));
            }
        })
        .await;
    Ok(())
}

pub async fn gc(args: GcArgs) -> Result<()> {
    let index = MutableIndex::open(&args.uri, MutableOptions::default()).await?;
    let report = index.gc(Duration::from_secs(args.retention_secs)).await?;
    print(json!({"deleted": report}))
}

fn print(value: serde_json::Value) -> Result<()> {
    println!("{value}");
    Ok(())
}
