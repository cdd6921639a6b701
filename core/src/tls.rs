//! TLS set-up both programs share: one crypto provider (ring) for the whole
//! process, and the roots certificates are checked against.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Installs the process-wide rustls crypto provider (ring). Call once at
/// start-up in every binary; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why no usable trust roots could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TrustRootsError {
    #[error("cannot read CA file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("CA file {path} holds no usable certificate")]
    Empty { path: PathBuf },
    #[error("no usable certificate in the system trust store ({0})")]
    NoSystemRoots(String),
}

/// The certificates of `ca` when given (read on every call, so a replaced CA
/// file takes effect without a restart), else the system's trust store.
pub fn trust_roots(ca: Option<&Path>) -> Result<Arc<RootCertStore>, TrustRootsError> {
    match ca {
        Some(path) => roots_from_pem_file(path).map(Arc::new),
        None => system_roots(),
    }
}

/// The operating system's trust store (on Linux the distribution bundle;
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` override it), read once per process:
/// it is large and changes only with packages.
pub fn system_roots() -> Result<Arc<RootCertStore>, TrustRootsError> {
    static SYSTEM: OnceLock<Result<Arc<RootCertStore>, TrustRootsError>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            // Stores carry the odd certificate webpki cannot use; skip those.
            let (added, _skipped) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let why = loaded
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), ToString::to_string);
                return Err(TrustRootsError::NoSystemRoots(why));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// Every parsable certificate in a PEM file.
pub fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, TrustRootsError> {
    let read_error = |error: rustls::pki_types::pem::Error| TrustRootsError::Read {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    let mut roots = RootCertStore::empty();
    let (added, _skipped) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(TrustRootsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = trust_roots(Some(&path)).unwrap_err();
        assert!(matches!(error, TrustRootsError::Empty { .. }), "{error}");
        assert!(error.to_string().contains("ca.pem"), "{error}");
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let error = roots_from_pem_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(matches!(error, TrustRootsError::Read { .. }), "{error}");
    }

    #[test]
    fn this_machine_has_system_roots() {
        // Debian's ca-certificates is part of the base image here; the
        // collector's webhook and email delivery depend on it.
        let roots = system_roots().unwrap();
        assert!(!roots.is_empty());
    }
}
