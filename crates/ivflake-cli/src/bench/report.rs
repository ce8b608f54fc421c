//! The bench's measurements and its report: samples per row, percentiles,
//! ratios, the printed table and the JSON.

use super::*;

/// One cold configuration: no cache, these scheduler settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ColdVariant {
    pub(super) coalesce_gap: u64,
    pub(super) in_flight_per_search: usize,
}

impl std::fmt::Display for ColdVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coalesce_gap {} and max_in_flight_per_search {}",
            self.coalesce_gap, self.in_flight_per_search
        )
    }
}

/// Samples of one row of the table.
#[derive(Debug, Default)]
pub(super) struct RowSamples {
    pub(super) latency_ms: Vec<f64>,
    pub(super) quantizer_ms: Vec<f64>,
    pub(super) fetch_ms: Vec<f64>,
    pub(super) scan_ms: Vec<f64>,
    pub(super) gets: u64,
    pub(super) bytes_fetched: u64,
    pub(super) bytes_probed: u64,
    pub(super) lists_probed: u64,
    pub(super) lists_from_memory: u64,
}

impl RowSamples {
    pub(super) fn record(&mut self, elapsed: Duration, stats: &SearchStats) {
        self.latency_ms.push(ms(elapsed));
        self.quantizer_ms.push(stats.quantizer_ms);
        self.fetch_ms.push(stats.fetch_ms);
        self.scan_ms.push(stats.scan_ms);
        self.gets += stats.gets;
        self.bytes_fetched += stats.bytes_fetched;
        self.bytes_probed += stats.bytes_probed;
        self.lists_probed += stats.lists_probed as u64;
        self.lists_from_memory += stats.lists_from_memory as u64;
    }

    pub(super) fn report(&self) -> Option<RowReport> {
        let latency_ms = Summary::of(&self.latency_ms)?;
        let n = self.latency_ms.len() as f64;
        let p50 = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.p50);
        Some(RowReport {
            latency_ms,
            quantizer_ms_p50: p50(&self.quantizer_ms),
            fetch_ms_p50: p50(&self.fetch_ms),
            scan_ms_p50: p50(&self.scan_ms),
            gets_per_search: self.gets as f64 / n,
            bytes_fetched_per_search: self.bytes_fetched as f64 / n,
            bytes_probed_per_search: self.bytes_probed as f64 / n,
            fetched_over_probed: ratio(self.bytes_fetched as f64, self.bytes_probed as f64),
            lists_probed_per_search: self.lists_probed as f64 / n,
            lists_from_memory_per_search: self.lists_from_memory as f64 / n,
        })
    }
}

/// Distribution of a row's latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Summary {
    pub(super) count: usize,
    pub(super) min: f64,
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) mean: f64,
    pub(super) max: f64,
}

impl Summary {
    /// `None` for no samples. NaNs sort last (`total_cmp`) rather than panicking.
    pub(super) fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            min: *sorted.first()?,
            p50: percentile(&sorted, 0.50)?,
            p99: percentile(&sorted, 0.99)?,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max: *sorted.last()?,
        })
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least a fraction `p` of all samples at or below it. Never interpolates, so
/// p99 of 100 samples is the 99th, of 50 samples the 50th (the max).
pub(super) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    // The epsilon keeps 0.99 × 100 (98.99999…) from rounding up to rank 100.
    let rank = (p * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(super) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct RowReport {
    pub(super) latency_ms: Summary,
    pub(super) quantizer_ms_p50: f64,
    pub(super) fetch_ms_p50: f64,
    pub(super) scan_ms_p50: f64,
    pub(super) gets_per_search: f64,
    pub(super) bytes_fetched_per_search: f64,
    pub(super) bytes_probed_per_search: f64,
    /// Bytes read from the store over bytes of the probed lists (`None` when nothing was fetched).
    pub(super) fetched_over_probed: Option<f64>,
    pub(super) lists_probed_per_search: f64,
    pub(super) lists_from_memory_per_search: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct SweepRow {
    pub(super) coalesce_gap: u64,
    pub(super) max_in_flight_per_search: usize,
    pub(super) is_default: bool,
    #[serde(flatten)]
    pub(super) row: RowReport,
    pub(super) p50_over_round_trip: Option<f64>,
    pub(super) p99_over_round_trip: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Machine {
    pub(super) cores: usize,
    pub(super) cpu: String,
    /// 1-minute load average when the report was made (other work on the box skews tails).
    pub(super) load_average: Option<f64>,
    pub(super) os: &'static str,
    pub(super) arch: &'static str,
}

impl Machine {
    pub(super) fn here() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
            cpu,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok())),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Dataset {
    pub(super) n: usize,
    pub(super) d: usize,
    pub(super) clusters: usize,
    pub(super) seed: u64,
    pub(super) factory: String,
    pub(super) index_type: String,
    pub(super) nlist: usize,
    pub(super) file_bytes: u64,
    pub(super) header_bytes: u64,
    pub(super) trained_on: usize,
    pub(super) build_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct StoreReport {
    pub(super) uri: String,
    pub(super) latency_ms: f64,
    pub(super) throughput_mbps: f64,
    pub(super) description: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Ratios {
    pub(super) warm_over_faiss_p50: Option<f64>,
    pub(super) warm_over_faiss_p99: Option<f64>,
    pub(super) cold_over_round_trip_p50: Option<f64>,
    pub(super) cold_over_round_trip_p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) command: String,
    pub(super) machine: Machine,
    pub(super) dataset: Dataset,
    pub(super) store: StoreReport,
    pub(super) k: usize,
    pub(super) nprobe: usize,
    pub(super) queries: usize,
    pub(super) iterations: usize,
    pub(super) iterations_run: usize,
    /// Opening the warm index: its header GET(s) and parse.
    pub(super) open_ms: f64,
    pub(super) in_memory_faiss: Summary,
    pub(super) warm: RowReport,
    /// An index opened with `Preload::auto()`: the load, then its novel queries.
    pub(super) preload: PreloadReport,
    /// The sweep's row for the library's default `coalesce_gap`.
    pub(super) cold: RowReport,
    pub(super) round_trip: Summary,
    pub(super) round_trip_bytes: u64,
    pub(super) ratios: Ratios,
    /// Every cold configuration: each --gaps value with each --in-flight-per-search value.
    pub(super) coalesce_sweep: Vec<SweepRow>,
    /// Warm searches whose ids and distance bits equal in-memory Faiss's.
    pub(super) warm_identical_to_faiss: usize,
    pub(super) batch: Option<BatchReport>,
}

/// The background preload after open, and searches once it is done.
#[derive(Debug, Serialize)]
pub(super) struct PreloadReport {
    /// Open, then the whole load, until every list is in memory.
    pub(super) ms: f64,
    pub(super) gets: u64,
    pub(super) bytes: u64,
    pub(super) lists: usize,
    /// Queries the preloaded index had never seen.
    pub(super) novel: RowReport,
    pub(super) novel_over_warm_p50: Option<f64>,
}

/// Rows for batches of queries; `None` without `--batch`.
#[derive(Debug, Serialize)]
pub(super) struct BatchReport {
    pub(super) size: usize,
    /// Threads of ivflake's compute pool, which splits a batch's scan; Faiss runs on one.
    pub(super) compute_threads: usize,
    pub(super) faiss: Summary,
    pub(super) warm: RowReport,
    pub(super) cold: RowReport,
    pub(super) warm_over_faiss_p50: Option<f64>,
}

impl Report {
    pub(super) fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let ds = &self.dataset;
        let x = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}×"));
        let _ = writeln!(out, "$ {}", self.command);
        let load = self
            .machine
            .load_average
            .map_or(String::new(), |l| format!(", load average {l:.2}"));
        let _ = writeln!(
            out,
            "machine: {} cores, {}, {} {}{load}",
            self.machine.cores, self.machine.cpu, self.machine.os, self.machine.arch
        );
        let _ = writeln!(
            out,
            "data:    {} vectors, d={}, {} clusters (seed {}); {:?} = {} with {} lists, \
             trained on {}, built in {:.1} s",
            ds.n, ds.d, ds.clusters, ds.seed, ds.factory, ds.index_type, ds.nlist, ds.trained_on, ds.build_seconds
        );
        let _ = writeln!(
            out,
            "file:    {} ({} header); opened in {:.1} ms",
            human_bytes(ds.file_bytes),
            human_bytes(ds.header_bytes),
            self.open_ms
        );
        let _ = writeln!(out, "store:   {}, {}", self.store.uri, self.store.description);
        let stopped = if self.iterations_run < self.iterations {
            format!(
                " (time budget: stopped after {} of {})",
                self.iterations_run, self.iterations
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "search:  one query per search, k={}, nprobe={}; {} iterations over {} queries, rows interleaved{stopped}",
            self.k, self.nprobe, self.iterations_run, self.queries
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11} {:>8}",
            "", "p50 ms", "p99 ms", "mean ms", "GETs", "fetched", "probed", "f/p"
        );
        let plain = |out: &mut String, name: &str, s: &Summary| {
            let _ = writeln!(out, "{name:<36} {:>8.3} {:>8.3} {:>8.3}", s.p50, s.p99, s.mean);
        };
        let row = |out: &mut String, name: &str, r: &RowReport| {
            let _ = writeln!(
                out,
                "{name:<36} {:>8.3} {:>8.3} {:>8.3} {:>7.1} {:>11} {:>11} {:>8}",
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.mean,
                r.gets_per_search,
                human_bytes(r.bytes_fetched_per_search.round() as u64),
                human_bytes(r.bytes_probed_per_search.round() as u64),
                r.fetched_over_probed.map_or("-".into(), |v| format!("{v:.3}")),
            );
        };
        plain(&mut out, "in-memory Faiss, 1 thread", &self.in_memory_faiss);
        row(&mut out, "ivflake warm (memory cache)", &self.warm);
        row(&mut out, "ivflake novel, after preload", &self.preload.novel);
        let default_gap = self
            .coalesce_sweep
            .iter()
            .find(|s| s.is_default)
            .map_or(0, |s| s.coalesce_gap);
        row(
            &mut out,
            &format!("ivflake cold (gap {})", human_bytes(default_gap)),
            &self.cold,
        );
        plain(
            &mut out,
            &format!("one store round trip ({} GET)", human_bytes(self.round_trip_bytes)),
            &self.round_trip,
        );
        let _ = writeln!(out);
        let r = &self.ratios;
        let _ = writeln!(
            out,
            "warm / in-memory Faiss:  p50 {}  p99 {}",
            x(r.warm_over_faiss_p50),
            x(r.warm_over_faiss_p99)
        );
        let p = &self.preload;
        let _ = writeln!(
            out,
            "novel after preload / warm: p50 {} (preload: open + {} lists in {} GETs, {}, {:.1} ms)",
            x(p.novel_over_warm_p50),
            p.lists,
            p.gets,
            human_bytes(p.bytes),
            p.ms
        );
        let _ = writeln!(
            out,
            "cold / one round trip:   p50 {}  p99 {}",
            x(r.cold_over_round_trip_p50),
            x(r.cold_over_round_trip_p99)
        );
        let _ = writeln!(
            out,
            "stages, p50 ms:          warm quantizer {:.3} fetch {:.3} scan {:.3}; cold quantizer {:.3} fetch {:.3} scan {:.3}",
            self.warm.quantizer_ms_p50,
            self.warm.fetch_ms_p50,
            self.warm.scan_ms_p50,
            self.cold.quantizer_ms_p50,
            self.cold.fetch_ms_p50,
            self.cold.scan_ms_p50
        );
        let _ = writeln!(
            out,
            "lists per search:        {:.1} probed; warm {:.1} from memory, cold {:.1} from memory",
            self.warm.lists_probed_per_search,
            self.warm.lists_from_memory_per_search,
            self.cold.lists_from_memory_per_search
        );
        let _ = writeln!(
            out,
            "warm results identical to in-memory Faiss (ids and distance bits): {}/{}",
            self.warm_identical_to_faiss, self.iterations_run
        );
        if let Some(b) = &self.batch {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "batches of {} queries (ivflake's compute pool has {} threads; Faiss runs on 1):",
                b.size, b.compute_threads
            );
            plain(&mut out, "in-memory Faiss, 1 thread", &b.faiss);
            row(&mut out, "ivflake warm (memory cache)", &b.warm);
            row(
                &mut out,
                &format!("ivflake cold (gap {})", human_bytes(default_gap)),
                &b.cold,
            );
            let _ = writeln!(out, "warm / in-memory Faiss:  p50 {}", x(b.warm_over_faiss_p50));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "coalesce_gap sweep (cold, no cache):");
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>7} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "gap", "in flight", "GETs", "fetched", "f/p", "p50 ms", "p99 ms", "p50/RT", "p99/RT"
        );
        for s in &self.coalesce_sweep {
            let mark = if s.is_default { " *" } else { "" };
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>7.1} {:>11} {:>8} {:>8.3} {:>8.3} {:>9} {:>9}",
                format!("{}{mark}", human_bytes(s.coalesce_gap)),
                s.max_in_flight_per_search,
                s.row.gets_per_search,
                human_bytes(s.row.bytes_fetched_per_search.round() as u64),
                s.row.fetched_over_probed.map_or("-".into(), |v| format!("{v:.3}")),
                s.row.latency_ms.p50,
                s.row.latency_ms.p99,
                x(s.p50_over_round_trip),
                x(s.p99_over_round_trip),
            );
        }
        let _ = writeln!(
            out,
            "* the library's defaults; in flight = max_in_flight_per_search; \
             f/p = bytes fetched / bytes of the probed lists; RT = one round trip"
        );
        out
    }
}

/// The command as typed, program name shortened to `ivflake`.
pub(super) fn command_line() -> String {
    let mut parts = vec!["ivflake".to_string()];
    parts.extend(std::env::args().skip(1).map(|a| shell_quote(&a)));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn nearest_rank_percentiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(50.0));
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&two_hundred, 0.99), Some(198.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.5), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&hundred, 1.5), None);
        assert_eq!(percentile(&hundred, f64::NAN), None);
    }

    #[test]
    pub(super) fn summary_of_unsorted_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.count, s.min, s.p50, s.p99, s.max), (4, 1.0, 2.0, 4.0, 4.0));
        assert_eq!(s.mean, 2.5);
        assert_eq!(Summary::of(&[]), None);
        // A NaN sorts last instead of panicking.
        let s = Summary::of(&[f64::NAN, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.p50), (1.0, 2.0));
    }

    #[test]
    pub(super) fn row_averages_and_ratio() {
        let mut row = RowSamples::default();
        let stats = |gets, fetched, probed| SearchStats {
            gets,
            bytes_fetched: fetched,
            bytes_probed: probed,
            lists_probed: 4,
            ..Default::default()
        };
        row.record(Duration::from_millis(10), &stats(2, 300, 200));
        row.record(Duration::from_millis(30), &stats(4, 500, 400));
        let r = row.report().unwrap();
        assert_eq!(r.gets_per_search, 3.0);
        assert_eq!(r.bytes_fetched_per_search, 400.0);
        assert_eq!(r.fetched_over_probed, Some(800.0 / 600.0));
        assert_eq!(r.lists_probed_per_search, 4.0);
        assert_eq!(r.latency_ms.p50, 10.0);
        assert_eq!(r.latency_ms.p99, 30.0);
        assert!(RowSamples::default().report().is_none());
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    pub(super) fn delay_bounds() {
        let d = Delay::new(20.0, 100.0).unwrap();
        assert_eq!(d.per_call, Duration::from_millis(20));
        assert_eq!(d.per_byte, Duration::from_nanos(10));
        assert!(Delay::new(0.0, 0.0).unwrap().is_zero());
        assert!(Delay::new(-1.0, 0.0).is_err());
        assert!(Delay::new(f64::NAN, 0.0).is_err());
        assert!(Delay::new(5.0, 1e6).is_err());
    }
}
