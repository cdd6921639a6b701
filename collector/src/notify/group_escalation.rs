//! Escalation of incidents sent only in group messages (storm summaries,
//! digests, `group_wait` batches): one escalation per group, as PagerDuty
//! escalates the one alert that stands for the storm, rather than one per
//! host or none at all.
//!
//! A group's escalation starts when its first incident opens and carries
//! every incident that joins it; each step goes out as one grouped message
//! listing the members still open and unacknowledged. When none is left
//! (all acknowledged or resolved) it stops. Pure: the delivery task checks
//! the members' states and queues the messages. In memory like incident
//! escalations, rebuilt at start-up from the outbox rows of open incidents;
//! the idempotency key of each step (group, start, level, round, recipient)
//! drops steps already queued before a restart.

use std::collections::HashMap;

use super::EscalationState;
use super::escalation::{EscalationPolicy, EscalationStep};

#[derive(Debug, Clone)]
struct GroupEscalation {
    state: EscalationState,
    started_ms: i64,
    members: Vec<i64>,
}

/// Due steps of one group: its key, when its escalation started, its members.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSteps {
    pub group_key: String,
    pub started_ms: i64,
    pub members: Vec<i64>,
    pub steps: Vec<EscalationStep>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupEscalations {
    groups: HashMap<String, GroupEscalation>,
}

impl GroupEscalations {
    /// Adds an incident sent only in group `key`'s messages; the first one
    /// starts the group's escalation at its opening.
    pub fn join(&mut self, key: &str, incident: i64, policy: &EscalationPolicy, opened_ms: i64) {
        let group = self
            .groups
            .entry(key.to_string())
            .or_insert_with(|| GroupEscalation {
                state: EscalationState::start(policy.clone(), opened_ms, None),
                started_ms: opened_ms,
                members: Vec::new(),
            });
        if !group.members.contains(&incident) {
            group.members.push(incident);
        }
    }

    /// The earliest time a step is due, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|group| group.state.due())
            .min()
    }

    /// Steps due by `now_ms`, per group. Does not change anything: call
    /// [`advanced`](Self::advanced) once they are durably queued.
    pub fn due_steps(&self, now_ms: i64) -> Vec<GroupSteps> {
        self.groups
            .iter()
            .filter_map(|(key, group)| {
                let steps = group.state.clone().advance(now_ms);
                (!steps.is_empty()).then(|| GroupSteps {
                    group_key: key.clone(),
                    started_ms: group.started_ms,
                    members: group.members.clone(),
                    steps,
                })
            })
            .collect()
    }

    /// Moves group `key` past `now_ms` once its due steps are queued,
    /// keeping only the members still `waiting` (open, unacknowledged); a
    /// group with none left stops.
    pub fn advanced(&mut self, key: &str, now_ms: i64, waiting: Vec<i64>) {
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        group.state.advance(now_ms);
        group.members = waiting;
        if group.members.is_empty() || group.state.is_finished() {
            self.groups.remove(key);
        }
    }

    /// Takes in groups and members `other` knows and this does not (several
    /// collectors: groups another collector started routing); a group
    /// known here keeps its progress.
    pub fn merge(&mut self, other: GroupEscalations) {
        for (key, theirs) in other.groups {
            match self.groups.get_mut(&key) {
                Some(mine) => {
                    for member in theirs.members {
                        if !mine.members.contains(&member) {
                            mine.members.push(member);
                        }
                    }
                }
                None => {
                    self.groups.insert(key, theirs);
                }
            }
        }
    }

    /// Drops an incident (acknowledged or resolved) from every group.
    pub fn leave(&mut self, incident: i64) {
        for group in self.groups.values_mut() {
            group.members.retain(|id| *id != incident);
        }
        self.groups.retain(|_, group| !group.members.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notify::escalation::{EscalationLevel, Target};

    fn policy() -> EscalationPolicy {
        EscalationPolicy {
            name: "ops".into(),
            levels: vec![
                EscalationLevel {
                    notify: vec![Target::Channel("a".into())],
                    after: Duration::from_secs(60),
                },
                EscalationLevel {
                    notify: vec![Target::Channel("b".into())],
                    after: Duration::from_secs(60),
                },
            ],
            repeat: 0,
            repeat_after: Duration::from_secs(600),
            escalate_before_sla: false,
            sla_margin: None,
        }
    }

    #[test]
    fn a_group_escalates_once_for_all_its_members_until_none_is_waiting() {
        let mut groups = GroupEscalations::default();
        groups.join("g", 1, &policy(), 1_000);
        groups.join("g", 2, &policy(), 5_000);
        groups.join("g", 2, &policy(), 5_000);
        assert_eq!(groups.next_due(), Some(61_000), "from the first opening");
        assert!(groups.due_steps(60_999).is_empty());
        let due = groups.due_steps(61_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].members, [1, 2]);
        assert_eq!(due[0].steps.len(), 1);
        assert_eq!(due[0].steps[0].level, 0);
        // Not yet queued: asking again gives the same step.
        assert_eq!(groups.due_steps(61_000), due);
        groups.advanced("g", 61_000, vec![2]);
        let due = groups.due_steps(121_000);
        assert_eq!(due[0].members, [2]);
        assert_eq!(due[0].steps[0].level, 1);
        groups.leave(2);
        assert_eq!(groups.next_due(), None, "nobody left to escalate for");
    }

    #[test]
    fn merging_adds_unknown_groups_and_members_and_keeps_progress() {
        let mut mine = GroupEscalations::default();
        mine.join("g", 1, &policy(), 1_000);
        mine.advanced("g", 61_000, vec![1]);
        let mut theirs = GroupEscalations::default();
        theirs.join("g", 1, &policy(), 1_000);
        theirs.join("g", 3, &policy(), 1_000);
        theirs.join("h", 7, &policy(), 2_000);
        mine.merge(theirs);
        let due = mine.due_steps(121_000);
        let g = due.iter().find(|steps| steps.group_key == "g").unwrap();
        assert_eq!(g.members, [1, 3]);
        assert_eq!(g.steps[0].level, 1, "level 0 was sent here already");
        let h = due.iter().find(|steps| steps.group_key == "h").unwrap();
        assert_eq!((h.members.as_slice(), h.started_ms), (&[7][..], 2_000));
    }
}
