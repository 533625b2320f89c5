//! One exchange with one upstream: a query with a fresh random ID from a fresh random port,
//! over UDP, retried over TCP when the reply is truncated; replies that do not match are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use heimdall_wire::{Message, MessageWriter, WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::{ForwarderStats, Question};

/// The EDNS UDP payload size we advertise upstream (the DNS flag day 2020 value).
const UPSTREAM_UDP_PAYLOAD: u16 = 1232;
/// The largest query we build (a 255-byte name plus header, question and OPT fits easily).
const MAX_QUERY_LEN: usize = 512;
/// Receive buffer for UDP replies: larger than what we advertise, so oversize replies are seen.
const UDP_RECV_LEN: usize = 4096;

/// Why one exchange with one upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// No matching reply before the attempt's deadline.
    #[error("timed out")]
    Timeout,
    /// A socket operation failed (for example ICMP port unreachable).
    #[error("i/o error: {0}")]
    Io(String),
    /// The query could not be built (name too long for the buffer).
    #[error("could not build query: {0}")]
    Build(WireError),
    /// The TCP reply was malformed or did not match the question.
    #[error("bad reply over TCP: {0}")]
    BadTcpReply(&'static str),
}

impl From<std::io::Error> for ExchangeError {
    fn from(e: std::io::Error) -> Self {
        ExchangeError::Io(e.to_string())
    }
}

/// Build a recursive query for `question` with the given ID into `buf`; returns its length.
pub fn build_query(question: &Question, id: u16, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut w = MessageWriter::new(buf)?;
    let mut flags = heimdall_wire::Header::RD;
    if question.checking_disabled {
        flags |= heimdall_wire::Header::CD;
    }
    w.set_header(id, flags);
    w.question(&question.name, question.qtype, question.qclass)?;
    let edns_flags = if question.dnssec_ok { 0x8000 } else { 0 };
    w.opt(UPSTREAM_UDP_PAYLOAD, 0, 0, edns_flags, &[])?;
    Ok(w.finish())
}

/// Does `reply` answer our query `id` for `question`? Checks QR, ID, opcode and the question.
fn matches(reply: &[u8], id: u16, question: &Question) -> bool {
    let Ok(msg) = Message::parse(reply) else {
        return false;
    };
    let h = msg.header();
    if !h.qr() || h.id != id || h.opcode() != 0 || h.qdcount != 1 {
        return false;
    }
    let Some(q) = msg.question() else {
        return false;
    };
    if q.qtype != question.qtype || q.qclass != question.qclass {
        return false;
    }
    let mut name = [0u8; heimdall_wire::MAX_NAME_LEN];
    match q.name.write_lower(&mut name) {
        Ok(n) => name.get(..n) == Some(&question.name[..]),
        Err(_) => false,
    }
}

/// Exchange one query with `upstream` within `budget`: UDP first, TCP if truncated.
pub(super) async fn exchange(
    upstream: SocketAddr,
    question: &Question,
    budget: Duration,
    stats: &ForwarderStats,
) -> Result<Box<[u8]>, ExchangeError> {
    let deadline = Instant::now() + budget;
    let id: u16 = rand::random();
    let mut query = [0u8; MAX_QUERY_LEN];
    let len = build_query(question, id, &mut query).map_err(ExchangeError::Build)?;
    let query = &query[..len];

    // A fresh socket per exchange: the kernel picks a random ephemeral source port, and
    // `connect` makes it drop datagrams from any other address or port.
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    stats.queries.incr();
    socket.send(query).await?;

    let mut buf = vec![0u8; UDP_RECV_LEN];
    loop {
        let n = match timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(ExchangeError::Timeout),
        };
        let reply = &buf[..n];
        if !matches(reply, id, question) {
            stats.mismatched.incr();
            continue;
        }
        let truncated = heimdall_wire::Header::parse(reply).is_ok_and(|h| h.tc());
        if !truncated {
            return Ok(reply.into());
        }
        stats.tcp_retries.incr();
        break;
    }
    drop(socket);
    match timeout_at(deadline, exchange_tcp(upstream, question, stats)).await {
        Ok(r) => r,
        Err(_) => Err(ExchangeError::Timeout),
    }
}

/// Exchange one query over TCP (RFC 7766 framing), used after a truncated UDP reply.
async fn exchange_tcp(
    upstream: SocketAddr,
    question: &Question,
    stats: &ForwarderStats,
) -> Result<Box<[u8]>, ExchangeError> {
    let id: u16 = rand::random();
    let mut frame = [0u8; MAX_QUERY_LEN + 2];
    let len = build_query(question, id, &mut frame[2..]).map_err(ExchangeError::Build)?;
    let len16 = u16::try_from(len).map_err(|_| ExchangeError::BadTcpReply("query too long"))?;
    frame[..2].copy_from_slice(&len16.to_be_bytes());

    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    stats.queries.incr();
    stream.write_all(&frame[..len + 2]).await?;
    loop {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let n = usize::from(u16::from_be_bytes(prefix));
        if n < heimdall_wire::HEADER_LEN {
            return Err(ExchangeError::BadTcpReply("short message"));
        }
        let mut reply = vec![0u8; n];
        stream.read_exact(&mut reply).await?;
        if matches(&reply, id, question) {
            return Ok(reply.into_boxed_slice());
        }
        // A reply to something else on our own connection: ignore it and keep reading.
        stats.mismatched.incr();
    }
}
