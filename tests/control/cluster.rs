//! The control plane of a three-node cluster: members and leader from every node, a
//! cluster-wide flush, a config change sent to a follower, and adding and removing a node.
//! The tests run one at a time ([`serial`]); elections take at least 1 s.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use heimdall_proto::v1::{
    CacheFlushRequest, ClusterAddNodeRequest, ClusterLeaderRequest, ClusterMembersReply,
    ClusterMembersRequest, ClusterRemoveNodeRequest, ConfigGetRequest, ConfigSetRequest,
};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, wait_leader};
use heimdall_tests::control::{Control, authed};
use heimdall_tests::{AuthServer, Node, NodeOpts, query_udp, unique_addr, wait_until};
use hickory_proto::rr::RecordType;
use tonic::Code;

use crate::{lookup, zone};

/// Generous deadline for an election or a change to reach every node.
const CONVERGE: Duration = Duration::from_secs(30);

/// Serializes the cluster tests (each starts several processes).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lock for one test (a failed test does not poison it).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Three nodes forwarding to one upstream, their control clients, and the leader.
struct Cluster {
    /// Keeps the upstream alive.
    _auth: AuthServer,
    /// The planned addresses.
    spec: ClusterSpec,
    /// The running nodes by id.
    nodes: BTreeMap<u64, Node>,
    /// A control client per node.
    ctl: BTreeMap<u64, Control>,
    /// The leader once elected.
    leader: u64,
}

impl Cluster {
    /// Starts nodes 1..=3 and waits for a leader known to all.
    fn start() -> Result<Cluster> {
        let auth = AuthServer::start(zone())?;
        let mut spec = ClusterSpec::new(3)?;
        spec.upstreams = vec![auth.addr()];
        let nodes = spec.start_all()?;
        let ctl = nodes
            .iter()
            .map(|(id, n)| Ok((*id, Control::new(n.grpc_addr())?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let client = ClusterClient::with_test_secret()?;
        let (leader, took) = wait_leader(&client, &spec, &[1, 2, 3], CONVERGE)?;
        println!("leader {leader} elected after {took:?}");
        Ok(Cluster {
            _auth: auth,
            spec,
            nodes,
            ctl,
            leader,
        })
    }

    /// A node other than the leader.
    fn follower(&self) -> u64 {
        if self.leader == 1 { 2 } else { 1 }
    }

    /// The control client of node `id`.
    fn ctl(&self, id: u64) -> Result<&Control> {
        self.ctl.get(&id).with_context(|| format!("no node {id}"))
    }

    /// Runs `body`; on failure prints every node's log tail.
    fn run(&self, body: impl FnOnce(&Cluster) -> Result<()>) -> Result<()> {
        let result = body(self);
        if let Err(e) = &result {
            eprintln!("test failed: {e:#}");
            for (id, node) in &self.nodes {
                eprintln!("---- node {id} log tail ----\n{}", node.log_tail());
            }
        }
        result
    }
}

/// ClusterMembers as node `ctl` reports it.
fn members(ctl: &Control) -> Result<ClusterMembersReply, tonic::Status> {
    ctl.call(|mut c| async move { c.cluster_members(authed(ClusterMembersRequest {})).await })
}

/// Every node lists all three members with their roles (one leader, two followers) and
/// terms, agrees on the leader; a cluster-wide flush sent to a follower empties that name on
/// every node; a config change sent to a follower is applied everywhere.
#[test]
fn members_flush_and_config_across_the_cluster() -> Result<()> {
    let _serial = serial();
    let cluster = Cluster::start()?;
    cluster.run(|c| {
        for (id, ctl) in &c.ctl {
            let reply = wait_until_ok(
                || members(ctl),
                |r| {
                    r.members.len() == 3
                        && r.members.iter().all(|m| m.reachable && m.last_applied > 0)
                },
            )?;
            let roles: Vec<&str> = reply.members.iter().map(|m| m.role.as_str()).collect();
            println!("node {id} sees members {roles:?}");
            ensure!(reply.leader_id == Some(c.leader), "node {id}: {reply:?}");
            ensure!(
                roles.iter().filter(|r| **r == "Leader").count() == 1
                    && roles.iter().filter(|r| **r == "Follower").count() == 2,
                "node {id}: {reply:?}"
            );
            ensure!(
                reply
                    .members
                    .iter()
                    .all(|m| m.voter && m.term > 0 && m.last_applied > 0),
                "node {id}: {reply:?}"
            );
            let leader = ctl.call(|mut cl| async move {
                cl.cluster_leader(authed(ClusterLeaderRequest {})).await
            })?;
            ensure!(
                leader.leader_id == Some(c.leader)
                    && leader.grpc_addr == c.spec.grpc(c.leader)?.to_string(),
                "node {id}: {leader:?}"
            );
        }

        for node in c.nodes.values() {
            query_udp(
                node.dns_addr(),
                "www.example.test",
                RecordType::A,
                None,
                false,
            )?;
        }
        for (id, ctl) in &c.ctl {
            ensure!(
                !lookup(ctl, "www.example.test", "A")?.is_empty(),
                "node {id} has nothing cached"
            );
        }
        let started = Instant::now();
        let follower = c.ctl(c.follower())?;
        let request = CacheFlushRequest {
            name: "www.example.test".to_owned(),
            cluster: true,
            ..CacheFlushRequest::default()
        };
        let flushed =
            follower.call(|mut cl| async move { cl.cache_flush(authed(request)).await })?;
        ensure!(flushed.epoch > 0 && flushed.removed == 1, "{flushed:?}");
        for (id, ctl) in &c.ctl {
            wait_until(CONVERGE, "the cluster flush applied", || {
                lookup(ctl, "www.example.test", "A").is_ok_and(|e| e.is_empty())
            })
            .with_context(|| format!("node {id}"))?;
        }
        println!(
            "cluster flush reached every node in {:?}",
            started.elapsed()
        );

        let started = Instant::now();
        let request = ConfigSetRequest {
            key: "cache.max_ttl".to_owned(),
            value: "777".to_owned(),
            expect_version: None,
        };
        let changed =
            follower.call(|mut cl| async move { cl.config_set(authed(request)).await })?;
        for (id, ctl) in &c.ctl {
            wait_until(CONVERGE, "the change applied", || {
                let get = ConfigGetRequest {
                    key: "cache.max_ttl".to_owned(),
                    local: true,
                };
                ctl.call(|mut cl| async move { cl.config_get(authed(get)).await })
                    .is_ok_and(|r| r.value_json == "777" && r.version == changed.version)
            })
            .with_context(|| format!("node {id}"))?;
        }
        println!(
            "config set on a follower applied everywhere in {:?}",
            started.elapsed()
        );
        Ok(())
    })
}

/// Polls `call` until `done` accepts its answer; the last error or answer explains a timeout.
fn wait_until_ok<T: std::fmt::Debug>(
    call: impl Fn() -> Result<T, tonic::Status>,
    done: impl Fn(&T) -> bool,
) -> Result<T> {
    let mut last = String::new();
    let outcome = heimdall_tests::wait_for(CONVERGE, "a control answer", || match call() {
        Ok(reply) if done(&reply) => Some(reply),
        Ok(reply) => {
            last = format!("{reply:?}");
            None
        }
        Err(e) => {
            last = format!("{e:?}");
            None
        }
    });
    outcome
        .map(|(reply, _)| reply)
        .with_context(|| format!("last answer: {last}"))
}

/// A `--join` node is added through a follower (learner, caught up, voter) and removed
/// again; a node that already leads another cluster is refused with a clear error.
#[test]
fn add_and_remove_a_join_node() -> Result<()> {
    let _serial = serial();
    let cluster = Cluster::start()?;
    let joiner = Node::start_at(
        unique_addr(heimdall_tests::node::NODE_DNS_PORT)?,
        NodeOpts {
            upstreams: cluster.spec.upstreams.clone(),
            config_toml: Some(cluster.spec.joiner_toml(4)),
            ..NodeOpts::default()
        },
    )?;
    let mut other = ClusterSpec::new(1)?;
    let other_dns = *other.dns.get(&1).context("other spec")?;
    other.dns = BTreeMap::from([(9, other_dns)]);
    let foreign = other.start(9)?;
    let result = cluster.run(|c| {
        let follower = c.ctl(c.follower())?;
        let started = Instant::now();
        let request = ClusterAddNodeRequest {
            id: 4,
            grpc_addr: joiner.grpc_addr().to_string(),
        };
        let added =
            follower.call(|mut cl| async move { cl.cluster_add_node(authed(request)).await })?;
        println!("node 4 added in {:?}: {added:?}", started.elapsed());
        ensure!(
            added.members.iter().any(|m| m.id == 4 && m.voter),
            "node 4 is not a voter: {added:?}"
        );
        let joined = Control::new(joiner.grpc_addr())?;
        wait_until_ok(
            || members(&joined),
            |r| r.members.len() == 4 && r.leader_id == Some(c.leader),
        )?;

        let started = Instant::now();
        let request = ClusterRemoveNodeRequest { id: 4 };
        let removed =
            follower.call(|mut cl| async move { cl.cluster_remove_node(authed(request)).await })?;
        println!("node 4 removed in {:?}", started.elapsed());
        ensure!(removed.members.iter().all(|m| m.id != 4), "{removed:?}");
        for (id, ctl) in &c.ctl {
            wait_until_ok(|| members(ctl), |r| r.members.len() == 3)
                .with_context(|| format!("node {id} still lists node 4"))?;
        }

        // Node 9 bootstrapped its own one-node cluster (same secret): refused.
        let client = ClusterClient::with_test_secret()?;
        wait_until(CONVERGE, "node 9 leading its own cluster", || {
            client
                .metrics(foreign.grpc_addr())
                .is_ok_and(|m| m.leader_id == Some(9))
        })?;
        let request = ClusterAddNodeRequest {
            id: 9,
            grpc_addr: foreign.grpc_addr().to_string(),
        };
        let err = follower
            .call(|mut cl| async move { cl.cluster_add_node(authed(request)).await })
            .expect_err("a node of another cluster is refused");
        println!("refused: {err:?}");
        ensure!(
            err.code() == Code::FailedPrecondition && err.message().contains("another cluster"),
            "{err:?}"
        );
        let after = members(follower)?;
        ensure!(after.members.iter().all(|m| m.id != 9), "{after:?}");
        Ok(())
    });
    if result.is_err() {
        eprintln!("---- joiner log ----\n{}", joiner.log_tail());
        eprintln!("---- foreign log ----\n{}", foreign.log_tail());
    }
    result
}
