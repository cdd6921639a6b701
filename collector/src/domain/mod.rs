//! The collector's shared vocabulary: severities, incident states and
//! events, incident records and the view every reader of an incident sees.
//!
//! It sits below every other module (`store`, `rules`, `incidents`, `notify`,
//! `api`) and imports none of them, so each can speak of an incident without
//! leaning on another. Text forms are the wire and database contract; parsing
//! an unknown text is an error, never a default.

mod change;
mod incident;
mod problem;
mod severity;
mod view;

use std::collections::BTreeMap;

pub use change::{ChangeOutcome, ChangeRecord, ChangeRisk};
pub use incident::{IncidentEvent, IncidentRecord, IncidentState, ParentCheck};
pub use problem::{ProblemRecord, ProblemState, Recurrence};
pub use severity::Severity;
pub use view::{IncidentView, TimelineView, shown_state};

/// A series' labels, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// A text that names none of a closed set's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
}
