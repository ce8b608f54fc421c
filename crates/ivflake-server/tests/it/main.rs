//! The server's integration tests, one binary (one link of Faiss, arrow and
//! object_store) with a module per area. Tests that must run alone in their
//! process keep their own binary beside this folder, each saying why at its
//! top: `metrics.rs` (the process-wide metrics recorder) and `load.rs` (its
//! load would starve other tests' deadlines, and it reads process-wide
//! gauges and resident memory).

mod common;

mod attributes;
mod connections;
mod indexes;
mod ops;
mod proxy_faults;
mod requests;
mod search;
mod security;
mod writes;
