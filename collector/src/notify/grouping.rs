//! Grouping and storm control per route (Alertmanager's `group_by`,
//! `group_wait`, `group_interval`; PagerDuty's alert grouping).
//!
//! A route with grouping settings sorts its incidents into groups by the
//! `group_by` keys. Each (group, channel) is paged one incident at a time, as
//! without grouping, until either:
//! - `group_wait` is more than 0: the first incident of a group waits that
//!   long and goes out with every other that arrived meanwhile, as one message;
//! - more than `storm_threshold` incidents opened in the group within
//!   `storm_window`: a storm. One summary goes out at once, then a digest of
//!   the incidents opened since every `group_interval`, until a whole
//!   `storm_window` passes without a new one.
//!
//! Incidents sent in a group have their resolution sent grouped too, at the
//! next `group_interval`. Pure: time is passed in; the caller keeps the
//! grouped incidents durably (outbox rows in state `grouped`) and asks
//! [`GroupTracker::due`] when to send them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One `group_by` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Rule,
    Severity,
    /// `tag:NAME`: the value of the host's tag `NAME:value` (empty if none).
    Tag(String),
    /// Any other name: the incident's label (or `host`, `agent_id`, `metric`).
    Label(String),
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "" => None,
            "rule" => Some(Self::Rule),
            "severity" => Some(Self::Severity),
            other => match other.strip_prefix("tag:") {
                Some("") => None,
                Some(name) => Some(Self::Tag(name.to_string())),
                None => Some(Self::Label(other.to_string())),
            },
        }
    }
}

/// A route's grouping settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub group_by: Vec<GroupBy>,
    /// 0: the first incident of a group pages at once (the default).
    pub group_wait: Duration,
    /// How often a storm's digest (and grouped resolutions) go out.
    pub group_interval: Duration,
    /// More than this many openings within `storm_window` make a storm.
    pub storm_threshold: Option<usize>,
    pub storm_window: Duration,
}

pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_STORM_WINDOW: Duration = Duration::from_secs(60);

/// What kind of grouped message a flush sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupedKind {
    /// The first message of a storm.
    Storm,
    /// A storm's later messages, every `group_interval`.
    Digest,
    /// Incidents gathered during `group_wait`.
    Group,
    /// Resolutions of incidents that were sent grouped.
    Resolved,
    /// An escalation step of incidents sent only grouped, still unacknowledged.
    Escalation,
}

impl GroupedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storm => "storm",
            Self::Digest => "digest",
            Self::Group => "group",
            Self::Resolved => "resolved",
            Self::Escalation => "escalation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Storm,
            Self::Digest,
            Self::Group,
            Self::Resolved,
            Self::Escalation,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// How one opening is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Paged on its own, as without grouping.
    Individual,
    /// Kept for the group's next message.
    Grouped,
}

/// The group (key and channel) a grouped row belongs to. Resolutions are
/// gathered in their own group (`key` ending in `|resolved`).
pub type GroupId = (String, String);

#[derive(Debug, Default)]
struct GroupState {
    /// Openings within the storm window, oldest first.
    opens: VecDeque<i64>,
    storm: bool,
    /// When the gathered rows go out, and as what.
    flush: Option<(i64, GroupedKind)>,
}

/// The suffix of a group key that gathers resolutions.
pub const RESOLVED_SUFFIX: &str = "|resolved";

/// The route index a group key names (`route{N}|...`).
pub fn route_of(key: &str) -> Option<usize> {
    let rest = key.strip_prefix("route")?;
    let end = rest.find('|').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Grouping state of every (group, channel); memory only. At start-up the
/// delivery task replays the openings of the last storm window from the
/// outbox ([`restore_opening`](GroupTracker::restore_opening)), so a storm
/// goes on after a restart instead of paging host by host again; rows still
/// gathered are sent at once.
#[derive(Debug, Default)]
pub struct GroupTracker {
    groups: HashMap<GroupId, GroupState>,
}

impl GroupTracker {
    /// Decides how an opening of group `key` on `channel` at `now_ms` is sent.
    pub fn admit_open(
        &mut self,
        key: &str,
        channel: &str,
        grouping: &Grouping,
        now_ms: i64,
    ) -> Admission {
        let state = self
            .groups
            .entry((key.to_string(), channel.to_string()))
            .or_default();
        state.opens.push_back(now_ms);
        let window_start = now_ms - grouping.storm_window.as_millis() as i64;
        while state.opens.front().is_some_and(|at| *at <= window_start) {
            state.opens.pop_front();
        }
        if let Some(threshold) = grouping.storm_threshold {
            if state.storm {
                // A storm restored at start-up may have no digest scheduled yet.
                if state.flush.is_none() {
                    let due = now_ms + grouping.group_interval.as_millis() as i64;
                    state.flush = Some((due, GroupedKind::Digest));
                }
                return Admission::Grouped;
            }
            if state.opens.len() > threshold {
                state.storm = true;
                state.flush = Some((now_ms, GroupedKind::Storm));
                return Admission::Grouped;
            }
        }
        if !grouping.group_wait.is_zero() {
            if state.flush.is_none() {
                let due = now_ms + grouping.group_wait.as_millis() as i64;
                state.flush = Some((due, GroupedKind::Group));
            }
            return Admission::Grouped;
        }
        Admission::Individual
    }

    /// Gathers the resolution of an incident that was sent grouped.
    pub fn admit_resolved(&mut self, key: &str, channel: &str, grouping: &Grouping, now_ms: i64) {
        let state = self
            .groups
            .entry((format!("{key}{RESOLVED_SUFFIX}"), channel.to_string()))
            .or_default();
        if state.flush.is_none() {
            let due = now_ms + grouping.group_interval.as_millis() as i64;
            state.flush = Some((due, GroupedKind::Resolved));
        }
    }

    /// An opening found at start-up (sent alone or grouped before the
    /// restart) at `at_ms`: counted again, so a storm it was part of goes on.
    /// A restored storm gets a digest due one `group_interval` from `now_ms`,
    /// which ends it if the window has gone quiet.
    pub fn restore_opening(
        &mut self,
        key: &str,
        channel: &str,
        grouping: &Grouping,
        at_ms: i64,
        now_ms: i64,
    ) {
        if at_ms <= now_ms - grouping.storm_window.as_millis() as i64 {
            return;
        }
        let state = self
            .groups
            .entry((key.to_string(), channel.to_string()))
            .or_default();
        state.opens.push_back(at_ms);
        if let Some(threshold) = grouping.storm_threshold
            && !state.storm
            && state.opens.len() > threshold
        {
            state.storm = true;
            let due = now_ms + grouping.group_interval.as_millis() as i64;
            state.flush.get_or_insert((due, GroupedKind::Digest));
        }
    }

    /// Rows found gathered at start-up: sent at once.
    pub fn restore(&mut self, key: &str, channel: &str, now_ms: i64) {
        let kind = if key.ends_with(RESOLVED_SUFFIX) {
            GroupedKind::Resolved
        } else {
            GroupedKind::Digest
        };
        self.groups
            .entry((key.to_string(), channel.to_string()))
            .or_default()
            .flush
            .get_or_insert((now_ms, kind));
    }

    /// Groups whose message is due, with its kind.
    pub fn due(&self, now_ms: i64) -> Vec<(GroupId, GroupedKind)> {
        self.groups
            .iter()
            .filter_map(|(id, state)| match state.flush {
                Some((at, kind)) if at <= now_ms => Some((id.clone(), kind)),
                _ => None,
            })
            .collect()
    }

    /// Openings of the group within its storm window (as last counted).
    pub fn open_count(&self, id: &GroupId) -> usize {
        self.groups.get(id).map_or(0, |state| state.opens.len())
    }

    /// The earliest time a group is due.
    pub fn next_due(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|state| state.flush.map(|(at, _)| at))
            .min()
    }

    /// The group's message went out at `now_ms`: a storm goes on with a
    /// digest every `group_interval` while incidents keep opening, and ends
    /// after a quiet `storm_window`; other groups wait for their next opening.
    pub fn flushed(&mut self, id: &GroupId, grouping: Option<&Grouping>, now_ms: i64) {
        let Some(state) = self.groups.get_mut(id) else {
            return;
        };
        state.flush = None;
        let window = grouping.map_or(0, |grouping| grouping.storm_window.as_millis() as i64);
        let recent = state
            .opens
            .back()
            .is_some_and(|last| *last > now_ms - window);
        if state.storm {
            if let (true, Some(grouping)) = (recent, grouping) {
                let due = now_ms + grouping.group_interval.as_millis() as i64;
                state.flush = Some((due, GroupedKind::Digest));
                return;
            }
            state.storm = false;
        }
        if !recent {
            // Forget idle groups so the map does not grow with every key seen.
            self.groups.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouping(threshold: Option<usize>, wait_ms: u64) -> Grouping {
        Grouping {
            group_by: vec![GroupBy::Rule, GroupBy::Tag("site".into())],
            group_wait: Duration::from_millis(wait_ms),
            group_interval: Duration::from_secs(10),
            storm_threshold: threshold,
            storm_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn openings_restored_at_start_carry_a_storm_on() {
        let grouping = grouping(Some(2), 0);
        let mut tracker = GroupTracker::default();
        // Three openings before the restart (the third started a storm), one too old.
        for at in [1_000, 100_000, 101_000, 102_000] {
            tracker.restore_opening("g", "c", &grouping, at, 110_000);
        }
        assert_eq!(tracker.open_count(&("g".into(), "c".into())), 3);
        assert_eq!(
            tracker.admit_open("g", "c", &grouping, 111_000),
            Admission::Grouped,
            "no burst of single pages after a restart"
        );
        assert_eq!(tracker.next_due(), Some(120_000), "a digest is scheduled");
        // Below the threshold: still single pages.
        let mut calm = GroupTracker::default();
        calm.restore_opening("g", "c", &grouping, 100_000, 110_000);
        assert_eq!(
            calm.admit_open("g", "c", &grouping, 111_000),
            Admission::Individual
        );
    }

    #[test]
    fn group_by_keys_parse() {
        assert_eq!(GroupBy::parse("tag:"), None);
        assert_eq!(GroupBy::parse(""), None);
        assert_eq!(GroupBy::parse("rule"), Some(GroupBy::Rule));
        assert_eq!(
            GroupBy::parse("tag:site"),
            Some(GroupBy::Tag("site".into()))
        );
        assert_eq!(
            GroupBy::parse("target"),
            Some(GroupBy::Label("target".into()))
        );
        assert_eq!(route_of("route12|rule=x"), Some(12));
        assert_eq!(route_of("route3"), Some(3));
    }

    #[test]
    fn a_storm_starts_past_the_threshold_then_digests_until_quiet() {
        let policy = grouping(Some(3), 0);
        let mut tracker = GroupTracker::default();
        let admit = |tracker: &mut GroupTracker, at| tracker.admit_open("g", "c", &policy, at);
        for at in [0, 100, 200] {
            assert_eq!(admit(&mut tracker, at), Admission::Individual);
        }
        assert_eq!(tracker.due(300), vec![]);
        assert_eq!(admit(&mut tracker, 300), Admission::Grouped);
        let id: GroupId = ("g".into(), "c".into());
        assert_eq!(tracker.due(300), vec![(id.clone(), GroupedKind::Storm)]);
        assert_eq!(admit(&mut tracker, 350), Admission::Grouped);
        tracker.flushed(&id, Some(&policy), 400);
        assert_eq!(tracker.next_due(), Some(10_400));
        assert_eq!(
            admit(&mut tracker, 5_000),
            Admission::Grouped,
            "still a storm"
        );
        assert_eq!(tracker.due(10_400), vec![(id.clone(), GroupedKind::Digest)]);
        tracker.flushed(&id, Some(&policy), 10_400);
        // Quiet for a whole window: the storm ends and paging is individual again.
        tracker.flushed(&id, Some(&policy), 70_000);
        assert_eq!(admit(&mut tracker, 70_001), Admission::Individual);
    }

    #[test]
    fn group_wait_gathers_the_first_incidents() {
        let policy = grouping(None, 500);
        let mut tracker = GroupTracker::default();
        assert_eq!(tracker.admit_open("g", "c", &policy, 0), Admission::Grouped);
        assert_eq!(
            tracker.admit_open("g", "c", &policy, 100),
            Admission::Grouped
        );
        assert_eq!(tracker.next_due(), Some(500));
        tracker.admit_resolved("g", "c", &policy, 200);
        assert_eq!(tracker.due(10_200).len(), 2);
        let resolved: GroupId = ("g|resolved".into(), "c".into());
        assert!(
            tracker
                .due(10_200)
                .contains(&(resolved, GroupedKind::Resolved))
        );
    }
}
