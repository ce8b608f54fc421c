//! `get(ids)`, and the rows a compaction keeps: where the kept-rows
//! segments (`kept.rs`) meet the log. A get resolves each id against the
//! writes since the base (in memory; raw vectors by a range read of their
//! record), then the segments newest first. A compaction writes one
//! segment of every id its log changed, raw vectors read back from their
//! records.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::delta::{DeltaBuilder, Found, RowRef, VectorAt};
use super::kept::{KeptRow, Segment, SegmentWriter};
use super::{MutableIndex, Version};
use crate::error::{Error, Result};

/// Log records a compaction reads at once to keep their raw vectors.
const RECORDS_IN_FLIGHT: usize = 8;

/// Most ids one `get` takes.
pub const MAX_GET_IDS: usize = 10_000;

/// What keeping a compaction's rows did.
pub(super) struct Kept {
    pub name: String,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

fn new_segment_name() -> String {
    let id = crate::commit::unique_id();
    format!(
        "{}/{:016x}{:016x}.parquet",
        super::version::ROWS_DIR,
        id,
        crate::commit::unique_id() ^ id.rotate_left(29)
    )
}

impl MutableIndex {
    /// Writes the segment of every id `builder` changed since the base:
    /// raw vectors read back from their records (one GET each), attributes
    /// gathered from the records' batches. `None` when nothing changed.
    pub(super) async fn keep_rows(
        &self,
        version: &Version,
        builder: &DeltaBuilder,
        code_size: usize,
    ) -> Result<Option<Kept>> {
        let changes = builder.changes();
        if changes.is_empty() {
            return Ok(None);
        }
        let (d, n) = (version.d, changes.len());
        let snapshot = builder.snapshot();
        let schema = snapshot.schema.clone();
        let (vectors, has_vector, bytes_read) = if version.keep_vectors {
            self.change_vectors(d, code_size, &changes).await?
        } else {
            (Vec::new(), vec![false; n], 0)
        };
        let name = new_segment_name();
        let mut writer = SegmentWriter::start(&self.shared.root, &name, d, &schema).await?;
        for start in (0..n).step_by(super::kept::ROW_GROUP_ROWS) {
            let end = (start + super::kept::ROW_GROUP_ROWS).min(n);
            let part = &changes[start..end];
            let rows: Vec<Option<RowRef>> = part.iter().map(|(_, c)| c.map(|(_, r)| r)).collect();
            let chunk = if version.keep_vectors {
                vectors[start * d..end * d].to_vec()
            } else {
                vec![0f32; (end - start) * d]
            };
            writer
                .write(
                    part.iter().map(|(id, _)| *id).collect(),
                    part.iter().map(|(_, c)| c.is_none()).collect(),
                    chunk,
                    has_vector[start..end].to_vec(),
                    &snapshot.gather_rows(&schema, &rows)?,
                )
                .await?;
        }
        let bytes_written = writer.finish().await?;
        Ok(Some(Kept {
            name,
            bytes_read,
            bytes_written,
        }))
    }

    /// The raw vectors of `changes` (row for row; zeros and `false` for
    /// deletes), each record read once, and the bytes read.
    pub(super) async fn change_vectors(
        &self,
        d: usize,
        code_size: usize,
        changes: &[(i64, Option<(VectorAt, RowRef)>)],
    ) -> Result<(Vec<f32>, Vec<bool>, u64)> {
        let n = changes.len();
        let mut vectors = vec![0f32; n * d];
        let mut has_vector = vec![false; n];
        let mut bytes_read = 0u64;
        let mut by_record: std::collections::BTreeMap<u64, Vec<(usize, usize)>> = Default::default();
        for (slot, (_, change)) in changes.iter().enumerate() {
            if let Some((at, _)) = change {
                by_record.entry(at.position).or_default().push((slot, at.row as usize));
            }
        }
        // Records read a few at a time (each one GET), in log order.
        let mut records = futures::stream::iter(by_record)
            .map(|(position, rows)| async move {
                let record = self.read_record((d, code_size), position).await?;
                Ok::<_, Error>((position, rows, record))
            })
            .buffered(RECORDS_IN_FLIGHT);
        while let Some((position, rows, record)) = records.try_next().await? {
            bytes_read += (record.vectors.len() * 4 + record.codes.len() + record.ids.len() * 16) as u64;
            for (slot, row) in rows {
                let from = record
                    .vectors
                    .get(row * d..(row + 1) * d)
                    .ok_or_else(|| Error::Internal(format!("record {position} has no row {row}")))?;
                vectors[slot * d..(slot + 1) * d].copy_from_slice(from);
                has_vector[slot] = true;
            }
        }
        Ok((vectors, has_vector, bytes_read))
    }

    /// Each id's raw vector (when kept) and attributes, or `None` for an
    /// id the index does not hold. Reads the writes since the base from
    /// memory (raw vectors by one range read of their records) and older
    /// ones from the kept-rows segments, newest first. Ids that came with
    /// a Faiss file the index was created from, and were not written
    /// since, have no kept row: `None`.
    pub async fn get(&self, ids: &[i64]) -> Result<Vec<Option<KeptRow>>> {
        self.get_rows(ids, true).await
    }

    /// [`MutableIndex::get`], reading raw vectors only `with_vectors`
    /// (the attributes alone cost no read for writes since the base).
    pub async fn get_rows(&self, ids: &[i64], with_vectors: bool) -> Result<Vec<Option<KeptRow>>> {
        if ids.is_empty() || ids.len() > MAX_GET_IDS {
            return Err(Error::invalid(
                "ids",
                format!("get takes 1 to {MAX_GET_IDS} ids, got {}", ids.len()),
            ));
        }
        match self.shared.options.staleness {
            super::Staleness::Strong => self.refresh().await?,
            super::Staleness::Bounded(bound) => {
                self.refresh_older_than(bound).await?;
            }
        }
        let mut out: Vec<Option<KeptRow>> = vec![None; ids.len()];
        let mut from_log: Vec<(usize, VectorAt)> = Vec::new();
        let mut row_refs = Vec::new();
        let mut untouched: Vec<usize> = Vec::new();
        // Under the lock only what the delta says of each id; the rows are
        // gathered after, from the snapshot of that moment.
        let (d, keep_vectors, segments, snapshot) = {
            let state = self.shared.state.lock().await;
            for (i, &id) in ids.iter().enumerate() {
                match state.builder.find(id) {
                    Found::Live(at, row) => {
                        from_log.push((i, at));
                        row_refs.push(Some(row));
                    }
                    Found::Deleted => {}
                    Found::Untouched => untouched.push(i),
                }
            }
            let v = &state.version;
            (v.d, v.keep_vectors, v.rows.clone(), state.builder.snapshot())
        };
        let written = snapshot.gather_rows(&snapshot.schema, &row_refs)?;
        for (row, &(i, _)) in from_log.iter().enumerate() {
            out[i] = Some(KeptRow::from_arrow(None, &written, row, self.uri())?);
        }
        if keep_vectors && with_vectors {
            self.read_log_vectors(d, &from_log, &mut out).await?;
        }
        for name in segments.iter().rev() {
            if untouched.is_empty() {
                break;
            }
            let segment = self.segment(name).await?;
            let mut wanted: Vec<i64> = untouched.iter().map(|&i| ids[i]).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let found = segment.lookup(&wanted).await?;
            untouched.retain(|&i| match found.get(&ids[i]) {
                Some(row) => {
                    out[i] = row.clone();
                    false
                }
                None => true,
            });
        }
        Ok(out)
    }

    /// The raw vectors of entries written since the base, by range reads
    /// of their records (one request per record, ranges coalesced).
    async fn read_log_vectors(
        &self,
        d: usize,
        from_log: &[(usize, VectorAt)],
        out: &mut [Option<KeptRow>],
    ) -> Result<()> {
        let mut by_record: std::collections::BTreeMap<u64, Vec<(usize, VectorAt)>> = Default::default();
        for &(i, at) in from_log {
            by_record.entry(at.position).or_default().push((i, at));
        }
        let bytes = (d * 4) as u64;
        let reads = by_record.into_iter().map(|(position, entries)| async move {
            let path = self.shared.log.path(position);
            let ranges: Vec<std::ops::Range<u64>> = entries
                .iter()
                .map(|(_, at)| {
                    let start = at.offset + at.row as u64 * bytes;
                    start..start + bytes
                })
                .collect();
            let got = self
                .shared
                .root
                .store
                .get_ranges(&path, &ranges)
                .await
                .map_err(|e| Error::from_store(&format!("{}/{path}", self.shared.root.uri), None, e))?;
            Ok::<_, Error>((entries, got))
        });
        for (entries, got) in futures::future::try_join_all(reads).await? {
            for ((i, _), raw) in entries.into_iter().zip(got) {
                if raw.len() as u64 != bytes {
                    return Err(Error::ShortRead {
                        list: 0,
                        expected: bytes,
                        got: raw.len() as u64,
                    });
                }
                if let Some(row) = out[i].as_mut() {
                    row.vector = Some(
                        raw.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Segment `name`, opened once.
    pub(super) async fn segment(&self, name: &str) -> Result<Arc<Segment>> {
        if let Some(s) = self.shared.segments.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(s);
        }
        let segment = Arc::new(Segment::open(self.shared.root.child(name)?).await?);
        if let Ok(mut m) = self.shared.segments.lock() {
            m.insert(name.to_string(), segment.clone());
        }
        Ok(segment)
    }
}
