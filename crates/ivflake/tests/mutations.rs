//! Mutation suite: thousands of corrupted copies of every supported faiss-cpu
//! fixture are opened and searched in-process. None may crash, hang or
//! allocate without bound; each must end in a clean error or a search that runs.
//! Running out of memory is its own outcome, never a clean refusal: the
//! suite fails on it, and on a child whose peak RSS passes `PEAK_RSS_MIB`.
//!
//! A custom harness (`harness = false`): the parent runs one child process per
//! fixture under an address-space limit (`ulimit -v`), because Faiss allocates
//! before it validates and a crash must be seen, not suffered. A child prints
//! each mutation before trying it, so a crash or hang names the mutation that
//! caused it; the parent turns that into a test failure.
//!
//! `IVFLAKE_MUTATIONS` sets the count per fixture (default 5,000);
//! `IVFLAKE_MUTATION_SEED` the seed (default fixed, so runs repeat). To replay
//! mutation 42 of one fixture alone, in a debugger say:
//! `IVFLAKE_MUTATION_CHILD=ivfpq_l2 IVFLAKE_MUTATION_ONLY=42 target/debug/deps/mutations-<hash>`.

#[path = "it/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivflake::{Error, FetchConfig, IndexLocation, IvfIndex, OpenOptions};
use object_store::memory::InMemory;
use object_store::ObjectStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "IVFLAKE_MUTATION_CHILD";
const DEFAULT_MUTATIONS: usize = 5_000;
const DEFAULT_SEED: u64 = 0x1f1a_6e00_0009;
/// Address space a child may map: several times what a search of these small
/// fixtures needs (runtime, thread stacks, OpenBLAS buffers), far below what a
/// blown-up size field would ask for.
const ADDRESS_SPACE_KIB: u64 = 4 << 20;
/// Resident memory a child may reach: about three times the most a child
/// has needed (157 MiB), far below what one blown-up size field asks for.
const PEAK_RSS_MIB: u64 = 512;
/// The errors a search of a mutated file may end in: the list bytes it
/// read do not hold what the header says.
const SEARCH_ERRORS: &[&str] = &["search_error:Corrupt", "search_error:ShortRead"];
/// A child that runs longer than this is hung (a healthy one takes seconds).
const CHILD_DEADLINE: Duration = Duration::from_secs(300);
/// One open + search of a tiny fixture takes milliseconds; this is a hang.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(20);

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(name) => child(&name),
        Err(_) => parent(),
    }
}

fn mutations_per_fixture() -> usize {
    std::env::var("IVFLAKE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MUTATIONS)
}

fn seed() -> u64 {
    std::env::var("IVFLAKE_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

// ---------------------------------------------------------------------------
// Parent: one child per fixture, then the totals.
// ---------------------------------------------------------------------------

fn parent() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::fixtures().join("manifest.json")).expect("manifest.json"))
            .expect("manifest.json is JSON");
    // Plain IVF files, refined and id-mapped ones, and on-disk ones.
    let names: Vec<String> = ["supported", "wrapped", "on_disk"]
        .iter()
        .flat_map(|kind| manifest[*kind].as_array().cloned().unwrap_or_default())
        .map(|f| f["name"].as_str().expect("name").to_string())
        .collect();
    assert!(names.len() >= 20, "expected the faiss-cpu fixtures, found {names:?}");
    // The classifier itself: running out of memory, a peak past the bound
    // and an unclean search error each fail a child's counts.
    for wrong in [
        ("out_of_memory", 1),
        ("peak_rss_mib", PEAK_RSS_MIB + 1),
        ("search_error:Faiss", 1),
    ] {
        let counts = BTreeMap::from([("peak_rss_mib".to_string(), 1), (wrong.0.to_string(), wrong.1)]);
        assert!(wrong_outcomes(&counts).is_some(), "{wrong:?} passes");
    }
    assert_eq!(wrong_outcomes(&BTreeMap::from([("peak_rss_mib".to_string(), 1)])), None);
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for name in &names {
        match run_child(&exe, name) {
            Ok(summary) => {
                println!("{name:>18}: {}", format_counts(&summary));
                if let Some(wrong) = wrong_outcomes(&summary) {
                    failures.push(format!("{name}: {wrong}"));
                }
                for (k, v) in summary {
                    *totals.entry(k).or_default() += v;
                }
            }
            Err(failure) => {
                println!("{name:>18}: FAILED: {failure}");
                failures.push(format!("{name}: {failure}"));
            }
        }
    }
    println!(
        "mutation suite: {} fixtures in {:.1} s: {}",
        names.len(),
        started.elapsed().as_secs_f64(),
        format_counts(&totals)
    );
    assert!(
        failures.is_empty(),
        "mutations crashed, hung or failed:\n{}",
        failures.join("\n")
    );
    let tried = totals.get("tried").copied().unwrap_or(0);
    assert_eq!(
        tried,
        (names.len() * mutations_per_fixture()) as u64,
        "every mutation ran"
    );
    // The suite must exercise both outcomes, or its mutations are not biting.
    assert!(
        totals.get("searched").copied().unwrap_or(0) > 0,
        "no mutated file was searchable"
    );
    let refused: u64 = totals
        .iter()
        .filter(|(k, _)| k.starts_with("open_error"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        refused > tried / 10,
        "too few mutations were refused: {refused} of {tried}"
    );
}

/// What a child's counts show that must not happen: running out of memory,
/// a peak RSS past the bound, or a search error that is not a clean refusal.
fn wrong_outcomes(summary: &BTreeMap<String, u64>) -> Option<String> {
    let mut wrong = Vec::new();
    if let Some(n) = summary.get("out_of_memory") {
        wrong.push(format!("{n} mutation(s) ran out of memory"));
    }
    match summary.get("peak_rss_mib") {
        Some(&peak) if peak > PEAK_RSS_MIB => wrong.push(format!("peak RSS {peak} MiB > {PEAK_RSS_MIB} MiB")),
        Some(_) => {}
        None => wrong.push("no peak RSS reported".into()),
    }
    for (outcome, n) in summary {
        if outcome.starts_with("search_error") && !SEARCH_ERRORS.contains(&outcome.as_str()) {
            wrong.push(format!("{n} search(es) ended in {outcome}"));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the child for one fixture and parses its summary line.
fn run_child(exe: &std::path::Path, name: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(ADDRESS_SPACE_KIB.to_string())
        .arg(exe)
        .env(CHILD_ENV, name)
        // glibc reserves 64 MiB of address space per malloc arena, up to
        // eight per core: on a many-core machine that alone would reach the
        // limit. Two arenas keep the limit about what Faiss asks for.
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    // Keep only the last lines: the mutation in flight and the summary.
    let reader = std::thread::spawn(move || {
        let mut last = String::new();
        let mut summary = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("SUMMARY ") {
                summary = Some(rest.to_string());
            } else if line.starts_with("note: ") {
                println!("    {line}");
            } else {
                last = line;
            }
        }
        (last, summary)
    });
    let err_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        tail.join("\n")
    });
    let deadline = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (last, _) = reader.join().expect("reader");
            return Err(format!("hung for {CHILD_DEADLINE:?}; in flight: {last}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (last, summary) = reader.join().expect("reader");
    let stderr_tail = err_reader.join().expect("stderr reader");
    if !status.success() {
        return Err(format!(
            "child ended with {status}; in flight: {last}\nstderr:\n{stderr_tail}"
        ));
    }
    let summary = summary.ok_or_else(|| format!("no summary; last line: {last}\nstderr:\n{stderr_tail}"))?;
    Ok(summary
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect())
}

// ---------------------------------------------------------------------------
// Child: mutate, open, search, count.
// ---------------------------------------------------------------------------

fn child(name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run_mutations(name));
}

async fn run_mutations(name: &str) {
    let original = std::fs::read(common::fixtures().join(format!("{name}.faiss"))).expect("fixture");
    // An on-disk index's lists: a data object beside it, named as its header says.
    let data_path = common::fixtures().join(format!("{name}.ivfdata"));
    let data = data_path.exists().then(|| {
        let bytes = std::fs::read(&data_path).expect("data file");
        (format!("{name}.ivfdata"), bytes)
    });
    let intact = open(original.clone(), data.clone(), None)
        .await
        .expect("the intact fixture opens");
    let regions = parsed_regions(&intact, original.len());
    assert!(!regions.is_empty() && regions.iter().all(|r| r.end <= original.len()));
    let size_fields: Vec<usize> = regions
        .iter()
        .flat_map(|r| {
            size_like_fields(&original[r.clone()], original.len() as u64)
                .into_iter()
                .map(move |p| p + r.start)
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed() ^ xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = std::io::stdout().lock();
    // Reproduces one mutation (under a debugger, say): the rest are skipped.
    let only: Option<usize> = std::env::var("IVFLAKE_MUTATION_ONLY").ok().and_then(|v| v.parse().ok());
    for i in 0..mutations_per_fixture() {
        let mut bytes = original.clone();
        let mut data = data.clone();
        // On-disk indexes: a tenth of the mutations hit the data object.
        let what = match &mut data {
            Some((_, lists)) if rng.gen_bool(0.1) => format!("data file: {}", mutate(&mut rng, lists, &[], &[])),
            _ => mutate(&mut rng, &mut bytes, &regions, &size_fields),
        };
        // A small first read makes some opens take the "header needs more
        // bytes" path, where a partly parsed header is thrown away.
        let probe = if rng.gen_bool(0.25) {
            Some(rng.gen_range(64..4096))
        } else {
            None
        };
        if only.is_some_and(|only| only != i) {
            continue;
        }
        writeln!(out, "mutation {i}: {what} (probe {probe:?})").expect("stdout");
        out.flush().expect("stdout");
        let outcome = tokio::time::timeout(
            ATTEMPT_DEADLINE,
            attempt(bytes, data, probe, &mut StdRng::seed_from_u64(i as u64)),
        )
        .await
        .unwrap_or_else(|_| panic!("mutation {i} ({what}) hung for {ATTEMPT_DEADLINE:?}"));
        *counts.entry("tried".into()).or_default() += 1;
        *counts.entry(outcome).or_default() += 1;
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0);
    counts.insert("peak_rss_mib".into(), peak / 1024);
    writeln!(out, "SUMMARY {}", format_counts(&counts)).expect("stdout");
}

/// Opens and searches one mutated file; names the outcome.
async fn attempt(bytes: Vec<u8>, data: Option<(String, Vec<u8>)>, probe: Option<u64>, rng: &mut StdRng) -> String {
    let index = match open(bytes, data, probe).await {
        Ok(index) => index,
        Err(e) if out_of_memory(&e) => return "out_of_memory".into(),
        Err(e) => return format!("open_error:{}", kind(&e)),
    };
    let info = index.info().clone();
    let queries: Vec<f32> = (0..2 * info.d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let nprobe = if rng.gen_bool(0.2) { info.nlist.max(1) } else { 8 };
    match index.search(&queries, 10, nprobe).await {
        Ok(results) => {
            assert_eq!(results.ids.len(), 2 * 10, "a search that runs answers every query");
            "searched".into()
        }
        Err(e) if out_of_memory(&e) => "out_of_memory".into(),
        Err(e) => {
            // Rare: worth reading (the parent prints these), since an error a
            // search meets may be a check open should have made.
            println!("note: search error: {e}");
            format!("search_error:{}", kind(&e))
        }
    }
}

async fn open(bytes: Vec<u8>, data: Option<(String, Vec<u8>)>, probe: Option<u64>) -> ivflake::Result<IvfIndex> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    common::put(&store, "m.faiss", bytes).await;
    if let Some((name, lists)) = data {
        common::put(&store, &name, lists).await;
    }
    let mut options: OpenOptions = common::options(FetchConfig::default());
    if let Some(probe) = probe {
        options.header_probe_bytes = probe;
    }
    IvfIndex::open_at(
        IndexLocation::new(store, "m.faiss", "memory://mutations/m.faiss"),
        options,
    )
    .await
}

/// Whether Faiss ran out of memory (under the child's address-space limit,
/// what an unbounded allocation meets).
fn out_of_memory(e: &Error) -> bool {
    matches!(e, Error::Faiss(f) if f.kind() == ivflake_faiss::FaissErrorKind::OutOfMemory)
}

/// The variant's name: what kind of clean error a mutation ended in.
fn kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    debug[..end].to_string()
}

/// The byte ranges of the index file that are parsed, not range-read: the
/// header before the lists and, for wrapped indexes, the refine index's head,
/// its k_factor and the id map's count after them. On-disk indexes: the
/// whole file (their lists are in the data object).
fn parsed_regions(index: &IvfIndex, file_len: usize) -> Vec<std::ops::Range<usize>> {
    let info = index.info();
    if info.on_disk.is_some() {
        return std::iter::once(0..file_len).collect();
    }
    let mut regions: Vec<std::ops::Range<usize>> = std::iter::once(0..info.list_data_offset as usize).collect();
    let ntotal = info.ntotal.max(0) as usize;
    if let Some(end) = info.list_data_end {
        let end = end as usize;
        let tail_start = match info.refine {
            Some(r) => r.codes_offset as usize,
            None => info.id_map.map_or(file_len, |m| m.offset as usize),
        };
        regions.push(end..tail_start);
        if let Some(r) = info.refine {
            let codes_end = r.codes_offset as usize + ntotal * r.code_size;
            regions.push(codes_end..(codes_end + 12).min(file_len));
        }
        if let Some(m) = info.id_map {
            regions.push(m.offset as usize - 8..m.offset as usize);
        }
    }
    regions.retain(|r| !r.is_empty());
    regions
}

/// Offsets of 8-byte little-endian values that look like counts or sizes
/// (1 ..= file length): blowing these up is how a hostile header asks for
/// unbounded allocations.
fn size_like_fields(header: &[u8], file_len: u64) -> Vec<usize> {
    (0..header.len().saturating_sub(8))
        .filter(|&p| {
            let v = u64::from_le_bytes(header[p..p + 8].try_into().expect("8 bytes"));
            (1..=file_len).contains(&v)
        })
        .collect()
}

/// Applies one random mutation; returns what it did.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>, parsed: &[std::ops::Range<usize>], size_fields: &[usize]) -> String {
    // Most mutations hit what is parsed (the header, a wrapper's parts); some
    // hit anywhere, list data and refine codes included, which searches read.
    let region = if !parsed.is_empty() && rng.gen_bool(0.9) {
        parsed[rng.gen_range(0..parsed.len())].clone()
    } else {
        0..bytes.len()
    };
    match rng.gen_range(0..5) {
        0 => {
            let flips = rng.gen_range(1..=4);
            let mut at = Vec::new();
            for _ in 0..flips {
                let p = rng.gen_range(region.clone());
                let bit = rng.gen_range(0..8);
                bytes[p] ^= 1 << bit;
                at.push(format!("{p}.{bit}"));
            }
            format!("bit flips at {}", at.join(","))
        }
        1 => {
            let writes = rng.gen_range(1..=4);
            let mut at = Vec::new();
            for _ in 0..writes {
                let p = rng.gen_range(region.clone());
                let v: u8 = rng.gen();
                bytes[p] = v;
                at.push(format!("{p}={v}"));
            }
            format!("byte writes {}", at.join(","))
        }
        2 if !size_fields.is_empty() => {
            let p = size_fields[rng.gen_range(0..size_fields.len())];
            let old = u64::from_le_bytes(bytes[p..p + 8].try_into().expect("8 bytes"));
            let new = [
                0,
                old + 1,
                old - 1,
                old.saturating_mul(1000),
                1 << 31,
                1 << 32,
                1 << 40,
                i64::MAX as u64,
                u64::MAX,
            ][rng.gen_range(0..9)];
            bytes[p..p + 8].copy_from_slice(&new.to_le_bytes());
            format!("size field at {p}: {old} -> {new}")
        }
        3 => {
            let cut = rng.gen_range(0..bytes.len());
            bytes.truncate(cut);
            format!("truncated to {cut}")
        }
        _ => {
            let p = rng.gen_range(region.clone());
            let len = rng.gen_range(1..=256).min(bytes.len() - p);
            bytes[p..p + len].fill(0);
            format!("zeroed {len} bytes at {p}")
        }
    }
}
