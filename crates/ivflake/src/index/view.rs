//! A fetched list as Faiss wants it: codes aligned (4 bytes for array lists,
//! 32 for fast-scan blocks, which AVX2 loads whole), ids as `i64`s.
//! Zero-copy when the store's buffer is aligned, a copy only when it is not.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use ivflake_faiss::ListSlice;

use crate::layout::{ListFormat, ListRange};

/// A fetched list as Faiss wants it: codes aligned, ids as `i64`s.
/// Zero-copy when the store's buffer is aligned, a copy only when it is not.
/// It holds the list by the cache's own `Arc`, so a warm search touches one
/// reference count a list, not the buffer's for every slice of it.
pub(super) struct ListView {
    list: Arc<Bytes>,
    codes: Part<Bytes>,
    ids: Part<Vec<i64>>,
}

/// A part of the list: read in place, or copied to be aligned.
enum Part<T> {
    InPlace(Range<usize>),
    Copied(T),
}

impl ListView {
    /// Splits a fetched list per its format; a block list whose inline
    /// counts disagree with its range is refused with the reason.
    #[cfg(test)]
    pub fn new(list: Arc<Bytes>, range: &ListRange, format: ListFormat) -> Result<Self, String> {
        Self::with_gap(list, range, format, 0)
    }

    /// [`ListView::new`] for a list whose ids start `gap` bytes after its
    /// codes end (on-disk lists with spare capacity).
    pub fn with_gap(list: Arc<Bytes>, range: &ListRange, format: ListFormat, gap: u64) -> Result<Self, String> {
        format.check_inline(&list, range.count)?;
        let (codes_at, ids_at) = format.split(range.count);
        let gap = usize::try_from(gap).map_err(|_| "a gap past the address space".to_string())?;
        let ids_at = ids_at.start + gap..ids_at.end + gap;
        let align = format.codes_alignment();
        let part = |at: &Range<usize>, what: &str| {
            list.get(at.clone())
                .ok_or_else(|| format!("{} bytes hold no {what} at {at:?}", list.len()))
        };
        let codes_in_place = part(&codes_at, "codes")?;
        let codes = if (codes_in_place.as_ptr() as usize).is_multiple_of(align) {
            Part::InPlace(codes_at)
        } else {
            Part::Copied(aligned_copy(codes_in_place, align))
        };
        let id_bytes = part(&ids_at, "ids")?;
        let ids = if bytemuck::try_cast_slice::<u8, i64>(id_bytes).is_ok() {
            Part::InPlace(ids_at)
        } else {
            Part::Copied(
                id_bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let mut le = [0u8; 8];
                        le.copy_from_slice(c);
                        i64::from_le_bytes(le)
                    })
                    .collect(),
            )
        };
        Ok(Self { list, codes, ids })
    }

    pub fn slice(&self) -> ListSlice<'_> {
        let codes: &[u8] = match &self.codes {
            Part::InPlace(r) => &self.list[r.clone()],
            Part::Copied(b) => b,
        };
        let ids: &[i64] = match &self.ids {
            Part::InPlace(r) => bytemuck::try_cast_slice(&self.list[r.clone()]).unwrap_or(&[]),
            Part::Copied(v) => v,
        };
        ListSlice { codes, ids }
    }
}

/// A copy of `src` starting at an `align`-byte boundary of its own buffer.
fn aligned_copy(src: &[u8], align: usize) -> Bytes {
    let mut buf = vec![0u8; src.len() + align];
    let start = buf.as_ptr().align_offset(align);
    buf[start..start + src.len()].copy_from_slice(src);
    // `from_owner` keeps the Vec where it is, so the slice stays aligned.
    Bytes::from_owner(buf).slice(start..start + src.len())
}
