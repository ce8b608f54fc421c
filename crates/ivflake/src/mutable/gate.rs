//! Pause points for crash tests. With `IVFLAKE_GATE=<step>` and
//! `IVFLAKE_GATE_DIR=<dir>` in its environment, a process that reaches
//! `<step>` writes `<dir>/<step>.reached` and waits there to be killed
//! (SIGKILL, by the test). Unset, a gate costs one read of a cached value.
//! Steps: `write:encoded` (a record built, not yet in the store),
//! `write:committed` (in the store, not yet acknowledged),
//! `compact:uploaded` (a new base written, no version names it) and
//! `compact:committed` (the new version committed, not yet in use).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a gated process waits to be killed before it aborts itself.
const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn reach(step: &str) {
    static GATE: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    let gate = GATE.get_or_init(|| {
        let step = std::env::var("IVFLAKE_GATE").ok()?;
        let dir = std::env::var_os("IVFLAKE_GATE_DIR")?;
        Some((step, PathBuf::from(dir)))
    });
    let Some((wanted, dir)) = gate else { return };
    if wanted != step {
        return;
    }
    let marker = dir.join(format!("{}.reached", step.replace(':', "-")));
    let _ = std::fs::write(&marker, std::process::id().to_string());
    // Blocks this thread on purpose: the process is about to be killed.
    std::thread::sleep(WAIT);
    std::process::abort();
}
