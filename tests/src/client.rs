//! DNS client helpers for tests: hickory queries over UDP and TCP, raw bytes, TCP
//! pipelining, record comparison, and the `dig` command line tool.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Record, RecordType};

use crate::auth::fqdn;

/// How long one UDP try waits for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// How many UDP tries a query makes before failing.
pub const TRIES: u32 = 3;

/// A query for `name`/`rtype` with RD=1 and a random id; with `edns` an OPT record
/// advertising that UDP size (and the DO bit if `dnssec_ok`).
pub fn build_query(
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    dnssec_ok: bool,
) -> Result<Message> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(fqdn(name)?, rtype));
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        opt.set_dnssec_ok(dnssec_ok);
        msg.set_edns(opt);
    }
    Ok(msg)
}

/// Query `addr` over UDP (2 s per try, 3 tries) and return the matching reply.
pub fn query_udp(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    dnssec_ok: bool,
) -> Result<Message> {
    exchange_udp(
        addr,
        &build_query(name, rtype, edns, dnssec_ok)?,
        TIMEOUT,
        TRIES,
    )
}

/// Query `addr` over TCP (one connection, 2 s deadline per step).
pub fn query_tcp(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    dnssec_ok: bool,
) -> Result<Message> {
    exchange_tcp(addr, &build_query(name, rtype, edns, dnssec_ok)?, TIMEOUT)
}

/// A fresh UDP socket on 127.0.0.1 connected to `addr`, so ICMP errors are reported.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("binding a client UDP socket")?;
    socket
        .connect(addr)
        .with_context(|| format!("connecting UDP to {addr}"))?;
    Ok(socket)
}

/// Whether `reply` answers `query`: QR=1, same id, same question (if any, name case-insensitive).
fn matches(query: &Message, reply: &Message) -> bool {
    reply.message_type == MessageType::Response
        && reply.id == query.id
        && (reply.queries.is_empty() || reply.queries == query.queries)
}

/// Send `query` over UDP, waiting `timeout` per try for a reply that matches it
/// (other datagrams are ignored); `tries` attempts in all.
pub fn exchange_udp(
    addr: SocketAddr,
    query: &Message,
    timeout: Duration,
    tries: u32,
) -> Result<Message> {
    let bytes = query.to_vec().context("encoding the query")?;
    let socket = udp_socket(addr)?;
    let mut buf = vec![0u8; 65535];
    let mut last_error = None;
    for _ in 0..tries.max(1) {
        if let Err(e) = socket.send(&bytes) {
            last_error = Some(format!("send: {e}"));
            continue;
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(len) => {
                    let Some(data) = buf.get(..len) else { continue };
                    match Message::from_vec(data) {
                        Ok(reply) if matches(query, &reply) => return Ok(reply),
                        Ok(_) => last_error = Some("a reply that did not match".into()),
                        Err(e) => last_error = Some(format!("an undecodable reply: {e}")),
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    last_error = Some("timeout".into());
                    break;
                }
                Err(e) => {
                    last_error = Some(format!("recv: {e}"));
                    break;
                }
            }
        }
    }
    bail!(
        "no UDP answer from {addr} for {} after {tries} tries ({})",
        describe(query),
        last_error.unwrap_or_default()
    )
}

/// A one-line description of a query's question, for error messages.
fn describe(query: &Message) -> String {
    query
        .queries
        .first()
        .map(|q| format!("{} {}", q.name(), q.query_type()))
        .unwrap_or_else(|| "(no question)".into())
}

/// Open a TCP connection to `addr` with read and write deadlines of `timeout`.
fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting TCP to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Prefix a message with its two-byte length.
fn frame(message: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(message.len()).context("message longer than 65535 bytes")?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// Read one length-prefixed message from a stream.
fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut message)?;
    Ok(message)
}

/// Send `query` over a new TCP connection and read the reply.
pub fn exchange_tcp(addr: SocketAddr, query: &Message, timeout: Duration) -> Result<Message> {
    let mut stream = tcp_connect(addr, timeout)?;
    stream.write_all(&frame(&query.to_vec()?)?)?;
    let bytes =
        read_frame(&mut stream).with_context(|| format!("reading TCP reply from {addr}"))?;
    let reply = Message::from_vec(&bytes).context("decoding the TCP reply")?;
    ensure!(
        matches(query, &reply),
        "TCP reply does not match the query: {reply}"
    );
    Ok(reply)
}

/// Send `query` on an open TCP connection and read its reply (RFC 7766 framing).
pub fn exchange_on(stream: &mut TcpStream, query: &Message) -> Result<Message> {
    stream.write_all(&frame(&query.to_vec()?)?)?;
    let bytes = read_frame(stream).context("reading the TCP reply")?;
    let reply = Message::from_vec(&bytes).context("decoding the TCP reply")?;
    ensure!(
        matches(query, &reply),
        "TCP reply does not match the query: {reply}"
    );
    Ok(reply)
}

/// Write all `queries` (length-prefixed) to one TCP connection in a single write, then
/// read as many replies; returns them in query order (they may arrive in any order).
pub fn tcp_pipeline(
    addr: SocketAddr,
    queries: &[Message],
    timeout: Duration,
) -> Result<Vec<Message>> {
    let mut stream = tcp_connect(addr, timeout)?;
    let mut burst = Vec::new();
    for query in queries {
        burst.extend(frame(&query.to_vec()?)?);
    }
    stream.write_all(&burst)?;
    let mut replies: Vec<Option<Message>> = vec![None; queries.len()];
    for n in 0..queries.len() {
        let bytes = read_frame(&mut stream)
            .with_context(|| format!("reading pipelined reply {} of {}", n + 1, queries.len()))?;
        let reply = Message::from_vec(&bytes).context("decoding a pipelined reply")?;
        let slot = queries
            .iter()
            .zip(replies.iter_mut())
            .find(|(q, r)| r.is_none() && matches(q, &reply))
            .map(|(_, r)| r);
        match slot {
            Some(slot) => *slot = Some(reply),
            None => bail!("pipelined reply id {} matches no open query", reply.id),
        }
    }
    replies
        .into_iter()
        .map(|r| r.context("a pipelined query was not answered"))
        .collect()
}

/// Send raw bytes over UDP and return the first datagram that comes back within `timeout`.
pub fn send_raw_udp(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let socket = udp_socket(addr).ok()?;
    socket.send(bytes).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = vec![0u8; 65535];
    let len = socket.recv(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// What a TCP server did with bytes written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpReply {
    /// It sent one length-prefixed message back (the bytes, without the prefix).
    Message(Vec<u8>),
    /// It closed (or reset) the connection without a complete message.
    Closed,
    /// It kept the connection open without answering until the timeout.
    Timeout,
}

/// Write raw bytes (framing included, possibly bogus) to a new TCP connection and report
/// what came back within `timeout`.
pub fn send_raw_tcp(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Result<TcpReply> {
    let mut stream = tcp_connect(addr, timeout)?;
    if stream.write_all(bytes).is_err() {
        return Ok(TcpReply::Closed);
    }
    Ok(match read_frame(&mut stream) {
        Ok(message) => TcpReply::Message(message),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            TcpReply::Timeout
        }
        Err(_) => TcpReply::Closed,
    })
}

/// Check that `got` (from the forwarder) equals `want` (from the authoritative server)
/// record by record: same order, names (case-insensitive), class, type and data, and a
/// TTL no higher than the original.
pub fn compare_records(got: &[Record], want: &[Record]) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{} records instead of {}:\n got: {got:?}\nwant: {want:?}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        ensure!(
            g.name == w.name,
            "record {i}: name {} != {}",
            g.name,
            w.name
        );
        ensure!(
            g.record_type() == w.record_type() && g.dns_class == w.dns_class,
            "record {i}: {} {} != {} {}",
            g.dns_class,
            g.record_type(),
            w.dns_class,
            w.record_type()
        );
        ensure!(
            g.data == w.data,
            "record {i}: data {} != {}",
            g.data,
            w.data
        );
        ensure!(
            g.ttl <= w.ttl,
            "record {i}: TTL {} above the original {}",
            g.ttl,
            w.ttl
        );
    }
    Ok(())
}

/// Whether the `dig` tool can be run here (installed by `.ci/run`; may be missing locally).
pub fn dig_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("dig")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Run `dig` with `args` and return its standard output.
pub fn dig(args: &[&str]) -> Result<String> {
    let output = Command::new("dig")
        .args(args)
        .output()
        .context("running dig")?;
    ensure!(
        output.status.success(),
        "dig {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One answer line of `dig +noall +answer` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigRecord {
    /// Owner name, lower-cased.
    pub name: String,
    /// Time to live as printed.
    pub ttl: u32,
    /// Class mnemonic, e.g. `IN`.
    pub class: String,
    /// Type mnemonic, e.g. `CNAME`.
    pub rtype: String,
    /// The record data as printed, whitespace-normalised.
    pub rdata: String,
}

/// Ask `server` with dig for `name`/`rtype` over UDP (or TCP with `+tcp` in `extra`) and
/// parse the answer section.
pub fn dig_answers(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    extra: &[&str],
) -> Result<Vec<DigRecord>> {
    let at = format!("@{}", server.ip());
    let port = server.port().to_string();
    let mut args = vec![
        at.as_str(),
        "-p",
        port.as_str(),
        name,
        rtype,
        "+noall",
        "+answer",
        "+time=2",
        "+tries=3",
    ];
    args.extend_from_slice(extra);
    parse_dig_answers(&dig(&args)?)
}

/// Parse the answer lines of `dig +noall +answer` output (comments and blanks skipped).
pub fn parse_dig_answers(output: &str) -> Result<Vec<DigRecord>> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, ttl, class, rtype, rdata @ ..] = fields.as_slice() else {
                bail!("unparsable dig line {line:?}");
            };
            Ok(DigRecord {
                name: name.to_ascii_lowercase(),
                ttl: ttl.parse().with_context(|| format!("TTL in {line:?}"))?,
                class: (*class).to_string(),
                rtype: (*rtype).to_string(),
                rdata: rdata.join(" "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dig answer lines parse into their five fields.
    #[test]
    fn parses_dig_lines() -> Result<()> {
        let text = "; comment\n\nwww.Example.test.\t300\tIN\tA\t192.0.2.1\n\
                    example.test. 20 IN MX 10 mail.example.test.\n";
        let records = parse_dig_answers(text)?;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "www.example.test.");
        assert_eq!(records[0].ttl, 300);
        assert_eq!(records[1].rdata, "10 mail.example.test.");
        assert!(parse_dig_answers("broken line").is_err());
        Ok(())
    }

    /// Queries carry RD=1 and an OPT only when asked for.
    #[test]
    fn builds_queries() -> Result<()> {
        let q = build_query("www.example.test", RecordType::AAAA, None, false)?;
        assert!(q.recursion_desired);
        assert!(q.edns.is_none());
        let q = build_query("www.example.test.", RecordType::A, Some(1232), true)?;
        let Some(edns) = q.edns else { bail!("no OPT") };
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);
        Ok(())
    }
}
