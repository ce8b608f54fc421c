//! The stages after the scan for wrapped indexes, in Faiss's order:
//! refine (an `IndexRefine`: each query's `k × k_factor` candidates from the
//! scan re-scored with their refine codes and the best `k` kept, as
//! `IndexRefine::search` does) and the id map (an `IndexIDMap`: positions
//! to the user's ids). Each reads its entries in one wave (`entries.rs`)
//! from its own [`SearchIo`], so the stats show what it cost. Compute only.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ivflake_faiss::{Neighbors, RefineInfo};

use super::entries::EntryRegion;
use super::options::SearchParams;
use super::IvfIndex;
use crate::error::{Error, Result};
use crate::fetch::ListRequest;
use crate::stats::{SearchIo, SearchStats};

/// An index's id map: in memory when it fits `OpenOptions::id_map_memory_bytes`,
/// else read by page for each search's results.
pub(crate) enum IdMap {
    Resident(Vec<i64>),
    Paged(EntryRegion),
}

impl IdMap {
    pub fn resident_bytes(&self) -> u64 {
        match self {
            IdMap::Resident(ids) => (ids.len() * 8) as u64,
            IdMap::Paged(_) => 0,
        }
    }
}

/// Which wave of entries a search waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryWave {
    Refine,
    IdMap,
}

/// One search's refine and id-map stages.
pub(super) struct Rerank {
    k: usize,
    refined: bool,
    mapped: bool,
    pub io: Arc<SearchIo>,
}

impl Rerank {
    /// `None` when the index has neither wrapper.
    pub fn new(index: &IvfIndex, params: &SearchParams) -> Option<Self> {
        let inner = &index.inner;
        if inner.refine.is_none() && inner.id_map.is_none() {
            return None;
        }
        Some(Self {
            k: params.k,
            refined: inner.refine.is_none(),
            mapped: inner.id_map.is_none(),
            io: Arc::new(SearchIo::default()),
        })
    }

    /// The next wave of entries this search needs, after mapping ids in
    /// memory when the map is there; `None` when both stages are done.
    pub fn next_wave(
        &mut self,
        index: &IvfIndex,
        neighbors: &mut Neighbors,
    ) -> Result<Option<(EntryWave, Vec<ListRequest>)>> {
        let inner = &index.inner;
        if !self.refined {
            if let Some(region) = &inner.refine {
                return Ok(Some((
                    EntryWave::Refine,
                    region.requests(&neighbors.labels, index.uri())?,
                )));
            }
        }
        if !self.mapped {
            match &inner.id_map {
                Some(IdMap::Resident(map)) => {
                    for label in neighbors.labels.iter_mut().filter(|l| **l >= 0) {
                        *label = *map.get(*label as usize).ok_or_else(|| out_of_map(index, *label))?;
                    }
                    self.mapped = true;
                }
                Some(IdMap::Paged(region)) => {
                    return Ok(Some((
                        EntryWave::IdMap,
                        region.requests(&neighbors.labels, index.uri())?,
                    )));
                }
                None => self.mapped = true,
            }
        }
        Ok(None)
    }

    /// A wave's pages: refine scores the candidates, the id map maps them.
    /// `queries` are the search's, untransformed (the refine index scores
    /// them as given). A page that failed fails the search (there is no
    /// partial refine).
    pub fn absorb(
        &mut self,
        index: &IvfIndex,
        kind: EntryWave,
        fetched: Vec<(usize, Result<Arc<Bytes>>)>,
        queries: &[f32],
        neighbors: &mut Neighbors,
        stats: &mut SearchStats,
    ) -> Result<()> {
        let pages: HashMap<usize, Arc<Bytes>> = fetched
            .into_iter()
            .map(|(page, bytes)| bytes.map(|b| (page, b)))
            .collect::<Result<_>>()?;
        let (gets, bytes) = self.io.gets_and_bytes();
        let inner = &index.inner;
        match kind {
            EntryWave::Refine => {
                let region = inner
                    .refine
                    .as_ref()
                    .ok_or_else(|| Error::Internal("a refine wave for an index without refine".into()))?;
                let len = region.entry_len();
                let mut codes = vec![0u8; neighbors.labels.len() * len];
                for (label, code) in neighbors.labels.iter().zip(codes.chunks_exact_mut(len)) {
                    if *label >= 0 {
                        let entry = region.entry(&pages, *label).ok_or_else(|| missing(index, *label))?;
                        code.copy_from_slice(entry);
                    }
                }
                stats.refine_candidates = neighbors.labels.iter().filter(|l| **l >= 0).count();
                *neighbors = inner.faiss.refine(queries, self.k, neighbors, &codes)?;
                (stats.refine_gets, stats.refine_bytes) = (gets, bytes);
                self.refined = true;
            }
            EntryWave::IdMap => {
                let Some(IdMap::Paged(region)) = &inner.id_map else {
                    return Err(Error::Internal(
                        "an id map wave for an index without a paged map".into(),
                    ));
                };
                for label in neighbors.labels.iter_mut().filter(|l| **l >= 0) {
                    let entry = region.entry(&pages, *label).ok_or_else(|| missing(index, *label))?;
                    *label = i64::from_le_bytes(entry.try_into().map_err(|_| missing(index, *label))?);
                }
                (stats.id_map_gets, stats.id_map_bytes) = (gets - stats.refine_gets, bytes - stats.refine_bytes);
                self.mapped = true;
            }
        }
        Ok(())
    }
}

/// The most bytes the refine and id-map waves of a search of `n` queries
/// read (0 without them): part of its byte budget from the start.
pub(super) fn max_entry_bytes(index: &IvfIndex, params: &SearchParams, n: usize) -> u64 {
    let inner = &index.inner;
    let refine = inner
        .refine
        .as_ref()
        .map_or(0, |r| r.max_wave_bytes(n.saturating_mul(scan_k(index, params))));
    let id_map = match &inner.id_map {
        Some(IdMap::Paged(region)) => region.max_wave_bytes(n.saturating_mul(params.k)),
        _ => 0,
    };
    refine.saturating_add(id_map)
}

/// Candidates the scan keeps for `k` results: `k × k_factor` under a refine
/// stage (the search's `k_factor`, else the file's), else `k`.
pub(super) fn scan_k(index: &IvfIndex, params: &SearchParams) -> usize {
    match index.info().refine {
        Some(refine) => RefineInfo::k_base(params.k, params.k_factor.unwrap_or(refine.k_factor)),
        None => params.k,
    }
}

fn out_of_map(index: &IvfIndex, label: i64) -> Error {
    Error::Corrupt {
        uri: index.uri().to_string(),
        reason: format!("id {label} is past the id map's {} entries", index.info().ntotal),
    }
}

fn missing(index: &IvfIndex, label: i64) -> Error {
    Error::Internal(format!("{}: entry {label} was not in its wave", index.uri()))
}
