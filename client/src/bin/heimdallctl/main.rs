//! `heimdallctl`: manage Heimdall nodes through their gRPC control plane.
//!
//! Every failure ends the command with exit code 1 and one line on stderr naming the endpoint
//! and the reason.

mod args;
mod commands;
mod fleet;
mod format;
mod top;
mod transfer;
mod views;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::args::{Cli, Command};
use crate::fleet::Fleet;

/// Parses the command line, runs the command and turns an error into one stderr line.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("heimdallctl: {line}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command on a tokio runtime (completions need none).
fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        commands::completions(shell);
        return Ok(());
    }
    let fleet = Fleet::from_flags(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(commands::run(cli.command, &fleet))
}
