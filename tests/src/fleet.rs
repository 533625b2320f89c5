//! The docker-compose fleet of deploy/ as a test fixture: bring it up from the local image,
//! address its nodes from the host, kill, restart and partition them, and tear it down.
//!
//! [`Fleet::up`] runs `deploy/up.sh` (which builds `heimdall:local` offline if it is missing,
//! writes the secrets and waits until every node is healthy); dropping the [`Fleet`] runs
//! `deploy/down.sh --volumes`. Nodes are reached on their published loopback ports; the
//! internal Raft service is called with the fleet's cluster secret ([`ClusterClient`]).
//! [`docker_available`] tells whether the suite can run here at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{build_query, exchange_udp};
use crate::cluster::ClusterClient;
use crate::wait::wait_for;

/// The node ids of the fleet (compose services `node1`..`node3`).
pub const NODES: [u64; 3] = [1, 2, 3];

/// The compose project the tests use (apart from an operator's default `heimdall`).
const PROJECT: &str = "heimdall-test";

/// The docker network the nodes' Raft traffic crosses (`<project>_cluster`).
const CLUSTER_NETWORK: &str = "heimdall-test_cluster";

/// How long to wait for the fleet, an election or a catch-up.
pub const FLEET_DEADLINE: Duration = Duration::from_secs(90);

/// Whether Docker can run the fleet here: Err says why not (for the skip message).
pub fn docker_available() -> Result<(), String> {
    match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "docker info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("docker is not installed ({e})")),
    }
}

/// The repository root (deploy/ lives there).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Runs `program args`, failing with its output when it exits non-zero.
fn run(program: &Path, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .env("HEIMDALL_PROJECT", PROJECT)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A running fleet; dropping it tears it down with its volumes.
#[derive(Debug)]
pub struct Fleet {
    /// deploy/ of this checkout.
    deploy: PathBuf,
    /// A client of the internal Raft service, signed with the fleet's secret.
    pub cluster: ClusterClient,
    /// The admin token of the fleet (for heimdallctl).
    pub token: String,
}

impl Fleet {
    /// Brings the fleet up (stale containers of an earlier run are removed first) and waits
    /// until every node is healthy and one leader is known to all.
    pub fn up() -> Result<Fleet> {
        let deploy = repo_root().join("deploy");
        // A crashed earlier run may have left containers and volumes behind.
        let _ = run(&deploy.join("down.sh"), &["--volumes"]);
        let start = Instant::now();
        let out = run(&deploy.join("up.sh"), &[])?;
        println!(
            "fleet: up in {:.1}s\n{}",
            start.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout)
        );
        let read = |name: &str| -> Result<String> {
            let path = deploy.join("secrets").join(name);
            Ok(std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned())
        };
        let cluster = ClusterClient::new(Some(&read("cluster_secret")?))?;
        let token = read("admin_token")?;
        let fleet = Fleet {
            deploy,
            cluster,
            token,
        };
        let (leader, took) = fleet.wait_leader(&NODES)?;
        println!(
            "fleet: leader {leader} agreed by all in {:.1}s",
            took.as_secs_f64()
        );
        Ok(fleet)
    }

    /// The host address of node `id`'s DNS port.
    pub fn dns(id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 15300 + u16::try_from(id).unwrap_or(0)))
    }

    /// The host address of node `id`'s gRPC port.
    pub fn grpc(id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 15050 + u16::try_from(id).unwrap_or(0)))
    }

    /// Runs deploy/compose.sh with `args`.
    fn compose(&self, args: &[&str]) -> Result<Output> {
        run(&self.deploy.join("compose.sh"), args)
    }

    /// The container id of node `id`.
    pub fn container(&self, id: u64) -> Result<String> {
        let out = self.compose(&["ps", "-q", &format!("node{id}")])?;
        let container = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if container.is_empty() {
            bail!("node{id} has no container");
        }
        Ok(container)
    }

    /// Runs `docker args`.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = run(Path::new("docker"), args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `docker kill` of node `id` (SIGKILL; its restart policy does not bring it back).
    pub fn kill(&self, id: u64) -> Result<()> {
        self.docker(&["kill", &self.container(id)?]).map(drop)
    }

    /// `docker start` of node `id`.
    pub fn start(&self, id: u64) -> Result<()> {
        self.docker(&["start", &self.container(id)?]).map(drop)
    }

    /// `docker restart` of node `id` (SIGTERM, then start).
    pub fn restart(&self, id: u64) -> Result<()> {
        self.docker(&["restart", "-t", "20", &self.container(id)?])
            .map(drop)
    }

    /// Cuts node `id` off the cluster network (it keeps the client network).
    pub fn disconnect_cluster(&self, id: u64) -> Result<()> {
        self.docker(&[
            "network",
            "disconnect",
            CLUSTER_NETWORK,
            &self.container(id)?,
        ])
        .map(drop)
    }

    /// Reattaches node `id` to the cluster network at its compose address.
    pub fn connect_cluster(&self, id: u64) -> Result<()> {
        let ip = format!("10.89.1.{}", 10 + id);
        self.docker(&[
            "network",
            "connect",
            "--ip",
            &ip,
            CLUSTER_NETWORK,
            &self.container(id)?,
        ])
        .map(drop)
    }

    /// Runs heimdallctl inside node `id`'s container against that node.
    pub fn heimdallctl(&self, id: u64, args: &[&str]) -> Result<String> {
        let container = self.container(id)?;
        let mut all = vec![
            "exec",
            container.as_str(),
            "/usr/local/bin/heimdallctl",
            "--endpoint",
            "http://127.0.0.1:50051",
            "--token-file",
            "/run/secrets/admin_token",
        ];
        all.extend_from_slice(args);
        self.docker(&all)
    }

    /// Whether node `id`'s health check reports healthy.
    pub fn healthy(&self, id: u64) -> bool {
        self.container(id)
            .and_then(|c| self.docker(&["inspect", "-f", "{{.State.Health.Status}}", &c]))
            .is_ok_and(|s| s.trim() == "healthy")
    }

    /// Waits until every node of `among` names the same leader (itself one of `among`).
    pub fn wait_leader(&self, among: &[u64]) -> Result<(u64, Duration)> {
        wait_for(FLEET_DEADLINE, "one leader agreed by every node", || {
            let mut leaders = among.iter().map(|&id| {
                self.cluster
                    .metrics(Self::grpc(id))
                    .ok()
                    .and_then(|m| m.leader_id)
            });
            let first = leaders.next()??;
            (among.contains(&first) && leaders.all(|l| l == Some(first))).then_some(first)
        })
    }

    /// Waits until node `id` has applied settings version `version` or later.
    pub fn wait_version(&self, id: u64, version: u64) -> Result<Duration> {
        wait_for(
            FLEET_DEADLINE,
            &format!("node{id} to apply version {version}"),
            || {
                self.cluster
                    .metrics(Self::grpc(id))
                    .ok()
                    .filter(|m| m.settings_version >= version)
            },
        )
        .map(|(_, took)| took)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let start = Instant::now();
        match run(&self.deploy.join("down.sh"), &["--volumes"]) {
            Ok(_) => println!("fleet: down in {:.1}s", start.elapsed().as_secs_f64()),
            Err(e) => eprintln!("fleet: tearing down failed: {e:#}"),
        }
    }
}

/// Names the client load asks for, in turn (all in the demo zone; the last one is NXDOMAIN,
/// which is an answer too).
const LOAD_NAMES: [(&str, RecordType); 5] = [
    ("www.demo.test", RecordType::A),
    ("app.demo.test", RecordType::A),
    ("mail.demo.test", RecordType::A),
    ("info.demo.test", RecordType::TXT),
    ("missing.demo.test", RecordType::A),
];

/// A bounded client load from the host: one query every `interval` to the next node that is
/// marked up, 2 s timeout and 3 tries per query, for at most `max` queries.
#[derive(Debug)]
pub struct Load {
    /// Which nodes the load may use (index = id - 1).
    up: Arc<[AtomicBool; 3]>,
    /// Set to stop the load.
    stop: Arc<AtomicBool>,
    /// Queries answered with NOERROR or NXDOMAIN.
    pub answered: Arc<AtomicU64>,
    /// The load thread; yields the failures (node and reason).
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Load {
    /// Starts the load over every node.
    pub fn start(interval: Duration, max: u64) -> Load {
        let up = Arc::new([
            AtomicBool::new(true),
            AtomicBool::new(true),
            AtomicBool::new(true),
        ]);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let thread = {
            let (up, stop, answered) = (Arc::clone(&up), Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut n: u64 = 0;
                while !stop.load(Ordering::SeqCst) && n < max {
                    let live: Vec<u64> = NODES
                        .iter()
                        .copied()
                        .filter(|&id| up[(id - 1) as usize].load(Ordering::SeqCst))
                        .collect();
                    if let Some(&id) = live.get((n as usize) % live.len().max(1)) {
                        let (name, rtype) = LOAD_NAMES[(n as usize) % LOAD_NAMES.len()];
                        match Self::ask(id, name, rtype) {
                            Ok(()) => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => failures.push(format!("node{id} {name}: {e:#}")),
                        }
                    }
                    n += 1;
                    std::thread::sleep(interval);
                }
                failures
            })
        };
        Load {
            up,
            stop,
            answered,
            thread: Some(thread),
        }
    }

    /// One query to node `id`: Ok for NOERROR or NXDOMAIN.
    fn ask(id: u64, name: &str, rtype: RecordType) -> Result<()> {
        let query = build_query(name, rtype, Some(1232), false)?;
        let reply = exchange_udp(Fleet::dns(id), &query, Duration::from_secs(2), 3)?;
        match reply.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(()),
            other => bail!("answered {other:?}"),
        }
    }

    /// Marks node `id` up or down for the load.
    pub fn set_up(&self, id: u64, up: bool) {
        if let Some(flag) = self.up.get((id - 1) as usize) {
            flag.store(up, Ordering::SeqCst);
        }
    }

    /// Stops the load; returns (answered, failures).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self
            .thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| vec!["load thread panicked".to_owned()])
            })
            .unwrap_or_default();
        (self.answered.load(Ordering::SeqCst), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
