//! Planning a wave: which missing lists share one GET. Pure: byte ranges in,
//! groups out, so it is tested without a store.

use crate::layout::ListRange;

/// One list a search needs.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest {
    pub list: usize,
    pub range: ListRange,
    /// The byte of the list that the cached copy starts on a
    /// [`LIST_ALIGN`] boundary (where the reader's aligned loads begin), so
    /// that a warm search reads the cached bytes in place.
    pub align_at: usize,
}

/// Alignment of a cached list's `align_at` byte: what AVX2 loads want.
pub const LIST_ALIGN: usize = 32;

/// `bytes` with byte `at` on a [`LIST_ALIGN`] boundary: as they are when it
/// already is (and `whole`, i.e. not a slice of a larger buffer the cache
/// would pin), else copied once into a buffer of their own.
pub(super) fn aligned(bytes: &bytes::Bytes, at: usize, whole: bool) -> bytes::Bytes {
    let at = at.min(bytes.len());
    if whole && (bytes.as_ptr() as usize + at).is_multiple_of(LIST_ALIGN) {
        return bytes.clone();
    }
    let mut buf = vec![0u8; bytes.len() + LIST_ALIGN];
    let start = (LIST_ALIGN - (buf.as_ptr() as usize + at) % LIST_ALIGN) % LIST_ALIGN;
    buf[start..start + bytes.len()].copy_from_slice(bytes);
    // `from_owner` keeps the Vec where it is, so the alignment holds.
    bytes::Bytes::from_owner(buf).slice(start..start + bytes.len())
}

/// Groups requests sorted by offset into GETs: a list joins the previous one's
/// GET when the gap between them is at most `max_gap` bytes and the merged
/// range stays within `max_merged` bytes. A GET that is still too large is
/// split into parts when it is sent (see `get.rs`), not here.
pub(super) fn plan_gets(sorted: &[ListRequest], max_gap: u64, max_merged: u64) -> Vec<&[ListRequest]> {
    let mut groups = Vec::new();
    let mut first = 0;
    for i in 1..=sorted.len() {
        let split = i == sorted.len() || {
            let prev = &sorted[i - 1].range;
            let next = &sorted[i].range;
            let gap = next.offset.saturating_sub(prev.offset + prev.len);
            let merged = next.offset + next.len - sorted[first].range.offset;
            gap > max_gap || merged > max_merged
        };
        if split {
            if first < sorted.len() {
                groups.push(&sorted[first..i]);
            }
            first = i;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(list: usize, offset: u64, len: u64) -> ListRequest {
        ListRequest {
            list,
            range: ListRange { offset, len, count: 1 },
            align_at: 0,
        }
    }

    fn lists(groups: &[&[ListRequest]]) -> Vec<Vec<usize>> {
        groups.iter().map(|g| g.iter().map(|r| r.list).collect()).collect()
    }

    #[test]
    fn merges_small_gaps_and_keeps_large_ones_apart() {
        let sorted = [req(0, 0, 100), req(1, 150, 100), req(2, 1000, 10), req(3, 1010, 10)];
        assert_eq!(lists(&plan_gets(&sorted, 50, 1 << 20)), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(
            lists(&plan_gets(&sorted, 0, 1 << 20)),
            vec![vec![0], vec![1], vec![2, 3]]
        );
        assert_eq!(lists(&plan_gets(&sorted, 1 << 20, 1 << 20)), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn a_merged_get_never_exceeds_its_cap() {
        let sorted: Vec<_> = (0..10).map(|i| req(i, i as u64 * 100, 100)).collect();
        let groups = plan_gets(&sorted, 1 << 20, 300);
        assert_eq!(
            lists(&groups),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
        );
        // A single list larger than the cap is its own group.
        let big = [req(0, 0, 1000), req(1, 1000, 10)];
        assert_eq!(lists(&plan_gets(&big, 1 << 20, 300)), vec![vec![0], vec![1]]);
    }

    #[test]
    fn aligned_puts_the_byte_on_a_boundary_and_keeps_the_bytes() {
        let data: Vec<u8> = (0..=255).collect();
        let whole = bytes::Bytes::from(data.clone());
        for at in [0, 1, 7, 40] {
            for start in [0, 3, 5] {
                let slice = whole.slice(start..200);
                let out = aligned(&slice, at, false);
                assert_eq!(&out[..], &data[start..200]);
                assert!((out.as_ptr() as usize + at).is_multiple_of(LIST_ALIGN));
            }
        }
        let once = aligned(&whole.slice(3..200), 5, false);
        assert_eq!(
            aligned(&once, 5, true).as_ptr(),
            once.as_ptr(),
            "an aligned whole buffer is not copied"
        );
    }

    #[test]
    fn no_requests_no_gets() {
        assert!(plan_gets(&[], 0, 0).is_empty());
    }
}
