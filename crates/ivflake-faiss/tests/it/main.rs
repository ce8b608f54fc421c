//! The binding's integration tests, one binary with a module per area.

mod common;

mod faiss_cpu_files;
mod lazy_scan;
mod search_filtered;
