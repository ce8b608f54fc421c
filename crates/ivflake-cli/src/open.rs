//! How `search` and `inspect` open an index: the library's own settings as
//! flags, each defaulting to the library's default.

use anyhow::{Context, Result};
use ivflake::{FetchConfig, FetchScheduler, IndexLocation, IvfIndex, OpenOptions, Preload, ResidualTable};

use crate::util::{parse_size, positive};

/// Open-time settings (`--residual-table`, `--residual-table-bytes`).
#[derive(Debug, Clone, clap::Args)]
pub struct HeaderArgs {
    /// IVF-PQ's precomputed residual table: `off`, `on` (as faiss.read_index),
    /// or `auto` (built when it takes at most --residual-table-bytes).
    #[arg(long, value_enum, default_value_t = ResidualTableArg::Auto)]
    pub residual_table: ResidualTableArg,
    /// The `auto` table's budget; K, M and G mean KiB, MiB and GiB.
    #[arg(long, value_parser = parse_size, default_value_t = ivflake::DEFAULT_RESIDUAL_TABLE_BYTES)]
    pub residual_table_bytes: u64,
    /// An IndexIDMap's user ids are loaded at open when they take at most
    /// this, else read per search; K, M and G mean KiB, MiB and GiB.
    #[arg(long, value_parser = parse_size, default_value_t = ivflake::DEFAULT_ID_MAP_MEMORY_BYTES)]
    pub id_map_memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResidualTableArg {
    Off,
    On,
    Auto,
}

impl HeaderArgs {
    pub fn residual_table(&self) -> ResidualTable {
        match self.residual_table {
            ResidualTableArg::Off => ResidualTable::Off,
            ResidualTableArg::On => ResidualTable::On,
            ResidualTableArg::Auto => ResidualTable::Auto {
                max_bytes: self.residual_table_bytes,
            },
        }
    }

    /// Opens `uri` (its header only) with these settings and the library's defaults.
    pub async fn open(&self, uri: &str) -> Result<IvfIndex> {
        open(uri, FetchConfig::default(), self, Preload::Off).await
    }
}

/// Every open and fetch setting `search` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub header: HeaderArgs,
    /// Bytes of fetched lists to keep in memory; 0 makes every search read
    /// the store (cold).
    #[arg(long, value_parser = parse_size, default_value_t = FetchConfig::default().memory_cache_bytes)]
    pub memory_cache_bytes: u64,
    /// Range GETs one search may have in flight.
    #[arg(long, value_parser = positive, default_value_t = FetchConfig::default().max_in_flight_per_search)]
    pub max_in_flight_per_search: usize,
    /// Probed lists at most this many bytes apart in the file share one GET.
    #[arg(long, value_parser = parse_size, default_value_t = FetchConfig::default().coalesce_gap)]
    pub coalesce_gap: u64,
    /// `auto`: before searching, load every list into the memory cache with
    /// large merged GETs when they fit a quarter of it (fewer, larger GETs
    /// than a probe at a time); `off`: fetch the lists each search probes.
    #[arg(long, value_enum, default_value_t = PreloadArg::Off)]
    pub preload: PreloadArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreloadArg {
    Off,
    Auto,
}

impl OpenArgs {
    /// Opens `uri` and, under `--preload auto`, waits for the preload.
    pub async fn open(&self, uri: &str) -> Result<IvfIndex> {
        // The flags' defaults are the library's own, so this changes nothing unset.
        let config = FetchConfig {
            memory_cache_bytes: self.memory_cache_bytes,
            max_in_flight_per_search: self.max_in_flight_per_search,
            coalesce_gap: self.coalesce_gap,
            ..FetchConfig::default()
        };
        let preload = match self.preload {
            PreloadArg::Off => Preload::Off,
            PreloadArg::Auto => Preload::auto(),
        };
        let index = open(uri, config, &self.header, preload).await?;
        if preload != Preload::Off {
            let status = index.preloaded().await;
            tracing::info!(?status, "preload finished");
        }
        Ok(index)
    }
}

/// Opens `uri` (its header only) with the library's defaults.
pub async fn open_index(uri: &str) -> Result<IvfIndex> {
    let location = IndexLocation::parse(uri, &FetchConfig::default()).context("cannot open the index")?;
    IvfIndex::open_at(location, OpenOptions::default())
        .await
        .context("cannot open the index")
}

async fn open(uri: &str, config: FetchConfig, header: &HeaderArgs, preload: Preload) -> Result<IvfIndex> {
    let location = IndexLocation::parse(uri, &config).context("cannot open the index")?;
    let options = OpenOptions {
        scheduler: FetchScheduler::new(config),
        residual_table: header.residual_table(),
        id_map_memory_bytes: header.id_map_memory_bytes,
        preload,
        ..OpenOptions::default()
    };
    IvfIndex::open_at(location, options)
        .await
        .context("cannot open the index")
}
