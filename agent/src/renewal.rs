//! Renews the agent's client certificate at two thirds of its lifetime,
//! over an mTLS connection made with the current one: a new key pair and
//! CSR, then key and certificate replaced together (`cert_files`: a crash
//! leaves the old pair or the new one, never a mix). The shipper picks them
//! up at its next connect.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steward_proto::v1 as pb;
use steward_proto::v1::enrollment_client::EnrollmentClient;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, ClientCertFiles};

/// The shortest time between two renewals.
const MIN_BETWEEN_RENEWALS: Duration = Duration::from_secs(10);
/// A failed renewal is retried after this.
const RETRY_AFTER: Duration = Duration::from_secs(300);
/// The certificate's dates are looked at again at least this often (a
/// certificate replaced by hand is noticed).
const RECHECK_EVERY: Duration = Duration::from_secs(3600);

/// (not_before, not_after) of the PEM certificate at `path`, in Unix seconds.
fn validity(path: &std::path::Path) -> Option<(i64, i64)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path).ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = certificate.validity();
    Some((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// When a certificate valid over `[not_before, not_after]` is renewed.
pub fn renewal_due(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * 2 / 3
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

pub async fn run(config: Arc<AgentConfig>, shutdown: CancellationToken) {
    let Some(files) = config.client_cert.clone() else {
        return;
    };
    // The dates below must be those of the pair the agent will use.
    if let Err(error) = crate::cert_files::recover_interrupted(&files) {
        tracing::warn!(message = "Cannot recover an interrupted certificate replacement.", %error);
    }
    loop {
        let wait = match validity(&files.cert) {
            Some((not_before, not_after)) => {
                let due = renewal_due(not_before, not_after);
                let now = now_s();
                if now >= due {
                    match renew(&config, &files).await {
                        Ok(()) => {
                            tracing::info!(message = "Client certificate renewed.");
                            // Never a tight loop, whatever lifetime the collector signs.
                            MIN_BETWEEN_RENEWALS
                        }
                        Err(error) => {
                            tracing::warn!(message = "Cannot renew the client certificate; retrying.", %error, expires_in_s = not_after - now);
                            RETRY_AFTER
                        }
                    }
                } else {
                    Duration::from_secs((due - now) as u64).min(RECHECK_EVERY)
                }
            }
            None => {
                tracing::warn!(message = "Cannot read the client certificate's dates.", path = %files.cert.display());
                RECHECK_EVERY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn renew(config: &AgentConfig, files: &ClientCertFiles) -> Result<(), String> {
    let agent_id = crate::identity::load_or_create_agent_id(&config.state_dir)
        .map_err(|error| error.to_string())?;
    // Any collector of the list can renew (they share the CA).
    let mut channel = Err(String::from("no collector configured"));
    for target in &config.collectors {
        channel = match crate::shipper::endpoint(config, target) {
            Ok(endpoint) => endpoint
                .connect()
                .await
                .map_err(|error| format!("{}: {error}", target.url)),
            Err(error) => Err(format!("{}: {error}", target.url)),
        };
        if channel.is_ok() {
            break;
        }
    }
    let channel = channel?;
    let key = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
    let csr_pem =
        crate::enroll::certificate_request(&agent_id, &key).map_err(|error| error.to_string())?;
    let response = EnrollmentClient::new(channel)
        .renew(pb::RenewRequest { csr_pem })
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
        .into_inner();
    crate::cert_files::replace(
        files,
        key.serialize_pem().as_bytes(),
        response.certificate_pem.as_bytes(),
    )
    .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let day = 86_400;
        assert_eq!(renewal_due(0, 90 * day), 60 * day);
        assert_eq!(renewal_due(100, 100), 100);
    }
}
