//! A zone file that does not load stops the node at start: exit code 2, naming
//! `authority.zone_file`, the file and line, and the reason.

use std::process::Output;

use anyhow::{Result, ensure};
use heimdall_tests::{run_heimdall, unique_addr};
use tempfile::TempDir;

use crate::zone_file;

/// Runs heimdall with `args` plus a DNS address and data dir of its own.
fn run(args: &[String]) -> Result<Output> {
    let dir = TempDir::new()?;
    let mut all = vec![
        "--dns-listen".to_owned(),
        unique_addr(5353)?.to_string(),
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
    ];
    all.extend_from_slice(args);
    run_heimdall(&all, &[])
}

/// Fails unless `output` is exit code 2 with every `needle` on stderr.
fn expect_exit_2(output: &Output, needles: &[&str]) -> Result<()> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(2),
        "status {}: {stderr}",
        output.status
    );
    for needle in needles {
        ensure!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    println!("{}", stderr.trim());
    Ok(())
}

/// A malformed record, a missing file and a zone without SOA each exit 2 with the key, the
/// file:line and the reason.
#[test]
fn bad_zone_file_exits_2_naming_key_and_line() -> Result<()> {
    let bad = zone_file(
        "$ORIGIN bad.test.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n; fine so far\nwww A 192.0.2.300\n",
    )?;
    let path = bad.path.display().to_string();
    let output = run(&["--zone-file".to_owned(), path.clone()])?;
    expect_exit_2(
        &output,
        &[
            "authority.zone_file",
            &format!("{path}:5:"),
            "not an IPv4 address",
        ],
    )?;

    // The same through the config file key.
    let dir = TempDir::new()?;
    let config = dir.path().join("heimdall.toml");
    std::fs::write(&config, format!("[authority]\nzone_file = {path:?}\n"))?;
    let output = run(&["--config".to_owned(), config.display().to_string()])?;
    expect_exit_2(&output, &["authority.zone_file", &format!("{path}:5:")])?;

    let missing = dir.path().join("missing.zone").display().to_string();
    let output = run(&["--zone-file".to_owned(), missing.clone()])?;
    expect_exit_2(
        &output,
        &["authority.zone_file", &missing, "cannot read the file"],
    )?;

    let no_soa = zone_file("$ORIGIN x.test.\n$TTL 60\nwww A 192.0.2.1\n")?;
    let output = run(&["--zone-file".to_owned(), no_soa.path.display().to_string()])?;
    expect_exit_2(&output, &["authority.zone_file", "no SOA record"])?;
    Ok(())
}
