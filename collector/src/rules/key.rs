//! The dedup key: the stable, printable identity of one rule's series.
//!
//! Incidents are stored under this key, and after a restart the engine is
//! seeded from it ([`super::RuleEngine::restore`]), so the format is a
//! contract with the database: changing it would orphan every open incident.
//!
//! Format (version-independent, no hashing so an operator can read it):
//!
//! ```text
//! RULE|AGENT_ID|KEY1=VALUE1,KEY2=VALUE2
//! ```
//!
//! Labels are sorted by key (byte order, as in a `BTreeMap`); an empty label
//! set leaves nothing after the second `|` (`disk-full|a1|`). In every part,
//! `\`, `|`, `,` and `=` are escaped with a backslash, so distinct series never
//! share a key and [`SeriesIdentity::parse`] inverts [`dedup_key`] exactly.

use super::Labels;

/// The parts a dedup key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesIdentity {
    pub rule: String,
    pub agent_id: String,
    pub labels: Labels,
}

impl SeriesIdentity {
    pub fn dedup_key(&self) -> String {
        dedup_key(&self.rule, &self.agent_id, &self.labels)
    }

    /// Inverse of [`dedup_key`]; `None` for text that no series produces.
    pub fn parse(key: &str) -> Option<Self> {
        let parts = split_unescaped(key, b'|');
        let [rule, agent_id, labels] = parts.as_slice() else {
            return None;
        };
        let mut parsed = Labels::new();
        if !labels.is_empty() {
            for pair in split_unescaped(labels, b',') {
                let [name, value] = split_unescaped(pair, b'=')[..] else {
                    return None;
                };
                let name = unescape(name)?;
                // Two entries for one label cannot come from a map.
                if parsed.insert(name, unescape(value)?).is_some() {
                    return None;
                }
            }
        }
        Some(Self {
            rule: unescape(rule)?,
            agent_id: unescape(agent_id)?,
            labels: parsed,
        })
    }
}

/// The dedup key of the series `(rule, agent_id, labels)`; see the module docs.
pub fn dedup_key(rule: &str, agent_id: &str, labels: &Labels) -> String {
    let mut key = String::with_capacity(
        rule.len()
            + agent_id.len()
            + 2
            + labels
                .iter()
                .map(|(name, value)| name.len() + value.len() + 2)
                .sum::<usize>(),
    );
    escape_into(&mut key, rule);
    key.push('|');
    escape_into(&mut key, agent_id);
    key.push('|');
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            key.push(',');
        }
        escape_into(&mut key, name);
        key.push('=');
        escape_into(&mut key, value);
    }
    key
}

fn escape_into(out: &mut String, text: &str) {
    for character in text.chars() {
        if matches!(character, '\\' | '|' | ',' | '=') {
            out.push('\\');
        }
        out.push(character);
    }
}

/// Splits on `separator` where it is not escaped. Working on bytes is safe:
/// the separators and `\` are ASCII, which never occur inside a multi-byte
/// UTF-8 sequence, so every split point is a character boundary.
fn split_unescaped(text: &str, separator: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            byte if byte == separator => {
                parts.push(&text[start..index]);
                start = index + 1;
                index += 1;
            }
            _ => index += 1,
        }
    }
    parts.push(&text[start.min(text.len())..]);
    parts
}

/// Undoes [`escape_into`]; `None` for a dangling `\` or an unescaped
/// separator (neither is produced by [`dedup_key`]).
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => out.push(characters.next()?),
            '|' | ',' | '=' => return None,
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn format_is_stable() {
        // Regression guard: this exact text is stored with incidents.
        let cases = [
            ("disk-full", "a1", labels(&[]), "disk-full|a1|"),
            (
                "disk-full",
                "a1",
                labels(&[("mount", "/"), ("device", "sda1")]),
                "disk-full|a1|device=sda1,mount=/",
            ),
            (
                "odd|rule",
                "a,1",
                labels(&[("k", "v=w\\x")]),
                "odd\\|rule|a\\,1|k=v\\=w\\\\x",
            ),
        ];
        for (rule, agent, labels, expected) in cases {
            let key = dedup_key(rule, agent, &labels);
            assert_eq!(key, expected);
            let parsed = SeriesIdentity::parse(&key).unwrap();
            assert_eq!(parsed.rule, rule);
            assert_eq!(parsed.agent_id, agent);
            assert_eq!(parsed.labels, labels);
        }
    }

    #[test]
    fn rejects_text_no_series_produces() {
        for text in ["", "a|b", "a|b|c|d", "a|b|novalue", "a|b|k=1,k=2", "a\\"] {
            assert_eq!(SeriesIdentity::parse(text), None, "{text:?}");
        }
    }
}
