//! `ivflake search`: query vectors in, one JSON line per query out.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ivflake::{
    AttributeFilter, MutableIndex, MutableOptions, SearchParams, SearchResults, Staleness, MAX_RESULT_SLOTS,
};
use serde::Serialize;

use crate::open::OpenArgs;
use crate::util::{load_vectors, positive, write_stdout};

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The index: s3://…, gs://…, az://…, file:///… or a local path; or a
    /// mutable index's prefix (ending in "/", or a local directory), whose
    /// writes are searched too.
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
    /// Print what open cost (`{"open": {gets, bytes, ms}, "preload": …}`),
    /// then each batch's search statistics, as JSON lines on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Search in batches of this many queries [default: all in one batch,
    /// split only where queries × k would exceed the library's result limit].
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Only rows whose attributes match, in Amazon S3 Vectors' filter
    /// language, e.g. '{"category": {"$eq": "shoes"}, "price": {"$lt": 50}}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Attribute columns to print with each hit (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub return_attributes: Vec<String>,
    /// Refined indexes (IndexRefine, `…,RFlat`): candidates re-ranked per
    /// result, `k × k_factor` in all [default: the file's k_factor].
    #[arg(long)]
    pub k_factor: Option<f32>,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// One output line.
#[derive(Serialize)]
struct QueryResult<'a> {
    ids: &'a [i64],
    distances: &'a [f32],
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a [Option<ivflake::AttributeRow>]>,
}

pub async fn run(args: SearchArgs) -> Result<()> {
    let queries = load_vectors(&args.queries).await?;
    let (index, mutable) = if is_prefix(&args.uri) {
        let options = MutableOptions {
            staleness: Staleness::Strong,
            ..MutableOptions::default()
        };
        let mutable = MutableIndex::open(&args.uri, options).await?;
        (mutable.base(), Some(mutable))
    } else {
        (args.open.open(&args.uri).await?, None)
    };
    if args.stats {
        let open = serde_json::json!({ "open": index.open_stats(), "preload": index.preload_status() });
        eprintln!("{open}");
    }
    let d = index.info().d;
    if queries.d != d {
        bail!(
            "the queries in {} have dimension {} but the index {} has dimension {d}",
            args.queries.display(),
            queries.d,
            args.uri
        );
    }
    let mut params = SearchParams::new(args.k, args.nprobe);
    if let Some(text) = &args.filter {
        let json: serde_json::Value = serde_json::from_str(text).context("--filter is not JSON")?;
        params.attribute_filter = Some(AttributeFilter::from_json(&json)?);
    }
    params.return_attributes = args.return_attributes.clone();
    params.k_factor = args.k_factor;
    // Under a refine stage each query holds k × k_factor candidates.
    let per_query = match index.info().refine {
        Some(refine) => ivflake::RefineInfo::k_base(args.k, args.k_factor.unwrap_or(refine.k_factor)),
        None => args.k,
    };
    let max_batch = (MAX_RESULT_SLOTS / per_query.max(1)).max(1);
    let batch = args.batch.unwrap_or(queries.n).min(max_batch);

    for (b, chunk) in queries.data.chunks(batch * d).enumerate() {
        let first = b * batch;
        let outcome = match &mutable {
            Some(mutable) => mutable.search_with(chunk, &params).await,
            None => index.search_with(chunk, &params).await,
        };
        let results = outcome.with_context(|| {
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

/// Whether `uri` names a mutable index's prefix rather than one file.
pub fn is_prefix(uri: &str) -> bool {
    uri.ends_with('/') || (!uri.contains("://") && std::path::Path::new(uri).is_dir())
}

/// JSON lines for every query of a batch.
fn render(results: &SearchResults) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(results.len() * (results.k * 24 + 32));
    for i in 0..results.len() {
        let (ids, distances) = results.query(i);
        let attributes = results
            .attributes
            .as_ref()
            .map(|a| &a[i * results.k..(i + 1) * results.k]);
        serde_json::to_writer(
            &mut out,
            &QueryResult {
                ids,
                distances,
                attributes,
            },
        )
        .context("cannot serialize results")?;
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
            attributes: None,
            stats: Default::default(),
        };
        let text = String::from_utf8(render(&results).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"ids\":[3,7],\"distances\":[0.5,1.25]}\n{\"ids\":[1,-1],\"distances\":[2.0,null]}\n"
        );
    }
}
