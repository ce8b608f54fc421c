//! `ivflake serve`: runs the HTTP search server from a config file, or from
//! `NAME=URI` pairs for a quick start, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ivflake_server::{IndexConfig, Server, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Indexes to serve, as NAME=URI (added to those in the config file); a
    /// mutable index's prefix (ending in "/", or a directory) is served writable.
    #[arg(value_name = "NAME=URI")]
    pub indexes: Vec<String>,
    /// TOML config file; every setting has a default (see examples/ivflake.toml).
    #[arg(long, short = 'c', env = "IVFLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding the config (default 127.0.0.1:8080):
    /// HOST:PORT, where HOST may be a name such as `localhost`.
    #[arg(long, value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Serve the Amazon S3 Vectors API (boto3's `s3vectors` client) over
    /// this root prefix: a directory, `file:///…` or `s3://bucket/prefix`;
    /// each vector bucket is a prefix under it (`[vectors] root`).
    #[arg(long, value_name = "URI")]
    pub vector_root: Option<String>,
    /// Accept unsigned S3 Vectors requests, every one with the admin
    /// scope: for local use only (`[vectors] auth = false`).
    #[arg(long)]
    pub no_auth: bool,
    /// Load and check the config (and the arguments), print it is valid,
    /// and exit without opening an index or listening.
    #[arg(long)]
    pub check: bool,
}

/// `HOST:PORT` → the address to bind: an IP as it is, a name resolved (its
/// IPv4 address first, as `localhost` is usually meant).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080): {e}"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    for pair in &args.indexes {
        let Some((name, uri)) = pair.split_once('=') else {
            bail!("{pair:?} is not NAME=URI (e.g. demo=demo-data/index.faiss)");
        };
        if uri.is_empty() {
            bail!("{pair:?} has an empty URI");
        }
        if config.indexes.contains_key(name) {
            bail!(
                "index {name:?} is named twice{}",
                if args.config.is_some() {
                    " (on the command line and in the config)"
                } else {
                    " on the command line"
                }
            );
        }
        // A prefix (ending in "/", or a local directory) is a mutable
        // index, served writable, as `ivflake search` reads one.
        let writable = uri.ends_with('/') || (!uri.contains("://") && std::path::Path::new(uri).is_dir());
        config.indexes.insert(
            name.to_string(),
            IndexConfig {
                writable,
                ..IndexConfig::new(uri)
            },
        );
    }
    if let Some(root) = &args.vector_root {
        config.vectors.root = Some(root.clone());
    }
    if args.no_auth {
        config.vectors.auth = false;
    }
    if config.indexes.is_empty() && config.allowed_uri_prefixes.is_empty() && config.vectors.root.is_none() {
        bail!(
            "no indexes to serve: give NAME=URI arguments, a --config with [indexes.NAME] tables, \
             allowed_uri_prefixes so POST /v1/indexes can add them at run time, or --vector-root for the S3 \
             Vectors API"
        );
    }
    config.resolve_env();
    if args.check {
        config.validate()?;
        println!(
            "config valid: {} indexes, listen {}, compaction in the {}",
            config.indexes.len(),
            config.listen,
            if config.compaction.in_server() {
                "server"
            } else {
                "worker"
            }
        );
        return Ok(());
    }
    let auth = config.auth.token.is_some();
    let vector_root = config.vectors.root.clone();
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let names = server.index_names();
    println!(
        "ivflake serving {} on http://{addr}{}",
        if names.is_empty() {
            "no indexes yet (add them with POST /v1/indexes)".to_string()
        } else {
            names.join(", ")
        },
        if auth { " (bearer-token auth on)" } else { "" }
    );
    println!("  search: POST http://{addr}/v1/indexes/NAME/search   API: http://{addr}/openapi.json   Ctrl-C stops");
    if let Some(root) = &vector_root {
        println!("  S3 Vectors API over {root}: boto3.client(\"s3vectors\", endpoint_url=\"http://{addr}\")");
    }
    server
        .run(shutdown_signal())
        .await
        .context("the server stopped with an error")
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            futures::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    // Through the log, so IVFLAKE_LOG_FORMAT=json keeps every stderr line JSON.
    tracing::info!("shutting down: finishing searches in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_names_and_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:8394").unwrap(),
            "127.0.0.1:8394".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:8394").unwrap(), "[::1]:8394".parse().unwrap());
        assert!(parse_listen("localhost:8394").unwrap().ip().is_loopback());
        assert!(parse_listen("localhost").unwrap_err().contains("HOST:PORT"));
    }
}
