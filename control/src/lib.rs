//! Heimdall's control plane: the `heimdall.v1.Control` gRPC service over a trait the node implements.
//!
//! - [`ControlBackend`]: what a node provides (status, stats, cache, config, upstreams,
//!   membership, top names), in terms of the protobuf messages. The node maps its own errors
//!   to gRPC statuses; this crate never depends on the node.
//! - [`ControlService`]: the tonic service. It admits every call through [`AdminAuth`] (the
//!   admin bearer token, compared in constant time, or a client certificate verified by the
//!   TLS layer, see [`cert`]; required for mutating calls, and for reads when configured),
//!   hands the caller's name to the backend, and turns
//!   [`ControlBackend::get_stats`] into the WatchStats stream.
//! - [`add_services`]: registers the Control service, `grpc.health.v1` and server
//!   reflection (v1 and v1alpha, so grpcurl works) on a node's gRPC routes.

pub mod auth;
pub mod cert;

use std::sync::Arc;
use std::time::Duration;

use heimdall_proto::v1::control_server::{Control, ControlServer};
use heimdall_proto::v1::{
    CacheDumpRequest, CacheEntry, CacheFlushReply, CacheFlushRequest, CacheLoadReply,
    CacheLookupReply, CacheLookupRequest, ClusterAddNodeRequest, ClusterLeaderReply,
    ClusterLeaderRequest, ClusterMembersReply, ClusterMembersRequest, ClusterRemoveNodeRequest,
    ConfigChangeReply, ConfigGetReply, ConfigGetRequest, ConfigHistoryReply, ConfigHistoryRequest,
    ConfigRollbackRequest, ConfigSetRequest, StatsRequest, StatsSnapshot, StatusReply,
    StatusRequest, TopNamesReply, TopNamesRequest, UpstreamChangeRequest, UpstreamListReply,
    UpstreamListRequest, WatchStatsRequest,
};
use tonic::codegen::BoxStream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status, Streaming};

pub use auth::{Access, AdminAuth, Caller};
pub use cert::ClientCertificate;

/// A stream of cache entries (CacheDump's answer, CacheLoad's input).
pub type EntryStream = BoxStream<CacheEntry>;

/// WatchStats interval when the caller asks for 0.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(1000);

/// Shortest WatchStats interval; smaller requests are raised to it.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Largest message the Control service sends or accepts (a dumped entry is at most a 64 KiB
/// DNS message).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// What a node provides to the control plane. Every call has been admitted already; `caller`
/// names who asked (recorded in the config history). Errors are gRPC statuses naming the node
/// and the reason.
#[tonic::async_trait]
pub trait ControlBackend: Send + Sync + 'static {
    /// The node at a glance.
    async fn status(&self, caller: &Caller) -> Result<StatusReply, Status>;
    /// A snapshot of the node's counters.
    async fn get_stats(&self, caller: &Caller) -> Result<StatsSnapshot, Status>;
    /// What the cache holds for a name and type.
    async fn cache_lookup(
        &self,
        caller: &Caller,
        request: CacheLookupRequest,
    ) -> Result<CacheLookupReply, Status>;
    /// Flush entries locally or cluster-wide.
    async fn cache_flush(
        &self,
        caller: &Caller,
        request: CacheFlushRequest,
    ) -> Result<CacheFlushReply, Status>;
    /// Every live cache entry.
    async fn cache_dump(
        &self,
        caller: &Caller,
        request: CacheDumpRequest,
    ) -> Result<EntryStream, Status>;
    /// Insert dumped entries with their remaining TTLs.
    async fn cache_load(
        &self,
        caller: &Caller,
        entries: EntryStream,
    ) -> Result<CacheLoadReply, Status>;
    /// The cluster configuration, whole or one key.
    async fn config_get(
        &self,
        caller: &Caller,
        request: ConfigGetRequest,
    ) -> Result<ConfigGetReply, Status>;
    /// Set one key.
    async fn config_set(
        &self,
        caller: &Caller,
        request: ConfigSetRequest,
    ) -> Result<ConfigChangeReply, Status>;
    /// The newest versions.
    async fn config_history(
        &self,
        caller: &Caller,
        request: ConfigHistoryRequest,
    ) -> Result<ConfigHistoryReply, Status>;
    /// Restore an earlier version.
    async fn config_rollback(
        &self,
        caller: &Caller,
        request: ConfigRollbackRequest,
    ) -> Result<ConfigChangeReply, Status>;
    /// The upstreams with health and RTT.
    async fn upstream_list(&self, caller: &Caller) -> Result<UpstreamListReply, Status>;
    /// Add an upstream to the cluster configuration.
    async fn upstream_add(
        &self,
        caller: &Caller,
        request: UpstreamChangeRequest,
    ) -> Result<ConfigChangeReply, Status>;
    /// Remove an upstream from the cluster configuration.
    async fn upstream_remove(
        &self,
        caller: &Caller,
        request: UpstreamChangeRequest,
    ) -> Result<ConfigChangeReply, Status>;
    /// Every member with its Raft position.
    async fn cluster_members(&self, caller: &Caller) -> Result<ClusterMembersReply, Status>;
    /// The leader.
    async fn cluster_leader(&self, caller: &Caller) -> Result<ClusterLeaderReply, Status>;
    /// Add a `--join` node.
    async fn cluster_add_node(
        &self,
        caller: &Caller,
        request: ClusterAddNodeRequest,
    ) -> Result<ClusterMembersReply, Status>;
    /// Remove a node.
    async fn cluster_remove_node(
        &self,
        caller: &Caller,
        request: ClusterRemoveNodeRequest,
    ) -> Result<ClusterMembersReply, Status>;
    /// The most queried names.
    async fn top_names(
        &self,
        caller: &Caller,
        request: TopNamesRequest,
    ) -> Result<TopNamesReply, Status>;
}

/// The `heimdall.v1.Control` service over a backend.
#[derive(Debug)]
pub struct ControlService<B> {
    /// The node.
    backend: Arc<B>,
    /// Who may call what.
    auth: AdminAuth,
}

impl<B: ControlBackend> ControlService<B> {
    /// The service over `backend`, admitting calls with `auth`.
    pub fn new(backend: Arc<B>, auth: AdminAuth) -> Self {
        Self { backend, auth }
    }

    /// The tonic server wrapper, with message limits of [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> ControlServer<Self> {
        ControlServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Admits `request` for `access`; a refusal is logged with the peer and the method.
    fn admit<T>(
        &self,
        request: &Request<T>,
        access: Access,
        method: &str,
    ) -> Result<Caller, Status> {
        let certificate = ClientCertificate::of(request);
        self.auth
            .admit(request.metadata(), certificate.as_ref(), access)
            .inspect_err(|e| {
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
                tracing::warn!(%peer, method, "refused a control call: {}", e.message());
            })
    }
}

/// The WatchStats interval for a requested number of milliseconds.
pub fn watch_interval(interval_ms: u64) -> Duration {
    if interval_ms == 0 {
        DEFAULT_WATCH_INTERVAL
    } else {
        Duration::from_millis(interval_ms).max(MIN_WATCH_INTERVAL)
    }
}

#[tonic::async_trait]
impl<B: ControlBackend> Control for ControlService<B> {
    type WatchStatsStream = BoxStream<StatsSnapshot>;
    type CacheDumpStream = BoxStream<CacheEntry>;

    /// See [`ControlBackend::status`].
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let caller = self.admit(&request, Access::Read, "Status")?;
        self.backend.status(&caller).await.map(Response::new)
    }

    /// See [`ControlBackend::get_stats`].
    async fn get_stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsSnapshot>, Status> {
        let caller = self.admit(&request, Access::Read, "GetStats")?;
        self.backend.get_stats(&caller).await.map(Response::new)
    }

    /// A snapshot every interval (at least [`MIN_WATCH_INTERVAL`]) until the caller goes away
    /// or the backend fails (the error ends the stream).
    async fn watch_stats(
        &self,
        request: Request<WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let caller = self.admit(&request, Access::Read, "WatchStats")?;
        let interval = watch_interval(request.get_ref().interval_ms);
        let backend = Arc::clone(&self.backend);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = tx.closed() => return,
                }
                let snapshot = backend.get_stats(&caller).await;
                let failed = snapshot.is_err();
                if tx.send(snapshot).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// See [`ControlBackend::cache_lookup`].
    async fn cache_lookup(
        &self,
        request: Request<CacheLookupRequest>,
    ) -> Result<Response<CacheLookupReply>, Status> {
        let caller = self.admit(&request, Access::Read, "CacheLookup")?;
        let request = request.into_inner();
        self.backend
            .cache_lookup(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cache_flush`].
    async fn cache_flush(
        &self,
        request: Request<CacheFlushRequest>,
    ) -> Result<Response<CacheFlushReply>, Status> {
        let caller = self.admit(&request, Access::Write, "CacheFlush")?;
        let request = request.into_inner();
        self.backend
            .cache_flush(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cache_dump`]. A dump is a read: the cache's contents are what
    /// lookups show too.
    async fn cache_dump(
        &self,
        request: Request<CacheDumpRequest>,
    ) -> Result<Response<Self::CacheDumpStream>, Status> {
        let caller = self.admit(&request, Access::Read, "CacheDump")?;
        let request = request.into_inner();
        self.backend
            .cache_dump(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cache_load`].
    async fn cache_load(
        &self,
        request: Request<Streaming<CacheEntry>>,
    ) -> Result<Response<CacheLoadReply>, Status> {
        let caller = self.admit(&request, Access::Write, "CacheLoad")?;
        let entries: EntryStream = Box::pin(request.into_inner());
        self.backend
            .cache_load(&caller, entries)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::config_get`].
    async fn config_get(
        &self,
        request: Request<ConfigGetRequest>,
    ) -> Result<Response<ConfigGetReply>, Status> {
        let caller = self.admit(&request, Access::Read, "ConfigGet")?;
        let request = request.into_inner();
        self.backend
            .config_get(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::config_set`].
    async fn config_set(
        &self,
        request: Request<ConfigSetRequest>,
    ) -> Result<Response<ConfigChangeReply>, Status> {
        let caller = self.admit(&request, Access::Write, "ConfigSet")?;
        let request = request.into_inner();
        self.backend
            .config_set(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::config_history`].
    async fn config_history(
        &self,
        request: Request<ConfigHistoryRequest>,
    ) -> Result<Response<ConfigHistoryReply>, Status> {
        let caller = self.admit(&request, Access::Read, "ConfigHistory")?;
        let request = request.into_inner();
        self.backend
            .config_history(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::config_rollback`].
    async fn config_rollback(
        &self,
        request: Request<ConfigRollbackRequest>,
    ) -> Result<Response<ConfigChangeReply>, Status> {
        let caller = self.admit(&request, Access::Write, "ConfigRollback")?;
        let request = request.into_inner();
        self.backend
            .config_rollback(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::upstream_list`].
    async fn upstream_list(
        &self,
        request: Request<UpstreamListRequest>,
    ) -> Result<Response<UpstreamListReply>, Status> {
        let caller = self.admit(&request, Access::Read, "UpstreamList")?;
        self.backend.upstream_list(&caller).await.map(Response::new)
    }

    /// See [`ControlBackend::upstream_add`].
    async fn upstream_add(
        &self,
        request: Request<UpstreamChangeRequest>,
    ) -> Result<Response<ConfigChangeReply>, Status> {
        let caller = self.admit(&request, Access::Write, "UpstreamAdd")?;
        let request = request.into_inner();
        self.backend
            .upstream_add(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::upstream_remove`].
    async fn upstream_remove(
        &self,
        request: Request<UpstreamChangeRequest>,
    ) -> Result<Response<ConfigChangeReply>, Status> {
        let caller = self.admit(&request, Access::Write, "UpstreamRemove")?;
        let request = request.into_inner();
        self.backend
            .upstream_remove(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cluster_members`].
    async fn cluster_members(
        &self,
        request: Request<ClusterMembersRequest>,
    ) -> Result<Response<ClusterMembersReply>, Status> {
        let caller = self.admit(&request, Access::Read, "ClusterMembers")?;
        self.backend
            .cluster_members(&caller)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cluster_leader`].
    async fn cluster_leader(
        &self,
        request: Request<ClusterLeaderRequest>,
    ) -> Result<Response<ClusterLeaderReply>, Status> {
        let caller = self.admit(&request, Access::Read, "ClusterLeader")?;
        self.backend
            .cluster_leader(&caller)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cluster_add_node`].
    async fn cluster_add_node(
        &self,
        request: Request<ClusterAddNodeRequest>,
    ) -> Result<Response<ClusterMembersReply>, Status> {
        let caller = self.admit(&request, Access::Write, "ClusterAddNode")?;
        let request = request.into_inner();
        self.backend
            .cluster_add_node(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::cluster_remove_node`].
    async fn cluster_remove_node(
        &self,
        request: Request<ClusterRemoveNodeRequest>,
    ) -> Result<Response<ClusterMembersReply>, Status> {
        let caller = self.admit(&request, Access::Write, "ClusterRemoveNode")?;
        let request = request.into_inner();
        self.backend
            .cluster_remove_node(&caller, request)
            .await
            .map(Response::new)
    }

    /// See [`ControlBackend::top_names`].
    async fn top_names(
        &self,
        request: Request<TopNamesRequest>,
    ) -> Result<Response<TopNamesReply>, Status> {
        let caller = self.admit(&request, Access::Read, "TopNames")?;
        let request = request.into_inner();
        self.backend
            .top_names(&caller, request)
            .await
            .map(Response::new)
    }
}

/// Why the control plane's services could not be built.
#[derive(Debug)]
pub struct ReflectionError(
    /// What tonic-reflection reported.
    pub String,
);

impl std::fmt::Display for ReflectionError {
    /// `server reflection: <reason>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server reflection: {}", self.0)
    }
}

impl std::error::Error for ReflectionError {}

/// Registers on `routes`: the Control service over `backend`, `grpc.health.v1` (the overall
/// status and `heimdall.v1.Control` reported SERVING), and server reflection v1 and v1alpha
/// over every Heimdall and health descriptor. Returns the health reporter, so the node can
/// report NOT_SERVING when it stops.
pub async fn add_services<B: ControlBackend>(
    routes: &mut RoutesBuilder,
    backend: Arc<B>,
    auth: AdminAuth,
) -> Result<tonic_health::server::HealthReporter, ReflectionError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<ControlServer<ControlService<B>>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(heimdall_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .map_err(|e| ReflectionError(e.to_string()))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ReflectionError(e.to_string()))?;
    routes
        .add_service(ControlService::new(backend, auth).into_server())
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha);
    Ok(reporter)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 means the default; short intervals are raised to the minimum.
    #[test]
    fn watch_interval_bounds() {
        assert_eq!(watch_interval(0), DEFAULT_WATCH_INTERVAL);
        assert_eq!(watch_interval(5), MIN_WATCH_INTERVAL);
        assert_eq!(watch_interval(2500), Duration::from_millis(2500));
    }
}
