//! [`TempDir`]: a fresh directory for one test, removed when dropped. It
//! owns only directories it created; it never touches a path it was given.

use std::path::Path;

/// A fresh directory under the system temp dir, named after what the test
/// calls it (`ivflake-<name>-<random>`, so a leftover one says whose it
/// was), removed with its contents when dropped. Unique per call, so tests
/// in one process never share one.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ivflake-{name}-"))
            .tempdir()
            .expect("create a temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}
