//! Asset routes: list with filters, one asset, its history, operator edits
//! and lifecycle changes, and CSV/JSON export.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{JsonBody, Path, Query};
use super::{ApiError, ApiState, paging, rfc3339};
use crate::assets::service::{AssetChangeError, OperatorChange, Regroup};
use crate::assets::{Asset, AssetEdit, Disposal, Lifecycle, compliance};

impl From<AssetChangeError> for ApiError {
    fn from(error: AssetChangeError) -> Self {
        match error {
            AssetChangeError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "no such asset"),
            AssetChangeError::Edit(error) => {
                ApiError::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            AssetChangeError::Lifecycle(error) => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            AssetChangeError::Merge(error) => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            AssetChangeError::Store(error) => error.into(),
            AssetChangeError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                    .with_code(ErrorCode::ShuttingDown)
            }
        }
    }
}

/// Every asset with `last_seen` taken from its agents' latest contact.
async fn load(state: &ApiState) -> Result<Vec<Asset>, ApiError> {
    let last_seen: HashMap<String, i64> = state
        .store
        .agents()
        .await?
        .into_iter()
        .map(|agent| (agent.id, agent.last_seen_ms))
        .collect();
    let rows = state.store.assets().await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| serde_json::from_str::<Asset>(&row.record).ok())
        .map(|mut asset| {
            for agent in &asset.agent_ids {
                if let Some(seen) = last_seen.get(agent) {
                    asset.last_seen_ms = asset.last_seen_ms.max(*seen);
                }
            }
            asset
        })
        .collect())
}

fn view(asset: &Asset, state: &ApiState) -> Value {
    let mut value = serde_json::to_value(asset).unwrap_or(Value::Null);
    let now = steward_core::now_ms();
    value["last_seen"] = rfc3339(asset.last_seen_ms).into();
    value["first_seen"] = rfc3339(asset.first_seen_ms).into();
    value["connected"] = asset
        .agent_ids
        .iter()
        .any(|agent| state.registry.is_connected(agent))
        .into();
    value["findings"] = compliance(asset, now, &state.asset_policy)
        .into_iter()
        .map(|finding| serde_json::json!({"check": finding.check, "detail": finding.detail}))
        .collect();
    value["due_for_replacement"] =
        crate::assets::lifecycle::due_for_replacement(asset, now, &state.asset_policy)
            .map(|due| serde_json::to_value(due).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
    value
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Lifecycle status, e.g. `active`, `retired`.
    status: Option<String>,
    /// Assets carrying this tag.
    tag: Option<String>,
    /// Substring of the OS name or id, any case.
    os: Option<String>,
    /// Free text over hostname, FQDN, serial, vendor, model, owner, location, IPs, MACs, notes.
    q: Option<String>,
    /// Rows per page: 1 to 10000, default 1000.
    limit: Option<u32>,
    /// The id of the last asset of the previous page.
    cursor: Option<String>,
}

fn matches(asset: &Asset, query: &ListQuery) -> bool {
    let contains = |haystack: &Option<String>, needle: &str| {
        haystack
            .as_deref()
            .is_some_and(|text| text.to_lowercase().contains(needle))
    };
    if let Some(status) = &query.status
        && asset.status.as_str() != status
    {
        return false;
    }
    if let Some(tag) = &query.tag
        && !asset.tags.contains(tag)
    {
        return false;
    }
    if let Some(os) = &query.os {
        let os = os.to_lowercase();
        if !contains(&asset.os, &os) && !contains(&asset.os_id, &os) {
            return false;
        }
    }
    if let Some(q) = &query.q {
        let q = q.to_lowercase();
        let fields = [
            &asset.hostname,
            &asset.fqdn,
            &asset.serial,
            &asset.vendor,
            &asset.model,
            &asset.owner,
            &asset.location,
            &asset.notes,
            &asset.os,
        ];
        let found = fields.iter().any(|field| contains(field, &q))
            || asset.id.contains(&q)
            || asset
                .ips
                .iter()
                .chain(&asset.macs)
                .any(|text| text.to_lowercase().contains(&q));
        if !found {
            return false;
        }
    }
    true
}

/// Assets matching the filters, by id, paged (see `paging`).
#[utoipa::path(
    get,
    path = "/api/v1/assets",
    tag = "assets",
    operation_id = "list_assets",
    summary = "Assets, by id, filtered and paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of assets (record plus `last_seen`, `connected`, `findings`, `due_for_replacement`)", body = Vec<Object>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`bad_request` (unknown status) or `invalid_query`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    if let Some(status) = &query.status
        && Lifecycle::from_name(status).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown status {status:?}"),
        ));
    }
    let limit = paging::limit(query.limit, 1000, 10_000) as usize;
    let mut assets: Vec<Asset> = load(&state)
        .await?
        .into_iter()
        .filter(|asset| matches(asset, &query))
        .filter(|asset| query.cursor.as_ref().is_none_or(|after| asset.id > *after))
        .collect();
    assets.sort_by(|a, b| a.id.cmp(&b.id));
    let next = (assets.len() > limit)
        .then(|| {
            assets.truncate(limit);
            assets.last().map(|asset| asset.id.clone())
        })
        .flatten();
    Ok(paging::respond(
        assets.iter().map(|asset| view(asset, &state)).collect(),
        next,
    ))
}

async fn find(state: &ApiState, id: &str) -> Result<Asset, ApiError> {
    load(state)
        .await?
        .into_iter()
        .find(|asset| asset.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such asset"))
}

#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}",
    tag = "assets",
    operation_id = "get_asset",
    summary = "One asset with the agents linked to it",
    params(("id" = String, Path, description = "Asset id")),
    responses(
        (status = 200, description = "The asset, `agents` included", body = Object),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let asset = find(&state, &id).await?;
    let mut value = view(&asset, &state);
    let links: Vec<Value> = state
        .store
        .asset_links()
        .await?
        .into_iter()
        .filter(|link| link.asset_id == id)
        .map(|link| serde_json::to_value(link).unwrap_or(Value::Null))
        .collect();
    value["agents"] = links.into();
    Ok(Json(value))
}

/// One change in an asset's history: a field or one of its agents' packages.
#[derive(Serialize, ToSchema)]
pub struct AssetHistoryEntry {
    /// RFC 3339.
    at: String,
    /// Who changed it: `agent` (inventory), an operator's token name, …
    source: String,
    kind: String,
    /// The field, or the package of a package change.
    field: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Rows per page: 1 to 5000, default 500.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// Field changes of the asset plus package changes of its agents, newest
/// first, paged. The two come from two tables, each read newest first and
/// merged by time; the cursor holds how far each was read, so a page never
/// skips or repeats an event.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/history",
    tag = "assets",
    operation_id = "asset_history",
    summary = "An asset's field and package changes (`at`, `source`, `kind`, `field`, `before`, `after`), newest first, paged",
    params(("id" = String, Path, description = "Asset id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of changes", body = Vec<AssetHistoryEntry>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
    ),
)]
pub async fn history(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let asset = find(&state, &id).await?;
    let limit = paging::limit(query.limit, 500, 5000);
    let (asset_before, inventory_before) = match paging::decode_parts(query.cursor.as_deref())? {
        None => (None, None),
        Some(parts) => {
            let id = |text: &str| -> Result<Option<i64>, ApiError> {
                if text.is_empty() {
                    return Ok(None);
                }
                text.parse().map(Some).map_err(|_| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor")
                        .with_code(ErrorCode::InvalidCursor)
                })
            };
            match parts.as_slice() {
                [asset, inventory] => (id(asset)?, id(inventory)?),
                _ => {
                    return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor")
                        .with_code(ErrorCode::InvalidCursor));
                }
            }
        }
    };
    let fields = state.store.asset_events(&id, asset_before, limit).await?;
    let packages = state
        .store
        .inventory_events(asset.agent_ids.clone(), true, inventory_before, limit)
        .await?;
    // A source that filled its read may hold more beyond it.
    let maybe_more = fields.len() == limit as usize || packages.len() == limit as usize;
    let (mut fields, mut packages) = (
        fields.into_iter().peekable(),
        packages.into_iter().peekable(),
    );
    let (mut last_field, mut last_package) = (asset_before, inventory_before);
    let mut events = Vec::new();
    while events.len() < limit as usize {
        let take_field = match (fields.peek(), packages.peek()) {
            (Some((_, field)), Some(package)) => field.ts_ms >= package.ts_ms,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_field {
            let Some((row_id, event)) = fields.next() else {
                break;
            };
            last_field = Some(row_id);
            events.push(AssetHistoryEntry {
                at: rfc3339(event.ts_ms),
                source: event.source,
                kind: event.kind,
                field: event.field,
                before: event.before,
                after: event.after,
            });
        } else {
            let Some(event) = packages.next() else { break };
            last_package = Some(event.id);
            events.push(AssetHistoryEntry {
                at: rfc3339(event.ts_ms),
                source: "agent".to_string(),
                kind: event.kind,
                field: Some(event.subject),
                before: event.before,
                after: event.after,
            });
        }
    }
    let more = maybe_more || fields.peek().is_some() || packages.peek().is_some();
    let position = |last: Option<i64>| last.map(|id| id.to_string()).unwrap_or_default();
    let next =
        more.then(|| paging::encode_parts(&[&position(last_field), &position(last_package)]));
    Ok(paging::respond(events, next))
}

/// `PATCH /api/v1/assets/{id}`: operator fields, plus optional `status`
/// (a lifecycle transition, validated) and `disposal`. The change is
/// recorded as the token's; an old client's `by` field is ignored.
#[utoipa::path(
    patch,
    path = "/api/v1/assets/{id}",
    tag = "assets",
    operation_id = "update_asset",
    summary = "Edit an asset's operator fields (owner, location, tags, notes, dates…), `status` or `disposal`",
    params(("id" = String, Path, description = "Asset id")),
    request_body(content = Object, description = "Fields to change; `status` a lifecycle name, `disposal` an object"),
    responses(
        (status = 200, description = "The asset", body = Object),
        (status = 400, description = "`bad_request` (unknown status or field) or `invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
        (status = 409, description = "`conflict`: a lifecycle step that is not allowed", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let mut body: serde_json::Map<String, Value> =
        serde_json::from_str(&body).map_err(|error| {
            bad(format!("invalid JSON body: {error}")).with_code(ErrorCode::InvalidJson)
        })?;
    body.remove("by");
    let by = actor.name;
    let status = match body.remove("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(
            Lifecycle::from_name(&name).ok_or_else(|| bad(format!("unknown status {name:?}")))?,
        ),
        Some(other) => return Err(bad(format!("status must be a string, not {other}"))),
    };
    let disposal = match body.remove("disposal") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<Disposal>(value)
                .map_err(|error| bad(format!("invalid disposal: {error}")))?,
        ),
    };
    let edit: AssetEdit = serde_json::from_value(Value::Object(body))
        .map_err(|error| bad(format!("invalid asset edit: {error}")))?;
    let asset = state
        .assets
        .change(
            id,
            OperatorChange {
                edit,
                status,
                disposal,
                by,
            },
        )
        .await?;
    Ok(Json(view(&asset, &state)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    format: Option<String>,
}

const CSV_COLUMNS: [&str; 18] = [
    "id",
    "hostname",
    "status",
    "os",
    "kernel",
    "vendor",
    "model",
    "serial",
    "cpu_model",
    "memory_total_bytes",
    "ips",
    "owner",
    "location",
    "tags",
    "purchase_date",
    "warranty_end",
    "last_seen",
    "patch_security",
];

/// `cell` as a spreadsheet will show it, as text. One starting with `=`,
/// `+`, `-` or `@` (or with a tab or CR, which some spreadsheets skip before
/// looking) would be run as a formula; hostnames, serials and models come
/// from agents, so the export must not let them run. A leading `'` is what
/// spreadsheets themselves use to mark text (OWASP "CSV injection").
fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

fn csv_row(asset: &Asset) -> [String; CSV_COLUMNS.len()] {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        asset.id.clone(),
        text(&asset.hostname),
        asset.status.as_str().to_string(),
        text(&asset.os),
        text(&asset.kernel),
        text(&asset.vendor),
        text(&asset.model),
        text(&asset.serial),
        text(&asset.cpu_model),
        asset
            .memory_total_bytes
            .map(|bytes| bytes.to_string())
            .unwrap_or_default(),
        asset.ips.join(" "),
        text(&asset.owner),
        text(&asset.location),
        asset.tags.iter().cloned().collect::<Vec<_>>().join(" "),
        text(&asset.purchase_date),
        text(&asset.warranty_end),
        rfc3339(asset.last_seen_ms),
        asset
            .patch
            .security
            .map(|count| count.to_string())
            .unwrap_or_default(),
    ]
}

/// The CSV document: a header, then `rows` with every cell neutralised.
fn to_csv<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header)?;
    for row in rows {
        writer.write_record(row.iter().map(|cell| neutralise(cell).into_owned()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))?;
    // Every cell went in as a `String`, so the document is UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[utoipa::path(
    get,
    path = "/api/v1/assets/export",
    tag = "assets",
    operation_id = "export_assets",
    summary = "Every asset, as a JSON array or CSV (formula-like cells neutralised)",
    params(ExportQuery),
    responses(
        (status = 200, description = "The register", content(
            (Vec<Object> = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`bad_request`: unknown format", body = ErrorBody),
    ),
)]
pub async fn export(
    State(state): State<ApiState>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let assets = load(&state).await?;
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(
            assets
                .iter()
                .map(|asset| view(asset, &state))
                .collect::<Vec<_>>(),
        )
        .into_response()),
        "csv" => {
            let rows: Vec<_> = assets.iter().map(csv_row).collect();
            let out = to_csv(&CSV_COLUMNS, &rows).map_err(|error| {
                tracing::error!(message = "Cannot write the asset CSV export.", %error);
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot write CSV")
            })?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}; expected csv or json"),
        )),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The asset folded into the one in the path, then removed.
    from: String,
    /// Ignored: the token's name is recorded.
    #[serde(default, rename = "by")]
    #[schema(value_type = Option<String>, deprecated)]
    _by: Option<serde::de::IgnoredAny>,
}

/// `POST /api/v1/assets/{id}/merge`: one machine recorded twice.
#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/merge",
    tag = "assets",
    operation_id = "merge_assets",
    summary = "Merge asset `from` into this one",
    params(("id" = String, Path, description = "Asset id (kept)")),
    request_body = MergeBody,
    responses(
        (status = 200, description = "The assets after the merge", body = Vec<Object>),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
        (status = 409, description = "`conflict`: these assets cannot be merged", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
)]
pub async fn merge(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MergeBody>,
) -> Result<Json<Value>, ApiError> {
    let by = actor.name;
    let assets = state
        .assets
        .regroup(id, Regroup::Merge { from: body.from }, by)
        .await?;
    Ok(Json(
        assets.iter().map(|asset| view(asset, &state)).collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBody {
    /// The agent moved to a new asset of its own.
    agent_id: String,
    /// Ignored: the token's name is recorded.
    #[serde(default, rename = "by")]
    #[schema(value_type = Option<String>, deprecated)]
    _by: Option<serde::de::IgnoredAny>,
}

/// `POST /api/v1/assets/{id}/split`: two machines recorded as one.
#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/split",
    tag = "assets",
    operation_id = "split_asset",
    summary = "Move one agent of this asset to a new asset",
    params(("id" = String, Path, description = "Asset id")),
    request_body = SplitBody,
    responses(
        (status = 200, description = "The assets after the split", body = Vec<Object>),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
        (status = 409, description = "`conflict`: the agent cannot be split off", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
)]
pub async fn split(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SplitBody>,
) -> Result<Json<Value>, ApiError> {
    let by = actor.name;
    let assets = state
        .assets
        .regroup(
            id,
            Regroup::Split {
                agent_id: body.agent_id,
            },
            by,
        )
        .await?;
    Ok(Json(
        assets.iter().map(|asset| view(asset, &state)).collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComplianceQuery {
    /// Only assets with this finding (`check` names as in each finding).
    check: Option<String>,
}

/// `GET /api/v1/compliance`: assets with at least one finding, and the findings.
#[utoipa::path(
    get,
    path = "/api/v1/compliance",
    tag = "assets",
    operation_id = "compliance_findings",
    summary = "Assets with compliance findings (`id`, `hostname`, `status`, `os`, `findings`)",
    params(ComplianceQuery),
    responses((status = 200, description = "Assets failing a check", body = Vec<Object>)),
)]
pub async fn compliance_view(
    State(state): State<ApiState>,
    Query(query): Query<ComplianceQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let now = steward_core::now_ms();
    let assets = load(&state).await?;
    Ok(Json(
        assets
            .iter()
            .filter_map(|asset| {
                let findings = compliance(asset, now, &state.asset_policy);
                let wanted = match &query.check {
                    Some(check) => findings.iter().any(|finding| finding.check == check),
                    None => !findings.is_empty(),
                };
                wanted.then(|| {
                    serde_json::json!({
                        "id": asset.id,
                        "hostname": asset.hostname,
                        "status": asset.status.as_str(),
                        "os": asset.os,
                        "findings": findings
                            .iter()
                            .map(|finding| serde_json::json!({"check": finding.check, "detail": finding.detail}))
                            .collect::<Vec<_>>(),
                    })
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_exported_as_text() {
        let hostile = [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("web-01", "web-01"),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (cell, expected) in hostile {
            assert_eq!(neutralise(cell), expected, "{cell:?}");
        }
    }

    #[test]
    fn csv_export_quotes_and_neutralises_every_cell() {
        let rows = [
            [
                "=cmd|' /C calc'!A0".to_string(),
                "db, \"primary\"".to_string(),
                "two\nlines".to_string(),
            ],
            ["web-01".to_string(), "@evil".to_string(), String::new()],
        ];
        let csv = to_csv(&["hostname", "model", "serial"], &rows).unwrap();
        assert_eq!(
            csv,
            "hostname,model,serial\n\
             '=cmd|' /C calc'!A0,\"db, \"\"primary\"\"\",\"two\nlines\"\n\
             web-01,'@evil,\n"
        );
        // A CSV reader gets the neutralised cells back intact.
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let first = reader.records().next().unwrap().unwrap();
        assert_eq!(
            first.iter().collect::<Vec<_>>(),
            ["'=cmd|' /C calc'!A0", "db, \"primary\"", "two\nlines"]
        );
    }
}
