//! Series keys as the store holds them in memory: one allocation each.
//!
//! A [`SeriesKey`] is three heap strings plus a `BTreeMap` of labels, whose
//! first node alone is ~540 bytes; one per series in the writer's id cache
//! and the latest values was most of the collector's memory per series. A
//! [`PackedKey`] is the same identity as length-prefixed bytes (~60 bytes
//! for a typical series) behind an `Arc`, so the two maps share it; it is
//! unpacked only when a reader asks for keys.

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use super::{Labels, SeriesKey};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackedKey(Arc<[u8]>);

impl PackedKey {
    pub fn new(agent_id: &str, metric: &str, labels: &Labels) -> Self {
        let size = 8 + agent_id.len() + metric.len();
        let size = labels.iter().fold(size, |size, (name, value)| {
            size + 8 + name.len() + value.len()
        });
        let mut bytes = Vec::with_capacity(size);
        push(&mut bytes, agent_id);
        push(&mut bytes, metric);
        for (name, value) in labels {
            push(&mut bytes, name);
            push(&mut bytes, value);
        }
        Self(bytes.into())
    }

    pub fn of(key: &SeriesKey) -> Self {
        Self::new(&key.agent_id, &key.metric, &key.labels)
    }

    pub fn agent_is(&self, agent_id: &str) -> bool {
        self.agent() == agent_id
    }

    pub fn agent(&self) -> &str {
        self.parts().next().unwrap_or_default()
    }

    pub fn unpack(&self) -> SeriesKey {
        let mut parts = self.parts();
        let agent_id = parts.next().unwrap_or_default().to_string();
        let metric = parts.next().unwrap_or_default().to_string();
        let mut labels = Labels::new();
        while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            labels.insert(name.to_string(), value.to_string());
        }
        SeriesKey {
            agent_id,
            metric,
            labels,
        }
    }

    fn parts(&self) -> impl Iterator<Item = &str> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (length, tail) = rest.split_first_chunk::<4>()?;
            let length = u32::from_le_bytes(*length) as usize;
            let (text, tail) = tail.split_at_checked(length)?;
            rest = tail;
            // Made from `&str`s, so always UTF-8.
            std::str::from_utf8(text).ok()
        })
    }
}

fn push(bytes: &mut Vec<u8>, text: &str) {
    bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

/// The latest value of every series, with the series of each agent indexed:
/// a stream's series budget asks for one agent's series at its first batch,
/// and scanning every series for each of 10,000 connecting agents (under the
/// lock the writer needs) stalled ingest for minutes.
#[derive(Debug, Default)]
pub struct LatestMap {
    values: HashMap<PackedKey, super::LatestValue>,
    by_agent: HashMap<Box<str>, HashSet<PackedKey>>,
}

impl LatestMap {
    pub fn get(&self, key: &PackedKey) -> Option<&super::LatestValue> {
        self.values.get(key)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sets the value unless the one held is newer.
    pub fn upsert_newer(&mut self, key: PackedKey, value: super::LatestValue) {
        if let Some(held) = self.values.get_mut(&key) {
            if value.timestamp_ms >= held.timestamp_ms {
                *held = value;
            }
            return;
        }
        self.by_agent
            .entry(key.agent().into())
            .or_default()
            .insert(key.clone());
        self.values.insert(key, value);
    }

    pub fn remove(&mut self, key: &PackedKey) {
        if self.values.remove(key).is_none() {
            return;
        }
        if let Some(keys) = self.by_agent.get_mut(key.agent()) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_agent.remove(key.agent());
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PackedKey, &super::LatestValue)> {
        self.values.iter()
    }

    /// One agent's series, in no order.
    pub fn of_agent<'a>(
        &'a self,
        agent_id: &str,
    ) -> impl Iterator<Item = (&'a PackedKey, &'a super::LatestValue)> {
        self.by_agent
            .get(agent_id)
            .into_iter()
            .flatten()
            .filter_map(|key| self.values.get_key_value(key))
    }
}

/// Latest values, optionally for one agent, ordered by series key; sorted
/// after the read lock is released, as committers wait for it.
pub(super) fn latest_sorted(
    latest: &super::LatestValues,
    agent_id: Option<&str>,
) -> Vec<(SeriesKey, super::LatestValue)> {
    let map = latest
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut values: Vec<_> = match agent_id {
        Some(agent_id) => map
            .of_agent(agent_id)
            .map(|(key, value)| (key.unpack(), *value))
            .collect(),
        None => map
            .iter()
            .map(|(key, value)| (key.unpack(), *value))
            .collect(),
    };
    drop(map);
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(agent_id: &str, metric: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            agent_id: agent_id.into(),
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    #[test]
    fn unpacks_to_the_same_key() {
        for original in [
            key("a1", "cpu", &[]),
            key("a1", "", &[("", "")]),
            key(
                "agent-7",
                "disk.used",
                &[("mount", "/"), ("device", "sda1")],
            ),
        ] {
            let packed = PackedKey::of(&original);
            assert_eq!(packed.unpack(), original);
            assert!(packed.agent_is(&original.agent_id));
            assert!(!packed.agent_is("other"));
        }
    }

    #[test]
    fn boundaries_between_parts_count() {
        let a = PackedKey::of(&key("ab", "c", &[]));
        let b = PackedKey::of(&key("a", "bc", &[]));
        assert_ne!(a, b);
        let c = PackedKey::of(&key("a", "m", &[("x", "yz")]));
        let d = PackedKey::of(&key("a", "m", &[("xy", "z")]));
        assert_ne!(c, d);
        assert_eq!(c, PackedKey::of(&key("a", "m", &[("x", "yz")])));
    }

    #[test]
    fn the_latest_map_indexes_series_by_agent_and_keeps_the_newest_value() {
        let value = |timestamp_ms| crate::store::LatestValue {
            value: timestamp_ms as f64,
            timestamp_ms,
        };
        let mut map = LatestMap::default();
        let a1 = PackedKey::of(&key("a", "cpu", &[("cpu", "0")]));
        let a2 = PackedKey::of(&key("a", "mem", &[]));
        let b1 = PackedKey::of(&key("b", "cpu", &[("cpu", "0")]));
        map.upsert_newer(a1.clone(), value(10));
        map.upsert_newer(a1.clone(), value(5));
        map.upsert_newer(a2.clone(), value(7));
        map.upsert_newer(b1.clone(), value(3));
        assert_eq!(
            map.get(&a1).map(|held| held.timestamp_ms),
            Some(10),
            "older ignored"
        );
        let mut of_a: Vec<_> = map
            .of_agent("a")
            .map(|(key, _)| key.unpack().metric)
            .collect();
        of_a.sort();
        assert_eq!(of_a, ["cpu", "mem"]);
        assert_eq!(map.of_agent("c").count(), 0);
        map.remove(&a1);
        map.remove(&a2);
        assert_eq!(map.of_agent("a").count(), 0);
        assert!(
            !map.by_agent.contains_key("a"),
            "an agent without series leaves no entry"
        );
        assert_eq!(map.len(), 1);
    }
}
