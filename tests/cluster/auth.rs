//! Internal Raft RPCs without the cluster's HMAC are refused and counted; during a secret
//! rotation's grace period the previous secret is accepted too.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, ensure};
use heimdall_node::cluster::network::method;
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, set_command, wait_leader};
use heimdall_tests::{Node, NodeOpts, dead_addr, unique_addr, wait_until};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};

use heimdall_node::cluster::TypeConfig;

use crate::{CONVERGE, serial, show_logs_on_error};

/// Vote and AppendEntries with no HMAC or one made with another secret get UNAUTHENTICATED,
/// are counted, and change nothing (term, leader, settings); so do forged writes.
#[test]
fn unauthenticated_raft_rpcs_are_rejected() -> Result<()> {
    let _serial = serial();
    let spec = ClusterSpec::new(3)?;
    let nodes = spec.start_all()?;
    let result = body(&spec, &nodes);
    show_logs_on_error(result, &nodes)
}

/// The test proper, over running nodes.
fn body(spec: &ClusterSpec, nodes: &BTreeMap<u64, Node>) -> Result<()> {
    let good = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, took) = wait_leader(&good, spec, &ids, CONVERGE)?;
    println!("leader node {leader} after {took:?}");
    let target = spec.grpc(2)?;
    // The bootstrapping node seeds version 1 once it leads; compare against that.
    wait_until(CONVERGE, "the seeded settings on node 2", || {
        good.state(target, false).is_ok_and(|s| s.version >= 1)
    })?;
    let before = good.metrics(target)?;
    let settings_before = good.state(target, true)?;

    // A vote for a made-up candidate in a far higher term: accepted, it would depose the
    // leader. An AppendEntries from a made-up leader: accepted, it would rewrite the log.
    let vote = VoteRequest::new(Vote::new(before.current_term + 100, 77), None);
    let vote_json = serde_json::to_vec(&vote)?;
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(before.current_term + 100, 77),
        prev_log_id: Some(LogId::new(
            CommittedLeaderId::new(before.current_term, 1),
            1,
        )),
        entries: Vec::new(),
        leader_commit: None,
    };
    let append_json = serde_json::to_vec(&append)?;

    let unsigned = ClusterClient::new(None)?;
    let wrong = ClusterClient::new(Some("not-the-cluster-secret-at-all"))?;
    let mut refused = 0;
    for (who, client) in [("no HMAC", &unsigned), ("wrong secret", &wrong)] {
        for (name, method, json) in [
            ("Vote", method::VOTE, &vote_json),
            ("AppendEntries", method::APPEND_ENTRIES, &append_json),
        ] {
            let result = client.raw_raft_call(target, method, json)?;
            ensure!(
                result == Err(tonic::Code::Unauthenticated),
                "{name} with {who}: expected UNAUTHENTICATED, got {result:?}"
            );
            println!("{name} with {who}: UNAUTHENTICATED");
            refused += 1;
        }
        let forged = dead_addr(53)?.to_string();
        let write = client.write(target, &set_command("upstreams", &forged));
        ensure!(
            write
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("Unauthenticated")),
            "a forged write with {who}: {write:?}"
        );
        refused += 1;
    }

    let after = good.metrics(target)?;
    ensure!(
        after.auth_failures >= before.auth_failures + refused,
        "auth failures counted: {} -> {} (expected +{refused})",
        before.auth_failures,
        after.auth_failures
    );
    ensure!(
        after.current_term == before.current_term && after.leader_id == Some(leader),
        "term/leader changed: {before:?} -> {after:?}"
    );
    let settings_after = good.state(target, true)?;
    ensure!(
        settings_after.version == settings_before.version
            && settings_after.settings == settings_before.settings,
        "settings changed"
    );
    println!(
        "node 2 counted {} refused RPCs; term {} and leader {leader} unchanged",
        after.auth_failures - before.auth_failures,
        after.current_term
    );
    Ok(())
}

/// A secret rotation: a node started with a new `cluster.secret` and the old one as
/// `cluster.previous_secret` accepts calls signed with either during the grace period, and a
/// third secret never; once the grace period ends, the old secret is refused too.
#[test]
fn previous_secret_is_accepted_during_the_grace_period() -> Result<()> {
    let _serial = serial();
    const NEW: &str = "the-new-cluster-secret-0123456789";
    const OLD: &str = "the-old-cluster-secret-0123456789";
    let start = |grace_s: u64| {
        Node::start_at(
            unique_addr(heimdall_tests::node::NODE_DNS_PORT)?,
            NodeOpts {
                upstreams: vec![dead_addr(53)?],
                config_toml: Some(format!(
                    "[cluster]\nsecret = \"{NEW}\"\nprevious_secret = \"{OLD}\"\n\
                     previous_secret_grace_s = {grace_s}\n"
                )),
                ..NodeOpts::default()
            },
        )
    };
    let rotating = start(3600)?;
    let ending = start(1)?;
    let nodes = BTreeMap::from([(1, rotating), (2, ending)]);
    let result = rotation_body(&nodes[&1], &nodes[&2], NEW, OLD);
    show_logs_on_error(result, &nodes)
}

/// The test proper: `rotating` has an hour of grace, `ending` one second.
fn rotation_body(rotating: &Node, ending: &Node, new: &str, old: &str) -> Result<()> {
    let (with_new, with_old) = (
        ClusterClient::new(Some(new))?,
        ClusterClient::new(Some(old))?,
    );
    let other = ClusterClient::new(Some("some-third-cluster-secret-000000"))?;
    let grpc = rotating.grpc_addr();
    with_new.metrics(grpc)?;
    with_old
        .metrics(grpc)
        .map_err(|e| anyhow!("the previous secret refused during the grace period: {e:#}"))?;
    let refused = other.metrics(grpc);
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("Unauthenticated")),
        "a third secret: {refused:?}"
    );
    println!("during the grace period: new and previous secrets accepted, a third refused");
    let took = wait_until(
        CONVERGE,
        "the previous secret refused after 1 s of grace",
        || {
            with_old
                .metrics(ending.grpc_addr())
                .is_err_and(|e| format!("{e:#}").contains("Unauthenticated"))
        },
    )?;
    with_new.metrics(ending.grpc_addr())?;
    println!("after the grace period ({took:?} into the test): only the new secret accepted");
    Ok(())
}
