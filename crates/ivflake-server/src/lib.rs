//! The ivflake HTTP search server (axum + tower).
//!
//! [`Server::bind`] opens every configured index (headers only), then
//! [`Server::run`] serves the API until its shutdown future resolves, and
//! drains searches in flight before returning. [`serve`] does both. They,
//! [`Server::add_index`] and config loading fail with a [`ServerError`].
//!
//! - `accept`: the accept loop: connection cap, HTTP/1 time-outs, graceful drain.
//! - `config`: the TOML settings, each with a default.
//! - `registry`: names → the version of each index served; atomic reloads.
//! - `routes`: handlers (search, indexes, warm, reload, metrics, health), and
//!   the one place that decides each error's status and code.
//! - `parse`: search bodies (JSON or raw float32) → a batch, limits checked as it reads.
//! - `admission`: bounded requests and query vectors in flight, refused past them.
//! - `auth`: optional bearer tokens (admin and search scopes), compared in constant time.
//! - `error`: [`ServerError`], what the public functions return.
//! - `api_error`: [`ApiError`], [`ErrorCode`] and the JSON error body.
//! - `openapi`: the document at `/openapi.json`.
//! - `vectors`: the Amazon S3 Vectors API over a root prefix (`[vectors]`).
//!
//! All indexes share one fetch scheduler (I/O limits, caches) and one compute
//! pool: Faiss never runs on a tokio worker, so I/O keeps flowing under CPU load.

mod accept;
mod admission;
pub mod api;
mod api_error;
mod auth;
pub mod compaction;
pub mod config;
mod error;
mod names;
mod openapi;
mod parse;
mod registry;
mod routes;
mod telemetry;
mod vectors;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ivflake::{ComputePool, FetchScheduler, IndexLocation, OpenOptions};

pub use admission::{Admission, Overloaded};
pub use api_error::{ApiError, ErrorBody, ErrorCode};
pub use compaction::{CompactionWorker, Failed, Round};
pub use config::{IndexConfig, PreloadSetting, Secret, ServerConfig};
pub use error::ServerError;
pub use names::validate_name;
pub use openapi::ApiDoc;
pub use parse::ROWS_HEADER;
pub use registry::{IndexEntry, Loaded, Registry, RegistryError};
pub use routes::VERSION_HEADER;

/// A bound server, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    state: routes::AppState,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish()
    }
}

impl Server {
    /// Validates `config`, opens its indexes and binds the listen address.
    /// Environment settings are the caller's to apply ([`ServerConfig::resolve_env`]).
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        Self::bind_with_vector_root(config, None).await
    }

    /// [`Server::bind`] with the S3 Vectors API's root in a store the
    /// caller built (a wrapped or in-memory store) instead of
    /// `vectors.root`'s URI, which is then only reported.
    pub async fn bind_with_vector_root(
        mut config: ServerConfig,
        root: Option<IndexLocation>,
    ) -> Result<Self, ServerError> {
        if let Some(root) = &root {
            config.vectors.root = Some(root.uri.clone());
        }
        config.validate()?;
        let metrics = telemetry::prometheus();
        let compute = ComputePool::new(config.compute_threads).map_err(|source| ServerError::ComputePool { source })?;
        tracing::info!(threads = compute.threads(), "compute pool");
        let open = OpenOptions {
            scheduler: FetchScheduler::new(config.fetch_config()),
            compute,
            state_dir: config.state_dir.clone(),
            ..OpenOptions::default()
        };
        let vectors = vectors::VectorApi::open_shared(
            &config.vectors,
            root,
            ivflake::MutableOptions {
                open: open.clone(),
                staleness: ivflake::Staleness::Bounded(Duration::from_millis(config.vectors.staleness_ms)),
                ..ivflake::MutableOptions::default()
            },
        )
        .await?;
        if let Some(api) = &vectors {
            if config.compaction.in_server() {
                vectors::VectorApi::compact_in_background(api, Duration::from_secs(10));
            }
            if !config.vectors.auth {
                tracing::warn!("the S3 Vectors API accepts unsigned requests (--no-auth): local use only");
            }
        }
        let registry = Registry::new(open, config.limits.max_indexes, config.compaction.in_server());
        // Opened side by side: each open waits on the store, not the CPU.
        let opened = futures::future::join_all(
            config
                .indexes
                .iter()
                .map(|(name, index)| registry.open(name, index.clone())),
        )
        .await;
        for entry in opened {
            registry.insert(entry?)?;
        }

        accept::raise_open_file_limit(config.http.max_connections);
        let bind_failed = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = accept::listen(config.listen, config.http.max_connections).map_err(bind_failed)?;
        let local_addr = listener.local_addr().map_err(bind_failed)?;
        let auth = auth::Auth::new(config.auth.token.clone(), config.auth.search_token.clone())
            .with_write(config.auth.write_token.clone());
        if auth.enabled() {
            tracing::info!("bearer-token auth is on");
        } else if !local_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %local_addr,
                "listening beyond loopback with no bearer token: any client that reaches this address may add, \
                 remove and search indexes (set {} and {})",
                config.auth.token_env,
                config.auth.search_token_env
            );
        }
        let state = Arc::new(routes::Shared {
            registry,
            admission: Admission::new(config.limits.max_queries_in_flight, "query vectors"),
            requests: Admission::new(config.limits.max_requests_in_flight, "requests"),
            body_bytes: Admission::new(config.limits.max_body_bytes_in_flight, "bytes of request bodies"),
            config,
            metrics,
            draining: AtomicBool::new(false),
            vectors,
        });
        let router = routes::router(state.clone(), auth);
        Ok(Self {
            listener,
            local_addr,
            router,
            state,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves an index from a store the caller built (a wrapped or in-memory
    /// store), beside those of the config. `config.uri` is only reported.
    pub async fn add_index(&self, name: &str, location: IndexLocation, config: IndexConfig) -> Result<(), ServerError> {
        let limits = &self.state.config.limits;
        validate_name(name, limits.max_name_len).map_err(|reason| ServerError::InvalidIndexName {
            name: name.to_string(),
            reason,
        })?;
        config
            .check(&self.state.config.defaults, limits)
            .map_err(|(key, reason)| ServerError::InvalidIndexSetting {
                index: name.to_string(),
                key,
                reason,
            })?;
        self.state.registry.add_at(name, location, config).await?;
        Ok(())
    }

    /// Names of the indexes served.
    pub fn index_names(&self) -> Vec<String> {
        self.state.registry.all().iter().map(|e| e.name.clone()).collect()
    }

    /// Serves until `shutdown` resolves. Then `/readyz` turns 503 at once,
    /// the server keeps accepting for `shutdown_ready_delay_ms` (so a load
    /// balancer sees it go unready first), stops accepting, and lets
    /// requests in flight finish, for at most `shutdown_grace_ms`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self {
            listener,
            local_addr,
            router,
            state,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let draining = {
            let mut stop = stop_rx;
            let state = state.clone();
            async move {
                // An Err means the sender is gone without a signal: keep serving.
                if stop.wait_for(|s| *s).await.is_err() {
                    futures::future::pending::<()>().await;
                }
                state.draining.store(true, Ordering::Relaxed);
                let delay = Duration::from_millis(state.config.shutdown_ready_delay_ms);
                if !delay.is_zero() {
                    tracing::info!(
                        delay_ms = delay.as_millis() as u64,
                        "shutting down: not ready; still accepting"
                    );
                    tokio::time::sleep(delay).await;
                }
                tracing::info!(
                    queries_in_flight = state.admission.in_flight(),
                    "shutting down: no new connections; draining requests in flight"
                );
            }
        };
        let persisting = state.config.state_dir.is_some().then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PROBE_COUNT_PERIOD);
                every.tick().await;
                loop {
                    every.tick().await;
                    persist_probe_counts(&state.registry).await;
                }
            })
        });
        // Histograms keep every sample until drained; without a scrape
        // they would grow with each request.
        let upkeep = {
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(METRICS_UPKEEP_PERIOD);
                loop {
                    every.tick().await;
                    metrics.run_upkeep();
                    // What a burst of connections freed goes back to the OS, so
                    // resident memory falls back after it (glibc keeps it otherwise).
                    ivflake::release_free_memory();
                }
            })
        };
        tracing::info!(addr = %local_addr, indexes = state.registry.count(), "serving");
        let connections = accept::accept_until(listener, router, &state.config.http, draining).await;
        // The listener is closed; the grace period starts now.
        let grace = Duration::from_millis(state.config.shutdown_grace_ms);
        tokio::select! {
            () = connections.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(
                    queries_in_flight = state.admission.in_flight(),
                    "shutdown grace period over; abandoning requests still in flight"
                );
            }
        }
        upkeep.abort();
        // Stopped either way: the periodic save ends, and the counts are saved once more.
        if let Some(task) = persisting {
            task.abort();
            persist_probe_counts(&state.registry).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often probe counts are saved under `state_dir`: losing a minute of
/// counts on a crash costs little, and the file is a few bytes per list.
const PROBE_COUNT_PERIOD: Duration = Duration::from_secs(60);

/// How often histogram samples are folded into their buckets when nobody
/// scrapes `/metrics`: the exporter's own default upkeep period.
const METRICS_UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Saves every index's probe counts, on the blocking pool (file I/O).
async fn persist_probe_counts(registry: &Registry) {
    let indexes: Vec<(String, ivflake::IvfIndex)> = registry
        .all()
        .iter()
        .map(|e| (e.name.clone(), e.current().index.clone()))
        .collect();
    let saved = tokio::task::spawn_blocking(move || {
        for (name, index) in indexes {
            if let Err(e) = index.persist_probe_counts() {
                tracing::warn!(index = %name, error = %e, "cannot save probe counts");
            }
        }
    })
    .await;
    if let Err(e) = saved {
        tracing::warn!(error = %e, "saving probe counts failed");
    }
}

/// Binds and runs a server until `shutdown` resolves (what `ivflake serve` calls).
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}
