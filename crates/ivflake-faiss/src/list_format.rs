//! How a file stores inverted lists, and the byte arithmetic of one list:
//! where its codes and ids sit, how long it is, how its codes must be aligned.
//! Pure; the one place in ivflake that knows these sizes.

/// How the file stores inverted lists, which fixes each list's byte range
/// and where its codes and ids sit inside it. The one place that knows the
/// byte arithmetic of a list.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// Faiss's `ArrayInvertedLists` ("ilar"): list sizes in the header; list
    /// `i` is `count * code_size` code bytes then `count` little-endian `i64`
    /// ids, lists back to back.
    Array { code_size: usize },
    /// Faiss's `BlockInvertedLists` ("ilbl", fast-scan PQ): list `i` is a
    /// `u64` count `n`, `n` ids, a `u64` byte count `m`, then `m` code bytes,
    /// `m = ceil(n / n_per_block) * block_size`. Sizes are inline, not in the
    /// header, so they come from a manifest or a pass over the lists.
    Blocks { n_per_block: usize, block_size: usize },
}

/// Bytes of the two inline `u64` counts of a block-format list.
const BLOCK_COUNTS_LEN: u64 = 16;

impl ListFormat {
    /// Code bytes of a list holding `count` vectors, `None` on overflow.
    pub fn codes_len(&self, count: u64) -> Option<u64> {
        match *self {
            ListFormat::Array { code_size } => count.checked_mul(code_size as u64),
            ListFormat::Blocks {
                n_per_block,
                block_size,
            } => count
                .checked_add(n_per_block as u64 - 1)
                .map(|c| c / n_per_block as u64)
                .and_then(|blocks| blocks.checked_mul(block_size as u64)),
        }
    }

    /// Bytes of a whole list of `count` vectors in the file.
    pub fn list_len(&self, count: u64) -> Option<u64> {
        let ids = count.checked_mul(8)?;
        let fixed = match self {
            ListFormat::Array { .. } => 0,
            ListFormat::Blocks { .. } => BLOCK_COUNTS_LEN,
        };
        self.codes_len(count)?.checked_add(ids)?.checked_add(fixed)
    }

    /// The count of the list whose bytes are `len` long, if one fits exactly
    /// (`list_len` grows with the count, so a binary search finds it).
    pub fn count_for_len(&self, len: u64) -> Option<u64> {
        let (mut lo, mut hi) = (0u64, len / 8 + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.list_len(mid) {
                Some(l) if l < len => lo = mid + 1,
                _ => hi = mid,
            }
        }
        (self.list_len(lo) == Some(len)).then_some(lo)
    }

    /// Where the codes and the ids of a list of `count` vectors sit in its
    /// bytes (`count` was checked against the list's length).
    pub fn split(&self, count: u64) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let codes = self.codes_len(count).unwrap_or(0) as usize;
        let ids = count as usize * 8;
        match self {
            ListFormat::Array { .. } => (0..codes, codes..codes + ids),
            ListFormat::Blocks { .. } => {
                let ids_at = 8;
                let codes_at = ids_at + ids + 8;
                (codes_at..codes_at + codes, ids_at..ids_at + ids)
            }
        }
    }

    /// Checks a fetched block-format list's inline counts against its
    /// count; array lists carry none.
    pub fn check_inline(&self, bytes: &[u8], count: u64) -> std::result::Result<(), String> {
        if let ListFormat::Blocks { .. } = self {
            let (codes, ids) = self.split(count);
            let read = |at: usize| {
                bytes
                    .get(at..at + 8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            };
            if read(0) != Some(count) || read(ids.end) != Some(codes.len() as u64) {
                return Err(format!(
                    "block list's inline counts {:?}/{:?} disagree with its {count} vectors",
                    read(0),
                    read(ids.end)
                ));
            }
        }
        Ok(())
    }

    /// Alignment Faiss's scan needs of a list's codes (AVX2 fast-scan kernels
    /// load 32-byte blocks with aligned loads; array codes are read as `u32`s
    /// at most).
    pub fn codes_alignment(&self) -> usize {
        match self {
            ListFormat::Array { .. } => 4,
            ListFormat::Blocks { .. } => 32,
        }
    }
}
