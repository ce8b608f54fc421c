//! Helpers the subcommands share.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ivflake::{IndexLocation, Metric};
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use crate::vectors::{self, Vectors};

/// Reads a vector file off the async runtime.
pub async fn load_vectors(path: &Path) -> Result<Arc<Vectors>> {
    let owned = path.to_path_buf();
    let vectors = tokio::task::spawn_blocking(move || vectors::read_vectors(&owned))
        .await
        .context("the file-reading task failed")??;
    Ok(Arc::new(vectors))
}

/// A clap value parser for `--metric`: `l2` or `inner_product` (the
/// library's spelling, [`Metric::name`]); the old `ip` still works, with a
/// deprecation note.
pub fn parse_metric(s: &str) -> Result<Metric, String> {
    let metric = Metric::from_name(s).ok_or_else(|| format!("{s:?} is not a metric: use l2 or inner_product"))?;
    if Metric::is_deprecated_name(s) {
        eprintln!("note: --metric {s} is deprecated; write --metric {}", metric.name());
    }
    Ok(metric)
}

/// A clap value parser for integers of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a whole number: {e}"))?;
    if v == 0 {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

/// `1234567` → `"1.2 MiB"`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Writes `buf` to stdout. Returns `Ok(false)` when the reader went away
/// (`ivflake search … | head`), so the caller can stop quietly.
pub fn write_stdout(buf: &[u8]) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | ':' | ',' | '=' | '+'));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A spinner on stderr for a step with no measurable progress (training).
pub fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A progress bar on stderr (hidden when stderr is not a terminal) counting
/// `unit`s; a unit of "bytes" shows sizes and throughput.
pub fn progress_bar(len: u64, verb: &str, unit: &str) -> ProgressBar {
    let template = if unit == "bytes" {
        format!("{verb} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, eta {{eta}})")
    } else {
        format!("{verb} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})")
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style)
}

/// `"256K"`, `"1M"`, `"64KiB"`, `"4096"` → bytes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 0, 4096, 64K or 1M"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use K, M or G")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Buffer of the object-store writer: objects larger than this go up as
/// multipart parts of this size (S3 wants parts of at least 5 MiB).
const WRITE_BUFFER: usize = 8 << 20;

/// Streams `bytes` to the store; objects above the buffer size go up as a
/// multipart upload, aborted if a part fails.
pub async fn write_object(location: &IndexLocation, bytes: &[u8]) -> Result<()> {
    let mut writer = BufWriter::with_capacity(location.store.clone(), location.path.clone(), WRITE_BUFFER);
    let bar = progress_bar(bytes.len() as u64, "writing", "bytes");
    for chunk in bytes.chunks(WRITE_BUFFER) {
        if let Err(e) = writer.write_all(chunk).await {
            bar.finish_and_clear();
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting the failed upload failed too");
            }
            return Err(e).with_context(|| format!("writing the index to {} failed", location.uri));
        }
        bar.inc(chunk.len() as u64);
    }
    let finished = writer.shutdown().await;
    bar.finish_and_clear();
    finished.with_context(|| format!("completing the write of the index to {} failed", location.uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("demo-data/index.faiss"), "demo-data/index.faiss");
        assert_eq!(shell_quote("my dir/x"), "'my dir/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16K"), Ok(16 << 10));
        assert_eq!(parse_size(" 64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("18446744073709551615G").is_err());
    }

    #[test]
    fn parses_positive_numbers() {
        assert_eq!(positive("16"), Ok(16));
        assert!(positive("0").is_err());
        assert!(positive("-3").is_err());
        assert!(positive("x").is_err());
    }

    #[test]
    fn metrics_have_one_spelling_and_take_the_old_one() {
        assert_eq!(parse_metric("l2"), Ok(Metric::L2));
        assert_eq!(parse_metric("inner_product"), Ok(Metric::InnerProduct));
        assert_eq!(parse_metric("ip"), Ok(Metric::InnerProduct), "deprecated, still read");
        assert!(Metric::is_deprecated_name("ip") && !Metric::is_deprecated_name("inner_product"));
        assert_eq!(Metric::InnerProduct.name(), "inner_product");
        let e = parse_metric("cosine").unwrap_err();
        assert!(e.contains("l2 or inner_product"), "{e}");
    }
}
