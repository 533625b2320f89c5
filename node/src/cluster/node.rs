//! A running cluster member: node id, Raft, bootstrap, the internal gRPC server, live apply,
//! and [`ClusterHandle`], the write and read API of the cluster.
//!
//! [`start`] is the one call the server makes: it opens the Raft store under the data dir,
//! starts openraft with the election timeouts from `[cluster]`, serves the internal Raft
//! service on `node.grpc_listen`, bootstraps when there is no state yet (the lowest id of
//! `cluster.initial_members`, or a one-node cluster when there is no list and no `--join`),
//! seeds the first settings version from the bootstrapping node's file values, and keeps
//! applying committed changes to the resolver.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use heimdall_proto::v1::raft_service_client::RaftServiceClient;
use heimdall_proto::v1::{
    AddLearnerRequest, ClientWriteRequest, JoinRequest, MembershipReply, RemoveNodeRequest,
    StateRequest,
};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::apply::LiveApply;
use super::auth;
use super::network::{NetworkFactory, Peers, method};
use super::service::RaftGrpc;
use super::settings::ClusterSettings;
use super::state::{ClusterState, Command, CommandResponse, Rejection};
use super::store::{self, StoreError};
use super::types::{Member, Membership, NodeId, Raft};
use crate::config::{Config, Secret};
use crate::resolver::Resolver;
use crate::stats::Counter;

/// File in the data dir that keeps a generated node id.
pub const NODE_ID_FILE: &str = "node_id";

/// How long a write (including forwarding and waiting for a new leader) may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a membership change (adding a node includes its catching up) may take.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline of one call forwarded to the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the seeding task retries while there is no leader yet.
const SEED_RETRY: Duration = Duration::from_millis(500);

/// Largest snapshot chunk sent in one InstallSnapshot call (JSON-encoded, it grows about 4x).
const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;

/// Why the cluster could not start or a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node id file could not be read or written.
    #[error("node id file {path}: {source}")]
    NodeIdFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node id file does not hold a valid id.
    #[error("node id file {path}: {reason}")]
    NodeIdInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configured node id is not the one this data dir belongs to.
    #[error(
        "node.node_id is {configured} but the data dir {path} belongs to node {stored}: \
         use that id, or another data dir"
    )]
    NodeIdMismatch {
        /// The configured id.
        configured: NodeId,
        /// The id kept in the data dir.
        stored: NodeId,
        /// The data dir.
        path: PathBuf,
    },
    /// The Raft store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Raft configuration is invalid (election timeouts).
    #[error("raft configuration: {0}")]
    RaftConfig(String),
    /// The gRPC listener could not be bound.
    #[error("cannot listen on {addr} (grpc): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Raft failed (stopped, storage error) or refused the operation.
    #[error("raft: {0}")]
    Raft(String),
    /// Hot-cache gossip could not start.
    #[error(transparent)]
    Gossip(#[from] crate::gossip::GossipError),
    /// No leader is known within the deadline (no quorum, or an election in progress).
    #[error("no leader is known (last known: {last_known}); the cluster may lack a quorum")]
    NoLeader {
        /// The last leader this node knew of, as text.
        last_known: String,
    },
    /// The leader could not be reached or refused the forwarded call.
    #[error("the leader, node {leader} at {addr}, could not take the request: {reason}")]
    LeaderUnreachable {
        /// The leader's id.
        leader: NodeId,
        /// The leader's gRPC address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A forwarded call reached a node that is not the leader (no second forwarding).
    #[error("node {node} is not the leader; the leader is {leader}")]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader as known here (`node N at ADDR` or `unknown`).
        leader: String,
    },
    /// The gRPC listener's TLS configuration was refused by rustls.
    #[error("tls: {0}")]
    Tls(String),
    /// The control plane's services could not be built.
    #[error("control plane: {0}")]
    Control(String),
    /// The request is malformed (undecodable command, bad member).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A membership change was refused (another one in progress, unknown learner, ...).
    #[error("membership change refused: {0}")]
    Membership(String),
}

/// Who a write or read is from: a local caller, or another member forwarding to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A caller on this node (the control plane, tests).
    Local,
    /// Another member forwarded it because it believed this node leads: never forward again.
    Forwarded,
}

/// The outcome of a committed (or refused) write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// What the state machine answered.
    pub response: CommandResponse,
    /// The log index it was committed at; 0 when it was refused before entering the log.
    pub log_index: u64,
    /// The leader that handled it.
    pub leader: NodeId,
}

/// How forwarding a write to the leader failed.
#[derive(Debug)]
enum Forwarding {
    /// The leader was not reached or is no longer the leader: the write did not happen, so it
    /// may be sent again (to the next leader).
    Retry(ClusterError),
    /// Anything else: the write may or may not have been committed.
    Failed(ClusterError),
}

/// A member as listed by [`ClusterHandle::members`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The node id.
    pub id: NodeId,
    /// Its addresses.
    pub member: Member,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// Shared state behind [`ClusterHandle`].
struct Inner {
    /// This node's id.
    id: NodeId,
    /// The Raft node.
    raft: Raft,
    /// The applied cluster state, as published by the state machine.
    state: watch::Receiver<Arc<ClusterState>>,
    /// Signed calls to other members (forwarding).
    peers: Peers,
    /// Internal RPCs refused for missing or wrong authentication.
    auth_failures: Counter,
    /// The secrets incoming internal calls and gossip are checked with (none without a
    /// cluster secret).
    keyring: Option<auth::Keyring>,
    /// Held by every membership change this node makes as leader, from the check of the
    /// current membership to the committed change, so no two interleave (a node's address
    /// announcement checked before a removal must not be written after it and add it back).
    membership_lock: tokio::sync::Mutex<()>,
    /// Where the internal gRPC server listens.
    grpc_addr: SocketAddr,
    /// Set to true to stop the background tasks and the gRPC server.
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    /// The node id and gRPC address (openraft's `Raft` has no `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("id", &self.id)
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

/// The cluster as seen from this node: propose writes, read settings, members and leader.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    /// Shared state.
    inner: Arc<Inner>,
}

/// Keeps the cluster running; dropping it stops the gRPC server and the background tasks.
#[derive(Debug)]
pub struct RunningCluster {
    /// The handle.
    handle: ClusterHandle,
    /// Background tasks (gRPC server, live apply, seeding).
    tasks: Vec<JoinHandle<()>>,
    /// The `grpc.health.v1` status, set to NOT_SERVING on shutdown.
    health: tonic_health::server::HealthReporter,
}

impl RunningCluster {
    /// The handle, for writes and reads.
    pub fn handle(&self) -> &ClusterHandle {
        &self.handle
    }

    /// Stops the gRPC server and the background tasks, then Raft.
    pub async fn shutdown(mut self) {
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = self.handle.inner.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Err(e) = self.handle.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

impl Drop for RunningCluster {
    /// Signals every background task to stop (they end at their next await).
    fn drop(&mut self) {
        let _ = self.handle.inner.stop.send(true);
    }
}

/// Reads the node id: `configured`, or the one kept in `data_dir`, or a new random one
/// (written there before it is used, so it survives restarts).
pub fn node_id(data_dir: &Path, configured: Option<NodeId>) -> Result<NodeId, ClusterError> {
    let path = data_dir.join(NODE_ID_FILE);
    let io_err = |source| ClusterError::NodeIdFile {
        path: path.clone(),
        source,
    };
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            text.trim()
                .parse::<NodeId>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ClusterError::NodeIdInvalid {
                    path: path.clone(),
                    reason: format!("{:?} is not a node id", text.trim()),
                })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let id = match (configured, stored) {
        (Some(configured), Some(stored)) if configured != stored => {
            return Err(ClusterError::NodeIdMismatch {
                configured,
                stored,
                path: data_dir.to_owned(),
            });
        }
        (_, Some(stored)) => return Ok(stored),
        (Some(configured), None) => configured,
        (None, None) => loop {
            let id: u64 = rand::random();
            if id > 0 {
                break id;
            }
        },
    };
    std::fs::create_dir_all(data_dir).map_err(io_err)?;
    let tmp = data_dir.join(format!("{NODE_ID_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{id}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(io_err)?;
    Ok(id)
}

/// The openraft configuration: election timeouts in [t, 2t), heartbeats every t/3.
pub fn raft_config(election_timeout_ms: u64) -> Result<openraft::Config, ClusterError> {
    let t = election_timeout_ms.max(30);
    openraft::Config {
        cluster_name: "heimdall".to_owned(),
        election_timeout_min: t,
        election_timeout_max: t * 2,
        heartbeat_interval: (t / 3).max(10),
        install_snapshot_timeout: (t * 2).max(1000),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| ClusterError::RaftConfig(e.to_string()))
}

/// Starts this node's cluster membership: store, Raft, gRPC server, bootstrap, live apply.
///
/// `resolver` is the query engine the committed settings are applied to. Returns once the
/// gRPC server listens; bootstrapping and seeding continue in the background.
pub async fn start(
    config: &Config,
    resolver: &Arc<Resolver>,
) -> Result<RunningCluster, ClusterError> {
    let data_dir = &config.node.data_dir;
    let id = node_id(data_dir, config.node.node_id)?;
    let (log_store, state_machine) = store::open(data_dir)?;
    let state = state_machine.subscribe();
    let secret = config.cluster.secret.clone();
    let tls = config.tls.material.as_deref();
    let peer_tls = tls.map(crate::tls::TlsMaterial::client_config);
    let keyring = secret.clone().map(|current| {
        let ring = auth::Keyring::new(current);
        match &config.cluster.previous_secret {
            Some(previous) => {
                let grace = Duration::from_secs(config.cluster.previous_secret_grace_s);
                tracing::info!(
                    grace_s = grace.as_secs(),
                    "cluster secret rotation: the previous secret is accepted (never used to \
                     sign) during the grace period"
                );
                ring.with_previous(previous.clone(), grace)
            }
            None => ring,
        }
    });
    let raft_config = Arc::new(raft_config(config.cluster.election_timeout_ms)?);
    let raft = Raft::new(
        id,
        raft_config,
        NetworkFactory::new(secret.clone(), peer_tls.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| ClusterError::Raft(e.to_string()))?;

    let listen = config.node.grpc_listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: listen,
            source,
        })?;
    let grpc_addr = listener.local_addr().unwrap_or(listen);
    let (stop, stop_rx) = watch::channel(false);
    let handle = ClusterHandle {
        inner: Arc::new(Inner {
            id,
            raft,
            state,
            peers: Peers::new(secret.clone(), peer_tls, FORWARD_TIMEOUT),
            auth_failures: Counter::new(),
            keyring,
            membership_lock: tokio::sync::Mutex::new(()),
            grpc_addr,
            stop,
        }),
    };

    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(RaftGrpc::new(handle.clone(), Arc::clone(resolver)).into_server());
    let admin = crate::admin::NodeAdmin::new(config, Arc::clone(resolver), handle.clone());
    let health = crate::admin::add_services(&mut routes, config, admin)
        .await
        .map_err(|e| ClusterError::Control(e.to_string()))?;
    // Warm start when there are peers to learn from: not ready until a peer's hot set is
    // loaded (bounded in time), so set before the server answers health checks. A `--join`
    // node without state learns its peers when it is added: it is not ready until then.
    // The Raft core publishes the stored membership before it serves its first request: ask
    // it something first, or `members()` may still read the empty initial metrics.
    handle
        .inner
        .raft
        .is_initialized()
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    let joining = config.cluster.join && handle.members().is_empty();
    let warm = secret.is_some() && (joining || handle.members().iter().any(|m| m.id != id));
    if warm {
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    }
    let server = super::grpc::builder(tls.map(crate::tls::TlsMaterial::server_config))
        .map_err(|e| ClusterError::Tls(e.to_string()))?;
    let mut tasks = vec![tokio::spawn(super::grpc::serve(
        server,
        listener,
        routes.routes(),
        stop_rx.clone(),
    ))];

    let me = Member {
        grpc_addr: config
            .cluster
            .initial_members
            .get(&id)
            .cloned()
            .unwrap_or_else(|| grpc_addr.to_string()),
        dns_addr: config.dns.listen.to_string(),
        gossip_addr: config.node.gossip_listen.to_string(),
    };
    if secret.is_none() {
        tracing::warn!(
            "no cluster secret (cluster.secret, HEIMDALL_CLUSTER__SECRET or cluster.secret_file): \
             running a one-node cluster only; every internal cluster RPC is refused"
        );
    }
    let bootstrapper = bootstrap(&handle, config, &me).await?;
    tracing::info!(
        node_id = id,
        grpc = %grpc_addr,
        election_timeout_ms = config.cluster.election_timeout_ms,
        members = config.cluster.initial_members.len(),
        join = config.cluster.join,
        grpc_tls = tls.map_or("off", crate::tls::TlsMaterial::mode),
        "cluster member started"
    );

    let mut file_settings = ClusterSettings::from_node_config(config);
    if config.upstream.servers_from_resolv_conf {
        // Not configured: each node keeps using its own /etc/resolv.conf.
        file_settings.upstreams.clear();
    }
    let live = LiveApply::new(
        Arc::clone(resolver),
        config,
        file_settings.clone(),
        &handle.inner.state.borrow(),
    );
    tasks.push(tokio::spawn(live_apply(
        live,
        handle.inner.state.clone(),
        stop_rx.clone(),
    )));
    tasks.extend(
        crate::gossip::start(
            config,
            Arc::clone(resolver),
            handle.clone(),
            stop_rx.clone(),
        )
        .await?,
    );
    if warm {
        let (health, handle, resolver) = (health.clone(), handle.clone(), Arc::clone(resolver));
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if joining {
                tokio::select! {
                    () = wait_added(&handle) => {}
                    _ = stop.changed() => return,
                }
            }
            crate::gossip::warm::warm_start(&handle, resolver.cache()).await;
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
        }));
    }
    tasks.push(tokio::spawn(announce(
        handle.clone(),
        me.clone(),
        stop_rx.clone(),
    )));
    if bootstrapper {
        tasks.push(tokio::spawn(seed(handle.clone(), file_settings, stop_rx)));
    }
    Ok(RunningCluster {
        handle,
        tasks,
        health,
    })
}

/// Waits until this `--join` node has been added to a cluster: it is in the membership, knows
/// a leader, and has applied the log up to the membership change that added it (so it holds
/// every earlier flush epoch before it takes in a peer's hot set).
async fn wait_added(handle: &ClusterHandle) {
    let id = handle.id();
    let added = handle
        .raft()
        .wait(None)
        .metrics(
            |m| {
                let membership = &m.membership_config;
                membership.membership().get_node(&id).is_some()
                    && m.current_leader.is_some()
                    && m.last_applied.map(|l| l.index) >= membership.log_id().map(|l| l.index)
            },
            "this node added to a cluster",
        )
        .await;
    match added {
        Ok(_) => tracing::info!(node_id = id, "added to the cluster: warm start from a peer"),
        Err(e) => tracing::warn!(node_id = id, "waiting to be added: {e}"),
    }
}

/// Initializes the Raft group when this node must and no state exists; returns whether this
/// node is the cluster's bootstrapping node (the one whose file values seed the settings).
async fn bootstrap(
    handle: &ClusterHandle,
    config: &Config,
    me: &Member,
) -> Result<bool, ClusterError> {
    let raft = &handle.inner.raft;
    let id = handle.inner.id;
    let initial = &config.cluster.initial_members;
    let bootstrapper = match initial.keys().next() {
        Some(lowest) => *lowest == id,
        None => !config.cluster.join,
    };
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    if initialized {
        tracing::info!(
            node_id = id,
            "raft state found: resuming as a cluster member"
        );
        return Ok(bootstrapper);
    }
    if !bootstrapper {
        match initial.keys().next() {
            Some(lowest) => tracing::info!(
                node_id = id,
                "no raft state: waiting for node {lowest} (lowest initial member) to initialize"
            ),
            None => tracing::info!(node_id = id, "no raft state: waiting to be added (--join)"),
        }
        return Ok(false);
    }
    let members: BTreeMap<NodeId, Member> = if initial.is_empty() {
        BTreeMap::from([(id, me.clone())])
    } else {
        initial
            .iter()
            .map(|(member_id, addr)| {
                let member = if *member_id == id {
                    me.clone()
                } else {
                    Member {
                        grpc_addr: addr.clone(),
                        ..Member::default()
                    }
                };
                (*member_id, member)
            })
            .collect()
    };
    let ids: Vec<NodeId> = members.keys().copied().collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(node_id = id, members = ?ids, "initialized a new cluster"),
        Err(RaftError::APIError(e)) => {
            tracing::info!(node_id = id, "not initializing: {e}");
        }
        Err(e) => return Err(ClusterError::Raft(e.to_string())),
    }
    Ok(true)
}

/// How often [`announce`] retries while its addresses are not (yet) in the membership.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

/// Makes sure the membership records this node's own addresses (`me`): members named in
/// `cluster.initial_members` or added by `add-node` are known by their gRPC address only, so
/// once this node is a member it sends its DNS and gossip addresses to the leader (the
/// leader's `add_learner` updates a known member). Ends when they are recorded or on stop.
async fn announce(handle: ClusterHandle, me: Member, mut stop: watch::Receiver<bool>) {
    let id = handle.id();
    loop {
        let members = handle.members();
        match members.iter().find(|m| m.id == id) {
            Some(info) if info.member == me => return,
            Some(_) if handle.leader().is_some() => {
                match handle.announce_via_leader(id, me.clone()).await {
                    Ok(_) => tracing::info!(node_id = id, member = %me, "addresses announced"),
                    Err(e) => tracing::debug!(node_id = id, "announcing addresses: {e}"),
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(ANNOUNCE_RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Applies every published cluster state to the resolver until stopped.
async fn live_apply(
    mut live: LiveApply,
    mut state: watch::Receiver<Arc<ClusterState>>,
    mut stop: watch::Receiver<bool>,
) {
    let current = Arc::clone(&state.borrow_and_update());
    live.apply(&current);
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = Arc::clone(&state.borrow_and_update());
                live.apply(&current);
            }
            _ = stop.changed() => return,
        }
    }
}

/// Seeds the first settings version from this node's file values, once the cluster has a
/// leader; stops when the cluster already has a version (seeded before, or changed since).
async fn seed(handle: ClusterHandle, settings: ClusterSettings, mut stop: watch::Receiver<bool>) {
    loop {
        if handle.state().version > 0 {
            return;
        }
        let command = Command::Replace {
            settings: settings.clone(),
            expected_version: Some(0),
            author: "bootstrap".to_owned(),
            node: handle.id(),
            at_unix_ms: auth::unix_ms(),
        };
        let attempt = tokio::select! {
            result = handle.propose(command) => result,
            _ = stop.changed() => return,
        };
        match attempt {
            Ok(CommandResponse::Applied { version, .. }) => {
                tracing::info!(
                    version,
                    "seeded the cluster settings from this node's configuration"
                );
                return;
            }
            Ok(CommandResponse::Rejected(Rejection::VersionConflict { .. })) => return,
            Ok(other) => {
                tracing::warn!("seeding the cluster settings: {other:?}");
                return;
            }
            Err(e) => tracing::debug!("seeding the cluster settings, will retry: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SEED_RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

impl ClusterHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The Raft node (metrics, membership operations).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Where the internal gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.inner.grpc_addr
    }

    /// The cluster secret, if any.
    pub fn secret(&self) -> Option<&Secret> {
        self.inner.peers.secret()
    }

    /// The secrets incoming internal calls and gossip are checked with, if any.
    pub fn keyring(&self) -> Option<&auth::Keyring> {
        self.inner.keyring.as_ref()
    }

    /// Internal RPCs refused for missing or wrong authentication.
    pub fn auth_failures(&self) -> &Counter {
        &self.inner.auth_failures
    }

    /// The cluster state applied on this node (may trail the leader by a moment).
    pub fn state(&self) -> Arc<ClusterState> {
        Arc::clone(&self.inner.state.borrow())
    }

    /// The cluster settings applied on this node.
    pub fn settings(&self) -> ClusterSettings {
        self.state().settings.clone()
    }

    /// The leader this node knows of, with its addresses when it is a member.
    pub fn leader(&self) -> Option<(NodeId, Option<Member>)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let member = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned();
        Some((leader, member))
    }

    /// Every member (voters and learners) as of the last membership entry this node has.
    pub fn members(&self) -> Vec<MemberInfo> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        members_of(metrics.membership_config.membership())
    }

    /// Proposes a command to the cluster and waits until it is committed and applied.
    ///
    /// On the leader the command is first checked against the current state: an invalid
    /// change or a version conflict is answered [`CommandResponse::Rejected`] and never
    /// enters the log. On a follower it is forwarded to the leader. The error says where the
    /// leader is when it is unknown or unreachable.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse, ClusterError> {
        self.write(command, Origin::Local)
            .await
            .map(|outcome| outcome.response)
    }

    /// [`ClusterHandle::propose`] with the log index and leader, for a call from `origin`.
    pub async fn write(
        &self,
        command: Command,
        origin: Origin,
    ) -> Result<WriteOutcome, ClusterError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            let leader = self.wait_leader(deadline).await?;
            if leader.0 == self.id() {
                let dry = self.state().dry_run(&command);
                if matches!(dry, CommandResponse::Rejected(_)) {
                    return Ok(WriteOutcome {
                        response: dry,
                        log_index: 0,
                        leader: self.id(),
                    });
                }
                match self.inner.raft.client_write(command.clone()).await {
                    Ok(written) => {
                        return Ok(WriteOutcome {
                            response: written.data,
                            log_index: written.log_id.index,
                            leader: self.id(),
                        });
                    }
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        // Leadership moved between the check and the write: try again.
                        self.pause(deadline).await;
                        continue;
                    }
                    Err(e) => return Err(ClusterError::Raft(e.to_string())),
                }
            }
            if origin == Origin::Forwarded {
                return Err(self.not_leader());
            }
            match self.forward_write(&command, &leader).await {
                Ok(outcome) => return Ok(outcome),
                Err(Forwarding::Retry(e)) if Instant::now() < deadline => {
                    tracing::debug!("forwarding a write to node {}: {e}; retrying", leader.0);
                    self.pause(deadline).await;
                }
                Err(Forwarding::Retry(e) | Forwarding::Failed(e)) => return Err(e),
            }
        }
    }

    /// Sends `command` to the leader over ClientWrite. Only an UNAVAILABLE answer (the
    /// leader could not be reached, or was not the leader any more) may be retried: after
    /// any other failure the command may have been committed.
    async fn forward_write(
        &self,
        command: &Command,
        leader: &(NodeId, String),
    ) -> Result<WriteOutcome, Forwarding> {
        let unreachable = |reason: String| ClusterError::LeaderUnreachable {
            leader: leader.0,
            addr: leader.1.clone(),
            reason,
        };
        let command_json = serde_json::to_vec(command)
            .map_err(|e| Forwarding::Failed(ClusterError::BadRequest(e.to_string())))?;
        let peers = &self.inner.peers;
        let mut client = peers
            .client(&leader.1)
            .map_err(|s| Forwarding::Failed(unreachable(s.message().to_owned())))?;
        let request = peers.request(
            method::CLIENT_WRITE,
            ClientWriteRequest {
                command_json,
                forwarded: true,
            },
        );
        let reply = client
            .client_write(request)
            .await
            .map_err(|s| {
                let error = unreachable(format!("{:?}: {}", s.code(), s.message()));
                if s.code() == tonic::Code::Unavailable {
                    Forwarding::Retry(error)
                } else {
                    Forwarding::Failed(error)
                }
            })?
            .into_inner();
        let response = serde_json::from_slice(&reply.response_json)
            .map_err(|e| Forwarding::Failed(unreachable(format!("undecodable reply: {e}"))))?;
        Ok(WriteOutcome {
            response,
            log_index: reply.log_index,
            leader: reply.leader_id,
        })
    }

    /// The cluster state, read on the leader after confirming its leadership with a quorum
    /// (`linearizable`), or this node's applied state.
    pub async fn read_state(
        &self,
        linearizable: bool,
        origin: Origin,
    ) -> Result<Arc<ClusterState>, ClusterError> {
        if !linearizable {
            return Ok(self.state());
        }
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let leader = self.wait_leader(deadline).await?;
        if leader.0 == self.id() {
            self.inner
                .raft
                .ensure_linearizable()
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
            return Ok(self.state());
        }
        if origin == Origin::Forwarded {
            return Err(self.not_leader());
        }
        let unreachable = |reason: String| ClusterError::LeaderUnreachable {
            leader: leader.0,
            addr: leader.1.clone(),
            reason,
        };
        let peers = &self.inner.peers;
        let mut client = peers
            .client(&leader.1)
            .map_err(|s| unreachable(s.to_string()))?;
        let mut request = peers.request(method::STATE, StateRequest { linearizable: true });
        request.metadata_mut().insert(
            super::service::FORWARDED_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let reply = client
            .state(request)
            .await
            .map_err(|s| unreachable(s.message().to_owned()))?
            .into_inner();
        serde_json::from_slice(&reply.state_json)
            .map(Arc::new)
            .map_err(|e| unreachable(format!("undecodable state: {e}")))
    }

    /// Adds `member` as a learner (on the leader); with `blocking`, waits until it caught up.
    pub async fn add_learner(
        &self,
        id: NodeId,
        member: Member,
        blocking: bool,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let _changing = self.inner.membership_lock.lock().await;
        self.add_learner_locked(id, member, blocking).await
    }

    /// [`ClusterHandle::add_learner`] with the membership lock already held.
    async fn add_learner_locked(
        &self,
        id: NodeId,
        member: Member,
        blocking: bool,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        self.require_leader()?;
        let known = self.members().into_iter().find(|m| m.id == id);
        let written = match known {
            // Already a member at that address (added before): only its data changes.
            Some(info) if info.member.grpc_addr == member.grpc_addr => {
                self.set_node(id, &member).await?
            }
            _ => {
                self.retrying_membership(|| {
                    self.inner.raft.add_learner(id, member.clone(), blocking)
                })
                .await?
            }
        };
        Ok((written.log_id.index, self.members()))
    }

    /// Records `member` as the addresses of node `id` (on the leader), which must be a member
    /// already: a node announcing itself after it was removed is refused, not added back.
    pub async fn record_addresses(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let _changing = self.inner.membership_lock.lock().await;
        self.require_leader()?;
        let Some(known) = self.members().into_iter().find(|m| m.id == id) else {
            return Err(ClusterError::Membership(format!(
                "node {id} is not a member of this cluster; its addresses are not recorded"
            )));
        };
        if known.member.grpc_addr != member.grpc_addr {
            return Err(ClusterError::Membership(format!(
                "node {id} is a member at {}, not at {}; its addresses are not recorded",
                known.member.grpc_addr, member.grpc_addr
            )));
        }
        let written = self.set_node(id, &member).await?;
        Ok((written.log_id.index, self.members()))
    }

    /// Replaces the data (addresses) of member `id`; the caller holds the membership lock.
    async fn set_node(
        &self,
        id: NodeId,
        member: &Member,
    ) -> Result<openraft::raft::ClientWriteResponse<super::types::TypeConfig>, ClusterError> {
        self.retrying_membership(|| {
            self.inner.raft.change_membership(
                ChangeMembers::SetNodes(BTreeMap::from([(id, member.clone())])),
                true,
            )
        })
        .await
    }

    /// Records `member` as node `id`'s addresses, on the leader wherever it is (over the
    /// internal AddLearner call, as an update of a member only, when this node follows).
    pub async fn announce_via_leader(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let request = AddLearnerRequest {
            member: Some(super::service::member_message(&MemberInfo {
                id,
                member: member.clone(),
                voter: false,
            })),
            blocking: false,
            update_only: true,
        };
        self.membership_via_leader(
            || self.record_addresses(id, member.clone()),
            method::ADD_LEARNER,
            |mut client, request| async move { client.add_learner(request).await },
            request,
        )
        .await
    }

    /// Makes exactly `voters` the voters (on the leader); removed voters stay learners when
    /// `retain`.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let _changing = self.inner.membership_lock.lock().await;
        self.require_leader()?;
        let written = self
            .retrying_membership(|| {
                self.inner
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), retain)
            })
            .await?;
        Ok((written.log_id.index, self.members()))
    }

    /// Adds a node as a learner, waits for it to catch up, then makes it a voter.
    pub async fn join(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let _changing = self.inner.membership_lock.lock().await;
        self.add_learner_locked(id, member, true).await?;
        let written = self
            .retrying_membership(|| {
                self.inner
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            })
            .await?;
        Ok((written.log_id.index, self.members()))
    }

    /// Removes node `id` (on the leader): a voter is first demoted to learner (the remaining
    /// voters must not be empty), then removed from the membership.
    pub async fn remove_node(&self, id: NodeId) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let _changing = self.inner.membership_lock.lock().await;
        self.require_leader()?;
        let members = self.members();
        let Some(target) = members.iter().find(|m| m.id == id) else {
            return Err(ClusterError::Membership(format!(
                "node {id} is not a member of this cluster"
            )));
        };
        if target.voter {
            let voters: BTreeSet<NodeId> = members
                .iter()
                .filter(|m| m.voter && m.id != id)
                .map(|m| m.id)
                .collect();
            if voters.is_empty() {
                return Err(ClusterError::Membership(format!(
                    "node {id} is the last voter; a cluster cannot remove its last voter"
                )));
            }
            self.retrying_membership(|| {
                self.inner
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), true)
            })
            .await?;
        }
        let written = self
            .retrying_membership(|| {
                self.inner
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            })
            .await?;
        Ok((written.log_id.index, self.members()))
    }

    /// [`ClusterHandle::join`] on the leader, wherever it is: run here when this node leads,
    /// else forwarded over the internal Join call; retried while leadership moves.
    pub async fn join_via_leader(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        let request = JoinRequest {
            member: Some(super::service::member_message(&MemberInfo {
                id,
                member: member.clone(),
                voter: true,
            })),
        };
        self.membership_via_leader(
            || self.join(id, member.clone()),
            method::JOIN,
            |mut client, request| async move { client.join(request).await },
            request,
        )
        .await
    }

    /// [`ClusterHandle::remove_node`] on the leader, wherever it is (see
    /// [`ClusterHandle::join_via_leader`]). Removing the leader itself demotes it first; the
    /// removal then completes on the new leader.
    pub async fn remove_node_via_leader(
        &self,
        id: NodeId,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError> {
        self.membership_via_leader(
            || self.remove_node(id),
            method::REMOVE_NODE,
            |mut client, request| async move { client.remove_node(request).await },
            RemoveNodeRequest { id },
        )
        .await
    }

    /// Runs a membership change on the leader: `local()` when this node leads, else `remote`
    /// with a signed `request` for `method` to the leader. A NotLeader answer (leadership
    /// moved, e.g. because the change demoted the leader) is retried until [`MEMBERSHIP_TIMEOUT`].
    async fn membership_via_leader<Req, Local, LocalFut, Remote, RemoteFut>(
        &self,
        local: Local,
        method: &str,
        remote: Remote,
        request: Req,
    ) -> Result<(u64, Vec<MemberInfo>), ClusterError>
    where
        Req: prost::Message + Clone,
        Local: Fn() -> LocalFut,
        LocalFut: Future<Output = Result<(u64, Vec<MemberInfo>), ClusterError>>,
        Remote: Fn(RaftServiceClient<Channel>, tonic::Request<Req>) -> RemoteFut,
        RemoteFut: Future<Output = Result<tonic::Response<MembershipReply>, tonic::Status>>,
    {
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        loop {
            let leader = self.wait_leader(deadline).await?;
            let result = if leader.0 == self.id() {
                local().await
            } else {
                let peers = &self.inner.peers;
                let unreachable = |reason: String| ClusterError::LeaderUnreachable {
                    leader: leader.0,
                    addr: leader.1.clone(),
                    reason,
                };
                let client = peers
                    .client(&leader.1)
                    .map_err(|s| unreachable(s.message().to_owned()))?;
                let mut call = peers.request(method, request.clone());
                call.set_timeout(deadline.saturating_duration_since(Instant::now()));
                match remote(client, call).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        let members = reply
                            .members
                            .into_iter()
                            .map(|m| MemberInfo {
                                id: m.id,
                                voter: m.voter,
                                member: Member {
                                    grpc_addr: m.grpc_addr,
                                    dns_addr: m.dns_addr,
                                    gossip_addr: m.gossip_addr,
                                },
                            })
                            .collect();
                        Ok((reply.log_index, members))
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        Err(ClusterError::NotLeader {
                            node: leader.0,
                            leader: s.message().to_owned(),
                        })
                    }
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        Err(ClusterError::Membership(s.message().to_owned()))
                    }
                    Err(s) => Err(unreachable(format!("{:?}: {}", s.code(), s.message()))),
                }
            };
            match result {
                Err(ClusterError::NotLeader { .. }) if Instant::now() < deadline => {
                    self.pause(deadline).await;
                }
                other => return other,
            }
        }
    }

    /// Signed calls to other members, with this node's secret.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Waits until the cluster state applied on this node satisfies `done` (or `deadline`
    /// passes); returns the state then.
    pub async fn wait_applied(
        &self,
        deadline: Instant,
        done: impl Fn(&ClusterState) -> bool,
    ) -> Arc<ClusterState> {
        let mut state = self.inner.state.clone();
        loop {
            let current = Arc::clone(&state.borrow_and_update());
            if done(&current) {
                return current;
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                _ => return current,
            }
        }
    }

    /// Runs one membership change on this node's Raft, retrying while an earlier change is
    /// still being committed (openraft allows one at a time; members announcing their own
    /// addresses make such overlaps routine at start-up) until [`MEMBERSHIP_TIMEOUT`].
    async fn retrying_membership<F, Fut>(
        &self,
        change: F,
    ) -> Result<openraft::raft::ClientWriteResponse<super::types::TypeConfig>, ClusterError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    openraft::raft::ClientWriteResponse<super::types::TypeConfig>,
                    RaftError<NodeId, ClientWriteError<NodeId, Member>>,
                >,
            >,
    {
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        loop {
            match change().await {
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(in_progress),
                ))) if Instant::now() < deadline => {
                    tracing::debug!("membership change waits for an earlier one: {in_progress}");
                    self.pause(deadline).await;
                }
                other => return other.map_err(|e| self.membership_error(e)),
            }
        }
    }

    /// Maps a failed membership change.
    fn membership_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    ) -> ClusterError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
                node: self.id(),
                leader: describe_leader(f.leader_id.map(|id| (id, f.leader_node))),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ClusterError::Membership(e.to_string())
            }
            RaftError::Fatal(e) => ClusterError::Raft(e.to_string()),
        }
    }

    /// Fails with [`ClusterError::NotLeader`] unless this node leads.
    fn require_leader(&self) -> Result<(), ClusterError> {
        match self.leader() {
            Some((leader, _)) if leader == self.id() => Ok(()),
            _ => Err(self.not_leader()),
        }
    }

    /// The error for a request that needs the leader, naming it when known.
    pub fn not_leader(&self) -> ClusterError {
        ClusterError::NotLeader {
            node: self.id(),
            leader: describe_leader(self.leader()),
        }
    }

    /// The leader's id and gRPC address, waiting (until `deadline`) while none is known.
    async fn wait_leader(&self, deadline: Instant) -> Result<(NodeId, String), ClusterError> {
        let mut metrics = self.inner.raft.metrics();
        let mut last_known = None;
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == ServerState::Shutdown {
                    return Err(ClusterError::Raft("raft is shut down".to_owned()));
                }
                if let Some(leader) = m.current_leader {
                    last_known = Some(leader);
                    if let Some(node) = m.membership_config.membership().get_node(&leader) {
                        return Ok((leader, node.grpc_addr.clone()));
                    }
                }
            }
            let changed = tokio::time::timeout_at(deadline, metrics.changed()).await;
            match changed {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ClusterError::Raft("raft is shut down".to_owned())),
                Err(_) => {
                    return Err(ClusterError::NoLeader {
                        last_known: last_known
                            .map_or_else(|| "none".to_owned(), |id| format!("node {id}")),
                    });
                }
            }
        }
    }

    /// Waits a little before retrying (bounded by `deadline`), letting an election finish.
    async fn pause(&self, deadline: Instant) {
        let until = (Instant::now() + Duration::from_millis(100)).min(deadline);
        tokio::time::sleep_until(until).await;
    }

    /// openraft's view of this node: role, term, leader, log and apply positions.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.inner.raft.metrics().borrow().clone()
    }
}

/// `node N at ADDR`, `node N` or `unknown`.
fn describe_leader(leader: Option<(NodeId, Option<Member>)>) -> String {
    match leader {
        Some((id, Some(member))) => format!("node {id} at {}", member.grpc_addr),
        Some((id, None)) => format!("node {id}"),
        None => "unknown".to_owned(),
    }
}

/// The members of a membership configuration, ordered by id.
pub fn members_of(membership: &Membership) -> Vec<MemberInfo> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, member)| MemberInfo {
            id: *id,
            member: member.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated id is kept; a configured one must match the kept one.
    #[test]
    fn node_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = node_id(dir.path(), None).expect("generated");
        assert!(first > 0);
        assert_eq!(node_id(dir.path(), None).expect("kept"), first);
        assert_eq!(node_id(dir.path(), Some(first)).expect("same"), first);
        let err = node_id(dir.path(), Some(first.wrapping_add(1).max(1))).expect_err("mismatch");
        assert!(matches!(err, ClusterError::NodeIdMismatch { .. }), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(node_id(dir.path(), Some(7)).expect("configured"), 7);
        assert_eq!(node_id(dir.path(), None).expect("kept"), 7);
        std::fs::write(dir.path().join(NODE_ID_FILE), "zero\n").expect("write");
        assert!(matches!(
            node_id(dir.path(), None),
            Err(ClusterError::NodeIdInvalid { .. })
        ));
    }

    /// Election timeouts span [t, 2t) with heartbeats at t/3.
    #[test]
    fn raft_config_from_election_timeout() {
        let c = raft_config(1000).expect("valid");
        assert_eq!(c.election_timeout_min, 1000);
        assert_eq!(c.election_timeout_max, 2000);
        assert_eq!(c.heartbeat_interval, 333);
        assert_eq!(c.snapshot_max_chunk_size, SNAPSHOT_CHUNK_BYTES);
    }
}
