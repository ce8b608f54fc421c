//! `ivflake build`: train and fill a Faiss index, write it to any URI.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ivflake::{BuildInput, FetchConfig, IndexInfo, IndexLocation, IvfIndex, IvfKind, Metric, OpenOptions};
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use url::Url;

use crate::attributes::{attach, read_table};
use crate::open::open_index;
use crate::util::{human_bytes, load_vectors, parse_metric, positive, progress_bar, spinner, write_object};
use crate::vectors::Vectors;

/// Vectors handed to Faiss's `add` per call (one progress-bar step).
const ADD_BATCH: usize = 10_000;
/// Seed of the training sample, so builds are reproducible.
const SAMPLE_SEED: u64 = 42;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Vectors to index: float32 .npy of shape (n, d), or .fvecs (ids are row
    /// numbers); or .parquet with a vector column, an id column and attributes.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Parquet input: the fixed-size list of float32 holding the vectors.
    #[arg(long, default_value = "vector")]
    pub vector_column: String,
    /// Parquet input: the int64 ids (Faiss's `add_with_ids`); every other
    /// column becomes an attribute, written beside the index.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Faiss index factory string, e.g. "IVF1024,PQ32" or "OPQ16,IVF256,PQ16".
    #[arg(long)]
    pub factory: String,
    /// `l2` or `inner_product`.
    #[arg(long, value_parser = parse_metric, default_value_t = Metric::L2)]
    pub metric: Metric,
    /// Where to write the index: s3://…, gs://…, az://…, file:///… or a local path.
    #[arg(long, short = 'o')]
    pub output: String,
    /// Train on a random sample of at most this many vectors [default: all].
    #[arg(long, value_parser = positive)]
    pub train_size: Option<usize>,
    /// Replace an index already at the output (and delete its checksum
    /// sidecar, which would no longer describe it). Without it, an existing
    /// output is refused before anything is built.
    #[arg(long)]
    pub overwrite: bool,
}

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    pub factory: &'a str,
    pub metric: Metric,
    pub train_size: Option<usize>,
    pub output: &'a str,
    /// The vectors' ids (`add_with_ids`); row numbers when `None`.
    pub ids: Option<Arc<Vec<i64>>>,
    /// Replace what is at `output`; refuse it otherwise.
    pub overwrite: bool,
}

#[derive(Debug)]
pub struct BuildReport {
    pub uri: String,
    pub factory: String,
    pub info: IndexInfo,
    pub file_bytes: u64,
    pub header_bytes: u64,
    /// Vectors the index was trained on (0 when it needed no training).
    pub trained_on: usize,
    pub train_time: Duration,
    pub add_time: Duration,
    pub write_time: Duration,
}

impl BuildReport {
    pub fn summary(&self) -> String {
        let i = &self.info;
        let trained = if self.trained_on == 0 {
            "no training needed".to_string()
        } else {
            format!(
                "trained on {} in {:.1} s",
                self.trained_on,
                self.train_time.as_secs_f64()
            )
        };
        format!(
            "built {:?} ({}, {} metric): {} vectors of d={} in {} lists; {trained}, added in {:.1} s; \
             wrote {} to {} in {:.2} s (header {})",
            self.factory,
            i.type_name,
            i.metric.name(),
            i.ntotal,
            i.d,
            i.nlist,
            self.add_time.as_secs_f64(),
            human_bytes(self.file_bytes),
            self.uri,
            self.write_time.as_secs_f64(),
            human_bytes(self.header_bytes),
        )
    }
}

pub async fn run(args: BuildArgs) -> Result<()> {
    let parquet = args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let (vectors, input) = if parquet {
        let table = read_table(&args.input).await?;
        let input = BuildInput::from_table(table, &args.vector_column, &args.id_column)
            .with_context(|| format!("reading {}", args.input.display()))?;
        let n = input.ids.len();
        let vectors = Vectors::new(n, input.d, input.vectors.clone())?;
        (Arc::new(vectors), Some(input))
    } else {
        (load_vectors(&args.input).await?, None)
    };
    let spec = BuildSpec {
        factory: &args.factory,
        metric: args.metric,
        train_size: args.train_size,
        output: &args.output,
        ids: input.as_ref().map(|i| Arc::new(i.ids.clone())),
        overwrite: args.overwrite,
    };
    let report = build_index(vectors, &spec).await?;
    println!("{}", report.summary());
    if let Some(input) = input {
        if input.attributes.batch.num_columns() > 0 {
            let index = open_index(&args.output).await?;
            let (uri, bytes) = attach(&index, &input.attributes, &input.ids).await?;
            println!(
                "wrote {} attribute columns to {uri} ({})",
                input.attributes.batch.num_columns(),
                human_bytes(bytes)
            );
        }
    }
    Ok(())
}

/// Builds, trains and fills an index from `vectors`, writes it to
/// `spec.output`, and checks that ivflake can open what it wrote.
pub async fn build_index(vectors: Arc<Vectors>, spec: &BuildSpec<'_>) -> Result<BuildReport> {
    // Check the destination before the expensive part.
    let location = prepare_output(spec.output)?;
    let sidecar = ivflake::Manifest::sidecar_path(&location.path);
    match location.store.head(&location.path).await {
        Ok(_) if !spec.overwrite => bail!(
            "{} already exists; pass --overwrite to replace it (its checksum sidecar, if any, is deleted with it)",
            spec.output
        ),
        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot check whether {} exists", spec.output)),
    }
    let (factory, metric, train_size) = (spec.factory.to_string(), spec.metric, spec.train_size);
    let ids = spec.ids.clone();
    let built = tokio::task::spawn_blocking(move || {
        train_and_add(
            &vectors,
            ids.as_deref().map(Vec::as_slice),
            &factory,
            metric,
            train_size,
        )
    })
    .await
    .context("the index-building task failed")??;

    let started = Instant::now();
    write_object(&location, &built.bytes).await?;
    let write_time = started.elapsed();
    // A sidecar of the replaced file would call every list of this one corrupt.
    match location.store.delete(&sidecar).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot delete the stale checksum sidecar of {}", spec.output))
        }
    }

    let index = IvfIndex::open_at(location, OpenOptions::default())
        .await
        .with_context(|| {
            format!(
                "the index was written to {} but ivflake cannot open it lazily",
                spec.output
            )
        })?;
    if index.file_len() != built.bytes.len() as u64 || index.info().ntotal != built.info.ntotal {
        bail!(
            "read-back check failed: wrote {} bytes holding {} vectors, but {} has {} bytes holding {}",
            built.bytes.len(),
            built.info.ntotal,
            spec.output,
            index.file_len(),
            index.info().ntotal
        );
    }
    Ok(BuildReport {
        uri: spec.output.to_string(),
        factory: spec.factory.to_string(),
        info: index.info().clone(),
        file_bytes: index.file_len(),
        header_bytes: index.list_ranges().header_len(),
        trained_on: built.trained_on,
        train_time: built.train_time,
        add_time: built.add_time,
        write_time,
    })
}

struct Built {
    bytes: Vec<u8>,
    info: IndexInfo,
    trained_on: usize,
    train_time: Duration,
    add_time: Duration,
}

/// The CPU-heavy part; runs on a blocking thread.
fn train_and_add(
    vectors: &Vectors,
    ids: Option<&[i64]>,
    factory: &str,
    metric: Metric,
    train_size: Option<usize>,
) -> Result<Built> {
    let mut index = ivflake_faiss::Index::factory(vectors.d, factory, metric)
        .with_context(|| format!("Faiss cannot build {factory:?} for d={}", vectors.d))?;
    check_servable(factory, index.info())?;
    if index.info().ivf_kind == Some(IvfKind::Pq) {
        if let Some(pq) = polysemous_pq(factory) {
            eprintln!(
                "note: for {pq:?} Faiss also trains the codebooks for polysemous search, which ivflake does not \
                 use and which takes tens of seconds per index; write {pq}np to skip it"
            );
        }
    }

    let started = Instant::now();
    let mut trained_on = 0;
    if !index.is_trained()? {
        let sample = train_size
            .filter(|&t| t < vectors.n)
            .map(|t| training_sample(vectors, t));
        let train: &[f32] = sample.as_deref().unwrap_or(&vectors.data);
        trained_on = train.len() / vectors.d;
        train_showing(&mut index, factory, train, vectors.d)?;
    }
    let train_time = started.elapsed();

    let started = Instant::now();
    add_showing(&mut index, &vectors.data, ids, vectors.d)?;
    let add_time = started.elapsed();

    let bytes = index.to_bytes().context("serializing the index failed")?;
    Ok(Built {
        bytes,
        info: index.info().clone(),
        trained_on,
        train_time,
        add_time,
    })
}

/// Refuses factories ivflake could not serve, from the IVF class of the
/// empty index, checked before training so an unservable factory fails in a
/// second, not after the build; the read-back after writing stays the
/// authority. The served classes come from the shim's one table of them.
fn check_servable(factory: &str, info: &IndexInfo) -> Result<()> {
    if info.ivf_kind.is_some() {
        return Ok(());
    }
    let type_name = &info.type_name;
    let served: Vec<String> = ivflake::served_types().into_iter().map(|(_, name)| name).collect();
    if info.nlist == 0 {
        bail!(
            "{factory:?} builds an index of type {type_name}, not an IVF index; \
             ivflake serves IVF indexes (e.g. \"IVF1024,PQ32\")"
        );
    }
    bail!(
        "{factory:?} builds an {type_name}, whose inverted lists ivflake cannot range-read; \
         use IVF with Flat, PQ<M>, PQ<M>x4fs, SQ<bits> or RaBitQ codes (supported: {})",
        served.join(", ")
    )
}

/// The `PQ<M>[x<nbits>]` component of a factory string without the `np`
/// suffix: Faiss's factory turns on polysemous training for it.
fn polysemous_pq(factory: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    factory.split(',').map(str::trim).find(|c| {
        c.strip_prefix("PQ").is_some_and(|rest| match rest.split_once('x') {
            Some((m, nbits)) => digits(m) && digits(nbits),
            None => digits(rest),
        })
    })
}

/// A reproducible random sample of `size` rows, in row order.
fn training_sample(vectors: &Vectors, size: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(SAMPLE_SEED);
    let mut rows = rand::seq::index::sample(&mut rng, vectors.n, size).into_vec();
    rows.sort_unstable();
    let mut out = Vec::with_capacity(size * vectors.d);
    for r in rows {
        out.extend_from_slice(vectors.row(r));
    }
    out
}

/// Parses the output URI; for local outputs, creates the parent directory
/// first (the library requires it to exist).
fn prepare_output(uri: &str) -> Result<IndexLocation> {
    let local = if uri.contains("://") {
        let url = Url::parse(uri).with_context(|| format!("invalid output URI {uri:?}"))?;
        match url.scheme() {
            "file" => Some(
                url.to_file_path()
                    .map_err(|()| anyhow!("output {uri:?} is not an absolute file:// path"))?,
            ),
            "memory" => bail!("output {uri:?}: a memory:// store vanishes when the command exits"),
            _ => None,
        }
    } else {
        Some(PathBuf::from(uri))
    };
    if let Some(path) = local {
        if path.is_dir() {
            bail!(
                "output {uri:?} is a directory; give a file path such as {}",
                path.join("index.faiss").display()
            );
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the output directory {}", parent.display()))?;
        }
    }
    IndexLocation::parse(uri, &FetchConfig::default()).context("invalid output location")
}

/// Trains `index` on `data` (rows of `d` floats) behind a spinner.
pub(crate) fn train_showing(index: &mut ivflake_faiss::Index, factory: &str, data: &[f32], d: usize) -> Result<()> {
    let rows = data.len() / d;
    let spinner = spinner(format!("training {factory} on {rows} vectors"));
    let outcome = index.train(data);
    spinner.finish_and_clear();
    outcome.with_context(|| format!("training {factory:?} on {rows} vectors failed"))
}

/// Adds `data` (rows of `d` floats) in batches of `ADD_BATCH`, with a progress bar.
pub(crate) fn add_showing(index: &mut ivflake_faiss::Index, data: &[f32], ids: Option<&[i64]>, d: usize) -> Result<()> {
    let bar = progress_bar((data.len() / d) as u64, "adding", "vectors");
    for (b, chunk) in data.chunks(ADD_BATCH * d).enumerate() {
        let added = match ids {
            Some(ids) => index.add_with_ids(chunk, &ids[b * ADD_BATCH..b * ADD_BATCH + chunk.len() / d]),
            None => index.add(chunk),
        };
        if let Err(e) = added {
            bar.finish_and_clear();
            return Err(e).with_context(|| format!("adding vectors from row {} failed", b * ADD_BATCH));
        }
        bar.inc((chunk.len() / d) as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_sample_is_reproducible_rows() {
        let v = Vectors::new(100, 2, (0..200).map(|i| i as f32).collect()).unwrap();
        let a = training_sample(&v, 10);
        assert_eq!(a, training_sample(&v, 10));
        assert_eq!(a.len(), 20);
        for row in a.chunks(2) {
            assert_eq!(row[1], row[0] + 1.0);
            assert_eq!(row[0] as usize % 2, 0);
        }
    }

    #[test]
    fn refuses_unservable_factories() {
        // The empty index each factory builds, as `train_and_add` checks it.
        let check = |factory: &str| {
            let index = ivflake_faiss::Index::factory(16, factory, Metric::L2).unwrap();
            check_servable(factory, index.info())
        };
        assert!(check("IVF8,Flat").is_ok());
        assert!(check("OPQ16,IVF8,PQ16").is_ok());
        assert!(check("IVF8,SQ8").is_ok());
        let e = check("Flat").unwrap_err().to_string();
        assert!(e.contains("not an IVF index"), "{e}");
        assert!(check("IVF8,PQ16x4fs").is_ok());
        assert!(check("IVF8,RaBitQ").is_ok());
        let e = check("IVF8,RQ2x4").unwrap_err().to_string();
        assert!(e.contains("IndexIVFResidualQuantizer"), "{e}");
    }

    #[test]
    fn spots_polysemous_training() {
        assert_eq!(polysemous_pq("OPQ16,IVF256,PQ16"), Some("PQ16"));
        assert_eq!(polysemous_pq("IVF1024, PQ32x8"), Some("PQ32x8"));
        assert_eq!(polysemous_pq("OPQ16,IVF256,PQ16np"), None);
        assert_eq!(polysemous_pq("IVF256,PQ16x4fs"), None);
        assert_eq!(polysemous_pq("IVF256,Flat"), None);
        assert_eq!(polysemous_pq("IVF256,PQx8"), None);
    }

    #[test]
    fn output_checks() {
        let e = prepare_output("memory://x/y").unwrap_err();
        assert!(format!("{e:#}").contains("vanishes"), "{e:#}");
        let e = prepare_output(&std::env::temp_dir().display().to_string()).unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
        let e = prepare_output("file://relative/x").unwrap_err();
        assert!(format!("{e:#}").contains("file://"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("ivflake-cli-out-{}", std::process::id()));
        let out = dir.join("a/b/index.faiss");
        let loc = prepare_output(&format!("file://{}", out.display())).unwrap();
        assert_eq!(loc.path.as_ref(), "index.faiss");
        assert!(dir.join("a/b").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
