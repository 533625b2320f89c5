//! The client side of the internal Raft service: openraft's network over tonic.
//!
//! [`NetworkFactory`] hands openraft one [`PeerNetwork`] per target node. Each holds a lazily
//! connected tonic channel (no connection is made until the first RPC, and a broken one is
//! re-established by tonic), signs every request with the cluster secret ([`authenticated`])
//! and bounds every call by openraft's per-RPC deadline. Raft messages travel as openraft's
//! own types in JSON ([`heimdall_proto::v1::RaftPayload`]).
//!
//! [`Peers`] is the same machinery for the node's own calls to other members: forwarding a
//! write or a read to the leader.
//!
//! With `[tls]`, every channel is `https`: it trusts `tls.ca_file` (default
//! `tls.client_ca_file`) and presents the node's own certificate, so the peers' listeners
//! (which may require client certificates) accept it. The cluster-secret signature is sent
//! either way.

use std::time::Duration;

use heimdall_proto::v1::raft_reply::Result as ReplyResult;
use heimdall_proto::v1::raft_service_client::RaftServiceClient;
use heimdall_proto::v1::{RaftPayload, RaftReply};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::auth::{self, AUTH_HEADER};
use super::types::{Member, NodeId, TypeConfig};
use crate::config::Secret;

/// gRPC paths of the internal service's methods (also what the MAC covers).
pub mod method {
    /// `AppendEntries`.
    pub const APPEND_ENTRIES: &str = "/heimdall.v1.RaftService/AppendEntries";
    /// `Vote`.
    pub const VOTE: &str = "/heimdall.v1.RaftService/Vote";
    /// `InstallSnapshot`.
    pub const INSTALL_SNAPSHOT: &str = "/heimdall.v1.RaftService/InstallSnapshot";
    /// `ClientWrite`.
    pub const CLIENT_WRITE: &str = "/heimdall.v1.RaftService/ClientWrite";
    /// `AddLearner`.
    pub const ADD_LEARNER: &str = "/heimdall.v1.RaftService/AddLearner";
    /// `ChangeMembership`.
    pub const CHANGE_MEMBERSHIP: &str = "/heimdall.v1.RaftService/ChangeMembership";
    /// `Join`.
    pub const JOIN: &str = "/heimdall.v1.RaftService/Join";
    /// `RemoveNode`.
    pub const REMOVE_NODE: &str = "/heimdall.v1.RaftService/RemoveNode";
    /// `Members`.
    pub const MEMBERS: &str = "/heimdall.v1.RaftService/Members";
    /// `Metrics`.
    pub const METRICS: &str = "/heimdall.v1.RaftService/Metrics";
    /// `State`.
    pub const STATE: &str = "/heimdall.v1.RaftService/State";
    /// `HotEntries`.
    pub const HOT_ENTRIES: &str = "/heimdall.v1.RaftService/HotEntries";
}

/// Largest gRPC message the internal service sends or accepts (snapshots are chunked well
/// below it).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long establishing a TCP connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A tonic request for `method` carrying `message`, with the authentication header when a
/// secret is given (a node without one sends unauthenticated calls, which peers refuse).
pub fn authenticated<T: prost::Message>(
    secret: Option<&Secret>,
    method: &str,
    message: T,
) -> tonic::Request<T> {
    let header = secret.map(|s| auth::sign(s, method, auth::unix_ms(), &message.encode_to_vec()));
    let mut request = tonic::Request::new(message);
    if let Some(value) = header.and_then(|h| h.parse().ok()) {
        request.metadata_mut().insert(AUTH_HEADER, value);
    }
    request
}

/// A lazily connecting channel to `addr` (`host:port`), over TLS with `tls` (`https`, the
/// server's certificate checked against `addr`'s host name or IP address) or plain `http`;
/// fails only on a malformed address or an unusable TLS configuration.
pub fn lazy_channel(
    addr: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = match tls {
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone())?,
        None => Endpoint::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// A raft-service client over `channel` that accepts messages up to [`MAX_MESSAGE_BYTES`].
pub fn client(channel: Channel) -> RaftServiceClient<Channel> {
    RaftServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// What the node needs to call other members: the secret, TLS and the default deadline.
#[derive(Clone, Debug)]
pub struct Peers {
    /// The cluster secret that signs every call.
    secret: Option<Secret>,
    /// TLS towards the peers (None: plain text).
    tls: Option<ClientTlsConfig>,
    /// Deadline of a forwarded call.
    timeout: Duration,
}

impl Peers {
    /// Calls signed with `secret`, over `tls` when given, each bounded by `timeout`.
    pub fn new(secret: Option<Secret>, tls: Option<ClientTlsConfig>, timeout: Duration) -> Self {
        Self {
            secret,
            tls,
            timeout,
        }
    }

    /// The cluster secret, if any.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// A signed request for `method` with this peer set's deadline.
    pub fn request<T: prost::Message>(&self, method: &str, message: T) -> tonic::Request<T> {
        let mut request = authenticated(self.secret.as_ref(), method, message);
        request.set_timeout(self.timeout);
        request
    }

    /// A client for the member at `addr` (connects on first use).
    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, tonic::Status> {
        lazy_channel(addr, self.tls.as_ref())
            .map(client)
            .map_err(|e| tonic::Status::invalid_argument(format!("bad address {addr:?}: {e}")))
    }
}

/// Creates one [`PeerNetwork`] per replication target.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    /// Signing secret shared by every connection.
    secret: Option<Secret>,
    /// TLS towards the peers (None: plain text).
    tls: Option<ClientTlsConfig>,
}

impl NetworkFactory {
    /// A factory whose connections sign with `secret` and use `tls` when given.
    pub fn new(secret: Option<Secret>, tls: Option<ClientTlsConfig>) -> Self {
        Self { secret, tls }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    /// The connection to one target.
    type Network = PeerNetwork;

    /// A connection to `target` at its gRPC address; nothing is dialled until the first RPC.
    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            target,
            addr: node.grpc_addr.clone(),
            client: lazy_channel(&node.grpc_addr, self.tls.as_ref())
                .map(client)
                .map_err(|e| e.to_string()),
            secret: self.secret.clone(),
        }
    }
}

/// openraft's connection to one other member over the internal gRPC service.
#[derive(Debug)]
pub struct PeerNetwork {
    /// The target node.
    target: NodeId,
    /// Its gRPC address, for errors.
    addr: String,
    /// The tonic client, or why the address could not be used.
    client: Result<RaftServiceClient<Channel>, String>,
    /// Signing secret.
    secret: Option<Secret>,
}

/// Why a call to a peer failed before a Raft answer came back.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {reason}")]
struct CallError {
    /// The peer's address.
    addr: String,
    /// What went wrong.
    reason: String,
}

/// How one RPC failed: transport trouble, or the peer's Raft refused it.
enum Failure<E> {
    /// Could not connect (back off before retrying).
    Unreachable(CallError),
    /// The call failed after connecting, timed out, or the reply did not decode.
    Network(CallError),
    /// The peer's Raft answered with an error.
    Remote(RaftError<NodeId, E>),
}

impl<E: std::error::Error> Failure<E> {
    /// The openraft error for a call to `target`.
    fn into_rpc(self, target: NodeId) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
        match self {
            Self::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            Self::Network(e) => RPCError::Network(NetworkError::new(&e)),
            Self::Remote(e) => RPCError::RemoteError(RemoteError::new(target, e)),
        }
    }
}

impl PeerNetwork {
    /// Sends one JSON-encoded Raft request to `method` within `ttl` and decodes the answer.
    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let addr = self.addr.clone();
        let err = |reason: String| CallError {
            addr: addr.clone(),
            reason,
        };
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => return Err(Failure::Unreachable(err(reason.clone()))),
        };
        let json = serde_json::to_vec(request)
            .map_err(|e| Failure::Network(err(format!("encoding the request: {e}"))))?;
        let mut req = authenticated(self.secret.as_ref(), method, RaftPayload { json });
        req.set_timeout(ttl);
        let mut client = client;
        let call = match method {
            method::APPEND_ENTRIES => client.append_entries(req).await,
            method::VOTE => client.vote(req).await,
            _ => client.install_snapshot(req).await,
        };
        let reply: RaftReply = match call {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(Failure::Unreachable(err(status.message().to_owned())));
            }
            Err(status) => {
                if status.code() == tonic::Code::Unauthenticated {
                    tracing::warn!(peer = %self.addr, target = self.target, "peer refused our cluster authentication: {}", status.message());
                }
                return Err(Failure::Network(err(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                ))));
            }
        };
        match reply.result {
            Some(ReplyResult::OkJson(json)) => serde_json::from_slice(&json)
                .map_err(|e| Failure::Network(err(format!("decoding the reply: {e}")))),
            Some(ReplyResult::ErrorJson(json)) => match serde_json::from_slice(&json) {
                Ok(e) => Err(Failure::Remote(e)),
                Err(e) => Err(Failure::Network(err(format!("decoding the error: {e}")))),
            },
            None => Err(Failure::Network(err("empty reply".to_owned()))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    /// Replicates entries (or a heartbeat) to the target.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(method::APPEND_ENTRIES, &rpc, option.hard_ttl())
            .await
            .map_err(|f| f.into_rpc(self.target))
    }

    /// Sends one snapshot chunk to the target.
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(method::INSTALL_SNAPSHOT, &rpc, option.hard_ttl())
            .await
            .map_err(|f| f.into_rpc(self.target))
    }

    /// Asks the target for its vote.
    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(method::VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(|f| f.into_rpc(self.target))
    }
}
