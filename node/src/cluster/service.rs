//! The server side of the internal Raft service ([`heimdall_proto::v1::raft_service_server`]).
//!
//! Every call is authenticated first ([`super::auth`]): a missing or wrong HMAC is answered
//! UNAUTHENTICATED and counted. Raft messages are handed to openraft; writes, membership
//! changes and linearizable reads go to the leader (forwarded by [`ClusterHandle`] when this
//! node follows). Cluster errors become gRPC statuses in one place ([`status`]); when the
//! leader is known, UNAVAILABLE answers carry it in the [`LEADER_HEADER`] metadata.

use std::collections::BTreeSet;
use std::sync::Arc;

use heimdall_proto::v1::raft_reply::Result as ReplyResult;
use heimdall_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use heimdall_proto::v1::{
    AddLearnerRequest, ChangeMembershipRequest, ClientWriteReply, ClientWriteRequest,
    HotEntriesRequest, HotEntry, JoinRequest, Member as MemberMessage, MembersReply,
    MembersRequest, MembershipReply, MetricsReply, MetricsRequest, RaftPayload, RaftReply,
    RemoveNodeRequest, StateReply, StateRequest,
};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::auth::{self, AUTH_HEADER};
use super::network::{MAX_MESSAGE_BYTES, method};
use super::node::{ClusterError, ClusterHandle, MemberInfo, Origin};
use super::state::Command;
use super::types::Member;
use crate::resolver::Resolver;

/// Metadata set by a member that forwards a read to the leader (never forwarded again).
pub const FORWARDED_HEADER: &str = "x-heimdall-forwarded";

/// Metadata naming the leader (`ID@host:port`) on UNAVAILABLE answers, so a client can retry
/// there.
pub const LEADER_HEADER: &str = "x-heimdall-leader";

/// The internal Raft service of one node.
#[derive(Clone, Debug)]
pub struct RaftGrpc {
    /// The node's cluster handle.
    cluster: ClusterHandle,
    /// The node's resolver, whose cache's hot set `HotEntries` streams.
    resolver: Arc<Resolver>,
}

impl RaftGrpc {
    /// The service over `cluster`.
    pub fn new(cluster: ClusterHandle, resolver: Arc<Resolver>) -> Self {
        Self { cluster, resolver }
    }

    /// The tonic server wrapper, accepting messages up to [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Checks the call's HMAC; refusals are counted and logged with the peer address.
    fn authenticate<T: Message>(&self, method: &str, request: &Request<T>) -> Result<(), Status> {
        let result = match self.cluster.keyring() {
            None => Err(auth::AuthError::NoSecret),
            Some(keyring) => {
                let header = request
                    .metadata()
                    .get(AUTH_HEADER)
                    .and_then(|v| v.to_str().ok());
                keyring.verify(
                    method,
                    header,
                    &request.get_ref().encode_to_vec(),
                    auth::unix_ms(),
                )
            }
        };
        result.map_err(|e| {
            self.cluster.auth_failures().incr();
            let peer = request
                .remote_addr()
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
            tracing::warn!(%peer, method, "refused an unauthenticated cluster RPC: {e}");
            Status::unauthenticated(e.to_string())
        })
    }
}

/// Decodes an openraft request from JSON.
fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

/// Encodes an openraft result as a [`RaftReply`].
fn reply<T: Serialize, E: Serialize>(result: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let result = match result {
        Ok(ok) => serde_json::to_vec(&ok).map(ReplyResult::OkJson),
        Err(err) => serde_json::to_vec(&err).map(ReplyResult::ErrorJson),
    }
    .map_err(|e| Status::internal(format!("encoding the raft reply: {e}")))?;
    Ok(Response::new(RaftReply {
        result: Some(result),
    }))
}

/// The gRPC status for a cluster error (the one place this mapping lives).
pub fn status(error: &ClusterError, cluster: &ClusterHandle) -> Status {
    let message = error.to_string();
    let mut status = match error {
        ClusterError::NoLeader { .. }
        | ClusterError::LeaderUnreachable { .. }
        | ClusterError::NotLeader { .. } => Status::unavailable(message),
        ClusterError::BadRequest(_) => Status::invalid_argument(message),
        ClusterError::Membership(_) => Status::failed_precondition(message),
        _ => Status::internal(message),
    };
    if status.code() == tonic::Code::Unavailable
        && let Some((id, Some(member))) = cluster.leader()
        && let Ok(value) = format!("{id}@{}", member.grpc_addr).parse()
    {
        status.metadata_mut().insert(LEADER_HEADER, value);
    }
    status
}

/// This node's Raft position and applied versions, as the Metrics call reports them.
pub fn metrics_reply(cluster: &ClusterHandle) -> MetricsReply {
    let m = cluster.metrics();
    let state = cluster.state();
    MetricsReply {
        node_id: m.id,
        state: format!("{:?}", m.state),
        current_term: m.current_term,
        leader_id: m.current_leader,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|id| id.index),
        settings_version: state.version,
        flush_epoch: state.flush_epoch,
        auth_failures: cluster.auth_failures().get(),
    }
}

/// The protobuf form of a member.
pub fn member_message(info: &MemberInfo) -> MemberMessage {
    MemberMessage {
        id: info.id,
        grpc_addr: info.member.grpc_addr.clone(),
        dns_addr: info.member.dns_addr.clone(),
        gossip_addr: info.member.gossip_addr.clone(),
        voter: info.voter,
    }
}

/// The node id and addresses of a member message; the gRPC address is required.
fn member_from(message: Option<MemberMessage>) -> Result<(u64, Member), Status> {
    let m = message.ok_or_else(|| Status::invalid_argument("member is required"))?;
    if m.id == 0 {
        return Err(Status::invalid_argument("member.id must be >= 1"));
    }
    crate::config::parse_host_port(&m.grpc_addr)
        .map_err(|e| Status::invalid_argument(format!("member.grpc_addr: {e}")))?;
    Ok((
        m.id,
        Member {
            grpc_addr: m.grpc_addr,
            dns_addr: m.dns_addr,
            gossip_addr: m.gossip_addr,
        },
    ))
}

/// The reply to a membership change.
fn membership_reply(
    result: Result<(u64, Vec<MemberInfo>), ClusterError>,
    cluster: &ClusterHandle,
) -> Result<Response<MembershipReply>, Status> {
    let (log_index, members) = result.map_err(|e| status(&e, cluster))?;
    Ok(Response::new(MembershipReply {
        log_index,
        members: members.iter().map(member_message).collect(),
    }))
}

/// The stream `HotEntries` answers with (built in full before it is sent).
type HotEntriesStream =
    tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<Result<HotEntry, Status>>>;

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    /// See [`HotEntriesStream`].
    type HotEntriesStream = HotEntriesStream;

    /// Streams this node's hot cache entries, most-hit first (warm start of a peer).
    async fn hot_entries(
        &self,
        request: Request<HotEntriesRequest>,
    ) -> Result<Response<Self::HotEntriesStream>, Status> {
        self.authenticate(method::HOT_ENTRIES, &request)?;
        let limit = usize::try_from(request.get_ref().limit).unwrap_or(usize::MAX);
        let entries = crate::gossip::warm::hot_set(
            self.resolver.cache(),
            limit,
            std::time::Instant::now(),
            auth::unix_ms(),
        );
        let items: Vec<Result<HotEntry, Status>> = entries.into_iter().map(Ok).collect();
        Ok(Response::new(tonic::codegen::tokio_stream::iter(items)))
    }

    /// Hands an AppendEntries request to openraft.
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftReply>, Status> {
        self.authenticate(method::APPEND_ENTRIES, &request)?;
        let rpc = decode(&request.get_ref().json)?;
        reply(self.cluster.raft().append_entries(rpc).await)
    }

    /// Hands a Vote request to openraft.
    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftReply>, Status> {
        self.authenticate(method::VOTE, &request)?;
        let rpc = decode(&request.get_ref().json)?;
        reply(self.cluster.raft().vote(rpc).await)
    }

    /// Hands a snapshot chunk to openraft.
    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftReply>, Status> {
        self.authenticate(method::INSTALL_SNAPSHOT, &request)?;
        let rpc = decode(&request.get_ref().json)?;
        reply(self.cluster.raft().install_snapshot(rpc).await)
    }

    /// Proposes a command (forwarding to the leader unless it was forwarded already).
    async fn client_write(
        &self,
        request: Request<ClientWriteRequest>,
    ) -> Result<Response<ClientWriteReply>, Status> {
        self.authenticate(method::CLIENT_WRITE, &request)?;
        let request = request.into_inner();
        let command: Command = serde_json::from_slice(&request.command_json)
            .map_err(|e| Status::invalid_argument(format!("undecodable command: {e}")))?;
        let origin = if request.forwarded {
            Origin::Forwarded
        } else {
            Origin::Local
        };
        let outcome = self
            .cluster
            .write(command, origin)
            .await
            .map_err(|e| status(&e, &self.cluster))?;
        let response_json = serde_json::to_vec(&outcome.response)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))?;
        Ok(Response::new(ClientWriteReply {
            response_json,
            log_index: outcome.log_index,
            leader_id: outcome.leader,
        }))
    }

    /// Adds a learner (on the leader).
    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.authenticate(method::ADD_LEARNER, &request)?;
        let request = request.into_inner();
        let (id, member) = member_from(request.member)?;
        let result = if request.update_only {
            self.cluster.record_addresses(id, member).await
        } else {
            self.cluster.add_learner(id, member, request.blocking).await
        };
        membership_reply(result, &self.cluster)
    }

    /// Replaces the voters (on the leader).
    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.authenticate(method::CHANGE_MEMBERSHIP, &request)?;
        let request = request.into_inner();
        let voters: BTreeSet<u64> = request.voters.into_iter().collect();
        membership_reply(
            self.cluster.change_membership(voters, request.retain).await,
            &self.cluster,
        )
    }

    /// Adds a voter through the learner stage (on the leader).
    async fn join(
        &self,
        request: Request<JoinRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.authenticate(method::JOIN, &request)?;
        let (id, member) = member_from(request.into_inner().member)?;
        membership_reply(self.cluster.join(id, member).await, &self.cluster)
    }

    /// Removes a node: demotes a voter, then removes it (on the leader).
    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.authenticate(method::REMOVE_NODE, &request)?;
        let id = request.into_inner().id;
        membership_reply(self.cluster.remove_node(id).await, &self.cluster)
    }

    /// Lists the members and the leader as this node knows them.
    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        self.authenticate(method::MEMBERS, &request)?;
        Ok(Response::new(MembersReply {
            node_id: self.cluster.id(),
            leader_id: self.cluster.leader().map(|(id, _)| id),
            members: self.cluster.members().iter().map(member_message).collect(),
        }))
    }

    /// This node's Raft position and applied versions.
    async fn metrics(
        &self,
        request: Request<MetricsRequest>,
    ) -> Result<Response<MetricsReply>, Status> {
        self.authenticate(method::METRICS, &request)?;
        Ok(Response::new(metrics_reply(&self.cluster)))
    }

    /// The replicated state (linearizable on request).
    async fn state(&self, request: Request<StateRequest>) -> Result<Response<StateReply>, Status> {
        self.authenticate(method::STATE, &request)?;
        let origin = if request.metadata().contains_key(FORWARDED_HEADER) {
            Origin::Forwarded
        } else {
            Origin::Local
        };
        let linearizable = request.get_ref().linearizable;
        let state = self
            .cluster
            .read_state(linearizable, origin)
            .await
            .map_err(|e| status(&e, &self.cluster))?;
        let state_json = serde_json::to_vec(state.as_ref())
            .map_err(|e| Status::internal(format!("encoding the state: {e}")))?;
        let metrics = self.cluster.metrics();
        Ok(Response::new(StateReply {
            state_json,
            version: state.version,
            last_applied_index: metrics.last_applied.map(|id| id.index),
        }))
    }
}
