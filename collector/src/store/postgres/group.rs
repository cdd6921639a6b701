//! Group commit for ingest: batches arriving together from many agent
//! streams share one transaction (one WAL flush), as the SQLite writer
//! groups them. A task owns the queue; each caller waits for its group's
//! commit before it may acknowledge.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::super::{CommitOutcome, SampleBatch};
use super::PgError;
use super::ingest::{Published, commit_group};

/// Most batches folded into one transaction; bounds commit latency under load.
const MAX_BATCHES_PER_TRANSACTION: usize = 256;

type Reply = oneshot::Sender<Result<CommitOutcome, PgError>>;

/// The sending side; the committing task ends when every clone is dropped.
#[derive(Clone)]
pub(super) struct BatchQueue {
    sender: mpsc::Sender<(SampleBatch, Reply)>,
}

impl BatchQueue {
    pub(super) fn start(pool: Pool, collector: String, published: Arc<Published>) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_BATCHES_PER_TRANSACTION * 4);
        tokio::spawn(run(pool, collector, published, receiver));
        Self { sender }
    }

    pub(super) async fn commit(&self, batch: SampleBatch) -> Result<CommitOutcome, PgError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((batch, reply))
            .await
            .map_err(|_| PgError::GroupFailed("the batch committer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| PgError::GroupFailed("the batch committer has stopped".to_string()))?
    }
}

async fn run(
    pool: Pool,
    collector: String,
    published: Arc<Published>,
    mut receiver: mpsc::Receiver<(SampleBatch, Reply)>,
) {
    let mut group = Vec::with_capacity(MAX_BATCHES_PER_TRANSACTION);
    while receiver
        .recv_many(&mut group, MAX_BATCHES_PER_TRANSACTION)
        .await
        > 0
    {
        let (batches, replies): (Vec<SampleBatch>, Vec<Reply>) = group.drain(..).unzip();
        match commit_group(&pool, &collector, &published, &batches).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                // Nothing of the group is stored; every sender is told, and
                // its agent resends (to this or another collector).
                let message = error.to_string();
                tracing::warn!(message = "Batch group failed to commit.", error = %message);
                for reply in replies {
                    let _ = reply.send(Err(PgError::GroupFailed(message.clone())));
                }
            }
        }
    }
}
