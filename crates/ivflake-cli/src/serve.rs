//! `ivflake serve` (being written).

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(_args: ServeArgs) -> Result<()> {
    bail!("`ivflake serve` is not built yet")
}
