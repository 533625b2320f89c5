//! Cluster commands against a three-node cluster: members and leader (table and JSON), a
//! `--join` node added and removed through the client library and through the binary, a
//! change sent to a follower applied everywhere, and a cluster-wide flush reaching every node.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use heimdall_client::v1::ClusterMembersReply;
use heimdall_client::{Client, ClientOptions};
use heimdall_tests::cluster::ClusterSpec;
use heimdall_tests::{AuthServer, Node, NodeOpts, unique_addr, wait_for, wait_until};
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::{ACTOR, CONVERGE, Ctl, TOKEN, lookup_entries, resolve, serial, zone};

/// Library options with the test token.
fn options() -> ClientOptions {
    ClientOptions {
        token: Some(TOKEN.to_owned()),
        actor: Some(ACTOR.to_owned()),
        ..ClientOptions::default()
    }
}

/// Ids of the voters in a members reply.
fn voters(reply: &ClusterMembersReply) -> Vec<u64> {
    reply
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

/// Ids and voter flags in a members JSON document.
fn member_ids(json: &Value) -> BTreeMap<u64, bool> {
    json["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_u64()?, m["voter"].as_bool()?)))
        .collect()
}

/// Starts a node that waits with `--join` to be added as `id`.
fn start_joiner(spec: &ClusterSpec, id: u64) -> Result<Node> {
    Node::start_at(
        unique_addr(heimdall_tests::node::NODE_DNS_PORT)?,
        NodeOpts {
            upstreams: spec.upstreams.clone(),
            config_toml: Some(spec.joiner_toml(id)),
            ..NodeOpts::default()
        },
    )
    .with_context(|| format!("starting joiner {id}"))
}

/// The whole cluster story through heimdallctl and the library.
#[test]
fn cluster_members_leader_add_remove_flush() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let mut spec = ClusterSpec::new(3)?;
    spec.upstreams = vec![auth.addr()];
    let mut nodes = spec.start_all()?;
    let joiners = [start_joiner(&spec, 4)?, start_joiner(&spec, 5)?];
    let result = body(&nodes, &joiners);
    if let Err(e) = &result {
        eprintln!("test failed: {e:#}");
        for node in nodes.values().chain(&joiners) {
            eprintln!(
                "---- log tail of {} ----\n{}\n---- end ----",
                node.dns_addr(),
                node.log_tail()
            );
        }
    }
    nodes.clear();
    result
}

/// The test proper, with nodes 1..=3 running and nodes 4 and 5 waiting to join.
fn body(nodes: &BTreeMap<u64, Node>, joiners: &[Node; 2]) -> Result<()> {
    let all: Vec<&Node> = nodes.values().collect();
    let ctl = Ctl::new(&all);
    let (leader, took) = wait_for(CONVERGE, "a leader known through heimdallctl", || {
        let json = ctl.json(&["cluster", "leader"]).ok()?;
        json["leader_id"].as_u64()
    })?;
    println!("leader {leader} known after {took:?}");
    let follower = *nodes
        .keys()
        .find(|id| **id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let follower_ctl = Ctl::new(&[&nodes[&follower]]);

    // A follower learns the membership from the leader's first entries, and reachability
    // from its calls to the peers, each a moment later.
    wait_until(
        CONVERGE,
        "the follower knowing all three members, reachable",
        || {
            follower_ctl
                .json(&["cluster", "members"])
                .is_ok_and(|json| {
                    json["leader_id"] == leader
                        && member_ids(&json).len() == 3
                        && json["members"]
                            .as_array()
                            .is_some_and(|m| m.iter().all(|m| m["reachable"] == true))
                })
        },
    )?;
    let text = ctl.ok(&["cluster", "leader"])?;
    print!("{text}");
    ensure!(text.starts_with(&format!("leader {leader} at ")), "{text}");
    let table = follower_ctl.ok(&["cluster", "members"])?;
    print!("{table}");
    ensure!(table.lines().count() == 4, "want three members:\n{table}");
    ensure!(
        table.lines().any(|l| l.starts_with(&format!("{leader}*"))),
        "the leader is not starred:\n{table}"
    );
    let json = follower_ctl.json(&["cluster", "members"])?;
    ensure!(
        json["leader_id"] == leader
            && member_ids(&json) == BTreeMap::from([(1, true), (2, true), (3, true)])
            && json["members"]
                .as_array()
                .is_some_and(|m| m.iter().all(|m| m["reachable"] == true)),
        "{json:#}"
    );

    // A change sent to a follower is applied on every node.
    let set = follower_ctl.json(&["config", "set", "cache.max_ttl", "1234"])?;
    let version = set["version"].as_u64().ok_or_else(|| anyhow!("{set}"))?;
    wait_until(
        CONVERGE,
        "every node applying the follower's change",
        || {
            nodes.values().all(|n| {
                Ctl::new(&[n])
                    .json(&["config", "get", "cache.max_ttl", "--local"])
                    .is_ok_and(|j| j["version"].as_u64() >= Some(version))
            })
        },
    )?;

    // Node 4 through the library, sent to a follower. The reply is the answering node's view
    // of the membership, which may trail the leader's by a moment, so the end state is awaited
    // on the follower itself.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let follower_endpoint = format!("http://{}", nodes[&follower].grpc_addr());
    let client = runtime.block_on(Client::connect(&follower_endpoint, options()))?;
    let joiner4 = joiners[0].grpc_addr().to_string();
    let started = Instant::now();
    let added = runtime.block_on(client.cluster_add_node(4, &joiner4))?;
    println!(
        "node 4 added through the library in {:?}",
        started.elapsed()
    );
    ensure!(
        added.members.iter().any(|m| m.id == 4),
        "the add-node reply does not list node 4: {added:?}"
    );
    wait_until(CONVERGE, "node 4 a voter as the follower sees it", || {
        runtime
            .block_on(client.cluster_members())
            .is_ok_and(|m| voters(&m) == [1, 2, 3, 4])
    })?;
    let removed = runtime.block_on(client.cluster_remove_node(4))?;
    ensure!(
        !voters(&removed).contains(&4),
        "node 4 still a voter in the remove-node reply: {removed:?}"
    );
    wait_until(CONVERGE, "node 4 gone as the follower sees it", || {
        runtime
            .block_on(client.cluster_members())
            .is_ok_and(|m| m.members.iter().map(|m| m.id).eq([1, 2, 3]))
    })?;

    // Node 5 through the binary.
    let joiner5 = joiners[1].grpc_addr().to_string();
    let started = Instant::now();
    let table = ctl.ok(&["cluster", "add-node", "5", &joiner5])?;
    println!(
        "node 5 added through heimdallctl in {:?}",
        started.elapsed()
    );
    print!("{table}");
    ensure!(
        table
            .lines()
            .any(|l| l.starts_with('5') && l.contains(&joiner5)),
        "{table}"
    );
    wait_until(CONVERGE, "node 5 a voter through heimdallctl", || {
        ctl.json(&["cluster", "members"]).is_ok_and(|json| {
            member_ids(&json) == BTreeMap::from([(1, true), (2, true), (3, true), (5, true)])
        })
    })?;
    let json = ctl.json(&["cluster", "remove-node", "5"])?;
    ensure!(
        member_ids(&json).get(&5) != Some(&true),
        "node 5 still a voter in the remove-node reply: {json:#}"
    );
    wait_until(CONVERGE, "node 5 gone through heimdallctl", || {
        ctl.json(&["cluster", "members"]).is_ok_and(|json| {
            member_ids(&json) == BTreeMap::from([(1, true), (2, true), (3, true)])
        })
    })?;

    // A cluster-wide flush reaches every node.
    for node in nodes.values() {
        resolve(node.dns_addr(), "www.example.test.", RecordType::A)?;
        ensure!(
            lookup_entries(&Ctl::new(&[node]), "www.example.test", "A")?.len() == 1,
            "www not cached on {}",
            node.dns_addr()
        );
    }
    let out = follower_ctl.ok(&["cache", "flush", "www.example.test", "--cluster"])?;
    print!("{out}");
    ensure!(out.starts_with("flushed cluster-wide as epoch "), "{out}");
    let took = wait_until(CONVERGE, "the cluster flush on every node", || {
        nodes.values().all(|n| {
            lookup_entries(&Ctl::new(&[n]), "www.example.test", "A").is_ok_and(|e| e.is_empty())
        })
    })?;
    println!("cluster flush seen on every node after {took:?}");
    let fleet = ctl.json(&["cache", "lookup", "www.example.test", "A"])?;
    ensure!(
        fleet.as_array().is_some_and(|n| n.len() == 3
            && n.iter()
                .all(|r| r["result"].as_array().is_some_and(Vec::is_empty))),
        "{fleet:#}"
    );
    let json = ctl.json(&["cache", "flush", "--cluster"])?;
    ensure!(json["epoch"].as_u64().is_some(), "{json:#}");
    Ok(())
}
