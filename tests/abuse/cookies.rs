//! DNS cookies (RFC 7873, RFC 9018 server cookies): a client cookie earns a server cookie, a
//! valid one is accepted, a wrong one gets BADCOOKIE with a fresh cookie, a malformed option
//! FORMERR; `dig +cookie` agrees; and nodes sharing the cluster secret share cookies.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use heimdall_tests::{dig, dig_available, exchange_tcp, exchange_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{Setup, cookie_query, reply_cookie};

/// A client cookie the tests send.
const CLIENT: [u8; 8] = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];

/// Whether `cookie` is our client cookie followed by an RFC 9018 server cookie (version 1,
/// reserved zero, a timestamp, an 8-byte hash).
fn is_rfc9018_reply(cookie: &[u8]) -> bool {
    cookie.len() == 24 && cookie[..8] == CLIENT && cookie[8] == 1 && cookie[9..12] == [0, 0, 0]
}

/// A client cookie gets a server cookie; sending both back is answered with the same server
/// cookie (valid, recent); a wrong server cookie gets BADCOOKIE and a fresh valid cookie that
/// is then accepted; TCP carries cookies too; a COOKIE option of a wrong length is FORMERR;
/// and each outcome is counted in /metrics.
#[test]
fn cookies_are_issued_checked_and_refused_when_wrong() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let dns = s.dns();
        let timeout = Duration::from_secs(2);
        let first = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &CLIENT)?,
            timeout,
            3,
        )?;
        ensure!(
            first.metadata.response_code == ResponseCode::NoError && first.answers.len() == 1,
            "{first:?}"
        );
        let cookie = reply_cookie(&first).context("no COOKIE option in the answer")?;
        ensure!(
            is_rfc9018_reply(&cookie),
            "not an RFC 9018 cookie: {cookie:02x?}"
        );

        let again = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &cookie)?,
            timeout,
            3,
        )?;
        ensure!(
            again.metadata.response_code == ResponseCode::NoError && again.answers.len() == 1,
            "{again:?}"
        );
        ensure!(
            reply_cookie(&again) == Some(cookie.clone()),
            "a recent valid cookie is echoed: {again:?}"
        );

        let mut wrong = cookie.clone();
        wrong[23] ^= 0xff;
        let bad = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &wrong)?,
            timeout,
            3,
        )?;
        ensure!(
            bad.metadata.response_code == ResponseCode::BADCOOKIE,
            "{bad:?}"
        );
        ensure!(
            bad.answers.is_empty(),
            "BADCOOKIE carries no answer: {bad:?}"
        );
        let fresh = reply_cookie(&bad).context("BADCOOKIE without a cookie")?;
        ensure!(is_rfc9018_reply(&fresh), "{fresh:02x?}");
        let retried = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &fresh)?,
            timeout,
            3,
        )?;
        ensure!(
            retried.metadata.response_code == ResponseCode::NoError && retried.answers.len() == 1,
            "{retried:?}"
        );

        // A server cookie of another format (8 bytes, within RFC 7873's 8..=32) is not ours.
        let foreign = [&CLIENT[..], &[9u8; 8][..]].concat();
        let other = exchange_udp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &foreign)?,
            timeout,
            3,
        )?;
        ensure!(
            other.metadata.response_code == ResponseCode::BADCOOKIE,
            "{other:?}"
        );

        let tcp = exchange_tcp(
            dns,
            &cookie_query("www.example.test.", RecordType::A, &cookie)?,
            timeout,
        )?;
        ensure!(
            tcp.metadata.response_code == ResponseCode::NoError
                && reply_cookie(&tcp) == Some(cookie.clone()),
            "{tcp:?}"
        );

        for len in [5usize, 12, 41] {
            let malformed = vec![7u8; len];
            let reply = exchange_udp(
                dns,
                &cookie_query("www.example.test.", RecordType::A, &malformed)?,
                timeout,
                3,
            )?;
            ensure!(
                reply.metadata.response_code == ResponseCode::FormErr,
                "{len} bytes: {reply:?}"
            );
        }

        let issued = s.counter("heimdall_cookies_total", &[("result", "issued")])?;
        let valid = s.counter("heimdall_cookies_total", &[("result", "valid")])?;
        let bad = s.counter("heimdall_cookies_total", &[("result", "bad")])?;
        ensure!(
            issued >= 3.0 && valid >= 3.0 && bad >= 2.0,
            "issued {issued}, valid {valid}, bad {bad}"
        );
        Ok(())
    })
}

/// `dig +cookie` gets a server cookie it calls good, and a made-up server cookie is answered
/// BADCOOKIE, after which dig retries with the fresh cookie (`+badcookie`).
#[test]
fn dig_cookie_is_good() -> Result<()> {
    if !dig_available() {
        println!("SKIPPED: dig is not installed (dnsutils)");
        return Ok(());
    }
    let s = Setup::start()?;
    s.run(|s| {
        let dns = s.dns();
        let server = format!("@{}", dns.ip());
        let port = dns.port().to_string();
        let out = dig(&[&server, "-p", &port, "+cookie", "www.example.test", "A"])?;
        ensure!(out.contains("status: NOERROR"), "{out}");
        ensure!(
            out.lines()
                .any(|l| l.starts_with("; COOKIE: ") && l.ends_with("(good)")),
            "dig did not find a good server cookie:\n{out}"
        );
        let made_up = "2464c4abcf10c957010000005cf79f111f8130c3eee29480";
        let cookie = format!("+cookie={made_up}");
        let out = dig(&[
            &server,
            "-p",
            &port,
            &cookie,
            "+badcookie",
            "+showbadcookie",
            "www.example.test",
            "A",
        ])?;
        ensure!(out.contains("status: BADCOOKIE"), "{out}");
        ensure!(
            out.contains("status: NOERROR"),
            "dig's retry with the fresh cookie:\n{out}"
        );
        Ok(())
    })
}

/// Nodes sharing the cluster secret accept each other's server cookies (RFC 9018 server sets);
/// a node with another secret answers them BADCOOKIE.
#[test]
fn nodes_with_the_same_secret_share_cookies() -> Result<()> {
    let auth = heimdall_tests::AuthServer::start(crate::zone())?;
    let start = |secret: &str| {
        let mut opts = heimdall_tests::NodeOpts::upstreams(&[auth.addr()]);
        opts.env
            .push(("HEIMDALL_CLUSTER__SECRET".to_owned(), secret.to_owned()));
        heimdall_tests::Node::start(opts)
    };
    let shared = "cookie-test-cluster-secret-0123456789";
    let a = start(shared)?;
    let b = start(shared)?;
    let other = start("another-cluster-secret-9876543210")?;
    let timeout = Duration::from_secs(2);
    let body = || -> Result<()> {
        let first = exchange_udp(
            a.dns_addr(),
            &cookie_query("www.example.test.", RecordType::A, &CLIENT)?,
            timeout,
            3,
        )?;
        let cookie = reply_cookie(&first).context("no cookie from the first node")?;
        let on_b = exchange_udp(
            b.dns_addr(),
            &cookie_query("www.example.test.", RecordType::A, &cookie)?,
            timeout,
            3,
        )?;
        ensure!(
            on_b.metadata.response_code == ResponseCode::NoError
                && reply_cookie(&on_b) == Some(cookie.clone()),
            "the second node did not accept the first one's cookie: {on_b:?}"
        );
        let on_other = exchange_udp(
            other.dns_addr(),
            &cookie_query("www.example.test.", RecordType::A, &cookie)?,
            timeout,
            3,
        )?;
        ensure!(
            on_other.metadata.response_code == ResponseCode::BADCOOKIE,
            "{on_other:?}"
        );
        Ok(())
    };
    b.attach_log(a.attach_log(body()))
}
