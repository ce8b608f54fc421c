//! Listing a mutable index's ids in order, a page at a time: the writes
//! since the base (from memory) merged with the kept-rows segments (their
//! id and `deleted` pages), the newest word on each id winning. Every id
//! written through the log is in one of them, so this lists every id of an
//! index created empty; ids of a Faiss file an index was created from, and
//! never written since, are not listed.

use std::ops::RangeInclusive;

use super::delta::Found;
use super::MutableIndex;
use crate::error::{Error, Result};

/// Most ids one page may hold.
pub const MAX_LIST_IDS: usize = 10_000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedIds {
    /// Live ids, ascending.
    pub ids: Vec<i64>,
    /// Where the next page starts after (`None`: the range is exhausted).
    /// A page may hold fewer than `limit` ids and still have a next one.
    pub next_after: Option<i64>,
}

impl MutableIndex {
    /// Up to `limit` live ids in `range` greater than `after`, ascending.
    pub async fn list_ids(&self, range: RangeInclusive<i64>, after: Option<i64>, limit: usize) -> Result<ListedIds> {
        if limit == 0 || limit > MAX_LIST_IDS {
            return Err(Error::invalid(
                "limit",
                format!("a page lists 1 to {MAX_LIST_IDS} ids, got {limit}"),
            ));
        }
        if let super::Staleness::Bounded(bound) = self.shared.options.staleness {
            self.refresh_older_than(bound).await?;
        } else {
            self.refresh().await?;
        }
        let from = match after {
            Some(i64::MAX) => {
                return Ok(ListedIds {
                    ids: Vec::new(),
                    next_after: None,
                })
            }
            Some(a) => (a + 1).max(*range.start()),
            None => *range.start(),
        };
        let to = *range.end();
        if from > to {
            return Ok(ListedIds {
                ids: Vec::new(),
                next_after: None,
            });
        }
        // Each source's first `limit` ids past `after`; a source cut short
        // at `limit` is only complete up to its last id, so the page is too.
        let (mut delta, segments) = {
            let state = self.shared.state.lock().await;
            let changed: Vec<(i64, bool)> = state
                .builder
                .changed_ids()
                .filter(|id| (from..=to).contains(id))
                .map(|id| (id, matches!(state.builder.find(id), Found::Deleted)))
                .collect();
            (changed, state.version.rows.clone())
        };
        delta.sort_unstable();
        let mut sources = vec![delta];
        for name in segments.iter().rev() {
            let segment = self.segment(name).await?;
            sources.push(segment.ids_in(&(from..=to), limit).await?);
        }
        let mut complete_to = to;
        for source in &mut sources {
            if source.len() > limit {
                source.truncate(limit);
            }
            if source.len() == limit {
                complete_to = complete_to.min(source[limit - 1].0);
            }
        }
        // Newest first: the first source naming an id decides it.
        let mut decided: std::collections::BTreeMap<i64, bool> = std::collections::BTreeMap::new();
        for source in &sources {
            for &(id, deleted) in source.iter().take_while(|(id, _)| *id <= complete_to) {
                decided.entry(id).or_insert(deleted);
            }
        }
        let mut ids = Vec::new();
        let mut last = complete_to;
        for (id, deleted) in decided {
            if !deleted {
                ids.push(id);
                if ids.len() == limit {
                    last = id;
                    break;
                }
            }
        }
        let next_after = (last < to).then_some(last);
        Ok(ListedIds { ids, next_after })
    }
}
