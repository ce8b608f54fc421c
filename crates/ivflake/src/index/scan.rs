//! The scan stage: the lists a search reads, each made of one or more runs
//! of entries (the base file's list first; entries written after it, next),
//! scanned by Faiss layer by layer with each layer's tombstones hidden, and
//! the layers merged (`ivflake_faiss::Index::scan`). Queries are split
//! across the compute pool; each chunk runs the same single-threaded scan,
//! so results do not depend on the split. Must not fetch or cache.

use std::sync::Arc;

use bytes::Bytes;
use ivflake_faiss::{IdFilter, ListSlice, Neighbors, Scan, ScanLayer};
use rayon::prelude::*;

use super::view::ListView;
use super::IvfIndex;
use crate::compute::Cancel;
use crate::error::{Error, Result};
use crate::layout::{ListFormat, ListRange};
use crate::mutable::DeltaSnapshot;

/// Most queries one scan job takes before checking for cancellation: a
/// batch of 1,024 queries at nprobe 1,024 stops within 1/32 of its work.
const SCAN_CHUNK_QUERIES: usize = 32;

/// The entries of one list a search reads: runs of entries, each a buffer
/// in the index's list format. Run 0 is the base file's list.
pub(super) struct ListEntries {
    runs: Vec<ListView>,
}

impl ListEntries {
    /// A list's entries: the base file's run (empty when the base holds
    /// none) and, for a mutable index, the runs written since (`delta`).
    pub fn with_delta(
        list: usize,
        base: Option<ListView>,
        delta: Option<&DeltaSnapshot>,
        format: ListFormat,
    ) -> Result<Self> {
        let view = |bytes, range: &ListRange| {
            ListView::with_gap(bytes, range, format, 0)
                .map_err(|reason| Error::Internal(format!("list {list}: {reason}")))
        };
        let base = match base {
            Some(view) => view,
            None => view(Arc::new(Bytes::new()), &ListRange::default())?,
        };
        let mut runs = vec![base];
        if let Some(delta) = delta {
            for (bytes, range) in delta.runs(list) {
                runs.push(view(bytes, &range)?);
            }
        }
        Ok(Self { runs })
    }

    /// The base file's run (empty for a list only writes have filled).
    pub fn base(&self) -> &ListView {
        &self.runs[0]
    }

    /// The ids of the runs after the base's (a mutable index's writes).
    pub fn later_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.runs[1..].iter().flat_map(|run| run.slice().ids.iter().copied())
    }

    /// The ids of every run, in order.
    pub fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.runs.iter().flat_map(|run| run.slice().ids.iter().copied())
    }

    /// The base run followed by later runs of the same list.
    #[cfg(test)]
    pub fn with_runs(runs: Vec<ListView>) -> Self {
        Self { runs }
    }
}

/// What the scan stage reads.
pub(super) struct ScanInput<'a> {
    /// Transformed queries.
    pub xt: &'a [f32],
    pub k: usize,
    /// Each query's probed lists, the same number per query (`-1`: not probed).
    pub lists: &'a [i64],
    pub coarse_distances: &'a [f32],
    /// The lists the scan reads, in list order.
    pub scanned: &'a [(usize, &'a ListEntries)],
    /// Per layer, ids it hides (tombstones, sorted) and their bloom filter
    /// (`ivflake_faiss::hidden_bloom`); layers past the end hide none.
    pub hidden: &'a [(&'a [i64], &'a [u64])],
    pub filter: IdFilter<'a>,
    /// Checked before each chunk of queries: a search whose caller is gone
    /// stops scanning.
    pub cancel: &'a Cancel,
}

/// Scans `input` with Faiss on the compute pool (the caller is a job on it).
pub(super) fn scan(index: &IvfIndex, input: &ScanInput<'_>) -> Result<Neighbors> {
    let inner = &index.inner;
    let layers = input
        .scanned
        .iter()
        .map(|(_, e)| e.runs.len())
        .max()
        .unwrap_or(1)
        .max(1);
    // Buffers run by run, list by list: buffer of (list i, run r) at first[i] + r.
    let mut buffers: Vec<ListSlice<'_>> = Vec::with_capacity(input.scanned.len() * layers);
    let mut first = Vec::with_capacity(input.scanned.len());
    for (_, entries) in input.scanned {
        first.push(buffers.len());
        buffers.extend(entries.runs.iter().map(ListView::slice));
    }
    // `scanned` is in list order: a probe's slot is a binary search.
    let slots: Vec<Vec<i32>> = (0..layers)
        .map(|r| {
            input
                .lists
                .iter()
                .map(|&l| {
                    usize::try_from(l)
                        .ok()
                        .and_then(|l| input.scanned.binary_search_by_key(&l, |(list, _)| *list).ok())
                        .filter(|&i| r < input.scanned[i].1.runs.len())
                        .map_or(-1, |i| (first[i] + r) as i32)
                })
                .collect()
        })
        .collect();

    let d = inner.info.ivf_d;
    let n = input.xt.len() / d.max(1);
    let nprobe = input.lists.len() / n.max(1);
    let scan_queries = |queries: std::ops::Range<usize>| -> Result<Neighbors> {
        input.cancel.check()?;
        let probes = queries.start * nprobe..queries.end * nprobe;
        let layer_slots: Vec<ScanLayer<'_>> = slots
            .iter()
            .enumerate()
            .map(|(r, s)| {
                let (hidden, hidden_bloom) = input.hidden.get(r).copied().unwrap_or((&[], &[]));
                ScanLayer {
                    slots: &s[probes.clone()],
                    hidden,
                    hidden_bloom,
                }
            })
            .collect();
        Ok(inner.faiss.scan(&Scan {
            queries: &input.xt[queries.start * d..queries.end * d],
            k: input.k,
            lists: &input.lists[probes.clone()],
            coarse_distances: &input.coarse_distances[probes],
            buffers: &buffers,
            layers: &layer_slots,
            filter: input.filter,
        })?)
    };
    let compute = &inner.options.compute;
    if n <= 1 {
        // Nothing to split: scan here, which for a job running inline
        // (`ComputePool::run_short`) saves a hop onto the pool.
        return scan_queries(0..n);
    }
    // At most SCAN_CHUNK_QUERIES per chunk, so a cancelled batch stops
    // within one chunk's work.
    let chunk = n.div_ceil(compute.threads().max(1)).clamp(1, SCAN_CHUNK_QUERIES);
    let parts: Vec<Result<Neighbors>> = compute.install(|| {
        (0..n)
            .step_by(chunk)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| scan_queries(start..(start + chunk).min(n)))
            .collect()
    });
    let mut out = Neighbors {
        distances: Vec::with_capacity(n * input.k),
        labels: Vec::with_capacity(n * input.k),
    };
    for part in parts {
        let part = part?;
        out.distances.extend(part.distances);
        out.labels.extend(part.labels);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The seam writes will use: a list read as a base run plus a later run,
    //! with tombstones hiding base entries, equals Faiss in memory after the
    //! same `add_with_ids` and `remove_ids`.

    use std::sync::Arc;

    use bytes::Bytes;
    use ivflake_faiss::{ListFormat, Metric};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    use super::*;
    use crate::layout::ListRange;
    use crate::location::IndexLocation;

    const D: usize = 16;

    fn vectors(n: usize, seed: u64) -> Vec<f32> {
        // A small LCG: deterministic, no dependency.
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n * D)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    /// One list's later run, in the index's list format, as a fetched buffer.
    fn run_bytes(format: ListFormat, codes: &[u8], ids: &[i64]) -> Vec<u8> {
        let id_bytes = ids.iter().flat_map(|i| i.to_le_bytes());
        match format {
            ListFormat::Array { .. } => codes.iter().copied().chain(id_bytes).collect(),
            _ => {
                let mut out = (ids.len() as u64).to_le_bytes().to_vec();
                out.extend(id_bytes);
                out.extend((codes.len() as u64).to_le_bytes());
                out.extend_from_slice(codes);
                out
            }
        }
    }

    fn normalized(neighbors: &Neighbors, k: usize) -> Vec<(Vec<f32>, Vec<i64>)> {
        ivflake_testkit::normalized_results(&neighbors.labels, &neighbors.distances, k)
    }

    async fn check(factory: &str, metric: Metric, with_tombstones: bool) {
        check_deleting(factory, metric, with_tombstones, (100..160).collect()).await;
    }

    async fn check_deleting(factory: &str, metric: Metric, with_tombstones: bool, deleted: Vec<i64>) {
        let (nb, nd, nq, k, nprobe) = (2000, 300, 20, 10, 6);
        let mut built = ivflake_faiss::Index::factory(D, factory, metric).unwrap();
        built.train(&vectors(nb, 1)).unwrap();
        let base_ids: Vec<i64> = (0..nb as i64).collect();
        built.add_with_ids(&vectors(nb, 2), &base_ids).unwrap();
        let file = built.to_bytes().unwrap();

        let store = Arc::new(InMemory::new());
        store.put(&Path::from("i.faiss"), file.clone().into()).await.unwrap();
        let location = IndexLocation::new(store, Path::from("i.faiss"), "memory:///i.faiss");
        let index = IvfIndex::open_at(location, Default::default()).await.unwrap();
        let format = index.info().list_format;

        // Later writes: new ids, and new vectors for some base ids (upserts);
        // tombstones hide the replaced and the deleted base entries.
        let mut delta_ids: Vec<i64> = (nb as i64..(nb + nd) as i64 - 50).collect();
        delta_ids.extend(0..50);
        let delta = vectors(nd, 3);
        let tombstones: Vec<i64> = if with_tombstones {
            let mut t: Vec<i64> = (0..50).chain(deleted.iter().copied()).collect();
            t.sort_unstable();
            t.dedup();
            t
        } else {
            Vec::new()
        };
        let mut reference = ivflake_faiss::read_index(&file).unwrap();
        if with_tombstones {
            reference.remove_ids(&tombstones).unwrap();
        }
        reference.add_with_ids(&delta, &delta_ids).unwrap();

        let encoded = index.inner.faiss.encode_entries(&delta).unwrap();
        let nlist = index.info().nlist;
        let mut per_list: Vec<(Vec<u8>, Vec<i64>)> = vec![Default::default(); nlist];
        for (i, &list) in encoded.lists.iter().enumerate() {
            per_list[list as usize].0.extend_from_slice(encoded.code(i));
            per_list[list as usize].1.push(delta_ids[i]);
        }
        let file = Bytes::from(file);
        let entries: Vec<(usize, ListEntries)> = (0..nlist)
            .map(|list| {
                let range = *index.list_ranges().get(list).unwrap();
                let base = Arc::new(file.slice(range.offset as usize..(range.offset + range.len) as usize));
                let mut runs = vec![ListView::new(base, &range, format).unwrap()];
                let (codes, ids) = &per_list[list];
                if !ids.is_empty() {
                    let packed = index.inner.faiss.pack_list_codes(codes).unwrap();
                    let bytes = run_bytes(format, &packed, ids);
                    let run_range = ListRange {
                        offset: 0,
                        len: bytes.len() as u64,
                        count: ids.len() as u64,
                    };
                    runs.push(ListView::new(Arc::new(Bytes::from(bytes)), &run_range, format).unwrap());
                }
                (list, ListEntries::with_runs(runs))
            })
            .collect();
        let scanned: Vec<(usize, &ListEntries)> = entries.iter().map(|(l, e)| (*l, e)).collect();

        let queries = vectors(nq, 4);
        let xt = index.inner.faiss.apply_transform(&queries).unwrap();
        let assignment = index.inner.faiss.coarse_search(&xt, nprobe).unwrap();
        let cancel = Cancel::default();
        let input = ScanInput {
            xt: &xt,
            k,
            lists: &assignment.lists,
            coarse_distances: &assignment.distances,
            scanned: &scanned,
            hidden: &[(&tombstones, &ivflake_faiss::hidden_bloom(&tombstones))],
            filter: IdFilter::All,
            cancel: &cancel,
        };
        let ours = scan(&index, &input).unwrap();
        // Once its caller is gone, the same scan stops before any chunk.
        drop(cancel.on_drop());
        assert!(matches!(scan(&index, &input), Err(crate::Error::Cancelled)));
        let expected = reference.search(&queries, k, nprobe).unwrap();
        assert_eq!(normalized(&ours, k), normalized(&expected, k), "{factory} {metric}");
        for (i, id) in ours.labels.iter().enumerate() {
            assert!(
                !with_tombstones || !deleted.contains(id),
                "{factory}: deleted id {id} returned for query {}",
                i / k
            );
        }
        let upserted_seen = ours.labels.iter().filter(|&&id| (0..50).contains(&id)).count();
        assert_eq!(
            upserted_seen,
            expected.labels.iter().filter(|&&id| (0..50).contains(&id)).count(),
            "{factory}: upserted ids come from their new vectors"
        );
    }

    #[tokio::test]
    async fn two_runs_and_tombstones_equal_faiss_after_add_and_remove() {
        check("IVF32,Flat", Metric::L2, true).await;
        check("IVF32,PQ4np", Metric::InnerProduct, true).await;
        check("OPQ4,IVF32,SQ8", Metric::L2, true).await;
        check("IVF32,RaBitQ", Metric::L2, true).await;
    }

    /// Most of the base hidden: a query's best 2k are mostly tombstones,
    /// so the scan falls back to the tombstones as a selector.
    #[tokio::test]
    async fn mostly_hidden_lists_still_equal_faiss() {
        let deleted: Vec<i64> = (50..2000).filter(|i| i % 10 != 0).collect();
        check_deleting("IVF32,Flat", Metric::L2, true, deleted.clone()).await;
        check_deleting("IVF32,PQ4np", Metric::InnerProduct, true, deleted).await;
    }

    #[tokio::test]
    async fn fast_scan_lists_take_a_packed_later_run() {
        // Faiss cannot remove ids from block lists; the later run alone.
        check("IVF32,PQ8x4fs", Metric::L2, false).await;
    }
}
