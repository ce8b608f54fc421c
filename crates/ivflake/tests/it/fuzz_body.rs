//! The fuzz target's body (`fuzz/open_search.rs`), compiled and run here on
//! every faiss-cpu fixture, whole and cut short, so the target cannot rot
//! while only nightly builds it. The mutation suite is the broad search; this
//! only keeps the fuzz target's code honest.

#[path = "../../../../fuzz/open_search.rs"]
mod open_search;

use crate::common::fixtures;

#[test]
fn the_fuzz_target_runs_on_every_fixture() {
    let mut files = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "faiss") {
            let bytes = std::fs::read(&path).expect("fixture");
            for len in [bytes.len(), bytes.len() / 2, 64] {
                open_search::open_search(&bytes[..len.min(bytes.len())]);
            }
            files += 1;
        }
    }
    assert!(files >= 10, "only {files} fixtures");
}
