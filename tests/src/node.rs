//! Start real `heimdall` processes on unique loopback addresses and control their lifetime.
//!
//! The binary comes from `HEIMDALL_BIN`, or is built once per test process with the same
//! cargo profile and target directory as the running test binary. When
//! `HEIMDALL_TEST_IO_BACKEND` is set (`epoll`, `auto` or `uring`), every node gets
//! `--io-backend <value>` unless its test chose a backend itself, so the whole suite can run
//! on either UDP backend.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
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

/// The gRPC port every test node listens on (`--grpc-listen`, on the node's own address).
pub const NODE_GRPC_PORT: u16 = 50051;

/// The Prometheus port every test node listens on (`--metrics-listen`, on the node's own
/// address, so parallel nodes never collide).
pub const NODE_METRICS_PORT: u16 = 9153;

/// The admin token every test node gets (`HEIMDALL_ADMIN__TOKEN`) unless its test sets
/// that variable itself (an empty value: no token).
pub const TEST_ADMIN_TOKEN: &str = "heimdall-test-admin-token";

/// The gossip UDP port every test node listens on (`--gossip-listen`, on the node's own
/// address).
pub const NODE_GOSSIP_PORT: u16 = 7946;

/// How long a node may take to answer its first query.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// How long `run_heimdall` lets a process run before killing it.
pub const RUN_DEADLINE: Duration = Duration::from_secs(15);

/// How many log lines a failing test prints.
pub const LOG_TAIL_LINES: usize = 300;

/// The name of the readiness probe query (any reply, whatever the rcode, means ready).
pub const READY_NAME: &str = "ready.invalid.";

/// The environment variable naming the UDP backend every test node runs (`--io-backend`).
pub const IO_BACKEND_ENV: &str = "HEIMDALL_TEST_IO_BACKEND";

/// The environment variable naming a prebuilt `heimdall` binary for the harness to start
/// (otherwise it builds one with the test's profile).
pub const BIN_ENV: &str = "HEIMDALL_BIN";

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
    /// Run the process under a seccomp filter that fails the io_uring system calls with EPERM,
    /// as Docker's default seccomp profile does.
    pub deny_io_uring: bool,
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
    /// The address of its gRPC server (the internal Raft service).
    grpc: SocketAddr,
    /// The address of its Prometheus endpoint (HTTP, /metrics).
    metrics: SocketAddr,
    /// How it was started, so [`Node::restart`] can start it again the same way.
    opts: NodeOpts,
    /// Data dir, config file and log file; removed on drop.
    dir: TempDir,
    /// Where stdout and stderr go.
    log_path: PathBuf,
}

/// The heimdall binary path, built at most once per test process.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The heimdallctl binary path, built at most once per test process.
static CTL_BINARY: OnceLock<PathBuf> = OnceLock::new();

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
    let path = match std::env::var_os(BIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => build_bin("heimdall-node", "heimdall")?,
    };
    if !path.is_file() {
        bail!("heimdall binary {} does not exist", path.display());
    }
    Ok(BINARY.get_or_init(|| path).clone())
}

/// Find the `heimdallctl` binary: `HEIMDALLCTL_BIN`, else build it with the test's own
/// profile.
pub fn heimdallctl_bin() -> Result<PathBuf> {
    if let Some(path) = CTL_BINARY.get() {
        return Ok(path.clone());
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = CTL_BINARY.get() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("HEIMDALLCTL_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_bin("heimdall-client", "heimdallctl")?,
    };
    if !path.is_file() {
        bail!("heimdallctl binary {} does not exist", path.display());
    }
    Ok(CTL_BINARY.get_or_init(|| path).clone())
}

/// Run `cargo build -p <package> --bin <bin>` for the test's profile and target dir.
fn build_bin(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target = target_dir()?;
    let release = !cfg!(debug_assertions);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", package, "--bin", bin, "--target-dir"])
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("running cargo build for {bin}"))?;
    if !output.status.success() {
        bail!(
            "building {bin} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("built {bin} in {:?}", started.elapsed());
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join(bin))
}

/// Whether the options give the node an upstream by flag, variable or config file, or a
/// zone (`--zone-file` without an upstream: authoritative only, it never forwards).
fn names_an_upstream(opts: &NodeOpts) -> bool {
    !opts.upstreams.is_empty()
        || opts
            .extra_args
            .iter()
            .any(|a| a.starts_with("--upstream") || a.starts_with("--zone-file"))
        || opts
            .env
            .iter()
            .any(|(k, _)| k == "HEIMDALL_UPSTREAM__SERVERS")
        || opts
            .config_toml
            .as_deref()
            .is_some_and(|t| t.contains("servers"))
}

/// Run `heimdall` with exactly these arguments and environment, e.g. to test config errors.
/// A process still running after [`RUN_DEADLINE`] is killed (its output is still returned).
pub fn run_heimdall(args: &[String], env: &[(String, String)]) -> Result<Output> {
    let dir = TempDir::new()?;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(heimdall_bin()?)
        // The node rejects unknown HEIMDALL_* variables; these are for the harness.
        .env_remove(IO_BACKEND_ENV)
        .env_remove(BIN_ENV)
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

/// `--io-backend <HEIMDALL_TEST_IO_BACKEND>`, unless the variable is unset or empty or the test
/// chose a backend itself (a flag, or `HEIMDALL_DNS__IO_BACKEND` in its environment).
fn io_backend_args(opts: &NodeOpts) -> Vec<String> {
    let chosen = opts
        .extra_args
        .iter()
        .any(|a| a.starts_with("--io-backend"))
        || opts
            .env
            .iter()
            .any(|(k, _)| k == "HEIMDALL_DNS__IO_BACKEND");
    match std::env::var(IO_BACKEND_ENV) {
        Ok(backend) if !backend.is_empty() && !chosen => vec!["--io-backend".to_owned(), backend],
        _ => Vec::new(),
    }
}

/// `AUDIT_ARCH_*` of this target: the seccomp filter allows everything on any other ABI.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
/// `AUDIT_ARCH_*` of this target: the seccomp filter allows everything on any other ABI.
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Install, in the calling process, a seccomp filter that makes `io_uring_setup`,
/// `io_uring_enter` and `io_uring_register` fail with EPERM and allows every other system call
/// (what Docker's default profile does to io_uring). Meant for `pre_exec`: it only calls
/// prctl(2). The filter survives exec and is inherited by every thread.
fn deny_io_uring() -> io::Result<()> {
    /// A BPF statement.
    const fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    /// A BPF conditional jump: `jt` / `jf` instructions ahead when A == k / A != k.
    const fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }
    /// Offset of the system call number in `struct seccomp_data`.
    const NR: u32 = 0;
    /// Offset of the `AUDIT_ARCH_*` value in `struct seccomp_data`.
    const ARCH: u32 = 4;
    /// Load a 32-bit word of `struct seccomp_data` into the accumulator.
    const LOAD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    /// Return a constant verdict.
    const RET: u32 = libc::BPF_RET | libc::BPF_K;
    /// Verdict: let the call run.
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    /// Verdict: fail the call with EPERM (Docker's default for io_uring).
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut filter = [
        stmt(LOAD, ARCH),
        jeq(AUDIT_ARCH, 1, 0),
        stmt(RET, ALLOW),
        stmt(LOAD, NR),
        jeq(libc::SYS_io_uring_setup as u32, 3, 0),
        jeq(libc::SYS_io_uring_enter as u32, 2, 0),
        jeq(libc::SYS_io_uring_register as u32, 1, 0),
        stmt(RET, ALLOW),
        stmt(RET, EPERM),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl(2) with these options reads only `program`, which points at `filter`; both
    // outlive the calls. NO_NEW_PRIVS is what lets an unprivileged process install a filter.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
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

    /// Start a node listening on `dns` (and, unless `opts` says otherwise, on
    /// `dns.ip():`[`NODE_GRPC_PORT`] for gRPC) and wait until it answers over UDP.
    pub fn start_at(dns: SocketAddr, opts: NodeOpts) -> Result<Node> {
        let dir = TempDir::new().context("creating the node's temp dir")?;
        fs::create_dir_all(dir.path().join("data"))?;
        let log_path = dir.path().join("node.log");
        File::create(&log_path)?;
        let grpc = SocketAddr::new(dns.ip(), NODE_GRPC_PORT);
        let metrics = metrics_listen_arg(&opts)
            .unwrap_or_else(|| SocketAddr::new(dns.ip(), NODE_METRICS_PORT));
        let child = spawn(dir.path(), dns, grpc, &opts)?;
        let mut node = Node {
            child,
            dns,
            grpc,
            metrics,
            opts,
            dir,
            log_path,
        };
        let started = Instant::now();
        node.wait_ready()?;
        println!(
            "node pid {} on {} ready after {:?} (udp backend: {})",
            node.pid(),
            node.dns,
            started.elapsed(),
            node.udp_backend().unwrap_or("not logged")
        );
        Ok(node)
    }

    /// SIGKILL the process (if it runs) and reap it.
    pub fn kill(&mut self) -> Result<()> {
        if self.is_running() {
            self.child.kill().context("killing heimdall")?;
        }
        self.child.wait().context("reaping heimdall")?;
        Ok(())
    }

    /// Start the process again with the same addresses, options and data dir (killing it
    /// first if it still runs) and wait until it answers; its log is appended to.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.child = spawn(self.dir.path(), self.dns, self.grpc, &self.opts)?;
        let started = Instant::now();
        self.wait_ready()?;
        println!(
            "node pid {} on {} restarted, ready after {:?}",
            self.pid(),
            self.dns,
            started.elapsed()
        );
        Ok(())
    }

    /// The address of the node's gRPC server.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The address of the node's Prometheus endpoint (`http://ADDR/metrics`): its own
    /// loopback address, port [`NODE_METRICS_PORT`], or what the test passed as
    /// `--metrics-listen`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }
}

/// The address a test passed as `--metrics-listen ADDR` or `--metrics-listen=ADDR`, if any.
fn metrics_listen_arg(opts: &NodeOpts) -> Option<SocketAddr> {
    let args = &opts.extra_args;
    args.iter().enumerate().find_map(|(i, a)| {
        let value = match a.strip_prefix("--metrics-listen") {
            Some("") => args.get(i + 1)?.as_str(),
            Some(rest) => rest.strip_prefix('=')?,
            None => return None,
        };
        value.parse().ok()
    })
}

/// Spawn heimdall for a node whose files live in `dir` (`data/`, `heimdall.toml`,
/// `node.log`, appended to): DNS on `dns`, gRPC on `grpc` unless `opts` passes
/// `--grpc-listen` itself.
fn spawn(dir: &Path, dns: SocketAddr, grpc: SocketAddr, opts: &NodeOpts) -> Result<Child> {
    let bin = heimdall_bin()?;
    let data_dir = dir.join("data");
    let log = File::options()
        .append(true)
        .create(true)
        .open(dir.join("node.log"))?;
    let mut cmd = Command::new(bin);
    // The node rejects unknown HEIMDALL_* variables; these are for the harness.
    cmd.env_remove(IO_BACKEND_ENV).env_remove(BIN_ENV);
    if let Some(toml) = &opts.config_toml {
        let config = dir.join("heimdall.toml");
        fs::write(&config, toml)?;
        cmd.arg("--config").arg(config);
    }
    cmd.arg("--dns-listen").arg(dns.to_string());
    for upstream in &opts.upstreams {
        cmd.arg("--upstream").arg(upstream.to_string());
    }
    if !names_an_upstream(opts) {
        // Never let a test node fall back to /etc/resolv.conf: its nameserver is not on
        // loopback, and tests send traffic only to 127.0.0.0/8.
        cmd.arg("--upstream").arg(crate::dead_addr(53)?.to_string());
    }
    if !opts
        .extra_args
        .iter()
        .any(|a| a.starts_with("--grpc-listen"))
    {
        cmd.arg("--grpc-listen").arg(grpc.to_string());
    }
    if !opts
        .extra_args
        .iter()
        .any(|a| a.starts_with("--metrics-listen"))
    {
        let metrics = SocketAddr::new(dns.ip(), NODE_METRICS_PORT);
        cmd.arg("--metrics-listen").arg(metrics.to_string());
    }
    if !opts
        .extra_args
        .iter()
        .any(|a| a.starts_with("--gossip-listen"))
    {
        let gossip = SocketAddr::new(dns.ip(), NODE_GOSSIP_PORT);
        cmd.arg("--gossip-listen").arg(gossip.to_string());
    }
    cmd.env("HEIMDALL_ADMIN__TOKEN", TEST_ADMIN_TOKEN);
    cmd.args(["--workers", "1", "--log-format", "text", "--data-dir"])
        .arg(&data_dir)
        .args(io_backend_args(opts))
        .args(&opts.extra_args)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if opts.deny_io_uring {
        // SAFETY: the hook runs in the forked child before exec and only calls prctl(2)
        // with a filter on its own stack: no allocation, no lock, async-signal-safe.
        unsafe {
            cmd.pre_exec(deny_io_uring);
        }
    }
    cmd.spawn().context("spawning heimdall")
}

impl Node {
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

    /// The UDP backend the node logged at startup (`io_uring` or `epoll`), if it did.
    pub fn udp_backend(&self) -> Option<&'static str> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("udp backend: "))?;
        ["io_uring", "epoll"]
            .into_iter()
            .find(|b| line.contains(&format!("udp backend: {b}")))
    }

    /// The address the node serves DNS on (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set size now and at its peak (VmRSS, VmHWM), in KiB.
    pub fn rss_kib(&self) -> Result<(u64, u64)> {
        let pid = self.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .with_context(|| format!("{name} in /proc/{pid}/status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
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
    use anyhow::ensure;

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
        assert!(!opts.deny_io_uring);
    }

    /// A test's own backend choice wins over `HEIMDALL_TEST_IO_BACKEND`.
    #[test]
    fn own_backend_choice_wins() {
        let opts = NodeOpts {
            extra_args: vec!["--io-backend".into(), "epoll".into()],
            ..NodeOpts::default()
        };
        assert!(io_backend_args(&opts).is_empty());
        let opts = NodeOpts {
            env: vec![("HEIMDALL_DNS__IO_BACKEND".into(), "epoll".into())],
            ..NodeOpts::default()
        };
        assert!(io_backend_args(&opts).is_empty());
    }

    /// The seccomp filter refuses io_uring_setup with EPERM and lets other calls through
    /// (checked in a forked child, so this test process keeps io_uring).
    #[test]
    fn seccomp_filter_denies_io_uring() -> Result<()> {
        // SAFETY: fork(2) in a multi-threaded process: the child calls only async-signal-safe
        // functions (prctl, syscall, _exit) before exiting.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match deny_io_uring() {
                Err(_) => 10,
                Ok(()) => {
                    // SAFETY: io_uring_setup with a null params pointer only fails (EPERM from
                    // the filter, or EFAULT if the call got through).
                    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) };
                    // SAFETY: __errno_location returns this thread's errno slot.
                    let errno = unsafe { *libc::__errno_location() };
                    if rc == -1 && errno == libc::EPERM {
                        0
                    } else {
                        11
                    }
                }
            };
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        ensure!(pid > 0, "fork: {}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure!(rc == pid, "waitpid: {}", io::Error::last_os_error());
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}: 10 = filter not installed, 11 = io_uring_setup not denied"
        );
        Ok(())
    }
}
