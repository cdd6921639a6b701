//! The collector's long-running tasks (incidents, notification delivery, the
//! asset sweep) in-process under paused tokio time: minutes and hours of
//! `for`, `keep_firing_for`, SLA, escalation and staleness pass in about a
//! tenth of a second of wall time per test, with real SQLite stores in temp
//! dirs and real loopback HTTP receivers.
//!
//! How time moves here. With `start_paused`, tokio moves the clock to the
//! next timer whenever every task is idle, and a task waiting for the
//! store's writer (a std thread) counts as idle. Left alone, the clock runs
//! ahead by a whole incidents tick (1 s) per writer round trip, so while a
//! test waits on one commit it can drift tens of seconds, shifting sweeps
//! and escalations past any fixed margin. Each test therefore holds
//! auto-advance off ([`support::TimeHeld`], itself guarded by a test) and
//! moves time only with `tokio::time::advance`. Assertions still allow
//! slack after each boundary (the tick, the sweep interval, the steps a test
//! takes; always well below the duration under test), and every "not yet"
//! check is backed by a timestamp check once the thing happens.
#![allow(clippy::unwrap_used)]

mod asset_sweep;
mod escalation;
mod incidents;
mod support;
