//! `stewardctl`: the collector's HTTP API from a terminal or a script.
//!
//! Layout: [`cli`] (arguments) → [`config`] (flags, environment, `ctl.toml`)
//! → [`client`] (HTTP, paging, errors) → [`commands`] (one request per
//! subcommand) → [`views`]/[`table`] (human text). [`error`] maps every
//! failure to the exit status scripts rely on: 0 ok, 1 refused or
//! unreachable, 2 usage or configuration.

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod table;
pub mod views;

use crate::cli::Cli;
use crate::error::CtlError;

/// Resolves settings, runs the command and returns the text to print.
pub fn run(cli: &Cli, env: &config::Environment) -> Result<String, CtlError> {
    let flags = config::Flags {
        url: cli.url.clone(),
        token_file: cli.token_file.clone(),
        ca_file: cli.ca_file.clone(),
        config: cli.config.clone(),
    };
    let settings = config::resolve(&flags, env)?;
    if let Some(warning) = plain_http_warning(&settings.url) {
        eprintln!("stewardctl: {warning}");
    }
    let client = client::ApiClient::new(&settings, cli.page_size)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CtlError::Usage(format!("cannot start the async runtime: {error}")))?;
    let output = runtime.block_on(commands::execute(
        &cli.command,
        &client,
        steward_core::now_ms(),
    ))?;
    Ok(if cli.json {
        let mut text = serde_json::to_string_pretty(&output.json)
            .map_err(|error| CtlError::Protocol(error.to_string()))?;
        text.push('\n');
        text
    } else {
        output.human
    })
}

/// A warning for settings that work but leak: a token sent in clear text
/// to another machine.
pub fn plain_http_warning(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    (url.scheme() == "http" && !loopback).then(|| {
        format!("warning: {url} is plain HTTP: the API token crosses the network unencrypted")
    })
}
