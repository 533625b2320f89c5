//! Cluster integration suite: real `heimdall` processes forming a Raft group on loopback.
//!
//! Every node runs with `--workers 1`, its own `127.A.B.C` address (DNS on 5353, gRPC on
//! 50051) and election timeouts of at least 1 s; writes and reads go through the internal
//! gRPC service with the cluster secret ([`heimdall_tests::cluster::ClusterClient`]). Tests
//! run one at a time ([`serial`]) so a 2-core CI machine is not overloaded, every wait is a
//! condition with a generous deadline, and the measured times are printed.

mod auth;
mod bootstrap;
mod failover;
mod live;
mod membership;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Result;
use heimdall_tests::{Node, Zone, query_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RData;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::A;

/// Generous deadline for a leader election or a change to reach every node.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// Serializes the cluster tests (each starts several processes).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the suite's lock for the duration of one test (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The zone the tests' authoritative upstreams serve.
pub fn zone() -> Zone {
    Zone::new("example.test.").soa(3600, 300).add(
        "www",
        300,
        RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 1))),
    )
}

/// Whether the node at `dns` answers `name` A with NOERROR and at least one record.
pub fn answers(dns: SocketAddr, name: &str) -> bool {
    query_udp(dns, name, RecordType::A, None, false)
        .is_ok_and(|m| m.response_code == ResponseCode::NoError && !m.answers.is_empty())
}

/// Prints the tail of every node's log when `result` is an error, and returns it.
pub fn show_logs_on_error<T>(result: Result<T>, nodes: &BTreeMap<u64, Node>) -> Result<T> {
    if let Err(e) = &result {
        eprintln!("test failed: {e:#}");
        for (id, node) in nodes {
            eprintln!(
                "---- log tail of node {id} ({}) ----\n{}\n---- end ----",
                node.dns_addr(),
                node.log_tail()
            );
        }
    }
    result
}
