//! Fixed-size entries read by position from the index object: a refine
//! index's codes and an id map's user ids, which Faiss writes after the lists
//! and which grow with ntotal. They are read in pages of whole entries
//! through the scheduler, like lists (memory and disk tiers, single-flight,
//! GETs of neighbouring pages merged), under a cache identity of their own.
//! Pure bookkeeping: no I/O here.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fetch::{FetchScheduler, ListRequest, VersionPin};
use crate::layout::ListRange;
use crate::object::IndexObject;

/// Bytes a page aims at: a few refine codes, or 128 user ids. Candidates
/// land far apart, so a page's extra entries are rarely used; small pages
/// keep the bytes a search reads near what it needs.
const PAGE_BYTES: u64 = 1024;

/// `count` entries of `entry_len` bytes from `offset` in one index object.
pub(crate) struct EntryRegion {
    pub object: Arc<IndexObject>,
    pub pin: VersionPin,
    offset: u64,
    entry_len: u64,
    count: u64,
    per_page: u64,
}

impl EntryRegion {
    /// `salt` names the region apart from the object's lists ("refine", "id-map").
    pub fn new(
        scheduler: &Arc<FetchScheduler>,
        object: &IndexObject,
        salt: &str,
        offset: u64,
        entry_len: u64,
        count: u64,
    ) -> Self {
        let entry_len = entry_len.max(1);
        let mut per_page = (PAGE_BYTES / entry_len).max(1);
        // Page numbers are cache keys of 32 bits.
        while count.div_ceil(per_page) > u64::from(u32::MAX) {
            per_page *= 2;
        }
        let object = Arc::new(object.region(salt));
        Self {
            pin: scheduler.pin_version(&object),
            object,
            offset,
            entry_len,
            count,
            per_page,
        }
    }

    pub fn entry_len(&self) -> usize {
        self.entry_len as usize
    }

    fn page_range(&self, page: u64) -> ListRange {
        let first = page * self.per_page;
        let entries = self.per_page.min(self.count - first);
        ListRange {
            offset: self.offset + first * self.entry_len,
            len: entries * self.entry_len,
            count: entries,
        }
    }

    /// The pages holding entries `ids` (negative ids skipped), each once,
    /// in order; an id past the region is the file's fault, named.
    pub fn requests(&self, ids: &[i64], uri: &str) -> Result<Vec<ListRequest>> {
        let mut pages = Vec::with_capacity(ids.len());
        for &id in ids.iter().filter(|&&id| id >= 0) {
            let id = id as u64;
            if id >= self.count {
                return Err(Error::Corrupt {
                    uri: uri.to_string(),
                    reason: format!("a list holds id {id}, past the {} entries it indexes", self.count),
                });
            }
            pages.push(id / self.per_page);
        }
        pages.sort_unstable();
        pages.dedup();
        Ok(pages
            .into_iter()
            .map(|page| ListRequest {
                list: page as usize,
                range: self.page_range(page),
                align_at: 0,
            })
            .collect())
    }

    /// The most bytes a wave for `entries` entries reads: a page each, at
    /// most the whole region. Known before the search, so it joins the
    /// search's byte budget before any GET.
    pub fn max_wave_bytes(&self, entries: usize) -> u64 {
        (entries as u64)
            .saturating_mul(self.per_page * self.entry_len)
            .min(self.count.saturating_mul(self.entry_len))
    }

    /// Entry `id`'s bytes from the fetched pages.
    pub fn entry<'a>(&self, pages: &'a HashMap<usize, Arc<Bytes>>, id: i64) -> Option<&'a [u8]> {
        let id = u64::try_from(id).ok().filter(|&id| id < self.count)?;
        let page = pages.get(&((id / self.per_page) as usize))?;
        let at = ((id % self.per_page) * self.entry_len) as usize;
        page.get(at..at + self.entry_len as usize)
    }
}
