//! The library's integration tests, one binary (one link of Faiss, arrow and
//! object_store) with a module per area. Tests that must run alone in their
//! process keep their own binary beside this folder, each saying why at its
//! top: `leaks.rs` and `bad_input.rs` (they measure the whole process's
//! memory), `uris.rs` (it sets an environment variable), `proxy_faults.rs`
//! (500 ms GET time-outs through a proxy in this process) and `mutations.rs`
//! (its own harness, one child process per fixture).

mod common;

mod attributes;
mod backends;
mod caches;
mod commit;
mod concurrency;
mod cost;
mod equivalence;
mod faults;
mod fixtures;
mod fuzz_body;
mod integrity;
mod io_counts;
mod manifest;
mod memory;
mod mutable;
mod mutable_attrs;
mod mutable_get;
mod preload;
mod text;
mod wrapped;
