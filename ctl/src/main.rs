//! `stewardctl`: parse arguments, run, print, exit 0/1/2 (see `lib.rs`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use steward_ctl::cli::Cli;
use steward_ctl::config::Environment;

fn main() -> ExitCode {
    steward_core::tls::install_crypto_provider();
    // Usage errors exit 2 here, `--help` and `--version` 0.
    let cli = Cli::parse();
    match steward_ctl::run(&cli, &Environment::from_process()) {
        Ok(text) => {
            // A closed pipe (`stewardctl incidents | head`) is not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("stewardctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
