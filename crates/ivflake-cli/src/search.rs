//! `ivflake search`: query vectors in, one JSON line per query out.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ivflake::{SearchResults, MAX_RESULT_SLOTS};
use serde::Serialize;

use crate::util::{load_vectors, open_index, positive, write_stdout};

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The index: s3://…, gs://…, az://…, file:///… or a local path.
    pub uri: String,
    /// Query vectors: float32 .npy of shape (n, d) or (d,), or .fvecs.
    #[arg(long, short = 'q')]
    pub queries: PathBuf,
    /// Neighbours to return per query.
    #[arg(short = 'k', value_parser = positive)]
    pub k: usize,
    /// Inverted lists to probe per query (1..=nlist).
    #[arg(long, value_parser = positive)]
    pub nprobe: usize,
    /// Print each batch's search statistics as a JSON line on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Search in batches of this many queries [default: all in one batch,
    /// split only where queries × k would exceed the library's result limit].
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
}

/// One output line.
#[derive(Serialize)]
struct QueryResult<'a> {
    ids: &'a [i64],
    distances: &'a [f32],
}

pub async fn run(args: SearchArgs) -> Result<()> {
    let queries = load_vectors(&args.queries).await?;
    let index = open_index(&args.uri).await?;
    let d = index.info().d;
    if queries.d != d {
        bail!(
            "the queries in {} have dimension {} but the index {} has dimension {d}",
            args.queries.display(),
            queries.d,
            args.uri
        );
    }
    let max_batch = (MAX_RESULT_SLOTS / args.k).max(1);
    let batch = args.batch.unwrap_or(queries.n).min(max_batch);

    for (b, chunk) in queries.data.chunks(batch * d).enumerate() {
        let first = b * batch;
        let results = index.search(chunk, args.k, args.nprobe).await.with_context(|| {
            format!(
                "searching queries {first}..{} of {}",
                first + chunk.len() / d,
                queries.n
            )
        })?;
        if args.stats {
            let line = serde_json::to_string(&results.stats).context("cannot serialize the search stats")?;
            eprintln!("{line}");
        }
        if !write_stdout(&render(&results)?)? {
            return Ok(());
        }
    }
    Ok(())
}

/// JSON lines for every query of a batch.
fn render(results: &SearchResults) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(results.len() * (results.k * 24 + 32));
    for i in 0..results.len() {
        let (ids, distances) = results.query(i);
        serde_json::to_writer(&mut out, &QueryResult { ids, distances }).context("cannot serialize results")?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_query() {
        let results = SearchResults {
            k: 2,
            ids: vec![3, 7, 1, -1],
            distances: vec![0.5, 1.25, 2.0, f32::INFINITY],
            stats: Default::default(),
        };
        let text = String::from_utf8(render(&results).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"ids\":[3,7],\"distances\":[0.5,1.25]}\n{\"ids\":[1,-1],\"distances\":[2.0,null]}\n"
        );
    }
}
