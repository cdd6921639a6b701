//! Flap detection history for one series: the recent breach/clear states.
//!
//! Flapping is judged Icinga-style on the share of state changes among the
//! samples in a time window: with `n` samples there are `n - 1` chances to
//! change, and `changes / (n - 1)` is the flap percentage.

use std::collections::VecDeque;

/// Fewer samples than this say nothing about flapping (two samples that
/// differ would be "100 % flapping"), so the flag is left as it is.
pub(crate) const MIN_SAMPLES: usize = 5;

/// Bound on remembered samples per series, so a fast sender with a long
/// window cannot grow memory without limit; past it the oldest are dropped,
/// which only shortens the effective window.
pub(crate) const MAX_SAMPLES: usize = 128;

#[derive(Debug, Clone, Default)]
pub(crate) struct FlapHistory {
    /// `(time, breaching)` in arrival order, all within the window.
    samples: VecDeque<(i64, bool)>,
}

impl FlapHistory {
    /// Records one evaluated sample and forgets those older than the window.
    pub(crate) fn record(&mut self, now_ms: i64, breaching: bool, window_ms: i64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, breaching));
        let oldest_kept = now_ms.saturating_sub(window_ms);
        while self
            .samples
            .front()
            .is_some_and(|(time, _)| *time < oldest_kept)
        {
            self.samples.pop_front();
        }
    }

    /// The flap percentage, or `None` with too few samples to tell.
    pub(crate) fn percent(&self) -> Option<f64> {
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let changes = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .filter(|(before, after)| before.1 != after.1)
            .count();
        Some(changes as f64 * 100.0 / (self.samples.len() - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_counts_changes_among_possible_changes() {
        // (states sampled once a second, expected percent)
        let cases: [(&[bool], Option<f64>); 5] = [
            (&[true, false, true, false], None),
            (&[true, false, true, false, true], Some(100.0)),
            (&[true, true, true, true, true], Some(0.0)),
            (&[true, true, false, false, true], Some(50.0)),
            (
                &[false, true, true, true, true, true, true, true, true],
                Some(12.5),
            ),
        ];
        for (states, expected) in cases {
            let mut history = FlapHistory::default();
            for (second, breaching) in states.iter().enumerate() {
                history.record(second as i64 * 1000, *breaching, 60_000);
            }
            assert_eq!(history.percent(), expected, "{states:?}");
        }
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut history = FlapHistory::default();
        for second in 0..10 {
            history.record(second * 1000, second % 2 == 0, 60_000);
        }
        assert_eq!(history.percent(), Some(100.0));
        for second in 100..105 {
            history.record(second * 1000, true, 60_000);
        }
        assert_eq!(history.percent(), Some(0.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut history = FlapHistory::default();
        for millis in 0..10_000 {
            history.record(millis, true, i64::MAX);
        }
        assert_eq!(history.samples.len(), MAX_SAMPLES);
    }
}
