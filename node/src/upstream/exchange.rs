//! One exchange with one upstream: a query with a random ID on one of the upstream's pooled
//! sockets (`sockets.rs`), over UDP, retried over TCP when the reply is truncated; replies that
//! do not match are ignored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use heimdall_wire::{MAX_NAME_LEN, Message, MessageWriter, WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::{ForwarderStats, Question, Upstream};

/// The EDNS UDP payload size we advertise upstream (the DNS flag day 2020 value).
const UPSTREAM_UDP_PAYLOAD: u16 = 1232;
/// The largest query we build (a 255-byte name plus header, question and OPT fits easily).
pub(super) const MAX_QUERY_LEN: usize = 512;
/// Receive buffer for UDP replies: larger than what we advertise, so oversize replies are seen.
pub(super) const UDP_RECV_LEN: usize = 4096;

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

/// The ID and question of a reply, read once so that it can be compared with the queries
/// waiting for an answer.
pub(super) struct ReplyKey {
    /// The reply's ID.
    id: u16,
    /// Its question's type.
    qtype: u16,
    /// Its question's class.
    qclass: u16,
    /// Its question's name, lower-cased, uncompressed wire form (`name_len` bytes used).
    name: [u8; MAX_NAME_LEN],
    /// The used length of `name`.
    name_len: usize,
}

impl ReplyKey {
    /// Read a reply's ID and question; None unless it is a response (QR) to a standard query
    /// with exactly one readable question.
    pub(super) fn read(reply: &[u8]) -> Option<ReplyKey> {
        let msg = Message::parse(reply).ok()?;
        let h = msg.header();
        if !h.qr() || h.opcode() != 0 || h.qdcount != 1 {
            return None;
        }
        let q = msg.question()?;
        let mut name = [0u8; MAX_NAME_LEN];
        let name_len = q.name.write_lower(&mut name).ok()?;
        Some(ReplyKey {
            id: h.id,
            qtype: q.qtype,
            qclass: q.qclass,
            name,
            name_len,
        })
    }

    /// The reply's ID.
    pub(super) fn id(&self) -> u16 {
        self.id
    }

    /// Does this reply answer our query `id` for `question` (the name compared
    /// case-insensitively)?
    pub(super) fn answers(&self, id: u16, question: &Question) -> bool {
        self.id == id
            && self.qtype == question.qtype
            && self.qclass == question.qclass
            && self.name.get(..self.name_len) == Some(&question.name[..])
    }
}

/// Does `reply` answer our query `id` for `question`? Checks QR, ID, opcode and the question.
fn matches(reply: &[u8], id: u16, question: &Question) -> bool {
    ReplyKey::read(reply).is_some_and(|key| key.answers(id, question))
}

/// Exchange one query with `upstream` within `budget`: UDP on one of its pooled sockets first,
/// TCP if the reply is truncated.
pub(super) async fn exchange(
    upstream: &Upstream,
    question: &Question,
    budget: Duration,
    stats: &Arc<ForwarderStats>,
) -> Result<Box<[u8]>, ExchangeError> {
    let deadline = Instant::now() + budget;
    let reply = upstream.sockets().query(question, deadline, stats).await?;
    let truncated = heimdall_wire::Header::parse(&reply).is_ok_and(|h| h.tc());
    if !truncated {
        return Ok(reply);
    }
    stats.tcp_retries.incr();
    match timeout_at(deadline, exchange_tcp(upstream.addr(), question, stats)).await {
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
