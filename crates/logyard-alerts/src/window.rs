//! Which windows a rule evaluates, and when.
//!
//! Window `k` of a rule ends at `k × every` (seconds since the epoch, so every replica agrees
//! on the boundaries) and covers the `window` before its end. It is evaluated once its end is
//! `settle` in the past — the ingest flush interval and a margin — so that events which
//! arrived in time are in the tables. Windows are evaluated in order, each exactly once; after
//! an outage the missed windows are caught up, at most [`MAX_CATCH_UP`] of them (older ones
//! are recorded as skipped).

use std::time::Duration;

/// The most missed windows evaluated after an outage.
pub const MAX_CATCH_UP: i64 = 1_440;

/// The windows of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    every_ms: i64,
    window_ms: i64,
    settle_ms: i64,
}

/// One window: `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: i64,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Windows {
    pub fn new(every: Duration, window: Duration, settle: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        Windows {
            every_ms: ms(every),
            window_ms: ms(window),
            settle_ms: i64::try_from(settle.as_millis()).unwrap_or(i64::MAX),
        }
    }

    pub fn get(&self, index: i64) -> Window {
        let to_ms = index.saturating_mul(self.every_ms);
        Window { index, from_ms: to_ms.saturating_sub(self.window_ms), to_ms }
    }

    /// The same window `back` earlier (for `change(...)` conditions).
    pub fn shifted(&self, w: Window, back: Duration) -> Window {
        let back = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
        Window { index: w.index, from_ms: w.from_ms.saturating_sub(back), to_ms: w.to_ms.saturating_sub(back) }
    }

    /// The newest window that may be evaluated at `now_ms`.
    pub fn latest_due(&self, now_ms: i64) -> i64 {
        (now_ms - self.settle_ms).div_euclid(self.every_ms)
    }

    /// When window `index` may be evaluated.
    pub fn due_at_ms(&self, index: i64) -> i64 {
        self.get(index).to_ms + self.settle_ms
    }

    /// The windows to evaluate at `now_ms` after `done` (the last one evaluated; `None` for a
    /// rule never evaluated, which starts at the latest due window), and how many older ones
    /// are skipped because they are more than [`MAX_CATCH_UP`] behind.
    pub fn due(&self, done: Option<i64>, now_ms: i64) -> (std::ops::RangeInclusive<i64>, i64) {
        let latest = self.latest_due(now_ms);
        let first = done.map_or(latest, |d| d + 1);
        let oldest_kept = latest - MAX_CATCH_UP + 1;
        if first < oldest_kept { (oldest_kept..=latest, oldest_kept - first) } else { (first..=latest, 0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_on_multiples_of_every_and_wait_for_settle() {
        let w = Windows::new(Duration::from_secs(60), Duration::from_secs(300), Duration::from_secs(15));
        let k = w.get(10);
        assert_eq!((k.from_ms, k.to_ms), (300_000, 600_000));
        assert_eq!(w.due_at_ms(10), 615_000);
        assert_eq!(w.latest_due(614_999), 9);
        assert_eq!(w.latest_due(615_000), 10);
        // A new rule starts with the latest due window; then one window after another.
        assert_eq!(w.due(None, 615_000), (10..=10, 0));
        assert!(w.due(Some(10), 660_000).0.is_empty(), "window 11 is not due before 675 s");
        assert_eq!(w.due(Some(10), 675_000), (11..=11, 0));
        // After an outage the missed windows come in order, none skipped or repeated...
        assert_eq!(w.due(Some(10), 10 * 60_000 + 15_000 + 5 * 60_000), (11..=15, 0));
        // ... unless they are more than a day of windows behind.
        let late = 10 * 60_000 + 15_000 + 2_000 * 60_000;
        let (range, skipped) = w.due(Some(10), late);
        assert_eq!(
            (*range.start(), *range.end(), skipped),
            (2_010 - MAX_CATCH_UP + 1, 2_010, 2_010 - 10 - MAX_CATCH_UP)
        );
        let before = w.shifted(k, Duration::from_secs(86_400));
        assert_eq!((before.from_ms, before.to_ms), (300_000 - 86_400_000, 600_000 - 86_400_000));
    }
}
