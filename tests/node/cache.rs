//! Cache behaviour: negative caching (RFC 2308), SERVFAIL when nothing can be had,
//! serve-stale (RFC 8767) and prefetch near the end of a TTL.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use heimdall_tests::{
    NodeOpts, build_query, dead_addr, exchange_udp, query_udp, wait_for, wait_until,
    wait_until_instant,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::{Setup, a, first_ttl, zone};

/// One UDP query with a long single try, for answers the node may hold back for a while.
fn slow_query(setup: &Setup, name: &str, rtype: RecordType) -> Result<Message> {
    let query = build_query(name, rtype, None, false)?;
    exchange_udp(setup.node.dns_addr(), &query, Duration::from_secs(8), 1)
}

/// Check a negative answer: `rcode`, no answers, the SOA in authority with TTL <= `max_ttl`.
fn check_negative(msg: &Message, rcode: ResponseCode, max_ttl: u32) -> Result<()> {
    ensure!(msg.response_code == rcode, "want {rcode}, got:\n{msg}");
    ensure!(
        msg.answers.is_empty(),
        "answers in a negative reply:\n{msg}"
    );
    let Some(soa) = msg
        .authorities
        .iter()
        .find(|r| matches!(r.data, RData::SOA(_)))
    else {
        bail!("no SOA in the authority section:\n{msg}");
    };
    ensure!(
        soa.ttl <= max_ttl,
        "SOA TTL {} above the negative TTL {max_ttl}",
        soa.ttl
    );
    Ok(())
}

/// Query `name`/`rtype` on a cached negative answer until the upstream is asked again; the
/// entry must expire about `negative_ttl` seconds in, long before the larger SOA field.
fn expect_negative_expiry(
    s: &Setup,
    name: &str,
    rtype: RecordType,
    negative_ttl: u32,
) -> Result<()> {
    let started = Instant::now();
    let deadline = Duration::from_secs(u64::from(negative_ttl) + 12);
    let took = wait_until(
        deadline,
        "the negative entry to expire and be refetched",
        || {
            let _ = query_udp(s.node.dns_addr(), name, rtype, None, false);
            s.auth.count(name, rtype) >= 2
        },
    )?;
    println!(
        "{name} {rtype}: negative entry refetched after {took:?} (TTL {negative_ttl} s, since first hit {:?})",
        started.elapsed()
    );
    Ok(())
}

/// NXDOMAIN is cached: the second query stays off the upstream, carries the SOA, and the
/// negative TTL is min(SOA TTL, SOA MINIMUM) = MINIMUM here.
#[test]
fn nxdomain_is_cached_for_soa_minimum() -> Result<()> {
    let setup = Setup::with(zone().soa(60, 3), NodeOpts::default())?;
    setup.run(|s| {
        let name = "missing.example.test.";
        for round in ["miss", "hit"] {
            let reply = query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
            check_negative(&reply, ResponseCode::NXDomain, 3)?;
            println!(
                "{round}: NXDOMAIN with SOA TTL {}",
                reply.authorities[0].ttl
            );
        }
        ensure!(
            s.auth.count(name, RecordType::A) == 1,
            "the hit reached the upstream"
        );
        expect_negative_expiry(s, name, RecordType::A, 3)
    })
}

/// NODATA is cached: the second query stays off the upstream, carries the SOA, and the
/// negative TTL is min(SOA TTL, SOA MINIMUM) = the SOA TTL here.
#[test]
fn nodata_is_cached_for_soa_ttl() -> Result<()> {
    let setup = Setup::with(zone().soa(3, 60), NodeOpts::default())?;
    setup.run(|s| {
        let name = "www.example.test.";
        for round in ["miss", "hit"] {
            let reply = query_udp(s.node.dns_addr(), name, RecordType::MX, None, false)?;
            check_negative(&reply, ResponseCode::NoError, 3)?;
            println!("{round}: NODATA with SOA TTL {}", reply.authorities[0].ttl);
        }
        ensure!(
            s.auth.count(name, RecordType::MX) == 1,
            "the hit reached the upstream"
        );
        expect_negative_expiry(s, name, RecordType::MX, 3)
    })
}

/// With every upstream silent or refusing and nothing cached, the client gets SERVFAIL
/// within a bounded time (the resolve timeout, 3 s by default), not silence.
#[test]
fn servfail_when_all_upstreams_fail() -> Result<()> {
    let dead = dead_addr(53)?;
    let setup = Setup::with(zone(), NodeOpts::upstreams(&[dead]))?;
    setup.run(|s| {
        s.auth.set_down(true);
        let started = Instant::now();
        let reply = slow_query(s, "www.example.test.", RecordType::A)?;
        let took = started.elapsed();
        println!("SERVFAIL after {took:?}");
        ensure!(
            reply.response_code == ResponseCode::ServFail,
            "got:\n{reply}"
        );
        ensure!(took < Duration::from_secs(7), "SERVFAIL took {took:?}");
        Ok(())
    })
}

/// An expired entry is served stale (TTL 30) instead of SERVFAIL while the upstream is down.
#[test]
fn serves_stale_when_upstream_down() -> Result<()> {
    let setup = Setup::with(
        zone().add("short", 1, a(192, 0, 2, 77)),
        NodeOpts::default(),
    )?;
    setup.run(|s| {
        let name = "short.example.test.";
        let first = query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
        println!("fresh TTL {}", first_ttl(&first)?);
        s.auth.set_down(true);
        let started = Instant::now();
        let mut seen = Vec::new();
        let (stale, took) = wait_for(Duration::from_secs(20), "a stale answer (TTL 30)", || {
            let asked = Instant::now();
            let reply = slow_query(s, name, RecordType::A);
            let outcome = match &reply {
                Ok(m) => Ok((m.response_code, first_ttl(m).ok())),
                Err(e) => Err(format!("{e:#}")),
            };
            seen.push((asked.duration_since(started), asked.elapsed(), outcome));
            reply.ok().filter(|m| first_ttl(m).ok() == Some(30))
        })?;
        let slowest = seen.iter().map(|(_, took, _)| *took).max().unwrap_or_default();
        println!(
            "stale answer {took:?} after the upstream went down ({} queries, slowest {slowest:?})",
            seen.len()
        );
        ensure!(stale.answers[0].data == a(192, 0, 2, 77), "{stale}");
        for (at, _, outcome) in &seen {
            ensure!(
                matches!(outcome, Ok((ResponseCode::NoError, Some(_)))),
                "{at:?} after the upstream went down the client got {outcome:?} instead of an answer"
            );
        }
        Ok(())
    })
}

/// A hit in the last 10% of the TTL is answered from cache and refreshes the entry in the
/// background before it expires; later hits see the refreshed, higher TTL.
#[test]
fn prefetch_refreshes_before_expiry() -> Result<()> {
    let setup = Setup::with(
        zone().add("soon", 10, a(192, 0, 2, 88)),
        NodeOpts::default(),
    )?;
    setup.run(|s| {
        let name = "soon.example.test.";
        let counter = |metric: &str| {
            heimdall_tests::prom::scrape_parsed(s.node.metrics_addr())?.value(metric, &[])
        };
        let misses_before = counter("heimdall_cache_misses_total")?;
        let sent = Instant::now();
        let first = query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
        println!("fresh TTL {}", first_ttl(&first)?);
        ensure!(s.auth.count(name, RecordType::A) == 1, "first query not forwarded once");
        let query_ttl = || -> Result<u32> {
            let reply = query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
            ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
            first_ttl(&reply)
        };
        // Hits before the window are plain hits.
        let (low, took) = wait_for(Duration::from_secs(15), "the TTL to reach 1 s", || {
            query_ttl().ok().filter(|ttl| *ttl <= 1)
        })?;
        println!("served TTL {low} after {took:?}");
        let mut served = Vec::new();
        let took = wait_until(Duration::from_secs(5), "a prefetch (upstream count 2)", || {
            if let Ok(ttl) = query_ttl() {
                served.push(ttl);
            }
            s.auth.count(name, RecordType::A) >= 2
        })?;
        let at = sent.elapsed();
        println!("prefetch seen {took:?} later, {at:?} after the first query; TTLs served meanwhile {served:?}");
        // The second upstream query came from a hit (a prefetch), not from a miss after
        // expiry: only the first query missed. (The time is printed, not asserted: on a
        // loaded machine the poll can see the count late.)
        let misses = counter("heimdall_cache_misses_total")? - misses_before;
        let prefetches = counter("heimdall_prefetches_total")?;
        ensure!(
            misses == 1.0 && prefetches >= 1.0,
            "the refresh was not a prefetch: {misses} misses, {prefetches} prefetches, {at:?} after the first query"
        );
        let (fresh, took) = wait_for(Duration::from_secs(3), "a refreshed TTL", || {
            query_ttl().ok().filter(|ttl| *ttl >= 5)
        })?;
        println!("refreshed TTL {fresh} served {took:?} later");
        Ok(())
    })
}

/// With a stale answer at hand and upstreams silent, the node answers stale after
/// `cache.stale_answer_after_ms` (RFC 8767 client response timer), well before the resolve
/// timeout; once the upstream is back, the next query gets the fresh data, not the stale copy.
#[test]
fn serves_stale_after_client_timer_then_refreshes() -> Result<()> {
    let opts = NodeOpts {
        env: vec![
            ("HEIMDALL_UPSTREAM__TIMEOUT_MS".into(), "3000".into()),
            (
                "HEIMDALL_UPSTREAM__RESOLVE_TIMEOUT_MS".into(),
                "9000".into(),
            ),
            ("HEIMDALL_CACHE__STALE_ANSWER_AFTER_MS".into(), "400".into()),
        ],
        ..NodeOpts::default()
    };
    let setup = Setup::with(zone().add("flaky", 1, a(192, 0, 2, 88)), opts)?;
    setup.run(|s| {
        let name = "flaky.example.test.";
        query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
        s.auth.set_down(true);
        // Wait for expiry on the clock (the entry's TTL is 1 s).
        wait_until_instant(Instant::now() + Duration::from_millis(1100));
        let asked = Instant::now();
        let stale = slow_query(s, name, RecordType::A)?;
        let took = asked.elapsed();
        println!("stale answer after {took:?} (timer 400 ms, resolve timeout 9 s)");
        ensure!(first_ttl(&stale)? == 30, "not a stale answer:\n{stale}");
        ensure!(
            took < Duration::from_secs(8),
            "the stale answer waited for the resolve timeout ({took:?})"
        );

        // The upstream comes back with new data: the background refresh fetches it.
        s.auth.set_record("flaky", 300, a(192, 0, 2, 99));
        s.auth.set_down(false);
        let (_, took) = wait_for(Duration::from_secs(20), "the refreshed answer", || {
            let reply = query_udp(s.node.dns_addr(), name, RecordType::A, None, false).ok()?;
            (reply.answers.first()?.data == a(192, 0, 2, 99)).then_some(())
        })?;
        println!("fresh answer {took:?} after the upstream came back");
        Ok(())
    })
}
