//! The writes since the base, as a search reads them: per list, one run of
//! entries in the base's list format (the second source of a list the scan
//! stage reads after the base file's), and the tombstones that hide base
//! entries whose id was since upserted or deleted. `DeltaBuilder` applies
//! log records in log order; each apply publishes a new immutable
//! `DeltaSnapshot`, rebuilding only the lists the record touched.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::record::Record;
use crate::layout::ListRange;

/// The writes a search sees: one version of the delta.
#[derive(Debug, Default)]
pub(crate) struct DeltaSnapshot {
    /// The last log position applied; `None` before the first.
    pub position: Option<u64>,
    /// Per list, its run of entries written since the base (codes, then
    /// ids, as the base's array lists store them) and their count.
    runs: Vec<Option<(Arc<Bytes>, u64)>>,
    /// Ids upserted or deleted since the base, sorted: hidden in the base.
    pub tombstones: Arc<Vec<i64>>,
    /// Their bloom filter, built once here rather than by every scan.
    pub tombstone_bloom: Arc<Vec<u64>>,
    /// Live entries in the runs.
    pub entries: u64,
}

impl DeltaSnapshot {
    /// List `list`'s run and its range within it, when it has one.
    pub fn run(&self, list: usize) -> Option<(Arc<Bytes>, ListRange)> {
        let (bytes, count) = self.runs.get(list)?.as_ref()?;
        Some((
            bytes.clone(),
            ListRange {
                offset: 0,
                len: bytes.len() as u64,
                count: *count,
            },
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0 && self.tombstones.is_empty()
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
}

impl DeltaBuilder {
    /// An empty delta for a base of `nlist` lists, whose log starts at `start`.
    pub fn new(nlist: usize, code_size: usize, start: u64) -> Self {
        Self {
            code_size,
            changes: HashMap::new(),
            lists: vec![ListDelta::default(); nlist],
            next: start,
            snapshot: Arc::new(DeltaSnapshot {
                position: start.checked_sub(1),
                runs: vec![None; nlist],
                ..Default::default()
            }),
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
            touched.insert(list);
            let live = Change::Live {
                list: list as u32,
                slot,
            };
            if self.changes.insert(id, live).is_none() {
                new_ids.push(id);
            }
        }
        self.publish(&touched, new_ids);
        self.next += 1;
        Ok(())
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
        delta.ids.swap_remove(slot);
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
            let delta = &self.lists[list];
            runs[list] = (!delta.ids.is_empty()).then(|| {
                let mut bytes = Vec::with_capacity(delta.codes.len() + delta.ids.len() * 8);
                bytes.extend_from_slice(&delta.codes);
                bytes.extend(delta.ids.iter().flat_map(|id| id.to_le_bytes()));
                (Arc::new(Bytes::from(bytes)), delta.ids.len() as u64)
            });
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
        });
    }

    /// Each list's live entries, for a compaction: (ids, codes).
    pub fn list(&self, list: usize) -> (&[i64], &[u8]) {
        let l = &self.lists[list];
        (&l.ids, &l.codes)
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
        }
    }

    fn run_ids(s: &DeltaSnapshot, list: usize) -> Vec<i64> {
        s.run(list).map_or(Vec::new(), |(b, r)| {
            let mut ids: Vec<i64> = b[r.count as usize..]
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            ids.sort_unstable();
            ids
        })
    }

    #[test]
    fn later_writes_replace_and_delete_earlier_ones() {
        let mut b = DeltaBuilder::new(3, 1, 5);
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
        let (bytes, range) = s.run(0).unwrap();
        assert_eq!((&bytes[..1], range.count), (&[1u8][..], 1));
    }

    #[test]
    fn a_record_for_another_shape_is_refused() {
        let mut b = DeltaBuilder::new(2, 1, 0);
        assert!(b.apply(&record(&[1], &[2], &[])).unwrap_err().contains("list 2"));
    }
}
