//! The checksum manifest sidecar: its format, building it from a real index,
//! and checking files and lists against it.

use std::sync::Arc;

use crate::common::*;
use ivflake::{Error, IndexLocation, IvfIndex, Manifest, ManifestList, Metric, OpenOptions};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use xxhash_rust::xxh3::xxh3_64;

const D: usize = 8;
/// magic 8 + version 4 + four u64s.
const FIXED: usize = 44;

fn entry(offset: u64, len: u64, xxh3: u64) -> ManifestList {
    ManifestList { offset, len, xxh3 }
}

fn sample() -> Manifest {
    Manifest {
        file_len: 1000,
        header_len: 100,
        header_xxh3: 0xdead_beef,
        lists: vec![
            entry(100, 300, 1),
            entry(400, 0, xxh3_64(&[])),
            entry(400, 600, u64::MAX),
        ],
    }
}

/// Rewrites the trailer so only the check under test can catch an edit.
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - 8;
    let sum = xxh3_64(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
}

fn corrupt_reason(result: ivflake::Result<Manifest>) -> String {
    match result {
        Err(Error::Corrupt { uri, reason }) => {
            assert_eq!(uri, "mem://x.ivfmanifest");
            reason
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

fn decode(bytes: &[u8]) -> ivflake::Result<Manifest> {
    Manifest::decode(bytes, "mem://x.ivfmanifest")
}

#[test]
fn encode_decode_round_trip() {
    let m = sample();
    let bytes = m.encode();
    assert_eq!(bytes.len(), FIXED + 3 * 24 + 8);
    assert_eq!(&bytes[..8], b"IVFKMAN1");
    assert_eq!(decode(&bytes).unwrap(), m);

    let empty = Manifest {
        lists: vec![],
        header_len: 1000,
        ..sample()
    };
    assert_eq!(decode(&empty.encode()).unwrap(), empty);
}

#[test]
fn decode_rejects_a_truncated_sidecar() {
    let bytes = sample().encode();
    for cut in [0, 7, 12, FIXED, FIXED + 8, bytes.len() - 24, bytes.len() - 1] {
        let reason = corrupt_reason(decode(&bytes[..cut]));
        assert!(
            reason.contains("truncated") || reason.contains("not an ivflake"),
            "cut at {cut}: {reason}"
        );
    }
}

#[test]
fn decode_rejects_a_flipped_byte() {
    let bytes = sample().encode();
    // Every byte after the magic, version and count: the trailer catches it.
    for at in FIXED..bytes.len() {
        let mut damaged = bytes.to_vec();
        damaged[at] ^= 0x10;
        let reason = corrupt_reason(decode(&damaged));
        assert!(reason.contains("checksum"), "byte {at}: {reason}");
    }
    for at in 12..36 {
        let mut damaged = bytes.to_vec();
        damaged[at] ^= 0x01;
        corrupt_reason(decode(&damaged));
    }
}

#[test]
fn decode_rejects_a_wrong_magic_or_version() {
    let mut bytes = sample().encode().to_vec();
    bytes[..8].copy_from_slice(b"IVFKMAN2");
    reseal(&mut bytes);
    let reason = corrupt_reason(decode(&bytes));
    assert!(reason.contains("not an ivflake checksum sidecar"), "{reason}");

    let mut bytes = sample().encode().to_vec();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut bytes);
    let reason = corrupt_reason(decode(&bytes));
    assert!(reason.contains("version 2"), "{reason}");

    let reason = corrupt_reason(decode(&[b'x'; 64]));
    assert!(reason.contains("not an ivflake"), "{reason}");
}

#[test]
fn decode_rejects_an_absurd_nlist_without_allocating_for_it() {
    // A well-sealed sidecar claiming 2^40 lists (24 TiB of entries) or u64::MAX:
    // allocating first would abort the process; the length check refuses it.
    for nlist in [1u64 << 40, u64::MAX, u64::MAX / 24, 4] {
        let mut bytes = sample().encode().to_vec();
        bytes[36..44].copy_from_slice(&nlist.to_le_bytes());
        reseal(&mut bytes);
        let reason = corrupt_reason(decode(&bytes));
        assert!(reason.contains(&format!("records {nlist} lists")), "{reason}");
    }
}

#[test]
fn decode_rejects_lists_out_of_order_or_past_the_file() {
    type Edit = fn(&mut Manifest);
    let cases: [(&str, Edit); 4] = [
        ("before the previous section", |m| m.lists[2].offset = 399),
        ("before the previous section", |m| m.lists[0].offset = 99),
        ("runs past the file", |m| m.lists[2].len = 601),
        ("runs past the file", |m| m.lists[1].len = u64::MAX),
    ];
    for (expected, edit) in cases {
        let mut m = sample();
        edit(&mut m);
        let reason = corrupt_reason(decode(&m.encode()));
        assert!(reason.contains(expected), "{reason}");
    }
    let m = Manifest {
        header_len: 1001,
        lists: vec![],
        ..sample()
    };
    let reason = corrupt_reason(decode(&m.encode()));
    assert!(reason.contains("header length"), "{reason}");
}

#[test]
fn verify_list_rejects_corrupt_wrong_length_and_unknown_lists() {
    let data = b"twelve bytes";
    let m = Manifest {
        file_len: 12,
        header_len: 0,
        header_xxh3: xxh3_64(&[]),
        lists: vec![entry(0, 12, xxh3_64(data))],
    };
    m.verify_list(0, data, "u").unwrap();
    let mut bad = *data;
    bad[5] ^= 1;
    for (list, bytes) in [(0, &bad[..]), (0, &data[..11]), (1, &data[..])] {
        match m.verify_list(list, bytes, "u") {
            Err(Error::Checksum { uri, list: l }) => assert_eq!((uri.as_str(), l), ("u", list)),
            other => panic!("list {list}: expected Error::Checksum, got {other:?}"),
        }
    }
}

async fn open(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) -> IvfIndex {
    put(store, key, bytes).await;
    IvfIndex::open_at(
        IndexLocation::new(store.clone(), key, format!("test://{key}")),
        OpenOptions::default(),
    )
    .await
    .expect("open")
}

/// What `build` must produce, computed from the file's bytes directly.
fn assert_matches_file(m: &Manifest, index: &IvfIndex, file: &[u8]) {
    let layout = index.list_ranges();
    assert_eq!(m.file_len, file.len() as u64);
    assert_eq!(m.header_len, layout.header_len());
    assert_eq!(m.header_xxh3, xxh3_64(&file[..layout.header_len() as usize]));
    assert_eq!(m.lists.len(), layout.nlist());
    for ((list, range), entry) in layout.iter().zip(&m.lists) {
        let bytes = &file[range.offset as usize..(range.offset + range.len) as usize];
        assert_eq!((entry.offset, entry.len), (range.offset, range.len), "list {list}");
        assert_eq!(entry.xxh3, xxh3_64(bytes), "list {list}");
        m.verify_list(list, bytes, index.uri()).unwrap();
    }
}

async fn build_checked(index: &IvfIndex, file: &[u8]) -> Manifest {
    let mut seen = Vec::new();
    let m = index.build_manifest(|read| seen.push(read)).await.expect("build");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only grows");
    assert_eq!(seen.last().copied(), Some(file.len() as u64));
    assert_matches_file(&m, index, file);
    m
}

/// An IVF64 trained on 2600 vectors holding only 40: most lists are empty.
fn sparse_index() -> Vec<u8> {
    let train = clustered(2600, D, 1);
    let mut index = ivflake_faiss::Index::factory(D, "IVF64,Flat", Metric::L2).expect("factory");
    index.train(&train).expect("train");
    index.add(&clustered(40, D, 2)).expect("add");
    index.to_bytes().expect("serialize")
}

#[tokio::test]
async fn build_hashes_every_list_of_a_real_index_in_memory_and_on_disk() {
    let file = sparse_index();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let index = open(&memory, "a/idx.faiss", file.clone()).await;
    let from_memory = build_checked(&index, &file).await;
    let empty = index.list_ranges().iter().filter(|(_, r)| r.len == 0).count();
    assert!(empty > 10, "empty lists are listed too: {empty}");
    assert!(from_memory.lists.iter().all(|l| l.len > 0 || l.xxh3 == xxh3_64(&[])));

    let dir = TempDir::new("build");
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let index = open(&local, "idx.faiss", file.clone()).await;
    let from_disk = build_checked(&index, &file).await;
    assert_eq!(from_memory, from_disk);
}

#[tokio::test]
async fn a_large_local_file_is_read_in_many_blocks() {
    // Above the 4 MiB local block, so hashing spans block boundaries.
    let file = build_index("IVF16,Flat", Metric::L2, 32, 40_000);
    assert!(file.len() > 5 << 20, "{} bytes", file.len());
    let dir = TempDir::new("large");
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let index = open(&local, "idx.faiss", file.clone()).await;
    build_checked(&index, &file).await;
}

#[tokio::test]
async fn check_against_accepts_its_own_index_and_rejects_another() {
    let file = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let index = open(&store, "idx.faiss", file.clone()).await;
    let m = index.build_manifest(|_| {}).await.unwrap();
    let header_len = index.list_ranges().header_len() as usize;
    m.check_against(index.list_ranges(), index.file_len(), &file[..header_len], index.uri())
        .unwrap();
    // A longer prefix (what a header probe reads) is fine: only header_len bytes are hashed.
    m.check_against(index.list_ranges(), index.file_len(), &file, index.uri())
        .unwrap();

    let other_file = build_index("IVF16,Flat", Metric::L2, D, 2100);
    let other = open(&store, "other.faiss", other_file.clone()).await;
    let other_header = &other_file[..other.list_ranges().header_len() as usize];
    let err = m
        .check_against(other.list_ranges(), other.file_len(), other_header, other.uri())
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("does not describe this file"), "{err}");

    // Same file, each mismatch named.
    let layout = index.list_ranges();
    let mut header = file[..header_len].to_vec();
    let expect = |m: &Manifest, header: &[u8], needle: &str| {
        let err = m
            .check_against(layout, index.file_len(), header, index.uri())
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(needle), "wanted {needle:?}: {err}");
    };
    let mut longer = m.clone();
    longer.file_len += 1;
    expect(&longer, &header, "records");
    let mut shorter_header = m.clone();
    shorter_header.header_len -= 1;
    expect(&shorter_header, &header, "header");
    expect(&m, &header[..header_len - 1], "header bytes");
    header[header_len / 2] ^= 1;
    expect(&m, &header, "header hashes");
    header[header_len / 2] ^= 1;
    let mut fewer = m.clone();
    fewer.lists.pop();
    expect(&fewer, &header, "lists");
    let mut moved = m.clone();
    moved.lists[3].len += 8;
    expect(&moved, &header, "list 3 ");
}

#[tokio::test]
async fn verify_list_rejects_a_corrupted_list_of_a_real_index() {
    let file = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let index = open(&store, "idx.faiss", file.clone()).await;
    let m = index.build_manifest(|_| {}).await.unwrap();
    let (list, range) = index
        .list_ranges()
        .iter()
        .find(|(_, r)| r.len > 0)
        .map(|(l, r)| (l, *r))
        .unwrap();
    let mut bytes = file[range.offset as usize..(range.offset + range.len) as usize].to_vec();
    m.verify_list(list, &bytes, index.uri()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    let err = m.verify_list(list, &bytes, index.uri()).unwrap_err();
    assert!(matches!(&err, Error::Checksum { list: l, .. } if *l == list), "{err}");
    assert!(err.to_string().contains(&format!("list {list}")), "{err}");
}

#[tokio::test]
async fn write_puts_the_sidecar_next_to_the_index_and_read_at_finds_it() {
    let file = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let location = IndexLocation::new(store.clone(), "dir/idx.faiss", "test://dir/idx.faiss");
    assert_eq!(Manifest::read_at(&location).await.unwrap(), None);

    let index = open(&store, "dir/idx.faiss", file).await;
    let m = index.build_manifest(|_| {}).await.unwrap();
    m.write(&index.object().location).await.unwrap();
    let stored = store
        .get(&Path::from("dir/idx.faiss.ivfmanifest"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored, m.encode());
    assert_eq!(Manifest::read_at(&location).await.unwrap(), Some(m));

    // A damaged sidecar is an error naming the sidecar, not "no sidecar".
    put(
        &store,
        "dir/idx.faiss.ivfmanifest",
        b"IVFKMAN1 but nothing more".to_vec(),
    )
    .await;
    let err = Manifest::read_at(&location).await.unwrap_err();
    assert!(err.to_string().contains("test://dir/idx.faiss.ivfmanifest"), "{err}");
}

#[tokio::test]
async fn build_refuses_an_index_replaced_since_open() {
    let file = build_index("IVF16,Flat", Metric::L2, D, 2000);
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let index = open(&store, "idx.faiss", file.clone()).await;
    assert!(index.e_tag().is_some(), "InMemory gives ETags");
    store
        .put(&Path::from("idx.faiss"), PutPayload::from(file))
        .await
        .unwrap();
    let err = index.build_manifest(|_| {}).await.unwrap_err();
    assert!(matches!(err, Error::IndexChanged { .. }), "{err}");
}
