//! The command line (clap): global connection flags, `--json`, and one
//! subcommand per operation. clap exits 2 on a usage error by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stewardctl",
    version,
    about = "Command-line client of the Steward collector",
    after_help = "Settings: --url/--token-file/--ca-file, else STEWARD_URL/STEWARD_TOKEN/STEWARD_CA_FILE, \
                  else ~/.config/steward/ctl.toml (url, token or token_file, ca_file).\n\
                  Exit status: 0 ok, 1 refused by the collector or unreachable, 2 usage or configuration error."
)]
pub struct Cli {
    /// The collector's API, e.g. https://collector.example:7080.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the API token (never pass the token itself on the command line).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// collector with a private CA.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// ctl.toml to read instead of ~/.config/steward/ctl.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the collector's JSON (lists: one array of every item) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Items asked for per page of a list.
    #[arg(long, global = true, default_value_t = 500, hide = true)]
    pub page_size: u32,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List incidents, newest first.
    Incidents {
        /// Only incidents in this state (`unresolved`: open or acknowledged).
        #[arg(long, value_parser = ["open", "acknowledged", "unresolved", "flapping", "suppressed", "resolved"])]
        state: Option<String>,
        /// Only incidents of this severity.
        #[arg(long, value_parser = ["critical", "major", "minor", "warning", "info"])]
        severity: Option<String>,
        /// Only incidents of this agent (its id).
        #[arg(long, value_name = "AGENT_ID")]
        agent: Option<String>,
        /// Only incidents of hosts whose name contains this text (any case).
        #[arg(long)]
        host: Option<String>,
    },
    /// One incident with its timeline.
    Incident { id: i64 },
    /// Acknowledge an incident.
    Ack {
        id: i64,
        /// A note recorded with the acknowledgement.
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an incident.
    Resolve { id: i64 },
    /// Add a note to an incident's timeline.
    Note { id: i64, text: String },
    /// List assets (the CMDB).
    Assets {
        /// Only assets in this lifecycle state.
        #[arg(long, value_parser = ["in_stock", "active", "in_repair", "stale", "missing", "retired", "disposed"])]
        status: Option<String>,
        /// Only assets with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Free text over host name, serial, IPs, owner, notes...
        #[arg(long, short = 'q')]
        query: Option<String>,
    },
    /// One asset.
    Asset { id: String },
    /// List agents and whether they are connected.
    Agents,
    /// Who is on call now and next, per schedule.
    Oncall,
    /// Maintenance windows.
    #[command(subcommand)]
    Maintenance(Maintenance),
}

#[derive(Debug, Subcommand)]
pub enum Maintenance {
    /// Open a maintenance window: its incidents do not page.
    Create(NewWindow),
    /// Windows that have not ended.
    List,
    /// End a window now.
    End { id: i64 },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("targets").required(true).multiple(true).args(["tag", "asset"])))]
#[command(group(ArgGroup::new("span").required(true).args(["duration", "until"])))]
pub struct NewWindow {
    /// Assets with this tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// This asset id (repeatable).
    #[arg(long)]
    pub asset: Vec<String>,
    /// How long, from the start: 30m, 2h, 1d.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<String>,
    /// End time, RFC 3339 (2026-12-02T18:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<String>,
    /// Start time, RFC 3339; default now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start: Option<String>,
    /// Why (shown to whoever looks at the held incidents).
    #[arg(long)]
    pub reason: Option<String>,
    /// Change reference (ticket), e.g. CHG-42.
    #[arg(long, value_name = "REF")]
    pub change: Option<String>,
    /// A change record of this collector (its id) the window belongs to.
    #[arg(long, value_name = "ID")]
    pub change_id: Option<i64>,
}

/// Checked here so a typo is a usage error (exit 2), sent as written.
fn parse_duration(text: &str) -> Result<String, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration > Duration::ZERO => Ok(text.to_string()),
        Ok(_) => Err("must be longer than zero".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_time(text: &str) -> Result<String, String> {
    humantime::parse_rfc3339_weak(text)
        .map(|_| text.to_string())
        .map_err(|error| format!("{error}; expected RFC 3339, e.g. 2026-12-02T18:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn maintenance_needs_targets_and_one_span() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["stewardctl", "maintenance", "create"]
                    .iter()
                    .chain(args.iter()),
            )
        };
        assert!(parse(&["--tag", "web", "--for", "2h"]).is_ok());
        for bad in [
            &["--for", "2h"][..],
            &["--tag", "web"],
            &[
                "--tag",
                "web",
                "--for",
                "2h",
                "--until",
                "2026-12-02T18:00:00Z",
            ],
            &["--tag", "web", "--for", "soon"],
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
    }
}
