//! The cluster: Raft-held shared configuration, its storage, network and live application.
//!
//! - [`types`]: the openraft type configuration ([`TypeConfig`]) and member addresses.
//! - [`settings`]: the typed cluster settings, dotted-key get/set, validation.
//! - [`state`]: commands, the deterministic state machine, history, rollback, flush epochs.
//! - [`store`]: the redb-backed log store and state machine (openraft storage-v2).
//! - [`auth`]: HMAC-SHA256 authentication of internal RPCs under the cluster secret.
//! - [`network`]: openraft's network over tonic clients (the calling side).
//! - [`service`]: the internal Raft gRPC service (the answering side).
//! - [`grpc`]: the node's one gRPC server, shared with the control plane.
//! - [`apply`]: live application of committed changes to the resolver.
//! - [`node`]: node id, bootstrap, [`start`] and [`ClusterHandle`], the write/read API.

pub mod apply;
pub mod auth;
pub mod grpc;
pub mod network;
pub mod node;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;
pub mod types;

pub use node::{
    ClusterError, ClusterHandle, MemberInfo, NODE_ID_FILE, Origin, RunningCluster, WriteOutcome,
    start,
};
pub use settings::{
    AclSettings, CacheSettings, Change, ClusterSettings, GossipSettings, IpNet, KEYS, LocalRecord,
    LocalRecordWire, RateLimitSettings, SettingsError,
};
pub use state::{
    ChangeKind, ClusterState, Command, CommandResponse, FlushCatchUp, FlushEpoch, FlushScope,
    HistoryEntry, Rejection,
};
pub use store::{LogStore, RAFT_DB_FILE, SnapshotBuilder, StateMachineStore, StoreError};
pub use types::{Member, NodeId, Raft, TypeConfig};
