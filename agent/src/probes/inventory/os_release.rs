//! `/etc/os-release` (os-release(5)): the distribution's name, version and id.
//!
//! The format is a restricted shell variable assignment file: `KEY=value`,
//! values optionally in double or single quotes, backslash escapes inside
//! double quotes, `#` comments. Parsing must not run a shell.

use std::collections::BTreeMap;
use std::path::Path;

use super::{InventoryError, fact};

/// The os-release fields the inventory uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `NAME`, e.g. "Debian GNU/Linux".
    pub name: Option<String>,
    /// `VERSION_ID`, or `BUILD_ID` on rolling distributions (Arch reports
    /// `BUILD_ID=rolling` and no `VERSION_ID`), which is more useful than
    /// nothing.
    pub version: Option<String>,
    /// `ID`, e.g. "debian", "ubuntu", "rocky", "arch".
    pub id: Option<String>,
}

impl OsRelease {
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
        Self {
            name: get("NAME"),
            version: get("VERSION_ID").or_else(|| get("BUILD_ID")),
            id: get("ID"),
        }
    }

    /// The known values as `(fact key, value)` pairs.
    pub fn facts(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (fact::OS_NAME, &self.name),
            (fact::OS_VERSION, &self.version),
            (fact::OS_ID, &self.id),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|value| (key, value)))
    }
}

/// Reads `etc/os-release` under `root`, falling back to `usr/lib/os-release`
/// as os-release(5) prescribes (and because `/etc/os-release` is usually a
/// symlink that may point outside `root` when it is absolute).
pub fn read(root: &Path) -> Result<OsRelease, InventoryError> {
    let primary = root.join("etc/os-release");
    let text = match std::fs::read_to_string(&primary) {
        Ok(text) => text,
        Err(_) => {
            let fallback = root.join("usr/lib/os-release");
            std::fs::read_to_string(&fallback).map_err(|source| InventoryError::Read {
                path: fallback,
                source,
            })?
        }
    };
    Ok(OsRelease::from_fields(&parse_os_release(&text)))
}

/// Parses every `KEY=value` assignment; lines that are not assignments are
/// skipped rather than rejected, as the spec asks of readers.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        fields.insert(key.to_string(), unquote(raw.trim()));
    }
    fields
}

/// Undoes shell quoting of one value: `"..."` with `\` escaping `"`, `\`, `$`
/// and `` ` ``; `'...'` literally; bare words as they are.
fn unquote(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner.strip_suffix('\'').unwrap_or(inner).to_string();
    }
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_string();
    };
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\' | '$' | '`')) => value.push(escaped),
                Some(other) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inventory/os-release")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn reads_the_real_os_release_of_each_distribution() {
        let cases = [
            ("debian-12", "Debian GNU/Linux", Some("12"), "debian"),
            ("ubuntu-22.04", "Ubuntu", Some("22.04"), "ubuntu"),
            ("rocky-9.3", "Rocky Linux", Some("9.3"), "rocky"),
            ("rhel-9.4", "Red Hat Enterprise Linux", Some("9.4"), "rhel"),
            // Arch has no VERSION_ID; BUILD_ID stands in.
            ("arch", "Arch Linux", Some("rolling"), "arch"),
        ];
        for (file, name, version, id) in cases {
            let os = OsRelease::from_fields(&parse_os_release(&fixture(file)));
            assert_eq!(
                os,
                OsRelease {
                    name: Some(name.into()),
                    version: version.map(Into::into),
                    id: Some(id.into()),
                },
                "{file}"
            );
        }
    }

    #[test]
    fn keeps_other_fields_with_their_quotes_removed() {
        let fields = parse_os_release(&fixture("rocky-9.3"));
        assert_eq!(fields["ID_LIKE"], "rhel centos fedora");
        assert_eq!(fields["PLATFORM_ID"], "platform:el9");
        let fields = parse_os_release(&fixture("ubuntu-22.04"));
        assert_eq!(fields["VERSION_CODENAME"], "jammy");
        assert_eq!(fields["PRETTY_NAME"], "Ubuntu 22.04.4 LTS");
    }

    #[test]
    fn unquotes_like_a_shell() {
        let text = "A=plain\nB=\"double \\\"quoted\\\" \\$HOME \\\\ \\n\"\nC='single \\ \"x\"'\n\
                    # comment\nnot an assignment\nBAD KEY=x\nD=\nE=\"unterminated\n";
        let fields = parse_os_release(text);
        assert_eq!(fields["A"], "plain");
        assert_eq!(fields["B"], "double \"quoted\" $HOME \\ \\n");
        assert_eq!(fields["C"], "single \\ \"x\"");
        assert_eq!(fields["D"], "");
        assert_eq!(fields["E"], "unterminated");
        assert!(!fields.contains_key("BAD KEY"));
        assert_eq!(fields.len(), 5);
    }

    #[test]
    fn empty_values_are_unknown_not_empty() {
        let os = OsRelease::from_fields(&parse_os_release("NAME=\"\"\nID=x\n"));
        assert_eq!(os.name, None);
        assert_eq!(os.facts().collect::<Vec<_>>(), [(fact::OS_ID, "x")]);
    }

    #[test]
    fn falls_back_to_usr_lib_os_release() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
        std::fs::write(root.path().join("usr/lib/os-release"), "ID=fallback\n").unwrap();
        assert_eq!(read(root.path()).unwrap().id.as_deref(), Some("fallback"));
    }

    #[test]
    fn a_root_without_os_release_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let error = read(root.path()).unwrap_err();
        assert!(
            matches!(&error, InventoryError::Read { path, .. } if path.ends_with("usr/lib/os-release")),
            "{error}"
        );
    }
}
