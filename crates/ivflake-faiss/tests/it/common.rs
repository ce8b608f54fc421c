//! Helpers shared by the binding's tests: deterministic data, cutting lists
//! out of an index file, and opening a header lazily.
#![allow(dead_code)]

use ivflake_faiss::{open_header, HeaderProbe, Index, ListFormat, ListSlice, Metric};

pub const D: usize = 16;

/// Deterministic pseudo-random vectors (a 64-bit LCG), so no test data is downloaded.
pub fn vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n * D)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

pub fn file(factory: &str, metric: Metric) -> Vec<u8> {
    let data = vectors(3000, 1);
    let mut index = Index::factory(D, factory, metric).expect("factory");
    index.train(&data).expect("train");
    index.add(&data).expect("add");
    index.to_bytes().expect("write")
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Owned copies of each list's codes and ids, aligned as the scan needs:
/// codes in u64-backed storage offset to `align`, ids as `i64`s.
pub struct OwnedList {
    pub codes: Vec<u8>,
    pub ids: Vec<i64>,
}

fn aligned(codes: &[u8], align: usize) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; codes.len() + align];
    let start = buf.as_ptr().align_offset(align);
    buf[start..start + codes.len()].copy_from_slice(codes);
    (buf, start)
}

/// Cuts every list out of the file, from the header's sizes (array lists) or
/// the inline counts (block lists).
pub fn lists_of(index: &Index, bytes: &[u8]) -> Vec<OwnedList> {
    let info = index.info();
    let mut at = info.list_data_offset as usize;
    let layout = index.list_format();
    let ids_of = |b: &[u8]| {
        b.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut out = Vec::new();
    match layout {
        ListFormat::Array { .. } => {
            for n in index.list_sizes().unwrap() {
                let codes_len = layout.codes_len(n).unwrap() as usize;
                let codes = bytes[at..at + codes_len].to_vec();
                at += codes_len;
                let ids = ids_of(&bytes[at..at + 8 * n as usize]);
                at += 8 * n as usize;
                out.push(OwnedList { codes, ids });
            }
        }
        ListFormat::Blocks { .. } => {
            for _ in 0..info.nlist {
                let n = le_u64(bytes, at) as usize;
                let ids = ids_of(&bytes[at + 8..at + 8 + 8 * n]);
                at += 8 + 8 * n;
                let m = le_u64(bytes, at) as usize;
                assert_eq!(Some(m as u64), layout.codes_len(n as u64));
                let codes = bytes[at + 8..at + 8 + m].to_vec();
                at += 8 + m;
                out.push(OwnedList { codes, ids });
            }
        }
        _ => unreachable!(),
    }
    assert_eq!(at, bytes.len(), "lists end exactly at the end of the file");
    out
}

/// The header of `bytes`, opened lazily as ivflake opens it, with IVF-PQ's
/// residual table built as `faiss.read_index` builds it (open_header leaves
/// that to the caller), so scans compare bit for bit with Faiss in memory.
pub fn opened(bytes: &[u8]) -> Index {
    let mut index = match open_header(bytes, bytes.len() as u64, bytes.len() * 4).expect("open header") {
        HeaderProbe::Opened(index) => index,
        HeaderProbe::NeedBytes(n) => panic!("whole file given, yet it asks for {n} bytes"),
        HeaderProbe::NeedRange(r) => panic!("whole file given, yet it asks for bytes {r:?}"),
    };
    index.build_residual_table(u64::MAX).expect("residual table");
    index
}

/// Every list of `index` (opened from `bytes`) as aligned slices, ready for
/// `scan_lists`: the storage, then slices borrowing it.
pub struct FetchedLists {
    owned: Vec<OwnedList>,
    storage: Vec<(Vec<u8>, usize)>,
}

impl FetchedLists {
    pub fn new(index: &Index, bytes: &[u8]) -> Self {
        Self::shifted(index, bytes, 0)
    }

    /// Codes placed `shift` bytes past the alignment the scan wants.
    pub fn shifted(index: &Index, bytes: &[u8], shift: usize) -> Self {
        let owned = lists_of(index, bytes);
        let align = index.list_format().codes_alignment();
        let storage = owned
            .iter()
            .map(|l| {
                let mut padded = vec![0u8; shift];
                padded.extend_from_slice(&l.codes);
                let (buf, start) = aligned(&padded, align);
                (buf, start + shift)
            })
            .collect();
        Self { owned, storage }
    }

    pub fn slices(&self) -> Vec<ListSlice<'_>> {
        self.owned
            .iter()
            .zip(&self.storage)
            .map(|(l, (buf, start))| ListSlice {
                codes: &buf[*start..*start + l.codes.len()],
                ids: &l.ids,
            })
            .collect()
    }
}
