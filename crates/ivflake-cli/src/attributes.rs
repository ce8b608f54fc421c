//! `ivflake attributes`: attach a Parquet table of attributes to an index
//! that exists (built by faiss-cpu, say), joined on the ids in its lists.
//! `ivflake build --input data.parquet` writes the same object through
//! [`attach`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use bytes::Bytes;
use ivflake::attributes::attributes_path;
use ivflake::{IndexLocation, IvfIndex, ParquetTable};

use crate::open::open_index;
use crate::util::{human_bytes, write_object};

#[derive(Debug, clap::Args)]
pub struct AttributesArgs {
    /// The index: s3://…, gs://…, az://…, file:///… or a local path.
    pub uri: String,
    /// A Parquet file: the id column and the attributes (string, int64, float64, bool).
    #[arg(long)]
    pub from: PathBuf,
    /// The int64 column holding the ids the index stores.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Columns of the file to leave out (a vector column, say). Repeatable.
    #[arg(long)]
    pub drop: Vec<String>,
}

pub async fn run(args: AttributesArgs) -> Result<()> {
    let table = read_table(&args.from).await?;
    let ids = table.ids(&args.id_column)?;
    let mut dropped: Vec<&str> = args.drop.iter().map(String::as_str).collect();
    dropped.push(&args.id_column);
    let attributes = table.without(&dropped)?;
    let index = open_index(&args.uri).await?;
    let (uri, bytes) = attach(&index, &attributes, &ids).await?;
    println!(
        "wrote attributes of {} rows ({} columns) to {uri} ({})",
        index.info().ntotal,
        attributes.batch.num_columns(),
        human_bytes(bytes)
    );
    Ok(())
}

/// Reads a whole local Parquet file.
pub async fn read_table(path: &std::path::Path) -> Result<ParquetTable> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table = tokio::task::spawn_blocking(move || ParquetTable::read(Bytes::from(bytes)))
        .await
        .context("the Parquet-reading task failed")?
        .with_context(|| format!("cannot read {} as Parquet", path.display()))?;
    Ok(table)
}

/// Writes `<index>.attrs.parquet`: `table`'s rows (row `i` has id `ids[i]`)
/// in the order of the index's lists. Returns its URI and size.
pub async fn attach(index: &IvfIndex, table: &ParquetTable, ids: &[i64]) -> Result<(String, u64)> {
    let lists = index
        .list_ids()
        .await
        .context("cannot read the ids in the index's lists")?;
    let (table, ids) = (table.clone(), ids.to_vec());
    let bytes = tokio::task::spawn_blocking(move || ivflake::write_attributes(&table, &ids, &lists))
        .await
        .context("the attribute-writing task failed")?
        .context("cannot write the attributes")?;
    let object = index.object();
    let location = IndexLocation::new(
        object.location.store.clone(),
        attributes_path(&object.location.path),
        format!("{}{}", index.uri(), ivflake::ATTRIBUTES_SUFFIX),
    );
    write_object(&location, &bytes).await?;
    // Read back: the footer must describe this index's lists.
    let reopened = open_index(index.uri()).await?;
    reopened
        .attributes()
        .await
        .context("the attributes were written but cannot be read back")?
        .context("the attributes were written but are not found")?;
    Ok((location.uri, bytes.len() as u64))
}
