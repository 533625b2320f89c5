//! A small blocking client for the internal Raft gRPC service, and helpers to start a
//! cluster of real `heimdall` processes.
//!
//! [`ClusterClient`] signs every call with the cluster secret exactly as nodes do
//! ([`heimdall_node::cluster::network::authenticated`]); it owns a tokio runtime so the tests
//! stay plain blocking functions like the rest of the harness. [`ClusterSpec`] picks a unique
//! loopback address per node and writes each node's config file (node id, gRPC address,
//! `cluster.initial_members`, the secret and the election timeout).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use heimdall_node::cluster::network::{self, method};
use heimdall_node::cluster::{ClusterState, Command, CommandResponse};
use heimdall_node::config::Secret;
use heimdall_proto::v1::raft_service_client::RaftServiceClient;
use heimdall_proto::v1::{
    AddLearnerRequest, ChangeMembershipRequest, ClientWriteRequest, JoinRequest, Member,
    MembersReply, MembersRequest, MembershipReply, MetricsReply, MetricsRequest, RaftPayload,
    RaftReply, StateRequest,
};
use tonic::transport::{Channel, ClientTlsConfig};

use crate::addr::{dead_addr, unique_addr};
use crate::node::{NODE_DNS_PORT, NODE_GRPC_PORT, Node, NodeOpts};

/// The cluster secret the test clusters share.
pub const TEST_SECRET: &str = "heimdall-test-cluster-secret-0123456789";

/// Election timeout of test clusters, in milliseconds (>= 1 s, so a loaded 2-core CI machine
/// does not cause spurious elections).
pub const TEST_ELECTION_TIMEOUT_MS: u64 = 1000;

/// Deadline of one call from the test client.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of a write through ClientWrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The state machine's answer.
    pub response: CommandResponse,
    /// The log index it was committed at (0 when refused before the log).
    pub log_index: u64,
    /// The leader that committed it.
    pub leader: u64,
}

/// A blocking client of the internal Raft service.
#[derive(Debug)]
pub struct ClusterClient {
    /// Runs the async tonic calls.
    runtime: tokio::runtime::Runtime,
    /// The secret calls are signed with (None: unsigned calls).
    secret: Option<Secret>,
    /// TLS towards the nodes (None: plain `http`).
    tls: Option<ClientTlsConfig>,
}

impl ClusterClient {
    /// A client signing with `secret` (None: sends no authentication).
    pub fn new(secret: Option<&str>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the client runtime")?;
        Ok(Self {
            runtime,
            secret: secret.map(Secret::new),
            tls: None,
        })
    }

    /// The same client calling over TLS with `tls` (nodes with `[tls]`).
    pub fn with_tls(self, tls: ClientTlsConfig) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }

    /// A client signing with [`TEST_SECRET`].
    pub fn with_test_secret() -> Result<Self> {
        Self::new(Some(TEST_SECRET))
    }

    /// A signed request with the client's deadline.
    fn request<T: prost::Message>(&self, method: &str, message: T) -> tonic::Request<T> {
        let mut request = network::authenticated(self.secret.as_ref(), method, message);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A client for the node at `addr` (connects on first use), over TLS when configured;
    /// called inside the client's runtime.
    fn client(&self, addr: SocketAddr) -> Result<RaftServiceClient<Channel>> {
        Ok(network::client(network::lazy_channel(
            &addr.to_string(),
            self.tls.as_ref(),
        )?))
    }

    /// Proposes `command` through the node at `addr` (a follower forwards it).
    pub fn write(&self, addr: SocketAddr, command: &Command) -> Result<Written> {
        let command_json = serde_json::to_vec(command)?;
        let request = self.request(
            method::CLIENT_WRITE,
            ClientWriteRequest {
                command_json,
                forwarded: false,
            },
        );
        let reply = self
            .runtime
            .block_on(async {
                self.client(addr)?
                    .client_write(request)
                    .await
                    .map_err(status)
            })
            .with_context(|| format!("ClientWrite to {addr}"))?
            .into_inner();
        Ok(Written {
            response: serde_json::from_slice(&reply.response_json)?,
            log_index: reply.log_index,
            leader: reply.leader_id,
        })
    }

    /// Sets `key` to `value` through the node at `addr`, as author "test".
    pub fn set(&self, addr: SocketAddr, key: &str, value: &str) -> Result<Written> {
        self.write(addr, &set_command(key, value))
    }

    /// The members and leader as the node at `addr` knows them.
    pub fn members(&self, addr: SocketAddr) -> Result<MembersReply> {
        let request = self.request(method::MEMBERS, MembersRequest {});
        Ok(self
            .runtime
            .block_on(async { self.client(addr)?.members(request).await.map_err(status) })
            .with_context(|| format!("Members from {addr}"))?
            .into_inner())
    }

    /// The Raft metrics of the node at `addr`.
    pub fn metrics(&self, addr: SocketAddr) -> Result<MetricsReply> {
        let request = self.request(method::METRICS, MetricsRequest {});
        Ok(self
            .runtime
            .block_on(async { self.client(addr)?.metrics(request).await.map_err(status) })
            .with_context(|| format!("Metrics from {addr}"))?
            .into_inner())
    }

    /// The cluster state from the node at `addr` (its applied state, or a linearizable read).
    pub fn state(&self, addr: SocketAddr, linearizable: bool) -> Result<ClusterState> {
        let request = self.request(method::STATE, StateRequest { linearizable });
        let reply = self
            .runtime
            .block_on(async { self.client(addr)?.state(request).await.map_err(status) })
            .with_context(|| format!("State from {addr}"))?
            .into_inner();
        Ok(serde_json::from_slice(&reply.state_json)?)
    }

    /// Asks the leader at `addr` to add node `id` (gRPC at `grpc`, DNS at `dns`) as a
    /// learner, wait for it to catch up and make it a voter.
    pub fn join(
        &self,
        addr: SocketAddr,
        id: u64,
        grpc: SocketAddr,
        dns: SocketAddr,
    ) -> Result<MembershipReply> {
        let member = Member {
            id,
            grpc_addr: grpc.to_string(),
            dns_addr: dns.to_string(),
            gossip_addr: String::new(),
            voter: true,
        };
        let request = self.request(
            method::JOIN,
            JoinRequest {
                member: Some(member),
            },
        );
        Ok(self
            .runtime
            .block_on(async { self.client(addr)?.join(request).await.map_err(status) })
            .with_context(|| format!("Join through {addr}"))?
            .into_inner())
    }

    /// Sends the address announcement a member makes of itself (AddLearner with
    /// `update_only`) for node `id` at `grpc`/`dns` to `addr`; returns the gRPC status code on
    /// failure.
    pub fn announce(
        &self,
        addr: SocketAddr,
        id: u64,
        grpc: SocketAddr,
        dns: SocketAddr,
    ) -> Result<std::result::Result<MembershipReply, tonic::Code>> {
        let member = Member {
            id,
            grpc_addr: grpc.to_string(),
            dns_addr: dns.to_string(),
            gossip_addr: String::new(),
            voter: false,
        };
        let request = self.request(
            method::ADD_LEARNER,
            AddLearnerRequest {
                member: Some(member),
                blocking: false,
                update_only: true,
            },
        );
        self.runtime.block_on(async {
            Ok(self
                .client(addr)?
                .add_learner(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.code()))
        })
    }

    /// Asks the leader at `addr` to make exactly `voters` the voters (removed voters are
    /// dropped from the cluster unless `retain`).
    pub fn change_membership(
        &self,
        addr: SocketAddr,
        voters: &[u64],
        retain: bool,
    ) -> Result<MembershipReply> {
        let request = self.request(
            method::CHANGE_MEMBERSHIP,
            ChangeMembershipRequest {
                voters: voters.to_vec(),
                retain,
            },
        );
        Ok(self
            .runtime
            .block_on(async {
                self.client(addr)?
                    .change_membership(request)
                    .await
                    .map_err(status)
            })
            .with_context(|| format!("ChangeMembership through {addr}"))?
            .into_inner())
    }

    /// Sends a raw Vote or AppendEntries (`method`) carrying `json`, signed by this client;
    /// returns the gRPC status code on failure.
    pub fn raw_raft_call(
        &self,
        addr: SocketAddr,
        method: &str,
        json: &[u8],
    ) -> Result<std::result::Result<RaftReply, tonic::Code>> {
        let request = self.request(
            method,
            RaftPayload {
                json: json.to_vec(),
            },
        );
        let append = method == method::APPEND_ENTRIES;
        self.runtime.block_on(async {
            let mut client = self.client(addr)?;
            let result = if append {
                client.append_entries(request).await
            } else {
                client.vote(request).await
            };
            Ok(result
                .map(tonic::Response::into_inner)
                .map_err(|s| s.code()))
        })
    }
}

/// Turns a tonic status into an error that shows its code, message and leader hint.
fn status(status: tonic::Status) -> anyhow::Error {
    let leader = status
        .metadata()
        .get("x-heimdall-leader")
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" (leader {l})"))
        .unwrap_or_default();
    anyhow!("{:?}: {}{leader}", status.code(), status.message())
}

/// A `Set` command by author "test", stamped now.
pub fn set_command(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.to_owned(),
        value: value.to_owned(),
        expected_version: None,
        author: "test".to_owned(),
        node: 0,
        at_unix_ms: heimdall_node::cluster::auth::unix_ms(),
    }
}

/// The planned addresses and config of a test cluster, before any node starts.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Node id -> DNS address (gRPC is on the same IP, port [`NODE_GRPC_PORT`]).
    pub dns: BTreeMap<u64, SocketAddr>,
    /// The secret the nodes share.
    pub secret: String,
    /// Upstreams every node is started with (its file values); by default one dead loopback
    /// address.
    pub upstreams: Vec<SocketAddr>,
    /// More `[cluster]`-independent TOML appended to every node's config.
    pub extra_toml: String,
}

impl ClusterSpec {
    /// `n` nodes with ids 1..=n on fresh loopback addresses.
    pub fn new(n: u64) -> Result<Self> {
        let mut dns = BTreeMap::new();
        for id in 1..=n {
            dns.insert(id, unique_addr(NODE_DNS_PORT)?);
        }
        Ok(Self {
            dns,
            secret: TEST_SECRET.to_owned(),
            // A dead loopback upstream, so no query ever leaves the machine (a node without
            // upstreams would forward to /etc/resolv.conf's nameservers).
            upstreams: vec![dead_addr(53)?],
            extra_toml: String::new(),
        })
    }

    /// The gRPC address of node `id`.
    pub fn grpc(&self, id: u64) -> Result<SocketAddr> {
        self.dns
            .get(&id)
            .map(|dns| SocketAddr::new(dns.ip(), NODE_GRPC_PORT))
            .ok_or_else(|| anyhow!("no node {id} in the spec"))
    }

    /// The config file of node `id`.
    pub fn config_toml(&self, id: u64) -> Result<String> {
        let mut members = String::new();
        for other in self.dns.keys() {
            members.push_str(&format!("{other} = \"{}\"\n", self.grpc(*other)?));
        }
        Ok(format!(
            "[node]\nnode_id = {id}\n\n[cluster]\nsecret = \"{}\"\nelection_timeout_ms = {}\n\n\
             [cluster.initial_members]\n{members}\n{}",
            self.secret, TEST_ELECTION_TIMEOUT_MS, self.extra_toml
        ))
    }

    /// The config file of a node that is not in `initial_members` and starts with `--join`.
    pub fn joiner_toml(&self, id: u64) -> String {
        format!(
            "[node]\nnode_id = {id}\n\n[cluster]\nsecret = \"{}\"\nelection_timeout_ms = {}\njoin = true\n{}",
            self.secret, TEST_ELECTION_TIMEOUT_MS, self.extra_toml
        )
    }

    /// Starts node `id` (DNS ready; Raft may still be electing).
    pub fn start(&self, id: u64) -> Result<Node> {
        let dns = *self
            .dns
            .get(&id)
            .ok_or_else(|| anyhow!("no node {id} in the spec"))?;
        Node::start_at(
            dns,
            NodeOpts {
                upstreams: self.upstreams.clone(),
                config_toml: Some(self.config_toml(id)?),
                ..NodeOpts::default()
            },
        )
        .with_context(|| format!("starting node {id}"))
    }

    /// Starts every node, in id order.
    pub fn start_all(&self) -> Result<BTreeMap<u64, Node>> {
        let mut nodes = BTreeMap::new();
        for id in self.dns.keys() {
            nodes.insert(*id, self.start(*id)?);
        }
        Ok(nodes)
    }
}

/// Waits until every node in `ids` reports the same leader, which is one of them; returns it.
pub fn wait_leader(
    client: &ClusterClient,
    spec: &ClusterSpec,
    ids: &[u64],
    deadline: Duration,
) -> Result<(u64, Duration)> {
    crate::wait::wait_for(deadline, "one leader known to every live node", || {
        let mut leader = None;
        for id in ids {
            let metrics = client.metrics(spec.grpc(*id).ok()?).ok()?;
            let this = metrics.leader_id?;
            if leader.is_some_and(|l| l != this) || !ids.contains(&this) {
                return None;
            }
            leader = Some(this);
        }
        leader
    })
}

/// Fails unless `response` is an applied change.
pub fn expect_applied(written: &Written) -> Result<u64> {
    match written.response {
        CommandResponse::Applied { version, .. } => Ok(version),
        ref other => bail!("expected an applied change, got {other:?}"),
    }
}
