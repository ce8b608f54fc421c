//! A lazily opened header plus list buffers cut from the file, scanned by
//! `scan_lists`, equals Faiss searching the whole file in memory, for every
//! served type and list layout; broken files fail with the right kind.
use crate::common::*;
use ivflake_faiss::{
    open_header, read_index, CoarseAssignment, FaissErrorKind, HeaderProbe, IdFilter, Index, ListFormat, ListSlice,
    Metric,
};

fn check(factory: &str, metric: Metric, layout_is_blocks: bool) {
    let bytes = file(factory, metric);
    let reference = read_index(&bytes).expect("full read");
    let lazy = opened(&bytes);
    assert_eq!(
        matches!(lazy.list_format(), ListFormat::Blocks { .. }),
        layout_is_blocks,
        "{factory}"
    );
    assert_eq!(lazy.list_format(), reference.list_format(), "{factory}");
    let fetched = FetchedLists::new(&lazy, &bytes);
    let slices = fetched.slices();
    let queries = vectors(40, 5);
    let allowed: Vec<i64> = (0..3000).step_by(3).collect();
    for (k, nprobe) in [(1, 1), (10, 4), (30, 16)] {
        for filter in [IdFilter::All, IdFilter::Allow(&allowed), IdFilter::Range(500, 2500)] {
            let xt = lazy.apply_transform(&queries).unwrap();
            let assignment = lazy.coarse_search(&xt, nprobe).unwrap();
            let slots: Vec<i32> = assignment.lists.iter().map(|&l| l as i32).collect();
            let ours = lazy.scan_lists(&xt, k, &assignment, &slots, &slices, filter).unwrap();
            let theirs = reference.search_filtered(&queries, k, nprobe, filter).unwrap();
            // Vectors in [0, 1)^16: any real distance is small; this guards
            // against comparing two garbage answers.
            let found = theirs.labels.iter().zip(&theirs.distances).filter(|(l, _)| **l >= 0);
            assert!(found.clone().count() > 0, "{factory}: nothing found");
            assert!(
                found.clone().all(|(_, d)| d.abs() < 100.0),
                "{factory}: distances out of range"
            );
            assert_eq!(
                ours.labels, theirs.labels,
                "{factory} {metric:?} k={k} nprobe={nprobe} {filter:?}"
            );
            assert_eq!(
                ours.distances, theirs.distances,
                "{factory} {metric:?} k={k} nprobe={nprobe}"
            );
        }
    }
}

#[test]
fn array_lists_equal_faiss() {
    check("IVF16,Flat", Metric::L2, false);
    check("OPQ4,IVF16,PQ4np", Metric::InnerProduct, false);
    check("IVF16,SQ8", Metric::L2, false);
}

#[test]
fn fast_scan_block_lists_equal_faiss() {
    check("IVF16,PQ8x4fs", Metric::L2, true);
    check("IVF16,PQ8x4fs", Metric::InnerProduct, true);
    check("OPQ8,IVF16,PQ8x4fs", Metric::L2, true);
    // Odd M: codes padded to M2 = M + 1 in every block.
    check("PCA15,IVF16,PQ5x4fs", Metric::L2, true);
}

#[test]
fn rabitq_equals_faiss() {
    check("IVF16,RaBitQ", Metric::L2, false);
    check("IVF16,RaBitQ", Metric::InnerProduct, false);
}

#[test]
fn misaligned_block_codes_are_copied_not_misread() {
    let bytes = file("IVF16,PQ8x4fs", Metric::L2);
    let reference = read_index(&bytes).unwrap();
    let lazy = opened(&bytes);
    let fetched = FetchedLists::shifted(&lazy, &bytes, 8);
    let slices = fetched.slices();
    assert!(slices.iter().any(|s| !(s.codes.as_ptr() as usize).is_multiple_of(32)));
    let queries = vectors(20, 4);
    let assignment = lazy.coarse_search(&queries, 8).unwrap();
    let slots: Vec<i32> = assignment.lists.iter().map(|&l| l as i32).collect();
    let ours = lazy
        .scan_lists(&queries, 10, &assignment, &slots, &slices, IdFilter::All)
        .unwrap();
    assert_eq!(ours, reference.search(&queries, 10, 8).unwrap());
}

#[test]
fn unfetched_lists_are_skipped() {
    let bytes = file("IVF16,PQ8x4fs", Metric::L2);
    let lazy = opened(&bytes);
    let queries = vectors(3, 9);
    let assignment: CoarseAssignment = lazy.coarse_search(&queries, 4).unwrap();
    // No buffers at all: every probe is masked, nothing is found.
    let slots = vec![-1; assignment.lists.len()];
    let out = lazy
        .scan_lists(&queries, 5, &assignment, &slots, &[], IdFilter::All)
        .unwrap();
    assert!(out.labels.iter().all(|&l| l == -1));
}

#[test]
fn header_of_block_lists_needs_only_its_own_bytes() {
    let bytes = file("IVF16,PQ8x4fs", Metric::L2);
    let lazy = opened(&bytes);
    let start = lazy.info().list_data_offset as usize;
    assert!(
        lazy.list_sizes().unwrap().is_empty(),
        "block list sizes are not in the header"
    );
    // The header alone (up to the first list's count) opens the index.
    match open_header(&bytes[..start], bytes.len() as u64, bytes.len() * 4).unwrap() {
        HeaderProbe::Opened(index) => assert_eq!(index.info().list_data_offset as usize, start),
        HeaderProbe::NeedBytes(n) => panic!("asks for {n} bytes beyond the header's {start}"),
        HeaderProbe::NeedRange(r) => panic!("asks for bytes {r:?} beyond the header"),
    }
    match open_header(&bytes[..start - 8], bytes.len() as u64, bytes.len() * 4).unwrap() {
        HeaderProbe::NeedBytes(n) => assert_eq!(n as usize, start),
        HeaderProbe::Opened(_) | HeaderProbe::NeedRange(_) => {
            panic!("opened, or asked past the prefix, without the block section's last field")
        }
    }
}

#[test]
fn broken_files_fail_with_a_kind() {
    let bytes = file("IVF16,PQ8x4fs", Metric::L2);
    let start = opened(&bytes).info().list_data_offset as usize;
    // The block section claims more lists than the file can hold.
    let mut corrupt = bytes.clone();
    let nlist_at = start - 32;
    corrupt[nlist_at..nlist_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = open_header(&corrupt, corrupt.len() as u64, corrupt.len() * 4)
        .err()
        .expect("corrupt nlist");
    assert!(
        matches!(err.kind(), FaissErrorKind::Corrupt | FaissErrorKind::AllocationRefused),
        "{err:?}"
    );
    // n_per_block that does not match the index's bbs.
    let mut corrupt = bytes.clone();
    corrupt[start - 16..start - 8].copy_from_slice(&7u64.to_le_bytes());
    let err = open_header(&corrupt, corrupt.len() as u64, corrupt.len() * 4)
        .err()
        .expect("bad block shape");
    assert_eq!(err.kind(), FaissErrorKind::Corrupt, "{err}");

    // An index type nobody knows.
    let mut unknown = bytes.clone();
    unknown[..4].copy_from_slice(b"IwZZ");
    let err = open_header(&unknown, unknown.len() as u64, unknown.len() * 4)
        .err()
        .expect("unknown type");
    assert_eq!(err.kind(), FaissErrorKind::Unsupported, "{err}");
    assert!(err.message().contains(&ivflake_faiss::faiss_version()), "{err}");

    // A known type that is not an IVF index.
    let mut flat = Index::factory(D, "Flat", Metric::L2).unwrap();
    flat.add(&vectors(10, 2)).unwrap();
    let flat = flat.to_bytes().unwrap();
    let err = read_index(&flat).expect_err("flat is not served");
    assert_eq!(err.kind(), FaissErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("IndexFlat"), "{err}");
    let served_types = ivflake_faiss::served_types();
    assert_eq!(
        served_types.len(),
        5,
        "the shim's table of served types: {served_types:?}"
    );
    for (_, served) in served_types {
        assert!(err.message().contains(&served), "the message lists {served}: {err}");
    }
}

#[test]
fn bad_scan_requests_are_invalid_arguments() {
    let bytes = file("IVF16,Flat", Metric::L2);
    let lazy = opened(&bytes);
    let queries = vectors(2, 3);
    let assignment = lazy.coarse_search(&queries, 2).unwrap();
    let codes = vec![0u8; 3];
    let ids = [1i64];
    let bad = [ListSlice {
        codes: &codes,
        ids: &ids,
    }];
    let slots = vec![0; assignment.lists.len()];
    let err = lazy
        .scan_lists(&queries, 3, &assignment, &slots, &bad, IdFilter::All)
        .unwrap_err();
    assert_eq!(err.kind(), FaissErrorKind::InvalidArgument, "{err}");
    let err = lazy
        .scan_lists(&queries, 3, &assignment, &[7; 4], &[], IdFilter::All)
        .unwrap_err();
    assert_eq!(err.kind(), FaissErrorKind::InvalidArgument, "{err}");
    // A lazily opened index cannot search on its own.
    let err = lazy.search(&queries, 3, 2).unwrap_err();
    assert_eq!(err.kind(), FaissErrorKind::InvalidArgument, "{err}");
}
