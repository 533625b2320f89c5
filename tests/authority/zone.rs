//! A node in zone mode answers its zone authoritatively over UDP and TCP, refuses other
//! names, and a node forwarding to it gives the same records.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Result, ensure};
use heimdall_node::authority::demo::{DEMO_NODATA, DEMO_NXDOMAIN};
use heimdall_tests::{Node, NodeOpts, dig_answers, dig_available, query_tcp, query_udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::start_zone_node;

/// The demo zone's apex.
const APEX: &str = "demo.heimdall.test.";

/// The answer records' types and data, in order.
fn answers(reply: &Message) -> Vec<(RecordType, RData)> {
    reply
        .answers
        .iter()
        .map(|r| (r.record_type(), r.data.clone()))
        .collect()
}

/// Fails unless `reply` is an authoritative NOERROR answer.
fn expect_authoritative(reply: &Message, what: &str) -> Result<()> {
    ensure!(
        reply.metadata.response_code == ResponseCode::NoError,
        "{what}: {}",
        reply.metadata.response_code
    );
    ensure!(reply.metadata.authoritative, "{what}: AA not set");
    Ok(())
}

/// Fails unless `reply` is a negative answer with `code`, AA, no records and the zone's SOA
/// with TTL min(300, 60) in the authority section.
fn expect_negative(reply: &Message, code: ResponseCode, what: &str) -> Result<()> {
    ensure!(
        reply.metadata.response_code == code,
        "{what}: {}",
        reply.metadata.response_code
    );
    ensure!(reply.metadata.authoritative, "{what}: AA not set");
    ensure!(
        reply.answers.is_empty(),
        "{what}: answers {:?}",
        reply.answers
    );
    let [soa] = reply.authorities.as_slice() else {
        anyhow::bail!("{what}: authority section {:?}", reply.authorities);
    };
    ensure!(soa.record_type() == RecordType::SOA, "{what}: {soa:?}");
    ensure!(
        soa.name.to_ascii() == APEX,
        "{what}: SOA owner {}",
        soa.name
    );
    ensure!(soa.ttl == 60, "{what}: SOA TTL {}", soa.ttl);
    Ok(())
}

/// Every record type of the demo zone, the CNAME chain, NXDOMAIN and NODATA with the SOA,
/// all with AA, over UDP with and without EDNS and over TCP.
#[test]
fn zone_mode_answers() -> Result<()> {
    let (node, _file) = start_zone_node()?;
    let result = check_zone_answers(node.dns_addr());
    node.attach_log(result)
}

/// The body of [`zone_mode_answers`].
fn check_zone_answers(dns: SocketAddr) -> Result<()> {
    for tcp in [false, true] {
        let ask = |name: &str, rtype: RecordType| {
            if tcp {
                query_tcp(dns, name, rtype, Some(1232), false)
            } else {
                query_udp(dns, name, rtype, None, false)
            }
        };
        let www = ask("www.demo.heimdall.test.", RecordType::A)?;
        expect_authoritative(&www, "www A")?;
        ensure!(
            answers(&www) == [(RecordType::A, RData::A(Ipv4Addr::new(192, 0, 2, 10).into()))],
            "www A: {:?}",
            www.answers
        );
        ensure!(www.edns.is_some() == tcp, "OPT only when the query had one");
        let aaaa = ask("www.demo.heimdall.test.", RecordType::AAAA)?;
        expect_authoritative(&aaaa, "www AAAA")?;
        let v6: Ipv6Addr = "2001:db8::10".parse()?;
        ensure!(
            answers(&aaaa) == [(RecordType::AAAA, RData::AAAA(v6.into()))],
            "{:?}",
            aaaa.answers
        );
        let chain = ask("alias.demo.heimdall.test.", RecordType::A)?;
        expect_authoritative(&chain, "alias A")?;
        let types: Vec<RecordType> = chain.answers.iter().map(|r| r.record_type()).collect();
        ensure!(
            types == [RecordType::CNAME, RecordType::CNAME, RecordType::A],
            "chain: {:?}",
            chain.answers
        );
        let mx = ask(APEX, RecordType::MX)?;
        expect_authoritative(&mx, "MX")?;
        ensure!(mx.answers.len() == 1 && mx.answers[0].record_type() == RecordType::MX);
        let txt = ask("info.demo.heimdall.test.", RecordType::TXT)?;
        expect_authoritative(&txt, "TXT")?;
        let RData::TXT(text) = &txt.answers[0].data else {
            anyhow::bail!("TXT: {:?}", txt.answers);
        };
        let strings: Vec<&[u8]> = text.txt_data.iter().map(|s| &s[..]).collect();
        ensure!(
            strings == [&b"Heimdall demo zone"[..], b"answers with the AA flag set"],
            "TXT strings {strings:?}"
        );
        expect_negative(
            &ask(DEMO_NXDOMAIN, RecordType::A)?,
            ResponseCode::NXDomain,
            "NXDOMAIN",
        )?;
        expect_negative(
            &ask(DEMO_NODATA, RecordType::A)?,
            ResponseCode::NoError,
            "NODATA",
        )?;
        expect_negative(
            &ask("www.demo.heimdall.test.", RecordType::MX)?,
            ResponseCode::NoError,
            "www MX",
        )?;
        let outside = ask("example.org.", RecordType::A)?;
        ensure!(
            outside.metadata.response_code == ResponseCode::Refused,
            "outside the zone: {}",
            outside.metadata.response_code
        );
        ensure!(
            !outside.metadata.recursion_available,
            "RA on an authoritative-only node"
        );
    }
    println!("zone mode answered every case over UDP and TCP");
    Ok(())
}

/// `dig` (an independent client) sees the same answers over UDP and TCP, with the aa flag.
#[test]
fn dig_sees_zone_answers() -> Result<()> {
    if !dig_available() {
        println!("dig is not installed: skipped (CI installs dnsutils)");
        return Ok(());
    }
    let (node, _file) = start_zone_node()?;
    let result = (|| -> Result<()> {
        let dns = node.dns_addr();
        for transport in [&[][..], &["+tcp"][..]] {
            let chain = dig_answers(dns, "alias.demo.heimdall.test.", "A", transport)?;
            let rdata: Vec<&str> = chain.iter().map(|r| r.rdata.as_str()).collect();
            ensure!(
                rdata
                    == [
                        "web.demo.heimdall.test.",
                        "www.demo.heimdall.test.",
                        "192.0.2.10"
                    ],
                "{chain:?}"
            );
            let mx = dig_answers(dns, APEX, "MX", transport)?;
            ensure!(
                mx.len() == 1 && mx[0].rdata == "10 mail.demo.heimdall.test.",
                "{mx:?}"
            );
        }
        let at = format!("@{}", dns.ip());
        let port = dns.port().to_string();
        let out = heimdall_tests::dig(&[&at, "-p", &port, DEMO_NXDOMAIN, "A", "+time=2"])?;
        ensure!(out.contains("status: NXDOMAIN"), "{out}");
        ensure!(out.contains("flags: qr aa rd;"), "{out}");
        ensure!(out.contains("IN\tSOA\tns1.demo.heimdall.test."), "{out}");
        let out = heimdall_tests::dig(&[&at, "-p", &port, DEMO_NODATA, "A", "+time=2"])?;
        ensure!(
            out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
            "{out}"
        );
        ensure!(out.contains("AUTHORITY: 1"), "{out}");
        Ok(())
    })();
    node.attach_log(result)
}

/// A forwarding node whose upstream is the zone-mode node answers the zone's names with the
/// same records and rcodes.
#[test]
fn forwarding_node_gives_the_same_records() -> Result<()> {
    let (zone_node, _file) = start_zone_node()?;
    let forwarder = Node::start(NodeOpts::upstreams(&[zone_node.dns_addr()]))?;
    let result = (|| -> Result<()> {
        let cases = [
            ("www.demo.heimdall.test.", RecordType::A),
            ("www.demo.heimdall.test.", RecordType::AAAA),
            ("alias.demo.heimdall.test.", RecordType::A),
            (APEX, RecordType::MX),
            (APEX, RecordType::NS),
            ("info.demo.heimdall.test.", RecordType::TXT),
            (DEMO_NXDOMAIN, RecordType::A),
            (DEMO_NODATA, RecordType::A),
        ];
        for (name, rtype) in cases {
            let direct = query_udp(zone_node.dns_addr(), name, rtype, None, false)?;
            let forwarded = query_udp(forwarder.dns_addr(), name, rtype, None, false)?;
            ensure!(
                direct.metadata.response_code == forwarded.metadata.response_code,
                "{name} {rtype}: {} direct, {} forwarded",
                direct.metadata.response_code,
                forwarded.metadata.response_code
            );
            ensure!(
                answers(&direct) == answers(&forwarded),
                "{name} {rtype}: {:?} direct, {:?} forwarded",
                direct.answers,
                forwarded.answers
            );
        }
        Ok(())
    })();
    forwarder.attach_log(zone_node.attach_log(result))
}
