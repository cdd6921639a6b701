//! One stream per agent id: a newer stream replaces the older one.
//!
//! Why replace rather than refuse: an agent whose connection died without a
//! FIN (NAT timeout, a cable, a suspended VM) reconnects before the
//! collector's keepalive notices the old stream is dead. Refusing would lock
//! it out for up to a keepalive period while its buffer fills; replacing lets
//! it back at once. Only a holder of an agent token can do this, and a token
//! holder can already send data as any agent id. Two hosts sharing an id (a
//! cloned state directory) keep replacing each other, which shows in
//! `steward_streams_replaced_total` and in a log line per agent per minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// How a stream is told to end, and why.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    cancel: CancellationToken,
    /// Set before `cancel` when the agent's certificate was revoked.
    revoked: Arc<AtomicBool>,
}

impl StreamEnd {
    pub async fn ended(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether the stream ended because of a revocation (else: replaced).
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    fn replace(&self) {
        self.cancel.cancel();
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.cancel.cancel();
    }
}

#[derive(Debug, Default)]
pub struct StreamTable {
    /// agent id -> (session id, ends that session's stream).
    streams: Mutex<HashMap<String, (u64, StreamEnd)>>,
}

impl StreamTable {
    /// Makes `session` the stream of `agent_id`. Returns true if an older
    /// stream was open for it; that stream is told to end.
    pub fn open(&self, agent_id: &str, session: u64, end: StreamEnd) -> bool {
        let previous = self.lock().insert(agent_id.to_string(), (session, end));
        match previous {
            Some((_, older)) => {
                older.replace();
                true
            }
            None => false,
        }
    }

    /// Ends the open stream of `agent_id` (its certificate was revoked).
    /// Returns whether one was open.
    pub fn revoke(&self, agent_id: &str) -> bool {
        match self.lock().remove(agent_id) {
            Some((_, end)) => {
                end.revoke();
                true
            }
            None => false,
        }
    }

    /// Forgets `session` if it is still the stream of `agent_id`.
    pub fn close(&self, agent_id: &str, session: u64) {
        let mut streams = self.lock();
        if streams
            .get(agent_id)
            .is_some_and(|(current, _)| *current == session)
        {
            streams.remove(agent_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, StreamEnd)>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_stream_for_an_id_ends_the_first_and_only_the_newest_closes_the_entry() {
        let table = StreamTable::default();
        let (first, second) = (StreamEnd::default(), StreamEnd::default());
        assert!(!table.open("a1", 1, first.clone()));
        assert!(table.open("a1", 2, second.clone()));
        assert!(first.cancel.is_cancelled() && !second.cancel.is_cancelled());
        assert!(!first.revoked());
        // The replaced stream ending must not forget the new one.
        table.close("a1", 1);
        let third = StreamEnd::default();
        assert!(table.open("a1", 3, third.clone()), "stream 2 is still open");
        assert!(second.cancel.is_cancelled());
        table.close("a1", 3);
        assert!(!table.open("a1", 4, StreamEnd::default()));
        assert!(
            !third.cancel.is_cancelled(),
            "closed streams are not cancelled again"
        );
    }

    #[test]
    fn revoking_ends_the_open_stream_and_says_why() {
        let table = StreamTable::default();
        let end = StreamEnd::default();
        table.open("a1", 1, end.clone());
        assert!(table.revoke("a1"));
        assert!(end.cancel.is_cancelled() && end.revoked());
        assert!(!table.revoke("a1"), "nothing open any more");
    }
}
