//! Per-index probe counts: how often each list was probed, the signal behind
//! `most_probed` warm-ups. Counts are kept per index URI in a small file
//! under the state directory (one frame of `crate::framing`), so they survive
//! a restart; loading them never fails an open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use crate::framing::{le_u64, Framing};

const FRAMING: Framing = Framing::new(b"IVFKPC02", 1);

/// How often each list was probed, for `most_probed` warm-ups.
#[derive(Debug)]
pub(crate) struct ProbeCounts {
    counts: Vec<AtomicU64>,
    file: Option<PathBuf>,
}

impl ProbeCounts {
    /// Counts for an index of `nlist` lists, resumed from `state_dir` when a
    /// file for this URI and list count is there.
    pub fn load(state_dir: Option<&Path>, uri: &str, nlist: usize) -> Self {
        let file = state_dir.map(|d| {
            d.join("probe-counts")
                .join(format!("{:016x}.bin", xxh3_64(uri.as_bytes())))
        });
        let saved = file.as_deref().and_then(|f| std::fs::read(f).ok());
        let counts = match saved.as_deref().and_then(|raw| decode(raw, nlist)) {
            Some(saved) => saved.into_iter().map(AtomicU64::new).collect(),
            None => (0..nlist).map(|_| AtomicU64::new(0)).collect(),
        };
        Self { counts, file }
    }

    pub fn record(&self, lists: &[usize]) {
        for &l in lists {
            if let Some(c) = self.counts.get(l) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The `n` most probed lists that were probed at all, hottest first.
    pub fn hottest(&self, n: usize) -> Vec<usize> {
        let mut probed: Vec<(u64, usize)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(l, c)| (c.load(Ordering::Relaxed), l))
            .filter(|(c, _)| *c > 0)
            .collect();
        probed.sort_unstable_by(|a, b| b.cmp(a));
        probed.into_iter().take(n).map(|(_, l)| l).collect()
    }

    /// Writes the counts (to a temporary file, then renamed). A no-op without a state directory.
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut body = Vec::with_capacity(8 + self.counts.len() * 8);
        body.extend_from_slice(&(self.counts.len() as u64).to_le_bytes());
        for c in &self.counts {
            body.extend_from_slice(&c.load(Ordering::Relaxed).to_le_bytes());
        }
        let raw = FRAMING.encode(&body);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = file.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &raw)?;
        std::fs::rename(&tmp, file)
    }
}

/// Counts saved for `nlist` lists, or `None` for anything else (another
/// index at this URI, a torn file).
fn decode(raw: &[u8], nlist: usize) -> Option<Vec<u64>> {
    let body = &raw[FRAMING.decode(raw).ok()?];
    if le_u64(body, 0)? != nlist as u64 || body.len() != 8usize.checked_add(nlist.checked_mul(8)?)? {
        return None;
    }
    (0..nlist).map(|i| le_u64(body, 8 + i * 8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_restart_and_reject_other_shapes() {
        let dir = std::env::temp_dir().join(format!("ivflake-probes-{}", std::process::id()));
        let counts = ProbeCounts::load(Some(&dir), "file:///x.faiss", 8);
        counts.record(&[3, 3, 3, 5, 1, 5, 99]);
        assert_eq!(counts.hottest(2), vec![3, 5]);
        counts.persist().unwrap();

        let again = ProbeCounts::load(Some(&dir), "file:///x.faiss", 8);
        assert_eq!(again.hottest(10), vec![3, 5, 1]);
        // A different list count is another index: start from zero.
        assert!(ProbeCounts::load(Some(&dir), "file:///x.faiss", 9)
            .hottest(10)
            .is_empty());
        // A torn file is ignored.
        let file = again.file.clone().unwrap();
        let raw = std::fs::read(&file).unwrap();
        std::fs::write(&file, &raw[..raw.len() - 3]).unwrap();
        assert!(ProbeCounts::load(Some(&dir), "file:///x.faiss", 8)
            .hottest(10)
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
