//! Gossip integration suite: real `heimdall` processes sharing hot cache entries over
//! authenticated UDP datagrams on loopback.
//!
//! The upstream is the in-process authoritative server, which counts the queries it gets.
//! Datagrams the tests inject are built with the node crate's own encoder and the test
//! cluster secret (or a wrong one). Tests run one at a time; waits are conditions with
//! generous deadlines and measured times are printed.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use heimdall_node::cluster::auth::unix_ms;
use heimdall_node::cluster::{Command, CommandResponse, FlushScope};
use heimdall_node::gossip::wire::{DatagramWriter, Header, WireEntry};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, TEST_SECRET, wait_leader};
use heimdall_tests::node::NODE_GOSSIP_PORT;
use heimdall_tests::prom::scrape_parsed;
use heimdall_tests::{AuthServer, Node, Zone, query_udp, wait_for, wait_until, wait_until_instant};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod partition;

/// Generous deadline for elections, announcements and propagation.
const CONVERGE: Duration = Duration::from_secs(30);

/// Serializes the tests (each starts several processes).
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the suite's lock for one test.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The zone the upstream serves: `www` and `flushed` A 192.0.2.1, TTL 300.
fn zone() -> Zone {
    let a = RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    Zone::new("example.test.")
        .soa(3600, 300)
        .add("www", 300, a.clone())
        .add("other", 300, a.clone())
        .add("fast", 2, a.clone())
        .add("flushed", 300, a)
}

/// The A addresses and smallest TTL of the answer `dns` gives for `name`.
fn answer(dns: SocketAddr, name: &str) -> Result<(Vec<String>, u32)> {
    let reply = query_udp(dns, name, RecordType::A, None, false)?;
    ensure!(
        reply.response_code == ResponseCode::NoError,
        "{name} at {dns}: {reply:?}"
    );
    let ips = reply.answers.iter().map(|r| r.data.to_string()).collect();
    let ttl = reply.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
    Ok((ips, ttl))
}

/// A gossip counter of the node (Prometheus), 0 when absent.
fn counter(node: &Node, name: &str) -> f64 {
    scrape_parsed(node.metrics_addr())
        .ok()
        .and_then(|e| e.get(name, &[]))
        .unwrap_or(0.0)
}

/// Waits until every node of `ids` has accepted at least one gossiped entry.
fn wait_gossip_received(nodes: &BTreeMap<u64, Node>, ids: &[u64]) -> Result<Duration> {
    let what = format!("nodes {ids:?} accepting a gossiped entry");
    wait_until(CONVERGE, &what, || {
        ids.iter().all(|id| {
            nodes
                .get(id)
                .is_some_and(|node| counter(node, "heimdall_gossip_received_total") >= 1.0)
        })
    })
}

/// Waits until every node of `spec` is listed by node 1 with its gossip address.
fn wait_gossip_addresses(client: &ClusterClient, spec: &ClusterSpec) -> Result<Duration> {
    let first = spec.grpc(1)?;
    let started = Instant::now();
    wait_until(CONVERGE, "every member's gossip address in Raft", || {
        client.members(first).is_ok_and(|m| {
            m.members.len() == spec.dns.len()
                && m.members.iter().all(|m| {
                    spec.dns.get(&m.id).is_some_and(|dns| {
                        m.gossip_addr == SocketAddr::new(dns.ip(), NODE_GOSSIP_PORT).to_string()
                    })
                })
        })
    })?;
    Ok(started.elapsed())
}

/// Fails unless the upstream saw exactly one A query for `name`.
fn one_upstream_query(auth: &AuthServer, name: &str) -> Result<()> {
    let seen = auth.count(name, RecordType::A);
    ensure!(seen == 1, "the upstream saw {seen} queries for {name}");
    Ok(())
}

/// Starts a cluster of `n` nodes forwarding to `auth`, with a leader and every gossip
/// address recorded.
fn cluster(n: u64, auth: &AuthServer) -> Result<(ClusterSpec, BTreeMap<u64, Node>)> {
    let mut spec = ClusterSpec::new(n)?;
    spec.upstreams = vec![auth.addr()];
    let nodes = spec.start_all()?;
    let client = ClusterClient::with_test_secret()?;
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let (leader, took) = wait_leader(&client, &spec, &ids, CONVERGE)?;
    println!("leader {leader} after {took:?}");
    let took = wait_gossip_addresses(&client, &spec)?;
    println!("gossip addresses recorded after {took:?}");
    Ok((spec, nodes))
}

/// Prints every node's log tail when `result` failed.
fn with_logs<T>(result: Result<T>, nodes: &BTreeMap<u64, Node>) -> Result<T> {
    if let Err(e) = &result {
        eprintln!("test failed: {e:#}");
        for (id, node) in nodes {
            eprintln!("---- node {id} ----\n{}\n---- end ----", node.log_tail());
        }
    }
    result
}

/// A name queried 3 times on node 1 is then answered from cache on nodes 2 and 3: the
/// upstream saw exactly one query, and their TTL is never above node 1's.
#[test]
fn hot_name_reaches_every_node_with_one_upstream_query() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (_spec, nodes) = cluster(3, &auth)?;
    let result = (|| {
        let name = "www.example.test.";
        let a = &nodes[&1];
        let started = Instant::now();
        for _ in 0..3 {
            answer(a.dns_addr(), name)?;
        }
        ensure!(auth.count(name, RecordType::A) == 1, "one upstream query");
        wait_gossip_received(&nodes, &[2, 3])?;
        println!("propagation to nodes 2 and 3: {:?}", started.elapsed());
        for id in [2, 3] {
            // Node 1 first: the copies expire at the same instant at best, so asking the
            // peer second can only show a TTL as high, even across a second boundary.
            let (_, a_ttl) = answer(a.dns_addr(), name)?;
            let (ips, ttl) = answer(nodes[&id].dns_addr(), name)?;
            ensure!(ips == ["192.0.2.1"], "node {id}: {ips:?}");
            ensure!(ttl <= a_ttl, "node {id} TTL {ttl} above node 1's {a_ttl}");
            println!("node {id} TTL {ttl}, node 1 TTL {a_ttl}");
        }
        one_upstream_query(&auth, name)
    })();
    with_logs(result, &nodes)
}

/// The cache key of `name` type A class IN without DO/CD: lower-cased wire name, type,
/// class, flags byte.
fn key(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend(label.to_ascii_lowercase().bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1, 0]);
    out
}

/// A response for `name` A 192.0.2.99 with `ttl`, as the cache replays it.
fn forged_response(name: &str, ttl: u32) -> Result<Vec<u8>> {
    let owner = Name::from_ascii(name)?;
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.recursion_available = true;
    message.add_query(Query::query(owner.clone(), RecordType::A));
    message.add_answer(Record::from_rdata(
        owner,
        ttl,
        RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 99))),
    ));
    Ok(message.to_vec()?)
}

/// Builds a datagram from node `sender` carrying `name` -> 192.0.2.99.
struct Crafted {
    /// Sender id in the header.
    sender: u64,
    /// Boot epoch in the header.
    boot_epoch: u64,
}

impl Crafted {
    /// One signed datagram with sequence `sequence`, an entry for `name` claiming `ttl_ms`
    /// remaining under flush epoch `epoch`.
    fn datagram(
        &self,
        secret: &str,
        sequence: u64,
        name: &str,
        ttl_ms: u32,
        epoch: u64,
    ) -> Result<Vec<u8>> {
        let header = Header {
            sender: self.sender,
            boot_epoch: self.boot_epoch,
            timestamp_ms: unix_ms(),
            sequence,
        };
        let message = forged_response(name, ttl_ms / 1000)?;
        let key = key(name);
        let mut writer = DatagramWriter::new(&header, 1232);
        ensure!(writer.push(&WireEntry {
            key: &key,
            flush_epoch: epoch,
            ttl_ms,
            message: &message,
        }));
        Ok(writer.finish(secret.as_bytes()))
    }
}

/// Forged, replayed, garbage, too-long-TTL and pre-flush datagrams or entries leave the
/// cache unchanged and move the rejection counter; a reordered-but-fresh datagram is stored.
#[test]
fn injected_datagrams_are_checked() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (spec, nodes) = cluster(1, &auth)?;
    let result = (|| {
        let node = &nodes[&1];
        let target = SocketAddr::new(node.dns_addr().ip(), NODE_GOSSIP_PORT);
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let rejected = || counter(node, "heimdall_gossip_rejected_total");
        let received = || counter(node, "heimdall_gossip_received_total");
        let peer = Crafted {
            sender: 99,
            boot_epoch: 7,
        };
        let mut expected_rejections = 0.0;
        let mut send_rejected = |what: &str, bytes: &[u8]| -> Result<()> {
            socket.send_to(bytes, target)?;
            expected_rejections += 1.0;
            let want = expected_rejections;
            wait_until(CONVERGE, &format!("{what} counted as rejected"), || {
                rejected() >= want
            })?;
            ensure!(
                rejected() == want,
                "{what}: rejections {} != {want}",
                rejected()
            );
            Ok(())
        };

        // Forged (wrong key), garbage, truncated, TTL above max_ttl: nothing stored.
        let name = "www.example.test.";
        let good = peer.datagram(TEST_SECRET, 10, name, 100_000, 0)?;
        send_rejected(
            "forged",
            &peer.datagram("not-the-secret", 1, name, 100_000, 0)?,
        )?;
        send_rejected("garbage", b"HMDG\x01garbage")?;
        send_rejected("truncated", &good[..good.len() - 3])?;
        send_rejected(
            "ttl above max_ttl",
            &peer.datagram(TEST_SECRET, 2, name, 10_000_000_000u64 as u32, 0)?,
        )?;
        ensure!(received() == 0.0, "nothing accepted yet");

        // Sequence 10, then the reordered 5 (fresh, accepted), then 10 again (replay).
        socket.send_to(&good, target)?;
        wait_until(CONVERGE, "the first datagram stored", || received() >= 1.0)?;
        socket.send_to(
            &peer.datagram(TEST_SECRET, 5, "other.example.test.", 100_000, 0)?,
            target,
        )?;
        wait_until(CONVERGE, "the reordered datagram stored", || {
            received() >= 2.0
        })?;
        send_rejected("replayed", &good)?;
        let (ips, ttl) = answer(node.dns_addr(), name)?;
        ensure!(
            ips == ["192.0.2.99"] && ttl <= 100,
            "gossiped entry served: {ips:?} {ttl}"
        );
        let (ips, _) = answer(node.dns_addr(), "other.example.test.")?;
        ensure!(ips == ["192.0.2.99"], "reordered entry served: {ips:?}");
        ensure!(
            auth.count(name, RecordType::A) + auth.count("other.example.test.", RecordType::A) == 0,
            "served from gossip, not upstream"
        );

        // A cluster-wide flush of the name: an entry cached before it (epoch 0) is refused.
        let client = ClusterClient::with_test_secret()?;
        let flushed = "flushed.example.test.";
        let written = client.write(
            spec.grpc(1)?,
            &Command::Flush {
                scope: FlushScope::Name(flushed.to_owned()),
                author: "gossip test".to_owned(),
                node: 1,
                at_unix_ms: unix_ms(),
            },
        )?;
        ensure!(
            matches!(written.response, CommandResponse::Flushed { epoch: 1 }),
            "{written:?}"
        );
        wait_for(CONVERGE, "the flush applied", || {
            client
                .state(spec.grpc(1).ok()?, false)
                .ok()
                .filter(|s| s.flush_epoch == 1)
        })?;
        send_rejected(
            "older than the flush",
            &peer.datagram(TEST_SECRET, 11, flushed, 100_000, 0)?,
        )?;
        let (ips, _) = answer(node.dns_addr(), flushed)?;
        ensure!(
            ips == ["192.0.2.1"],
            "the flushed name came from upstream: {ips:?}"
        );
        ensure!(auth.count(flushed, RecordType::A) == 1);
        ensure!(received() == 2.0, "only the two good datagrams were stored");
        Ok(())
    })();
    with_logs(result, &nodes)
}

/// Whether the node's `grpc.health.v1` reports SERVING for the whole server.
fn serving(grpc: SocketAddr) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    runtime.block_on(async {
        let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .map(|e| e.connect_timeout(Duration::from_secs(2)))
        else {
            return false;
        };
        let Ok(channel) = channel.connect().await else {
            return false;
        };
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
    })
}

/// A node restarted with an empty cache loads the hot set from a peer before it reports
/// SERVING, and then answers the hot name from cache (the upstream still saw one query).
#[test]
fn restarted_node_is_warm_when_ready() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (_spec, mut nodes) = cluster(3, &auth)?;
    let result = (|| {
        let name = "www.example.test.";
        for _ in 0..3 {
            answer(nodes[&1].dns_addr(), name)?;
        }
        // Warm start asks one peer at random: every peer must hold the entry first.
        wait_gossip_received(&nodes, &[2, 3])?;
        let node = nodes.get_mut(&3).ok_or_else(|| anyhow::anyhow!("node 3"))?;
        let started = Instant::now();
        node.restart()?;
        let grpc = node.grpc_addr();
        wait_until(CONVERGE, "node 3 reports SERVING", || serving(grpc))?;
        println!("restarted node SERVING after {:?}", started.elapsed());
        ensure!(
            node.log().contains("warm start: loaded a peer's hot set"),
            "no warm start in the log"
        );
        let (ips, ttl) = answer(node.dns_addr(), name)?;
        ensure!(ips == ["192.0.2.1"] && ttl <= 300, "{ips:?} {ttl}");
        one_upstream_query(&auth, name)
    })();
    with_logs(result, &nodes)
}

/// A `--join` node reports NOT_SERVING until it is added; once added it loads a peer's hot
/// set before it reports SERVING, and answers the hot name from cache (the upstream still
/// saw one query).
#[test]
fn joined_node_is_warm_when_ready() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (spec, mut nodes) = cluster(3, &auth)?;
    let joiner = Node::start_at(
        heimdall_tests::unique_addr(heimdall_tests::node::NODE_DNS_PORT)?,
        heimdall_tests::NodeOpts {
            upstreams: spec.upstreams.clone(),
            config_toml: Some(spec.joiner_toml(4)),
            ..heimdall_tests::NodeOpts::default()
        },
    )?;
    let (grpc, dns) = (joiner.grpc_addr(), joiner.dns_addr());
    nodes.insert(4, joiner);
    let result = (|| {
        let name = "www.example.test.";
        for _ in 0..3 {
            answer(nodes[&1].dns_addr(), name)?;
        }
        // Warm start asks one peer at random: every peer must hold the entry first.
        wait_gossip_received(&nodes, &[2, 3])?;
        ensure!(
            !serving(grpc),
            "a --join node not yet added reports SERVING"
        );
        let client = ClusterClient::with_test_secret()?;
        let (leader, _) = wait_leader(&client, &spec, &[1, 2, 3], CONVERGE)?;
        let started = Instant::now();
        client.join(spec.grpc(leader)?, 4, grpc, dns)?;
        wait_until(CONVERGE, "node 4 reports SERVING", || serving(grpc))?;
        println!("joined node SERVING {:?} after its add", started.elapsed());
        ensure!(
            nodes[&4]
                .log()
                .contains("warm start: loaded a peer's hot set"),
            "no warm start in the log"
        );
        let (ips, ttl) = answer(dns, name)?;
        ensure!(ips == ["192.0.2.1"] && ttl <= 300, "{ips:?} {ttl}");
        one_upstream_query(&auth, name)
    })();
    with_logs(result, &nodes)
}

/// Queries `name` on every node in turn for `duration` (a round every 20 ms); returns how
/// many queries for it the upstream saw meanwhile.
fn refresh_load(nodes: &[&Node], auth: &AuthServer, name: &str, duration: Duration) -> Result<u64> {
    let before = auth.count(name, RecordType::A);
    let started = Instant::now();
    let mut next = started;
    while started.elapsed() < duration {
        for node in nodes {
            answer(node.dns_addr(), name)?;
        }
        next += Duration::from_millis(20);
        wait_until_instant(next);
    }
    Ok(auth.count(name, RecordType::A) - before)
}

/// Refresh economy: a hot name with a 2 s TTL queried continuously on three nodes for 20 s
/// costs fewer upstream queries when the nodes gossip than when they do not (both printed).
#[test]
fn gossip_saves_refreshes() -> Result<()> {
    let _serial = serial();
    let name = "fast.example.test.";
    let duration = Duration::from_secs(20);

    let auth = AuthServer::start(zone())?;
    let (_spec, nodes) = cluster(3, &auth)?;
    let on = with_logs(
        refresh_load(&nodes.values().collect::<Vec<_>>(), &auth, name, duration),
        &nodes,
    )?;
    for (id, node) in &nodes {
        println!(
            "gossip on, node {id}: {} cache misses, {} prefetches, {} gossiped entries accepted",
            counter(node, "heimdall_cache_misses_total"),
            counter(node, "heimdall_prefetches_total"),
            counter(node, "heimdall_gossip_received_total"),
        );
    }
    drop(nodes);

    // Gossip off: three one-node clusters, which have no peers to gossip with.
    let alone = AuthServer::start(zone())?;
    let mut singles = Vec::new();
    for _ in 0..3 {
        singles.push(cluster(1, &alone)?.1);
    }
    let single_nodes: Vec<&Node> = singles.iter().flat_map(|m| m.values()).collect();
    let off = refresh_load(&single_nodes, &alone, name, duration)?;
    println!("upstream queries for a 2 s TTL name over 20 s: gossip on {on}, gossip off {off}");
    ensure!(
        on < off,
        "gossip on ({on}) should cost fewer upstream queries than off ({off})"
    );
    Ok(())
}

/// Makes a fresh name hot on `node` (an NXDOMAIN answer with the zone's SOA, cached): three
/// queries for `n<i>.example.test.`.
fn make_hot(node: &Node, i: u64) -> Result<()> {
    let name = format!("n{i}.example.test.");
    for _ in 0..3 {
        query_udp(node.dns_addr(), &name, RecordType::A, None, false)?;
    }
    Ok(())
}

/// A member that dies is declared down by SWIM and skipped (logged) while the others still
/// get entries; once it is back SWIM sees it up and it receives gossip again.
#[test]
fn dead_peer_is_skipped_and_comes_back() -> Result<()> {
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (_spec, mut nodes) = cluster(3, &auth)?;
    let result = (|| {
        let mut i = 0;
        nodes
            .get_mut(&3)
            .ok_or_else(|| anyhow::anyhow!("node 3"))?
            .kill()?;
        let started = Instant::now();
        wait_until(CONVERGE, "SWIM on node 1 declaring node 3 down", || {
            i += 1;
            make_hot(&nodes[&1], i).is_ok()
                && nodes[&1]
                    .log()
                    .contains("gossip peer down (SWIM): skipped peer=3")
        })?;
        println!("dead peer declared down after {:?}", started.elapsed());
        let received = counter(&nodes[&2], "heimdall_gossip_received_total");
        wait_until(CONVERGE, "node 2 still receives", || {
            i += 1;
            make_hot(&nodes[&1], i).is_ok()
                && counter(&nodes[&2], "heimdall_gossip_received_total") > received
        })?;
        let node3 = nodes.get_mut(&3).ok_or_else(|| anyhow::anyhow!("node 3"))?;
        node3.restart()?;
        let healed = Instant::now();
        wait_until(CONVERGE, "node 3 receives gossip again", || {
            i += 1;
            make_hot(&nodes[&1], i).is_ok()
                && counter(&nodes[&3], "heimdall_gossip_received_total") >= 1.0
        })?;
        println!(
            "gossip to node 3 resumed {:?} after its restart",
            healed.elapsed()
        );
        wait_until(CONVERGE, "SWIM on node 1 seeing node 3 up again", || {
            nodes[&1]
                .log()
                .contains("gossip peer up again (SWIM) peer=3")
        })?;
        Ok(())
    })();
    with_logs(result, &nodes)
}
