//! The wrappers Faiss writes around an IVF index that ivflake serves, as
//! the header describes them: `IndexRefine` (re-ranking), `IndexIDMap`/
//! `IndexIDMap2` (user ids), and on-disk lists (`OnDiskInvertedLists`, whose
//! data lives in a second file). The shim records where each one's bulk
//! starts and reads none of it; callers range-read what a search needs.

use crate::error::{FaissError, FaissErrorKind, Result};
use crate::{ffi, Index, Neighbors};

/// An `IndexRefine` (or `IndexRefineFlat`) around the IVF index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefineInfo {
    /// The file's `k_factor`: the IVF returns `k * k_factor` candidates.
    pub k_factor: f32,
    /// Bytes of one vector's refine code (`4 * d` for `RFlat`).
    pub code_size: usize,
    /// Where vector 0's refine code starts in the file; vector `i`'s is
    /// `code_size` bytes at `codes_offset + i * code_size`.
    pub codes_offset: u64,
}

// k_factor is checked finite at parse.
impl Eq for RefineInfo {}

/// An `IndexIDMap` or `IndexIDMap2`: `ntotal` little-endian i64 user ids
/// from `offset`, the `i`-th for the vector the IVF calls `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapInfo {
    pub offset: u64,
    pub map2: bool,
}

/// Lists kept in a data file of their own (Faiss's `OnDiskInvertedLists`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDiskInfo {
    /// The data file's name as the writer recorded it (often an absolute
    /// path on the writer's machine; only its last part is meaningful).
    pub filename: String,
    /// The data file's length, as the header states it.
    pub data_len: u64,
}

/// Where one on-disk list lives in the data file: its codes are
/// `size * code_size` bytes at `offset`, its ids `size` i64s at
/// `offset + capacity * code_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDiskList {
    pub offset: u64,
    pub capacity: u64,
    pub size: u64,
}

impl RefineInfo {
    /// Candidates the IVF returns for `k` at `k_factor`, as Faiss computes it
    /// (`idx_t(k * k_factor)`, in float).
    pub fn k_base(k: usize, k_factor: f32) -> usize {
        (k as f32 * k_factor) as usize
    }
}

impl Index {
    /// Each on-disk list's place in the data file; empty when the lists are
    /// in the index file.
    pub fn on_disk_lists(&self) -> Result<Vec<OnDiskList>> {
        let flat = ffi::on_disk_lists(&self.inner)?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| OnDiskList {
                offset: c[0],
                capacity: c[1],
                size: c[2],
            })
            .collect())
    }

    /// The refine stage: re-scores each query's `k_base` candidates
    /// (`base`, from the IVF scan, internal ids) with their refine codes
    /// (`codes`: `code_size` bytes per candidate in `base`'s order, any bytes
    /// for a `-1`), and keeps the best `k`, as `IndexRefine::search` does.
    pub fn refine(&self, x: &[f32], k: usize, base: &Neighbors, codes: &[u8]) -> Result<Neighbors> {
        let n = self.rows(x, self.info.d)?;
        if n == 0 || !base.labels.len().is_multiple_of(n) {
            return Err(FaissError::invalid("refine: candidates are not k_base per query"));
        }
        let k_base = base.labels.len() / n;
        if self.info.refine.is_none() {
            return Err(FaissError::new(
                FaissErrorKind::InvalidArgument,
                "the index has no refine stage",
            ));
        }
        let mut distances = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        ffi::refine(
            &self.inner,
            x,
            k,
            k_base,
            &base.labels,
            &base.distances,
            codes,
            &mut distances,
            &mut labels,
        )?;
        Ok(Neighbors { distances, labels })
    }

    /// Faiss's own search of a fully loaded index at `k_factor` (0: the
    /// file's), through its wrappers: the in-memory reference for refined
    /// and id-mapped indexes.
    pub fn search_refined(
        &self,
        x: &[f32],
        k: usize,
        nprobe: usize,
        k_factor: f32,
        filter: crate::IdFilter<'_>,
    ) -> Result<Neighbors> {
        let n = self.rows(x, self.info.d)?;
        let mut distances = vec![0f32; n * k];
        let mut labels = vec![-1i64; n * k];
        let spec = filter.spec();
        ffi::search_full(&self.inner, x, k, nprobe, k_factor, &spec, &mut distances, &mut labels)?;
        Ok(Neighbors { distances, labels })
    }
}
