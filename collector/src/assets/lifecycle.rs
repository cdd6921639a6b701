//! Where an asset is in its life: the [`Lifecycle`] states, who may move it
//! between them ([`transition`]), the automatic stale/missing/back-to-active
//! moves driven by silence ([`automatic_status`]), and whether the hardware is
//! due for replacement ([`due_for_replacement`]).
//!
//! Pure: no clock reads; callers pass `now_ms`. The only states the system
//! changes on its own are `active`, `stale` and `missing`; everything an
//! operator decided (`in_stock`, `in_repair`, `retired`, `disposed`) stays
//! until an operator changes it.
//!
//! The states themselves are defined with the record in `model` (an asset's
//! `status`) and re-exported here.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::dates::{self, DAY_MS};
use super::model::{Asset, Disposal};
pub use super::model::{EXPECTED_OFFLINE_TAG, Lifecycle};
use super::policy::{AssetPolicy, duration_ms};

/// Who caused a change. Also the `source` of history events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// An agent reported (inventory, samples, reconnect).
    Agent,
    /// A person, through the API.
    Operator,
    /// The collector itself (silence timers, matching).
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Agent => "agent",
            Actor::Operator => "operator",
            Actor::System => "system",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    #[error("the asset is disposed; a disposed asset never changes state")]
    Disposed,
    #[error("{actor} may not move an asset from {from} to {to}")]
    NotAllowed {
        from: Lifecycle,
        to: Lifecycle,
        actor: Actor,
    },
    #[error("only a retired asset can be disposed (this one is {from}); retire it first")]
    NotRetired { from: Lifecycle },
    #[error("disposing needs the disposal details: {0}")]
    DisposalIncomplete(String),
}

/// Checks that `actor` may move an asset from `from` to `to`. Staying in the
/// same state is always allowed (idempotent requests), except nothing at all
/// happens to a disposed asset.
///
/// - `disposed` is terminal, reachable only by an operator from `retired`.
/// - `stale` and `missing` are set only by the system, which moves freely
///   among `active`, `stale` and `missing` and touches nothing else.
/// - An agent reporting in moves `stale`/`missing` back to `active`, nothing more
///   (an `in_stock` or `in_repair` machine that boots does not deploy itself).
/// - An operator may set `in_stock`, `active`, `in_repair` and `retired`; a
///   retired asset can only go back to `in_stock` (redeployment starts there)
///   or on to `disposed`.
pub fn transition(from: Lifecycle, to: Lifecycle, actor: Actor) -> Result<(), LifecycleError> {
    use Lifecycle::*;
    if from == Disposed {
        return Err(LifecycleError::Disposed);
    }
    if from == to {
        return Ok(());
    }
    let not_allowed = Err(LifecycleError::NotAllowed { from, to, actor });
    if to == Disposed {
        return match (actor, from) {
            (Actor::Operator, Retired) => Ok(()),
            (Actor::Operator, _) => Err(LifecycleError::NotRetired { from }),
            _ => not_allowed,
        };
    }
    let allowed = match actor {
        Actor::System => from.is_automatic() && to.is_automatic(),
        Actor::Agent => matches!(from, Stale | Missing) && to == Active,
        Actor::Operator => match (from, to) {
            (_, Stale | Missing) => false,
            (Retired, to) => to == InStock,
            (_, InStock | Active | InRepair | Retired) => true,
            _ => false,
        },
    };
    if allowed { Ok(()) } else { not_allowed }
}

/// Moves `asset` to `to` on behalf of `actor`, returning the changed record
/// (diff it with `history::diff_assets` for the events).
///
/// Disposing needs `disposal` with a valid `date` (`YYYY-MM-DD`) and a
/// non-empty `method`; `disposal` is ignored for every other target state.
pub fn change_status(
    asset: &Asset,
    to: Lifecycle,
    actor: Actor,
    disposal: Option<Disposal>,
) -> Result<Asset, LifecycleError> {
    transition(asset.status, to, actor)?;
    let mut changed = asset.clone();
    if to == Lifecycle::Disposed && asset.status != Lifecycle::Disposed {
        let disposal =
            disposal.ok_or_else(|| LifecycleError::DisposalIncomplete("date and method".into()))?;
        dates::parse_date(&disposal.date).map_err(LifecycleError::DisposalIncomplete)?;
        if disposal.method.trim().is_empty() {
            return Err(LifecycleError::DisposalIncomplete(
                "method (e.g. \"recycled\", \"sold\", \"destroyed\")".into(),
            ));
        }
        changed.disposal = Some(disposal);
    }
    changed.status = to;
    Ok(changed)
}

/// The state silence (or its end) calls for, or `None` to leave `current`
/// alone.
///
/// Only `active`, `stale` and `missing` are ever changed: silence longer than
/// `stale_after` makes an asset stale, longer than `missing_after` missing,
/// and a report newer than that brings it back to active. `expected_offline`
/// (the asset carries [`EXPECTED_OFFLINE_TAG`]) selects the `*_offline`
/// thresholds. Call it after updating `last_seen_ms` on a report, and from a
/// periodic sweep.
pub fn automatic_status(
    current: Lifecycle,
    last_seen_ms: i64,
    now_ms: i64,
    policy: &AssetPolicy,
    expected_offline: bool,
) -> Option<Lifecycle> {
    if !current.is_automatic() {
        return None;
    }
    let (stale_after, missing_after) = policy.silence_thresholds(expected_offline);
    let silent_ms = now_ms.saturating_sub(last_seen_ms);
    let wanted = if silent_ms >= duration_ms(missing_after) {
        Lifecycle::Missing
    } else if silent_ms >= duration_ms(stale_after) {
        Lifecycle::Stale
    } else {
        Lifecycle::Active
    };
    (wanted != current).then_some(wanted)
}

/// Why an asset is due for replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ReplacementDue {
    /// The warranty ended (the day after `warranty_end` has begun).
    WarrantyEnded { warranty_end: String },
    /// `purchase_date + replace_after` has passed.
    AgeReached {
        purchase_date: String,
        age_days: i64,
    },
}

impl fmt::Display for ReplacementDue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplacementDue::WarrantyEnded { warranty_end } => {
                write!(f, "warranty ended on {warranty_end}")
            }
            ReplacementDue::AgeReached {
                purchase_date,
                age_days,
            } => write!(f, "purchased {purchase_date}, {age_days} days old"),
        }
    }
}

/// Whether the asset is due for replacement: its warranty has ended, or it
/// is older than `policy.replace_after`. Assets already retired or disposed
/// are not due (they are out of service already); unknown dates are not a
/// reason.
pub fn due_for_replacement(
    asset: &Asset,
    now_ms: i64,
    policy: &AssetPolicy,
) -> Option<ReplacementDue> {
    if matches!(asset.status, Lifecycle::Retired | Lifecycle::Disposed) {
        return None;
    }
    if let Some(end) = &asset.warranty_end
        && let Some(end_ms) = dates::date_ms(end)
        && now_ms >= end_ms.saturating_add(DAY_MS)
    {
        return Some(ReplacementDue::WarrantyEnded {
            warranty_end: end.clone(),
        });
    }
    if let Some(purchase) = &asset.purchase_date
        && let Some(purchase_ms) = dates::date_ms(purchase)
        && now_ms >= purchase_ms.saturating_add(duration_ms(policy.replace_after))
    {
        return Some(ReplacementDue::AgeReached {
            purchase_date: purchase.clone(),
            age_days: (now_ms - purchase_ms) / DAY_MS,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Lifecycle::*;
    use super::*;

    #[test]
    fn transitions_follow_the_rules() {
        use Actor::*;
        let cases = [
            // Operators manage the manual states.
            (InStock, Active, Operator, true),
            (Active, InRepair, Operator, true),
            (InRepair, Active, Operator, true),
            (Active, Retired, Operator, true),
            (Missing, Retired, Operator, true),
            (Stale, InRepair, Operator, true),
            (Retired, InStock, Operator, true),
            (Retired, Disposed, Operator, true),
            (Retired, Active, Operator, false),
            (Active, Stale, Operator, false),
            (Active, Missing, Operator, false),
            // The system owns stale/missing and touches nothing else.
            (Active, Stale, System, true),
            (Stale, Missing, System, true),
            (Active, Missing, System, true),
            (Missing, Active, System, true),
            (InRepair, Stale, System, false),
            (InStock, Active, System, false),
            (Active, Retired, System, false),
            (Retired, Disposed, System, false),
            // A returning agent clears stale/missing only.
            (Stale, Active, Agent, true),
            (Missing, Active, Agent, true),
            (InStock, Active, Agent, false),
            (InRepair, Active, Agent, false),
            (Retired, Active, Agent, false),
            (Active, Stale, Agent, false),
            // Same state is a no-op.
            (Active, Active, Agent, true),
            (Retired, Retired, Operator, true),
        ];
        for (from, to, actor, ok) in cases {
            assert_eq!(
                transition(from, to, actor).is_ok(),
                ok,
                "{from} -> {to} by {actor}"
            );
        }
    }

    #[test]
    fn disposed_is_terminal_and_needs_retired_first() {
        for to in Lifecycle::ALL {
            for actor in [Actor::Operator, Actor::Agent, Actor::System] {
                assert_eq!(
                    transition(Disposed, to, actor),
                    Err(LifecycleError::Disposed)
                );
            }
        }
        assert_eq!(
            transition(Active, Disposed, Actor::Operator),
            Err(LifecycleError::NotRetired { from: Active })
        );
    }

    #[test]
    fn disposing_requires_details() {
        let mut asset = Asset::discovered("a1", "agent-1", 0);
        asset.status = Retired;
        let details = |date: &str, method: &str| Disposal {
            date: date.into(),
            method: method.into(),
            vendor: None,
            certificate: None,
        };
        assert!(matches!(
            change_status(&asset, Disposed, Actor::Operator, None),
            Err(LifecycleError::DisposalIncomplete(_))
        ));
        assert!(matches!(
            change_status(&asset, Disposed, Actor::Operator, Some(details("soon", "sold"))),
            Err(LifecycleError::DisposalIncomplete(message)) if message.contains("YYYY-MM-DD")
        ));
        assert!(matches!(
            change_status(&asset, Disposed, Actor::Operator, Some(details("2025-01-31", " "))),
            Err(LifecycleError::DisposalIncomplete(message)) if message.contains("method")
        ));
        let disposed = change_status(
            &asset,
            Disposed,
            Actor::Operator,
            Some(details("2025-01-31", "recycled")),
        )
        .unwrap();
        assert_eq!(disposed.status, Disposed);
        assert_eq!(disposed.disposal.unwrap().method, "recycled");
    }

    const HOUR: i64 = 3600 * 1000;

    #[test]
    fn silence_makes_assets_stale_then_missing_and_a_report_clears_it() {
        let policy = AssetPolicy::default();
        let seen = 1_000 * DAY_MS;
        let cases = [
            // (current, silent for, expected_offline, expected)
            (Active, 23 * HOUR, false, None),
            (Active, 24 * HOUR, false, Some(Stale)),
            (Active, 7 * DAY_MS, false, Some(Missing)),
            (Stale, 3 * DAY_MS, false, None),
            (Stale, 7 * DAY_MS, false, Some(Missing)),
            (Stale, HOUR, false, Some(Active)),
            (Missing, 0, false, Some(Active)),
            (Missing, 30 * DAY_MS, false, None),
            // Tagged expected_offline: 14 days to stale, 30 to missing.
            (Active, 13 * DAY_MS, true, None),
            (Active, 14 * DAY_MS, true, Some(Stale)),
            (Stale, 29 * DAY_MS, true, None),
            (Stale, 30 * DAY_MS, true, Some(Missing)),
            // A clock that went backwards is "seen just now", not an error.
            (Stale, -HOUR, false, Some(Active)),
            // Manual states are never touched.
            (InRepair, 90 * DAY_MS, false, None),
            (InStock, 90 * DAY_MS, false, None),
            (Retired, 0, false, None),
            (Disposed, 0, false, None),
        ];
        for (current, silent, offline, expected) in cases {
            assert_eq!(
                automatic_status(current, seen, seen + silent, &policy, offline),
                expected,
                "{current} silent {silent} ms offline={offline}"
            );
            if let Some(next) = expected {
                assert!(transition(current, next, Actor::System).is_ok());
            }
        }
    }

    #[test]
    fn replacement_is_due_after_warranty_or_age() {
        let policy = AssetPolicy::default();
        let now = dates::date_ms("2025-06-15").unwrap();
        let asset = |purchase: Option<&str>, warranty: Option<&str>, status| {
            let mut asset = Asset::discovered("a1", "agent-1", 0);
            asset.purchase_date = purchase.map(String::from);
            asset.warranty_end = warranty.map(String::from);
            asset.status = status;
            asset
        };
        let cases = [
            (None, None, Active, None),
            (None, Some("2025-06-15"), Active, None),
            (
                None,
                Some("2025-06-14"),
                Active,
                Some("warranty ended on 2025-06-14"),
            ),
            (Some("2021-01-01"), None, Active, None),
            (
                Some("2020-06-01"),
                None,
                Active,
                Some("purchased 2020-06-01"),
            ),
            (
                Some("2020-06-01"),
                None,
                InStock,
                Some("purchased 2020-06-01"),
            ),
            (Some("2020-06-01"), Some("2020-01-01"), Retired, None),
            (Some("garbage"), None, Active, None),
        ];
        for (purchase, warranty, status, expected) in cases {
            let due = due_for_replacement(&asset(purchase, warranty, status), now, &policy)
                .map(|due| due.to_string());
            match expected {
                None => assert_eq!(due, None, "{purchase:?} {warranty:?}"),
                Some(text) => assert!(
                    due.as_deref().is_some_and(|due| due.starts_with(text)),
                    "{purchase:?} {warranty:?}: {due:?}"
                ),
            }
        }
    }

    fn any_state() -> impl Strategy<Value = Lifecycle> {
        proptest::sample::select(Lifecycle::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn automatic_status_never_touches_manual_states(
            current in any_state(),
            last_seen in -1_000_000_000_000i64..4_000_000_000_000,
            now in -1_000_000_000_000i64..4_000_000_000_000,
            offline in any::<bool>(),
        ) {
            let next = automatic_status(current, last_seen, now, &AssetPolicy::default(), offline);
            if matches!(current, Retired | Disposed | InRepair | InStock) {
                prop_assert_eq!(next, None);
            }
            if let Some(next) = next {
                prop_assert!(transition(current, next, Actor::System).is_ok());
            }
        }
    }
}
