//! `ivflake inspect`: what an index is, read from its header alone; for a
//! mutable index's prefix, its version and unindexed writes, then its base.

use anyhow::{Context, Result};
use ivflake::{IndexMemory, IvfIndex, MutableIndex, MutableOptions, OpenStats, ResidualTable};
use serde::Serialize;

use crate::open::HeaderArgs;
use crate::util::{human_bytes, write_stdout};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The index: s3://…, gs://…, az://…, file:///… or a local path; or a
    /// mutable index's prefix (ending in "/", or a local directory).
    pub uri: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub header: HeaderArgs,
}

#[derive(Debug, Serialize, PartialEq)]
struct Report {
    uri: String,
    #[serde(rename = "type")]
    type_name: String,
    d: usize,
    ivf_d: usize,
    has_transform: bool,
    metric: &'static str,
    ntotal: i64,
    nlist: usize,
    code_size: usize,
    default_nprobe: usize,
    header_bytes: u64,
    data_bytes: u64,
    file_bytes: u64,
    e_tag: Option<String>,
    list_sizes: ListSizes,
    /// What the open index holds in memory, by part.
    memory: IndexMemory,
    /// What opening it cost.
    open: OpenStats,
    /// Whether a checksum sidecar describing this file was found (every
    /// fetched list is then verified).
    checksum_sidecar: bool,
    /// The attribute columns of the attributes object beside the index;
    /// `None` when there is none.
    attributes: Option<Vec<String>>,
    /// An IndexRefine around the IVF: its k_factor and refine code bytes a vector.
    refine: Option<RefineReport>,
    /// An IndexIDMap(2): whether its user ids are held in memory (else read per search).
    id_map: Option<IdMapReport>,
    /// Where the lists are read from when not from this file (on-disk lists).
    lists_uri: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct RefineReport {
    k_factor: f32,
    code_size: usize,
}

#[derive(Debug, Serialize, PartialEq)]
struct IdMapReport {
    map2: bool,
    in_memory: bool,
}

/// The distribution of vectors per inverted list (nearest-rank percentiles).
#[derive(Debug, Default, Serialize, PartialEq)]
struct ListSizes {
    min: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: f64,
    empty: usize,
}

impl ListSizes {
    fn of(mut sizes: Vec<u64>) -> Self {
        if sizes.is_empty() {
            return Self::default();
        }
        sizes.sort_unstable();
        let n = sizes.len();
        let rank = |p: f64| sizes[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            min: sizes[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sizes[n - 1],
            mean: sizes.iter().sum::<u64>() as f64 / n as f64,
            empty: sizes.iter().filter(|&&s| s == 0).count(),
        }
    }
}

impl Report {
    fn of(index: &IvfIndex, attributes: Option<Vec<String>>) -> Self {
        let info = index.info();
        let layout = index.list_ranges();
        Self {
            uri: index.uri().to_string(),
            type_name: info.type_name.clone(),
            d: info.d,
            ivf_d: info.ivf_d,
            has_transform: info.has_transform,
            metric: info.metric.name(),
            ntotal: info.ntotal,
            nlist: info.nlist,
            code_size: info.code_size,
            default_nprobe: info.default_nprobe,
            header_bytes: layout.header_len(),
            data_bytes: layout.data_len(),
            file_bytes: index.file_len(),
            e_tag: index.e_tag().map(str::to_string),
            list_sizes: ListSizes::of(layout.iter().map(|(_, r)| r.count).collect()),
            memory: index.memory(),
            open: index.open_stats(),
            checksum_sidecar: index.is_verified(),
            attributes,
            refine: info.refine.map(|r| RefineReport {
                k_factor: r.k_factor,
                code_size: r.code_size,
            }),
            id_map: info.id_map.map(|m| IdMapReport {
                map2: m.map2,
                in_memory: index.memory().id_map_bytes > 0 || info.ntotal == 0,
            }),
            lists_uri: info.on_disk.as_ref().map(|_| index.lists_object().uri().to_string()),
        }
    }

    fn table(&self, setting: ResidualTable) -> String {
        let bytes = |b: u64| format!("{b} ({})", human_bytes(b));
        let s = &self.list_sizes;
        let rows: Vec<(&str, String)> = vec![
            ("uri", self.uri.clone()),
            ("type", self.type_name.clone()),
            (
                "d",
                if self.has_transform {
                    format!("{} (IVF works in {} after the pre-transform)", self.d, self.ivf_d)
                } else {
                    self.d.to_string()
                },
            ),
            ("metric", self.metric.to_string()),
            ("ntotal", self.ntotal.to_string()),
            ("nlist", self.nlist.to_string()),
            (
                "code_size",
                format!("{} bytes per vector (+8 for its id)", self.code_size),
            ),
            ("default nprobe", self.default_nprobe.to_string()),
            ("header bytes", bytes(self.header_bytes)),
            ("list data bytes", bytes(self.data_bytes)),
            ("file bytes", bytes(self.file_bytes)),
            ("etag", self.e_tag.clone().unwrap_or_else(|| "-".into())),
            (
                "checksum sidecar",
                if self.checksum_sidecar {
                    "yes: every fetched list is verified".into()
                } else {
                    "none (`ivflake manifest` writes one)".into()
                },
            ),
            (
                "attributes",
                match &self.attributes {
                    Some(columns) => columns.join(", "),
                    None => "none".into(),
                },
            ),
            (
                "refine",
                match &self.refine {
                    Some(r) => format!(
                        "k_factor {} (k × k_factor candidates re-ranked; --k-factor sets it), {} bytes a vector",
                        r.k_factor, r.code_size
                    ),
                    None => "none".into(),
                },
            ),
            (
                "id map",
                match &self.id_map {
                    Some(m) => format!(
                        "{}, user ids {}",
                        if m.map2 { "IndexIDMap2" } else { "IndexIDMap" },
                        if m.in_memory { "in memory" } else { "read per search" }
                    ),
                    None => "none".into(),
                },
            ),
            ("lists in", self.lists_uri.clone().unwrap_or_else(|| "this file".into())),
            (
                "list sizes",
                format!(
                    "min {}  p50 {}  p90 {}  p99 {}  max {}  mean {:.1}",
                    s.min, s.p50, s.p90, s.p99, s.max, s.mean
                ),
            ),
            ("empty lists", format!("{} of {}", s.empty, self.nlist)),
            ("memory", bytes(self.memory.total_bytes())),
            ("  quantizer", bytes(self.memory.quantizer_bytes)),
            ("  codec", bytes(self.memory.codec_bytes)),
            ("  transforms", bytes(self.memory.transform_bytes)),
            ("  residual table", residual_table(&self.memory, setting)),
            ("  layout", bytes(self.memory.layout_bytes)),
            (
                "open",
                format!(
                    "{:.1} ms, {} GETs, {} of the file",
                    self.open.ms,
                    self.open.gets,
                    human_bytes(self.open.bytes)
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
    }
}

/// The residual table's line: what it takes, or why it was not built.
fn residual_table(m: &IndexMemory, setting: ResidualTable) -> String {
    if m.residual_table_size == 0 {
        "none (this codec has none)".into()
    } else if m.residual_table_bytes == 0 {
        let size = human_bytes(m.residual_table_size);
        match setting {
            ResidualTable::Off => format!("not built: --residual-table off ({size} if built)"),
            _ => format!(
                "not built: {size} is over the {} budget",
                human_bytes(setting.max_bytes())
            ),
        }
    } else {
        format!(
            "{} ({}), built in {:.1} ms",
            m.residual_table_bytes,
            human_bytes(m.residual_table_bytes),
            m.residual_table_build_us as f64 / 1000.0
        )
    }
}

/// A mutable index: its version and the writes not yet compacted.
#[derive(Debug, Serialize, PartialEq)]
struct MutableReport {
    prefix: String,
    version: u64,
    /// The factory a compaction trains (empty: the base's own).
    factory: String,
    trained: bool,
    log_position: Option<u64>,
    unindexed_entries: u64,
    changed_ids: usize,
}

pub async fn run(args: InspectArgs) -> Result<()> {
    if crate::search::is_prefix(&args.uri) {
        let mutable = MutableIndex::open(&args.uri, MutableOptions::default()).await?;
        let version = mutable.version();
        let (unindexed_entries, changed_ids) = mutable.unindexed();
        let report = MutableReport {
            prefix: mutable.uri().to_string(),
            version: mutable.version_position(),
            factory: version.factory,
            trained: version.trained,
            log_position: mutable.log_position(),
            unindexed_entries,
            changed_ids,
        };
        let text = if args.json {
            serde_json::to_string(&report).context("cannot serialize the report")? + "\n"
        } else {
            format!(
                "mutable index      {}\nversion            {}\nfactory            {:?} ({})\nlog position       {}\nunindexed entries  {}\nchanged ids        {}\nbase:\n",
                report.prefix,
                report.version,
                report.factory,
                if report.trained { "trained" } else { "exact until its first trained compaction" },
                report.log_position.map_or("none".into(), |p| p.to_string()),
                report.unindexed_entries,
                report.changed_ids,
            )
        };
        write_stdout(text.as_bytes())?;
        return inspect(&args, mutable.base()).await;
    }
    let index = args.header.open(&args.uri).await?;
    inspect(&args, index).await
}

async fn inspect(args: &InspectArgs, index: IvfIndex) -> Result<()> {
    let attributes = index
        .attributes()
        .await
        .context("cannot read the attributes object beside the index")?
        .map(|a| a.schema().fields().iter().map(|f| f.name().clone()).collect());
    let report = Report::of(&index, attributes);
    let text = if args.json {
        serde_json::to_string(&report).context("cannot serialize the report")? + "\n"
    } else {
        report.table(args.header.residual_table())
    };
    write_stdout(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_size_percentiles() {
        let s = ListSizes::of((1..=100).rev().collect());
        assert_eq!((s.min, s.p50, s.p90, s.p99, s.max, s.empty), (1, 50, 90, 99, 100, 0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        let s = ListSizes::of(vec![0, 0, 7]);
        assert_eq!((s.min, s.p50, s.max, s.empty), (0, 0, 7, 2));
        assert_eq!(ListSizes::of(vec![]), ListSizes::default());
        assert_eq!(ListSizes::of(vec![5]).p99, 5);
    }
}
