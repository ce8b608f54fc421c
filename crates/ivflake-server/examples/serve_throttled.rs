//! Two servers in one process over one in-memory store behind object_store's
//! `ThrottledStore` (`DELAY_MS` before every GET, PUT, LIST and DELETE; it
//! honours conditional creates, as S3 does): `benchmarks/bench_s3vectors.py`
//! measures the S3 Vectors API and the native API against a store a round
//! trip away without an S3 server's own service time. The first server
//! (WARM.toml) caches lists; the second (COLD.toml, `memory_bytes = 0`)
//! fetches every query's lists. Each serves the vector root `s3v/` and the
//! writable index `nat` (`native/`, created here with D and FACTORY).
//!
//! ```text
//! cargo run --release -p ivflake-server --example serve_throttled -- WARM.toml COLD.toml DELAY_MS D FACTORY
//! ```
//!
//! Prints `ready` once both listen, and serves until stdin closes.

use std::sync::Arc;
use std::time::Duration;

use ivflake::{IndexLocation, Metric, MutableIndex, MutableOptions};
use ivflake_server::{IndexConfig, Server, ServerConfig};
use object_store::memory::InMemory;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::ObjectStore;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [warm, cold, delay, d, factory] = &args[..] else {
        return Err("usage: serve_throttled WARM.toml COLD.toml DELAY_MS D FACTORY".into());
    };
    let delay = Duration::from_millis(delay.parse()?);
    let store: Arc<dyn ObjectStore> = Arc::new(ThrottledStore::new(
        InMemory::new(),
        ThrottleConfig {
            wait_get_per_call: delay,
            wait_put_per_call: delay,
            wait_list_per_call: delay,
            wait_list_with_delimiter_per_call: delay,
            wait_delete_per_call: delay,
            ..ThrottleConfig::default()
        },
    ));
    let at = |prefix: &str| IndexLocation::new(store.clone(), prefix, format!("memory:///{prefix}"));
    MutableIndex::create_at(at("native"), d.parse()?, Metric::L2, factory, MutableOptions::default()).await?;
    let mut servers = Vec::new();
    for path in [warm, cold] {
        let mut config = ServerConfig::load(std::path::Path::new(path))?;
        config.resolve_env();
        let server = Server::bind_with_vector_root(config, Some(at("s3v"))).await?;
        let native = IndexConfig {
            writable: true,
            compact_unindexed_entries: Some(0),
            ..IndexConfig::new("memory:///native")
        };
        server.add_index("nat", at("native"), native).await?;
        servers.push(server);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for server in servers {
        let mut stopped = stopped.clone();
        running.push(tokio::spawn(server.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    println!("ready");
    let _ = tokio::task::spawn_blocking(|| std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1])).await;
    let _ = stop.send(true);
    for r in running {
        r.await??;
    }
    Ok(())
}
