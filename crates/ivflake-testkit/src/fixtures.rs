//! The faiss-cpu fixtures `make test` generates (`scripts/make_fixtures.py`):
//! where they are, and the `.npy` files of queries and answers beside them.
//! Nothing here writes to that directory.

use std::path::{Path, PathBuf};

/// The directory `make test` generated with faiss-cpu from PyPI.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var("IVFLAKE_FIXTURES")
        .expect("IVFLAKE_FIXTURES is not set: run the tests with `make test`, which generates the faiss-cpu fixtures");
    PathBuf::from(dir)
}

/// Reads a little-endian 2-D (or 1-D) `.npy` of f4 or i8 the fixture script wrote.
pub fn read_npy(path: &Path) -> (Vec<u8>, Vec<usize>) {
    let raw = std::fs::read(path).expect("npy");
    assert_eq!(&raw[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let header = std::str::from_utf8(&raw[10..10 + header_len]).unwrap();
    let shape_str = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (raw[10 + header_len..].to_vec(), shape)
}

/// An f4 `.npy`: its values and its shape.
pub fn npy_f32(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let (b, s) = read_npy(path);
    (
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        s,
    )
}

/// An i8 `.npy`: its values.
pub fn npy_i64(path: &Path) -> Vec<i64> {
    let (b, _) = read_npy(path);
    b.chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
