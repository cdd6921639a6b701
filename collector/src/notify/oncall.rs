//! Who is on call in a schedule at a given instant.
//!
//! A schedule rotates through its members in order, one shift per day
//! (`daily`) or per seven days (`weekly`), handing off at a wall-clock time
//! in the schedule's own time zone. Shift 0 begins on the start date at the
//! handoff time and belongs to the first member. Because handoffs are civil
//! times, a 09:00 handoff stays at 09:00 local across DST changes (the shift
//! spanning the change is an hour shorter or longer).
//!
//! A handoff inside a DST gap (02:30 on a spring-forward day in New York)
//! happens the same length of time after the previous hour as it would have
//! without the gap, i.e. at 03:30 local; one inside a fold (01:30 on the
//! fall-back day) happens at the first of the two 01:30s. This is jiff's
//! "compatible" disambiguation, the RFC 5545 rule calendars use.
//!
//! Overrides replace the rotation for their window `[start, end)`; they never
//! overlap each other (validation refuses that). Before the first handoff
//! only overrides apply. Pure: no clock reads.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A validated `[[schedule]]`.
#[derive(Debug, Clone)]
pub struct OnCallSchedule {
    pub name: String,
    pub time_zone: TimeZone,
    pub rotation: Rotation,
    /// Wall-clock handoff time in `time_zone`.
    pub handoff: Time,
    /// The civil date of the first handoff.
    pub start: Date,
    /// Person names, in rotation order. Never empty.
    pub members: Vec<String>,
    /// Sorted by start; non-overlapping.
    pub overrides: Vec<Override>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Daily,
    Weekly,
}

impl Rotation {
    fn days(self) -> i64 {
        match self {
            Rotation::Daily => 1,
            Rotation::Weekly => 7,
        }
    }
}

/// Someone covering `[start_ms, end_ms)` instead of the rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub person: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One stretch of unchanged on-call duty: `person` from `from_ms` (inclusive)
/// until `until_ms` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    pub person: String,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// Who is on call at `at_ms`, with the stretch of duty that instant falls
/// in (a rotation shift cut short by any override inside it). `None` before
/// the schedule starts (and outside overrides), or for instants so far out
/// that civil dates overflow.
pub fn on_call(schedule: &OnCallSchedule, at_ms: i64) -> Option<OnCall> {
    if let Some(cover) = schedule
        .overrides
        .iter()
        .find(|cover| cover.start_ms <= at_ms && at_ms < cover.end_ms)
    {
        return Some(OnCall {
            person: cover.person.clone(),
            from_ms: cover.start_ms,
            until_ms: cover.end_ms,
        });
    }
    let shift = shift_at(schedule, at_ms)?;
    // Cut the shift at the overrides around `at_ms`.
    let from_ms = schedule
        .overrides
        .iter()
        .filter(|cover| cover.end_ms <= at_ms && cover.end_ms > shift.from_ms)
        .map(|cover| cover.end_ms)
        .max()
        .unwrap_or(shift.from_ms);
    let until_ms = schedule
        .overrides
        .iter()
        .filter(|cover| cover.start_ms > at_ms && cover.start_ms < shift.until_ms)
        .map(|cover| cover.start_ms)
        .min()
        .unwrap_or(shift.until_ms);
    Some(OnCall {
        person: shift.person,
        from_ms,
        until_ms,
    })
}

/// The stretch of duty after the one at `at_ms` (which may be the same
/// person again, e.g. a one-member rotation). Before the schedule starts,
/// the first one after `at_ms`.
pub fn next(schedule: &OnCallSchedule, at_ms: i64) -> Option<OnCall> {
    let boundary = match on_call(schedule, at_ms) {
        Some(current) => current.until_ms,
        None => at_ms.checked_add(1)?,
    };
    // Nobody may be on call at the boundary (an override ending before the
    // rotation starts): then the next stretch starts at the first override or
    // handoff after it.
    on_call(schedule, boundary).or_else(|| {
        let start = schedule
            .overrides
            .iter()
            .map(|cover| cover.start_ms)
            .chain(handoff_ms(schedule, 0))
            .filter(|start| *start >= boundary)
            .min()?;
        on_call(schedule, start)
    })
}

/// The rotation shift (ignoring overrides) containing `at_ms`.
fn shift_at(schedule: &OnCallSchedule, at_ms: i64) -> Option<OnCall> {
    if schedule.members.is_empty() {
        return None;
    }
    let at = Timestamp::from_millisecond(at_ms).ok()?;
    let local_date = schedule.time_zone.to_datetime(at).date();
    let days = local_date.duration_since(schedule.start).as_secs() / 86_400;
    // The handoff on `local_date` may still be ahead of `at`.
    let mut day = days;
    if handoff_on_day(schedule, day)? > at_ms {
        day -= 1;
    }
    if day < 0 {
        return None;
    }
    let period = schedule.rotation.days();
    let index = day.div_euclid(period);
    let members = i64::try_from(schedule.members.len()).ok()?;
    let person = schedule
        .members
        .get(usize::try_from(index.rem_euclid(members)).ok()?)?
        .clone();
    Some(OnCall {
        person,
        from_ms: handoff_ms(schedule, index)?,
        until_ms: handoff_ms(schedule, index + 1)?,
    })
}

/// The instant of the `index`-th handoff (shift `index` starts then).
fn handoff_ms(schedule: &OnCallSchedule, index: i64) -> Option<i64> {
    handoff_on_day(schedule, index.checked_mul(schedule.rotation.days())?)
}

/// The handoff instant on the civil day `day` days after the start date.
fn handoff_on_day(schedule: &OnCallSchedule, day: i64) -> Option<i64> {
    let date = schedule.start.checked_add(day.days()).ok()?;
    let instant = schedule
        .time_zone
        .to_timestamp(date.to_datetime(schedule.handoff))
        .ok()?;
    Some(instant.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a civil time in `zone`, e.g. `ms("America/New_York", "2024-03-10T09:00")`.
    fn ms(zone: &str, civil: &str) -> i64 {
        let tz = TimeZone::get(zone).unwrap();
        let dt: jiff::civil::DateTime = civil.parse().unwrap();
        tz.to_timestamp(dt).unwrap().as_millisecond()
    }

    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn schedule(zone: &str, rotation: Rotation, handoff: &str, start: &str) -> OnCallSchedule {
        OnCallSchedule {
            name: "ops".into(),
            time_zone: TimeZone::get(zone).unwrap(),
            rotation,
            handoff: handoff.parse().unwrap(),
            start: start.parse().unwrap(),
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            overrides: Vec::new(),
        }
    }

    fn who(schedule: &OnCallSchedule, at: i64) -> Option<String> {
        on_call(schedule, at).map(|on_call| on_call.person)
    }

    #[test]
    fn daily_rotation_boundaries() {
        let s = schedule("UTC", Rotation::Daily, "09:00", "2024-01-01");
        let cases = [
            ("2024-01-01T08:59:59.999Z", None),
            ("2024-01-01T09:00:00Z", Some("alice")),
            ("2024-01-02T08:59:59.999Z", Some("alice")),
            ("2024-01-02T09:00:00Z", Some("bob")),
            ("2024-01-03T23:00:00Z", Some("carol")),
            ("2024-01-04T09:00:00Z", Some("alice")),
        ];
        for (at, expected) in cases {
            assert_eq!(who(&s, utc(at)).as_deref(), expected, "{at}");
        }
        assert_eq!(
            on_call(&s, utc("2024-01-02T12:00:00Z")),
            Some(OnCall {
                person: "bob".into(),
                from_ms: utc("2024-01-02T09:00:00Z"),
                until_ms: utc("2024-01-03T09:00:00Z"),
            })
        );
    }

    #[test]
    fn weekly_rotation_cycles() {
        let s = schedule("UTC", Rotation::Weekly, "10:00", "2024-01-01");
        let cases = [
            ("2024-01-08T09:59:59Z", "alice"),
            ("2024-01-08T10:00:00Z", "bob"),
            ("2024-01-15T10:00:00Z", "carol"),
            ("2024-01-22T10:00:00Z", "alice"),
            ("2024-01-28T00:00:00Z", "alice"),
        ];
        for (at, expected) in cases {
            assert_eq!(who(&s, utc(at)).as_deref(), Some(expected), "{at}");
        }
        let shift = on_call(&s, utc("2024-01-10T00:00:00Z")).unwrap();
        assert_eq!(shift.from_ms, utc("2024-01-08T10:00:00Z"));
        assert_eq!(shift.until_ms, utc("2024-01-15T10:00:00Z"));
    }

    #[test]
    fn handoff_is_in_the_schedules_time_zone() {
        let ny = schedule("America/New_York", Rotation::Daily, "09:00", "2024-01-01");
        let utc_schedule = schedule("UTC", Rotation::Daily, "09:00", "2024-01-01");
        // 09:00 New York in January is 14:00 UTC.
        let at = utc("2024-01-02T12:00:00Z");
        assert_eq!(who(&ny, at).as_deref(), Some("alice"));
        assert_eq!(who(&utc_schedule, at).as_deref(), Some("bob"));
        assert_eq!(
            who(&ny, utc("2024-01-02T14:00:00Z")).as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn handoff_stays_at_local_time_across_dst() {
        let s = schedule("America/New_York", Rotation::Daily, "09:00", "2024-03-01");
        // Spring forward on 2024-03-10: 09:00 EST the day before, 09:00 EDT on it.
        let before = on_call(&s, ms("America/New_York", "2024-03-09T12:00")).unwrap();
        assert_eq!(before.from_ms, utc("2024-03-09T14:00:00Z"));
        assert_eq!(before.until_ms, utc("2024-03-10T13:00:00Z"));
        assert_eq!(before.until_ms - before.from_ms, 23 * 3_600_000);
        // Fall back on 2024-11-03: the shift spanning it lasts 25 hours.
        let fall = on_call(&s, ms("America/New_York", "2024-11-03T05:00")).unwrap();
        assert_eq!(fall.from_ms, ms("America/New_York", "2024-11-02T09:00"));
        assert_eq!(fall.until_ms, ms("America/New_York", "2024-11-03T09:00"));
        assert_eq!(fall.until_ms - fall.from_ms, 25 * 3_600_000);
        assert_eq!(fall.from_ms, utc("2024-11-02T13:00:00Z"));
        assert_eq!(fall.until_ms, utc("2024-11-03T14:00:00Z"));
    }

    #[test]
    fn handoff_in_a_dst_gap_happens_at_the_shifted_time() {
        let s = schedule("America/New_York", Rotation::Daily, "02:30", "2024-03-08");
        // 02:30 does not exist on 2024-03-10; the handoff is at 03:30 EDT (07:30Z).
        let gap_day = on_call(&s, utc("2024-03-10T07:29:59Z")).unwrap();
        assert_eq!(gap_day.until_ms, utc("2024-03-10T07:30:00Z"));
        let after = on_call(&s, utc("2024-03-10T07:30:00Z")).unwrap();
        assert_eq!(after.person, "carol"); // alice the 8th, bob the 9th
        assert_eq!(after.from_ms, utc("2024-03-10T07:30:00Z"));
        // The next day it is 02:30 EDT again.
        assert_eq!(after.until_ms, utc("2024-03-11T06:30:00Z"));
        // Fold: 01:30 on 2024-11-03 happens twice; the first one is used.
        let fold = schedule("America/New_York", Rotation::Daily, "01:30", "2024-11-01");
        let shift = on_call(&fold, utc("2024-11-03T12:00:00Z")).unwrap();
        assert_eq!(shift.from_ms, utc("2024-11-03T05:30:00Z"));
    }

    #[test]
    fn overrides_take_precedence_and_cut_shifts() {
        let mut s = schedule("UTC", Rotation::Daily, "09:00", "2024-01-01");
        s.overrides = vec![Override {
            person: "dave".into(),
            start_ms: utc("2024-01-02T12:00:00Z"),
            end_ms: utc("2024-01-02T18:00:00Z"),
        }];
        let cases = [
            (
                "2024-01-02T11:00:00Z",
                "bob",
                "2024-01-02T09:00:00Z",
                "2024-01-02T12:00:00Z",
            ),
            (
                "2024-01-02T12:00:00Z",
                "dave",
                "2024-01-02T12:00:00Z",
                "2024-01-02T18:00:00Z",
            ),
            (
                "2024-01-02T18:00:00Z",
                "bob",
                "2024-01-02T18:00:00Z",
                "2024-01-03T09:00:00Z",
            ),
        ];
        for (at, person, from, until) in cases {
            assert_eq!(
                on_call(&s, utc(at)),
                Some(OnCall {
                    person: person.into(),
                    from_ms: utc(from),
                    until_ms: utc(until),
                }),
                "{at}"
            );
        }
    }

    #[test]
    fn next_walks_through_overrides_and_shifts() {
        let mut s = schedule("UTC", Rotation::Daily, "09:00", "2024-01-01");
        s.overrides = vec![Override {
            person: "dave".into(),
            start_ms: utc("2023-12-31T00:00:00Z"),
            end_ms: utc("2023-12-31T06:00:00Z"),
        }];
        let mut at = utc("2023-12-30T00:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let Some(upcoming) = next(&s, at) else { break };
            seen.push(upcoming.person.clone());
            at = upcoming.from_ms;
        }
        assert_eq!(seen, ["dave", "alice", "bob", "carol"]);
    }
}
