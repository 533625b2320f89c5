//! Local records written to the cluster settings through Raft are answered authoritatively
//! by every node, override the upstream, and are removed live.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use anyhow::{Result, anyhow};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, expect_applied, wait_leader};
use heimdall_tests::{AuthServer, Node, Zone, query_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};

use crate::{CONVERGE, serial};

/// The A records `dns` answers for `name`, if it answers NOERROR (with whether AA was set).
fn a_records(dns: SocketAddr, name: &str) -> Option<(Vec<Ipv4Addr>, bool)> {
    let reply = query_udp(dns, name, RecordType::A, None, false).ok()?;
    if reply.metadata.response_code != ResponseCode::NoError {
        return None;
    }
    let addrs = reply
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    Some((addrs, reply.metadata.authoritative))
}

/// Three nodes: local records set through a follower are answered by all three (AA, the
/// local address instead of the upstream's), and removing them brings the upstream's
/// answer back on all three, without a restart.
#[test]
fn local_records_answered_on_every_node_and_removed_live() -> Result<()> {
    let _serial = serial();
    let upstream = AuthServer::start(Zone::new("example.test.").soa(3600, 300).add(
        "www",
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
    ))?;
    let mut spec = ClusterSpec::new(3)?;
    spec.upstreams = vec![upstream.addr()];
    let nodes = spec.start_all()?;
    let result = body(&spec, &nodes);
    if let Err(e) = &result {
        for (id, node) in &nodes {
            eprintln!(
                "test failed: {e:#}\n---- node {id} ----\n{}",
                node.log_tail()
            );
        }
    }
    result
}

/// The test proper.
fn body(spec: &ClusterSpec, nodes: &BTreeMap<u64, Node>) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, took) = wait_leader(&client, spec, &ids, CONVERGE)?;
    println!("leader node {leader} after {took:?}");
    let dns: Vec<SocketAddr> = nodes.values().map(Node::dns_addr).collect();
    let upstream_www = vec![Ipv4Addr::new(192, 0, 2, 1)];
    // Before: the upstream's answer (now also in every node's cache).
    for addr in &dns {
        wait_until(CONVERGE, "the upstream's www answer", || {
            a_records(*addr, "www.example.test.").is_some_and(|(a, _)| a == upstream_www)
        })?;
    }
    let follower = *ids
        .iter()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let records = r#"[{"name":"printer.lan.","rtype":"A","ttl":60,"data":"192.168.1.9"},
        {"name":"www.example.test","rtype":"A","data":"10.0.0.7"}]"#;
    let written = Instant::now();
    expect_applied(&client.set(spec.grpc(follower)?, "local_records", records)?)?;
    for addr in &dns {
        wait_until(CONVERGE, "local records answered", || {
            a_records(*addr, "printer.lan.")
                .is_some_and(|(a, aa)| aa && a == [Ipv4Addr::new(192, 168, 1, 9)])
                && a_records(*addr, "www.example.test.")
                    .is_some_and(|(a, aa)| aa && a == [Ipv4Addr::new(10, 0, 0, 7)])
        })?;
    }
    println!(
        "local records answered by all 3 nodes {:?} after the write",
        written.elapsed()
    );

    let removed = Instant::now();
    expect_applied(&client.set(spec.grpc(leader)?, "local_records", "[]")?)?;
    for addr in &dns {
        wait_until(CONVERGE, "local records removed", || {
            a_records(*addr, "www.example.test.").is_some_and(|(a, _)| a == upstream_www)
                && a_records(*addr, "printer.lan.").is_none()
        })?;
    }
    println!(
        "local records gone on all 3 nodes {:?} after the write",
        removed.elapsed()
    );
    Ok(())
}
