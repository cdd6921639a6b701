//! Assets (a small CMDB): one record per machine, kept current from agent
//! inventory and patch metrics, with operator fields, a lifecycle, history
//! and compliance checks.
//!
//! This module is pure domain logic. It does no I/O (no database, network,
//! files or logging) and never reads the clock: every entry point takes the
//! time as `now_ms`/`ts_ms` (unix milliseconds) from the caller. The store
//! persists [`Asset`]s and [`AssetEvent`]s, ingest feeds inventories and
//! `patch.*` samples in, the API exposes records, edits, merges and
//! findings, and the rules engine opens incidents on the `asset.*` samples.
//!
//! Layout (one job per file):
//! - [`model`]: the [`Asset`] record and its [`Lifecycle`] status; applying
//!   inventory and patch metrics; every field rendered as text in one place.
//! - [`identifiers`]: cleaning DMI UUIDs, serials, machine-ids and MACs
//!   (a leaf; the record and matching both use it).
//! - [`identity`]: deciding which asset a report belongs to
//!   ([`match_asset`]); never merges on weak evidence.
//! - [`merge`](mod@merge): operator [`merge()`]/[`split()`] of records.
//! - [`lifecycle`]: [`Lifecycle`] states, allowed transitions, automatic
//!   stale/missing, replacement due.
//! - [`policy`]: the `[assets]` config table.
//! - [`history`]: [`AssetEvent`]s from record diffs.
//! - [`edit`]: validated operator edits.
//! - [`compliance`](mod@compliance): findings and `asset.*` samples; [`eol`]: the OS
//!   end-of-life table; `dates`: ISO date helpers.
//!
//! Imports flow one way: `identifiers` ← `model` ← everything else; `model`
//! imports nothing else from `assets`.
//!
//! Invariants:
//! - Inventory never writes operator fields; edits never write inventory
//!   fields or the status.
//! - `disposed` is terminal and only reached from `retired` with disposal
//!   details; the system only moves assets among `active`, `stale` and
//!   `missing`.
//! - Two records are never merged silently when their valid DMI UUIDs differ.

pub mod compliance;
mod dates;
pub mod edit;
pub mod eol;
pub mod history;
pub mod identifiers;
pub mod identity;
pub mod lifecycle;
pub mod merge;
pub mod model;
pub mod policy;
pub mod service;

pub use compliance::{Finding, compliance, compliance_samples};
pub use edit::{AssetEdit, EditError, apply_edit};
pub use history::{AssetEvent, EventKind, diff_assets};
pub use identity::{Candidate, Identifiers, KnownAsset, Match, Observed, match_asset};
pub use lifecycle::{
    Actor, Lifecycle, LifecycleError, ReplacementDue, automatic_status, change_status,
    due_for_replacement, transition,
};
pub use merge::{MergeError, Merged, Split, merge, split};
pub use model::{Asset, Disposal, FieldChange, PatchState};
pub use policy::{AssetPolicy, RawAssetPolicy};
