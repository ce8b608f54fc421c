//! `ivflake bench` (being written).

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> Result<()> {
    bail!("`ivflake bench` is not built yet")
}
