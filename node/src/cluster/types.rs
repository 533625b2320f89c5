//! The openraft type configuration of Heimdall's Raft group and the aliases built on it.
//!
//! Node ids are `u64`; a member is described by its three addresses ([`Member`]); the log
//! carries [`Command`]s and the state machine answers each with a [`CommandResponse`];
//! snapshots travel as an in-memory byte cursor (the cluster state is small).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::state::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Heimdall's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node id: unique across the cluster, chosen in config or generated once and kept.
pub type NodeId = u64;

/// Where a member of the cluster can be reached; stored in Raft membership entries.
///
/// Addresses are kept as text (`host:port`), exactly as the member announced them, so a
/// name that resolves differently inside a container network still works.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's gRPC endpoint: control plane and the internal Raft service.
    pub grpc_addr: String,
    /// The member's DNS listener (UDP and TCP), shown to operators.
    pub dns_addr: String,
    /// The member's gossip UDP endpoint for hot-cache dissemination.
    pub gossip_addr: String,
}

impl std::fmt::Display for Member {
    /// `grpc=ADDR dns=ADDR gossip=ADDR`, for logs and membership listings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "grpc={} dns={} gossip={}",
            self.grpc_addr, self.dns_addr, self.gossip_addr
        )
    }
}

/// A running Raft node of this cluster.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry of this cluster.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A persisted vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership configuration and the log id it was stored at.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
/// A membership configuration (voters, learners and their [`Member`] data).
pub type Membership = openraft::Membership<NodeId, Member>;
/// Metadata of a snapshot: last included log id, membership and snapshot id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
/// A snapshot: metadata plus the serialized cluster state.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The storage error type openraft expects from the log store and state machine.
pub type StorageError = openraft::StorageError<NodeId>;
/// The log store's view of its own bounds.
pub type LogState = openraft::LogState<TypeConfig>;
