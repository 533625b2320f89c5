//! Fault tests of the docker-compose fleet (deploy/): three containers from the offline-built
//! image, a client load from the host, kills, partitions and a rolling restart.
//!
//! Every test brings the fleet up, checks, and tears it down even on failure (the fixture's
//! `Drop`). They run one at a time (one fleet owns the published ports and subnets). Without a
//! working `docker info` each test prints why it is skipped and passes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use heimdall_tests::cluster::set_command;
use heimdall_tests::fleet::{FLEET_DEADLINE, Fleet, Load, NODES, docker_available};
use heimdall_tests::{query_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// One fleet at a time.
static FLEET: Mutex<()> = Mutex::new(());

/// Runs `test` against a fresh fleet, or prints why the fleet tests are skipped.
fn with_fleet(name: &str, test: impl FnOnce(&Fleet) -> Result<()>) -> Result<()> {
    if let Err(why) = docker_available() {
        println!("fleet test {name}: SKIPPED: {why}");
        return Ok(());
    }
    let _one = FLEET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fleet = Fleet::up()?;
    let start = Instant::now();
    let result = test(&fleet);
    println!(
        "fleet test {name}: {} in {:.1}s",
        if result.is_ok() { "passed" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    if result.is_err() {
        for id in NODES {
            if let Ok(container) = fleet.container(id) {
                let logs = fleet
                    .docker(&["logs", "--tail", "20", &container])
                    .unwrap_or_default();
                println!("--- node{id} log tail ---\n{logs}");
            }
        }
    }
    result
}

/// Sets `key` through node `via` and returns the new settings version.
fn set_through(fleet: &Fleet, via: u64, key: &str, value: &str) -> Result<u64> {
    let written = fleet
        .cluster
        .write(Fleet::grpc(via), &set_command(key, value))
        .with_context(|| format!("setting {key} through node{via}"))?;
    match written.response {
        heimdall_node::cluster::CommandResponse::Applied { version, .. } => Ok(version),
        other => bail!("setting {key} through node{via}: {other:?}"),
    }
}

/// Asserts the node answers www.demo.test A with the zone's address.
fn answers_www(id: u64) -> Result<()> {
    let reply = query_udp(Fleet::dns(id), "www.demo.test", RecordType::A, None, false)?;
    ensure!(
        reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty(),
        "node{id} answered www.demo.test with {:?} and {} records",
        reply.metadata.response_code,
        reply.answers.len()
    );
    Ok(())
}

/// Every node answers DNS, heimdallctl in each container shows three members and one leader,
/// a name made hot on one node is served from the others' caches (gossip across containers),
/// and a change made through one node is live on all three.
#[test]
fn fleet_answers_and_applies_config_everywhere() -> Result<()> {
    with_fleet("answers_and_config", |fleet| {
        for id in NODES {
            answers_www(id)?;
            // A follower can name the leader before the membership entry reaches it: poll.
            let check = || -> Result<()> {
                let members = fleet.heimdallctl(id, &["--output", "json", "cluster", "members"])?;
                let json: serde_json::Value =
                    serde_json::from_str(&members).with_context(|| {
                        format!("heimdallctl cluster members on node{id}: {members}")
                    })?;
                let text = json.to_string();
                for other in NODES {
                    ensure!(
                        text.contains(&format!("10.89.1.{}:50051", 10 + other)),
                        "node{id} does not list node{other}: {members}"
                    );
                }
                let leaders = text.matches("\"Leader\"").count();
                ensure!(leaders == 1, "node{id} shows {leaders} leaders: {members}");
                Ok(())
            };
            let waited = wait_until(
                FLEET_DEADLINE,
                &format!("node{id} listing three members, one leader"),
                || check().is_ok(),
            );
            // On a timeout, the last check's own error says what was wrong.
            if let Err(e) = waited {
                check().map_err(|last| last.context(e))?;
            }
        }
        // A name made hot on node1 (three queries) reaches the others' caches by gossip.
        for _ in 0..3 {
            let reply = query_udp(
                Fleet::dns(1),
                "info.demo.test",
                RecordType::TXT,
                None,
                false,
            )?;
            ensure!(
                reply.metadata.response_code == ResponseCode::NoError,
                "node1 answered info.demo.test TXT with {:?}",
                reply.metadata.response_code
            );
        }
        let hot_at = Instant::now();
        for id in [2, 3] {
            wait_until(
                FLEET_DEADLINE,
                &format!("node{id} to hold info.demo.test TXT from gossip"),
                || {
                    fleet
                        .heimdallctl(
                            id,
                            &[
                                "--output",
                                "json",
                                "cache",
                                "lookup",
                                "info.demo.test",
                                "TXT",
                            ],
                        )
                        .is_ok_and(|out| out.contains("gossip"))
                },
            )?;
            println!(
                "node{id} holds the hot name from gossip {:.2}s after it became hot on node1",
                hot_at.elapsed().as_secs_f64()
            );
        }
        let version = set_through(fleet, 2, "cache.max_ttl", "7200")?;
        for id in NODES {
            let took = fleet.wait_version(id, version)?;
            println!(
                "version {version} live on node{id} after {:.2}s",
                took.as_secs_f64()
            );
        }
        Ok(())
    })
}

/// `docker kill` of the leader: a new leader, writes succeed, DNS on the others never fails;
/// the killed node starts again and catches up.
#[test]
fn fleet_survives_leader_kill() -> Result<()> {
    with_fleet("leader_kill", |fleet| {
        let (leader, _) = fleet.wait_leader(&NODES)?;
        let others: Vec<u64> = NODES.iter().copied().filter(|&id| id != leader).collect();
        let load = Load::start(Duration::from_millis(20), 5_000);
        load.set_up(leader, false);
        let killed_at = Instant::now();
        fleet.kill(leader)?;
        let (new_leader, took) = fleet.wait_leader(&others)?;
        println!(
            "leader {leader} killed; node{new_leader} elected after {:.2}s",
            took.as_secs_f64()
        );
        let version = set_through(fleet, others[0], "cache.min_ttl", "5")?;
        fleet.start(leader)?;
        let took = fleet.wait_version(leader, version)?;
        println!(
            "node{leader} restarted and applied version {version} {:.2}s after the kill \
             ({:.2}s after its start)",
            killed_at.elapsed().as_secs_f64(),
            took.as_secs_f64()
        );
        wait_until(FLEET_DEADLINE, "the restarted node to be healthy", || {
            fleet.healthy(leader)
        })?;
        answers_www(leader)?;
        let (answered, failures) = load.finish();
        println!("load: {answered} answered, {} failed", failures.len());
        ensure!(failures.is_empty(), "queries failed: {failures:#?}");
        Ok(())
    })
}

/// The leader cut off the cluster network cannot commit but still answers from its cache; after
/// reconnecting it converges and a new change reaches it.
#[test]
fn fleet_partitioned_leader_serves_cache_and_converges() -> Result<()> {
    with_fleet("leader_partition", |fleet| {
        let (leader, _) = fleet.wait_leader(&NODES)?;
        let others: Vec<u64> = NODES.iter().copied().filter(|&id| id != leader).collect();
        answers_www(leader)?; // now cached on the leader
        fleet.disconnect_cluster(leader)?;
        let cut_at = Instant::now();
        let (new_leader, took) = fleet.wait_leader(&others)?;
        println!(
            "node{leader} cut off; node{new_leader} elected by the majority after {:.2}s",
            took.as_secs_f64()
        );
        let version = set_through(fleet, new_leader, "cache.max_negative_ttl", "600")?;
        let refused = set_through(fleet, leader, "cache.max_negative_ttl", "900");
        match &refused {
            Ok(v) => println!("write through the cut-off node: committed as version {v}"),
            Err(e) => println!("write through the cut-off node: refused: {e:#}"),
        }
        ensure!(
            refused.is_err(),
            "the cut-off node committed a write: {refused:?}"
        );
        answers_www(leader)?;
        fleet.connect_cluster(leader)?;
        let took = fleet.wait_version(leader, version)?;
        println!(
            "node{leader} reconnected and applied version {version} after {:.2}s \
             ({:.2}s after the cut)",
            took.as_secs_f64(),
            cut_at.elapsed().as_secs_f64()
        );
        let next = set_through(fleet, new_leader, "cache.max_negative_ttl", "1200")?;
        for id in NODES {
            fleet.wait_version(id, next)?;
        }
        Ok(())
    })
}

/// A rolling restart, one node at a time, under client load: no failed query, no committed
/// change lost.
#[test]
fn fleet_rolling_restart_loses_nothing() -> Result<()> {
    with_fleet("rolling_restart", |fleet| {
        let version = set_through(fleet, 1, "cache.max_ttl", "3600")?;
        let load = Load::start(Duration::from_millis(20), 10_000);
        for id in NODES {
            load.set_up(id, false);
            let start = Instant::now();
            fleet.restart(id)?;
            wait_until(FLEET_DEADLINE, &format!("node{id} healthy again"), || {
                fleet.healthy(id)
            })?;
            fleet.wait_version(id, version)?;
            fleet.wait_leader(&NODES)?;
            println!(
                "node{id} restarted, healthy and caught up in {:.2}s",
                start.elapsed().as_secs_f64()
            );
            load.set_up(id, true);
        }
        let (answered, failures) = load.finish();
        println!("load: {answered} answered, {} failed", failures.len());
        ensure!(failures.is_empty(), "queries failed: {failures:#?}");
        for id in NODES {
            let state = fleet.cluster.state(Fleet::grpc(id), false)?;
            ensure!(
                state.version >= version,
                "node{id} is at version {} after the restarts, expected >= {version}",
                state.version
            );
        }
        Ok(())
    })
}
