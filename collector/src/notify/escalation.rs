//! The escalation of one incident: a pure state machine driven by `now_ms`.
//!
//! Timing (all relative to *scheduled* times, never to when `advance` ran,
//! so catching up after downtime gives the same steps a live run would):
//! - level 0 of round 0 fires `after(0)` after the incident opened;
//! - level `i > 0` fires `after(i)` after level `i - 1` fired;
//! - after the last level, if `repeat > round`, level 0 of the next round
//!   fires `repeat_after` after the last level fired (rounds count from 0, so
//!   `repeat = 2` means three passes in total);
//! - with `escalate_before_sla` and an ack due time, the first level after
//!   level 0 (round 0) whose normal time is later than `ack_due - margin` is
//!   pulled in to fire at that instant instead (or at once, if it has
//!   passed), so someone beyond the first responder has been paged before the
//!   SLA breaches. The margin is `sla_margin`, or a fifth of the time from
//!   opening to the deadline when unset. Only one level is pulled in; later
//!   levels keep their delays, counted from when it fired.
//!
//! Acknowledging or resolving stops it for good. Nothing is persisted here:
//! after a restart, `start` + `advance(now)` replays the same steps, and the
//! outbox's idempotency keys drop those already delivered.

use std::time::Duration;

/// A validated `[[escalation]]` policy.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationPolicy {
    pub name: String,
    /// Never empty.
    pub levels: Vec<EscalationLevel>,
    /// Extra passes over all levels after the first.
    pub repeat: u32,
    /// Gap between the last level of one round and level 0 of the next.
    /// Non-zero whenever `repeat > 0` (validation defaults it to the last
    /// level's `after` and refuses zero).
    pub repeat_after: Duration,
    pub escalate_before_sla: bool,
    /// How long before the ack deadline the next level must have fired.
    /// `None`: a fifth of the time between opening and the deadline.
    pub sla_margin: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EscalationLevel {
    /// Never empty.
    pub notify: Vec<Target>,
    pub after: Duration,
}

/// Who a level pages. Names were checked to exist at validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Whoever is on call in that schedule when the level fires.
    Schedule(String),
    Person(String),
    Channel(String),
}

impl Target {
    /// Parses `schedule:NAME`, `person:NAME` or `channel:NAME`.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        match kind.trim() {
            "schedule" => Some(Target::Schedule(name.to_string())),
            "person" => Some(Target::Person(name.to_string())),
            "channel" => Some(Target::Channel(name.to_string())),
            _ => None,
        }
    }
}

/// One level firing: page these targets now.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    /// 0-based index into the policy's levels.
    pub level: usize,
    /// 0 for the first pass over the levels.
    pub round: u32,
    pub targets: Vec<Target>,
    /// When the step was due (≤ the `now_ms` that produced it).
    pub at_ms: i64,
}

/// Where one incident's escalation stands.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationState {
    policy: EscalationPolicy,
    opened_ms: i64,
    ack_due_ms: Option<i64>,
    /// The next level to fire and its round; `round > policy.repeat` means
    /// every pass is done.
    next_level: usize,
    round: u32,
    /// Scheduled time of the last step fired; `None` before the first.
    last_fired_ms: Option<i64>,
    /// A level has already been pulled in before the ack SLA; only one is.
    pulled_in: bool,
    stopped: bool,
}

impl EscalationState {
    pub fn start(policy: EscalationPolicy, opened_ms: i64, ack_due_ms: Option<i64>) -> Self {
        Self {
            policy,
            opened_ms,
            ack_due_ms,
            next_level: 0,
            round: 0,
            last_fired_ms: None,
            pulled_in: false,
            stopped: false,
        }
    }

    /// When `advance` next has something to do, or `None` when finished
    /// (acknowledged, resolved, or all rounds done). May be in the past.
    pub fn due(&self) -> Option<i64> {
        self.next_times().map(|(_, due)| due)
    }

    /// The next step's normal time and its due time (earlier when pulled in
    /// before the ack SLA).
    fn next_times(&self) -> Option<(i64, i64)> {
        if self.stopped || self.round > self.policy.repeat {
            return None;
        }
        let level = self.policy.levels.get(self.next_level)?;
        let normal = match self.last_fired_ms {
            None => self.opened_ms.saturating_add(millis(level.after)),
            Some(last) if self.next_level == 0 => {
                last.saturating_add(millis(self.policy.repeat_after))
            }
            Some(last) => last.saturating_add(millis(level.after)),
        };
        let pullable = self.round == 0 && self.next_level > 0 && !self.pulled_in;
        let due = match self.sla_cap() {
            Some(cap) if pullable && cap < normal => {
                cap.max(self.last_fired_ms.unwrap_or(self.opened_ms))
            }
            _ => normal,
        };
        Some((normal, due))
    }

    /// The instant by which one more level must have fired, if the policy
    /// escalates before the ack SLA.
    fn sla_cap(&self) -> Option<i64> {
        if !self.policy.escalate_before_sla {
            return None;
        }
        let due = self.ack_due_ms?;
        let margin = match self.policy.sla_margin {
            Some(margin) => millis(margin),
            None => due.saturating_sub(self.opened_ms).max(0) / 5,
        };
        Some(due.saturating_sub(margin))
    }

    /// Fires every step due at or before `now_ms`, in order.
    pub fn advance(&mut self, now_ms: i64) -> Vec<EscalationStep> {
        let mut steps = Vec::new();
        while let Some((normal, at_ms)) = self.next_times().filter(|(_, due)| *due <= now_ms) {
            let Some(level) = self.policy.levels.get(self.next_level) else {
                break;
            };
            if at_ms < normal {
                self.pulled_in = true;
            }
            steps.push(EscalationStep {
                level: self.next_level,
                round: self.round,
                targets: level.notify.clone(),
                at_ms,
            });
            self.last_fired_ms = Some(at_ms);
            self.next_level += 1;
            if self.next_level == self.policy.levels.len() {
                self.next_level = 0;
                self.round += 1;
            }
        }
        steps
    }

    /// Someone took it: nothing more fires.
    pub fn acknowledge(&mut self) {
        self.stopped = true;
    }

    /// It is over: nothing more fires.
    pub fn resolve(&mut self) {
        self.stopped = true;
    }

    /// When the incident opened: its steps count from here.
    pub fn opened_ms(&self) -> i64 {
        self.opened_ms
    }

    pub fn is_finished(&self) -> bool {
        self.due().is_none()
    }

    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_700_000_000_000;

    fn policy(afters_min: &[u64], repeat: u32, repeat_after_min: u64) -> EscalationPolicy {
        EscalationPolicy {
            name: "ops".into(),
            levels: afters_min
                .iter()
                .enumerate()
                .map(|(index, after)| EscalationLevel {
                    notify: vec![Target::Channel(format!("level{index}"))],
                    after: Duration::from_secs(after * 60),
                })
                .collect(),
            repeat,
            repeat_after: Duration::from_secs(repeat_after_min * 60),
            escalate_before_sla: false,
            sla_margin: None,
        }
    }

    /// (level, round, minutes after T0) of one fired step.
    type Fired = (usize, u32, i64);

    /// (level, round, minutes after T0) of every step fired by advancing to
    /// each of `ticks` (minutes after T0) in turn.
    fn run(state: &mut EscalationState, ticks: &[i64]) -> Vec<Fired> {
        ticks
            .iter()
            .flat_map(|tick| state.advance(T0 + tick * MIN))
            .map(|step| (step.level, step.round, (step.at_ms - T0) / MIN))
            .collect()
    }

    #[test]
    fn levels_fire_after_their_delays() {
        let mut state = EscalationState::start(policy(&[0, 5, 10], 0, 0), T0, None);
        assert_eq!(state.due(), Some(T0));
        // (now in minutes, steps expected at that call)
        let table: [(i64, &[Fired]); 6] = [
            (0, &[(0, 0, 0)]),
            (4, &[]),
            (5, &[(1, 0, 5)]),
            (14, &[]),
            (15, &[(2, 0, 15)]),
            (1000, &[]),
        ];
        for (now, expected) in table {
            assert_eq!(run(&mut state, &[now]), expected, "at {now} min");
        }
        assert!(state.is_finished());
    }

    #[test]
    fn just_before_and_at_the_boundary() {
        let mut state = EscalationState::start(policy(&[5], 0, 0), T0, None);
        assert!(state.advance(T0 + 5 * MIN - 1).is_empty());
        assert_eq!(state.advance(T0 + 5 * MIN).len(), 1);
    }

    #[test]
    fn repeats_then_stops() {
        let mut state = EscalationState::start(policy(&[0, 5], 2, 10), T0, None);
        assert_eq!(
            run(&mut state, &[0, 5, 15, 20, 30, 35, 100]),
            vec![
                (0, 0, 0),
                (1, 0, 5),
                (0, 1, 15),
                (1, 1, 20),
                (0, 2, 30),
                (1, 2, 35)
            ]
        );
        assert_eq!(state.due(), None);
    }

    #[test]
    fn catch_up_fires_missed_steps_at_their_scheduled_times() {
        let mut state = EscalationState::start(policy(&[0, 5, 10], 1, 30), T0, None);
        assert_eq!(
            run(&mut state, &[49]),
            vec![(0, 0, 0), (1, 0, 5), (2, 0, 15), (0, 1, 45)]
        );
        assert_eq!(state.due(), Some(T0 + 50 * MIN));
    }

    #[test]
    fn acknowledge_and_resolve_stop_it() {
        for stop in [EscalationState::acknowledge, EscalationState::resolve] {
            let mut state = EscalationState::start(policy(&[0, 5], 3, 5), T0, None);
            assert_eq!(run(&mut state, &[0]).len(), 1);
            stop(&mut state);
            assert_eq!(state.due(), None);
            assert!(state.advance(T0 + 1000 * MIN).is_empty());
        }
    }

    #[test]
    fn escalate_before_sla_pulls_in_one_level() {
        let mut sla = policy(&[0, 20, 20], 0, 0);
        sla.escalate_before_sla = true;
        // Ack due after 15 min; default margin = 3 min → level 1 by 12 min,
        // then level 2 its normal 20 min later.
        let mut state = EscalationState::start(sla.clone(), T0, Some(T0 + 15 * MIN));
        assert_eq!(
            run(&mut state, &[0, 11, 12, 31, 32]),
            vec![(0, 0, 0), (1, 0, 12), (2, 0, 32)]
        );

        // Explicit margin of 5 min → by 10 min.
        sla.sla_margin = Some(Duration::from_secs(5 * 60));
        let mut state = EscalationState::start(sla.clone(), T0, Some(T0 + 15 * MIN));
        assert_eq!(run(&mut state, &[0, 10]), vec![(0, 0, 0), (1, 0, 10)]);

        // A level already scheduled before the cap is not moved.
        let mut early = sla.clone();
        early.levels[1].after = Duration::from_secs(2 * 60);
        let mut state = EscalationState::start(early, T0, Some(T0 + 15 * MIN));
        assert_eq!(
            run(&mut state, &[0, 2, 10, 22]),
            vec![(0, 0, 0), (1, 0, 2), (2, 0, 10)]
        );

        // Without an ack deadline, or with the flag off, nothing moves.
        let mut state = EscalationState::start(sla.clone(), T0, None);
        assert_eq!(run(&mut state, &[0, 19]), vec![(0, 0, 0)]);
        let mut off = sla;
        off.escalate_before_sla = false;
        let mut state = EscalationState::start(off, T0, Some(T0 + 15 * MIN));
        assert_eq!(run(&mut state, &[0, 19]), vec![(0, 0, 0)]);
    }

    #[test]
    fn deadline_already_near_fires_next_level_immediately_but_only_once() {
        let mut sla = policy(&[0, 20, 20], 0, 0);
        sla.escalate_before_sla = true;
        sla.sla_margin = Some(Duration::from_secs(10 * 60));
        // Cap = 5 - 10 = -5 min, before opening: level 1 fires with level 0.
        let mut state = EscalationState::start(sla, T0, Some(T0 + 5 * MIN));
        assert_eq!(run(&mut state, &[0]), vec![(0, 0, 0), (1, 0, 0)]);
        assert_eq!(state.due(), Some(T0 + 20 * MIN));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("schedule:ops"),
            Some(Target::Schedule("ops".into()))
        );
        assert_eq!(
            Target::parse("person:alice"),
            Some(Target::Person("alice".into()))
        );
        assert_eq!(
            Target::parse("channel:pd"),
            Some(Target::Channel("pd".into()))
        );
        for bad in ["ops", "team:x", "person:", ""] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }
}
