//! The remote_write sender: ingest hands committed batches to an
//! [`ExportHandle`] (never waiting: a full queue drops its oldest samples,
//! counted), and one [`RemoteWriter`] task per endpoint sends them, one
//! request at a time, retrying with backoff until the receiver accepts or
//! refuses.
//!
//! One request in flight per endpoint keeps every series in timestamp order
//! at the receiver (an agent's batches are committed in sequence order, and
//! a series belongs to one agent).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{Credential, ExportConfig, RemoteWriteTarget, parse_roots};
use super::remote_write::{
    self, Backoff, CommittedBatch, QueuedSlice, SampleQueue, Verdict, sample_count,
};
use crate::notify::http::{HttpError, ProxySettings, WebhookClient};
use crate::store::SampleRecord;
use crate::telemetry::Telemetry;

/// How long shutdown waits for a last attempt to send what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("remote_write {name:?}: cannot set up the HTTP client: {source}")]
    Client { name: String, source: HttpError },
}

/// One endpoint's queue, shared by ingest (pushing) and its sender (taking).
#[derive(Debug)]
struct EndpointQueue {
    samples: Mutex<SampleQueue>,
    /// Woken on every push.
    pushed: Notify,
}

impl EndpointQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, SampleQueue> {
        // A panic while holding the lock leaves a consistent queue (every
        // method finishes its bookkeeping before it can panic): keep going.
        self.samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What ingest holds: where committed samples go for export. Cheap to clone;
/// without endpoints it does nothing.
#[derive(Debug, Clone)]
pub struct ExportHandle {
    queues: Arc<[Arc<EndpointQueue>]>,
    telemetry: Arc<Telemetry>,
}

impl ExportHandle {
    /// A handle that exports nothing.
    pub fn disabled(telemetry: Arc<Telemetry>) -> Self {
        Self {
            queues: Arc::from(Vec::new()),
            telemetry,
        }
    }

    /// Whether any endpoint is configured: ingest copies a batch's samples
    /// for export only then.
    pub fn wants_samples(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Queues the samples of a batch that has committed. Never waits.
    pub fn offer(&self, agent_id: &str, host: &Arc<str>, samples: Vec<SampleRecord>) {
        if self.queues.is_empty() || samples.is_empty() {
            return;
        }
        let size = samples.len() as u64;
        let batch = Arc::new(CommittedBatch {
            agent_id: agent_id.to_string(),
            host: Arc::clone(host),
            samples,
        });
        let telemetry = &self.telemetry;
        for queue in self.queues.iter() {
            let dropped = queue.lock().push(Arc::clone(&batch)) as u64;
            Telemetry::add(&telemetry.remote_write_dropped_queue_full, dropped);
            telemetry
                .remote_write_queue_samples
                .fetch_add(size - dropped, Ordering::Relaxed);
            queue.pushed.notify_one();
        }
    }
}

/// Builds the handle and one sender per `[[export.remote_write]]`.
pub fn start(
    config: &ExportConfig,
    telemetry: Arc<Telemetry>,
) -> Result<(ExportHandle, Vec<RemoteWriter>), ExportError> {
    let proxy = ProxySettings::from_env();
    let mut queues = Vec::new();
    let mut writers = Vec::new();
    for target in &config.remote_write {
        let roots = target
            .tls_ca_pem
            .as_deref()
            .map(parse_roots)
            .unwrap_or_default();
        let client = WebhookClient::with_extra_roots(&proxy, &roots).map_err(|source| {
            ExportError::Client {
                name: target.name.clone(),
                source,
            }
        })?;
        let queue = Arc::new(EndpointQueue {
            samples: Mutex::new(SampleQueue::new(target.max_queued_samples)),
            pushed: Notify::new(),
        });
        queues.push(Arc::clone(&queue));
        writers.push(RemoteWriter {
            headers: request_headers(target.credential.as_ref()),
            target: target.clone(),
            queue,
            client,
            telemetry: Arc::clone(&telemetry),
        });
    }
    let handle = ExportHandle {
        queues: Arc::from(queues),
        telemetry,
    };
    Ok((handle, writers))
}

fn request_headers(credential: Option<&Credential>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = remote_write::HEADERS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    match credential {
        None => {}
        Some(Credential::Bearer(token)) => {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        Some(Credential::Basic { username, password }) => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            headers.push(("Authorization".into(), format!("Basic {pair}")));
        }
    }
    headers
}

/// Sends one endpoint's queue. Run it with [`RemoteWriter::run`].
pub struct RemoteWriter {
    target: RemoteWriteTarget,
    queue: Arc<EndpointQueue>,
    client: WebhookClient,
    /// remote_write's headers and the credential (never logged).
    headers: Vec<(String, String)>,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("name", &self.target.name)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended, for the loop and the counters.
enum Attempt {
    Done(Verdict),
    Failed,
}

impl RemoteWriter {
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// Sends until `shutdown`, then tries once more to send what is queued.
    /// Never fails: a receiver that is down only fills the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            message = "Exporting committed samples with remote_write.",
            endpoint = %self.target.name,
            max_queued_samples = self.target.max_queued_samples,
        );
        let mut backoff = Backoff::new(self.target.min_backoff, self.target.max_backoff);
        loop {
            let Some(slices) = self.next_request(&shutdown).await else {
                break;
            };
            if !self.send_until_done(&slices, &mut backoff, &shutdown).await {
                break;
            }
        }
        self.final_flush().await;
    }

    /// Waits for samples, then up to `batch_wait` for a full request;
    /// `None` on shutdown.
    async fn next_request(&self, shutdown: &CancellationToken) -> Option<Vec<QueuedSlice>> {
        let per_request = self.target.max_samples_per_send;
        loop {
            if !self.queue.lock().is_empty() {
                break;
            }
            tokio::select! {
                _ = self.queue.pushed.notified() => {}
                _ = shutdown.cancelled() => return None,
            }
        }
        let deadline = tokio::time::Instant::now() + self.target.batch_wait;
        while self.queue.lock().len() < per_request {
            tokio::select! {
                _ = self.queue.pushed.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.cancelled() => return None,
            }
        }
        Some(self.take(per_request))
    }

    fn take(&self, max: usize) -> Vec<QueuedSlice> {
        let slices = self.queue.lock().take(max);
        self.telemetry
            .remote_write_queue_samples
            .fetch_sub(sample_count(&slices) as u64, Ordering::Relaxed);
        slices
    }

    /// Sends one request until it is accepted or refused; `false` if
    /// shutdown came first (the request is then lost to the export, counted;
    /// the samples stay in Steward's own store).
    async fn send_until_done(
        &self,
        slices: &[QueuedSlice],
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> bool {
        let samples = sample_count(slices) as u64;
        let body = remote_write::encode(&remote_write::write_request(slices));
        let abandon = || {
            Telemetry::add(&self.telemetry.remote_write_dropped_shutdown, samples);
            false
        };
        loop {
            let attempt = tokio::select! {
                attempt = self.attempt(body.clone()) => attempt,
                _ = shutdown.cancelled() => return abandon(),
            };
            let wait = match attempt {
                Attempt::Done(Verdict::Sent) => {
                    backoff.reset();
                    Telemetry::add(&self.telemetry.remote_write_samples_sent, samples);
                    return true;
                }
                Attempt::Done(Verdict::Refused) => {
                    backoff.reset();
                    Telemetry::add(&self.telemetry.remote_write_samples_refused, samples);
                    return true;
                }
                Attempt::Done(Verdict::Retry { at_least }) => {
                    let delay = backoff.next_delay(rand::random::<f64>());
                    at_least.map_or(delay, |at_least| delay.max(at_least))
                }
                Attempt::Failed => backoff.next_delay(rand::random::<f64>()),
            };
            Telemetry::add(&self.telemetry.remote_write_retries, 1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return abandon(),
            }
        }
    }

    /// One POST; logs and counts a failure.
    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        let outcome = self
            .client
            .post(
                &self.target.url,
                remote_write::CONTENT_TYPE,
                &self.headers,
                body,
                self.target.timeout,
            )
            .await;
        match outcome {
            Ok(outcome) => {
                let verdict = remote_write::classify_status(outcome.status, outcome.retry_after);
                if verdict != Verdict::Sent {
                    Telemetry::add(&self.telemetry.remote_write_requests_failed, 1);
                    tracing::warn!(
                        message = "remote_write receiver did not accept a request.",
                        endpoint = %self.target.name,
                        status = outcome.status,
                        retried = matches!(verdict, Verdict::Retry { .. }),
                    );
                }
                Attempt::Done(verdict)
            }
            Err(error) => {
                Telemetry::add(&self.telemetry.remote_write_requests_failed, 1);
                tracing::warn!(
                    message = "Cannot reach the remote_write receiver; retrying.",
                    endpoint = %self.target.name,
                    %error,
                );
                Attempt::Failed
            }
        }
    }

    /// At shutdown: one attempt per request for what is still queued,
    /// within [`FINAL_FLUSH`]; the rest is counted as dropped.
    async fn final_flush(&self) {
        let flush = async {
            loop {
                let slices = self.take(self.target.max_samples_per_send);
                if slices.is_empty() {
                    return;
                }
                let samples = sample_count(&slices) as u64;
                let body = remote_write::encode(&remote_write::write_request(&slices));
                let counter = match self.attempt(body).await {
                    Attempt::Done(Verdict::Sent) => &self.telemetry.remote_write_samples_sent,
                    Attempt::Done(Verdict::Refused) => &self.telemetry.remote_write_samples_refused,
                    _ => &self.telemetry.remote_write_dropped_shutdown,
                };
                Telemetry::add(counter, samples);
            }
        };
        if tokio::time::timeout(FINAL_FLUSH, flush).await.is_err() {
            let left = self.take(usize::MAX);
            Telemetry::add(
                &self.telemetry.remote_write_dropped_shutdown,
                sample_count(&left) as u64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_an_authorization_header() {
        let headers = request_headers(Some(&Credential::Basic {
            username: "steward".into(),
            password: "pw".into(),
        }));
        assert!(headers.contains(&("Authorization".into(), "Basic c3Rld2FyZDpwdw==".into())));
        assert!(headers.contains(&("Content-Encoding".into(), "snappy".into())));
        let headers = request_headers(Some(&Credential::Bearer("t0k".into())));
        assert!(headers.contains(&("Authorization".into(), "Bearer t0k".into())));
        assert_eq!(request_headers(None).len(), 2);
    }

    #[test]
    fn a_disabled_handle_takes_nothing() {
        let telemetry = Arc::new(Telemetry::default());
        let handle = ExportHandle::disabled(Arc::clone(&telemetry));
        assert!(!handle.wants_samples());
        handle.offer("a", &Arc::from("h"), Vec::new());
        assert_eq!(
            telemetry.remote_write_queue_samples.load(Ordering::Relaxed),
            0
        );
    }
}
