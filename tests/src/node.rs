//! Start real `heimdall` processes on unique loopback addresses and control their lifetime.
//!
//! The binary comes from `HEIMDALL_BIN`, or is built once per test process with the same
//! cargo profile and target directory as the running test binary.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::addr::unique_addr;
use crate::client::{build_query, exchange_udp};
use crate::wait::POLL_INTERVAL;

/// The DNS port every test node listens on (each node has its own loopback address).
pub const NODE_DNS_PORT: u16 = 5353;

/// How long a node may take to answer its first query.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// How long `run_heimdall` lets a process run before killing it.
pub const RUN_DEADLINE: Duration = Duration::from_secs(15);

/// How many log lines a failing test prints.
pub const LOG_TAIL_LINES: usize = 300;

/// The name of the readiness probe query (any reply, whatever the rcode, means ready).
pub const READY_NAME: &str = "ready.invalid.";

/// How a test wants its node started.
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// Upstream servers, each passed as `--upstream ADDR`.
    pub upstreams: Vec<SocketAddr>,
    /// More command line arguments, appended after the standard ones.
    pub extra_args: Vec<String>,
    /// Environment variables for the process (e.g. `HEIMDALL_CACHE__MAX_TTL`).
    pub env: Vec<(String, String)>,
    /// A config file to write into the data dir and pass with `--config`.
    pub config_toml: Option<String>,
}

impl NodeOpts {
    /// Options with just these upstreams.
    pub fn upstreams(upstreams: &[SocketAddr]) -> NodeOpts {
        NodeOpts {
            upstreams: upstreams.to_vec(),
            ..NodeOpts::default()
        }
    }
}

/// A running `heimdall` process; SIGKILLed on drop if still alive, and its log printed
/// when the dropping thread is panicking (a failing test).
#[derive(Debug)]
pub struct Node {
    /// The child process.
    child: Child,
    /// The address it serves DNS on (UDP and TCP).
    dns: SocketAddr,
    /// Data dir, config file and log file; removed on drop.
    dir: TempDir,
    /// Where stdout and stderr go.
    log_path: PathBuf,
}

/// The heimdall binary path, built at most once per test process.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Serialises the first build so parallel tests wait for one `cargo build`.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The target directory the running test binary lives in (`…/target/<profile>/deps/x` -> `…/target`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot derive the target dir from {}", exe.display()))
}

/// Find the `heimdall` binary: `HEIMDALL_BIN`, else build it with the test's own profile.
pub fn heimdall_bin() -> Result<PathBuf> {
    if let Some(path) = BINARY.get() {
        return Ok(path.clone());
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = BINARY.get() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("HEIMDALL_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_heimdall()?,
    };
    if !path.is_file() {
        bail!("heimdall binary {} does not exist", path.display());
    }
    Ok(BINARY.get_or_init(|| path).clone())
}

/// Run `cargo build -p heimdall-node --bin heimdall` for the test's profile and target dir.
fn build_heimdall() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target = target_dir()?;
    let release = !cfg!(debug_assertions);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "-p",
            "heimdall-node",
            "--bin",
            "heimdall",
            "--target-dir",
        ])
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    let started = Instant::now();
    let output = cmd.output().context("running cargo build for heimdall")?;
    if !output.status.success() {
        bail!(
            "building heimdall failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("built heimdall in {:?}", started.elapsed());
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("heimdall"))
}

/// Run `heimdall` with exactly these arguments and environment, e.g. to test config errors.
/// A process still running after [`RUN_DEADLINE`] is killed (its output is still returned).
pub fn run_heimdall(args: &[String], env: &[(String, String)]) -> Result<Output> {
    let dir = TempDir::new()?;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(heimdall_bin()?)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .context("spawning heimdall")?;
    let status = match wait_child(&mut child, RUN_DEADLINE)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait()?
        }
    };
    Ok(Output {
        status,
        stdout: fs::read(&out_path)?,
        stderr: fs::read(&err_path)?,
    })
}

/// Poll a child until it exits or `timeout` passes.
fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

impl Node {
    /// Start a node on a unique `127.x.y.z:5353` and wait until it answers over UDP.
    pub fn start(opts: NodeOpts) -> Result<Node> {
        let dns = unique_addr(NODE_DNS_PORT)?;
        Self::start_at(dns, opts)
    }

    /// Start a node listening on `dns` and wait until it answers over UDP.
    pub fn start_at(dns: SocketAddr, opts: NodeOpts) -> Result<Node> {
        let bin = heimdall_bin()?;
        let dir = TempDir::new().context("creating the node's temp dir")?;
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir)?;
        let log_path = dir.path().join("node.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        if let Some(toml) = &opts.config_toml {
            let config = dir.path().join("heimdall.toml");
            fs::write(&config, toml)?;
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--dns-listen").arg(dns.to_string());
        for upstream in &opts.upstreams {
            cmd.arg("--upstream").arg(upstream.to_string());
        }
        cmd.args(["--workers", "1", "--log-format", "text", "--data-dir"])
            .arg(&data_dir)
            .args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("spawning heimdall")?;
        let mut node = Node {
            child,
            dns,
            dir,
            log_path,
        };
        let started = Instant::now();
        node.wait_ready()?;
        println!(
            "node pid {} on {} ready after {:?}",
            node.pid(),
            node.dns,
            started.elapsed()
        );
        Ok(node)
    }

    /// Poll with a readiness query until any reply arrives, the process dies, or the
    /// deadline passes (the last two are errors that include the log).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        let probe = build_query(READY_NAME, RecordType::A, None, false)?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "heimdall exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if exchange_udp(self.dns, &probe, Duration::from_millis(250), 1).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "heimdall did not answer on {} within {READY_DEADLINE:?}; log:\n{}",
                    self.dns,
                    self.log()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The address the node serves DNS on (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the node wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    /// Send a signal (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // which is not reaped before `wait_exit`/drop, so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` for the process to exit; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout).ok().flatten()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last [`LOG_TAIL_LINES`] lines of the log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Attach the tail of the node's log to an error, so a failing test shows it.
    pub fn attach_log<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            e.context(format!(
                "---- heimdall log tail (pid {}, {}) ----\n{}\n---- end of log ----",
                self.child.id(),
                self.dns,
                self.log_tail()
            ))
        })
    }
}

impl Drop for Node {
    /// Kill the process if it is still alive and print its log when a test is failing.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- heimdall log tail (pid {}, {}) ----\n{}\n---- end of log ----",
                self.child.id(),
                self.dns,
                self.log_tail()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target dir derived from the test binary holds the profile dir with `deps`.
    #[test]
    fn derives_target_dir() -> Result<()> {
        let target = target_dir()?;
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert!(
            target.join(profile).join("deps").is_dir(),
            "{}",
            target.display()
        );
        Ok(())
    }

    /// Default options name no upstream, flag, variable or config file.
    #[test]
    fn default_opts_are_empty() {
        let opts = NodeOpts::default();
        assert!(opts.upstreams.is_empty() && opts.extra_args.is_empty());
        assert!(opts.env.is_empty() && opts.config_toml.is_none());
    }
}
