//! The membership calls of the control plane: members with each one's own Raft position (asked
//! over the internal Metrics call), the leader, adding a `--join` node and removing a node.

use std::time::Duration;

use heimdall_proto::v1::{
    ClusterLeaderReply, ClusterMember, ClusterMembersReply, MembersReply, MembersRequest,
    MetricsReply, MetricsRequest,
};
use tonic::Status;

use super::NodeAdmin;
use crate::cluster::network::method;
use crate::cluster::{Member, MemberInfo};

/// Deadline of one call to a member (metrics) or to a node about to be added.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

impl NodeAdmin {
    /// Asks the node at `addr` for its Raft metrics over the internal service.
    async fn peer_metrics(&self, addr: &str) -> Result<MetricsReply, Status> {
        let peers = self.cluster.peers();
        let mut client = peers.client(addr)?;
        let mut request = peers.request(method::METRICS, MetricsRequest {});
        request.set_timeout(PEER_TIMEOUT);
        client
            .metrics(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Asks the node at `addr` for the members it knows over the internal service.
    async fn peer_members(&self, addr: &str) -> Result<MembersReply, Status> {
        let peers = self.cluster.peers();
        let mut client = peers.client(addr)?;
        let mut request = peers.request(method::MEMBERS, MembersRequest {});
        request.set_timeout(PEER_TIMEOUT);
        client
            .members(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every member with its role, term and last applied index as it reports them (asked
    /// concurrently); an unreachable member is flagged with the error.
    pub(super) async fn members(&self) -> ClusterMembersReply {
        let members = self.cluster.members();
        let calls: Vec<_> = members
            .iter()
            .map(|info| {
                let admin = self.clone();
                let info = info.clone();
                tokio::spawn(async move {
                    let metrics = if info.id == admin.cluster.id() {
                        Ok(crate::cluster::service::metrics_reply(&admin.cluster))
                    } else {
                        admin.peer_metrics(&info.member.grpc_addr).await
                    };
                    member_message(&info, metrics)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(calls.len());
        for (call, info) in calls.into_iter().zip(&members) {
            out.push(call.await.unwrap_or_else(|e| {
                member_message(info, Err(Status::internal(format!("metrics task: {e}"))))
            }));
        }
        ClusterMembersReply {
            leader_id: self.cluster.leader().map(|(id, _)| id),
            members: out,
        }
    }

    /// The leader as this node knows it.
    pub(super) fn leader(&self) -> ClusterLeaderReply {
        let leader = self.cluster.leader();
        ClusterLeaderReply {
            leader_id: leader.as_ref().map(|(id, _)| *id),
            grpc_addr: leader
                .and_then(|(_, m)| m)
                .map(|m| m.grpc_addr)
                .unwrap_or_default(),
            term: self.cluster.metrics().current_term,
        }
    }

    /// Checks that the node `id` at `addr` can join this cluster: it answers, it is node
    /// `id`, and it does not belong to another cluster (no membership, or one that includes
    /// this node; no leader outside this cluster).
    async fn check_joiner(&self, id: u64, addr: &str) -> Result<(), Status> {
        let me = self.cluster.id();
        let refuse = |reason: String| {
            Status::failed_precondition(format!(
                "node {me}: cannot add node {id} at {addr}: {reason}"
            ))
        };
        let members = self.peer_members(addr).await.map_err(|s| match s.code() {
            tonic::Code::Unauthenticated => refuse(format!(
                "it refused our cluster authentication ({}); it uses another cluster secret, \
                 so it belongs to another cluster or is misconfigured",
                s.message()
            )),
            code => Status::unavailable(format!(
                "node {me}: cannot add node {id} at {addr}: it did not answer ({code:?}: {})",
                s.message()
            )),
        })?;
        if members.node_id != id {
            return Err(Status::invalid_argument(format!(
                "node {me}: the node at {addr} is node {}, not node {id}",
                members.node_id
            )));
        }
        let ours: Vec<u64> = self.cluster.members().iter().map(|m| m.id).collect();
        let theirs: Vec<u64> = members.members.iter().map(|m| m.id).collect();
        let foreign_leader = members.leader_id.filter(|l| !ours.contains(l));
        if (!theirs.is_empty() && !theirs.contains(&me)) || foreign_leader.is_some() {
            return Err(refuse(format!(
                "it already belongs to another cluster (its members: {theirs:?}, its leader: {}); \
                 start it with --join and an empty data dir to add it here",
                members
                    .leader_id
                    .map_or_else(|| "none".to_owned(), |l| format!("node {l}"))
            )));
        }
        Ok(())
    }

    /// Adds the `--join` node `id` at `addr`: learner, caught up, then voter.
    pub(super) async fn add_node(
        &self,
        id: u64,
        addr: &str,
    ) -> Result<ClusterMembersReply, Status> {
        let me = self.cluster.id();
        if id == 0 {
            return Err(Status::invalid_argument("id: must be >= 1"));
        }
        crate::config::parse_host_port(addr)
            .map_err(|e| Status::invalid_argument(format!("grpc_addr: {e}")))?;
        if self.cluster.secret().is_none() {
            return Err(Status::failed_precondition(format!(
                "node {me}: cannot add node {id}: this node has no cluster secret \
                 (cluster.secret, HEIMDALL_CLUSTER__SECRET or cluster.secret_file); every member \
                 needs the same one"
            )));
        }
        self.check_joiner(id, addr).await?;
        let member = Member {
            grpc_addr: addr.to_owned(),
            ..Member::default()
        };
        tracing::info!(node_id = me, new = id, %addr, "adding a node to the cluster");
        let (index, _) = self
            .cluster
            .join_via_leader(id, member)
            .await
            .map_err(|e| self.cluster_status(&e))?;
        self.await_applied(index).await;
        Ok(self.members().await)
    }

    /// Removes node `id` (demoted first when it votes).
    pub(super) async fn remove_node(&self, id: u64) -> Result<ClusterMembersReply, Status> {
        tracing::info!(
            node_id = self.cluster.id(),
            removed = id,
            "removing a node from the cluster"
        );
        let (index, _) = self
            .cluster
            .remove_node_via_leader(id)
            .await
            .map_err(|e| self.cluster_status(&e))?;
        self.await_applied(index).await;
        Ok(self.members().await)
    }

    /// Waits (at most [`APPLY_WAIT`]) until this node has applied the membership change at
    /// log `index`, so an answer from a follower shows the change it forwarded rather than the
    /// membership before it. On timeout the answer shows what this node knows.
    async fn await_applied(&self, index: u64) {
        let waited = self
            .cluster
            .raft()
            .wait(Some(APPLY_WAIT))
            .applied_index_at_least(Some(index), "the membership change")
            .await;
        if let Err(e) = waited {
            tracing::debug!(
                index,
                "answering before the membership change applied here: {e}"
            );
        }
    }
}

/// How long a membership call waits for this node to apply the change before answering.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The protobuf form of a member and what its metrics call answered.
fn member_message(info: &MemberInfo, metrics: Result<MetricsReply, Status>) -> ClusterMember {
    let mut member = ClusterMember {
        id: info.id,
        grpc_addr: info.member.grpc_addr.clone(),
        dns_addr: info.member.dns_addr.clone(),
        gossip_addr: info.member.gossip_addr.clone(),
        voter: info.voter,
        ..ClusterMember::default()
    };
    match metrics {
        Ok(m) => {
            member.reachable = true;
            member.role = m.state;
            member.term = m.current_term;
            member.last_applied = m.last_applied_index.unwrap_or(0);
        }
        Err(s) => member.error = format!("{:?}: {}", s.code(), s.message()),
    }
    member
}
