//! Heimdall's gRPC services and messages, generated from `heimdall/v1/*.proto` by build.rs.
//!
//! This crate is the one place generated code lives. [`v1::raft_service_server`] and
//! [`v1::raft_service_client`] are the internal Raft service between the nodes of a cluster;
//! [`v1::control_server`] and [`v1::control_client`] are the control plane every node serves
//! to operators (heimdallctl, grpcurl).

/// The `heimdall.v1` protobuf package.
pub mod heimdall {
    /// Version 1 of the API: messages, clients and servers.
    #[allow(
        missing_docs,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used
    )]
    pub mod v1 {
        tonic::include_proto!("heimdall.v1");
    }
}

pub use heimdall::v1;

/// The encoded file descriptor set of every `.proto` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("heimdall_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::{ClientWriteRequest, RaftReply, raft_reply};

    /// The descriptor set names the internal service, for reflection.
    #[test]
    fn descriptor_set_names_the_raft_service() {
        let text = String::from_utf8_lossy(super::FILE_DESCRIPTOR_SET);
        assert!(text.contains("heimdall.v1"), "package missing");
        assert!(text.contains("RaftService"), "service missing");
        assert!(text.contains("Control"), "control service missing");
    }

    /// Messages round-trip through their protobuf encoding.
    #[test]
    fn messages_round_trip() {
        let write = ClientWriteRequest {
            command_json: br#"{"Set":{}}"#.to_vec(),
            forwarded: true,
        };
        let decoded = ClientWriteRequest::decode(write.encode_to_vec().as_slice());
        assert_eq!(decoded, Ok(write));
        let reply = RaftReply {
            result: Some(raft_reply::Result::ErrorJson(b"{}".to_vec())),
        };
        assert_eq!(
            RaftReply::decode(reply.encode_to_vec().as_slice()),
            Ok(reply)
        );
    }
}
