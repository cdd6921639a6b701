//! Alert delivery: who hears about an incident, when, and in what words.
//!
//! This module holds only the *pure* parts of delivery. It never touches the
//! network, the database or the clock: every function takes the time as unix
//! milliseconds, so all of it is table-testable. The durable outbox, the HTTP
//! and SMTP senders and the wiring into `incidents` live elsewhere and call in.
//!
//! Layout:
//! - [`config`]: `[[channel]]`, `[[route]]`, `[[person]]`, `[[schedule]]` and
//!   `[[escalation]]` tables, parsed raw then validated into [`NotifyConfig`].
//! - [`routing`]: which channels (and which escalation policy) an incident goes to.
//! - [`payload`]: the bytes each channel type is sent (webhook, Alertmanager,
//!   PagerDuty, Slack, email).
//! - [`oncall`]: who is on call in a schedule at a given instant.
//! - [`escalation`]: the per-incident escalation state machine.
//! - [`grouping`]: per-route grouping and storm control (when incidents go
//!   out alone, and when as one storm summary, digest or grouped message).
//! - [`grouped`]: the bytes of those group messages, per channel type.
//!
//! Invariant: each delivery is identified by an [`idempotency_key`]; the
//! outbox stores it under a unique constraint so a message for one
//! (incident, event, recipient) is enqueued at most once, however often the
//! collector restarts or re-evaluates.

pub mod config;
pub mod email;
pub mod escalation;
pub mod group_escalation;
pub mod grouped;
pub mod grouping;
pub mod http;
pub mod oncall;
pub mod payload;
pub mod routing;
pub mod service;

use std::fmt;

use crate::domain::IncidentEvent;

pub use config::{
    Channel, ChannelKind, Contact, EmailChannel, NotifyConfig, Person, RawChannel, RawEscalation,
    RawLevel, RawNotify, RawOverride, RawPerson, RawRoute, RawSchedule, Secret,
};
pub use escalation::{EscalationLevel, EscalationPolicy, EscalationState, EscalationStep, Target};
pub use grouping::{Admission, GroupBy, GroupTracker, GroupedKind, Grouping};
pub use oncall::{OnCall, OnCallSchedule, Override, Rotation, next, on_call};
pub use payload::{EmailMessage, MessageContext, Payload};
pub use routing::{Route, RouteDecision, RouteInput, RouteMatch, SeverityMatch, route};

/// What happened to an incident that is worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationEvent {
    Opened,
    Acknowledged,
    Resolved,
    /// An escalation level fired without an acknowledgement. `level` is the
    /// 0-based index into the policy's levels; `round` counts repeats of the
    /// whole policy (0 for the first pass). Both are needed so a repeated
    /// page is a new delivery rather than a duplicate of the first one.
    Escalated {
        level: usize,
        round: u32,
    },
}

impl NotificationEvent {
    /// The wire name used in webhook bodies: `opened`, `acknowledged`,
    /// `resolved` or `escalated`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Opened => "opened",
            NotificationEvent::Acknowledged => "acknowledged",
            NotificationEvent::Resolved => "resolved",
            NotificationEvent::Escalated { .. } => "escalated",
        }
    }
}

impl From<NotificationEvent> for IncidentEvent {
    fn from(event: NotificationEvent) -> Self {
        match event {
            NotificationEvent::Opened => IncidentEvent::Opened,
            NotificationEvent::Acknowledged => IncidentEvent::Acknowledged,
            NotificationEvent::Resolved => IncidentEvent::Resolved,
            NotificationEvent::Escalated { level, round } => {
                IncidentEvent::Escalated { level, round }
            }
        }
    }
}

/// The incident events that are delivered to people; the others
/// (flapping, SLA breaches) are shown but not sent, and come back as the error.
impl TryFrom<IncidentEvent> for NotificationEvent {
    type Error = IncidentEvent;

    fn try_from(event: IncidentEvent) -> Result<Self, Self::Error> {
        match event {
            IncidentEvent::Opened => Ok(Self::Opened),
            // A released incident is paged now as if it had just opened; it
            // was never paged before, so the `opened` key is still free.
            IncidentEvent::Released => Ok(Self::Opened),
            IncidentEvent::Acknowledged => Ok(Self::Acknowledged),
            IncidentEvent::Resolved => Ok(Self::Resolved),
            IncidentEvent::Escalated { level, round } => Ok(Self::Escalated { level, round }),
            other => Err(other),
        }
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key that makes a delivery happen at most once.
///
/// Format: `"{incident_id}:{event}:{recipient}"`, where `event` is the
/// event's [`IncidentEvent::key`]: its name, except for escalations, which are
/// written `escalated.{level}.{round}` (e.g. `42:escalated.1.0:channel:pager-alice`).
/// `recipient` is whatever the message is addressed through: a channel name,
/// or `email:`/`phone:` plus an address for a person's direct contact. The
/// event part never contains `:`, so the first two `:` always delimit it and
/// the recipient may contain `:` freely.
///
/// The outbox stores this key with a unique constraint, and webhooks carry it
/// as the `Idempotency-Key` header so receivers can deduplicate retries too.
pub fn idempotency_key(incident_id: i64, event: NotificationEvent, recipient: &str) -> String {
    format!(
        "{incident_id}:{}:{recipient}",
        IncidentEvent::from(event).key()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_distinguish_event_level_round_and_recipient() {
        let cases = [
            (NotificationEvent::Opened, "ops-slack", "7:opened:ops-slack"),
            (
                NotificationEvent::Acknowledged,
                "ops-slack",
                "7:acknowledged:ops-slack",
            ),
            (NotificationEvent::Resolved, "pd", "7:resolved:pd"),
            (
                NotificationEvent::Escalated { level: 1, round: 0 },
                "email:alice@example.com",
                "7:escalated.1.0:email:alice@example.com",
            ),
            (
                NotificationEvent::Escalated { level: 1, round: 2 },
                "pd",
                "7:escalated.1.2:pd",
            ),
        ];
        for (event, recipient, expected) in cases {
            assert_eq!(idempotency_key(7, event, recipient), expected);
        }
    }

    #[test]
    fn event_names_are_the_webhook_contract() {
        assert_eq!(NotificationEvent::Opened.as_str(), "opened");
        assert_eq!(NotificationEvent::Acknowledged.as_str(), "acknowledged");
        assert_eq!(NotificationEvent::Resolved.as_str(), "resolved");
        assert_eq!(
            NotificationEvent::Escalated { level: 0, round: 0 }.to_string(),
            "escalated"
        );
    }

    #[test]
    fn only_deliverable_incident_events_become_notifications() {
        for event in [
            NotificationEvent::Opened,
            NotificationEvent::Acknowledged,
            NotificationEvent::Resolved,
            NotificationEvent::Escalated { level: 2, round: 1 },
        ] {
            assert_eq!(
                NotificationEvent::try_from(IncidentEvent::from(event)),
                Ok(event)
            );
        }
        for event in [
            IncidentEvent::FlappingStarted,
            IncidentEvent::FlappingStopped,
            IncidentEvent::SlaBreached,
        ] {
            assert_eq!(NotificationEvent::try_from(event), Err(event));
        }
    }
}
