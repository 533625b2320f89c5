//! Unit tests of the zone-file parser, zone checks and authoritative answers (hickory-proto
//! is the independent decoder of what we write).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::demo::{DEMO_NODATA, DEMO_NXDOMAIN, DEMO_ZONE};
use super::zonefile::{ZoneFileError, parse, parse_ttl};
use super::{Authority, Zone, local_table};
use crate::cache::ClientOpt;
use crate::cluster::settings::LocalRecord;

/// The demo zone, parsed and checked.
fn demo_zone() -> Zone {
    let records = parse(DEMO_ZONE, None).expect("the demo zone parses");
    Zone::from_records(records).expect("the demo zone is valid")
}

/// The parse error of `text` (with `$ORIGIN example.test.` given).
fn parse_err(text: &str) -> ZoneFileError {
    match parse(text, Some("example.test.")).and_then(Zone::from_records) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => e,
    }
}

/// Wire form of a presentation name.
fn wire(name: &str) -> Vec<u8> {
    let mut buf = [0u8; 255];
    let len = heimdall_wire::name_from_str(name, &mut buf).expect("valid name");
    buf[..len].to_ascii_lowercase()
}

/// The demo zone has the records it declares, in wire form, with the right TTLs.
#[test]
fn demo_zone_parses() {
    let records = parse(DEMO_ZONE, None).expect("parses");
    assert_eq!(records.len(), 13, "{records:#?}");
    let soa = &records[0];
    assert_eq!((soa.line, soa.rtype, soa.ttl), (4, 6, 300));
    assert_eq!(soa.owner, wire("demo.heimdall.test."));
    // mname, rname, then serial..minimum.
    let mut expected = wire("ns1.demo.heimdall.test.");
    expected.extend(wire("hostmaster.demo.heimdall.test."));
    for n in [2026112801u32, 3600, 600, 86400, 60] {
        expected.extend(n.to_be_bytes());
    }
    assert_eq!(soa.rdata, expected);
    // A blank owner continues the previous one: the NS, MX and TXT belong to the apex.
    assert!(records[1..4].iter().all(|r| r.owner == soa.owner));
    let alias = records
        .iter()
        .find(|r| r.owner == wire("alias.demo.heimdall.test."));
    let alias = alias.expect("alias");
    assert_eq!(
        (alias.ttl, alias.rdata.clone()),
        (600, wire("web.demo.heimdall.test."))
    );
    let info = records
        .iter()
        .find(|r| r.owner == wire("info.demo.heimdall.test."))
        .expect("info");
    let mut txt = vec![18];
    txt.extend(b"Heimdall demo zone");
    txt.push(28);
    txt.extend(b"answers with the AA flag set");
    assert_eq!(info.rdata, txt);
    let zone = Zone::from_records(records).expect("valid");
    // 8 owners plus the empty non-terminal lab.
    assert_eq!(zone.name_count(), 9);
    assert_eq!(zone.get(&wire(DEMO_NODATA)), Some(&[][..]));
}

/// Absolute names, escapes in strings, TTL units, class before TTL, comments and lower case.
#[test]
fn syntax_variants() {
    let text = "$ORIGIN Example.TEST.\n\
                $TTL 1h30m\n\
                example.test. IN 2d SOA ns.example.test. h.example.test. 1 2 3 4 5\n\
                a in a 192.0.2.1 ; comment \"not a string\"\n\
                b 1w AAAA 2001:db8::1\n\
                t TXT \"semi; colon\" \"quote \\\" and \\065\" bare\n\
                m MX 5 @\n";
    let records = parse(text, None).expect("parses");
    assert_eq!(records[0].ttl, 2 * 86_400);
    assert_eq!(records[1].ttl, 5400);
    assert_eq!(records[1].owner, wire("a.example.test."));
    assert_eq!(records[2].ttl, 604_800);
    assert_eq!(
        records[2].rdata,
        "2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets()
    );
    let mut txt = vec![11];
    txt.extend(b"semi; colon");
    txt.push(13);
    txt.extend(b"quote \" and A");
    txt.push(4);
    txt.extend(b"bare");
    assert_eq!(records[3].rdata, txt);
    let mut mx = 5u16.to_be_bytes().to_vec();
    mx.extend(wire("example.test."));
    assert_eq!(records[4].rdata, mx);
    assert_eq!(parse_ttl("90", 1), Ok(90));
    assert!(parse_ttl("1x", 1).is_err());
    assert!(parse_ttl("3000000000", 1).is_err());
}

/// Each malformed input is reported on its line with a reason naming the problem.
#[test]
fn malformed_lines_name_line_and_reason() {
    let soa = "@ 60 SOA ns h 1 2 3 4 5\n";
    let cases: &[(&str, usize, &str)] = &[
        (
            &format!("{soa}www A 192.0.2.300\n"),
            2,
            "not an IPv4 address",
        ),
        (
            &format!("{soa}www AAAA 192.0.2.1\n"),
            2,
            "not an IPv6 address",
        ),
        (
            &format!("{soa}www 60 SRV 1 2 3 x\n"),
            2,
            "unsupported record type",
        ),
        (
            &format!("{soa}www CH A 192.0.2.1\n"),
            2,
            "class CH is not supported",
        ),
        (
            &format!("{soa}\n\nwww MX mail\n"),
            4,
            "MX needs a preference",
        ),
        (&format!("{soa}www MX 70000 mail\n"), 2, "MX preference"),
        (
            &format!("{soa}www TXT \"open\n"),
            2,
            "unterminated quoted string",
        ),
        (&format!("{soa}www A\n"), 2, "A needs an IPv4 address"),
        (
            &format!("{soa}bad..name A 192.0.2.1\n"),
            2,
            "is not a domain name",
        ),
        (
            &format!("{soa}$INCLUDE other.zone\n"),
            2,
            "$INCLUDE is not supported",
        ),
        (&format!("{soa}$BOGUS x\n"), 2, "unknown directive $BOGUS"),
        (&format!("{soa}www 1x A 192.0.2.1\n"), 2, "is not a TTL"),
        (&format!("{soa}www TXT x )\n"), 2, "unbalanced )"),
        ("@ 60 SOA ns h (\n 1 2 3\n", 1, "never closed"),
        ("@ 60 SOA ns h 1 2 3\n", 1, "SOA needs"),
        (
            &format!("{soa}  A 192.0.2.1\nx IN A 1.2.3.4 extra\n"),
            3,
            "A needs",
        ),
        ("www A 192.0.2.1\n", 1, "no TTL and no $TTL"),
        (
            &format!("{soa}other.test. A 192.0.2.1\n"),
            2,
            "outside the zone",
        ),
        (
            &format!("{soa}sub NS ns.sub\n"),
            2,
            "delegations below the apex",
        ),
        (&format!("{soa}w CNAME x\nw A 192.0.2.1\n"), 3, "see line 2"),
        (
            &format!("{soa}w A 192.0.2.1\nw CNAME x\n"),
            3,
            "cannot coexist",
        ),
        (
            &format!("{soa}{soa}"),
            2,
            "a second SOA record (the first is on line 1)",
        ),
        ("$TTL 60\nwww A 192.0.2.1\n", 0, "no SOA record"),
    ];
    for (text, line, reason) in cases {
        let error = parse_err(text);
        assert_eq!(error.line, *line, "{text:?}: {error}");
        assert!(error.reason.contains(reason), "{text:?}: {error}");
    }
    // Without an origin, relative names and @ are errors.
    let error = parse("www 60 A 192.0.2.1\n", None).expect_err("relative without origin");
    assert!(error.reason.contains("no $ORIGIN"), "{error}");
}

/// A zone file that cannot be read or parsed names the file and line.
#[test]
fn load_names_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.zone");
    std::fs::write(
        &path,
        "$ORIGIN x.test.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\nwww A nope\n",
    )
    .expect("write");
    let error = Zone::load(&path).expect_err("bad zone");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{}:4: ", path.display())),
        "{text}"
    );
    let missing = Zone::load(&dir.path().join("missing.zone")).expect_err("missing");
    assert!(
        missing.to_string().contains(":0: cannot read the file"),
        "{missing}"
    );
}

/// Sends `name`/`rtype` (with EDNS when `edns`) to `authority` with room for `max_len`;
/// returns the decoded answer, or None when the authority passes the query on.
fn ask(
    authority: &Authority,
    name: &str,
    rtype: RecordType,
    edns: bool,
    max_len: usize,
) -> Option<Message> {
    let mut query = Message::query();
    query.metadata.id = 0x1234;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if edns {
        query.set_edns(Edns::new());
    }
    let bytes = query.to_vec().expect("encode");
    let parsed = heimdall_wire::parse_query(&bytes).expect("valid query");
    let question = &bytes[parsed.question.start..parsed.question.end];
    let opt = parsed.opt.map(|o| ClientOpt {
        dnssec_ok: o.dnssec_ok(),
        our_udp_size: 1232,
    });
    let mut out = [0u8; 4096];
    let len = authority.answer(&parsed, question, opt, max_len, &mut out)?;
    let reply = Message::from_vec(&out[..len]).expect("our answer decodes");
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(
        reply.edns.is_some(),
        edns,
        "OPT only when the query had one"
    );
    Some(reply)
}

/// An authority serving the demo zone.
fn demo_authority(refuse_outside: bool) -> Authority {
    let authority = Authority::default();
    authority.set_zone(Some(Arc::new(demo_zone())), refuse_outside);
    authority
}

/// The rdata of the answer records, in order.
fn answer_data(reply: &Message) -> Vec<RData> {
    reply.answers.iter().map(|r| r.data.clone()).collect()
}

/// Exact matches, the CNAME chain, NXDOMAIN and NODATA with the SOA, all with AA.
#[test]
fn zone_answers() {
    let authority = demo_authority(false);
    let www = ask(
        &authority,
        "WWW.demo.heimdall.test.",
        RecordType::A,
        true,
        1232,
    )
    .expect("in zone");
    assert!(www.metadata.authoritative);
    assert_eq!(www.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        answer_data(&www),
        [RData::A(Ipv4Addr::new(192, 0, 2, 10).into())]
    );
    // The question's case is echoed, and the answer's owner is the question's name.
    assert_eq!(www.answers[0].name.to_ascii(), "WWW.demo.heimdall.test.");

    let chain = ask(
        &authority,
        "alias.demo.heimdall.test.",
        RecordType::A,
        false,
        512,
    )
    .expect("in zone");
    let types: Vec<RecordType> = chain.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    assert_eq!(chain.answers[0].ttl, 600);
    assert_eq!(chain.answers[2].name.to_ascii(), "www.demo.heimdall.test.");

    let mx = ask(
        &authority,
        "demo.heimdall.test.",
        RecordType::MX,
        false,
        512,
    )
    .expect("mx");
    assert_eq!(mx.answers.len(), 1);

    for (name, rtype, code) in [
        (DEMO_NXDOMAIN, RecordType::A, ResponseCode::NXDomain),
        (DEMO_NODATA, RecordType::A, ResponseCode::NoError),
        (
            "www.demo.heimdall.test.",
            RecordType::MX,
            ResponseCode::NoError,
        ),
    ] {
        let reply = ask(&authority, name, rtype, true, 1232).expect("in zone");
        assert_eq!(reply.metadata.response_code, code, "{name}");
        assert!(reply.metadata.authoritative, "{name}");
        assert!(reply.answers.is_empty(), "{name}");
        assert_eq!(reply.authorities.len(), 1, "{name}");
        let soa = &reply.authorities[0];
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert_eq!(soa.name.to_ascii(), "demo.heimdall.test.");
        // min(SOA TTL 300, MINIMUM 60).
        assert_eq!(soa.ttl, 60);
    }
}

/// Names outside the zone are passed on by a forwarding node and refused (without AA) by an
/// authoritative-only one; a too-small buffer gives TC=1.
#[test]
fn outside_names_and_truncation() {
    let forwarding = demo_authority(false);
    assert!(ask(&forwarding, "example.org.", RecordType::A, false, 512).is_none());
    assert!(ask(&forwarding, "heimdall.test.", RecordType::A, false, 512).is_none());
    let only = demo_authority(true);
    let refused = ask(&only, "example.org.", RecordType::A, true, 512).expect("refused");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative && !refused.metadata.recursion_available);
    let www = ask(&only, "www.demo.heimdall.test.", RecordType::A, false, 512).expect("www");
    assert!(!www.metadata.recursion_available);

    let small = ask(
        &forwarding,
        "alias.demo.heimdall.test.",
        RecordType::A,
        true,
        80,
    )
    .expect("truncated");
    assert!(small.metadata.truncation);
    assert!(small.answers.is_empty());
}

/// Nothing installed: the authority passes every query on; local records answer their own
/// names first, follow a CNAME into the zone, and leave other names alone.
#[test]
fn local_records() {
    let authority = Authority::default();
    assert!(ask(&authority, "printer.lan.", RecordType::A, false, 512).is_none());
    let record = |name: &str, rtype: &str, data: &str| LocalRecord {
        name: name.to_owned(),
        rtype: rtype.to_owned(),
        ttl: 60,
        data: data.to_owned(),
    };
    authority.set_local(local_table(&[
        record("Printer.lan", "A", "192.168.1.9"),
        record("www.demo.heimdall.test", "A", "10.0.0.1"),
        record("go.lan", "CNAME", "web.demo.heimdall.test."),
    ]));
    let printer = ask(&authority, "printer.lan.", RecordType::A, false, 512).expect("local");
    assert!(printer.metadata.authoritative);
    assert_eq!(
        answer_data(&printer),
        [RData::A(Ipv4Addr::new(192, 168, 1, 9).into())]
    );
    let nodata = ask(&authority, "printer.lan.", RecordType::AAAA, false, 512).expect("local");
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && nodata.authorities.is_empty());
    assert!(ask(&authority, "scanner.lan.", RecordType::A, false, 512).is_none());

    authority.set_zone(Some(Arc::new(demo_zone())), false);
    let www_a = |authority: &Authority| {
        let www = ask(
            authority,
            "www.demo.heimdall.test.",
            RecordType::A,
            false,
            512,
        );
        answer_data(&www.expect("www is answered"))
    };
    // Local records win over the zone.
    assert_eq!(
        www_a(&authority),
        [RData::A(Ipv4Addr::new(10, 0, 0, 1).into())]
    );
    let go = ask(&authority, "go.lan.", RecordType::A, false, 512).expect("go");
    let types: Vec<RecordType> = go.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    assert!(authority.answered() > 0);

    authority.set_local(local_table(&[]));
    assert_eq!(
        www_a(&authority),
        [RData::A(Ipv4Addr::new(192, 0, 2, 10).into())]
    );
    assert!(ask(&authority, "printer.lan.", RecordType::A, false, 512).is_none());
}

/// `authority.zone_file` from a flag or the environment loads the zone with the config; a
/// zone without upstreams needs no resolv.conf and makes the node authoritative only.
#[test]
fn config_loads_the_zone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("demo.zone");
    std::fs::write(&path, DEMO_ZONE).expect("write");
    let cli = crate::config::Cli {
        zone_file: Some(path.clone()),
        ..crate::config::Cli::default()
    };
    let config = crate::config::load_from(&cli, Vec::new()).expect("valid");
    assert!(config.upstream.servers.is_empty());
    let zone = config.authority.zone.as_ref().expect("zone loaded");
    assert_eq!(zone.apex(), &wire("demo.heimdall.test.")[..]);
    let env = vec![
        (
            "HEIMDALL_AUTHORITY__ZONE_FILE".to_owned(),
            path.display().to_string(),
        ),
        (
            "HEIMDALL_UPSTREAM__SERVERS".to_owned(),
            "127.0.0.1:5300".to_owned(),
        ),
    ];
    let config = crate::config::load_from(&crate::config::Cli::default(), env).expect("valid");
    assert_eq!(config.authority.zone_file.as_deref(), Some(path.as_path()));
    assert!(config.authority.zone.is_some() && !config.upstream.servers.is_empty());

    let authority = Authority::default();
    super::install_zone(&authority, &config);
    assert!(ask(&authority, "example.org.", RecordType::A, false, 512).is_none());
}
