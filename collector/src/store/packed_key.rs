//! Series keys as the store holds them in memory: one allocation each.
//!
//! A [`SeriesKey`] is three heap strings plus a `BTreeMap` of labels, whose
//! first node alone is ~540 bytes; one per series in the writer's id cache
//! and the latest values was most of the collector's memory per series. A
//! [`PackedKey`] is the same identity as length-prefixed bytes (~60 bytes
//! for a typical series) behind an `Arc`, so the two maps share it; it is
//! unpacked only when a reader asks for keys.

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
        self.parts().next() == Some(agent_id)
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
}
