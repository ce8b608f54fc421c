//! Where each inverted list lives inside the unmodified index file.
//!
//! In Faiss's array-list layout, list data starts right after the header and
//! each non-empty list is its codes (`size * code_size` bytes) followed by its
//! ids (`size` little-endian i64s), lists in order.

use std::ops::Range;

use crate::error::{Error, Result};

/// The byte range of one list and how many vectors it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRange {
    pub offset: u64,
    pub len: u64,
    pub count: u64,
}

impl ListRange {
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.len
    }

    /// Bytes of codes at the start of the list; ids follow.
    pub fn codes_len(&self, code_size: usize) -> u64 {
        self.count * code_size as u64
    }
}

#[derive(Debug, Clone)]
pub struct ListLayout {
    lists: Vec<ListRange>,
    code_size: usize,
    data_offset: u64,
    data_end: u64,
}

impl ListLayout {
    /// Computes every list's range, checking with overflow-safe arithmetic that
    /// the lists exactly fill the file after the header.
    pub fn new(sizes: &[u64], code_size: usize, data_offset: u64, file_len: u64, uri: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: uri.to_string(),
            reason,
        };
        let per_vector = (code_size as u64)
            .checked_add(8)
            .ok_or_else(|| corrupt(format!("code size {code_size} overflows")))?;
        let mut lists = Vec::with_capacity(sizes.len());
        let mut offset = data_offset;
        for (list, &count) in sizes.iter().enumerate() {
            let len = count
                .checked_mul(per_vector)
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
            code_size,
            data_offset,
            data_end: offset,
        })
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    pub fn get(&self, list: usize) -> Option<&ListRange> {
        self.lists.get(list)
    }

    pub fn code_size(&self) -> usize {
        self.code_size
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_follow_each_other() {
        let layout = ListLayout::new(&[2, 0, 1], 4, 100, 100 + 2 * 12 + 12, "t").unwrap();
        assert_eq!(layout.get(0).unwrap().range(), 100..124);
        assert_eq!(layout.get(1).unwrap().len, 0);
        assert_eq!(layout.get(2).unwrap().range(), 124..136);
        assert_eq!(layout.get(0).unwrap().codes_len(4), 8);
    }

    #[test]
    fn sizes_past_the_file_are_corrupt() {
        let err = ListLayout::new(&[u64::MAX / 2, 1], 4, 100, 1000, "t").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let err = ListLayout::new(&[1], 4, 100, 1000, "t").unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
