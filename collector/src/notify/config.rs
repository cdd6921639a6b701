//! The notification tables of `collector.toml`, parsed raw then validated.
//!
//! ```toml
//! [[channel]]
//! name = "ops-hook"
//! type = "webhook"            # webhook | alertmanager | pagerduty | slack | email
//! url = "https://hooks.example.com/steward"
//! secret = "hmac-key"         # optional; signs the body (X-Steward-Signature)
//!
//! [[channel]]
//! name = "pd"
//! type = "pagerduty"
//! routing_key = "R0UT1NGKEY"  # url defaults to the Events API v2 endpoint
//!
//! [[channel]]
//! name = "mail"
//! type = "email"
//! smtp_host = "smtp.example.com"
//! smtp_port = 587             # default 587
//! starttls = true             # default true
//! from = "steward@example.com"
//! to = ["ops@example.com"]
//! username = "steward"        # optional, with password_file
//! password_file = "smtp.pass"
//!
//! [[route]]
//! match = { severity = ">=major", tag = "prod" }
//! channels = ["pd"]
//! escalation = "ops"
//! continue = true
//! group_by = ["rule", "tag:site"] # grouping and storm control (see `grouping`)
//! group_wait = "0s"           # default 0: the first incident pages at once
//! group_interval = "5m"       # a storm's digest, and grouped resolutions
//! storm_threshold = 10        # more openings than this within storm_window...
//! storm_window = "1m"         # ...make a storm: one summary, then digests
//!
//! [[person]]
//! name = "alice"
//! channels = ["email:alice@example.com", "phone:+4915112345678", "mail"]
//!
//! [[schedule]]
//! name = "ops"
//! time_zone = "Europe/Berlin"
//! rotation = "weekly"         # daily | weekly
//! handoff = "09:00"
//! start = "2024-01-01"
//! members = ["alice", "bob"]
//! [[schedule.override]]
//! person = "bob"
//! start = "2024-01-03"        # a date means that day at the handoff time
//! end = "2024-01-04T12:00"    # local to the schedule; end is exclusive
//!
//! [[escalation]]
//! name = "ops"
//! levels = [
//!   { notify = ["schedule:ops"], after = "0s" },
//!   { notify = ["person:alice", "channel:pd"], after = "15m" },
//! ]
//! repeat = 1                  # extra passes; default 0
//! repeat_after = "30m"        # default: the last level's `after`
//! escalate_before_sla = true  # default false
//! sla_margin = "5m"           # default: a fifth of the ack window
//! ```
//!
//! Validation catches every dangling name, bad time zone or time, and
//! duplicate, naming the key (`route[2].channels`); see the routing,
//! on-call and escalation modules for what the validated values mean. This
//! file reads no files: `password_file` is resolved against the config's
//! directory and read by the sender, so a rotated password needs no reload.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use steward_core::config_file::{self, ConfigError, ConfigSource};

use super::escalation::{EscalationLevel, EscalationPolicy, Target};
use super::grouping::{DEFAULT_GROUP_INTERVAL, DEFAULT_STORM_WINDOW, GroupBy, Grouping};
use super::oncall::{OnCallSchedule, Override, Rotation};
use super::routing::{self, Route, RouteDecision, RouteInput, RouteMatch, SeverityMatch};
use crate::domain::Severity;

/// PagerDuty's Events API v2 endpoint, used when a `pagerduty` channel has
/// no `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const DEFAULT_SMTP_PORT: u16 = 587;

/// A credential from the config. `Debug` never shows it; use
/// [`Secret::expose`] exactly where it is sent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// All notification tables. The collector config holds these same fields
/// (`channel`, `route`, `person`, `schedule`, `escalation`); this struct
/// also parses a file holding only them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub channel: Vec<RawChannel>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub person: Vec<RawPerson>,
    #[serde(default)]
    pub schedule: Vec<RawSchedule>,
    #[serde(default)]
    pub escalation: Vec<RawEscalation>,
}

/// One `[[channel]]` as written. One flat shape for every type, so a key
/// used with the wrong type is reported by name rather than as a vague
/// "no variant matched".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: Option<String>,
    pub routing_key: Option<Secret>,
    pub secret: Option<Secret>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub starttls: Option<bool>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// One `[[route]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub channels: Vec<String>,
    pub escalation: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Grouping and storm control (see `grouping`): `rule`, `severity`,
    /// `tag:NAME` or a label name.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub group_interval: Option<Duration>,
    pub storm_threshold: Option<usize>,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub storm_window: Option<Duration>,
}

/// A `match` value: one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// One `[[person]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerson {
    pub name: String,
    /// Channel names, `email:ADDRESS` (or a bare address with `@`), or
    /// `phone:+NUMBER`.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// One `[[schedule]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: String,
    pub time_zone: String,
    pub rotation: String,
    pub handoff: CivilText,
    pub start: CivilText,
    pub members: Vec<String>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<RawOverride>,
}

/// One `[[schedule.override]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    pub person: String,
    pub start: CivilText,
    pub end: CivilText,
}

/// A date or time written either quoted (`"09:00"`) or as a bare TOML
/// date/time (`2024-01-01`), kept as text for jiff to parse.
#[derive(Debug, Clone)]
pub struct CivilText(pub String);

impl<'de> Deserialize<'de> for CivilText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Toml(toml::value::Datetime),
        }
        Ok(CivilText(match Either::deserialize(deserializer)? {
            Either::Text(text) => text,
            Either::Toml(datetime) => datetime.to_string(),
        }))
    }
}

/// One `[[escalation]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub name: String,
    pub levels: Vec<RawLevel>,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub repeat_after: Option<Duration>,
    #[serde(default)]
    pub escalate_before_sla: bool,
    #[serde(default, deserialize_with = "config_file::optional_duration")]
    pub sla_margin: Option<Duration>,
}

/// One level of an `[[escalation]]`; `after` defaults to `0s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    pub notify: Vec<String>,
    #[serde(default, deserialize_with = "config_file::duration")]
    pub after: Duration,
}

/// A validated channel. Names are unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelKind {
    Webhook { url: String, secret: Option<Secret> },
    Alertmanager { url: String },
    PagerDuty { url: String, routing_key: Secret },
    Slack { url: String },
    Email(EmailChannel),
}

impl ChannelKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Alertmanager { .. } => "alertmanager",
            ChannelKind::PagerDuty { .. } => "pagerduty",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Email(_) => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailChannel {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub starttls: bool,
    pub from: String,
    /// Never empty.
    pub to: Vec<String>,
    /// Set exactly when `password_file` is (validation enforces both or neither).
    pub username: Option<String>,
    /// Absolute (resolved against the config file's directory).
    pub password_file: Option<PathBuf>,
}

/// A validated `[[person]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub name: String,
    /// How to reach them, in preference order.
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Contact {
    /// A configured channel, by name.
    Channel(String),
    /// An address; sent through the first `email` channel's SMTP server.
    Email(String),
    /// An E.164 number (`+` and digits), for an SMS/voice sender.
    Phone(String),
}

impl Contact {
    /// The recipient part of [`super::idempotency_key`].
    pub fn recipient(&self) -> String {
        match self {
            Contact::Channel(name) => name.clone(),
            Contact::Email(address) => format!("email:{address}"),
            Contact::Phone(number) => format!("phone:{number}"),
        }
    }
}

/// Everything about delivery, validated: every name refers to something.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    pub people: Vec<Person>,
    pub schedules: Vec<OnCallSchedule>,
    pub escalations: Vec<EscalationPolicy>,
}

impl NotifyConfig {
    /// Where an incident goes under these routes; with no route at all, to
    /// every channel.
    pub fn route(&self, input: &RouteInput) -> RouteDecision {
        routing::route(
            input,
            &self.routes,
            self.channels.iter().map(|channel| channel.name.as_str()),
        )
    }

    /// Validates the raw tables of `source`; the first problem is returned,
    /// naming its key (`channel[1].url`, `schedule[0].override[2].end`).
    pub fn validate(source: &ConfigSource, raw: RawNotify) -> Result<Self, ConfigError> {
        let channels = raw
            .channel
            .into_iter()
            .enumerate()
            .map(|(index, channel)| validate_channel(source, index, channel))
            .collect::<Result<Vec<_>, _>>()?;
        unique(source, "channel", channels.iter().map(|c| c.name.as_str()))?;
        let channel_names: HashSet<&str> = channels.iter().map(|c| c.name.as_str()).collect();

        let people = raw
            .person
            .into_iter()
            .enumerate()
            .map(|(index, person)| validate_person(source, index, person, &channel_names))
            .collect::<Result<Vec<_>, _>>()?;
        unique(source, "person", people.iter().map(|p| p.name.as_str()))?;
        let person_names: HashSet<&str> = people.iter().map(|p| p.name.as_str()).collect();

        let schedules = raw
            .schedule
            .into_iter()
            .enumerate()
            .map(|(index, schedule)| validate_schedule(source, index, schedule, &person_names))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            source,
            "schedule",
            schedules.iter().map(|s| s.name.as_str()),
        )?;
        let schedule_names: HashSet<&str> = schedules.iter().map(|s| s.name.as_str()).collect();

        let names = Names {
            channels: &channel_names,
            people: &person_names,
            schedules: &schedule_names,
        };
        let escalations = raw
            .escalation
            .into_iter()
            .enumerate()
            .map(|(index, policy)| validate_escalation(source, index, policy, &names))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            source,
            "escalation",
            escalations.iter().map(|e| e.name.as_str()),
        )?;
        let escalation_names: HashSet<&str> = escalations.iter().map(|e| e.name.as_str()).collect();

        let routes = raw
            .route
            .into_iter()
            .enumerate()
            .map(|(index, route)| {
                validate_route(source, index, route, &channel_names, &escalation_names)
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            channels,
            routes,
            people,
            schedules,
            escalations,
        })
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|channel| channel.name == name)
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.iter().find(|person| person.name == name)
    }

    pub fn schedule(&self, name: &str) -> Option<&OnCallSchedule> {
        self.schedules.iter().find(|schedule| schedule.name == name)
    }

    pub fn escalation(&self, name: &str) -> Option<&EscalationPolicy> {
        self.escalations.iter().find(|policy| policy.name == name)
    }

    /// Whom an escalation target reaches at `at_ms`: a channel directly, a
    /// person's contacts, or the contacts of whoever is on call (nobody when
    /// the schedule has no one on call then).
    pub fn contacts_for(&self, target: &Target, at_ms: i64) -> Vec<Contact> {
        let person = match target {
            Target::Channel(name) => return vec![Contact::Channel(name.clone())],
            Target::Person(name) => self.person(name),
            Target::Schedule(name) => self
                .schedule(name)
                .and_then(|schedule| super::oncall::on_call(schedule, at_ms))
                .and_then(|on_call| self.person(&on_call.person)),
        };
        person
            .map(|person| person.contacts.clone())
            .unwrap_or_default()
    }
}

struct Names<'a> {
    channels: &'a HashSet<&'a str>,
    people: &'a HashSet<&'a str>,
    schedules: &'a HashSet<&'a str>,
}

fn table_error(
    source: &ConfigSource,
    table: &str,
    index: usize,
    field: &str,
    message: impl Into<String>,
) -> ConfigError {
    source.error(&format!("{table}[{index}].{field}"), message)
}

fn check_name(
    source: &ConfigSource,
    table: &str,
    index: usize,
    name: &str,
) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.trim() != name || name.chars().any(char::is_control) {
        return Err(table_error(
            source,
            table,
            index,
            "name",
            format!("{name:?} is not a name: it must be non-empty without surrounding spaces"),
        ));
    }
    Ok(())
}

fn unique<'a>(
    source: &ConfigSource,
    table: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, name) in names.enumerate() {
        if let Some(first) = seen.insert(name, index) {
            return Err(table_error(
                source,
                table,
                index,
                "name",
                format!("duplicate {table} name {name:?} (also {table}[{first}])"),
            ));
        }
    }
    Ok(())
}

fn validate_channel(
    source: &ConfigSource,
    index: usize,
    raw: RawChannel,
) -> Result<Channel, ConfigError> {
    let error =
        |field: &str, message: String| table_error(source, "channel", index, field, message);
    check_name(source, "channel", index, &raw.name)?;
    let is_email = raw.kind == "email";
    // Keys that belong to one type only; anything else set is a mistake.
    let misplaced = [
        ("url", raw.url.is_some() && is_email),
        (
            "routing_key",
            raw.routing_key.is_some() && raw.kind != "pagerduty",
        ),
        ("secret", raw.secret.is_some() && raw.kind != "webhook"),
        ("smtp_host", raw.smtp_host.is_some() && !is_email),
        ("smtp_port", raw.smtp_port.is_some() && !is_email),
        ("starttls", raw.starttls.is_some() && !is_email),
        ("from", raw.from.is_some() && !is_email),
        ("to", raw.to.is_some() && !is_email),
        ("username", raw.username.is_some() && !is_email),
        ("password_file", raw.password_file.is_some() && !is_email),
    ];
    if let Some((field, _)) = misplaced.iter().find(|(_, wrong)| *wrong) {
        return Err(error(
            field,
            format!("not a setting of {:?} channels", raw.kind),
        ));
    }
    let url = |required: bool| -> Result<String, ConfigError> {
        match &raw.url {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Ok(url.clone())
            }
            Some(url) => Err(error(
                "url",
                format!("{url:?} is not an http:// or https:// URL"),
            )),
            None if required => Err(error(
                "url",
                "missing; this channel type needs a URL".into(),
            )),
            None => Ok(PAGERDUTY_EVENTS_URL.to_string()),
        }
    };
    let kind = match raw.kind.as_str() {
        "webhook" => ChannelKind::Webhook {
            url: url(true)?,
            secret: match raw.secret {
                Some(secret) if secret.expose().is_empty() => {
                    return Err(error("secret", "must not be empty".into()));
                }
                other => other,
            },
        },
        "alertmanager" => ChannelKind::Alertmanager { url: url(true)? },
        "slack" => ChannelKind::Slack { url: url(true)? },
        "pagerduty" => ChannelKind::PagerDuty {
            url: url(false)?,
            routing_key: raw
                .routing_key
                .filter(|key| !key.expose().is_empty())
                .ok_or_else(|| {
                    error(
                        "routing_key",
                        "missing; PagerDuty needs the integration's routing key".into(),
                    )
                })?,
        },
        "email" => {
            let smtp_host = raw
                .smtp_host
                .filter(|host| !host.trim().is_empty())
                .ok_or_else(|| error("smtp_host", "missing".into()))?;
            let from = raw
                .from
                .filter(|from| is_email_address(from))
                .ok_or_else(|| error("from", "missing or not an email address".into()))?;
            let to = raw.to.unwrap_or_default();
            if to.is_empty() {
                return Err(error("to", "must list at least one address".into()));
            }
            if let Some(bad) = to.iter().find(|address| !is_email_address(address)) {
                return Err(error("to", format!("{bad:?} is not an email address")));
            }
            if raw.username.is_some() != raw.password_file.is_some() {
                return Err(error(
                    if raw.username.is_some() {
                        "password_file"
                    } else {
                        "username"
                    },
                    "username and password_file go together".into(),
                ));
            }
            ChannelKind::Email(EmailChannel {
                smtp_host,
                smtp_port: raw.smtp_port.unwrap_or(DEFAULT_SMTP_PORT),
                starttls: raw.starttls.unwrap_or(true),
                from,
                to,
                username: raw.username,
                password_file: raw.password_file.map(|path| source.resolve(&path)),
            })
        }
        other => {
            return Err(error(
                "type",
                format!(
                    "unknown channel type {other:?}; expected webhook, alertmanager, pagerduty, slack or email"
                ),
            ));
        }
    };
    Ok(Channel {
        name: raw.name,
        kind,
    })
}

/// Deliberately loose: one `@` with something on both sides and no spaces
/// or header-breaking characters. The SMTP server has the final word.
fn is_email_address(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ','
                })
        }
        None => false,
    }
}

fn validate_person(
    source: &ConfigSource,
    index: usize,
    raw: RawPerson,
    channels: &HashSet<&str>,
) -> Result<Person, ConfigError> {
    check_name(source, "person", index, &raw.name)?;
    let error = |message: String| table_error(source, "person", index, "channels", message);
    if raw.channels.is_empty() {
        return Err(error(
            "must list at least one way to reach this person".into(),
        ));
    }
    let mut contacts = Vec::with_capacity(raw.channels.len());
    for entry in raw.channels {
        let contact = if let Some(address) = entry.strip_prefix("email:") {
            if !is_email_address(address) {
                return Err(error(format!("{address:?} is not an email address")));
            }
            Contact::Email(address.to_string())
        } else if let Some(number) = entry.strip_prefix("phone:") {
            let digits = number.strip_prefix('+').unwrap_or("");
            if digits.len() < 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(error(format!(
                    "{number:?} is not a phone number in +<country><number> form"
                )));
            }
            Contact::Phone(number.to_string())
        } else if channels.contains(entry.as_str()) {
            Contact::Channel(entry)
        } else if is_email_address(&entry) {
            Contact::Email(entry)
        } else {
            return Err(error(format!(
                "{entry:?} is neither a channel name nor email:/phone: contact"
            )));
        };
        contacts.push(contact);
    }
    Ok(Person {
        name: raw.name,
        contacts,
    })
}

fn validate_schedule(
    source: &ConfigSource,
    index: usize,
    raw: RawSchedule,
    people: &HashSet<&str>,
) -> Result<OnCallSchedule, ConfigError> {
    check_name(source, "schedule", index, &raw.name)?;
    let error =
        |field: &str, message: String| table_error(source, "schedule", index, field, message);
    let time_zone = TimeZone::get(&raw.time_zone).map_err(|cause| {
        error(
            "time_zone",
            format!(
                "unknown time zone {:?} (an IANA name like \"Europe/Berlin\"): {cause}",
                raw.time_zone
            ),
        )
    })?;
    let rotation = match raw.rotation.as_str() {
        "daily" => Rotation::Daily,
        "weekly" => Rotation::Weekly,
        other => {
            return Err(error(
                "rotation",
                format!("unknown rotation {other:?}; expected daily or weekly"),
            ));
        }
    };
    let handoff: Time = raw.handoff.0.parse().map_err(|_| {
        error(
            "handoff",
            format!("{:?} is not a time of day like \"09:00\"", raw.handoff.0),
        )
    })?;
    let start: Date = raw.start.0.parse().map_err(|_| {
        error(
            "start",
            format!("{:?} is not a date like \"2024-01-01\"", raw.start.0),
        )
    })?;
    if raw.members.is_empty() {
        return Err(error("members", "must list at least one person".into()));
    }
    if let Some(unknown) = raw.members.iter().find(|m| !people.contains(m.as_str())) {
        return Err(error(
            "members",
            format!("unknown person {unknown:?}; define it in a [[person]] table"),
        ));
    }
    let mut overrides = Vec::with_capacity(raw.overrides.len());
    for (number, cover) in raw.overrides.into_iter().enumerate() {
        let field = |name: &str| format!("override[{number}].{name}");
        if !people.contains(cover.person.as_str()) {
            return Err(error(
                &field("person"),
                format!("unknown person {:?}", cover.person),
            ));
        }
        let instant = |text: &CivilText, name: &str| -> Result<i64, ConfigError> {
            let civil = parse_civil(&text.0, handoff).ok_or_else(|| {
                error(
                    &field(name),
                    format!(
                        "{:?} is not a date (\"2024-01-01\", meaning the handoff time) or local date-time (\"2024-01-01T12:00\")",
                        text.0
                    ),
                )
            })?;
            time_zone
                .to_timestamp(civil)
                .map(|ts| ts.as_millisecond())
                .map_err(|cause| error(&field(name), format!("out of range: {cause}")))
        };
        let start_ms = instant(&cover.start, "start")?;
        let end_ms = instant(&cover.end, "end")?;
        if end_ms <= start_ms {
            return Err(error(&field("end"), "must be after start".into()));
        }
        overrides.push((
            number,
            Override {
                person: cover.person,
                start_ms,
                end_ms,
            },
        ));
    }
    overrides.sort_by_key(|(_, cover)| cover.start_ms);
    for pair in overrides.windows(2) {
        if let [(_, earlier), (number, later)] = pair
            && later.start_ms < earlier.end_ms
        {
            return Err(error(
                &format!("override[{number}].start"),
                "overlaps another override of this schedule".into(),
            ));
        }
    }
    Ok(OnCallSchedule {
        name: raw.name,
        time_zone,
        rotation,
        handoff,
        start,
        members: raw.members,
        overrides: overrides.into_iter().map(|(_, cover)| cover).collect(),
    })
}

/// `"2024-01-01"` → that date at `handoff`; `"2024-01-01T12:00"` as is.
fn parse_civil(text: &str, handoff: Time) -> Option<DateTime> {
    if let Ok(datetime) = text.parse::<DateTime>()
        && text.contains(['T', 't', ' '])
    {
        return Some(datetime);
    }
    text.parse::<Date>()
        .ok()
        .map(|date| date.to_datetime(handoff))
}

fn validate_escalation(
    source: &ConfigSource,
    index: usize,
    raw: RawEscalation,
    names: &Names<'_>,
) -> Result<EscalationPolicy, ConfigError> {
    check_name(source, "escalation", index, &raw.name)?;
    let error =
        |field: &str, message: String| table_error(source, "escalation", index, field, message);
    if raw.levels.is_empty() {
        return Err(error("levels", "must have at least one level".into()));
    }
    let mut levels = Vec::with_capacity(raw.levels.len());
    for (number, level) in raw.levels.into_iter().enumerate() {
        let field = format!("levels[{number}].notify");
        if level.notify.is_empty() {
            return Err(error(&field, "must name at least one target".into()));
        }
        let mut notify = Vec::with_capacity(level.notify.len());
        for text in &level.notify {
            let target = Target::parse(text).ok_or_else(|| {
                error(
                    &field,
                    format!(
                        "{text:?} is not a target; expected \"schedule:NAME\", \"person:NAME\" or \"channel:NAME\""
                    ),
                )
            })?;
            let (known, kind) = match &target {
                Target::Schedule(name) => (names.schedules.contains(name.as_str()), "schedule"),
                Target::Person(name) => (names.people.contains(name.as_str()), "person"),
                Target::Channel(name) => (names.channels.contains(name.as_str()), "channel"),
            };
            if !known {
                return Err(error(&field, format!("{text:?} names an unknown {kind}")));
            }
            notify.push(target);
        }
        levels.push(EscalationLevel {
            notify,
            after: level.after,
        });
    }
    let repeat_after = raw
        .repeat_after
        .or_else(|| levels.last().map(|level| level.after))
        .unwrap_or_default();
    if raw.repeat > 0 && repeat_after.is_zero() {
        return Err(error(
            "repeat_after",
            "must be more than 0s when repeat is set (it defaults to the last level's `after`)"
                .into(),
        ));
    }
    Ok(EscalationPolicy {
        name: raw.name,
        levels,
        repeat: raw.repeat,
        repeat_after,
        escalate_before_sla: raw.escalate_before_sla,
        sla_margin: raw.sla_margin,
    })
}

fn validate_route(
    source: &ConfigSource,
    index: usize,
    raw: RawRoute,
    channels: &HashSet<&str>,
    escalations: &HashSet<&str>,
) -> Result<Route, ConfigError> {
    let error = |field: &str, message: String| table_error(source, "route", index, field, message);
    if raw.channels.is_empty() && raw.escalation.is_none() {
        return Err(error(
            "channels",
            "a route needs `channels`, `escalation` or both".into(),
        ));
    }
    if let Some(unknown) = raw.channels.iter().find(|c| !channels.contains(c.as_str())) {
        return Err(error(
            "channels",
            format!("unknown channel {unknown:?}; define it in a [[channel]] table"),
        ));
    }
    if let Some(name) = &raw.escalation
        && !escalations.contains(name.as_str())
    {
        return Err(error(
            "escalation",
            format!("unknown escalation policy {name:?}"),
        ));
    }
    let mut matcher = RouteMatch::default();
    for (key, value) in raw.matchers {
        let values = value.into_vec();
        if values.is_empty() {
            return Err(error(
                &format!("match.{key}"),
                "must not be an empty list".into(),
            ));
        }
        match key.as_str() {
            "severity" => matcher.severity = Some(severity_match(&values).ok_or_else(|| {
                error(
                    "match.severity",
                    format!(
                        "{values:?} is not a severity match; expected a name (\"major\"), a minimum (\">=major\") or a list of names"
                    ),
                )
            })?),
            "rule" => matcher.rules = values,
            "tag" => matcher.tags = values,
            "" => return Err(error("match", "label name must not be empty".into())),
            label => {
                matcher.labels.insert(label.to_string(), values);
            }
        }
    }
    let grouped = !raw.group_by.is_empty()
        || raw.group_wait.is_some()
        || raw.group_interval.is_some()
        || raw.storm_threshold.is_some()
        || raw.storm_window.is_some();
    let grouping = if grouped {
        let group_by = raw
            .group_by
            .iter()
            .map(|text| {
                GroupBy::parse(text).ok_or_else(|| {
                    error(
                        "group_by",
                        format!("{text:?} is not a grouping key; expected rule, severity, tag:NAME or a label name"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let group_interval = raw.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL);
        if group_interval < Duration::from_secs(1) {
            return Err(error("group_interval", "must be at least 1s".into()));
        }
        if raw.storm_threshold == Some(0) {
            return Err(error("storm_threshold", "must be at least 1".into()));
        }
        let storm_window = raw.storm_window.unwrap_or(DEFAULT_STORM_WINDOW);
        if storm_window.is_zero() {
            return Err(error("storm_window", "must be more than 0s".into()));
        }
        Some(Grouping {
            group_by,
            group_wait: raw.group_wait.unwrap_or_default(),
            group_interval,
            storm_threshold: raw.storm_threshold,
            storm_window,
        })
    } else {
        None
    };
    Ok(Route {
        matcher,
        channels: raw.channels,
        escalation: raw.escalation,
        continue_matching: raw.continue_matching,
        grouping,
    })
}

/// One `"name"`/`">=name"`, or a list of plain names.
fn severity_match(values: &[String]) -> Option<SeverityMatch> {
    match values {
        [one] => SeverityMatch::parse_one(one),
        many => many
            .iter()
            .map(|name| Severity::from_name(name.trim()))
            .collect::<Option<Vec<_>>>()
            .map(SeverityMatch::AnyOf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[[channel]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/x"
secret = "hmac-SECRET-value"

[[channel]]
name = "pd"
type = "pagerduty"
routing_key = "ROUTING-KEY-VALUE"

[[channel]]
name = "mail"
type = "email"
smtp_host = "smtp.example.com"
from = "steward@example.com"
to = ["ops@example.com"]
username = "steward"
password_file = "smtp.pass"

[[route]]
match = { severity = ">=major", tag = ["prod"], service = "db" }
channels = ["pd"]
escalation = "ops"
continue = true

[[route]]
channels = ["hook", "mail"]

[[person]]
name = "alice"
channels = ["email:alice@example.com", "phone:+4915112345678", "mail", "a2@example.com"]

[[person]]
name = "bob"
channels = ["hook"]

[[schedule]]
name = "ops"
time_zone = "Europe/Berlin"
rotation = "weekly"
handoff = "09:00"
start = 2024-01-01
members = ["alice", "bob"]

[[schedule.override]]
person = "bob"
start = "2024-01-03"
end = "2024-01-04T12:00"

[[escalation]]
name = "ops"
levels = [
  { notify = ["schedule:ops"] },
  { notify = ["person:alice", "channel:pd"], after = "15m" },
]
repeat = 1
escalate_before_sla = true
"#;

    fn load(text: &str) -> Result<NotifyConfig, ConfigError> {
        let source = ConfigSource {
            path: PathBuf::from("/etc/steward/collector.toml"),
            text: text.to_string(),
        };
        let raw: RawNotify = source.parse()?;
        NotifyConfig::validate(&source, raw)
    }

    #[test]
    fn valid_config_loads_with_defaults() {
        let config = load(VALID).unwrap();
        assert_eq!(config.channels.len(), 3);
        assert_eq!(
            config.channel("pd").unwrap().kind,
            ChannelKind::PagerDuty {
                url: PAGERDUTY_EVENTS_URL.into(),
                routing_key: Secret::new("ROUTING-KEY-VALUE"),
            }
        );
        let ChannelKind::Email(mail) = &config.channel("mail").unwrap().kind else {
            panic!("mail is an email channel");
        };
        assert_eq!(mail.smtp_port, 587);
        assert!(mail.starttls);
        assert_eq!(
            mail.password_file.as_deref(),
            Some(std::path::Path::new("/etc/steward/smtp.pass"))
        );
        let route = &config.routes[0];
        assert_eq!(
            route.matcher.severity,
            Some(SeverityMatch::AtLeast(Severity::Major))
        );
        assert_eq!(route.matcher.tags, ["prod"]);
        assert_eq!(route.matcher.labels["service"], ["db"]);
        assert!(route.continue_matching);
        assert_eq!(
            config.person("alice").unwrap().contacts,
            vec![
                Contact::Email("alice@example.com".into()),
                Contact::Phone("+4915112345678".into()),
                Contact::Channel("mail".into()),
                Contact::Email("a2@example.com".into()),
            ]
        );
        let schedule = config.schedule("ops").unwrap();
        assert_eq!(schedule.rotation, Rotation::Weekly);
        // "2024-01-03" means the handoff time that day, Berlin time (UTC+1).
        assert_eq!(
            schedule.overrides[0].start_ms,
            "2024-01-03T08:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        );
        let policy = config.escalation("ops").unwrap();
        assert_eq!(policy.levels[0].after, Duration::ZERO);
        assert_eq!(policy.repeat_after, Duration::from_secs(900));
        assert!(policy.escalate_before_sla);
    }

    #[test]
    fn secrets_are_redacted_from_debug() {
        let config = load(VALID).unwrap();
        let raw: RawNotify = toml::from_str(VALID).unwrap();
        for debug in [format!("{config:?}"), format!("{raw:?}")] {
            assert!(!debug.contains("hmac-SECRET-value"), "{debug}");
            assert!(!debug.contains("ROUTING-KEY-VALUE"), "{debug}");
            assert!(debug.contains("<redacted>"));
        }
    }

    #[test]
    fn contacts_follow_the_schedule() {
        let config = load(VALID).unwrap();
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let ops = Target::Schedule("ops".into());
        // Week 1 is alice's, but bob overrides on the 3rd.
        assert_eq!(
            config.contacts_for(&ops, at("2024-01-02T12:00:00Z"))[0],
            Contact::Email("alice@example.com".into())
        );
        assert_eq!(
            config.contacts_for(&ops, at("2024-01-03T12:00:00Z")),
            vec![Contact::Channel("hook".into())]
        );
        assert!(
            config
                .contacts_for(&ops, at("2023-01-01T00:00:00Z"))
                .is_empty()
        );
        assert_eq!(
            config.contacts_for(&Target::Channel("pd".into()), 0),
            vec![Contact::Channel("pd".into())]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let slack = channel_table("hook");
        let webhook =
            |extra: &str| format!("[[channel]]\nname = \"w\"\ntype = \"webhook\"\n{extra}\n");
        let escalation = |extra: &str| format!("{slack}\n[[escalation]]\nname = \"e\"\n{extra}\n");
        let route = |extra: &str| format!("{slack}\n[[route]]\nchannels = [\"hook\"]\n{extra}\n");
        let cases = [
            (
                format!("{slack}\n[[route]]\nchannels = [\"nope\"]\n"),
                "route[0].channels",
            ),
            (
                format!("{slack}\n[[route]]\ncontinue = true\n"),
                "route[0].channels",
            ),
            (format!("{slack}\n{slack}"), "channel[1].name"),
            (webhook("url = \"ftp://x\""), "channel[0].url"),
            (webhook(""), "channel[0].url"),
            (
                webhook("url = \"https://x\"\nrouting_key = \"k\""),
                "channel[0].routing_key",
            ),
            (
                format!("{slack}type = \"fax\"\n").replace("type = \"slack\"\n", ""),
                "channel[0].type",
            ),
            (
                schedule_with("time_zone = \"Mars/Olympus\""),
                "schedule[0].time_zone",
            ),
            (schedule_with("handoff = \"25:00\""), "schedule[0].handoff"),
            (
                schedule_with("rotation = \"hourly\""),
                "schedule[0].rotation",
            ),
            (schedule_with("members = [\"zed\"]"), "schedule[0].members"),
            (schedule_with("start = \"January\""), "schedule[0].start"),
            (
                escalation("levels = [{ notify = [\"schedule:nope\"] }]"),
                "escalation[0].levels[0].notify",
            ),
            (
                escalation("levels = [{ notify = [\"pager:x\"] }]"),
                "escalation[0].levels[0].notify",
            ),
            (escalation("levels = []"), "escalation[0].levels"),
            (
                escalation("repeat = 2\nlevels = [{ notify = [\"channel:hook\"] }]"),
                "escalation[0].repeat_after",
            ),
            (
                route("match = { severity = \">>major\" }"),
                "route[0].match.severity",
            ),
            (route("escalation = \"nope\""), "route[0].escalation"),
            (route("group_by = [\"tag:\"]"), "route[0].group_by"),
            (route("storm_threshold = 0"), "route[0].storm_threshold"),
            (route("group_interval = \"0s\""), "route[0].group_interval"),
            (
                "[[person]]\nname = \"p\"\nchannels = [\"nowhere\"]\n".to_string(),
                "person[0].channels",
            ),
        ];
        for (text, key) in cases {
            let error = load(&text).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}\n→ {error}");
        }
    }

    #[test]
    fn overlapping_overrides_and_duplicate_people_are_refused() {
        let text = format!(
            "{}\n[[schedule.override]]\nperson = \"alice\"\nstart = \"2024-02-01\"\nend = \"2024-02-03\"\n\
             [[schedule.override]]\nperson = \"alice\"\nstart = \"2024-02-02\"\nend = \"2024-02-04\"\n",
            schedule_with("")
        );
        let error = load(&text).unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("schedule[0].override[1].start"),
            "{error}"
        );
        let duplicate = "[[person]]\nname = \"a\"\nchannels = [\"a@x.org\"]\n\
                         [[person]]\nname = \"a\"\nchannels = [\"a@x.org\"]\n";
        let error = load(duplicate).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("person[1].name"), "{error}");
        assert!(error.message.contains("duplicate"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused_by_the_parser() {
        let text = format!("{}\nbogus = 1\n", channel_table("hook"));
        let error = load(&text).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("channel.bogus"), "{error}");
    }

    fn channel_table(name: &str) -> String {
        format!(
            "[[channel]]\nname = \"{name}\"\ntype = \"slack\"\nurl = \"https://hooks.slack.com/x\"\n"
        )
    }

    /// A schedule table whose keys are replaced by those set in `snippet`.
    fn schedule_with(snippet: &str) -> String {
        let mut keys = vec![
            ("time_zone", "\"UTC\""),
            ("rotation", "\"daily\""),
            ("handoff", "\"09:00\""),
            ("start", "\"2024-01-01\""),
            ("members", "[\"alice\"]"),
        ];
        let mut text = String::from(
            "[[person]]\nname = \"alice\"\nchannels = [\"alice@example.com\"]\n\n[[schedule]]\nname = \"ops\"\n",
        );
        if let Some((key, _)) = snippet.split_once(" = ") {
            keys.retain(|(name, _)| *name != key);
            text.push_str(snippet);
            text.push('\n');
        }
        for (key, value) in keys {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }
}
