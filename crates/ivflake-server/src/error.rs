//! [`ServerError`]: what the server's public functions return (loading the
//! config, binding, adding an index, running). Errors a request meets are
//! `ApiError`s, rendered by `routes`; none of them is one of these.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::registry::RegistryError;

/// Why the server could not load its config, start or add an index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot read the config file {}", .path.display())]
    ConfigRead { path: PathBuf, source: std::io::Error },
    /// The TOML does not parse or names an unknown key. The parser's message
    /// (which key, what was expected) is part of this one, so it is no
    /// `source` that a chain would print twice.
    #[error("invalid server config{}: {reason}", in_file(.path))]
    ConfigSyntax { path: Option<PathBuf>, reason: String },
    /// A setting is out of range or at odds with another; `key` is its TOML path.
    #[error("{key}: {reason}")]
    InvalidSetting { key: String, reason: String },
    /// A per-index setting is wrong (`indexes.NAME.KEY` in the config).
    #[error("indexes.{index}.{key}: {reason}")]
    InvalidIndexSetting {
        index: String,
        key: &'static str,
        reason: String,
    },
    /// Index names end up in URLs, logs and metric labels, so few pass.
    #[error("index name {name:?}: {reason}")]
    InvalidIndexName { name: String, reason: String },
    #[error("cannot start the compute pool")]
    ComputePool { source: ivflake::Error },
    #[error("cannot listen on {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// Opening or registering an index failed ([`RegistryError::OpenFailed`]
    /// carries the index's name and the library's error).
    #[error(transparent)]
    Index(#[from] RegistryError),
    /// The S3 Vectors API's root cannot be opened, or its store ignores
    /// conditional creates.
    #[error("cannot serve the vector root {uri}")]
    VectorRoot { uri: String, source: ivflake::Error },
}

/// " in PATH" when a config came from a file.
fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}
