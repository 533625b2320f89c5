//! Three nodes bootstrap from `cluster.initial_members`, elect one leader, and apply a change
//! sent to a follower everywhere, live.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, ensure};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, expect_applied, wait_leader};
use heimdall_tests::{AuthServer, Node, dead_addr, wait_until};

use crate::{CONVERGE, answers, serial, show_logs_on_error, zone};

/// Three nodes elect one leader; a change of upstreams (dead -> live) and cache.max_ttl sent
/// to a follower is applied on all three, seen in their state and in their DNS answers.
#[test]
fn three_nodes_bootstrap_and_apply_a_follower_write() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let mut spec = ClusterSpec::new(3)?;
    spec.upstreams = vec![dead_addr(53)?];
    let started = Instant::now();
    let nodes = spec.start_all()?;
    println!("3 processes answering DNS after {:?}", started.elapsed());
    let result = body(&spec, &nodes, &auth, started);
    show_logs_on_error(result, &nodes)
}

/// The test proper, over running nodes.
fn body(
    spec: &ClusterSpec,
    nodes: &BTreeMap<u64, Node>,
    auth: &AuthServer,
    started: Instant,
) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, took) = wait_leader(&client, spec, &ids, CONVERGE)?;
    println!(
        "leader elected: node {leader}, {took:?} after the last start ({:?} after the first)",
        started.elapsed()
    );
    ensure!(
        leader == 1,
        "the lowest id initializes and should lead first, got {leader}"
    );
    // A follower can learn the leader from an append that carries no entries yet, so the
    // membership entry may reach it a moment after it names the leader.
    let node2 = spec.grpc(2)?;
    wait_until(CONVERGE, "node 2 listing the three voters", || {
        client.members(node2).is_ok_and(|members| {
            members.members.iter().map(|m| m.id).collect::<Vec<_>>() == ids
                && members.members.iter().all(|m| m.voter)
        })
    })
    .map_err(|e| anyhow::anyhow!("{e}; members on node 2: {:?}", client.members(node2)))?;

    // The bootstrapping node seeded version 1 from its file values (the dead upstream).
    wait_until(CONVERGE, "the seeded version 1 on every node", || {
        ids.iter().all(|id| {
            spec.grpc(*id)
                .ok()
                .and_then(|a| client.state(a, false).ok())
                .is_some_and(|s| s.version == 1 && s.settings.upstreams == spec.upstreams)
        })
    })?;
    for id in &ids {
        let dns = spec.dns.get(id).copied().unwrap_or(spec.upstreams[0]);
        ensure!(
            !answers(dns, "before.example.test."),
            "node {id} answered via a dead upstream"
        );
    }

    let follower = ids.iter().copied().find(|id| *id != leader).unwrap_or(2);
    let write_started = Instant::now();
    let written = client.set(spec.grpc(follower)?, "upstreams", &auth.addr().to_string())?;
    let version = expect_applied(&written)?;
    let committed = write_started.elapsed();
    let written = client.set(spec.grpc(follower)?, "cache.max_ttl", "600")?;
    let max_ttl_version = expect_applied(&written)?;
    ensure!(
        max_ttl_version == version + 1,
        "versions {version} then {max_ttl_version}"
    );
    ensure!(
        written.leader == leader,
        "committed by {} not the leader",
        written.leader
    );
    println!(
        "write sent to follower node {follower}: committed by node {leader} in {committed:?} (version {version})"
    );

    wait_until(CONVERGE, "the change applied on all three nodes", || {
        ids.iter().all(|id| {
            spec.grpc(*id)
                .ok()
                .and_then(|a| client.state(a, false).ok())
                .is_some_and(|s| {
                    s.version == max_ttl_version
                        && s.settings.upstreams == vec![auth.addr()]
                        && s.settings.cache.max_ttl == 600
                })
        })
    })?;
    println!(
        "version {max_ttl_version} in the state of all three nodes {:?} after the first write was sent",
        write_started.elapsed()
    );
    let took = wait_until(
        CONVERGE,
        "every node answering through the new upstream",
        || {
            ids.iter().all(|id| {
                spec.dns
                    .get(id)
                    .is_some_and(|dns| answers(*dns, "www.example.test."))
            })
        },
    )?;
    println!(
        "every node answers through the new upstream {:?} after the write was sent (polling took {took:?})",
        write_started.elapsed()
    );
    // The history names the change, its author and the proposing node.
    let state = client.state(spec.grpc(3)?, true)?;
    let entry = state
        .history
        .iter()
        .find(|e| e.version == version)
        .ok_or_else(|| anyhow::anyhow!("no history entry for version {version}"))?;
    ensure!(entry.author == "test", "{entry:?}");
    ensure!(
        entry.changes.iter().any(|c| c.key == "upstreams"),
        "{entry:?}"
    );
    Ok(())
}
