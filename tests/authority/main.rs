//! Authoritative-answer integration suite: real `heimdall` processes answering a zone file
//! (`--zone-file`), forwarding to such a node, local records set through Raft, and
//! `heimdall demo`.
//!
//! Every node runs with `--workers 1` on its own loopback address; the tests that start
//! several processes (a cluster, the demo) run one at a time ([`serial`]); every wait is a
//! condition with a generous deadline.

mod config;
mod demo;
mod local;
mod zone;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use heimdall_node::authority::demo::DEMO_ZONE;
use heimdall_tests::{Node, NodeOpts};
use tempfile::TempDir;

/// Generous deadline for a cluster to converge or the demo to come up.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Serializes the tests that start several processes.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the suite's lock for the duration of one test (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zone file written into its own temporary directory.
#[derive(Debug)]
pub struct ZoneFile {
    /// Keeps the directory alive.
    _dir: TempDir,
    /// The file.
    pub path: PathBuf,
}

/// Writes `text` as a zone file.
pub fn zone_file(text: &str) -> Result<ZoneFile> {
    let dir = TempDir::new().context("creating the zone's temp dir")?;
    let path = dir.path().join("demo.zone");
    std::fs::write(&path, text).context("writing the zone file")?;
    Ok(ZoneFile { _dir: dir, path })
}

/// Starts a node serving the demo zone with no upstream (authoritative only).
pub fn start_zone_node() -> Result<(Node, ZoneFile)> {
    let file = zone_file(DEMO_ZONE)?;
    let node = Node::start(NodeOpts {
        extra_args: vec!["--zone-file".to_owned(), file.path.display().to_string()],
        ..NodeOpts::default()
    })?;
    Ok((node, file))
}
