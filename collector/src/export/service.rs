//! The exporters' sending side: ingest hands committed batches to an
//! [`ExportHandle`] (never waiting: a full queue drops its oldest samples,
//! counted), and one [`Sender`] task per endpoint sends them, one request at
//! a time, retrying with backoff until the receiver accepts or refuses. The
//! loop is the same for every exporter; only the [`Transport`] differs.
//!
//! One request in flight per endpoint keeps every series in timestamp order
//! at the receiver (an agent's batches are committed in sequence order, and
//! a series belongs to one agent).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::{ExportConfig, SendLimits};
use super::queue::{Backoff, CommittedBatch, QueuedSlice, SampleQueue, Verdict, sample_count};
pub use super::transport::ExportError;
use super::transport::{ExporterKind, OtlpTransport, RemoteWriteTransport, Transport};
use crate::notify::http::ProxySettings;
use crate::store::SampleRecord;
use crate::telemetry::{ExportCounters, Telemetry};

/// How long shutdown waits for a last attempt to send what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// One endpoint's queue, shared by ingest (pushing) and its sender (taking).
#[derive(Debug)]
struct EndpointQueue {
    samples: Mutex<SampleQueue>,
    /// Woken on every push.
    pushed: Notify,
    /// Whose counters the queue's drops and size go to.
    kind: ExporterKind,
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
        for queue in self.queues.iter() {
            let dropped = queue.lock().push(Arc::clone(&batch)) as u64;
            let counters = queue.kind.counters(&self.telemetry);
            Telemetry::add(&counters.dropped_queue_full, dropped);
            Telemetry::add(&counters.queue_samples, size - dropped);
            queue.pushed.notify_one();
        }
    }
}

/// One endpoint's supervised task, whatever its exporter.
pub enum ExportTask {
    RemoteWrite(Sender<RemoteWriteTransport>),
    Otlp(Sender<OtlpTransport>),
}

impl ExportTask {
    /// The supervisor's name for it.
    pub fn task_name(&self) -> &'static str {
        match self {
            Self::RemoteWrite(_) => RemoteWriteTransport::KIND.task_name(),
            Self::Otlp(_) => OtlpTransport::KIND.task_name(),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        match self {
            Self::RemoteWrite(sender) => sender.run(shutdown).await,
            Self::Otlp(sender) => sender.run(shutdown).await,
        }
    }
}

/// Builds the handle and one task per `[[export.remote_write]]` and
/// `[[export.otlp]]`. Call it inside the runtime (gRPC channels spawn their
/// worker here).
pub fn start(
    config: &ExportConfig,
    telemetry: Arc<Telemetry>,
) -> Result<(ExportHandle, Vec<ExportTask>), ExportError> {
    let proxy = ProxySettings::from_env();
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for target in &config.remote_write {
        let transport = RemoteWriteTransport::new(target, &proxy)?;
        let sender = Sender::new(&target.name, &target.limits, transport, &telemetry);
        queues.push(Arc::clone(&sender.queue));
        tasks.push(ExportTask::RemoteWrite(sender));
    }
    for target in &config.otlp {
        let transport = OtlpTransport::new(target)?;
        let sender = Sender::new(&target.name, &target.limits, transport, &telemetry);
        queues.push(Arc::clone(&sender.queue));
        tasks.push(ExportTask::Otlp(sender));
    }
    let handle = ExportHandle {
        queues: Arc::from(queues),
        telemetry,
    };
    Ok((handle, tasks))
}

/// Sends one endpoint's queue. Run it with [`Sender::run`].
pub struct Sender<T: Transport> {
    name: String,
    limits: SendLimits,
    queue: Arc<EndpointQueue>,
    transport: T,
    telemetry: Arc<Telemetry>,
}

impl<T: Transport> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("kind", &T::KIND)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Sender<T> {
    fn new(name: &str, limits: &SendLimits, transport: T, telemetry: &Arc<Telemetry>) -> Self {
        Self {
            name: name.to_string(),
            limits: limits.clone(),
            queue: Arc::new(EndpointQueue {
                samples: Mutex::new(SampleQueue::new(limits.max_queued_samples)),
                pushed: Notify::new(),
                kind: T::KIND,
            }),
            transport,
            telemetry: Arc::clone(telemetry),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn counters(&self) -> &ExportCounters {
        T::KIND.counters(&self.telemetry)
    }

    /// Sends until `shutdown`, then tries once more to send what is queued.
    /// Never fails: a receiver that is down only fills the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            message = "Exporting committed samples.",
            exporter = T::KIND.task_name(),
            endpoint = %self.name,
            max_queued_samples = self.limits.max_queued_samples,
        );
        let mut backoff = Backoff::new(self.limits.min_backoff, self.limits.max_backoff);
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
        let per_request = self.limits.max_samples_per_send;
        loop {
            if !self.queue.lock().is_empty() {
                break;
            }
            tokio::select! {
                _ = self.queue.pushed.notified() => {}
                _ = shutdown.cancelled() => return None,
            }
        }
        let deadline = tokio::time::Instant::now() + self.limits.batch_wait;
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
        self.counters()
            .queue_samples
            .fetch_sub(sample_count(&slices) as u64, Ordering::Relaxed);
        slices
    }

    /// Counts a final verdict for `samples`; `false` for a retry.
    fn settle(&self, verdict: Verdict, samples: u64) -> bool {
        let counters = self.counters();
        match verdict {
            Verdict::Sent => Telemetry::add(&counters.samples_sent, samples),
            Verdict::PartlyRefused { rejected } => {
                let rejected = rejected.min(samples);
                Telemetry::add(&counters.samples_sent, samples - rejected);
                Telemetry::add(&counters.samples_refused, rejected);
            }
            Verdict::Refused => {
                Telemetry::add(&counters.requests_failed, 1);
                Telemetry::add(&counters.samples_refused, samples);
            }
            Verdict::Retry { .. } => {
                Telemetry::add(&counters.requests_failed, 1);
                return false;
            }
        }
        true
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
        let request = self.transport.build(slices);
        let abandon = || {
            Telemetry::add(&self.counters().dropped_shutdown, samples);
            false
        };
        loop {
            let verdict = tokio::select! {
                verdict = self.transport.send(request.clone()) => verdict,
                _ = shutdown.cancelled() => return abandon(),
            };
            if self.settle(verdict, samples) {
                backoff.reset();
                return true;
            }
            let delay = backoff.next_delay(rand::random::<f64>());
            let wait = match verdict {
                Verdict::Retry {
                    at_least: Some(at_least),
                } => delay.max(at_least),
                _ => delay,
            };
            Telemetry::add(&self.counters().retries, 1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return abandon(),
            }
        }
    }

    /// At shutdown: one attempt per request for what is still queued,
    /// within [`FINAL_FLUSH`]; the rest is counted as dropped.
    async fn final_flush(&self) {
        let flush = async {
            loop {
                let slices = self.take(self.limits.max_samples_per_send);
                if slices.is_empty() {
                    return;
                }
                let samples = sample_count(&slices) as u64;
                let verdict = self.transport.send(self.transport.build(&slices)).await;
                if !self.settle(verdict, samples) {
                    Telemetry::add(&self.counters().dropped_shutdown, samples);
                }
            }
        };
        if tokio::time::timeout(FINAL_FLUSH, flush).await.is_err() {
            let left = self.take(usize::MAX);
            Telemetry::add(
                &self.counters().dropped_shutdown,
                sample_count(&left) as u64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_handle_takes_nothing() {
        let telemetry = Arc::new(Telemetry::default());
        let handle = ExportHandle::disabled(Arc::clone(&telemetry));
        assert!(!handle.wants_samples());
        handle.offer("a", &Arc::from("h"), Vec::new());
        assert_eq!(
            telemetry.remote_write.queue_samples.load(Ordering::Relaxed),
            0
        );
    }
}
