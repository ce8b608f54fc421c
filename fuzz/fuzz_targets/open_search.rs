//! Open + search of arbitrary bytes as a Faiss index file: must end in a
//! clean error or a search that runs, never a crash, hang or unbounded
//! allocation (run with `-rss_limit_mb`). Seed it with the faiss-cpu fixtures
//! (docs/robustness.md): random bytes rarely get past Faiss's first fourcc.
#![no_main]

include!("../open_search.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| open_search(data));
