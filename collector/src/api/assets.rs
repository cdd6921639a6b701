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
use crate::assets::lifecycle::ReplacementDue;
use crate::assets::service::{AssetChangeError, OperatorChange, Regroup};
use crate::assets::{Asset, AssetEdit, Disposal, Finding, Lifecycle, compliance};
use crate::store::{AgentRecord, AssetLink};

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
    load_with(state, &state.store.agents().await?).await
}

/// [`load`] with the agents already read.
pub(super) async fn load_with(
    state: &ApiState,
    agents: &[AgentRecord],
) -> Result<Vec<Asset>, ApiError> {
    let last_seen: HashMap<&str, i64> = agents
        .iter()
        .map(|agent| (agent.id.as_str(), agent.last_seen_ms))
        .collect();
    let rows = state.store.assets().await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| serde_json::from_str::<Asset>(&row.record).ok())
        .map(|mut asset| {
            for agent in &asset.agent_ids {
                if let Some(seen) = last_seen.get(agent.as_str()) {
                    asset.last_seen_ms = asset.last_seen_ms.max(*seen);
                }
            }
            asset
        })
        .collect())
}

/// An asset as the API shows it: the record plus what is worked out at read
/// time.
#[derive(Serialize, ToSchema)]
#[schema(as = Asset)]
pub struct AssetView {
    #[serde(flatten)]
    asset: Asset,
    /// RFC 3339 of `last_seen_ms`: the latest contact of any of its agents.
    last_seen: String,
    /// RFC 3339 of `first_seen_ms`.
    first_seen: String,
    /// Whether one of its agents holds a stream to the collector now.
    connected: bool,
    /// The compliance checks it fails now.
    findings: Vec<Finding>,
    /// Why it is due for replacement; null when it is not.
    due_for_replacement: Option<ReplacementDue>,
}

fn view(asset: &Asset, state: &ApiState) -> AssetView {
    let now = steward_core::now_ms();
    AssetView {
        asset: asset.clone(),
        last_seen: rfc3339(asset.last_seen_ms),
        first_seen: rfc3339(asset.first_seen_ms),
        connected: asset
            .agent_ids
            .iter()
            .any(|agent| state.registry.is_connected(agent)),
        findings: compliance(asset, now, &state.asset_policy),
        due_for_replacement: crate::assets::lifecycle::due_for_replacement(
            asset,
            now,
            &state.asset_policy,
        ),
    }
}

/// How an agent was matched to the asset (see `assets::identity`).
#[derive(Serialize, ToSchema)]
#[schema(as = AssetLink)]
pub struct AssetLinkView {
    agent_id: String,
    asset_id: String,
    /// 0 to 1.
    confidence: f64,
    /// The identifiers that matched, for people.
    reasons: String,
    /// When the match was made, Unix milliseconds.
    matched_ms: i64,
}

impl From<AssetLink> for AssetLinkView {
    fn from(link: AssetLink) -> Self {
        AssetLinkView {
            agent_id: link.agent_id,
            asset_id: link.asset_id,
            confidence: link.confidence,
            reasons: link.reasons,
            matched_ms: link.matched_ms,
        }
    }
}

/// One asset with the agents linked to it.
#[derive(Serialize, ToSchema)]
pub struct AssetDetail {
    #[serde(flatten)]
    asset: AssetView,
    agents: Vec<AssetLinkView>,
}

/// The body of `PATCH /api/v1/assets/{id}`: only the keys present change;
/// `null` clears a field. Documentation only: the handler parses the body
/// itself so an unknown key or status gets a precise message.
#[derive(ToSchema)]
#[allow(dead_code)] // Read only by the OpenAPI derive.
pub struct AssetUpdate {
    owner: Option<String>,
    location: Option<String>,
    /// Replaces the whole tag set.
    tags: Option<Vec<String>>,
    role: Option<String>,
    criticality: Option<String>,
    /// `YYYY-MM-DD`.
    purchase_date: Option<String>,
    /// `YYYY-MM-DD`.
    warranty_end: Option<String>,
    notes: Option<String>,
    /// A lifecycle step, validated against the allowed transitions.
    status: Option<Lifecycle>,
    disposal: Option<Disposal>,
    /// Ignored: the token's name is recorded.
    #[schema(deprecated)]
    by: Option<String>,
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
    /// Assets this agent id is linked to.
    agent: Option<String>,
    /// Free text over hostname, FQDN, serial, vendor, model, owner, location, IPs, MACs, notes.
    q: Option<String>,
    /// `id` (default) or `hostname` (then id), the order pages follow.
    order: Option<String>,
    /// Rows per page: 1 to 10000, default 1000.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// Where a page of assets starts, in the list's order.
enum AssetCursor {
    /// After this id (order `id`).
    Id(String),
    /// After this (host name, id) (order `hostname`; no host name sorts as "").
    Hostname(String, String),
}

fn hostname_key(asset: &Asset) -> (&str, &str) {
    (asset.hostname.as_deref().unwrap_or(""), asset.id.as_str())
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
    if let Some(agent) = &query.agent
        && !asset.agent_ids.contains(agent)
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
        (status = 200, description = "A page of assets (record plus `last_seen`, `connected`, `findings`, `due_for_replacement`)", body = Vec<AssetView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`bad_request` (unknown status or order), `invalid_query` or `invalid_cursor`", body = ErrorBody),
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
    let by_hostname = match query.order.as_deref() {
        None | Some("id") => false,
        Some("hostname") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown order {other:?}; expected id or hostname"
            )));
        }
    };
    let after = match (&query.cursor, by_hostname) {
        (None, _) => None,
        (Some(id), false) => Some(AssetCursor::Id(id.clone())),
        (Some(_), true) => match paging::decode_parts(query.cursor.as_deref())? {
            Some(parts) => match <[String; 2]>::try_from(parts) {
                Ok([hostname, id]) => Some(AssetCursor::Hostname(hostname, id)),
                Err(_) => {
                    return Err(
                        ApiError::bad_request("invalid cursor").with_code(ErrorCode::InvalidCursor)
                    );
                }
            },
            None => None,
        },
    };
    let limit = paging::limit(query.limit, 1000, 10_000) as usize;
    let mut assets: Vec<Asset> = load(&state)
        .await?
        .into_iter()
        .filter(|asset| matches(asset, &query))
        .filter(|asset| match &after {
            None => true,
            Some(AssetCursor::Id(id)) => asset.id > *id,
            Some(AssetCursor::Hostname(hostname, id)) => {
                hostname_key(asset) > (hostname.as_str(), id.as_str())
            }
        })
        .collect();
    if by_hostname {
        assets.sort_by(|a, b| hostname_key(a).cmp(&hostname_key(b)));
    } else {
        assets.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let next = (assets.len() > limit)
        .then(|| {
            assets.truncate(limit);
            assets.last().map(|asset| {
                if by_hostname {
                    let (hostname, id) = hostname_key(asset);
                    paging::encode_parts(&[hostname, id])
                } else {
                    asset.id.clone()
                }
            })
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
        (status = 200, description = "The asset, `agents` included", body = AssetDetail),
        (status = 404, description = "`not_found`: no such asset", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AssetDetail>, ApiError> {
    let asset = find(&state, &id).await?;
    let agents = state
        .store
        .asset_links()
        .await?
        .into_iter()
        .filter(|link| link.asset_id == id)
        .map(AssetLinkView::from)
        .collect();
    Ok(Json(AssetDetail {
        asset: view(&asset, &state),
        agents,
    }))
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
    request_body(content = AssetUpdate, description = "Fields to change; `status` a lifecycle name, `disposal` an object"),
    responses(
        (status = 200, description = "The asset", body = AssetView),
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
) -> Result<Json<AssetView>, ApiError> {
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
            (Vec<AssetView> = "application/json"),
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
        (status = 200, description = "The assets after the merge", body = Vec<AssetView>),
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
) -> Result<Json<Vec<AssetView>>, ApiError> {
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
        (status = 200, description = "The assets after the split", body = Vec<AssetView>),
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
) -> Result<Json<Vec<AssetView>>, ApiError> {
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

/// An asset failing at least one compliance check.
#[derive(Serialize, ToSchema)]
pub struct ComplianceEntry {
    /// Asset id.
    id: String,
    hostname: Option<String>,
    status: Lifecycle,
    os: Option<String>,
    findings: Vec<Finding>,
}

impl ComplianceEntry {
    fn new(asset: Asset, findings: Vec<Finding>) -> Self {
        ComplianceEntry {
            id: asset.id,
            hostname: asset.hostname,
            status: asset.status,
            os: asset.os,
            findings,
        }
    }
}

/// `GET /api/v1/compliance`: assets with at least one finding, and the findings.
#[utoipa::path(
    get,
    path = "/api/v1/compliance",
    tag = "assets",
    operation_id = "compliance_findings",
    summary = "Assets with compliance findings (`id`, `hostname`, `status`, `os`, `findings`)",
    params(ComplianceQuery),
    responses((status = 200, description = "Assets failing a check", body = Vec<ComplianceEntry>)),
)]
pub async fn compliance_view(
    State(state): State<ApiState>,
    Query(query): Query<ComplianceQuery>,
) -> Result<Json<Vec<ComplianceEntry>>, ApiError> {
    let now = steward_core::now_ms();
    let assets = load(&state).await?;
    Ok(Json(
        assets
            .into_iter()
            .filter_map(|asset| {
                let findings = compliance(&asset, now, &state.asset_policy);
                let wanted = match &query.check {
                    Some(check) => findings.iter().any(|finding| finding.check == check),
                    None => !findings.is_empty(),
                };
                wanted.then(|| ComplianceEntry::new(asset, findings))
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::compliance::{CHECK_OS_EOL, CHECK_SECURITY_UPDATES};
    use serde_json::json;

    fn sample_asset() -> Asset {
        let mut asset = crate::assets::model::tests::server("asset-1", "agent-1");
        asset.owner = Some("ops".to_string());
        asset.tags = ["db".to_string(), "prod".to_string()].into();
        asset.disposal = Some(Disposal {
            date: "2026-01-02".to_string(),
            method: "recycled".to_string(),
            vendor: None,
            certificate: Some("C-1".to_string()),
        });
        asset
    }

    fn sample_findings() -> Vec<Finding> {
        vec![
            Finding {
                check: CHECK_SECURITY_UPDATES,
                detail: "3 pending for 9 days".to_string(),
            },
            Finding {
                check: CHECK_OS_EOL,
                detail: "Debian 9 ended 2022-06-30".to_string(),
            },
        ]
    }

    /// The `view` of before issue #14: the record's JSON with keys added.
    fn hand_built_view(
        asset: &Asset,
        connected: bool,
        findings: &[Finding],
        due: Option<&ReplacementDue>,
    ) -> Value {
        let mut value = serde_json::to_value(asset).unwrap();
        value["last_seen"] = rfc3339(asset.last_seen_ms).into();
        value["first_seen"] = rfc3339(asset.first_seen_ms).into();
        value["connected"] = connected.into();
        value["findings"] = findings
            .iter()
            .map(|finding| json!({"check": finding.check, "detail": finding.detail}))
            .collect();
        value["due_for_replacement"] = due
            .map(|due| serde_json::to_value(due).unwrap())
            .unwrap_or(Value::Null);
        value
    }

    /// Guards the typed views of issue #14 against changing the JSON the
    /// console and stewardctl read.
    #[test]
    fn typed_asset_views_serialise_as_the_hand_built_json_did() {
        let asset = sample_asset();
        let dues = [
            None,
            Some(ReplacementDue::WarrantyEnded {
                warranty_end: "2025-12-31".to_string(),
            }),
            Some(ReplacementDue::AgeReached {
                purchase_date: "2020-01-01".to_string(),
                age_days: 2190,
            }),
        ];
        for (due, findings) in
            dues.into_iter()
                .zip([sample_findings(), Vec::new(), sample_findings()])
        {
            for connected in [true, false] {
                let typed = AssetView {
                    asset: asset.clone(),
                    last_seen: rfc3339(asset.last_seen_ms),
                    first_seen: rfc3339(asset.first_seen_ms),
                    connected,
                    findings: findings.clone(),
                    due_for_replacement: due.clone(),
                };
                let old = hand_built_view(&asset, connected, &findings, due.as_ref());
                let link = AssetLink {
                    agent_id: "agent-1".to_string(),
                    asset_id: asset.id.clone(),
                    confidence: 0.9,
                    reasons: "machine_id".to_string(),
                    matched_ms: 1_700_000_000_000,
                };
                let mut old_detail = old.clone();
                old_detail["agents"] = json!([serde_json::to_value(&link).unwrap()]);
                assert_eq!(serde_json::to_value(&typed).unwrap(), old);
                let detail = AssetDetail {
                    asset: typed,
                    agents: vec![AssetLinkView::from(link)],
                };
                assert_eq!(serde_json::to_value(&detail).unwrap(), old_detail);
            }
        }

        // The compliance list, with and without hostname and OS.
        let mut bare = sample_asset();
        bare.hostname = None;
        bare.os = None;
        for asset in [sample_asset(), bare] {
            let findings = sample_findings();
            let old = json!({
                "id": asset.id,
                "hostname": asset.hostname,
                "status": asset.status.as_str(),
                "os": asset.os,
                "findings": findings
                    .iter()
                    .map(|finding| json!({"check": finding.check, "detail": finding.detail}))
                    .collect::<Vec<_>>(),
            });
            let typed = ComplianceEntry::new(asset, findings);
            assert_eq!(serde_json::to_value(&typed).unwrap(), old);
        }
    }

    /// `DiskSchema` documents `store::DiskRecord`: the same keys.
    #[test]
    fn the_disk_schema_has_the_keys_of_a_disk_record() {
        use utoipa::PartialSchema;
        let record = crate::store::DiskRecord {
            device: "/dev/sda1".to_string(),
            model: None,
            size_bytes: 1,
            filesystem: "ext4".to_string(),
            mount: "/".to_string(),
        };
        let record = serde_json::to_value(record).unwrap();
        let schema = serde_json::to_value(crate::assets::model::DiskSchema::schema()).unwrap();
        let keys =
            |value: &Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys(&record), keys(&schema["properties"]));
    }

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
