//! `ivflake`: search, inspect and build Faiss IVF indexes served lazily from
//! object storage, and a self-contained demo.

mod attributes;
mod bench;
mod build;
mod demo;
mod inspect;
mod manifest;
mod open;
mod search;
mod serve;
mod util;
mod vectors;
mod write;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Serve Faiss IVF indexes lazily from object storage.
///
/// Index URIs: s3://bucket/key, gs://bucket/key, az://container/key,
/// file:///abs/path or a plain filesystem path. Cloud credentials come from
/// the usual AWS_*, GOOGLE_* and AZURE_* environment variables. Set RUST_LOG
/// (e.g. RUST_LOG=ivflake=debug) for logs on stderr.
#[derive(Debug, Parser)]
#[command(name = "ivflake", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search an index for the nearest neighbours of query vectors; one JSON line per query on stdout.
    Search(search::SearchArgs),
    /// Describe an index from its header: type, dimensions, list-size distribution.
    Inspect(inspect::InspectArgs),
    /// Train and fill an index from a vector file and write it to a URI.
    Build(build::BuildArgs),
    /// Generate data, build an index, and search it lazily against exact ground truth.
    Demo(demo::DemoArgs),
    /// Serve indexes over HTTP: search, metrics, warm-up, hot reload.
    Serve(serve::ServeArgs),
    /// Measure cold and warm search latency against in-memory Faiss and one store round trip.
    Bench(bench::BenchArgs),
    /// Attach a Parquet table of attributes to an index, joined on the ids in its lists.
    Attributes(attributes::AttributesArgs),
    /// Write an index's checksum sidecar, so every fetched list is verified.
    Manifest(manifest::ManifestArgs),
    /// Create a mutable index under a prefix: empty, or from a Faiss file in place.
    Create(write::CreateArgs),
    /// Insert or replace vectors of a mutable index; each batch is durable when acknowledged.
    Upsert(write::UpsertArgs),
    /// Delete ids from a mutable index.
    Delete(write::DeleteArgs),
    /// Print ids' raw vectors and attributes from a mutable index (JSON).
    Get(write::GetArgs),
    /// Fold a mutable index's write log into a new standard Faiss base.
    Compact(write::CompactArgs),
    /// Delete files of a mutable index that no version within the retention period names.
    Gc(write::GcArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs its requests by default; one-shot commands only problems.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,ivflake=info,ivflake_server=info,tower_http=info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Structured logs for collectors: IVFLAKE_LOG_FORMAT=json gives one JSON object a line.
    if std::env::var("IVFLAKE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }

    let outcome = match cli.command {
        Command::Search(args) => search::run(args).await,
        Command::Inspect(args) => inspect::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Manifest(args) => manifest::run(args).await,
        Command::Create(args) => write::create(args).await,
        Command::Upsert(args) => write::upsert(args).await,
        Command::Delete(args) => write::delete(args).await,
        Command::Get(args) => write::get(args).await,
        Command::Compact(args) => write::compact(args).await,
        Command::Gc(args) => write::gc(args).await,
        Command::Attributes(args) => attributes::run(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `a: b: c`, leaving out a cause whose
/// text its parent already printed (object_store errors repeat their source).
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(msg.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io)
            .context("object x not found: no such file")
            .context("cannot open the index");
        assert_eq!(
            render_error(&e),
            "cannot open the index: object x not found: no such file"
        );
    }
}
