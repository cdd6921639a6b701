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
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct StreamTable {
    /// agent id -> (session id, cancels that session's stream).
    streams: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

impl StreamTable {
    /// Makes `session` the stream of `agent_id`. Returns true if an older
    /// stream was open for it; that stream is told to end.
    pub fn open(&self, agent_id: &str, session: u64, replaced: CancellationToken) -> bool {
        let previous = self
            .lock()
            .insert(agent_id.to_string(), (session, replaced));
        match previous {
            Some((_, older)) => {
                older.cancel();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
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
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        assert!(!table.open("a1", 1, first.clone()));
        assert!(table.open("a1", 2, second.clone()));
        assert!(first.is_cancelled() && !second.is_cancelled());
        // The replaced stream ending must not forget the new one.
        table.close("a1", 1);
        let third = CancellationToken::new();
        assert!(table.open("a1", 3, third.clone()), "stream 2 is still open");
        assert!(second.is_cancelled());
        table.close("a1", 3);
        assert!(!table.open("a1", 4, CancellationToken::new()));
        assert!(
            !third.is_cancelled(),
            "closed streams are not cancelled again"
        );
    }
}
