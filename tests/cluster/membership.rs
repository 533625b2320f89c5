//! A `--join` node is added through the learner stage and removed again.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, ensure};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, expect_applied, wait_leader};
use heimdall_tests::{Node, NodeOpts, unique_addr, wait_until};

use crate::{CONVERGE, serial, show_logs_on_error};

/// A node started with `--join` stays uninitialized until the leader's Join adds it; it then
/// catches up, becomes a voter, receives later changes, and ChangeMembership removes it.
#[test]
fn join_node_is_added_as_voter_and_removed() -> Result<()> {
    let _serial = serial();
    let spec = ClusterSpec::new(3)?;
    let mut nodes = spec.start_all()?;
    let dns = unique_addr(heimdall_tests::node::NODE_DNS_PORT)?;
    let joiner = Node::start_at(
        dns,
        NodeOpts {
            upstreams: spec.upstreams.clone(),
            config_toml: Some(spec.joiner_toml(4)),
            ..NodeOpts::default()
        },
    )?;
    let result = body(&spec, &joiner);
    nodes.insert(4, joiner);
    show_logs_on_error(result, &nodes)
}

/// The test proper, with nodes 1..=3 running and node 4 waiting to join.
fn body(spec: &ClusterSpec, joiner: &Node) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let (leader, _) = wait_leader(&client, spec, &[1, 2, 3], CONVERGE)?;
    let leader_grpc = spec.grpc(leader)?;
    let version = expect_applied(&client.set(leader_grpc, "cache.max_ttl", "900")?)?;
    let waiting = client.metrics(joiner.grpc_addr())?;
    ensure!(
        waiting.leader_id.is_none() && waiting.last_log_index.is_none(),
        "the --join node should wait uninitialized: {waiting:?}"
    );

    let started = Instant::now();
    let reply = client.join(leader_grpc, 4, joiner.grpc_addr(), joiner.dns_addr())?;
    let voters: Vec<u64> = reply
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    ensure!(
        voters == vec![1, 2, 3, 4],
        "voters after the join: {voters:?}"
    );
    println!("node 4 joined as a voter in {:?}", started.elapsed());
    // Join returns once the learner's log matches the leader's; the node applies those
    // entries when the next append tells it the commit index, a moment later.
    let took = wait_until(
        CONVERGE,
        "node 4 applying the entries it caught up on",
        || {
            client
                .state(joiner.grpc_addr(), false)
                .is_ok_and(|s| s.version >= version && s.settings.cache.max_ttl == 900)
        },
    )?;
    println!("node 4 applied version {version} {took:?} after the join");
    let later = expect_applied(&client.set(leader_grpc, "cache.max_ttl", "901")?)?;
    wait_until(CONVERGE, "node 4 applying a later change", || {
        client
            .state(joiner.grpc_addr(), false)
            .is_ok_and(|s| s.version == later)
    })?;

    let started = Instant::now();
    let reply = client.change_membership(leader_grpc, &[1, 2, 3], false)?;
    let ids: BTreeMap<u64, bool> = reply.members.iter().map(|m| (m.id, m.voter)).collect();
    ensure!(
        ids == BTreeMap::from([(1, true), (2, true), (3, true)]),
        "members after the removal: {ids:?}"
    );
    println!("node 4 removed in {:?}", started.elapsed());
    let follower = spec.grpc(if leader == 1 { 2 } else { 1 })?;
    let took = wait_until(CONVERGE, "the removal known to a follower", || {
        client.members(follower).is_ok_and(|m| m.members.len() == 3)
    })?;
    println!("the removal reached a follower {took:?} later");

    // The removed node announcing its addresses late (as its announcer may, racing the
    // removal) is refused and does not bring it back as a learner.
    let announced = client.announce(leader_grpc, 4, joiner.grpc_addr(), joiner.dns_addr())?;
    ensure!(
        announced.as_ref().err() == Some(&tonic::Code::FailedPrecondition),
        "a removed node's announcement should be refused: {announced:?}"
    );
    let members = client.members(leader_grpc)?;
    ensure!(
        members.members.len() == 3,
        "the refused announcement changed the members: {members:?}"
    );
    Ok(())
}
