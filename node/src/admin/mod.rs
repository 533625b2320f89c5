//! The node's side of the control plane: [`NodeAdmin`] implements
//! [`heimdall_control::ControlBackend`] over the resolver (cache, forwarder, metrics) and the
//! cluster handle (settings, history, membership).
//!
//! - [`present`]: type and rcode mnemonics, names and records in presentation form.
//! - `cache`: lookup, flush (local, or cluster-wide as a Raft flush epoch), dump and load.
//! - `config`: config get/set/history/rollback and upstream changes through Raft.
//! - `cluster`: members (each asked for its own Raft position), leader, add and remove.
//!
//! Errors are gRPC statuses that name this node and the reason; cluster errors go through
//! [`crate::cluster::service::status`], which adds the leader in `x-heimdall-leader` metadata.

mod cache;
mod cluster;
mod config;
pub mod present;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use heimdall_control::{AdminAuth, Caller, ControlBackend, EntryStream};
use heimdall_proto::v1::{
    CacheDumpRequest, CacheFlushReply, CacheFlushRequest, CacheLoadReply, CacheLookupReply,
    CacheLookupRequest, ClusterAddNodeRequest, ClusterLeaderReply, ClusterMembersReply,
    ClusterRemoveNodeRequest, ConfigChangeReply, ConfigGetReply, ConfigGetRequest,
    ConfigHistoryReply, ConfigHistoryRequest, ConfigRollbackRequest, ConfigSetRequest,
    StatsSnapshot, StatusReply, TopNamesReply, TopNamesRequest, UpstreamChangeRequest,
    UpstreamListReply,
};
use tonic::Status;
use tonic::service::RoutesBuilder;

use crate::cluster::{ClusterError, ClusterHandle, Command};
use crate::config::{Config, IoBackend};
use crate::resolver::Resolver;

/// TopNames limit when the caller asks for 0.
const DEFAULT_TOP_NAMES: usize = 10;

/// How long a cluster flush waits for this node to apply it before answering.
const FLUSH_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The control plane's view of one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeAdmin {
    /// The query engine: cache, forwarder, metrics.
    resolver: Arc<Resolver>,
    /// The cluster: settings, history, membership.
    cluster: ClusterHandle,
    /// When the node started (for uptime).
    started: Instant,
    /// The DNS listener as configured.
    dns_addr: SocketAddr,
    /// UDP workers.
    workers: u32,
    /// The UDP backend the node runs ("epoll" or "uring").
    io_backend: &'static str,
}

/// The UDP backend `requested` leads to, as [`crate::server::choose_backend`] decides it,
/// without logging again: epoll when asked, else io_uring when it is available.
fn io_backend_name(requested: IoBackend) -> &'static str {
    if requested != IoBackend::Epoll && crate::server::io_uring_available().is_ok() {
        "uring"
    } else {
        "epoll"
    }
}

impl NodeAdmin {
    /// The control plane of the node running `resolver` and `cluster` with `config`.
    pub fn new(config: &Config, resolver: Arc<Resolver>, cluster: ClusterHandle) -> Self {
        Self {
            resolver,
            cluster,
            started: Instant::now(),
            dns_addr: config.dns.listen,
            workers: u32::try_from(config.dns.workers.max(1)).unwrap_or(u32::MAX),
            io_backend: io_backend_name(config.dns.io_backend),
        }
    }

    /// The gRPC status of a cluster error, naming this node (and the leader, in metadata, when
    /// the answer is UNAVAILABLE).
    fn cluster_status(&self, error: &ClusterError) -> Status {
        let status = crate::cluster::service::status(error, &self.cluster);
        Status::with_metadata(
            status.code(),
            format!("node {}: {}", self.cluster.id(), status.message()),
            status.metadata().clone(),
        )
    }

    /// Proposes `command` to the cluster (forwarded to the leader when this node follows).
    async fn propose(&self, command: Command) -> Result<crate::cluster::CommandResponse, Status> {
        self.cluster
            .propose(command)
            .await
            .map_err(|e| self.cluster_status(&e))
    }

    /// Seconds since the node started.
    fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Registers the Control service over `admin`, health and reflection on `routes`, with the
/// admin token and read policy of `config`.
pub async fn add_services(
    routes: &mut RoutesBuilder,
    config: &Config,
    admin: NodeAdmin,
) -> Result<tonic_health::server::HealthReporter, heimdall_control::ReflectionError> {
    let token = config.admin.token.as_ref().map(|t| t.expose());
    let client_certs = config
        .tls
        .material
        .as_ref()
        .is_some_and(|tls| tls.verifies_client_certs());
    if token.is_none() && !client_certs {
        tracing::warn!(
            "no admin token (admin.token, HEIMDALL_ADMIN__TOKEN or admin.token_file) and no \
             client certificates (tls.client_ca_file): every mutating control-plane call is \
             refused"
        );
    }
    let auth = AdminAuth::new(token, config.admin.require_token_for_reads)
        .with_client_certificates(client_certs);
    heimdall_control::add_services(routes, Arc::new(admin), auth).await
}

#[tonic::async_trait]
impl ControlBackend for NodeAdmin {
    /// Id, version, uptime, Raft role and leader, config version, listeners, cache size.
    async fn status(&self, _caller: &Caller) -> Result<StatusReply, Status> {
        let metrics = self.cluster.metrics();
        let cache = self.resolver.cache();
        Ok(StatusReply {
            node_id: self.cluster.id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.uptime_seconds(),
            role: format!("{:?}", metrics.state),
            leader_id: metrics.current_leader,
            config_version: self.cluster.state().version,
            dns_addr: self.dns_addr.to_string(),
            grpc_addr: self.cluster.grpc_addr().to_string(),
            cache_entries: cache.len() as u64,
            cache_bytes: cache.bytes() as u64,
            io_backend: self.io_backend.to_owned(),
            workers: self.workers,
        })
    }

    /// The resolver's snapshot with the node id and Raft counters filled in.
    async fn get_stats(&self, _caller: &Caller) -> Result<StatsSnapshot, Status> {
        let mut snapshot = self.resolver.metrics().snapshot();
        let metrics = self.cluster.metrics();
        snapshot.node_id = self.cluster.id();
        snapshot.raft_term = metrics.current_term;
        snapshot.raft_last_applied = metrics.last_applied.map_or(0, |id| id.index);
        snapshot.raft_auth_failures = self.cluster.auth_failures().get();
        if snapshot.unix_ms == 0 {
            snapshot.unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        if snapshot.uptime_seconds == 0 {
            snapshot.uptime_seconds = self.uptime_seconds();
        }
        Ok(snapshot)
    }

    /// Every DO/CD variant cached for the name and type.
    async fn cache_lookup(
        &self,
        _caller: &Caller,
        request: CacheLookupRequest,
    ) -> Result<CacheLookupReply, Status> {
        cache::lookup(self.resolver.cache(), &request)
    }

    /// A local flush, or (with `cluster`) a local flush followed by a Raft flush epoch that
    /// every node applies; `removed` counts this node's entries.
    async fn cache_flush(
        &self,
        caller: &Caller,
        request: CacheFlushRequest,
    ) -> Result<CacheFlushReply, Status> {
        let scope = cache::flush_scope(&request)?;
        let removed = cache::flush_local(self.resolver.cache(), &scope)? as u64;
        tracing::info!(actor = %caller.actor, ?scope, removed, cluster = request.cluster, "cache flush");
        if !request.cluster {
            return Ok(CacheFlushReply { removed, epoch: 0 });
        }
        let command = Command::Flush {
            scope,
            author: caller.actor.clone(),
            node: self.cluster.id(),
            at_unix_ms: crate::cluster::auth::unix_ms(),
        };
        match self.propose(command).await? {
            crate::cluster::CommandResponse::Flushed { epoch } => {
                let deadline = tokio::time::Instant::now() + FLUSH_APPLY_WAIT;
                self.cluster
                    .wait_applied(deadline, |s| s.flush_epoch >= epoch)
                    .await;
                Ok(CacheFlushReply { removed, epoch })
            }
            other => Err(Status::invalid_argument(format!(
                "node {}: the cluster refused the flush: {other:?}",
                self.cluster.id()
            ))),
        }
    }

    /// Every fresh entry, streamed.
    async fn cache_dump(
        &self,
        _caller: &Caller,
        _request: CacheDumpRequest,
    ) -> Result<EntryStream, Status> {
        Ok(cache::dump(self.resolver.cache()))
    }

    /// Inserts the streamed entries with their remaining TTLs.
    async fn cache_load(
        &self,
        caller: &Caller,
        entries: EntryStream,
    ) -> Result<CacheLoadReply, Status> {
        tracing::info!(actor = %caller.actor, "cache load started");
        cache::load(self.resolver.cache(), entries).await
    }

    /// The configuration or one key.
    async fn config_get(
        &self,
        _caller: &Caller,
        request: ConfigGetRequest,
    ) -> Result<ConfigGetReply, Status> {
        self.config_get(&request.key, request.local).await
    }

    /// One key set through Raft.
    async fn config_set(
        &self,
        caller: &Caller,
        request: ConfigSetRequest,
    ) -> Result<ConfigChangeReply, Status> {
        self.config_set(
            &caller.actor,
            &request.key,
            &request.value,
            request.expect_version,
        )
        .await
    }

    /// The newest versions.
    async fn config_history(
        &self,
        _caller: &Caller,
        request: ConfigHistoryRequest,
    ) -> Result<ConfigHistoryReply, Status> {
        self.config_history(request.limit).await
    }

    /// A rollback through Raft.
    async fn config_rollback(
        &self,
        caller: &Caller,
        request: ConfigRollbackRequest,
    ) -> Result<ConfigChangeReply, Status> {
        self.config_rollback(&caller.actor, request.version, request.expect_version)
            .await
    }

    /// The forwarder's upstreams with health and RTT.
    async fn upstream_list(&self, _caller: &Caller) -> Result<UpstreamListReply, Status> {
        Ok(UpstreamListReply {
            upstreams: self
                .resolver
                .forwarder()
                .upstreams()
                .iter()
                .map(config::upstream_message)
                .collect(),
        })
    }

    /// Adds an upstream to the cluster configuration.
    async fn upstream_add(
        &self,
        caller: &Caller,
        request: UpstreamChangeRequest,
    ) -> Result<ConfigChangeReply, Status> {
        self.upstream_edit(&caller.actor, &request.addr, true, request.expect_version)
            .await
    }

    /// Removes an upstream from the cluster configuration.
    async fn upstream_remove(
        &self,
        caller: &Caller,
        request: UpstreamChangeRequest,
    ) -> Result<ConfigChangeReply, Status> {
        self.upstream_edit(&caller.actor, &request.addr, false, request.expect_version)
            .await
    }

    /// Every member with its own report.
    async fn cluster_members(&self, _caller: &Caller) -> Result<ClusterMembersReply, Status> {
        Ok(self.members().await)
    }

    /// The leader.
    async fn cluster_leader(&self, _caller: &Caller) -> Result<ClusterLeaderReply, Status> {
        Ok(self.leader())
    }

    /// Adds a `--join` node.
    async fn cluster_add_node(
        &self,
        caller: &Caller,
        request: ClusterAddNodeRequest,
    ) -> Result<ClusterMembersReply, Status> {
        tracing::info!(actor = %caller.actor, id = request.id, "cluster add-node");
        self.add_node(request.id, request.grpc_addr.trim()).await
    }

    /// Removes a node.
    async fn cluster_remove_node(
        &self,
        caller: &Caller,
        request: ClusterRemoveNodeRequest,
    ) -> Result<ClusterMembersReply, Status> {
        tracing::info!(actor = %caller.actor, id = request.id, "cluster remove-node");
        self.remove_node(request.id).await
    }

    /// The most queried names of this node.
    async fn top_names(
        &self,
        _caller: &Caller,
        request: TopNamesRequest,
    ) -> Result<TopNamesReply, Status> {
        let limit = match usize::try_from(request.limit) {
            Ok(0) | Err(_) => DEFAULT_TOP_NAMES,
            Ok(n) => n,
        };
        Ok(self.resolver.metrics().top_names(limit))
    }
}
