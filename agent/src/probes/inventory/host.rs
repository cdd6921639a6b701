//! The host's names and its machine id.
//!
//! FQDN without DNS: `hostname -f` asks the resolver for the canonical name of
//! the host name, which on almost every server is answered from `/etc/hosts`
//! (glibc's `files` source comes first in nsswitch.conf). We do the same
//! lookup in `/etc/hosts` only: no subprocess, no libc call (the crate forbids
//! `unsafe`), and no DNS query that could hang the inventory on a broken
//! resolver. A name that resolves only through DNS is therefore not found; in
//! that case a host name that already contains a dot is taken as the FQDN,
//! and otherwise the fact is left out.

use std::path::Path;

/// `etc/hostname` under `root`, for when the kernel's name is not available.
pub fn read_hostname(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("etc/hostname")).ok()?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
}

/// The fully qualified name of `hostname`, as `hostname -f` would print it
/// when `/etc/hosts` knows the host (see the module comment).
pub fn fqdn(root: &Path, hostname: &str) -> Option<String> {
    let hosts = std::fs::read_to_string(root.join("etc/hosts")).unwrap_or_default();
    canonical_name_in_hosts(&hosts, hostname)
        .or_else(|| hostname.contains('.').then(|| hostname.to_string()))
}

/// The canonical name (first name) of the first `/etc/hosts` entry that
/// lists `hostname` as its canonical name or an alias, as glibc's `files`
/// backend answers `AI_CANONNAME`. Names compare case-insensitively.
pub fn canonical_name_in_hosts(hosts: &str, hostname: &str) -> Option<String> {
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(_address), Some(canonical)) = (fields.next(), fields.next()) else {
            continue;
        };
        let matches = std::iter::once(canonical)
            .chain(fields)
            .any(|name| name.eq_ignore_ascii_case(hostname));
        if matches {
            return Some(canonical.to_string());
        }
    }
    None
}

/// systemd's machine id (`etc/machine-id`, or D-Bus's copy in
/// `var/lib/dbus/machine-id` on hosts without systemd).
pub fn read_machine_id(root: &Path) -> Option<String> {
    ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .find_map(|file| parse_machine_id(&std::fs::read_to_string(root.join(file)).ok()?))
}

/// A machine id is 32 lower-case hex digits. Images ship the file empty or
/// containing `uninitialized` until first boot; those are not ids (and would
/// be shared by every clone of the image).
pub fn parse_machine_id(text: &str) -> Option<String> {
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/root")
    }

    #[test]
    fn reads_names_and_machine_id_from_the_fixture_root() {
        let root = fixture_root();
        assert_eq!(read_hostname(&root).as_deref(), Some("web01"));
        assert_eq!(
            fqdn(&root, "web01").as_deref(),
            Some("web01.corp.example.com")
        );
        assert_eq!(
            read_machine_id(&root).as_deref(),
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
        );
    }

    #[test]
    fn finds_the_canonical_name_like_glibc_files() {
        let hosts = "127.0.0.1\tlocalhost\n\
                     127.0.1.1\tweb01.corp.example.com\tweb01  # set by the installer\n\
                     ::1     localhost ip6-localhost ip6-loopback\n\
                     10.0.0.5 db.corp.example.com DB01 db01-alias\n\
                     # 10.0.0.9 commented.example.com commented\n\
                     malformed-line-without-names\n";
        let cases = [
            ("web01", Some("web01.corp.example.com")),
            ("WEB01", Some("web01.corp.example.com")),
            ("web01.corp.example.com", Some("web01.corp.example.com")),
            ("db01", Some("db.corp.example.com")),
            ("db01-alias", Some("db.corp.example.com")),
            ("localhost", Some("localhost")),
            ("commented", None),
            ("unknown", None),
        ];
        for (name, expected) in cases {
            assert_eq!(
                canonical_name_in_hosts(hosts, name).as_deref(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn without_a_hosts_entry_a_dotted_hostname_is_its_own_fqdn() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            fqdn(root.path(), "app.example.org").as_deref(),
            Some("app.example.org")
        );
        assert_eq!(fqdn(root.path(), "app"), None);
    }

    #[test]
    fn this_machine_agrees_with_hostname_dash_f() {
        // /etc/hosts here maps 127.0.0.1 to "vm", and `hostname -f` prints "vm".
        let hostname = read_hostname(Path::new("/")).unwrap();
        let output = std::process::Command::new("hostname")
            .arg("-f")
            .output()
            .unwrap();
        let expected = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert_eq!(fqdn(Path::new("/"), &hostname), Some(expected));
    }

    #[test]
    fn rejects_uninitialized_or_malformed_machine_ids() {
        let cases = [
            (
                "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
                Some("3d1219c7c4c5404aaa1f6d2a48adfda4"),
            ),
            (
                "3D1219C7C4C5404AAA1F6D2A48ADFDA4",
                Some("3d1219c7c4c5404aaa1f6d2a48adfda4"),
            ),
            ("uninitialized\n", None),
            ("", None),
            ("3d1219c7c4c5404aaa1f6d2a48adfda", None),
            ("3d1219c7-c4c5-404a-aa1f-6d2a48adfda4", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_machine_id(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn falls_back_to_the_dbus_machine_id() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dbus")).unwrap();
        std::fs::write(root.path().join("etc/machine-id"), "uninitialized\n").unwrap();
        std::fs::write(
            root.path().join("var/lib/dbus/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        assert_eq!(
            read_machine_id(root.path()).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
    }
}
