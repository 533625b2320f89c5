//! Changing the upstream list through Raft while a client sends queries fails no query.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, expect_applied, wait_leader};
use heimdall_tests::{AuthServer, build_query, exchange_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{CONVERGE, serial, show_logs_on_error, zone};

/// A client queries fresh names (every one a cache miss forwarded upstream) while the
/// upstream list is switched between two live servers, back and forth, through Raft: every
/// query is answered, none fails, and each switch moves the traffic.
#[test]
fn upstream_list_changes_live_without_failing_a_query() -> Result<()> {
    let _serial = serial();
    let first = AuthServer::start(zone())?;
    let second = AuthServer::start(zone())?;
    // Answers take a moment, so swaps happen with queries in flight.
    first.set_delay(Duration::from_millis(20));
    second.set_delay(Duration::from_millis(20));
    let mut spec = ClusterSpec::new(1)?;
    spec.upstreams = vec![first.addr()];
    let nodes = spec.start_all()?;
    let result = body(&spec, &first, &second);
    show_logs_on_error(result, &nodes)
}

/// Concurrent query clients.
const QUERIERS: u64 = 4;

/// Queries fresh names at `dns` until `stop`; fails listing every query that was not
/// answered NXDOMAIN (the zone has none of these names). Returns how many were sent.
fn query_until(
    dns: SocketAddr,
    client_no: u64,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Result<u64> {
    let mut failures = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let name = format!("q{i}-c{client_no}.example.test.");
        let query = build_query(&name, RecordType::A, None, false)?;
        // One try: a dropped or failed query is not retried away.
        match exchange_udp(dns, &query, Duration::from_secs(3), 1) {
            Ok(reply) if reply.response_code == ResponseCode::NXDomain => {
                answered.fetch_add(1, Ordering::SeqCst);
            }
            Ok(reply) => failures.push(format!("{name}: {}", reply.response_code)),
            Err(e) => failures.push(format!("{name}: {e:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {i} queries failed: {failures:?}",
        failures.len()
    );
    Ok(i)
}

/// The test proper.
fn body(spec: &ClusterSpec, first: &AuthServer, second: &AuthServer) -> Result<()> {
    let client = ClusterClient::with_test_secret()?;
    wait_leader(&client, spec, &[1], CONVERGE)?;
    let dns = *spec.dns.get(&1).ok_or_else(|| anyhow!("no node 1"))?;
    let grpc = spec.grpc(1)?;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    // Several clients, so queries are in flight at every swap.
    let queriers: Vec<_> = (0..QUERIERS)
        .map(|client_no| {
            let stop = Arc::clone(&stop);
            let answered = Arc::clone(&answered);
            thread::spawn(move || query_until(dns, client_no, &stop, &answered))
        })
        .collect();

    let started = Instant::now();
    // Each step: the new list, and the servers of it that must now receive the queries.
    let both = format!("{},{}", second.addr(), first.addr());
    let plan: [(String, Vec<&AuthServer>); 4] = [
        (second.addr().to_string(), vec![second]),
        (first.addr().to_string(), vec![first]),
        (both, vec![first, second]),
        (first.addr().to_string(), vec![first]),
    ];
    for (list, serving) in &plan {
        let served = || serving.iter().map(|s| s.queries()).sum::<u64>();
        let seen = served();
        let before = answered.load(Ordering::SeqCst);
        let switch = Instant::now();
        expect_applied(&client.set(grpc, "upstreams", list)?)?;
        let took = wait_until(CONVERGE, "queries reaching the new upstream", || {
            served() > seen + 5 && answered.load(Ordering::SeqCst) > before + 5
        })?;
        println!(
            "upstreams -> [{list}]: committed and serving {:?} after the write ({took:?} polling)",
            switch.elapsed()
        );
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for querier in queriers {
        sent += querier
            .join()
            .map_err(|_| anyhow!("query thread panicked"))??;
    }
    println!(
        "{sent} queries over {:?} and {} upstream switches: all answered",
        started.elapsed(),
        plan.len()
    );
    Ok(())
}
