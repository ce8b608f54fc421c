//! `[compaction]`: who compacts writable and S3 Vectors indexes, the
//! server in the background or a separate worker (`ivflake compact
//! --watch`), and how often the worker looks.

use serde::Deserialize;

/// Where compaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionMode {
    /// Each server compacts the indexes it serves once their logs pass
    /// their thresholds: one process does everything.
    #[default]
    Server,
    /// Servers never compact on their own (the explicit compact routes
    /// still do); `ivflake compact --watch` does, so search replicas keep
    /// their CPU and memory for searches.
    Worker,
}

/// The shortest `gc_retention_secs`: past a replica's staleness bound and
/// a search in flight, with room for a compaction's upload.
pub const MIN_GC_RETENTION_SECS: u64 = 300;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    pub mode: CompactionMode,
    /// How often the worker checks every index's log, in ms.
    pub interval_ms: u64,
    /// The worker's `gc` keeps what versions younger than this name. It
    /// must exceed the longest compaction and the longest a replica keeps
    /// an old version (a search in flight, the staleness bound).
    pub gc_retention_secs: u64,
    /// The worker runs `gc` on every index at most this often, in seconds.
    pub gc_interval_secs: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            mode: CompactionMode::Server,
            interval_ms: 10_000,
            gc_retention_secs: 3600,
            gc_interval_secs: 600,
        }
    }
}

impl CompactionConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.gc_retention_secs < MIN_GC_RETENTION_SECS {
            return Err((
                "compaction.gc_retention_secs",
                format!(
                    "must be at least {MIN_GC_RETENTION_SECS}: a shorter one deletes what a compaction still uploads \
                     or a replica still reads"
                ),
            ));
        }
        for (key, value) in [
            ("compaction.interval_ms", self.interval_ms),
            ("compaction.gc_interval_secs", self.gc_interval_secs),
        ] {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// Whether servers compact in the background.
    pub fn in_server(&self) -> bool {
        self.mode == CompactionMode::Server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_unknown_ones_are_refused() {
        let c: CompactionConfig = toml::from_str("mode = \"worker\"\n").unwrap();
        assert!(!c.in_server());
        assert!(CompactionConfig::default().in_server());
        assert!(toml::from_str::<CompactionConfig>("mode = \"sometimes\"\n").is_err());
        let zero: CompactionConfig = toml::from_str("interval_ms = 0\n").unwrap();
        assert_eq!(zero.validate().unwrap_err().0, "compaction.interval_ms");
        let hasty: CompactionConfig = toml::from_str("gc_retention_secs = 5\n").unwrap();
        assert_eq!(hasty.validate().unwrap_err().0, "compaction.gc_retention_secs");
    }
}
