//! Losing the leader, crashing mid-burst and restarting the whole cluster lose no committed
//! change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use heimdall_node::cluster::{ClusterState, CommandResponse};
use heimdall_tests::Node;
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, expect_applied, wait_leader};
use heimdall_tests::{dead_addr, wait_until};

use crate::{CONVERGE, serial, show_logs_on_error};

/// Waits until the node `id` has applied at least `version` and returns its state.
fn wait_version(
    client: &ClusterClient,
    spec: &ClusterSpec,
    id: u64,
    version: u64,
) -> Result<ClusterState> {
    let mut last = None;
    wait_until(CONVERGE, &format!("node {id} at version {version}"), || {
        last = spec
            .grpc(id)
            .ok()
            .and_then(|a| client.state(a, false).ok())
            .filter(|s| s.version >= version);
        last.is_some()
    })?;
    last.ok_or_else(|| anyhow!("node {id} has no state"))
}

/// The leader is SIGKILLed: the other two elect a new leader and take writes, and the killed
/// node restarts on its data dir and catches up with every committed change.
#[test]
fn leader_killed_new_leader_elected_and_old_one_catches_up() -> Result<()> {
    let _serial = serial();
    let spec = ClusterSpec::new(3)?;
    let mut nodes = spec.start_all()?;
    let result = leader_killed(&spec, &mut nodes);
    show_logs_on_error(result, &nodes)
}

/// The body of [`leader_killed_new_leader_elected_and_old_one_catches_up`].
fn leader_killed(spec: &ClusterSpec, nodes: &mut BTreeMap<u64, Node>) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, _) = wait_leader(&client, spec, &ids, CONVERGE)?;
    let before = expect_applied(&client.set(spec.grpc(leader)?, "cache.max_ttl", "1000")?)?;

    let killed_at = Instant::now();
    nodes
        .get_mut(&leader)
        .ok_or_else(|| anyhow!("no node {leader}"))?
        .kill()?;
    let rest: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let (new_leader, _) = wait_leader(&client, spec, &rest, CONVERGE)?;
    println!(
        "leader node {leader} SIGKILLed; node {new_leader} elected {:?} later",
        killed_at.elapsed()
    );

    let mut version = before;
    for (i, id) in rest.iter().enumerate() {
        let value = (2000 + i).to_string();
        let started = Instant::now();
        version = expect_applied(&client.set(spec.grpc(*id)?, "cache.max_ttl", &value)?)?;
        println!(
            "write through node {id} committed in {:?} (version {version})",
            started.elapsed()
        );
    }
    let expected = client.state(spec.grpc(new_leader)?, true)?;

    let restarted = Instant::now();
    nodes
        .get_mut(&leader)
        .ok_or_else(|| anyhow!("no node {leader}"))?
        .restart()?;
    let state = wait_version(&client, spec, leader, version)?;
    println!(
        "node {leader} restarted and caught up to version {version} {:?} after its restart",
        restarted.elapsed()
    );
    ensure!(
        state.settings == expected.settings && state.history == expected.history,
        "the restarted node's state differs from the leader's"
    );
    ensure!(
        state.history.iter().any(|e| e.version == before),
        "the change committed before the kill is missing"
    );
    Ok(())
}

/// A burst of writes to the leader, SIGKILL of the leader in the middle of it: every write
/// acknowledged before the kill is in the cluster's history afterwards, also on the killed
/// node after its restart.
#[test]
fn sigkill_during_write_burst_loses_no_acknowledged_write() -> Result<()> {
    let _serial = serial();
    let spec = ClusterSpec::new(3)?;
    let mut nodes = spec.start_all()?;
    let result = crash_burst(&spec, &mut nodes);
    show_logs_on_error(result, &nodes)
}

/// The body of [`sigkill_during_write_burst_loses_no_acknowledged_write`].
fn crash_burst(spec: &ClusterSpec, nodes: &mut BTreeMap<u64, Node>) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, _) = wait_leader(&client, spec, &ids, CONVERGE)?;
    let target = spec.grpc(leader)?;

    // The writer sends `cache.min_ttl = i` for i = 1, 2, ... and reports each acknowledged
    // (value, version) until its first failure (the leader is gone).
    let (acks, acked) = mpsc::channel::<(u64, u64)>();
    let stop = Arc::new(AtomicBool::new(false));
    let writer_stop = Arc::clone(&stop);
    let writer = thread::spawn(move || -> Result<u64> {
        let client = ClusterClient::with_test_secret()?;
        let mut sent = 0;
        for value in 1..=90u64 {
            if writer_stop.load(Ordering::SeqCst) {
                break;
            }
            sent += 1;
            match client.set(target, "cache.min_ttl", &value.to_string()) {
                Ok(w) => match w.response {
                    CommandResponse::Applied { version, .. } => {
                        if acks.send((value, version)).is_err() {
                            break;
                        }
                    }
                    other => return Err(anyhow!("write {value} refused: {other:?}")),
                },
                Err(_) => break,
            }
        }
        Ok(sent)
    });

    let mut acknowledged = Vec::new();
    let burst = Instant::now();
    while acknowledged.len() < 20 {
        let ack = acked
            .recv_timeout(CONVERGE)
            .context("the writer stopped before 20 acknowledgements")?;
        acknowledged.push(ack);
    }
    nodes
        .get_mut(&leader)
        .ok_or_else(|| anyhow!("no node {leader}"))?
        .kill()?;
    // Acknowledgements already on their way count as acknowledged before the kill only if
    // they arrived before it; collect the rest but do not count them as promised.
    let killed_after = burst.elapsed();
    stop.store(true, Ordering::SeqCst);
    let sent = writer
        .join()
        .map_err(|_| anyhow!("writer thread panicked"))??;
    let late: Vec<(u64, u64)> = acked.try_iter().collect();
    println!(
        "leader node {leader} SIGKILLed {killed_after:?} into the burst: {} writes acknowledged before, {} in flight at the kill ({} sent)",
        acknowledged.len(),
        late.len(),
        sent
    );

    let rest: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let (new_leader, took) = wait_leader(&client, spec, &rest, CONVERGE)?;
    println!("node {new_leader} leads {took:?} after the kill");
    let restarted = Instant::now();
    nodes
        .get_mut(&leader)
        .ok_or_else(|| anyhow!("no node {leader}"))?
        .restart()?;
    let last_version = acknowledged.last().map_or(0, |(_, v)| *v);
    let expected = client.state(spec.grpc(new_leader)?, true)?;
    let restarted_state = wait_version(&client, spec, leader, expected.version)?;
    println!(
        "killed node {leader} restarted and caught up to version {} in {:?}",
        expected.version,
        restarted.elapsed()
    );
    for (name, state) in [
        ("the new leader", &expected),
        ("the restarted node", &restarted_state),
    ] {
        for (value, version) in acknowledged.iter().chain(late.iter()) {
            let entry = state
                .history
                .iter()
                .find(|e| e.version == *version)
                .ok_or_else(|| anyhow!("{name}: acknowledged version {version} is missing"))?;
            let change = entry
                .changes
                .iter()
                .find(|c| c.key == "cache.min_ttl")
                .ok_or_else(|| anyhow!("{name}: version {version} changed no min_ttl"))?;
            ensure!(
                change.new == serde_json::json!(value),
                "{name}: version {version} holds {:?}, acknowledged {value}",
                change.new
            );
        }
        ensure!(
            state.version >= last_version,
            "{name}: at version {} below the last acknowledged {last_version}",
            state.version
        );
    }
    println!(
        "all {} acknowledged writes present on the new leader and on the restarted node",
        acknowledged.len() + late.len()
    );
    Ok(())
}

/// Every node is stopped and started again on its data dir: the settings, their version and
/// the history are the same, and the cluster elects a leader and takes writes again.
#[test]
fn whole_cluster_restart_keeps_config_and_history() -> Result<()> {
    let _serial = serial();
    let spec = ClusterSpec::new(3)?;
    let mut nodes = spec.start_all()?;
    let result = full_restart(&spec, &mut nodes);
    show_logs_on_error(result, &nodes)
}

/// The body of [`whole_cluster_restart_keeps_config_and_history`].
fn full_restart(spec: &ClusterSpec, nodes: &mut BTreeMap<u64, Node>) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, _) = wait_leader(&client, spec, &ids, CONVERGE)?;
    // Loopback addresses with nothing listening: the test sends no traffic off the machine.
    let upstreams = format!("{}, {}", dead_addr(53)?, dead_addr(5300)?);
    for (key, value) in [
        ("cache.max_ttl", "3600"),
        ("upstreams", upstreams.as_str()),
        ("cache.prefetch", "off"),
    ] {
        expect_applied(&client.set(spec.grpc(leader)?, key, value)?)?;
    }
    let before = client.state(spec.grpc(leader)?, true)?;
    for id in &ids {
        wait_version(&client, spec, *id, before.version)?;
    }

    let restarted = Instant::now();
    for node in nodes.values_mut() {
        node.signal(libc::SIGTERM)?;
    }
    for (id, node) in nodes.iter_mut() {
        ensure!(
            node.wait_exit(CONVERGE).is_some(),
            "node {id} did not stop on SIGTERM"
        );
    }
    for node in nodes.values_mut() {
        node.restart()?;
    }
    let (leader, took) = wait_leader(&client, spec, &ids, CONVERGE)?;
    println!(
        "whole cluster restarted; node {leader} leads {took:?} after the last start ({:?} in all)",
        restarted.elapsed()
    );
    for id in &ids {
        let state = client.state(spec.grpc(*id)?, false)?;
        ensure!(
            state == before,
            "node {id}: state after the restart differs (version {} vs {})",
            state.version,
            before.version
        );
    }
    let version = expect_applied(&client.set(spec.grpc(leader)?, "cache.max_ttl", "7200")?)?;
    ensure!(
        version == before.version + 1,
        "version {version} after {}",
        before.version
    );
    println!(
        "config, version {} and {} history entries kept on all three nodes; writes continue",
        before.version,
        before.history.len()
    );
    Ok(())
}
