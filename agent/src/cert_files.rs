//! The client key and certificate on disk, replaced as one pair.
//!
//! Two separate renames cannot be atomic together: a crash between them
//! would leave a new key beside the old certificate, and such an agent can
//! neither connect nor renew (nor re-enroll: its id is still bound). So a
//! replacement is a small commit protocol:
//!
//! 1. write `KEY.new` (0600) and `CERT.new`, fsync them and their directories;
//! 2. create the commit marker (`KEY` with extension `renewal-commit`, e.g.
//!    `agent.renewal-commit`), fsync it and its directory: from here on the
//!    new pair wins;
//! 3. rename each `.new` over its target, fsync the directories;
//! 4. remove the marker, fsync its directory.
//!
//! [`load`] first recovers from a crash at any step: with a marker it rolls
//! forward (installs whatever `.new` file is left), without one it deletes
//! the `.new` files of the unfinished replacement (the old pair is intact).
//! One process-wide lock makes a replacement and a load exclusive, so the
//! shipper never reads a pair half-way through a renewal.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::ClientCertFiles;

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct CertFilesError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Held for a whole replacement and for a whole recover-and-read.
static PAIR_LOCK: Mutex<()> = Mutex::new(());

fn lock_pair() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding it leaves the files as a crash would; recovery copes.
    PAIR_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> CertFilesError + '_ {
    move |source| CertFilesError {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the replacement for `path` is staged.
fn staged(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Its existence means: the staged pair is complete and must be installed.
fn commit_marker(files: &ClientCertFiles) -> PathBuf {
    files.key.with_extension("renewal-commit")
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes created, renamed and removed directory entries durable.
fn sync_dir(dir: &Path) -> Result<(), CertFilesError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(at(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn sync_dirs(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    let key_dir = parent(&files.key);
    let cert_dir = parent(&files.cert);
    sync_dir(key_dir)?;
    if cert_dir != key_dir {
        sync_dir(cert_dir)?;
    }
    Ok(())
}

fn write_synced(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertFilesError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(at(path)(error)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // 0600 from creation: the key is never readable by others, not even briefly.
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(at(path))?;
    file.write_all(contents).map_err(at(path))?;
    file.sync_all().map_err(at(path))
}

fn remove_if_present(path: &Path) -> Result<(), CertFilesError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(at(path)(error)),
        _ => Ok(()),
    }
}

/// Step 1: the new pair, durable beside the old one.
fn stage(files: &ClientCertFiles, key_pem: &[u8], cert_pem: &[u8]) -> Result<(), CertFilesError> {
    write_synced(&staged(&files.key), key_pem, true)?;
    write_synced(&staged(&files.cert), cert_pem, false)?;
    sync_dirs(files)
}

/// Step 2: the commit point.
fn mark_committed(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    let marker = commit_marker(files);
    write_synced(&marker, b"", false)?;
    sync_dir(parent(&marker))
}

/// Step 3, also the roll-forward: installs each staged file still present.
fn install_staged(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    for target in [&files.key, &files.cert] {
        let source = staged(target);
        match std::fs::rename(&source, target) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(at(&source)(error));
            }
            _ => {}
        }
    }
    sync_dirs(files)
}

/// Step 4: the replacement is complete.
fn clear_marker(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    let marker = commit_marker(files);
    remove_if_present(&marker)?;
    sync_dir(parent(&marker))
}

/// Finishes or undoes a replacement a crash interrupted.
fn recover(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    let marker = commit_marker(files);
    if marker.try_exists().map_err(at(&marker))? {
        tracing::info!(message = "Completing a client certificate replacement interrupted by a crash.", marker = %marker.display());
        install_staged(files)?;
        clear_marker(files)
    } else {
        remove_if_present(&staged(&files.key))?;
        remove_if_present(&staged(&files.cert))
    }
}

/// Replaces the key and certificate together: after a crash at any point,
/// [`load`] sees either the old pair or the new one, never a mix.
pub fn replace(
    files: &ClientCertFiles,
    key_pem: &[u8],
    cert_pem: &[u8],
) -> Result<(), CertFilesError> {
    let _pair = lock_pair();
    // Leftovers of an earlier crash must not be mistaken for this replacement.
    recover(files)?;
    stage(files, key_pem, cert_pem)?;
    mark_committed(files)?;
    install_staged(files)?;
    clear_marker(files)
}

/// The (certificate, key) PEM bytes, after recovering from an interrupted
/// replacement.
pub fn load(files: &ClientCertFiles) -> Result<(Vec<u8>, Vec<u8>), CertFilesError> {
    let _pair = lock_pair();
    recover(files)?;
    let cert = std::fs::read(&files.cert).map_err(at(&files.cert))?;
    let key = std::fs::read(&files.key).map_err(at(&files.key))?;
    Ok((cert, key))
}

/// Recovery alone, for readers that look only at the certificate.
pub fn recover_interrupted(files: &ClientCertFiles) -> Result<(), CertFilesError> {
    let _pair = lock_pair();
    recover(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_pair(dir: &Path) -> ClientCertFiles {
        let files = ClientCertFiles {
            cert: dir.join("agent.pem"),
            key: dir.join("agent.key"),
        };
        std::fs::write(&files.key, "old key").unwrap();
        std::fs::write(&files.cert, "old cert").unwrap();
        files
    }

    fn pair(files: &ClientCertFiles) -> (String, String) {
        let (cert, key) = load(files).unwrap();
        (
            String::from_utf8(key).unwrap(),
            String::from_utf8(cert).unwrap(),
        )
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "agent.key" && name != "agent.pem")
            .collect();
        names.sort();
        names
    }

    #[test]
    fn clean_replacement_installs_both_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        replace(&files, b"new key", b"new cert").unwrap();
        assert_eq!(pair(&files), ("new key".into(), "new cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Guards: a crash before the commit point must keep the old, working pair.
    #[test]
    fn crash_after_staging_without_marker_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        stage(&files, b"new key", b"new cert").unwrap();
        assert_eq!(pair(&files), ("old key".into(), "old cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// Guards: a crash between the two renames must not leave new key + old cert.
    #[test]
    fn crash_after_marker_and_first_rename_rolls_forward_to_the_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        stage(&files, b"new key", b"new cert").unwrap();
        mark_committed(&files).unwrap();
        std::fs::rename(staged(&files.key), &files.key).unwrap();
        assert_eq!(pair(&files), ("new key".into(), "new cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn crash_after_marker_before_any_rename_rolls_forward_to_the_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        stage(&files, b"new key", b"new cert").unwrap();
        mark_committed(&files).unwrap();
        assert_eq!(pair(&files), ("new key".into(), "new cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn crash_after_both_renames_only_clears_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        stage(&files, b"new key", b"new cert").unwrap();
        mark_committed(&files).unwrap();
        install_staged(&files).unwrap();
        assert_eq!(pair(&files), ("new key".into(), "new cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// Guards: stale staged files of an earlier crash never reach a later replacement.
    #[test]
    fn replacement_after_an_unfinished_one_uses_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = old_pair(dir.path());
        stage(&files, b"stale key", b"stale cert").unwrap();
        replace(&files, b"new key", b"new cert").unwrap();
        assert_eq!(pair(&files), ("new key".into(), "new cert".into()));
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }
}
