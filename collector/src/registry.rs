//! Which agents have an open stream right now. In memory only: after a
//! restart every agent is disconnected until it reconnects.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct AgentRegistry {
    /// agent id -> id of its newest session; a stale session ending must not
    /// mark a reconnected agent as gone.
    sessions: Mutex<HashMap<String, u64>>,
    next_session: std::sync::atomic::AtomicU64,
}

impl AgentRegistry {
    /// Records a new session and returns its id.
    pub fn connected(&self, agent_id: &str) -> u64 {
        let session = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.lock().insert(agent_id.to_string(), session);
        session
    }

    pub fn disconnected(&self, agent_id: &str, session: u64) {
        let mut sessions = self.lock();
        if sessions.get(agent_id) == Some(&session) {
            sessions.remove(agent_id);
        }
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.lock().contains_key(agent_id)
    }

    pub fn connected_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_session_end_does_not_disconnect_a_reconnected_agent() {
        let registry = AgentRegistry::default();
        let old = registry.connected("a");
        let new = registry.connected("a");
        registry.disconnected("a", old);
        assert!(registry.is_connected("a"));
        registry.disconnected("a", new);
        assert!(!registry.is_connected("a"));
    }
}
