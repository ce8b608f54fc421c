//! `ivflake manifest` (being written).

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {}

pub async fn run(_args: ManifestArgs) -> Result<()> {
    bail!("`ivflake manifest` is not built yet")
}
