//! A fetched list as Faiss wants it: codes 4-byte aligned, ids as `i64`s.
//! Zero-copy when the store's buffer is aligned, a copy only when it is not.

use bytes::Bytes;
use ivflake_faiss::ListSlice;

use crate::layout::ListRange;

/// A fetched list as Faiss wants it: codes 4-byte aligned, ids as `i64`s.
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
    pub fn new(bytes: Bytes, range: &ListRange, code_size: usize) -> Self {
        let codes_len = range.codes_len(code_size) as usize;
        let mut codes = bytes.slice(..codes_len);
        if !(codes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<u32>()) {
            codes = aligned_copy(&codes);
        }
        let id_bytes = bytes.slice(codes_len..);
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
        Self { codes, ids }
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

/// Bytes backed by `u32` storage, so they start 4-byte aligned.
struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

fn aligned_copy(src: &[u8]) -> Bytes {
    let mut words = vec![0u32; src.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..src.len()].copy_from_slice(src);
    Bytes::from_owner(AlignedBytes { words, len: src.len() })
}
