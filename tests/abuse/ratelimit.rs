//! `rate_limit.*`: over the limit a prefix's answers are dropped or slip through truncated,
//! clients with a valid server cookie and TCP are not limited, and loopback is exempt by
//! default.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use heimdall_tests::{build_query, exchange_tcp, exchange_udp, query_udp, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::{DEADLINE, Setup, cookie_query, reply_cookie};

/// Queries in the burst.
const BURST_QUERIES: usize = 100;
/// How long after the last datagram the burst waits for stragglers.
const QUIET: Duration = Duration::from_millis(500);

/// What came back for a burst.
#[derive(Debug, Default)]
struct Tally {
    /// Full answers (TC=0).
    answered: usize,
    /// Truncated answers (TC=1, no records).
    truncated: usize,
    /// Queries with no answer at all.
    dropped: usize,
}

/// Sends [`BURST_QUERIES`] queries for a cached name from one socket as fast as it can, then
/// reads answers until none came for [`QUIET`]; the whole exchange is bounded.
fn burst(dns: std::net::SocketAddr) -> Result<Tally> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(dns)?;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..BURST_QUERIES {
        let query = build_query("www.example.test.", RecordType::A, Some(1232), false)?;
        ids.insert(query.metadata.id);
        socket.send(&query.to_vec()?)?;
    }
    socket.set_read_timeout(Some(QUIET))?;
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    while Instant::now() < end && received < BURST_QUERIES {
        let Ok(n) = socket.recv(&mut buf) else { break };
        let reply = Message::from_vec(&buf[..n])?;
        if !ids.remove(&reply.metadata.id) {
            continue;
        }
        received += 1;
        if reply.metadata.truncation {
            ensure!(
                reply.answers.is_empty(),
                "a slipped answer carries no records: {reply:?}"
            );
            tally.truncated += 1;
        } else {
            tally.answered += 1;
        }
    }
    tally.dropped = BURST_QUERIES - received;
    Ok(tally)
}

/// With `exempt_loopback = false`, a burst from one client is answered up to the bucket and
/// then alternately dropped and truncated (slip 2); the counters match what the client saw; a
/// client with a valid server cookie and a TCP client are still answered; and switching the
/// exemption back on answers the whole burst.
#[test]
fn rate_limit_slips_and_drops_over_the_limit() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let dns = s.dns();
        // Warm the cache, and get a server cookie before limiting starts.
        let cookied = exchange_udp(
            dns,
            &cookie_query(
                "www.example.test.",
                RecordType::A,
                &[1, 2, 3, 4, 5, 6, 7, 8],
            )?,
            Duration::from_secs(2),
            3,
        )?;
        let cookie = reply_cookie(&cookied).context("no cookie")?;

        s.set("rate_limit.qps_per_prefix", "5")?;
        s.set("rate_limit.burst", "20")?;
        s.set("rate_limit.slip", "2")?;
        s.set("rate_limit.exempt_loopback", "false")?;
        // Wait until limiting is on: some query of a burst goes unanswered or truncated.
        let mut tally = Tally::default();
        wait_until(DEADLINE, "rate limiting to apply", || {
            burst(dns).is_ok_and(|t| {
                let limited = t.truncated + t.dropped > 0;
                tally = t;
                limited
            })
        })?;
        let dropped_before = s.counter("heimdall_rate_limited_total", &[("action", "dropped")])?;
        let slipped_before = s.counter("heimdall_rate_limited_total", &[("action", "slipped")])?;

        let t = burst(dns)?;
        println!("burst of {BURST_QUERIES}: {t:?}");
        ensure!(
            t.answered < BURST_QUERIES / 2,
            "most of the burst was answered: {t:?}"
        );
        ensure!(
            t.truncated > 0 && t.dropped > 0,
            "slip 2 truncates some and drops some: {t:?}"
        );
        // Every second limited answer slips, counted per worker thread.
        ensure!(t.truncated.abs_diff(t.dropped) <= 4, "{t:?}");
        let dropped =
            s.counter("heimdall_rate_limited_total", &[("action", "dropped")])? - dropped_before;
        let slipped =
            s.counter("heimdall_rate_limited_total", &[("action", "slipped")])? - slipped_before;
        // Every truncated answer the client saw was counted as slipped, and every limited
        // query the node counted went without a full answer. The client may also miss a
        // datagram on the way (a truncated one then shows as dropped): at most 2 here.
        let (dropped, slipped) = (dropped as usize, slipped as usize);
        let unanswered = t.truncated + t.dropped;
        ensure!(
            t.truncated <= slipped
                && dropped >= 1
                && dropped + slipped <= unanswered
                && unanswered - (dropped + slipped) <= 2,
            "counted {dropped} dropped, {slipped} slipped; the client saw {t:?}"
        );

        // A valid server cookie is exempt; TCP is not limited.
        let with_cookie = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &cookie)?,
            Duration::from_secs(2),
            1,
        )?;
        ensure!(
            with_cookie.metadata.response_code == ResponseCode::NoError
                && !with_cookie.metadata.truncation
                && with_cookie.answers.len() == 1,
            "{with_cookie:?}"
        );
        let tcp = exchange_tcp(
            dns,
            &build_query("www.example.test.", RecordType::A, None, false)?,
            Duration::from_secs(2),
        )?;
        ensure!(tcp.answers.len() == 1, "{tcp:?}");

        // Loopback exempt again: a whole burst is answered.
        s.set("rate_limit.exempt_loopback", "true")?;
        wait_until(DEADLINE, "a whole burst answered", || {
            burst(dns).is_ok_and(|t| t.answered == BURST_QUERIES)
        })?;
        let plain = query_udp(dns, "www.example.test.", RecordType::A, None, false)?;
        ensure!(plain.answers.len() == 1, "{plain:?}");
        Ok(())
    })
}
