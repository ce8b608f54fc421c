//! The pure parts of hedging: how many hedges the process may spend and how
//! long a GET may take before it gets a twin. No I/O, no clocks of their own.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Hedges a GET may spend: each GET sent earns `budget` of one, up to a small
/// burst, so hedges stay near `budget` × GETs over recent traffic rather than
/// since the process started (a quiet hour must not fund a storm).
#[derive(Debug, Default)]
pub(super) struct HedgeBudget {
    tokens: Mutex<f64>,
}

impl HedgeBudget {
    /// At most this many hedges can fire back to back.
    const BURST: f64 = 8.0;

    pub fn earn(&self, budget: f64) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + budget.max(0.0)).min(Self::BURST);
        }
    }

    pub fn try_take(&self) -> bool {
        match self.tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }
}

/// Recent GET latencies, for the hedging threshold.
#[derive(Debug, Default)]
pub(super) struct LatencyWindow {
    recent: Mutex<VecDeque<Duration>>,
}

impl LatencyWindow {
    /// 256 samples: enough for a stable p95, small enough to sort per GET.
    const SAMPLES: usize = 256;

    pub fn record(&self, d: Duration) {
        if let Ok(mut q) = self.recent.lock() {
            if q.len() == Self::SAMPLES {
                q.pop_front();
            }
            q.push_back(d);
        }
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let Ok(q) = self.recent.lock() else {
            return Duration::ZERO;
        };
        if q.is_empty() {
            return Duration::ZERO;
        }
        let mut v: Vec<Duration> = q.iter().copied().collect();
        v.sort_unstable();
        let idx = ((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        v[idx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_earns_per_get_and_caps_bursts() {
        let budget = HedgeBudget::default();
        assert!(!budget.try_take(), "nothing earned yet");
        for _ in 0..19 {
            budget.earn(0.05);
        }
        assert!(!budget.try_take(), "19 GETs at 5% earn less than one hedge");
        budget.earn(0.05);
        assert!(budget.try_take());
        assert!(!budget.try_take());
        // A quiet period cannot bank more than the burst.
        for _ in 0..10_000 {
            budget.earn(0.05);
        }
        let taken = (0..100).filter(|_| budget.try_take()).count();
        assert_eq!(taken, HedgeBudget::BURST as usize);
        budget.earn(-1.0);
        assert!(!budget.try_take(), "a negative budget earns nothing");
    }

    #[test]
    fn percentile_of_the_recent_window() {
        let window = LatencyWindow::default();
        assert_eq!(window.percentile(0.95), Duration::ZERO);
        for ms in 1..=100 {
            window.record(Duration::from_millis(ms));
        }
        assert_eq!(window.percentile(0.0), Duration::from_millis(1));
        assert_eq!(window.percentile(0.95), Duration::from_millis(95));
        assert_eq!(window.percentile(1.0), Duration::from_millis(100));
        assert_eq!(window.percentile(7.0), Duration::from_millis(100), "clamped");
        // Old samples leave the window.
        for _ in 0..LatencyWindow::SAMPLES {
            window.record(Duration::from_millis(500));
        }
        assert_eq!(window.percentile(0.0), Duration::from_millis(500));
    }
}
