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
