//! `rate_limit.max_amplification`: a UDP client without a valid server cookie gets no answer
//! larger than that multiple of its query; larger ones come truncated, and the client gets the
//! whole answer over TCP or with a cookie.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use heimdall_tests::{build_query, exchange_tcp, exchange_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{DEADLINE, Setup, cookie_query, reply_cookie};

/// With loopback no longer exempt, the ~1,000-byte TXT answer to a ~40-byte query is cut to
/// TC=1 (cap 10 x the query) and counted; the same client gets it whole over TCP and over UDP
/// once it presents a valid server cookie; a cap of 0 turns the guard off.
#[test]
fn large_udp_answers_to_cookieless_clients_are_truncated() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let dns = s.dns();
        let timeout = Duration::from_secs(2);
        let query = build_query("big.example.test.", RecordType::TXT, Some(1232), false)?;
        let query_len = query.to_vec()?.len();
        let whole = exchange_udp(dns, &query, timeout, 3)?;
        ensure!(
            !whole.metadata.truncation && whole.answers.len() == 4,
            "loopback is exempt by default: {whole:?}"
        );
        let whole_len = whole.to_vec()?.len();
        ensure!(
            whole_len > 10 * query_len,
            "the answer ({whole_len} bytes) must exceed 10 x {query_len}"
        );

        s.set("rate_limit.enabled", "false")?;
        s.set("rate_limit.exempt_loopback", "false")?;
        wait_until(DEADLINE, "the cap to apply", || {
            exchange_udp(dns, &query, timeout, 3).is_ok_and(|r| r.metadata.truncation)
        })?;
        let cut = exchange_udp(dns, &query, timeout, 3)?;
        ensure!(
            cut.metadata.response_code == ResponseCode::NoError && cut.answers.is_empty(),
            "{cut:?}"
        );
        ensure!(cut.to_vec()?.len() <= 10 * query_len, "{cut:?}");
        let counted = s.counter("heimdall_amplification_truncated_total", &[])?;
        ensure!(
            counted >= 2.0,
            "heimdall_amplification_truncated_total = {counted}"
        );

        let tcp = exchange_tcp(dns, &query, timeout)?;
        ensure!(
            !tcp.metadata.truncation && tcp.answers.len() == 4,
            "{tcp:?}"
        );

        let client = [3u8; 8];
        let first = exchange_udp(
            dns,
            &cookie_query("big.example.test.", RecordType::TXT, &client)?,
            timeout,
            3,
        )?;
        ensure!(
            first.metadata.truncation,
            "no valid server cookie yet: {first:?}"
        );
        let cookie = reply_cookie(&first).context("no cookie in the truncated answer")?;
        let with_cookie = exchange_udp(
            dns,
            &cookie_query("big.example.test.", RecordType::TXT, &cookie)?,
            timeout,
            3,
        )?;
        ensure!(
            !with_cookie.metadata.truncation && with_cookie.answers.len() == 4,
            "a valid server cookie lifts the cap: {with_cookie:?}"
        );

        s.set("rate_limit.max_amplification", "0")?;
        wait_until(DEADLINE, "the cap to be off", || {
            exchange_udp(dns, &query, timeout, 3)
                .is_ok_and(|r| !r.metadata.truncation && r.answers.len() == 4)
        })?;
        Ok(())
    })
}
