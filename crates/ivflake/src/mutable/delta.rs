//! The writes since the base, as a search reads them: per list, runs of
//! entries in the base's list format (the sources of a list the scan stage
//! reads after the base file's), and the tombstones that hide base entries
//! whose id was since upserted or deleted. `DeltaBuilder` applies log
//! records in log order; each apply publishes a new immutable
//! `DeltaSnapshot`, rebuilding only the lists the record touched. Each
//! entry also points at its attribute row (a row of its record's batch):
//! the select stage and compaction gather a run's rows from those.
//!
//! A list's runs are sealed runs, shared by every later snapshot while
//! their entries stay where they are, and a fresh run of what was appended
//! after them: a publish copies the fresh entries, and seals them once
//! there are `FRESH_RUN` of them, merging sealed runs so that each is at
//! least twice the next (an entry is copied O(log n) times, not once per
//! commit). An entry moved out of a sealed run (a delete or an overwrite
//! swaps the last entry into its slot) unseals that run and those after it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;

use super::record::Record;
use crate::attributes::rows;
use crate::error::Result;
use crate::layout::ListRange;

/// Entries appended to a list before they are sealed into a run of their own.
const FRESH_RUN: usize = 4096;

/// An entry's attribute row: (record batch, row); `NO_ROW` for none.
pub(crate) type RowRef = (u32, u32);
const NO_ROW: RowRef = (u32::MAX, 0);

/// One list's run: its bytes, entry count, and each entry's attribute row.
#[derive(Debug, Clone)]
struct Run {
    bytes: Arc<Bytes>,
    count: u64,
    rows: Arc<Vec<RowRef>>,
}

/// The writes a search sees: one version of the delta.
#[derive(Debug)]
pub(crate) struct DeltaSnapshot {
    /// The last log position applied; `None` before the first.
    pub position: Option<u64>,
    /// Per list, its runs of entries written since the base (each codes,
    /// then ids, as the base's array lists store them), in entry order.
    runs: Vec<Vec<Run>>,
    /// Ids upserted or deleted since the base, sorted: hidden in the base.
    pub tombstones: Arc<Vec<i64>>,
    /// Their bloom filter, built once here rather than by every scan.
    pub tombstone_bloom: Arc<Vec<u64>>,
    /// Live entries in the runs.
    pub entries: u64,
    /// The attribute columns: the base's, then those writes added.
    pub schema: SchemaRef,
    /// The records' attribute batches the runs' rows point into.
    batches: Arc<Vec<Arc<RecordBatch>>>,
    /// The entries' text index, built by the first text search of this
    /// snapshot (`text.rs`).
    pub text: std::sync::OnceLock<Arc<super::delta_text::DeltaText>>,
}

impl DeltaSnapshot {
    /// List `list`'s runs, in entry order, each with its range within it.
    pub fn runs(&self, list: usize) -> impl Iterator<Item = (Arc<Bytes>, ListRange)> + '_ {
        self.runs.get(list).into_iter().flatten().map(|run| {
            (
                run.bytes.clone(),
                ListRange {
                    offset: 0,
                    len: run.bytes.len() as u64,
                    count: run.count,
                },
            )
        })
    }

    /// Whether writes have put entries in list `list`.
    pub fn has_entries(&self, list: usize) -> bool {
        self.runs.get(list).is_some_and(|r| !r.is_empty())
    }

    /// The attributes of list `list`'s runs, entry for entry, as `schema`
    /// (columns no write gave are null); `None` when it has none.
    pub fn run_attributes(&self, list: usize, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        if !self.has_entries(list) {
            return Ok(None);
        }
        // `NO_ROW` names no batch: a row of nulls.
        let rows: Vec<Option<RowRef>> = self.runs[list]
            .iter()
            .flat_map(|run| run.rows.iter().copied().map(Some))
            .collect();
        self.gather_rows(schema, &rows).map(Some)
    }

    /// Attribute rows as `schema`, row `i` from `rows[i]` (`None`: nulls).
    pub fn gather_rows(&self, schema: &SchemaRef, rows: &[Option<RowRef>]) -> Result<RecordBatch> {
        let sources: Vec<Option<&RecordBatch>> = self.batches.iter().map(|b| Some(b.as_ref())).collect();
        let picks: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| r.map_or((usize::MAX, 0), |(b, r)| (b as usize, r as usize)))
            .collect();
        rows::gather(schema, &sources, &picks)
    }

    /// Every live entry: (id, list, attribute row), list by list.
    pub fn live_entries(&self) -> Vec<(i64, u32, Option<RowRef>)> {
        let mut out = Vec::with_capacity(self.entries as usize);
        for (list, runs) in self.runs.iter().enumerate() {
            for run in runs {
                let ids_at = run.bytes.len() - run.count as usize * 8;
                for (i, raw) in run.bytes[ids_at..].chunks_exact(8).enumerate() {
                    let id = i64::from_le_bytes(raw.try_into().unwrap_or_default());
                    let row = run.rows.get(i).copied().filter(|&r| r != NO_ROW);
                    out.push((id, list as u32, row));
                }
            }
        }
        out
    }

    /// Whether any write carried attributes (or the base has them).
    pub fn has_attributes(&self) -> bool {
        !self.schema.fields().is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Deleted,
    Live { list: u32, slot: u32 },
}

#[derive(Debug, Default, Clone)]
struct ListDelta {
    ids: Vec<i64>,
    codes: Vec<u8>,
    rows: Vec<RowRef>,
    /// Each entry's record: (log position, row in it).
    sources: Vec<(u64, u32)>,
    /// Runs published earlier whose entries are still this list's first
    /// ones, in order and unchanged: later snapshots share them.
    sealed: Vec<Run>,
}

impl ListDelta {
    /// Entries `range` as a run.
    fn run(&self, range: std::ops::Range<usize>, code_size: usize) -> Run {
        let mut bytes = Vec::with_capacity(range.len() * (code_size + 8));
        bytes.extend_from_slice(&self.codes[range.start * code_size..range.end * code_size]);
        for id in &self.ids[range.clone()] {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        Run {
            bytes: Arc::new(Bytes::from(bytes)),
            count: range.len() as u64,
            rows: Arc::new(self.rows[range].to_vec()),
        }
    }

    /// Entries in sealed runs.
    fn sealed_len(&self) -> usize {
        self.sealed.iter().map(|r| r.count as usize).sum()
    }

    /// The runs a snapshot reads: the fresh entries sealed once there are
    /// enough of them, runs merged so each is at least twice the next.
    fn publish(&mut self, code_size: usize) -> Vec<Run> {
        let n = self.ids.len();
        let mut start = self.sealed_len();
        if n - start >= FRESH_RUN {
            self.sealed.push(self.run(start..n, code_size));
            start = n;
            while let [.., a, b] = &self.sealed[..] {
                if b.count * 2 <= a.count {
                    break;
                }
                let from = start - (a.count + b.count) as usize;
                self.sealed.truncate(self.sealed.len() - 2);
                self.sealed.push(self.run(from..start, code_size));
            }
        }
        let mut runs = self.sealed.clone();
        if start < n {
            runs.push(self.run(start..n, code_size));
        }
        runs
    }

    /// Entry `slot` moved: the sealed run holding it and those after it
    /// no longer describe the list.
    fn unseal_from(&mut self, slot: usize) {
        let mut start = 0;
        let keep = self
            .sealed
            .iter()
            .take_while(|run| {
                start += run.count as usize;
                start <= slot
            })
            .count();
        self.sealed.truncate(keep);
    }
}

/// Where a live entry's raw vector is: its record's object and the byte
/// offset in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VectorAt {
    pub position: u64,
    pub row: u32,
    pub offset: u64,
}

/// What the delta says of an id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found {
    /// Written since the base: its raw vector's place and attribute row.
    Live(VectorAt, RowRef),
    /// Deleted since the base.
    Deleted,
    /// Not written since the base.
    Untouched,
}

/// Applies records in order; owns the mutable state behind the snapshots.
#[derive(Clone)]
pub(crate) struct DeltaBuilder {
    code_size: usize,
    changes: HashMap<i64, Change>,
    lists: Vec<ListDelta>,
    /// The next log position to apply.
    next: u64,
    snapshot: Arc<DeltaSnapshot>,
    schema: SchemaRef,
    batches: Arc<Vec<Arc<RecordBatch>>>,
    /// Per applied record with upserts, where its raw vectors start.
    vectors_at: HashMap<u64, u64>,
}

impl DeltaBuilder {
    /// An empty delta for a base of `nlist` lists, whose log starts at
    /// `start`, and whose attribute columns are `schema` (empty for none).
    pub fn new(nlist: usize, code_size: usize, start: u64, schema: SchemaRef) -> Self {
        Self {
            code_size,
            changes: HashMap::new(),
            lists: vec![ListDelta::default(); nlist],
            next: start,
            snapshot: Arc::new(DeltaSnapshot {
                position: start.checked_sub(1),
                runs: vec![Vec::new(); nlist],
                tombstones: Arc::default(),
                tombstone_bloom: Arc::default(),
                entries: 0,
                schema: schema.clone(),
                batches: Arc::default(),
                text: Default::default(),
            }),
            schema,
            batches: Arc::default(),
            vectors_at: HashMap::new(),
        }
    }

    pub fn next_position(&self) -> u64 {
        self.next
    }

    pub fn snapshot(&self) -> Arc<DeltaSnapshot> {
        self.snapshot.clone()
    }

    /// Applies the record at the next position. Its codes must be the
    /// current codec's (the caller re-encodes an older record's vectors).
    pub fn apply(&mut self, record: &Record) -> Result<(), String> {
        let nlist = self.lists.len();
        if record.code_size != self.code_size {
            return Err(format!(
                "{}-byte codes, the base has {}",
                record.code_size, self.code_size
            ));
        }
        if let Some(&bad) = record
            .lists
            .iter()
            .find(|&&l| usize::try_from(l).map_or(true, |l| l >= nlist))
        {
            return Err(format!("an entry of list {bad}, the base has {nlist} lists"));
        }
        let batch = match &record.attributes {
            Some(batch) => Some(self.add_batch(batch)?),
            None => None,
        };
        let mut touched = BTreeSet::new();
        let mut new_ids = Vec::new();
        for &id in &record.deletes {
            self.unlink(id, &mut touched);
            if self.changes.insert(id, Change::Deleted).is_none() {
                new_ids.push(id);
            }
        }
        for (i, &id) in record.ids.iter().enumerate() {
            self.unlink(id, &mut touched);
            let list = record.lists[i] as usize;
            let delta = &mut self.lists[list];
            let slot = delta.ids.len() as u32;
            delta.ids.push(id);
            delta.codes.extend_from_slice(record.code(i));
            delta.rows.push(batch.map_or(NO_ROW, |b| (b, i as u32)));
            delta.sources.push((self.next, i as u32));
            touched.insert(list);
            let live = Change::Live {
                list: list as u32,
                slot,
            };
            if self.changes.insert(id, live).is_none() {
                new_ids.push(id);
            }
        }
        if !record.ids.is_empty() {
            self.vectors_at.insert(self.next, record.vectors_offset());
        }
        self.publish(&touched, new_ids);
        self.next += 1;
        Ok(())
    }

    /// Keeps a record's attribute batch; its new columns join the schema.
    /// A column typed otherwise than the index holds it (two writers racing
    /// to add it) is dropped from this record, the same way in every
    /// process since all apply the log in one order.
    fn add_batch(&mut self, batch: &RecordBatch) -> std::result::Result<u32, String> {
        let (schema, conflicts) = rows::merge_schemas(&self.schema, &batch.schema());
        let batch = if conflicts.is_empty() {
            batch.clone()
        } else {
            tracing::warn!(columns = ?conflicts, "a write log record types these attribute columns otherwise; dropped");
            let keep: Vec<usize> = (0..batch.num_columns())
                .filter(|&i| !conflicts.contains(batch.schema().field(i).name()))
                .collect();
            batch.project(&keep).map_err(|e| e.to_string())?
        };
        self.schema = schema;
        let batches = Arc::make_mut(&mut self.batches);
        if batches.len() >= u32::MAX as usize - 1 {
            return Err("too many attribute batches since the base".into());
        }
        batches.push(Arc::new(batch));
        Ok(batches.len() as u32 - 1)
    }

    /// Takes `id`'s live entry (if any) out of its list: the last entry
    /// moves into its slot.
    fn unlink(&mut self, id: i64, touched: &mut BTreeSet<usize>) {
        let Some(Change::Live { list, slot }) = self.changes.get(&id).copied() else {
            return;
        };
        let (list, slot) = (list as usize, slot as usize);
        let delta = &mut self.lists[list];
        let last = delta.ids.len() - 1;
        delta.unseal_from(slot);
        delta.ids.swap_remove(slot);
        delta.rows.swap_remove(slot);
        delta.sources.swap_remove(slot);
        if slot != last {
            let cs = self.code_size;
            delta.codes.copy_within(last * cs..(last + 1) * cs, slot * cs);
            let moved = delta.ids[slot];
            self.changes.insert(
                moved,
                Change::Live {
                    list: list as u32,
                    slot: slot as u32,
                },
            );
        }
        delta.codes.truncate(last * self.code_size);
        self.changes.insert(id, Change::Deleted);
        touched.insert(list);
    }

    /// A new snapshot: the touched lists' runs rebuilt, the others shared;
    /// `new_ids` merged into the sorted tombstones (linear, not a sort of
    /// them all) and set in their bloom filter (rebuilt only when it grows).
    fn publish(&mut self, touched: &BTreeSet<usize>, mut new_ids: Vec<i64>) {
        let old = &self.snapshot;
        let mut runs = old.runs.clone();
        for &list in touched {
            runs[list] = self.lists[list].publish(self.code_size);
        }
        let (tombstones, tombstone_bloom) = if new_ids.is_empty() {
            (old.tombstones.clone(), old.tombstone_bloom.clone())
        } else {
            new_ids.sort_unstable();
            let ids = merge_sorted(&old.tombstones, &new_ids);
            let bloom = if ivflake_faiss::hidden_bloom_words(ids.len()) == old.tombstone_bloom.len() {
                let mut bloom = old.tombstone_bloom.as_ref().clone();
                ivflake_faiss::add_to_hidden_bloom(&mut bloom, &new_ids);
                bloom
            } else {
                ivflake_faiss::hidden_bloom(&ids)
            };
            (Arc::new(ids), Arc::new(bloom))
        };
        self.snapshot = Arc::new(DeltaSnapshot {
            position: Some(self.next),
            entries: self.lists.iter().map(|l| l.ids.len() as u64).sum(),
            runs,
            tombstones,
            tombstone_bloom,
            schema: self.schema.clone(),
            batches: self.batches.clone(),
            text: Default::default(),
        });
    }

    /// Each list's live entries, for a compaction: (ids, codes).
    pub fn list(&self, list: usize) -> (&[i64], &[u8]) {
        let l = &self.lists[list];
        (&l.ids, &l.codes)
    }

    /// What the writes since the base say of `id`.
    pub fn find(&self, id: i64) -> Found {
        match self.changes.get(&id) {
            None => Found::Untouched,
            Some(Change::Deleted) => Found::Deleted,
            Some(&Change::Live { list, slot }) => {
                let delta = &self.lists[list as usize];
                let (position, row) = delta.sources[slot as usize];
                let at = VectorAt {
                    position,
                    row,
                    offset: self.vectors_at.get(&position).copied().unwrap_or_default(),
                };
                Found::Live(at, delta.rows[slot as usize])
            }
        }
    }

    /// Every id changed since the base, sorted, each with its raw
    /// vector's place and attribute row (`None`: deleted): the rows a
    /// compaction keeps.
    pub fn changes(&self) -> Vec<(i64, Option<(VectorAt, RowRef)>)> {
        let mut out: Vec<(i64, Option<(VectorAt, RowRef)>)> = self
            .changes
            .iter()
            .map(|(&id, change)| match *change {
                Change::Deleted => (id, None),
                Change::Live { list, slot } => {
                    let delta = &self.lists[list as usize];
                    let (position, row) = delta.sources[slot as usize];
                    let offset = self.vectors_at.get(&position).copied().unwrap_or_default();
                    (
                        id,
                        Some((VectorAt { position, row, offset }, delta.rows[slot as usize])),
                    )
                }
            })
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Every id changed since the base, in no order.
    pub fn changed_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.changes.keys().copied()
    }

    /// Whether `id`'s base entry is hidden (upserted or deleted since).
    pub fn hides(&self, id: i64) -> bool {
        self.changes.contains_key(&id)
    }

    /// Ids changed since the base.
    pub fn changed(&self) -> usize {
        self.changes.len()
    }
}

/// Two sorted, disjoint id lists as one sorted list.
fn merge_sorted(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Schema;

    fn record(ids: &[i64], lists: &[i64], deletes: &[i64]) -> Record {
        Record {
            codec: "c".into(),
            d: 1,
            code_size: 1,
            ids: ids.to_vec(),
            lists: lists.to_vec(),
            deletes: deletes.to_vec(),
            codes: ids.iter().map(|&i| i as u8).collect(),
            vectors: ids.iter().map(|&i| i as f32).collect(),
            attributes: None,
        }
    }

    fn run_ids(s: &DeltaSnapshot, list: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = s
            .runs(list)
            .flat_map(|(b, r)| {
                b[r.count as usize..]
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn later_writes_replace_and_delete_earlier_ones() {
        let mut b = DeltaBuilder::new(3, 1, 5, Arc::new(Schema::empty()));
        b.apply(&record(&[1, 2, 3], &[0, 0, 1], &[])).unwrap();
        b.apply(&record(&[2], &[2], &[3, 40])).unwrap();
        let s = b.snapshot();
        assert_eq!(s.position, Some(6));
        assert_eq!(b.next_position(), 7);
        assert_eq!(run_ids(&s, 0), vec![1]);
        assert_eq!(run_ids(&s, 1), Vec::<i64>::new());
        assert_eq!(run_ids(&s, 2), vec![2]);
        assert_eq!(s.entries, 2);
        assert_eq!(*s.tombstones, vec![1, 2, 3, 40]);
        assert_eq!(*s.tombstone_bloom, ivflake_faiss::hidden_bloom(&s.tombstones));
        // Codes follow their ids through the moves.
        let (bytes, range) = s.runs(0).next().unwrap();
        assert_eq!((&bytes[..1], range.count), (&[1u8][..], 1));
    }

    #[test]
    fn entries_keep_their_attribute_rows_through_moves() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        use arrow_array::Array;
        let tagged = |ids: &[i64], tags: &[i64]| Record {
            attributes: Some(
                RecordBatch::try_from_iter([(
                    "tag",
                    Arc::new(arrow_array::Int64Array::from(tags.to_vec())) as arrow_array::ArrayRef,
                )])
                .unwrap(),
            ),
            ..record(ids, &vec![0; ids.len()], &[])
        };
        let mut b = DeltaBuilder::new(1, 1, 0, Arc::new(Schema::empty()));
        b.apply(&tagged(&[1, 2, 3], &[10, 20, 30])).unwrap();
        // 1 is moved out (3 takes its slot); 4 arrives without attributes.
        b.apply(&tagged(&[1], &[11])).unwrap();
        b.apply(&record(&[4], &[0], &[])).unwrap();
        let s = b.snapshot();
        let batch = s.run_attributes(0, &s.schema).unwrap().unwrap();
        let tags = batch.column(0).as_primitive::<Int64Type>();
        let ids: Vec<i64> = s
            .runs(0)
            .flat_map(|(bytes, range)| {
                bytes[range.count as usize..]
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let by_id: HashMap<i64, Option<i64>> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, (!tags.is_null(i)).then(|| tags.value(i))))
            .collect();
        assert_eq!(
            by_id,
            HashMap::from([(1, Some(11)), (2, Some(20)), (3, Some(30)), (4, None)])
        );
        assert!(s.run_attributes(0, &s.schema).is_ok() && s.has_attributes());
    }

    /// Many appends in small records, with overwrites and deletes landing
    /// in sealed runs and in the fresh one: every snapshot's runs hold
    /// exactly the live entries, each code with its id and attribute row;
    /// sealed runs are shared between snapshots, and runs shrink
    /// geometrically.
    #[test]
    fn sealed_runs_are_shared_and_stay_exact() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        let tagged = |ids: &[i64], deletes: &[i64]| Record {
            attributes: Some(
                RecordBatch::try_from_iter([(
                    "tag",
                    Arc::new(arrow_array::Int64Array::from(ids.to_vec())) as arrow_array::ArrayRef,
                )])
                .unwrap(),
            ),
            ..record(ids, &vec![0; ids.len()], deletes)
        };
        let mut b = DeltaBuilder::new(1, 1, 0, Arc::new(Schema::empty()));
        let mut live = std::collections::BTreeSet::new();
        let mut shared = 0;
        for step in 0..120i64 {
            let ids: Vec<i64> = (0..500).map(|i| step * 500 + i).collect();
            // Overwrite an early id (in a sealed run) and delete a recent one.
            let mut deletes = Vec::new();
            let mut write = ids.clone();
            if step % 7 == 3 {
                write.push(step * 13);
            }
            if step % 5 == 4 {
                deletes.push(step * 500 - 1);
            }
            let before = b.snapshot();
            b.apply(&tagged(&write, &deletes)).unwrap();
            live.extend(write.iter().copied());
            for d in &deletes {
                live.remove(d);
            }
            let s = b.snapshot();
            let runs: Vec<(Arc<Bytes>, ListRange)> = s.runs(0).collect();
            shared += runs
                .iter()
                .filter(|(bytes, _)| before.runs(0).any(|(old, _)| Arc::ptr_eq(&old, bytes)))
                .count();
            for pair in runs.windows(2).take(runs.len().saturating_sub(2)) {
                assert!(
                    pair[0].1.count >= 2 * pair[1].1.count,
                    "step {step}: runs shrink geometrically"
                );
            }
            assert!(runs.len() <= 12, "step {step}: {} runs", runs.len());
            let mut ids = Vec::new();
            for (bytes, range) in &runs {
                let n = range.count as usize;
                for (i, c) in bytes[n..].chunks_exact(8).enumerate() {
                    let id = i64::from_le_bytes(c.try_into().unwrap());
                    assert_eq!(bytes[i], id as u8, "step {step}: the code of {id}");
                    ids.push(id);
                }
            }
            let tags = s.run_attributes(0, &s.schema).unwrap().unwrap();
            let tags = tags.column(0).as_primitive::<Int64Type>();
            assert_eq!(tags.values().to_vec(), ids, "step {step}: each entry's row");
            ids.sort_unstable();
            assert_eq!(ids, live.iter().copied().collect::<Vec<_>>(), "step {step}");
        }
        // Without sealing no run would ever be shared (each publish rebuilt the list).
        assert!(shared > 60, "sealed runs are shared between snapshots ({shared})");
    }

    #[test]
    fn a_record_for_another_shape_is_refused() {
        let mut b = DeltaBuilder::new(2, 1, 0, Arc::new(Schema::empty()));
        assert!(b.apply(&record(&[1], &[2], &[])).unwrap_err().contains("list 2"));
    }
}
