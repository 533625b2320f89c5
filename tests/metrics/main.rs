//! Metrics suite: a real `heimdall` process serves /metrics on its own loopback address; the
//! exposition must pass a strict Prometheus text checker, and its counters must move by exactly
//! the traffic the test sends (by protocol, type, rcode, cache hit or miss, upstream, and the
//! latency and upstream RTT histograms).

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use heimdall_tests::prom::{Exposition, parse, scrape, scrape_parsed};
use heimdall_tests::{
    AuthServer, Node, NodeOpts, Zone, build_query, exchange_tcp, exchange_udp, run_heimdall,
    unique_addr, wait_for,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{RData, RecordType};

/// How long one UDP exchange may take (one try only, so no query is counted twice).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a counter may take to catch up with answers already received (a UDP worker
/// records latency right after its send call returns, so a fast client can scrape first).
const CATCH_UP: Duration = Duration::from_secs(10);

/// Names in the test zone, each with an A and an AAAA record.
const NAMES: usize = 10;

/// The zone the upstream serves: n0..n9 with A and AAAA, and an MX at the apex.
fn zone() -> Zone {
    let mut zone = Zone::new("metrics.test.").soa(3600, 3600);
    for i in 0..NAMES {
        zone = zone
            .add(
                &format!("n{i}"),
                3600,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8))),
            )
            .add(
                &format!("n{i}"),
                3600,
                RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16))),
            );
    }
    zone.add(
        "@",
        3600,
        RData::MX(MX::new(
            10,
            heimdall_tests::fqdn("n0.metrics.test.").expect("name"),
        )),
    )
}

/// Ask over UDP once and check the rcode.
fn udp(node: &Node, name: &str, rtype: RecordType, want: ResponseCode) -> Result<Message> {
    let query = build_query(name, rtype, Some(1232), false)?;
    let reply = exchange_udp(node.dns_addr(), &query, EXCHANGE_TIMEOUT, 1)
        .with_context(|| format!("{name} {rtype} over UDP"))?;
    ensure!(
        reply.metadata.response_code == want,
        "{name} {rtype}: {:?}, want {want:?}",
        reply.metadata.response_code
    );
    Ok(reply)
}

/// Ask over TCP and check the rcode.
fn tcp(node: &Node, name: &str, rtype: RecordType, want: ResponseCode) -> Result<()> {
    let query = build_query(name, rtype, Some(1232), false)?;
    let reply = exchange_tcp(node.dns_addr(), &query, EXCHANGE_TIMEOUT)
        .with_context(|| format!("{name} {rtype} over TCP"))?;
    ensure!(
        reply.metadata.response_code == want,
        "{name} {rtype} over TCP: {:?}, want {want:?}",
        reply.metadata.response_code
    );
    Ok(())
}

/// An expected move: metric name, labels, and by how much.
type Check<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

/// A counter's value, 0 when the series is not (yet) exposed.
fn count(exp: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    exp.get(name, labels).unwrap_or(0.0)
}

/// The exposition of a fresh node passes the strict checker and holds every family the issue
/// names, with the right types.
#[test]
fn exposition_is_valid_prometheus_text() -> Result<()> {
    let auth = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts::upstreams(&[auth.addr()]))?;
    // A miss, then a hit.
    for _ in 0..2 {
        udp(
            &node,
            "n1.metrics.test.",
            RecordType::A,
            ResponseCode::NoError,
        )?;
    }
    let started = Instant::now();
    let text = scrape(node.metrics_addr())?;
    let took = started.elapsed();
    println!("{text}");
    let exp = parse(&text)?;
    println!(
        "scraped {} samples from {} in {took:?}",
        exp.samples.len(),
        node.metrics_addr(),
    );
    for (family, kind) in [
        ("heimdall_uptime_seconds", "gauge"),
        ("heimdall_queries_total", "counter"),
        ("heimdall_queries_by_type_total", "counter"),
        ("heimdall_responses_total", "counter"),
        ("heimdall_cache_hits_total", "counter"),
        ("heimdall_cache_misses_total", "counter"),
        ("heimdall_cache_evictions_total", "counter"),
        ("heimdall_cache_entries", "gauge"),
        ("heimdall_cache_bytes", "gauge"),
        ("heimdall_cache_hit_ratio", "gauge"),
        ("heimdall_upstream_queries_total", "counter"),
        ("heimdall_upstream_failures_total", "counter"),
        ("heimdall_upstream_healthy", "gauge"),
        ("heimdall_upstream_srtt_seconds", "gauge"),
        ("heimdall_malformed_total", "counter"),
        ("heimdall_shed_total", "counter"),
        ("heimdall_stale_served_total", "counter"),
        ("heimdall_prefetches_total", "counter"),
        ("heimdall_query_duration_seconds", "histogram"),
        ("heimdall_upstream_rtt_seconds", "histogram"),
    ] {
        ensure!(
            exp.types.get(family).map(String::as_str) == Some(kind),
            "{family}: type {:?}, want {kind}",
            exp.types.get(family)
        );
    }
    let upstream = auth.addr().to_string();
    ensure!(exp.value("heimdall_upstream_healthy", &[("upstream", &upstream)])? == 1.0);
    ensure!(exp.value("heimdall_cache_entries", &[])? >= 1.0);
    ensure!(exp.value("heimdall_queries_by_type_total", &[("type", "other")])? >= 0.0);
    Ok(())
}

/// Counters move by exactly the traffic sent: UDP and TCP queries of known types, misses then
/// hits, NXDOMAIN answers (upstream, then from the negative cache), and every answer in the
/// latency histogram; every miss is one upstream exchange and one RTT observation.
#[test]
fn counters_move_with_traffic() -> Result<()> {
    let auth = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts::upstreams(&[auth.addr()]))?;
    let upstream = auth.addr().to_string();
    // The harness's readiness probe is answered before its latency is recorded: start from
    // a scrape in which every query so far is in the histogram, so the deltas are exact.
    let (before, _) = wait_for(
        CATCH_UP,
        "the readiness probe in the latency histogram",
        || {
            let exp = scrape_parsed(node.metrics_addr()).ok()?;
            let queries = count(&exp, "heimdall_queries_total", &[("protocol", "udp")])
                + count(&exp, "heimdall_queries_total", &[("protocol", "tcp")]);
            (count(&exp, "heimdall_query_duration_seconds_count", &[]) >= queries).then_some(exp)
        },
    )?;
    let upstream_before = auth.queries();

    // UDP: 10 A misses, then the same 10 as hits twice; 10 AAAA misses; 3 NXDOMAIN misses
    // and the same 3 as negative-cache hits; one MX miss and hit.
    for round in 0..3 {
        for i in 0..NAMES {
            udp(
                &node,
                &format!("n{i}.metrics.test."),
                RecordType::A,
                ResponseCode::NoError,
            )?;
        }
        if round == 0 {
            for i in 0..NAMES {
                udp(
                    &node,
                    &format!("n{i}.metrics.test."),
                    RecordType::AAAA,
                    ResponseCode::NoError,
                )?;
            }
        }
    }
    for _ in 0..2 {
        for i in 0..3 {
            udp(
                &node,
                &format!("missing{i}.metrics.test."),
                RecordType::A,
                ResponseCode::NXDomain,
            )?;
        }
        udp(
            &node,
            "metrics.test.",
            RecordType::MX,
            ResponseCode::NoError,
        )?;
    }
    // TCP: 2 AAAA hits (cached by the UDP queries above) and one TXT miss (NOERROR, no data).
    tcp(
        &node,
        "n1.metrics.test.",
        RecordType::AAAA,
        ResponseCode::NoError,
    )?;
    tcp(
        &node,
        "n2.metrics.test.",
        RecordType::AAAA,
        ResponseCode::NoError,
    )?;
    tcp(
        &node,
        "n3.metrics.test.",
        RecordType::TXT,
        ResponseCode::NoError,
    )?;

    let udp_sent = 3 * NAMES + NAMES + 2 * 3 + 2;
    let tcp_sent = 3;
    let misses = NAMES + NAMES + 3 + 1 + 1;
    let hits = udp_sent + tcp_sent - misses;
    let nxdomain = 2 * 3;
    let noerror = udp_sent + tcp_sent - nxdomain;
    let total = (udp_sent + tcp_sent) as f64;
    ensure!(
        auth.queries() - upstream_before == misses as u64,
        "the upstream saw {} queries, want {misses}",
        auth.queries() - upstream_before
    );

    // The latency histogram may lag the last UDP answer by a moment: wait for it to count every
    // answer, then check everything from that one scrape.
    let latency_before = count(&before, "heimdall_query_duration_seconds_count", &[]);
    let (after, took) = wait_for(CATCH_UP, "every answer in the latency histogram", || {
        let exp = scrape_parsed(node.metrics_addr()).ok()?;
        let n = count(&exp, "heimdall_query_duration_seconds_count", &[]);
        (n - latency_before >= total).then_some(exp)
    })?;
    println!("the latency histogram caught up after {took:?}");
    let delta = |name: &str, labels: &[(&str, &str)]| {
        count(&after, name, labels) - count(&before, name, labels)
    };
    let qtype = |t: &'static str| [("type", t)];
    let rcode = |r: &'static str| [("rcode", r)];
    let upstream_label = [("upstream", upstream.as_str())];
    let checks: [Check; 17] = [
        ("heimdall_queries_total", &[("protocol", "udp")], udp_sent),
        ("heimdall_queries_total", &[("protocol", "tcp")], tcp_sent),
        (
            "heimdall_queries_by_type_total",
            &qtype("A"),
            3 * NAMES + 2 * 3,
        ),
        ("heimdall_queries_by_type_total", &qtype("AAAA"), NAMES + 2),
        ("heimdall_queries_by_type_total", &qtype("MX"), 2),
        ("heimdall_queries_by_type_total", &qtype("TXT"), 1),
        ("heimdall_queries_by_type_total", &qtype("other"), 0),
        ("heimdall_responses_total", &rcode("NOERROR"), noerror),
        ("heimdall_responses_total", &rcode("NXDOMAIN"), nxdomain),
        ("heimdall_responses_total", &rcode("SERVFAIL"), 0),
        ("heimdall_cache_hits_total", &[], hits),
        ("heimdall_cache_misses_total", &[], misses),
        ("heimdall_upstream_queries_total", &upstream_label, misses),
        ("heimdall_upstream_rtt_seconds_count", &[], misses),
        (
            "heimdall_query_duration_seconds_count",
            &[],
            udp_sent + tcp_sent,
        ),
        (
            "heimdall_query_duration_seconds_bucket",
            &[("le", "+Inf")],
            udp_sent + tcp_sent,
        ),
        ("heimdall_malformed_total", &[], 0),
    ];
    let mut wrong = Vec::new();
    for (name, labels, want) in checks {
        let got = delta(name, labels);
        let what = format!("{name}{labels:?}");
        println!("{what}: moved by {got} (want {want})");
        if got != want as f64 {
            wrong.push(format!("{what}: moved by {got}, want {want}"));
        }
    }
    ensure!(wrong.is_empty(), "counters off: {}", wrong.join("; "));
    ensure!(
        delta("heimdall_query_duration_seconds_sum", &[]) > 0.0,
        "the latency sum did not grow"
    );
    let ratio = after.value("heimdall_cache_hit_ratio", &[])?;
    ensure!(ratio > 0.0 && ratio < 1.0, "hit ratio {ratio}");
    Ok(())
}

/// A metrics address already in use stops the node with a non-zero exit and an error naming
/// `node.metrics_listen`.
#[test]
fn metrics_bind_failure_names_the_key() -> Result<()> {
    let auth = AuthServer::start(zone())?;
    let dns = unique_addr(5353)?;
    let taken = TcpListener::bind((dns.ip(), 9153)).context("occupying the metrics port")?;
    let taken_addr = taken.local_addr()?;
    let data = tempfile::tempdir()?;
    let args: Vec<String> = [
        "--dns-listen".to_owned(),
        dns.to_string(),
        "--grpc-listen".to_owned(),
        format!("{}:50051", dns.ip()),
        "--metrics-listen".to_owned(),
        taken_addr.to_string(),
        "--upstream".to_owned(),
        auth.addr().to_string(),
        "--workers".to_owned(),
        "1".to_owned(),
        "--data-dir".to_owned(),
        data.path().join("data").display().to_string(),
    ]
    .into();
    let out = run_heimdall(&args, &[])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("exit {:?}", out.status.code());
    ensure!(
        !out.status.success() && out.status.code().is_some(),
        "the node did not fail: {:?}\n{text}",
        out.status
    );
    ensure!(
        text.contains("node.metrics_listen") && text.contains(&taken_addr.to_string()),
        "the error does not name node.metrics_listen and {taken_addr}:\n{text}"
    );
    drop(taken);
    Ok(())
}
