//! heimdallctl integration suite: the real `heimdallctl` binary (and the client library it is
//! built on) against real `heimdall` nodes on loopback, every command in table and JSON output.
//!
//! Every node gets the harness' admin token ([`TOKEN`]); the binary comes from
//! `HEIMDALLCTL_BIN`, or is built once with the test's own profile and target directory.

mod cache;
mod cluster;
mod config;
mod errors;
mod node;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use heimdall_tests::{AuthServer, Node, NodeOpts, Zone, query_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

/// The admin token the harness gives every test node.
pub const TOKEN: &str = heimdall_tests::node::TEST_ADMIN_TOKEN;

/// The name heimdallctl records in the config history in these tests.
pub const ACTOR: &str = "ctl-test@loopback";

/// Generous deadline for a change to reach a node, or a leader to be elected.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// The heimdallctl binary path, found or built at most once per test process.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Serialises the first build so parallel tests wait for one `cargo build`.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests that start a cluster (several processes each).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the suite's cluster lock for one test (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `heimdallctl` binary: `HEIMDALLCTL_BIN`, else built with the test's own profile.
pub fn ctl_bin() -> Result<PathBuf> {
    if let Some(path) = BINARY.get() {
        return Ok(path.clone());
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = BINARY.get() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("HEIMDALLCTL_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_ctl()?,
    };
    ensure!(
        path.is_file(),
        "heimdallctl binary {} does not exist",
        path.display()
    );
    Ok(BINARY.get_or_init(|| path).clone())
}

/// Runs `cargo build -p heimdall-client --bin heimdallctl` into the test's target dir.
fn build_ctl() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // …/target/<profile>/deps/ctl-xxxx -> …/target
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow!("cannot derive the target dir from {}", exe.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "-p",
            "heimdall-client",
            "--bin",
            "heimdallctl",
            "--target-dir",
        ])
        .arg(target);
    if release {
        cmd.arg("--release");
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .context("running cargo build for heimdallctl")?;
    ensure!(
        output.status.success(),
        "building heimdallctl failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("built heimdallctl in {:?}", started.elapsed());
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("heimdallctl"))
}

/// The control-plane endpoint of a node, as heimdallctl takes it.
pub fn endpoint(node: &Node) -> String {
    format!("http://{}", node.grpc_addr())
}

/// How heimdallctl is invoked: endpoints and token.
#[derive(Clone, Debug)]
pub struct Ctl {
    /// `--endpoint` values, in order.
    pub endpoints: Vec<String>,
    /// `--token` value (None: no token).
    pub token: Option<String>,
}

/// What one heimdallctl run produced.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Ctl {
    /// heimdallctl for these nodes, with the test token.
    pub fn new(nodes: &[&Node]) -> Ctl {
        Ctl {
            endpoints: nodes.iter().map(|n| endpoint(n)).collect(),
            token: Some(TOKEN.to_owned()),
        }
    }

    /// The same, with another token (None: no token).
    pub fn with_token(&self, token: Option<&str>) -> Ctl {
        Ctl {
            endpoints: self.endpoints.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// Runs heimdallctl with the endpoints, token and actor, then `args`.
    pub fn run(&self, args: &[&str]) -> Result<Run> {
        let mut cmd = Command::new(ctl_bin()?);
        cmd.env_remove("HEIMDALLCTL_ENDPOINT")
            .env_remove("HEIMDALLCTL_TOKEN")
            .args(["--as", ACTOR, "--timeout", "30"]);
        for endpoint in &self.endpoints {
            cmd.args(["--endpoint", endpoint]);
        }
        if let Some(token) = &self.token {
            cmd.args(["--token", token]);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.args(args).output().context("running heimdallctl")?;
        Ok(Run {
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs `args` and returns stdout; fails unless the exit code is 0 and stderr is empty.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args)?;
        ensure!(
            run.success && run.stderr.is_empty(),
            "heimdallctl {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        Ok(run.stdout)
    }

    /// Runs `args` with `--output json` and parses stdout as one JSON document.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let stdout = self.ok(&args)?;
        serde_json::from_str(&stdout)
            .with_context(|| format!("heimdallctl {args:?} printed no JSON document:\n{stdout}"))
    }

    /// Runs `args` expecting failure: a non-zero exit and exactly one stderr line, which is
    /// returned.
    pub fn fail(&self, args: &[&str]) -> Result<String> {
        let run = self.run(args)?;
        ensure!(
            !run.success,
            "heimdallctl {args:?} should have failed; stdout:\n{}",
            run.stdout
        );
        let lines: Vec<&str> = run.stderr.lines().collect();
        ensure!(
            lines.len() == 1,
            "heimdallctl {args:?} should print one error line, got:\n{}",
            run.stderr
        );
        Ok(lines[0].to_owned())
    }
}

/// The result of the only node in a node-local JSON answer (`[{"endpoint", "result"}]`).
pub fn only_result(json: &Value) -> Result<&Value> {
    let nodes = json
        .as_array()
        .ok_or_else(|| anyhow!("not an array of node results: {json}"))?;
    ensure!(nodes.len() == 1, "want one node result, got {json}");
    nodes[0]
        .get("result")
        .ok_or_else(|| anyhow!("no result: {json}"))
}

/// The zone the tests' upstream serves.
pub fn zone() -> Zone {
    let a = |last: u8| RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, last)));
    Zone::new("example.test.")
        .soa(3600, 300)
        .add("www", 300, a(1))
        .add(
            "www",
            300,
            RData::AAAA(AAAA(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            ))),
        )
        .add("mail", 300, a(2))
        .add("a.sub", 300, a(3))
        .add("b.sub", 300, a(4))
}

/// A node with a real upstream and the admin token.
#[derive(Debug)]
pub struct Setup {
    /// The authoritative upstream.
    pub auth: AuthServer,
    /// The node under test.
    pub node: Node,
}

impl Setup {
    /// Starts the upstream and a node forwarding to it.
    pub fn start() -> Result<Setup> {
        let auth = AuthServer::start(zone())?;
        let node = start_node(&[auth.addr()])?;
        // Tests compare versions and edit the upstream list: start from the seeded settings.
        let seeded = heimdall_tests::control::Control::new(node.grpc_addr())
            .and_then(|control| control.wait_seeded(CONVERGE));
        node.attach_log(seeded)?;
        Ok(Setup { auth, node })
    }

    /// heimdallctl for this node.
    pub fn ctl(&self) -> Ctl {
        Ctl::new(&[&self.node])
    }

    /// Runs `body`, attaching the node's log to a failure.
    pub fn run(&self, body: impl FnOnce(&Setup) -> Result<()>) -> Result<()> {
        self.node.attach_log(body(self))
    }

    /// Resolves `name`/`rtype` through the node (filling its cache); fails unless answered.
    pub fn resolve(&self, name: &str, rtype: RecordType) -> Result<()> {
        resolve(self.node.dns_addr(), name, rtype)
    }
}

/// Starts a node with these upstreams (and the harness' admin token).
pub fn start_node(upstreams: &[SocketAddr]) -> Result<Node> {
    Node::start(NodeOpts::upstreams(upstreams))
}

/// Resolves `name`/`rtype` through the node at `dns`; fails unless it answers NOERROR with
/// records.
pub fn resolve(dns: SocketAddr, name: &str, rtype: RecordType) -> Result<()> {
    let reply = query_udp(dns, name, rtype, None, false)?;
    if reply.response_code != ResponseCode::NoError || reply.answers.is_empty() {
        bail!("{name} {rtype} through {dns}: {reply}");
    }
    Ok(())
}

/// The entries a node-local `cache lookup` JSON answer lists for the only node.
pub fn lookup_entries(ctl: &Ctl, name: &str, rtype: &str) -> Result<Vec<Value>> {
    let json = ctl.json(&["cache", "lookup", name, rtype])?;
    let entries = only_result(&json)?
        .as_array()
        .ok_or_else(|| anyhow!("lookup result is no array: {json}"))?;
    Ok(entries.clone())
}
