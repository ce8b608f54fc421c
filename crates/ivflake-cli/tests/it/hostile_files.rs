//! `ivflake search` on corrupted faiss-cpu files, as a process: it exits with
//! an error naming what is wrong, and is never killed by a signal. The
//! in-process mutation suite (crates/ivflake/tests/mutations.rs) tries many
//! more mutations; this checks the command users run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ivflake_testkit::fixtures;

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");

fn search(index: &Path) -> Output {
    let queries = fixtures().join("queries.npy");
    Command::new(BIN)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env_remove("RUST_LOG")
        .args([
            "search",
            index.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
        ])
        .args(["-k", "10", "--nprobe", "8"])
        .output()
        .expect("run ivflake")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivflake-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Where the HNSW quantizer's neighbour array starts: after the `IHNf` tag,
/// the index header (d, ntotal, two dummies, is_trained, metric) and four
/// vectors (assign_probas, cum_nneighbor_per_level, levels, offsets), each a
/// u64 length and its elements.
fn hnsw_neighbors_at(bytes: &[u8]) -> usize {
    let tag = bytes.windows(4).position(|w| w == b"IHNf").expect("an HNSW quantizer");
    let mut p = tag + 4 + 4 + 8 + 8 + 8 + 1 + 4;
    for elem in [8, 4, 4, 8] {
        let n = u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap()) as usize;
        p += 8 + n * elem;
    }
    p + 8
}

#[test]
fn an_hnsw_neighbour_out_of_range_is_a_corrupt_error_not_a_crash() {
    // The report: bits flipped in the HNSW graph, and `ivflake search` died
    // by SIGSEGV in the quantizer's graph walk.
    let mut bytes = std::fs::read(fixtures().join("hnsw_ivfflat_l2.faiss")).unwrap();
    let at = hnsw_neighbors_at(&bytes);
    let first = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(
        (-1..64).contains(&first),
        "the neighbour array starts at byte {at} (read {first})"
    );
    bytes[at..at + 4].copy_from_slice(&9000i32.to_le_bytes());
    let path = scratch("hnsw-neighbour.faiss");
    std::fs::write(&path, &bytes).unwrap();
    let out = search(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exits with an error, not a signal: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("corrupt HNSW coarse quantizer graph"), "{stderr}");
    assert!(stderr.contains("neighbors[0] = 9000"), "{stderr}");
}

#[test]
fn flipped_header_bits_never_kill_the_process() {
    // One bit flipped at evenly spaced header offsets of three fixtures
    // (HNSW quantizer, OPQ + fast-scan, RaBitQ): bounded, about 40 runs each.
    let mut exits = [0usize; 2];
    for name in ["hnsw_ivfflat_l2", "opq_ivfpqfs_l2", "ivfrabitq_ip"] {
        let original = std::fs::read(fixtures().join(format!("{name}.faiss"))).unwrap();
        // The header is what Faiss parses; list data follows the quantizer's codes.
        let header = original.len().min(24 << 10);
        let step = (header / 40).max(1);
        for (i, at) in (0..header).step_by(step).enumerate() {
            let mut bytes = original.clone();
            bytes[at] ^= 1 << (i % 8);
            let path = scratch(&format!("{name}-{at}.faiss"));
            std::fs::write(&path, &bytes).unwrap();
            let out = search(&path);
            let code = out.status.code();
            assert!(
                matches!(code, Some(0) | Some(1)),
                "{name} with bit {} of byte {at} flipped: {} (a signal?)\n{}",
                i % 8,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            exits[code.unwrap() as usize] += 1;
            std::fs::remove_file(&path).unwrap();
        }
    }
    println!("searched {} mutated files, refused {}", exits[0], exits[1]);
    assert!(exits[1] > 0, "some flipped bits must be refused");
}
