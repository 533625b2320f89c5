//! Positive answers: the node returns exactly what the upstream has, with TTLs counting down.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use heimdall_tests::client::DigRecord;
use heimdall_tests::{
    QuestionCase, build_query, compare_records, dig_answers, dig_available, query_udp,
    send_raw_udp, wait_for,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{Setup, first_ttl};

/// The questions whose answers are compared with the upstream's.
const CASES: [(&str, RecordType); 7] = [
    ("www.example.test.", RecordType::A),
    ("www.example.test.", RecordType::AAAA),
    ("alias.example.test.", RecordType::A),
    ("alias.example.test.", RecordType::CNAME),
    ("example.test.", RecordType::MX),
    ("txt.example.test.", RecordType::TXT),
    ("mail.example.test.", RecordType::A),
];

/// A/AAAA/CNAME-chain/MX/TXT answers equal the upstream's record by record (TTL <=), on the
/// miss and on the cache hit, and each question reaches the upstream only once.
#[test]
fn answers_match_upstream() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        for round in ["miss", "hit"] {
            for (name, rtype) in CASES {
                let direct = query_udp(s.auth.addr(), name, rtype, None, false)?;
                let started = Instant::now();
                let got = query_udp(s.node.dns_addr(), name, rtype, None, false)?;
                println!(
                    "{round}: {name} {rtype} answered in {:?}",
                    started.elapsed()
                );
                ensure!(
                    got.response_code == ResponseCode::NoError,
                    "{name} {rtype}: {got}"
                );
                ensure!(got.recursion_available, "{name} {rtype}: RA not set");
                ensure!(!got.answers.is_empty(), "{name} {rtype}: empty answer");
                compare_records(&got.answers, &direct.answers)
                    .map_err(|e| e.context(format!("{round} {name} {rtype}")))?;
            }
        }
        for (name, rtype) in CASES {
            // Two direct queries per question went to the upstream; the node added one.
            let count = s.auth.count(name, rtype);
            ensure!(
                count == 3,
                "{name} {rtype}: upstream saw {count} queries, want 2 + 1"
            );
        }
        Ok(())
    })
}

/// `dig` sees the same answers from the node as from the upstream (TTL <=), over UDP and TCP.
#[test]
fn dig_answers_match_upstream() -> Result<()> {
    if !dig_available() {
        println!("SKIPPED: dig is not installed (apt-get install dnsutils)");
        return Ok(());
    }
    let setup = Setup::start()?;
    setup.run(|s| {
        for transport in [&[][..], &["+tcp"][..]] {
            for (name, rtype) in CASES {
                let rtype = rtype.to_string();
                let direct = dig_answers(s.auth.addr(), name, &rtype, transport)?;
                let got = dig_answers(s.node.dns_addr(), name, &rtype, transport)?;
                println!("dig {transport:?} {name} {rtype}: {} records", got.len());
                compare_dig(&got, &direct)
                    .map_err(|e| e.context(format!("dig {transport:?} {name} {rtype}")))?;
            }
        }
        Ok(())
    })
}

/// Compare dig answer lines: same records in the same order, TTL no higher.
fn compare_dig(got: &[DigRecord], want: &[DigRecord]) -> Result<()> {
    ensure!(!want.is_empty(), "the upstream gave dig no answer");
    ensure!(got.len() == want.len(), "got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        let same =
            g.name == w.name && g.class == w.class && g.rtype == w.rtype && g.rdata == w.rdata;
        ensure!(same, "got {g:?}\nwant {w:?}");
        ensure!(g.ttl <= w.ttl, "TTL {} above the original {}", g.ttl, w.ttl);
    }
    Ok(())
}

/// Cache hits serve a TTL that counts down with the clock while the upstream is asked once.
#[test]
fn ttl_decreases_on_cache_hits() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let addr = s.node.dns_addr();
        let first = first_ttl(&query_udp(
            addr,
            "www.example.test.",
            RecordType::A,
            None,
            false,
        )?)?;
        ensure!((298..=300).contains(&first), "first TTL {first}");
        let (lower, took) = wait_for(Duration::from_secs(5), "a lower TTL on a cache hit", || {
            query_udp(addr, "www.example.test.", RecordType::A, None, false)
                .ok()
                .and_then(|m| first_ttl(&m).ok())
                .filter(|ttl| *ttl < first)
        })?;
        println!("TTL went from {first} to {lower} after {took:?}");
        let count = s.auth.count("www.example.test.", RecordType::A);
        ensure!(count == 1, "upstream asked {count} times");
        Ok(())
    })
}

/// The reply carries the client's question bytes exactly (case included), on a miss and on a
/// hit, even when the upstream answers with the name lower- or upper-cased.
#[test]
fn question_case_is_preserved() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let cases = [
            (QuestionCase::Echo, "WwW.ExAmPlE.TeSt."),
            (QuestionCase::Lower, "MaIl.EXAMPLE.test."),
            (QuestionCase::Upper, "tXt.example.TEST."),
            (QuestionCase::Upper, "www.EXAMPLE.tEsT."),
            (QuestionCase::Lower, "MAIL.example.test."),
        ];
        for (case, name) in cases {
            s.auth.set_question_case(case);
            let rtype = if name.to_ascii_lowercase().starts_with("txt") {
                RecordType::TXT
            } else {
                RecordType::A
            };
            let query = build_query(name, rtype, None, false)?.to_vec()?;
            let Some(reply) = send_raw_udp(s.node.dns_addr(), &query, Duration::from_secs(3))
            else {
                bail!("no answer for {name}");
            };
            let question_len = name.len() + 1 + 4;
            let want = query.get(12..12 + question_len);
            let got = reply.get(12..12 + question_len);
            ensure!(
                want == got,
                "{name} (upstream {case:?}): question bytes {:?} != {:?}",
                got.map(String::from_utf8_lossy),
                want.map(String::from_utf8_lossy)
            );
            println!("{name} (upstream {case:?}): question case preserved");
        }
        Ok(())
    })
}
