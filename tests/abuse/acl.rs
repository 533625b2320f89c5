//! `acl.allow_from`: clients outside the list get REFUSED over UDP and TCP, and a change made
//! through Raft applies to the running node.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use heimdall_tests::addr::random_loopback_ip;
use heimdall_tests::{build_query, query_tcp, query_udp, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::{DEADLINE, Setup};

/// Asks `addr` for `www.example.test` A over UDP from a socket bound to `source`.
fn ask_from(source: SocketAddr, addr: SocketAddr) -> Result<Message> {
    let socket = UdpSocket::bind(source).context("binding the client")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let query = build_query("www.example.test.", RecordType::A, Some(1232), false)?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        socket.send(&query.to_vec()?)?;
        if let Ok(n) = socket.recv(&mut buf) {
            let reply = Message::from_vec(&buf[..n])?;
            if reply.metadata.id == query.metadata.id {
                return Ok(reply);
            }
        }
    }
    anyhow::bail!("no answer from {addr} to {source}")
}

/// A node whose `acl.allow_from` leaves out the client's 127.x address answers it REFUSED
/// over UDP and TCP (and counts it); widening the list through Raft lets it in again, live.
#[test]
fn acl_refuses_clients_outside_the_list_and_applies_live() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let dns = s.dns();
        let reply = query_udp(dns, "www.example.test.", RecordType::A, None, false)?;
        ensure!(
            reply.metadata.response_code == ResponseCode::NoError && reply.answers.len() == 1,
            "the default ACL admits loopback: {reply:?}"
        );

        // Only 127.0.0.1 (the harness's client address) and one private range.
        s.set("acl.allow_from", "127.0.0.1/32,10.0.0.0/8")?;
        let outsider = SocketAddr::from((random_loopback_ip(), 0));
        wait_until(DEADLINE, "a client outside the list is refused", || {
            ask_from(outsider, dns).is_ok_and(|r| r.metadata.response_code == ResponseCode::Refused)
        })?;
        let refused = ask_from(outsider, dns)?;
        ensure!(
            refused.answers.is_empty() && refused.queries.len() == 1 && refused.edns.is_some(),
            "REFUSED echoes the question and OPT, with no records: {refused:?}"
        );
        let inside = query_udp(dns, "www.example.test.", RecordType::A, None, false)?;
        ensure!(
            inside.metadata.response_code == ResponseCode::NoError,
            "127.0.0.1 is on the list: {inside:?}"
        );

        // Leave every loopback address out: the harness's own client is refused on both
        // transports.
        s.set("acl.allow_from", "10.0.0.0/8")?;
        wait_until(DEADLINE, "127.0.0.1 is refused over UDP", || {
            query_udp(dns, "www.example.test.", RecordType::A, None, false)
                .is_ok_and(|r| r.metadata.response_code == ResponseCode::Refused)
        })?;
        let tcp = query_tcp(dns, "www.example.test.", RecordType::A, None, false)?;
        ensure!(
            tcp.metadata.response_code == ResponseCode::Refused && tcp.answers.is_empty(),
            "TCP is refused too: {tcp:?}"
        );
        let counted = s.counter("heimdall_acl_refused_total", &[])?;
        ensure!(counted >= 3.0, "heimdall_acl_refused_total = {counted}");

        // Back to loopback: answered again without a restart.
        s.set("acl.allow_from", "127.0.0.0/8")?;
        wait_until(DEADLINE, "the outsider is answered again", || {
            ask_from(outsider, dns).is_ok_and(|r| {
                r.metadata.response_code == ResponseCode::NoError && r.answers.len() == 1
            })
        })?;
        Ok(())
    })
}
