//! Operator edits of the operator fields (owner, location, tags, role,
//! criticality, purchase and warranty dates, notes), validated.
//!
//! [`AssetEdit`] is the body of a PATCH request: an absent key leaves a
//! field alone, `null` clears it, a value sets it. Status changes go through
//! `lifecycle::change_status`, never through an edit, so disposal rules
//! cannot be bypassed.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer};

use super::dates;
use super::model::Asset;

/// Longest accepted free-text value; notes may be longer.
const MAX_TEXT: usize = 200;
const MAX_NOTES: usize = 10_000;
const MAX_TAG: usize = 64;
const MAX_TAGS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEdit {
    #[serde(default, deserialize_with = "set_or_clear")]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub location: Option<Option<String>>,
    /// Replaces the whole tag set.
    #[serde(default)]
    pub tags: Option<BTreeSet<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub role: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub criticality: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub purchase_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub warranty_end: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub notes: Option<Option<String>>,
}

/// A rejected edit; `field` is the JSON key, for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
#[non_exhaustive]
pub struct EditError {
    pub field: &'static str,
    pub message: String,
}

/// A present key, even `null`, is `Some`; serde alone maps `null` to `None`.
fn set_or_clear<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Applies `edit` to a copy of `asset`; diff the result with
/// `history::diff_assets(.., Actor::Operator, ..)` for the events.
/// Values are trimmed; empty strings clear the field.
pub fn apply_edit(asset: &Asset, edit: &AssetEdit) -> Result<Asset, EditError> {
    let mut edited = asset.clone();
    let text_fields = [
        ("owner", &edit.owner, &mut edited.owner, MAX_TEXT),
        ("location", &edit.location, &mut edited.location, MAX_TEXT),
        ("role", &edit.role, &mut edited.role, MAX_TEXT),
        (
            "criticality",
            &edit.criticality,
            &mut edited.criticality,
            MAX_TEXT,
        ),
        ("notes", &edit.notes, &mut edited.notes, MAX_NOTES),
    ];
    for (field, change, target, limit) in text_fields {
        if let Some(value) = change {
            *target = clean_text(field, value.as_deref(), limit)?;
        }
    }
    for (field, change, target) in [
        (
            "purchase_date",
            &edit.purchase_date,
            &mut edited.purchase_date,
        ),
        ("warranty_end", &edit.warranty_end, &mut edited.warranty_end),
    ] {
        if let Some(value) = change {
            let value = clean_text(field, value.as_deref(), MAX_TEXT)?;
            if let Some(date) = &value {
                dates::parse_date(date).map_err(|message| EditError { field, message })?;
            }
            *target = value;
        }
    }
    if let (Some(purchase), Some(warranty)) = (&edited.purchase_date, &edited.warranty_end)
        && warranty < purchase
    {
        return Err(EditError {
            field: "warranty_end",
            message: format!("{warranty} is before the purchase date {purchase}"),
        });
    }
    if let Some(tags) = &edit.tags {
        edited.tags = clean_tags(tags)?;
    }
    Ok(edited)
}

fn clean_text(
    field: &'static str,
    value: Option<&str>,
    limit: usize,
) -> Result<Option<String>, EditError> {
    let Some(value) = value.map(str::trim).filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > limit {
        return Err(EditError {
            field,
            message: format!("longer than {limit} characters"),
        });
    }
    let allowed = |c: char| !c.is_control() || (field == "notes" && (c == '\n' || c == '\t'));
    if !value.chars().all(allowed) {
        return Err(EditError {
            field,
            message: "contains control characters".into(),
        });
    }
    Ok(Some(value.to_string()))
}

/// Tags are short lower-case words (`a-z`, `0-9`, `_`, `-`, `.`, `:`), so
/// they can be used in filters and rule labels.
fn clean_tags(tags: &BTreeSet<String>) -> Result<BTreeSet<String>, EditError> {
    let error = |message: String| EditError {
        field: "tags",
        message,
    };
    if tags.len() > MAX_TAGS {
        return Err(error(format!("more than {MAX_TAGS} tags")));
    }
    let mut cleaned = BTreeSet::new();
    for tag in tags {
        let tag = tag.trim().to_ascii_lowercase();
        let valid = !tag.is_empty()
            && tag.len() <= MAX_TAG
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !valid {
            return Err(error(format!(
                "{tag:?} is not a tag (1-{MAX_TAG} of a-z, 0-9, _ - . :)"
            )));
        }
        cleaned.insert(tag);
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::history::{EventKind, diff_assets};
    use crate::assets::lifecycle::Actor;
    use crate::assets::model::tests::server;

    fn edit(json: &str) -> Result<Asset, EditError> {
        let mut asset = server("a1", "agent-1");
        asset.owner = Some("team-web".into());
        asset.notes = Some("old".into());
        let edit: AssetEdit = serde_json::from_str(json).unwrap();
        apply_edit(&asset, &edit)
    }

    #[test]
    fn absent_keys_stay_null_clears_values_set() {
        let edited =
            edit(r#"{"location": " dc1 ", "notes": null, "tags": ["PCI", "expected_offline"]}"#)
                .unwrap();
        assert_eq!(edited.owner.as_deref(), Some("team-web"));
        assert_eq!(edited.location.as_deref(), Some("dc1"));
        assert_eq!(edited.notes, None);
        assert!(edited.expected_offline());
        assert!(edited.tags.contains("pci"));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            (r#"{"purchase_date": "2024-02-30"}"#, "purchase_date"),
            (r#"{"warranty_end": "next year"}"#, "warranty_end"),
            (
                r#"{"purchase_date": "2024-05-01", "warranty_end": "2024-04-30"}"#,
                "warranty_end",
            ),
            (r#"{"tags": ["has space"]}"#, "tags"),
            (r#"{"tags": [""]}"#, "tags"),
            (r#"{"owner": "a\u0007b"}"#, "owner"),
        ];
        for (json, field) in cases {
            assert_eq!(edit(json).unwrap_err().field, field, "{json}");
        }
        let long = format!(r#"{{"role": "{}"}}"#, "x".repeat(201));
        assert_eq!(edit(&long).unwrap_err().field, "role");
    }

    #[test]
    fn unknown_keys_and_status_are_refused() {
        assert!(serde_json::from_str::<AssetEdit>(r#"{"status": "disposed"}"#).is_err());
    }

    #[test]
    fn edits_become_operator_history() {
        let before = server("a1", "agent-1");
        let edited = apply_edit(
            &before,
            &serde_json::from_str(r#"{"owner": "ops", "purchase_date": "2022-03-01"}"#).unwrap(),
        )
        .unwrap();
        let events = diff_assets(&before, &edited, Actor::Operator, 5);
        let fields: Vec<_> = events.iter().map(|e| (e.kind, e.field.as_str())).collect();
        assert_eq!(
            fields,
            [
                (EventKind::Edited, "owner"),
                (EventKind::Edited, "purchase_date")
            ]
        );
    }
}
