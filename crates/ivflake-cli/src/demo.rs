//! `ivflake demo`: the whole story on generated data, with nothing to download.
//!
//! Generates clustered vectors and queries (deterministically), builds an
//! index with the `build` code path, computes exact neighbours with a Flat
//! index, then opens the index lazily from disk and reports recall and what
//! each search fetched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ivflake::{Metric, SearchStats};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::build::{build_index, BuildSpec};
use crate::open::open_index;
use crate::util::{human_bytes, positive, shell_quote};
use crate::vectors::{write_vectors, Vectors};

/// The generator's seed: the same arguments always give the same data.
pub(crate) const SEED: u64 = 42;
/// Number of clusters in the generated data (fewer when `n` is smaller).
pub(crate) const BLOBS: usize = 256;
/// Each cluster spreads along a random subspace of this many dimensions, as
/// real embeddings have a low intrinsic dimension.
const BLOB_RANK: usize = 8;
/// Most floats the demo generates (4 GiB).
const MAX_FLOATS: usize = 1 << 30;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for vectors.npy, queries.npy and index.faiss (created if missing).
    #[arg(long, default_value = "demo-data")]
    pub dir: PathBuf,
    /// Number of database vectors.
    #[arg(long, default_value_t = 20_000, value_parser = positive)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub d: usize,
    /// Number of query vectors.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub queries: usize,
    /// Faiss index factory string. `np` skips Faiss's polysemous codebook
    /// training, which ivflake does not use and which is slow; OPQ (e.g.
    /// "OPQ16,IVF256,PQ16np") works too but trains for about a minute here.
    #[arg(long, default_value = "IVF256,PQ16np")]
    pub factory: String,
    /// Neighbours per query.
    #[arg(short = 'k', default_value_t = 10, value_parser = positive)]
    pub k: usize,
    /// Lists probed per query.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub nprobe: usize,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let too_big = |what: &str, n: usize| {
        n.checked_mul(args.d)
            .filter(|&f| f <= MAX_FLOATS)
            .map(|_| ())
            .ok_or_else(|| {
                anyhow!(
                    "{what} × d = {n} × {} is more than the demo's limit of {MAX_FLOATS} floats",
                    args.d
                )
            })
    };
    too_big("--n", args.n)?;
    too_big("--queries", args.queries)?;
    if args.k > args.n {
        bail!(
            "-k {} asks for more neighbours than the {} database vectors",
            args.k,
            args.n
        );
    }

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create the demo directory {}", args.dir.display()))?;
    let vectors_path = args.dir.join("vectors.npy");
    let queries_path = args.dir.join("queries.npy");
    let index_path = args.dir.join("index.faiss");
    let index_uri = path_str(&index_path)?.to_string();

    // 1. Data.
    let (n, d, nq) = (args.n, args.d, args.queries);
    let (database, queries) = tokio::task::spawn_blocking(move || -> Result<(Vectors, Vectors)> {
        let (database, queries) = generate(n, nq, d);
        write_vectors(&vectors_path, &database)?;
        write_vectors(&queries_path, &queries)?;
        Ok((database, queries))
    })
    .await
    .context("the data-generating task failed")??;
    let (database, queries) = (Arc::new(database), Arc::new(queries));
    println!(
        "data: {} vectors and {} queries of d={d} in {} clusters (seed {SEED}) → {}, {}",
        database.n,
        queries.n,
        BLOBS.min(n),
        args.dir.join("vectors.npy").display(),
        args.dir.join("queries.npy").display(),
    );

    // 2. The index, exactly as `ivflake build` makes it.
    let spec = BuildSpec {
        factory: &args.factory,
        metric: Metric::L2,
        train_size: None,
        output: &index_uri,
        ids: None,
        // The demo's own directory: a second run replaces its index.
        overwrite: true,
    };
    let report = build_index(database.clone(), &spec).await?;
    println!("{}", report.summary());

    // 3. Exact neighbours, and Faiss's own in-memory answer with the same nprobe.
    let started = Instant::now();
    let (exact, in_memory) = {
        let (database, queries, index_path) = (database.clone(), queries.clone(), index_path.clone());
        let (k, nprobe) = (args.k, args.nprobe);
        tokio::task::spawn_blocking(move || -> Result<(Vec<i64>, Vec<i64>)> {
            let exact = exact_search(&database, &queries, k)?;
            let bytes =
                std::fs::read(&index_path).with_context(|| format!("cannot read back {}", index_path.display()))?;
            let full = ivflake_faiss::read_index(&bytes).context("Faiss cannot read the index it wrote")?;
            let in_memory = full
                .search(&queries.data, k, nprobe)
                .context("in-memory Faiss search failed")?;
            Ok((exact, in_memory.labels))
        })
        .await
        .context("the ground-truth task failed")??
    };
    println!(
        "exact ground truth: Flat search of {} queries in {:.1} ms",
        queries.n,
        ms(started)
    );

    // 4. The lazy index: open reads the header only; searches fetch probed lists.
    let started = Instant::now();
    let index = open_index(&index_uri).await?;
    println!(
        "opened {index_uri} lazily in {:.1} ms: read the {} header of a {} file",
        ms(started),
        human_bytes(index.list_ranges().header_len()),
        human_bytes(index.file_len()),
    );
    let cold = index
        .search(&queries.data, args.k, args.nprobe)
        .await
        .context("searching the lazily opened index failed")?;
    let recall = recall_at_k(&cold.ids, &exact, args.k);
    let same = matching_queries(&cold.ids, &in_memory, args.k);
    println!(
        "recall@{} = {recall:.3} at nprobe {} over {} queries; identical to in-memory Faiss for {same}/{} queries",
        args.k, args.nprobe, queries.n, queries.n,
    );
    println!("search 1 (cold):  {}", describe(&cold.stats));
    let warm = index
        .search(&queries.data, args.k, args.nprobe)
        .await
        .context("searching the lazily opened index again failed")?;
    println!("search 2 (warm):  {}", describe(&warm.stats));
    if warm.ids != cold.ids {
        println!("warning: the repeated search returned different ids");
    }

    println!();
    println!("next, try:");
    println!(
        "  ivflake search {} --queries {} -k {} --nprobe {} --stats",
        shell_quote(&index_uri),
        shell_quote(path_str(&args.dir.join("queries.npy"))?),
        args.k,
        args.nprobe,
    );
    println!("  ivflake inspect {}", shell_quote(&index_uri));
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("the path {} is not valid UTF-8", p.display()))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn describe(s: &SearchStats) -> String {
    format!(
        "{} lists probed ({} from the store, {} from memory), {} GETs, {} fetched; \
         quantizer {:.2} ms, fetch {:.2} ms, scan {:.2} ms, total {:.2} ms",
        s.lists_probed,
        s.lists_from_store,
        s.lists_from_memory,
        s.gets,
        human_bytes(s.bytes_fetched),
        s.quantizer_ms,
        s.fetch_ms,
        s.scan_ms,
        s.total_ms,
    )
}

/// Database and query vectors: points around `BLOBS` random centres, each
/// cluster stretched along its own random low-rank subspace plus a little noise.
pub(crate) fn generate(n: usize, nq: usize, d: usize) -> (Vectors, Vectors) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let blobs = BLOBS.min(n).max(1);
    let rank = BLOB_RANK.min(d);
    let centres: Vec<f32> = (0..blobs * d).map(|_| gaussian(&mut rng) * 2.0).collect();
    let scale = 1.0 / (rank as f32).sqrt();
    let bases: Vec<f32> = (0..blobs * d * rank).map(|_| gaussian(&mut rng) * scale).collect();
    let mut draw = |count: usize| {
        let mut out = Vec::with_capacity(count * d);
        let mut z = vec![0f32; rank];
        for _ in 0..count {
            let b = rng.gen_range(0..blobs);
            z.iter_mut().for_each(|v| *v = gaussian(&mut rng));
            let basis = &bases[b * d * rank..(b + 1) * d * rank];
            for j in 0..d {
                let along: f32 = basis[j * rank..(j + 1) * rank].iter().zip(&z).map(|(a, z)| a * z).sum();
                out.push(centres[b * d + j] + along + 0.05 * gaussian(&mut rng));
            }
        }
        out
    };
    let database = draw(n);
    let queries = draw(nq);
    (
        Vectors { n, d, data: database },
        Vectors {
            n: nq,
            d,
            data: queries,
        },
    )
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Exact k-NN by brute force, the queries split across threads.
fn exact_search(database: &Vectors, queries: &Vectors, k: usize) -> Result<Vec<i64>> {
    let mut flat =
        ivflake_faiss::Index::factory(database.d, "Flat", Metric::L2).context("cannot build a Flat index")?;
    flat.add(&database.data).context("adding to the Flat index failed")?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per_thread = queries.n.div_ceil(threads).max(1);
    let flat = &flat;
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .data
            .chunks(per_thread * queries.d)
            .map(|chunk| s.spawn(move || flat.search(chunk, k, 1)))
            .collect();
        let mut labels = Vec::with_capacity(queries.n * k);
        for h in handles {
            let part = h
                .join()
                .map_err(|_| anyhow!("an exact-search thread panicked"))?
                .context("exact search failed")?;
            labels.extend(part.labels);
        }
        Ok(labels)
    })
}

/// Mean fraction of each query's true k nearest neighbours found.
fn recall_at_k(found: &[i64], exact: &[i64], k: usize) -> f64 {
    let queries = exact.len() / k;
    if queries == 0 {
        return 0.0;
    }
    let total: f64 = found
        .chunks(k)
        .zip(exact.chunks(k))
        .map(|(f, e)| {
            let truth: Vec<i64> = e.iter().copied().filter(|&id| id >= 0).collect();
            if truth.is_empty() {
                return 1.0;
            }
            truth.iter().filter(|id| f.contains(id)).count() as f64 / truth.len() as f64
        })
        .sum();
    total / queries as f64
}

/// Queries whose id lists are identical in `a` and `b`.
fn matching_queries(a: &[i64], b: &[i64], k: usize) -> usize {
    a.chunks(k).zip(b.chunks(k)).filter(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_finite() {
        let (a, qa) = generate(300, 7, 16);
        let (b, qb) = generate(300, 7, 16);
        assert_eq!(a, b);
        assert_eq!(qa, qb);
        assert_eq!((a.n, a.d, a.data.len(), qa.data.len()), (300, 16, 300 * 16, 7 * 16));
        assert_eq!(a.first_non_finite(), None);
        let (tiny, _) = generate(3, 1, 2);
        assert_eq!(tiny.data.len(), 6);
    }

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at_k(&[1, 2, 3, 4], &[2, 1, 3, 5], 2), 0.75);
        assert_eq!(recall_at_k(&[1, -1], &[1, -1], 2), 1.0);
        assert_eq!(matching_queries(&[1, 2, 3, 4], &[1, 2, 4, 3], 2), 1);
    }
}
