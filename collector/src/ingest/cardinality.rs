//! Series per agent (cardinality): which series one agent holds, so that its
//! new series past `max_series_per_agent` are refused while every series it
//! already has keeps being stored.
//!
//! Held per stream, and one agent id has one stream at a time (a newer one
//! replaces it), so the count is per agent. Seeded from the store's latest
//! values when the stream's first batch arrives; series pruned since count
//! until the agent reconnects.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use crate::store::Labels;

#[derive(Debug)]
pub struct SeriesBudget {
    /// Hashes of the (metric, labels) pairs the agent holds. The hasher is
    /// keyed at random per stream, so an agent cannot craft colliding names
    /// to slip extra series past the limit.
    known: HashSet<u64>,
    hasher: RandomState,
    max: usize,
}

impl SeriesBudget {
    pub fn new<'a>(held: impl IntoIterator<Item = (&'a str, &'a Labels)>, max: usize) -> Self {
        let hasher = RandomState::new();
        let known = held
            .into_iter()
            .map(|(metric, labels)| hasher.hash_one((metric, labels)))
            .collect();
        Self { known, hasher, max }
    }

    /// True if the series is held, or new and within the limit (it is then
    /// counted as held); false if it is new and the agent is at its limit.
    pub fn admit(&mut self, metric: &str, labels: &Labels) -> bool {
        let hash = self.hasher.hash_one((metric, labels));
        if self.known.contains(&hash) {
            return true;
        }
        if self.known.len() >= self.max {
            return false;
        }
        self.known.insert(hash);
        true
    }

    /// Series held, as far as this stream knows.
    pub fn held(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(value: &str) -> Labels {
        Labels::from([("mount".to_string(), value.to_string())])
    }

    #[test]
    fn new_series_past_the_limit_are_refused_and_held_ones_still_admitted() {
        let held = [labels("/"), labels("/srv")];
        let mut budget =
            SeriesBudget::new(held.iter().map(|labels| ("disk.used_percent", labels)), 3);
        assert!(budget.admit("disk.used_percent", &labels("/")));
        assert!(
            budget.admit("disk.used_percent", &labels("/home")),
            "third fits"
        );
        assert!(
            !budget.admit("disk.used_percent", &labels("/var")),
            "fourth is refused"
        );
        assert!(
            !budget.admit("disk.free_bytes", &labels("/")),
            "another metric is another series"
        );
        assert!(
            budget.admit("disk.used_percent", &labels("/home")),
            "now held"
        );
        assert!(budget.admit("disk.used_percent", &labels("/srv")));
        assert_eq!(budget.held(), 3);
    }

    #[test]
    fn an_agent_already_over_a_lowered_limit_keeps_its_series() {
        let held: Vec<Labels> = (0..10).map(|index| labels(&index.to_string())).collect();
        let mut budget = SeriesBudget::new(held.iter().map(|labels| ("m", labels)), 5);
        assert!(held.iter().all(|labels| budget.admit("m", labels)));
        assert!(!budget.admit("m", &labels("new")));
    }
}
