//! Forwarding: coalescing of identical in-flight questions and failover across upstreams.

use std::net::SocketAddr;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use heimdall_tests::{AuthServer, Node, NodeOpts, compare_records, dead_addr, query_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{Setup, zone};

/// 100 concurrent identical queries while the upstream holds answers 200 ms: all are
/// answered and the upstream sees that question exactly once.
#[test]
fn coalesces_identical_concurrent_queries() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        s.auth.set_delay(Duration::from_millis(200));
        let addr = s.node.dns_addr();
        let barrier = Barrier::new(100);
        let started = Instant::now();
        let replies: Vec<_> = thread::scope(|scope| {
            let handles: Vec<_> = (0..100)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let t = Instant::now();
                        (
                            query_udp(addr, "www.example.test.", RecordType::A, None, false),
                            t.elapsed(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        println!("100 concurrent queries done in {:?}", started.elapsed());
        let mut slowest = Duration::ZERO;
        for reply in replies {
            let (reply, took) = reply.map_err(|_| anyhow::anyhow!("a query thread panicked"))?;
            let reply = reply?;
            slowest = slowest.max(took);
            ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
            ensure!(reply.answers.len() == 2, "{reply}");
        }
        println!("slowest single answer {slowest:?}");
        let count = s.auth.count("www.example.test.", RecordType::A);
        ensure!(
            count == 1,
            "the upstream saw {count} queries for one coalesced question"
        );
        Ok(())
    })
}

/// Query several names through a node whose first upstream is `dead` and check every
/// answer against the live upstream, printing the time each took.
fn check_failover(node: &Node, live: &AuthServer, what: &str) -> Result<()> {
    let names = [
        "www.example.test.",
        "mail.example.test.",
        "alias.example.test.",
        "txt.example.test.",
    ];
    for (i, name) in names.iter().enumerate() {
        let rtype = if name.starts_with("txt") {
            RecordType::TXT
        } else {
            RecordType::A
        };
        let started = Instant::now();
        let reply = query_udp(node.dns_addr(), name, rtype, None, false)
            .with_context(|| format!("{what}: query {i} for {name}"))?;
        println!("{what}: {name} {rtype} answered in {:?}", started.elapsed());
        ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
        let direct = query_udp(live.addr(), name, rtype, None, false)?;
        compare_records(&reply.answers, &direct.answers)?;
    }
    Ok(())
}

/// With the first upstream silently dropping everything, answers still come from the second.
#[test]
fn fails_over_from_a_silent_upstream() -> Result<()> {
    let silent = AuthServer::start(zone())?;
    let live = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts::upstreams(&[silent.addr(), live.addr()]))?;
    silent.set_down(true);
    node.attach_log(check_failover(&node, &live, "silent first upstream"))?;
    println!(
        "silent upstream saw {} queries, live one {}",
        silent.queries(),
        live.queries()
    );
    Ok(())
}

/// With nothing listening at the first upstream's address, answers still come from the second.
#[test]
fn fails_over_from_an_unreachable_upstream() -> Result<()> {
    let dead: SocketAddr = dead_addr(53)?;
    let live = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts::upstreams(&[dead, live.addr()]))?;
    node.attach_log(check_failover(&node, &live, "unreachable first upstream"))
}

/// A full miss queue sheds load: with `dns.miss_queue = 1` and a slow upstream, a burst of
/// distinct misses gets some immediate SERVFAILs from the worker (which never blocks), and
/// every query still gets an answer.
#[test]
fn full_miss_queue_sheds_with_servfail() -> Result<()> {
    let opts = NodeOpts {
        env: vec![("HEIMDALL_DNS__MISS_QUEUE".into(), "1".into())],
        ..NodeOpts::default()
    };
    let setup = Setup::with(zone(), opts)?;
    setup.run(|s| {
        let delay = Duration::from_millis(1500);
        s.auth.set_delay(delay);
        let socket = std::net::UdpSocket::bind((s.node.dns_addr().ip(), 0))?;
        socket.connect(s.node.dns_addr())?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        const BURST: usize = 64;
        let started = Instant::now();
        for i in 0..BURST {
            let mut q = heimdall_tests::build_query(&format!("shed{i}.example.test."), RecordType::A, None, false)?;
            q.metadata.id = i as u16;
            socket.send(&q.to_vec()?)?;
        }
        let mut fast_servfail = 0;
        let mut answered = std::collections::HashSet::new();
        let mut buf = [0u8; 1500];
        while answered.len() < BURST && started.elapsed() < Duration::from_secs(10) {
            let Ok(n) = socket.recv(&mut buf) else { continue };
            let reply = hickory_proto::op::Message::from_vec(&buf[..n])?;
            if reply.response_code == ResponseCode::ServFail && started.elapsed() < delay {
                fast_servfail += 1;
            }
            answered.insert(reply.metadata.id);
        }
        println!(
            "{BURST} distinct misses: {} answered in {:?}, {fast_servfail} shed with SERVFAIL before the upstream's {delay:?}",
            answered.len(),
            started.elapsed()
        );
        ensure!(answered.len() == BURST, "only {} of {BURST} queries answered", answered.len());
        ensure!(fast_servfail > 0, "no query was shed although the miss queue holds one");
        Ok(())
    })
}

/// Forged upstream replies race the real answer of every question: a wrong ID and a wrong
/// question from the upstream's own address and port (read and ignored, counted), the right
/// ID and question from another port and another address (dropped by the connected socket),
/// and a perfect forgery after the answer (the socket is gone). Every answer, fetched and
/// then from the cache, is the real one.
#[test]
fn spoofed_upstream_replies_never_reach_the_cache() -> Result<()> {
    const NAMES: u8 = 20;
    let mut zone = heimdall_tests::Zone::new("spoof.test.").soa(3600, 300);
    for i in 0..NAMES {
        zone = zone.add(&format!("n{i}"), 300, crate::a(192, 0, 2, i));
    }
    let setup = Setup::with(zone, NodeOpts::default())?;
    setup.run(|s| {
        s.auth.set_delay(Duration::from_millis(50));
        s.auth.set_spoof(true);
        let addr = s.node.dns_addr();
        let mismatched = || {
            heimdall_tests::prom::scrape_parsed(s.node.metrics_addr())?
                .value("heimdall_upstream_mismatched_total", &[])
        };
        let before = mismatched()?;
        for round in ["fetched", "cached"] {
            for i in 0..NAMES {
                let name = format!("n{i}.spoof.test.");
                let reply = query_udp(addr, &name, RecordType::A, None, false)?;
                let got: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
                ensure!(
                    reply.response_code == ResponseCode::NoError
                        && got == [format!("192.0.2.{i}")],
                    "{round} answer for {name}: {got:?} (forged: {})",
                    heimdall_tests::SPOOFED_ADDR
                );
            }
        }
        let counted = mismatched()? - before;
        println!(
            "{} forged replies sent; {counted} read and ignored as mismatched by the node",
            s.auth.spoofed()
        );
        ensure!(
            counted >= f64::from(NAMES) * 2.0,
            "want the wrong-ID and wrong-question forgeries of every question counted, got {counted}"
        );
        ensure!(
            s.auth.count("n0.spoof.test.", RecordType::A) == 1,
            "the cached round went upstream again"
        );
        Ok(())
    })
}
