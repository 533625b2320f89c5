//! Transports and EDNS: TCP answers and pipelining, UDP truncation, the node's own OPT record.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use heimdall_tests::auth::{
    PADDING_OPTION_CODE, UPSTREAM_SERVER_COOKIE, padding_option, upstream_cookie_option,
};
use heimdall_tests::{
    build_query, compare_records, exchange_udp, query_tcp, query_udp, send_raw_udp, tcp_pipeline,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::Setup;

/// Answers over TCP equal the upstream's (miss and hit), and equal the UDP answers.
#[test]
fn tcp_answers_match_upstream() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let cases = [
            ("www.example.test.", RecordType::A),
            ("alias.example.test.", RecordType::A),
            ("example.test.", RecordType::MX),
        ];
        for round in ["miss", "hit"] {
            for (name, rtype) in cases {
                let started = Instant::now();
                let got = query_tcp(s.node.dns_addr(), name, rtype, None, false)?;
                println!("{round}: TCP {name} {rtype} in {:?}", started.elapsed());
                let direct = query_tcp(s.auth.addr(), name, rtype, None, false)?;
                ensure!(got.response_code == ResponseCode::NoError, "{got}");
                compare_records(&got.answers, &direct.answers)?;
                let udp = query_udp(s.node.dns_addr(), name, rtype, None, false)?;
                compare_records(&udp.answers, &direct.answers)?;
            }
        }
        Ok(())
    })
}

/// Ten queries written to one TCP connection in a single write are all answered, each
/// reply matching its query's id and question (in any order).
#[test]
fn tcp_pipelining_answers_all() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        // Warm two of them so the burst mixes cache hits with misses.
        query_udp(
            s.node.dns_addr(),
            "www.example.test.",
            RecordType::A,
            None,
            false,
        )?;
        query_udp(
            s.node.dns_addr(),
            "example.test.",
            RecordType::MX,
            None,
            false,
        )?;
        let questions = [
            ("www.example.test.", RecordType::A),
            ("www.example.test.", RecordType::AAAA),
            ("alias.example.test.", RecordType::A),
            ("example.test.", RecordType::MX),
            ("txt.example.test.", RecordType::TXT),
            ("mail.example.test.", RecordType::A),
            ("middle.example.test.", RecordType::CNAME),
            ("nothing.example.test.", RecordType::A),
            ("www.example.test.", RecordType::MX),
            ("medium.example.test.", RecordType::TXT),
        ];
        let queries = questions
            .iter()
            .map(|(name, rtype)| build_query(name, *rtype, None, false))
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let replies = tcp_pipeline(s.node.dns_addr(), &queries, Duration::from_secs(5))?;
        println!("10 pipelined queries answered in {:?}", started.elapsed());
        for ((name, rtype), reply) in questions.iter().zip(&replies) {
            let direct = query_tcp(s.auth.addr(), name, *rtype, None, false)?;
            ensure!(
                reply.response_code == direct.response_code,
                "{name} {rtype}: {reply}"
            );
            compare_records(&reply.answers, &direct.answers)?;
        }
        Ok(())
    })
}

/// An answer too large for UDP comes back with TC=1 (EDNS 512, EDNS 1232, no EDNS) and in
/// full over TCP; the node itself fetched it from the upstream over TCP after TC.
#[test]
fn large_answer_truncated_over_udp_full_over_tcp() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let addr = s.node.dns_addr();
        for edns in [None, Some(512), Some(1232), Some(4096)] {
            let reply = query_udp(addr, "big.example.test.", RecordType::TXT, edns, false)?;
            println!(
                "UDP edns {edns:?}: TC={} answers={}",
                reply.truncation,
                reply.answers.len()
            );
            ensure!(
                reply.truncation,
                "edns {edns:?}: no TC on a 5 KB answer:\n{reply}"
            );
            ensure!(
                reply.edns.is_some() == edns.is_some(),
                "edns {edns:?}: OPT mismatch"
            );
        }
        ensure!(
            s.auth.tcp_queries() >= 1,
            "the node never retried the upstream over TCP"
        );
        let direct = query_tcp(
            s.auth.addr(),
            "big.example.test.",
            RecordType::TXT,
            None,
            false,
        )?;
        for edns in [None, Some(1232)] {
            let reply = query_tcp(addr, "big.example.test.", RecordType::TXT, edns, false)?;
            ensure!(!reply.truncation, "TC over TCP");
            compare_records(&reply.answers, &direct.answers)?;
        }
        // About 900 bytes: truncated without EDNS or at 512, whole at 1232.
        let medium = "medium.example.test.";
        let plain = query_udp(addr, medium, RecordType::TXT, None, false)?;
        ensure!(plain.truncation, "a 900-byte answer fit into 512 bytes?");
        let small = query_udp(addr, medium, RecordType::TXT, Some(512), false)?;
        ensure!(small.truncation, "EDNS 512 must truncate a 900-byte answer");
        let whole = query_udp(addr, medium, RecordType::TXT, Some(1232), false)?;
        ensure!(!whole.truncation, "EDNS 1232 must carry a 900-byte answer");
        let direct = query_tcp(s.auth.addr(), medium, RecordType::TXT, None, false)?;
        compare_records(&whole.answers, &direct.answers)
    })
}

/// An EDNS query gets the node's own OPT (DO echoed); the upstream's cookie and padding
/// options never reach the client, on the miss or the hit; no EDNS in, no OPT out.
#[test]
fn opt_is_ours_not_the_upstreams() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        s.auth
            .set_edns_options(vec![upstream_cookie_option(), padding_option(64)]);
        let addr = s.node.dns_addr();
        for (round, dnssec_ok) in [("miss", true), ("hit", true), ("DO=0 miss", false)] {
            let query = build_query("www.example.test.", RecordType::A, Some(1232), dnssec_ok)?;
            let raw = send_raw_udp(addr, &query.to_vec()?, Duration::from_secs(3));
            let Some(raw) = raw else {
                bail!("{round}: no answer")
            };
            ensure!(
                !raw.windows(UPSTREAM_SERVER_COOKIE.len())
                    .any(|w| w == UPSTREAM_SERVER_COOKIE),
                "{round}: the upstream's cookie reached the client"
            );
            let reply = Message::from_vec(&raw)?;
            let Some(edns) = &reply.edns else {
                bail!("{round}: no OPT in the reply")
            };
            println!(
                "{round}: OPT payload {} options {:?}",
                edns.max_payload(),
                edns.options()
            );
            ensure!(
                edns.version() == 0,
                "{round}: EDNS version {}",
                edns.version()
            );
            ensure!(
                edns.flags().dnssec_ok == dnssec_ok,
                "{round}: DO bit not echoed"
            );
            for (code, _) in edns.options().as_ref() {
                ensure!(
                    u16::from(*code) != PADDING_OPTION_CODE,
                    "{round}: the upstream's padding option reached the client"
                );
            }
            ensure!(reply.answers.len() == 2, "{round}: {reply}");
        }
        let plain = query_udp(addr, "www.example.test.", RecordType::A, None, false)?;
        ensure!(
            plain.edns.is_none(),
            "OPT in the reply to a query without one"
        );
        Ok(())
    })
}

/// A query with EDNS version 1 gets BADVERS (extended rcode 16) with an OPT of version 0,
/// and is not forwarded.
#[test]
fn edns_version_1_gets_badvers() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let mut query = build_query("www.example.test.", RecordType::A, Some(1232), false)?;
        if let Some(edns) = query.edns.as_mut() {
            edns.set_version(1);
        }
        let reply = exchange_udp(s.node.dns_addr(), &query, Duration::from_secs(2), 3)?;
        let rcode = u16::from(reply.response_code);
        println!("EDNS version 1 -> rcode {rcode}");
        ensure!(rcode == 16, "want BADVERS (16), got {rcode}:\n{reply}");
        let Some(edns) = &reply.edns else {
            bail!("BADVERS without an OPT record")
        };
        ensure!(edns.version() == 0, "reply OPT version {}", edns.version());
        ensure!(reply.answers.is_empty(), "answers in a BADVERS reply");
        let count = s.auth.count("www.example.test.", RecordType::A);
        ensure!(count == 0, "BADVERS query reached the upstream ({count})");
        Ok(())
    })
}

/// Read from `stream` until the peer closes it (Ok(true)) or `limit` passes (Ok(false)).
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Result<bool> {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// The TCP connection limit holds (a connection over `dns.tcp_max_connections` is closed at
/// once while the others stay open), and an idle connection is closed after
/// `dns.tcp_idle_timeout_ms`, which frees its place for a new client.
#[test]
fn tcp_connection_limit_and_idle_timeout() -> Result<()> {
    let opts = heimdall_tests::NodeOpts {
        env: vec![
            ("HEIMDALL_DNS__TCP_MAX_CONNECTIONS".into(), "2".into()),
            ("HEIMDALL_DNS__TCP_IDLE_TIMEOUT_MS".into(), "1500".into()),
        ],
        ..heimdall_tests::NodeOpts::default()
    };
    let setup = Setup::with(crate::zone(), opts)?;
    setup.run(|s| {
        let addr = s.node.dns_addr();
        let mut first = std::net::TcpStream::connect(addr)?;
        let mut second = std::net::TcpStream::connect(addr)?;
        // Both are served: a query on each is answered. The first connection is idle from
        // its answer on, so its idle time is measured from there.
        let mut idle_from = None;
        for stream in [&mut first, &mut second] {
            let reply = heimdall_tests::client::exchange_on(
                stream,
                &build_query("www.example.test.", RecordType::A, None, false)?,
            )?;
            ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
            idle_from.get_or_insert_with(Instant::now);
        }
        let idle_from = idle_from.unwrap_or_else(Instant::now);
        let opened = Instant::now();
        let mut third = std::net::TcpStream::connect(addr)?;
        ensure!(
            closed_within(&mut third, Duration::from_secs(2))?,
            "a third connection over the limit of 2 stayed open"
        );
        println!(
            "third connection closed {:?} after connecting (limit 2)",
            opened.elapsed()
        );

        // The idle ones are closed by the idle timeout (1.5 s), not before.
        ensure!(
            closed_within(&mut first, Duration::from_secs(10))?,
            "idle connection never closed"
        );
        let idle = idle_from.elapsed();
        println!("idle connection closed after {idle:?} (timeout 1.5 s)");
        ensure!(
            idle >= Duration::from_millis(1000),
            "closed after {idle:?}, before the idle timeout"
        );
        ensure!(
            closed_within(&mut second, Duration::from_secs(10))?,
            "second idle connection never closed"
        );

        // Their places are free again.
        let reply = query_tcp(addr, "www.example.test.", RecordType::A, None, false)?;
        ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
        Ok(())
    })
}
