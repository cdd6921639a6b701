//! The collector's certificate authority: signs agent CSRs into client
//! certificates whose common name is the agent id.

use std::time::Duration;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};

use crate::store::IssuedCertificate;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error("cannot read the CA certificate or key: {0}")]
    Load(rcgen::Error),
    #[error("not a valid certificate signing request: {0}")]
    BadRequest(rcgen::Error),
    #[error("cannot sign the certificate: {0}")]
    Sign(rcgen::Error),
    #[error("the CA certificate is not PEM")]
    NotPem,
}

/// A certificate just signed, and what the store records of it.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    pub pem: String,
    pub record: IssuedCertificate,
}

/// The CA certificate and its key. Never printed: `Debug` shows the fingerprint.
pub struct CertificateAuthority {
    ca_pem: String,
    fingerprint: String,
    issuer: Issuer<'static, KeyPair>,
    lifetime: Duration,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &self.fingerprint)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// How far back a new certificate's validity starts, for agents whose
/// clock runs a little behind the collector's; at most a tenth of the
/// lifetime, so the agent's renewal point (two thirds of not-before to
/// not-after) stays in the future for short test lifetimes too.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

impl CertificateAuthority {
    pub fn load(ca_pem: &str, key_pem: &str, lifetime: Duration) -> Result<Self, AuthorityError> {
        let key = KeyPair::from_pem(key_pem).map_err(AuthorityError::Load)?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, key).map_err(AuthorityError::Load)?;
        let fingerprint = format!("sha256:{}", sha256_hex(&first_der(ca_pem)?));
        Ok(Self {
            ca_pem: ca_pem.to_string(),
            fingerprint,
            issuer,
            lifetime,
        })
    }

    /// `sha256:<hex>` of the CA certificate (DER), what agents pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs the key of `csr_pem` (its signature is checked) for `agent_id`.
    /// Whatever names the CSR asks for are ignored.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> Result<SignedCertificate, AuthorityError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(AuthorityError::BadRequest)?;
        self.issue(agent_id, &request.public_key, now_ms)
    }

    /// A client certificate for `agent_id` over `public_key`.
    pub fn issue(
        &self,
        agent_id: &str,
        public_key: &impl PublicKeyData,
        now_ms: i64,
    ) -> Result<SignedCertificate, AuthorityError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, agent_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        // Positive and unique: 127 random bits.
        let mut serial = rand::random::<[u8; 16]>();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now_s = now_ms.div_euclid(1000);
        let backdate = CLOCK_SKEW.min(self.lifetime / 10);
        let not_before = now_s - backdate.as_secs() as i64;
        let not_after = now_s + self.lifetime.as_secs() as i64;
        let date = |seconds: i64| {
            time::OffsetDateTime::from_unix_timestamp(seconds)
                .map_err(|error| AuthorityError::Sign(rcgen::Error::X509(error.to_string())))
        };
        params.not_before = date(not_before)?;
        params.not_after = date(not_after)?;
        let certificate = params
            .signed_by(public_key, &self.issuer)
            .map_err(AuthorityError::Sign)?;
        Ok(SignedCertificate {
            pem: certificate.pem(),
            record: IssuedCertificate {
                agent_id: agent_id.to_string(),
                sha256: sha256_hex(certificate.der()),
                serial: hex::encode(serial),
                issued_ms: now_ms,
                not_after_ms: not_after * 1000,
            },
        })
    }
}

fn first_der(pem: &str) -> Result<Vec<u8>, AuthorityError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|der| der.to_vec())
        .ok_or(AuthorityError::NotPem)
}

/// The agent id a client certificate names (its common name).
pub fn agent_id_of(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let name = certificate.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertifiedIssuer};

    pub(crate) fn test_ca() -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let key_pem = key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(params, key).unwrap();
        (ca.pem(), key_pem)
    }

    #[test]
    fn signs_a_csr_for_the_agent_id_ignoring_the_names_it_asks_for() {
        let (ca_pem, key_pem) = test_ca();
        let authority =
            CertificateAuthority::load(&ca_pem, &key_pem, Duration::from_secs(3600)).unwrap();
        assert!(authority.fingerprint().starts_with("sha256:"));
        assert_eq!(authority.fingerprint().len(), 7 + 64);
        let agent_key = KeyPair::generate().unwrap();
        let mut request = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        request
            .distinguished_name
            .push(DnType::CommonName, "someone-else");
        let csr = request
            .serialize_request(&agent_key)
            .unwrap()
            .pem()
            .unwrap();
        let signed = authority
            .sign_request(&csr, "agent-1", 1_700_000_000_000)
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(signed.pem.as_bytes());
        use rustls::pki_types::pem::PemObject;
        let der = der.unwrap();
        assert_eq!(agent_id_of(&der).as_deref(), Some("agent-1"));
        assert_eq!(signed.record.sha256, sha256_hex(&der));
        assert_eq!(signed.record.not_after_ms, 1_700_000_000_000 + 3_600_000);
        assert!(authority.sign_request("garbage", "a", 0).is_err());
    }
}
