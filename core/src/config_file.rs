//! Reading TOML configuration files with errors that name the file, line and key.
//!
//! Shared by the agent and the collector so both refuse bad config the same way.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A configuration file that cannot be used. The display form is
/// `FILE:LINE: key `KEY`: PROBLEM`, which is what operators see.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when the problem can be tied to one.
    pub line: Option<usize>,
    /// Dotted key path (`tls.cert`), when the problem can be tied to one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parsed file plus its text, so validation can point back at lines.
#[derive(Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub text: String,
}

impl ConfigSource {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read file: {error}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Deserializes the whole file; a syntax or schema error names its line and key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|error| {
            let (line, key) = match error.span() {
                Some(span) => {
                    let line = line_of_offset(&self.text, span.start);
                    (Some(line), key_at_line(&self.text, line, &error))
                }
                None => (None, None),
            };
            ConfigError {
                file: self.path.clone(),
                line,
                key,
                message: error.message().trim().to_string(),
            }
        })
    }

    /// An error about a key found valid in shape but not in meaning
    /// (a missing file, a contradiction). `key` is dotted: `tls.cert`.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: find_key_line(&self.text, key),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Resolves a path from the file relative to the file's own directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) => dir.join(path),
            None => path.to_path_buf(),
        }
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Names the key an error points at: the quoted field of an "unknown field"
/// message, else the key written on that line, qualified by its table.
fn key_at_line(text: &str, line: usize, error: &toml::de::Error) -> Option<String> {
    let mut table = String::new();
    let mut key_on_line = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(header) = table_header(trimmed) {
            table = header;
        }
        if index + 1 == line {
            key_on_line = trimmed
                .split_once('=')
                .map(|(key, _)| key.trim().trim_matches('"').to_string());
            break;
        }
    }
    let message = error.message();
    let key = match message.strip_prefix("unknown field `") {
        Some(rest) => rest.split('`').next().map(str::to_string),
        None => key_on_line,
    };
    let key = key.or_else(|| (!table.is_empty()).then(|| table.clone()))?;
    if table.is_empty() || key == table {
        Some(key)
    } else {
        Some(format!("{table}.{key}"))
    }
}

fn table_header(trimmed: &str) -> Option<String> {
    let inner = trimmed
        .strip_prefix("[[")
        .and_then(|rest| rest.split("]]").next())
        .or_else(|| {
            trimmed
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
        })?;
    Some(inner.trim().to_string())
}

/// Finds the line that sets a dotted key such as `tls.cert`, or
/// `ping[1].count` for the second `[[ping]]` table.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((table, key)) => (table, key),
        None => ("", dotted),
    };
    // `name[i]` selects the i-th `[[name]]` table.
    let (table, wanted_index) = match table
        .strip_suffix(']')
        .and_then(|rest| rest.split_once('['))
    {
        Some((name, index)) => (name, index.parse::<usize>().ok()),
        None => (table, None),
    };
    let mut current = String::new();
    let mut seen_of_table = 0usize;
    let mut current_index = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(header) = table_header(trimmed) {
            current = header;
            if current == table && trimmed.starts_with("[[") {
                current_index = Some(seen_of_table);
                seen_of_table += 1;
            } else {
                current_index = None;
            }
            if current == dotted {
                return Some(index + 1);
            }
            continue;
        }
        if wanted_index.is_some() && current_index != wanted_index {
            continue;
        }
        if current == table
            && let Some((name, _)) = trimmed.split_once('=')
            && name.trim().trim_matches('"') == key
        {
            return Some(index + 1);
        }
    }
    None
}

/// serde helper: a duration written for humans ("10s", "5m", "1h 30m").
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("invalid duration {text:?}: {error}")))
}

/// serde helper: an optional human duration.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        tls: Option<Tls>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tls {
        #[serde(deserialize_with = "duration")]
        every: Duration,
    }

    fn source(text: &str) -> ConfigSource {
        ConfigSource {
            path: PathBuf::from("/etc/x.toml"),
            text: text.to_string(),
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let error = source("name = \"a\"\n[tls]\nevery = \"1s\"\nbogus = 3\n")
            .parse::<Sample>()
            .unwrap_err();
        assert_eq!(error.line, Some(4));
        assert_eq!(error.key.as_deref(), Some("tls.bogus"));
        let shown = error.to_string();
        assert!(
            shown.starts_with("/etc/x.toml:4: key `tls.bogus`"),
            "{shown}"
        );
    }

    #[test]
    fn bad_duration_names_its_key() {
        let error = source("name = \"a\"\n[tls]\nevery = \"soon\"\n")
            .parse::<Sample>()
            .unwrap_err();
        assert_eq!(error.line, Some(3));
        assert_eq!(error.key.as_deref(), Some("tls.every"));
        assert!(error.message.contains("invalid duration"), "{error}");
    }

    #[test]
    fn semantic_error_finds_the_line_of_a_dotted_key() {
        let source = source("name = \"a\"\n\n[tls]\nevery = \"1s\"\n");
        let error = source.error("tls.every", "too short");
        assert_eq!(error.line, Some(4));
        assert_eq!(
            error.to_string(),
            "/etc/x.toml:4: key `tls.every`: too short"
        );
    }

    #[test]
    fn relative_paths_resolve_beside_the_file() {
        let source = source("");
        assert_eq!(
            source.resolve(Path::new("ca.pem")),
            PathBuf::from("/etc/ca.pem")
        );
        assert_eq!(source.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }
}
