//! Where each inverted list lives inside the unmodified index file.
//!
//! List data starts right after the header, lists in order, in one of two
//! formats ([`ListFormat`], whose byte arithmetic `ivflake-faiss` owns):
//! - Faiss's array lists (IVF-Flat/PQ/SQ, RaBitQ): a list is its codes
//!   (`count * code_size` bytes) then its ids (`count` little-endian i64s);
//!   the counts are in the header.
//! - Faiss's block lists (fast-scan PQ): a list is a u64 `count`, the ids, a
//!   u64 byte count `m = ceil(count / n_per_block) * block_size`, then the
//!   codes. The counts are inline, so they come from the checksum sidecar's
//!   list lengths or from one pass over the list data ([`BlockListWalker`]).
//!
//! This module owns the ranges and their checks; it does no I/O.

use std::ops::Range;

pub use ivflake_faiss::ListFormat;

use crate::error::{Error, Result};

/// The byte range of one list and how many vectors it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListRange {
    pub offset: u64,
    pub len: u64,
    pub count: u64,
}

impl ListRange {
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.len
    }
}

/// The per-list byte ranges of one index file: where every inverted list
/// lives, in the format the header names, checked to fill the file exactly.
#[derive(Debug, Clone)]
pub struct ListRanges {
    lists: Vec<ListRange>,
    format: ListFormat,
    data_offset: u64,
    data_end: u64,
    /// On-disk lists only: per list, the bytes between its codes and its
    /// ids (its spare capacity's codes), which its range spans.
    ids_gaps: Option<Vec<u64>>,
}

impl ListRanges {
    /// Computes every array-format list's range from the header's sizes,
    /// checking with overflow-safe arithmetic that the lists exactly fill the
    /// file after the header.
    pub fn new(sizes: &[u64], code_size: usize, data_offset: u64, file_len: u64, uri: &str) -> Result<Self> {
        Self::with_format(ListFormat::Array { code_size }, sizes, data_offset, file_len, uri)
    }

    /// Every list's range for lists of `counts` vectors stored in `format`,
    /// checked to exactly fill the file after the header.
    pub fn with_format(format: ListFormat, counts: &[u64], data_offset: u64, file_len: u64, uri: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: uri.to_string(),
            reason,
        };
        if let ListFormat::Blocks { n_per_block: 0, .. } = format {
            return Err(corrupt("block lists with 0 vectors per block".into()));
        }
        let mut lists = Vec::with_capacity(counts.len());
        let mut offset = data_offset;
        for (list, &count) in counts.iter().enumerate() {
            let len = format
                .list_len(count)
                .filter(|len| offset.checked_add(*len).is_some_and(|end| end <= file_len))
                .ok_or_else(|| {
                    corrupt(format!(
                        "list sizes do not fit the file: list {list} holds {count} vectors at offset {offset}, \
                         past the file's {file_len} bytes"
                    ))
                })?;
            lists.push(ListRange { offset, len, count });
            offset += len;
        }
        if offset != file_len {
            return Err(corrupt(format!(
                "lists end at byte {offset} but the file has {file_len} bytes; \
                 trailing data means a layout ivflake does not know"
            )));
        }
        Ok(Self {
            lists,
            format,
            data_offset,
            data_end: offset,
            ids_gaps: None,
        })
    }

    /// On-disk lists (Faiss's `OnDiskInvertedLists`), in a data object of
    /// `data_len` bytes: list `i` is `size` codes at its offset, then, after
    /// room for `capacity - size` more codes, `size` ids. Each list is
    /// checked to hold its size within its capacity and to end inside the
    /// data object; the header is the whole index file (`header_len`).
    pub fn on_disk(
        code_size: usize,
        lists: &[ivflake_faiss::OnDiskList],
        header_len: u64,
        data_len: u64,
        uri: &str,
    ) -> Result<Self> {
        let mut ranges = Vec::with_capacity(lists.len());
        let mut gaps = Vec::with_capacity(lists.len());
        for (i, l) in lists.iter().enumerate() {
            let cs = code_size as u64;
            let fits = (|| {
                if l.size > l.capacity {
                    return None;
                }
                let gap = (l.capacity - l.size).checked_mul(cs)?;
                let len = l
                    .size
                    .checked_mul(cs)?
                    .checked_add(gap)?
                    .checked_add(l.size.checked_mul(8)?)?;
                let reserved = l.capacity.checked_mul(cs.checked_add(8)?)?;
                (l.offset.checked_add(reserved)? <= data_len).then_some((len, gap))
            })();
            let (len, gap) = fits.ok_or_else(|| Error::Corrupt {
                uri: uri.to_string(),
                reason: format!(
                    "on-disk list {i} ({} vectors, capacity {}, at byte {}) does not fit the {data_len}-byte data file",
                    l.size, l.capacity, l.offset
                ),
            })?;
            ranges.push(ListRange {
                offset: l.offset,
                len: if l.size == 0 { 0 } else { len },
                count: l.size,
            });
            gaps.push(gap);
        }
        Ok(Self {
            lists: ranges,
            format: ListFormat::Array { code_size },
            data_offset: header_len,
            data_end: header_len + data_len,
            ids_gaps: Some(gaps),
        })
    }

    /// On-disk lists as their data object holds them, with no header before
    /// them: what the data object's checksum sidecar describes.
    pub fn lists_only(&self) -> Self {
        Self {
            data_offset: 0,
            data_end: self.data_len(),
            ..self.clone()
        }
    }

    /// A file that is all header and holds no lists (an on-disk index's own
    /// file): what its checksum sidecar describes.
    pub fn header_only(file_len: u64) -> Self {
        Self {
            lists: Vec::new(),
            format: ListFormat::Array { code_size: 0 },
            data_offset: file_len,
            data_end: file_len,
            ids_gaps: None,
        }
    }

    /// Bytes between list `list`'s codes and its ids (on-disk lists with
    /// spare capacity); 0 otherwise.
    pub fn ids_gap(&self, list: usize) -> u64 {
        self.ids_gaps.as_ref().and_then(|g| g.get(list).copied()).unwrap_or(0)
    }

    /// Whether the lists live in a data object apart from the index file.
    pub fn is_on_disk(&self) -> bool {
        self.ids_gaps.is_some()
    }

    /// Block-format lists from the checksum sidecar's `(offset, len)` per
    /// list: each length must be a whole list and the lists must follow each
    /// other from the header to the end of the file.
    pub fn blocks_from_extents(
        format: ListFormat,
        extents: &[(u64, u64)],
        data_offset: u64,
        file_len: u64,
        uri: &str,
    ) -> Result<Self> {
        let counts = extents
            .iter()
            .enumerate()
            .map(|(list, &(_, len))| {
                format.count_for_len(len).ok_or_else(|| Error::Corrupt {
                    uri: uri.to_string(),
                    reason: format!("checksum sidecar: list {list}'s {len} bytes are not a whole block list"),
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        let layout = Self::with_format(format, &counts, data_offset, file_len, uri)?;
        if let Some((list, _)) = layout
            .lists
            .iter()
            .zip(extents)
            .enumerate()
            .find(|(_, (r, e))| r.offset != e.0)
        {
            return Err(Error::Corrupt {
                uri: uri.to_string(),
                reason: format!("checksum sidecar: list {list} is not where the lists before it end"),
            });
        }
        Ok(layout)
    }

    pub fn format(&self) -> ListFormat {
        self.format
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Bytes these ranges hold in memory.
    pub fn resident_bytes(&self) -> u64 {
        (self.lists.capacity() * std::mem::size_of::<ListRange>()) as u64
    }

    pub fn get(&self, list: usize) -> Option<&ListRange> {
        self.lists.get(list)
    }

    /// Bytes before the first list: what open reads and keeps.
    pub fn header_len(&self) -> u64 {
        self.data_offset
    }

    pub fn data_len(&self) -> u64 {
        self.data_end - self.data_offset
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &ListRange)> {
        self.lists.iter().enumerate()
    }
}

/// Finds every block-format list's count in one sequential pass over the list
/// data, keeping only positions, never the data: feed it the file's bytes
/// from the header's end on, in chunks of any size.
#[derive(Debug)]
pub struct BlockListWalker {
    format: ListFormat,
    nlist: usize,
    file_len: u64,
    counts: Vec<u64>,
    /// Absolute position of the next byte fed.
    pos: u64,
    /// Bytes up to here are list data to pass over.
    skip_to: u64,
    /// The count field being read: its bytes so far.
    field: [u8; 8],
    field_len: usize,
    /// `Some(count)` while reading a list's code byte count.
    pending: Option<u64>,
}

impl BlockListWalker {
    pub fn new(format: ListFormat, nlist: usize, data_offset: u64, file_len: u64) -> Self {
        Self {
            format,
            nlist,
            file_len,
            counts: Vec::with_capacity(nlist.min(1 << 20)),
            pos: data_offset,
            skip_to: data_offset,
            field: [0; 8],
            field_len: 0,
            pending: None,
        }
    }

    /// Whether every list has been found; the rest of the file is codes.
    pub fn lists_found(&self) -> bool {
        self.counts.len() == self.nlist
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> std::result::Result<(), String> {
        while !chunk.is_empty() {
            if self.pos < self.skip_to {
                let n = (self.skip_to - self.pos).min(chunk.len() as u64) as usize;
                self.pos += n as u64;
                chunk = &chunk[n..];
                continue;
            }
            if self.lists_found() {
                return Err(format!("{} bytes after the last list", chunk.len()));
            }
            let n = (8 - self.field_len).min(chunk.len());
            self.field[self.field_len..self.field_len + n].copy_from_slice(&chunk[..n]);
            self.field_len += n;
            self.pos += n as u64;
            chunk = &chunk[n..];
            if self.field_len == 8 {
                self.field_len = 0;
                self.count_read(u64::from_le_bytes(self.field))?;
            }
        }
        Ok(())
    }

    fn count_read(&mut self, value: u64) -> std::result::Result<(), String> {
        let list = self.counts.len();
        match self.pending.take() {
            None => {
                let start = self.pos - 8;
                let fits = self
                    .format
                    .list_len(value)
                    .and_then(|len| start.checked_add(len))
                    .is_some_and(|end| end <= self.file_len);
                if !fits {
                    return Err(format!(
                        "list {list} claims {value} vectors at byte {start}, past the file's end"
                    ));
                }
                self.skip_to = self.pos + value * 8;
                self.pending = Some(value);
            }
            Some(count) => {
                let want = self.format.codes_len(count).unwrap_or(u64::MAX);
                if value != want {
                    return Err(format!(
                        "list {list}: {value} code bytes for {count} vectors, expected {want}"
                    ));
                }
                self.skip_to = self.pos + value;
                self.counts.push(count);
            }
        }
        Ok(())
    }

    /// Every list's count, once the whole list data has been fed.
    pub fn finish(self) -> std::result::Result<Vec<u64>, String> {
        if !self.lists_found() || self.field_len != 0 || self.pos != self.skip_to || self.pos != self.file_len {
            return Err(format!(
                "the file ends inside list {} of {} (at byte {} of {})",
                self.counts.len(),
                self.nlist,
                self.pos,
                self.file_len
            ));
        }
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_follow_each_other() {
        let layout = ListRanges::new(&[2, 0, 1], 4, 100, 100 + 2 * 12 + 12, "t").unwrap();
        assert_eq!(layout.get(0).unwrap().range(), 100..124);
        assert_eq!(layout.get(1).unwrap().len, 0);
        assert_eq!(layout.get(2).unwrap().range(), 124..136);
        assert_eq!(layout.format().split(2).0, 0..8, "codes first, then ids");
    }

    #[test]
    fn sizes_past_the_file_are_corrupt() {
        let err = ListRanges::new(&[u64::MAX / 2, 1], 4, 100, 1000, "t").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let err = ListRanges::new(&[1], 4, 100, 1000, "t").unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    const FAST_SCAN: ListFormat = ListFormat::Blocks {
        n_per_block: 32,
        block_size: 32 * 4,
    };

    /// Block lists of these counts as Faiss writes them, codes filled with `c`.
    fn block_lists(counts: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &n in counts {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend((0..n).flat_map(|i| (i as i64 * 7).to_le_bytes()));
            let m = FAST_SCAN.codes_len(n).unwrap();
            out.extend_from_slice(&m.to_le_bytes());
            out.extend(std::iter::repeat_n(b'c', m as usize));
        }
        out
    }

    #[test]
    fn block_lengths_round_trip_to_counts() {
        for n in [0, 1, 31, 32, 33, 1000] {
            let len = FAST_SCAN.list_len(n).unwrap();
            assert_eq!(FAST_SCAN.count_for_len(len), Some(n));
            assert_eq!(FAST_SCAN.count_for_len(len + 1), None);
        }
        assert_eq!(FAST_SCAN.list_len(33), Some(16 + 33 * 8 + 2 * 128));
        let (codes, ids) = FAST_SCAN.split(33);
        assert_eq!(ids, 8..8 + 33 * 8);
        assert_eq!(codes, 8 + 33 * 8 + 8..8 + 33 * 8 + 8 + 256);
    }

    #[test]
    fn walker_finds_counts_in_any_chunking() {
        let counts = [3, 0, 40, 32, 1];
        let data = block_lists(&counts);
        let header = 100u64;
        for chunk in [1, 3, 7, 64, 10_000] {
            let mut walker = BlockListWalker::new(FAST_SCAN, counts.len(), header, header + data.len() as u64);
            for piece in data.chunks(chunk) {
                walker.feed(piece).unwrap();
            }
            assert_eq!(walker.finish().unwrap(), counts, "chunks of {chunk}");
        }
        let layout = ListRanges::with_format(FAST_SCAN, &counts, header, header + data.len() as u64, "t").unwrap();
        let third = layout.get(2).unwrap();
        let bytes = &data[(third.offset - header) as usize..][..third.len as usize];
        FAST_SCAN.check_inline(bytes, 40).unwrap();
        assert!(FAST_SCAN.check_inline(bytes, 39).is_err());
        let extents: Vec<(u64, u64)> = layout.iter().map(|(_, r)| (r.offset, r.len)).collect();
        let again =
            ListRanges::blocks_from_extents(FAST_SCAN, &extents, header, header + data.len() as u64, "t").unwrap();
        assert_eq!(again.get(2), layout.get(2));
    }

    #[test]
    fn walker_refuses_bad_counts_and_truncation() {
        let data = block_lists(&[3, 5]);
        let len = data.len() as u64;
        let mut bad = data.clone();
        bad[8 + 24] = 9; // list 0's code byte count
        let mut walker = BlockListWalker::new(FAST_SCAN, 2, 0, len);
        assert!(walker.feed(&bad).is_err());
        let mut huge = data.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut walker = BlockListWalker::new(FAST_SCAN, 2, 0, len);
        assert!(walker.feed(&huge).is_err());
        let mut walker = BlockListWalker::new(FAST_SCAN, 2, 0, len);
        walker.feed(&data[..data.len() - 1]).unwrap();
        assert!(walker.finish().is_err());
        let mut walker = BlockListWalker::new(FAST_SCAN, 1, 0, len);
        assert!(walker.feed(&data).is_err(), "data after the last list");
    }
}
