//! The `steward.v1.Enrollment` service: an enrollment token and a CSR buy a
//! client certificate; a current certificate buys its renewal.
//!
//! Tokens are compared by their SHA-256 in the store and never logged.
//! Attempts are rate limited per source address (RESOURCE_EXHAUSTED).

use std::sync::Arc;

use steward_proto::v1 as pb;
use steward_proto::v1::enrollment_server::Enrollment;
use tonic::{Request, Response, Status};

use crate::enrollment::{CertificateAuthority, EnrollmentSecret, agent_id_of, sha256_hex};
use crate::ratelimit::SourceRateLimiter;
use crate::store::{EnrollRefusal, Store};
use crate::telemetry::{LogThrottle, Telemetry};

/// Longest CSR accepted (a P-256 or RSA-4096 CSR is well under this).
const MAX_CSR_BYTES: usize = 16 << 10;

pub struct EnrollmentHandler {
    pub authority: Arc<CertificateAuthority>,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub limiter: Arc<SourceRateLimiter>,
    pub throttle: Arc<LogThrottle>,
}

impl EnrollmentHandler {
    fn admit<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let peer = request.remote_addr();
        let allowed =
            peer.is_none_or(|address| self.limiter.allow(address.ip(), std::time::Instant::now()));
        let peer = peer.map_or_else(|| "unknown".to_string(), |address| address.to_string());
        if !allowed {
            Telemetry::add(&self.telemetry.enrollments_rate_limited, 1);
            if let Some(held_back) = self.throttle.allow("enroll-rate", super::peer_host(&peer)) {
                tracing::warn!(message = "Refused enrollment: too many attempts from this address.", %peer, held_back);
            }
            return Err(Status::resource_exhausted(
                "too many enrollment attempts from this address; retry later",
            ));
        }
        Ok(peer)
    }

    fn refuse(&self, peer: &str, agent_id: &str, why: &str, status: Status) -> Status {
        Telemetry::add(&self.telemetry.enrollments_refused, 1);
        if let Some(held_back) = self
            .throttle
            .allow("enroll-refused", super::peer_host(peer))
        {
            tracing::warn!(
                message = "Refused enrollment.",
                %peer,
                agent_id = %steward_core::text::strip_control(super::truncate(agent_id, super::MAX_AGENT_ID)),
                reason = why,
                held_back,
            );
        }
        status
    }
}

fn check_csr(csr_pem: &str) -> Result<(), Status> {
    if csr_pem.is_empty() || csr_pem.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument("missing or oversized CSR"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Enrollment for EnrollmentHandler {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let peer = self.admit(&request)?;
        let request = request.into_inner();
        if super::check_agent_id(&request.agent_id).is_err() {
            return Err(self.refuse(
                &peer,
                &request.agent_id,
                "bad agent id",
                Status::invalid_argument("bad agent id (1-128 characters, no control characters)"),
            ));
        }
        check_csr(&request.csr_pem)
            .map_err(|status| self.refuse(&peer, &request.agent_id, "bad CSR", status))?;
        let now_ms = steward_core::now_ms();
        let secret_sha256 = EnrollmentSecret::hash_presented(&request.token);
        // The CA signs nothing for a caller without a usable token.
        let usable = self
            .store
            .enrollment_token_usable(secret_sha256.clone(), now_ms)
            .await
            .map_err(|error| {
                tracing::error!(message = "Cannot read enrollment tokens.", %error);
                Status::unavailable("the collector cannot check the token now")
            })?;
        if !usable {
            return Err(self.refuse(
                &peer,
                &request.agent_id,
                "invalid token",
                Status::unauthenticated(EnrollRefusal::InvalidToken.to_string()),
            ));
        }
        let signed = self
            .authority
            .sign_request(&request.csr_pem, &request.agent_id, now_ms)
            .map_err(|error| {
                self.refuse(
                    &peer,
                    &request.agent_id,
                    "bad CSR",
                    Status::invalid_argument(error.to_string()),
                )
            })?;
        let outcome = self
            .store
            .redeem_enrollment(secret_sha256, signed.record.clone(), now_ms)
            .await
            .map_err(|error| {
                tracing::error!(message = "Cannot record an enrollment.", %error);
                Status::unavailable("the collector cannot store the enrollment now")
            })?;
        let tags = match outcome {
            Ok(tags) => tags,
            Err(refusal @ EnrollRefusal::InvalidToken) => {
                return Err(self.refuse(
                    &peer,
                    &request.agent_id,
                    "invalid token",
                    Status::unauthenticated(refusal.to_string()),
                ));
            }
            Err(refusal @ EnrollRefusal::RevokedAfterToken(_)) => {
                return Err(self.refuse(
                    &peer,
                    &request.agent_id,
                    "agent id revoked after the token was made",
                    Status::failed_precondition(refusal.to_string()),
                ));
            }
            Err(refusal @ EnrollRefusal::ExistingAgent(_)) => {
                return Err(self.refuse(
                    &peer,
                    &request.agent_id,
                    "agent id streamed with the shared token; the token may not adopt it",
                    Status::failed_precondition(refusal.to_string()),
                ));
            }
            Err(refusal) => {
                return Err(self.refuse(
                    &peer,
                    &request.agent_id,
                    "agent id already enrolled",
                    Status::failed_precondition(refusal.to_string()),
                ));
            }
        };
        Telemetry::add(&self.telemetry.enrollments, 1);
        tracing::info!(
            message = "Agent enrolled.",
            %peer,
            agent_id = %request.agent_id,
            hostname = %steward_core::text::strip_control(super::truncate(&request.hostname, super::MAX_HOSTNAME)),
            serial = %signed.record.serial,
            tags = %tags.join(","),
        );
        Ok(Response::new(pb::EnrollResponse {
            certificate_pem: signed.pem,
            ca_pem: self.authority.ca_pem().to_string(),
        }))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let peer = self.admit(&request)?;
        let presented = request
            .peer_certs()
            .and_then(|certificates| certificates.first().map(|der| der.to_vec()))
            .ok_or_else(|| {
                Status::unauthenticated("renewal needs the current client certificate")
            })?;
        let agent_id = agent_id_of(&presented)
            .ok_or_else(|| Status::unauthenticated("the client certificate names no agent"))?;
        let request = request.into_inner();
        check_csr(&request.csr_pem)?;
        let now_ms = steward_core::now_ms();
        let signed = self
            .authority
            .sign_request(&request.csr_pem, &agent_id, now_ms)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let renewed = self
            .store
            .renew_certificate(sha256_hex(&presented), signed.record.clone())
            .await
            .map_err(|error| {
                tracing::error!(message = "Cannot record a certificate renewal.", %error);
                Status::unavailable("the collector cannot store the renewal now")
            })?;
        if !renewed {
            Telemetry::add(&self.telemetry.agents_refused_revoked, 1);
            tracing::warn!(message = "Refused renewal of a revoked or superseded certificate.", %peer, %agent_id);
            return Err(Status::unauthenticated(
                "this certificate was revoked or superseded",
            ));
        }
        Telemetry::add(&self.telemetry.certificates_renewed, 1);
        tracing::info!(message = "Agent certificate renewed.", %peer, %agent_id, serial = %signed.record.serial);
        Ok(Response::new(pb::RenewResponse {
            certificate_pem: signed.pem,
        }))
    }
}
