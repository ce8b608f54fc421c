//! The command's integration tests, one binary with a module per area; each
//! runs the `ivflake` binary as a child process. `slow_clients.rs` keeps its
//! own binary beside this folder and says why at its top.

mod attributes;
mod cli;
mod hostile_files;
mod wrapped;
mod writes;
