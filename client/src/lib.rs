//! Heimdall's control-plane client library, used by `heimdallctl` and the integration tests.
//!
//! [`Client`] talks to one node's `heimdall.v1.Control` service (plus `grpc.health.v1`): it
//! connects with a timeout, sends the admin token as `authorization: Bearer <token>` and the
//! caller's name as `x-heimdall-actor`, and maps every failure to an [`Error`] whose Display is
//! one line naming the endpoint and the reason. Cluster-wide changes answered "not the leader"
//! with a leader hint are retried once on that leader. `https://` endpoints use TLS with the
//! CA and client certificate of [`TlsOptions`] ([`tls`]). [`dump`] is the cache dump file
//! format.

pub mod client;
pub mod dump;
pub mod error;
pub mod tls;

pub use client::{Client, ClientOptions, Replies, normalize_endpoint};
pub use dump::{DumpError, DumpReader, DumpWriter};
pub use error::{Error, LeaderHint};
pub use heimdall_proto::v1;
pub use tls::{TlsFileError, TlsOptions};
pub use tonic_health::pb::health_check_response::ServingStatus;
