//! A fetched list as Faiss wants it: codes aligned (4 bytes for array lists,
//! 32 for fast-scan blocks, which AVX2 loads whole), ids as `i64`s.
//! Zero-copy when the store's buffer is aligned, a copy only when it is not.

use bytes::Bytes;
use ivflake_faiss::ListSlice;

use crate::layout::{ListFormat, ListRange};

/// A fetched list as Faiss wants it: codes aligned, ids as `i64`s.
/// Zero-copy when the store's buffer is aligned, a copy only when it is not.
pub(super) struct ListView {
    codes: Bytes,
    ids: ListIds,
}

enum ListIds {
    Aligned(Bytes),
    Copied(Vec<i64>),
}

impl ListView {
    /// Splits a fetched list per its format; a block list whose inline
    /// counts disagree with its range is refused with the reason.
    pub fn new(bytes: Bytes, range: &ListRange, format: ListFormat) -> Result<Self, String> {
        format.check_inline(&bytes, range.count)?;
        let (codes_at, ids_at) = format.split(range.count);
        let align = match format {
            ListFormat::Array { .. } => std::mem::align_of::<u32>(),
            ListFormat::Blocks { .. } => BLOCK_CODES_ALIGN,
        };
        let mut codes = bytes.slice(codes_at);
        if !(codes.as_ptr() as usize).is_multiple_of(align) {
            codes = aligned_copy(&codes, align);
        }
        let id_bytes = bytes.slice(ids_at);
        let ids = if bytemuck::try_cast_slice::<u8, i64>(&id_bytes).is_ok() {
            ListIds::Aligned(id_bytes)
        } else {
            ListIds::Copied(
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
        Ok(Self { codes, ids })
    }

    pub fn slice(&self) -> ListSlice<'_> {
        let ids: &[i64] = match &self.ids {
            ListIds::Aligned(b) => bytemuck::try_cast_slice(b).unwrap_or(&[]),
            ListIds::Copied(v) => v,
        };
        ListSlice {
            codes: &self.codes,
            ids,
        }
    }
}

/// Faiss's AVX2 fast-scan kernels read codes with aligned 32-byte loads.
const BLOCK_CODES_ALIGN: usize = 32;

/// A copy of `src` starting at an `align`-byte boundary of its own buffer.
fn aligned_copy(src: &[u8], align: usize) -> Bytes {
    let mut buf = vec![0u8; src.len() + align];
    let start = buf.as_ptr().align_offset(align);
    buf[start..start + src.len()].copy_from_slice(src);
    // `from_owner` keeps the Vec where it is, so the slice stays aligned.
    Bytes::from_owner(buf).slice(start..start + src.len())
}
