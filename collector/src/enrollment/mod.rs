//! Agent identity: enrollment tokens and the certificate authority that
//! turns a token and a CSR into a client certificate.
//!
//! Pure apart from the CA files it is handed: no gRPC (that is `ingest`), no
//! SQL (that is `store::identity`). Token secrets exist here only long enough
//! to be printed once or hashed; they are never logged and never stored.
//!
//! An agent's identity is the common name of its certificate, which is its
//! agent id (the UUID in its state directory).

mod authority;
mod tokens;

pub use authority::{
    AuthorityError, CertificateAuthority, SignedCertificate, agent_id_of, sha256_hex,
};
pub use tokens::{EnrollmentSecret, TagError, parse_tag};

/// Default lifetime of an agent certificate; agents renew at two thirds of it.
pub const DEFAULT_CERT_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(90 * 24 * 3600);
