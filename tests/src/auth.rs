//! A real authoritative DNS server for one zone, run in-process as the forwarder's upstream.
//!
//! It speaks UDP and TCP on the same `127.x.y.z:port`, is built on hickory-proto messages,
//! answers with AA=1, follows CNAME chains inside its zone, returns NXDOMAIN / NODATA with the
//! SOA in the authority section and REFUSED outside its zone. Over UDP it truncates (TC=1, no
//! records) whatever exceeds the client's EDNS size (512 without EDNS), so a forwarder must
//! retry over TCP. Tests steer it live: count queries, delay or drop answers, change records.
//! It runs on its own thread and tokio runtime, so it works from sync and async tests alike.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

use crate::addr::{bind_pair, bind_unique_pair};

/// The UDP payload size this server advertises in the OPT records it sends.
pub const SERVER_UDP_PAYLOAD: u16 = 1232;

/// UDP answers are limited to this size when the query carried no OPT record.
pub const PLAIN_UDP_LIMIT: usize = 512;

/// The longest CNAME chain the server follows before it stops adding records.
const MAX_CHAIN: usize = 16;

/// The EDNS option code of a DNS cookie (RFC 7873).
pub const COOKIE_OPTION_CODE: u16 = 10;

/// The EDNS option code of padding (RFC 7830).
pub const PADDING_OPTION_CODE: u16 = 12;

/// A recognisable server cookie, so a test can prove it never reaches a forwarder's client.
pub const UPSTREAM_SERVER_COOKIE: [u8; 16] = *b"UPSTREAM-COOKIE!";

/// The client half of the cookie the server sends when the query carried none.
const FALLBACK_CLIENT_COOKIE: [u8; 8] = *b"cl-cook.";

/// Parse a presentation name; names without a trailing dot are taken as fully qualified.
pub fn fqdn(name: &str) -> Result<Name> {
    let text = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&text).with_context(|| format!("invalid domain name {name:?}"))
}

/// The key the query counters use: the lower-cased fully qualified name and the type.
fn count_key(name: &Name, qtype: RecordType) -> (String, u16) {
    (name.to_lowercase().to_ascii(), u16::from(qtype))
}

/// TXT record data made of `count` records of one 200-byte string each, all distinct:
/// `count = 3` exceeds 512 bytes, `count = 7` exceeds 1232 bytes.
pub fn large_txt(count: usize) -> Vec<RData> {
    (0..count)
        .map(|i| {
            let mut text = format!("record-{i:04}-");
            while text.len() < 200 {
                text.push(char::from(
                    b'a' + u8::try_from(text.len() % 26).unwrap_or(0),
                ));
            }
            RData::TXT(TXT::new(vec![text]))
        })
        .collect()
}

/// A DNS cookie option carrying [`UPSTREAM_SERVER_COOKIE`] after a fixed client cookie.
pub fn upstream_cookie_option() -> EdnsOption {
    let mut data = FALLBACK_CLIENT_COOKIE.to_vec();
    data.extend_from_slice(&UPSTREAM_SERVER_COOKIE);
    EdnsOption::Unknown(COOKIE_OPTION_CODE, data)
}

/// A padding option of `len` zero bytes.
pub fn padding_option(len: usize) -> EdnsOption {
    EdnsOption::Unknown(PADDING_OPTION_CODE, vec![0; len])
}

/// How the server writes the question name back in its answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuestionCase {
    /// Byte for byte as the client sent it (what real servers do).
    #[default]
    Echo,
    /// All lower case, as a server that canonicalises names would.
    Lower,
    /// All upper case, to make any case confusion in a forwarder visible.
    Upper,
}

/// The contents of one zone: apex, SOA timers and the records served.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The apex name; every name served lies at or below it.
    origin: Name,
    /// TTL of the SOA record itself.
    soa_ttl: u32,
    /// The SOA MINIMUM field (the negative-caching TTL of RFC 2308).
    soa_minimum: u32,
    /// All records except the SOA, in insertion order (RRset order is preserved).
    records: Vec<Record>,
}

impl Zone {
    /// A zone for `origin` with SOA (TTL 3600, minimum 300) and an NS record at the apex.
    ///
    /// # Panics
    /// If `origin` is not a valid domain name (zones are built from literals in tests).
    pub fn new(origin: &str) -> Zone {
        let origin = match fqdn(origin) {
            Ok(name) => name,
            Err(e) => panic!("{e:#}"),
        };
        let ns = Self::child(&origin, "ns1");
        let records = vec![Record::from_rdata(origin.clone(), 3600, RData::NS(NS(ns)))];
        Zone {
            origin,
            soa_ttl: 3600,
            soa_minimum: 300,
            records,
        }
    }

    /// `label.origin`, falling back to the origin itself if the label is invalid.
    fn child(origin: &Name, label: &str) -> Name {
        Name::from_ascii(label)
            .and_then(|l| l.append_domain(origin))
            .unwrap_or_else(|_| origin.clone())
    }

    /// Set the SOA record's own TTL and its MINIMUM field.
    pub fn soa(mut self, ttl: u32, minimum: u32) -> Self {
        self.soa_ttl = ttl;
        self.soa_minimum = minimum;
        self
    }

    /// Resolve `name` against the zone: `@` is the apex, a name with a trailing dot is
    /// absolute, anything else is relative to the apex.
    ///
    /// # Panics
    /// If the name is invalid (zones are built from literals in tests).
    pub fn name(&self, name: &str) -> Name {
        let parsed = if name == "@" {
            Ok(self.origin.clone())
        } else if name.ends_with('.') {
            fqdn(name)
        } else {
            Name::from_ascii(name)
                .and_then(|n| n.append_domain(&self.origin))
                .with_context(|| format!("invalid relative name {name:?}"))
        };
        match parsed {
            Ok(n) => n,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Add one record (A, AAAA, CNAME, MX, TXT, ...) at `name`.
    pub fn add(mut self, name: &str, ttl: u32, rdata: RData) -> Self {
        let name = self.name(name);
        self.records.push(Record::from_rdata(name, ttl, rdata));
        self
    }

    /// Add several records at `name`, all with the same TTL.
    pub fn add_all(mut self, name: &str, ttl: u32, rdatas: Vec<RData>) -> Self {
        let name = self.name(name);
        self.records.extend(
            rdatas
                .into_iter()
                .map(|rd| Record::from_rdata(name.clone(), ttl, rd)),
        );
        self
    }

    /// The apex name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record as the server puts it in negative answers.
    pub fn soa_record(&self) -> Record {
        let soa = SOA::new(
            Self::child(&self.origin, "ns1"),
            Self::child(&self.origin, "hostmaster"),
            1,
            3600,
            600,
            86400,
            self.soa_minimum,
        );
        Record::from_rdata(self.origin.clone(), self.soa_ttl, RData::SOA(soa))
    }

    /// The records of type `rtype` at `name` (the SOA included at the apex).
    fn rrset(&self, name: &Name, rtype: RecordType) -> Vec<Record> {
        if rtype == RecordType::SOA && *name == self.origin {
            return vec![self.soa_record()];
        }
        self.records
            .iter()
            .filter(|r| r.name == *name && r.record_type() == rtype)
            .cloned()
            .collect()
    }

    /// Whether `name` exists: the apex, an owner name, or an empty non-terminal above one.
    fn exists(&self, name: &Name) -> bool {
        *name == self.origin || self.records.iter().any(|r| name.zone_of(&r.name))
    }

    /// Fill the answer and authority sections for `qname`/`qtype`, following CNAMEs.
    fn resolve(&self, qname: &Name, qtype: RecordType, resp: &mut Message) {
        let mut name = qname.clone();
        for _ in 0..MAX_CHAIN {
            let rrset = self.rrset(&name, qtype);
            if !rrset.is_empty() {
                resp.add_answers(rrset);
                return;
            }
            if qtype != RecordType::CNAME {
                let cname = self.rrset(&name, RecordType::CNAME).into_iter().next();
                if let Some(record) = cname {
                    let target = match &record.data {
                        RData::CNAME(CNAME(target)) => Some(target.clone()),
                        _ => None,
                    };
                    resp.add_answer(record);
                    match target {
                        Some(t) if self.origin.zone_of(&t) => {
                            name = t;
                            continue;
                        }
                        _ => return,
                    }
                }
            }
            if !self.exists(&name) {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            resp.add_authority(self.soa_record());
            return;
        }
    }

    /// Replace the RRset of `rtype` at `name` with `rdatas` (empty: remove it).
    fn replace(&mut self, name: &Name, rtype: RecordType, ttl: u32, rdatas: Vec<RData>) {
        let at = self
            .records
            .iter()
            .position(|r| r.name == *name && r.record_type() == rtype)
            .unwrap_or(self.records.len());
        self.records
            .retain(|r| !(r.name == *name && r.record_type() == rtype));
        let new = rdatas
            .into_iter()
            .map(|rd| Record::from_rdata(name.clone(), ttl, rd));
        let at = at.min(self.records.len());
        self.records.splice(at..at, new);
    }
}

/// Which transport a query arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// A UDP datagram: answers are size-limited.
    Udp,
    /// A TCP stream: answers are never truncated.
    Tcp,
}

/// State shared between the test thread (controls) and the server thread.
#[derive(Debug)]
struct Shared {
    /// The zone being served; replaced piecewise by the controls.
    zone: Mutex<Zone>,
    /// Every query received (including the ones dropped while down).
    queries: AtomicU64,
    /// The subset of `queries` that arrived over TCP.
    tcp_queries: AtomicU64,
    /// Received queries per (lower-cased name, type).
    counts: Mutex<HashMap<(String, u16), u64>>,
    /// How long every answer is held back, in milliseconds.
    delay_ms: AtomicU64,
    /// When set, every query is silently dropped.
    down: AtomicBool,
    /// Extra EDNS options added to every OPT record the server sends.
    edns_options: Mutex<Vec<EdnsOption>>,
    /// How the question name is written back.
    question_case: Mutex<QuestionCase>,
    /// The most recent well-formed query, for tests that inspect what a forwarder sends.
    last_query: Mutex<Option<Message>>,
    /// When set, every UDP answer is raced by forged replies (see [`AuthServer::set_spoof`]).
    spoof: AtomicBool,
    /// Forged datagrams sent.
    spoofed: AtomicU64,
}

/// Lock a mutex, ignoring poisoning (a panicking test must not wedge the server).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Build the answer bytes for one query, or None to stay silent.
    fn respond(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
        if bytes.len() < 12 {
            return None;
        }
        let query = match Message::from_vec(bytes) {
            Ok(query) => query,
            Err(_) => {
                if bytes.get(2).is_some_and(|flags| flags & 0x80 != 0) {
                    return None;
                }
                self.queries.fetch_add(1, Ordering::SeqCst);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        if query.message_type == MessageType::Response {
            return None;
        }
        self.queries.fetch_add(1, Ordering::SeqCst);
        if transport == Transport::Tcp {
            self.tcp_queries.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(q) = query.queries.first() {
            *lock(&self.counts)
                .entry(count_key(q.name(), q.query_type()))
                .or_insert(0) += 1;
        }
        *lock(&self.last_query) = Some(query.clone());
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        let resp = self.build(&query);
        let limit = match (transport, &query.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()).max(PLAIN_UDP_LIMIT),
            (Transport::Udp, None) => PLAIN_UDP_LIMIT,
        };
        let full = resp.to_vec().ok()?;
        if full.len() <= limit {
            return Some(full);
        }
        resp.truncate().to_vec().ok()
    }

    /// Build the response message (before any truncation).
    fn build(&self, query: &Message) -> Message {
        let mut resp = Message::response(query.id, query.op_code);
        resp.metadata.recursion_desired = query.recursion_desired;
        resp.metadata.checking_disabled = query.checking_disabled;
        if let Some(edns) = &query.edns {
            let mut opt = Edns::new();
            opt.set_max_payload(SERVER_UDP_PAYLOAD);
            opt.set_dnssec_ok(edns.flags().dnssec_ok);
            for option in lock(&self.edns_options).iter() {
                opt.options_mut().insert(option.clone());
            }
            resp.set_edns(opt);
        }
        if query.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp;
        }
        let [q] = query.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(self.echo_question(q));
        let zone = lock(&self.zone);
        if !zone.origin.zone_of(q.name()) {
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        }
        resp.metadata.authoritative = true;
        zone.resolve(q.name(), q.query_type(), &mut resp);
        resp
    }

    /// The question as it goes back to the client, with the configured name case.
    fn echo_question(&self, q: &Query) -> Query {
        let name = match *lock(&self.question_case) {
            QuestionCase::Echo => q.name().clone(),
            QuestionCase::Lower => q.name().to_lowercase(),
            QuestionCase::Upper => Name::from_ascii(q.name().to_ascii().to_ascii_uppercase())
                .unwrap_or_else(|_| q.name().clone()),
        };
        let mut echoed = q.clone();
        echoed.set_name(name);
        echoed
    }

    /// The configured answer delay.
    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
}

/// A running authoritative server; stops (and frees its address) when dropped.
#[derive(Debug)]
pub struct AuthServer {
    /// The UDP and TCP address it serves on.
    addr: SocketAddr,
    /// State shared with the server thread.
    shared: Arc<Shared>,
    /// Fired on drop to stop the runtime.
    stop: Option<oneshot::Sender<()>>,
    /// The server thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl AuthServer {
    /// Serve `zone` on a fresh random loopback address with a kernel-chosen port.
    pub fn start(zone: Zone) -> Result<AuthServer> {
        let (udp, tcp) = bind_unique_pair(0)?;
        Self::serve(zone, udp, tcp)
    }

    /// Serve `zone` on a given IPv4 loopback address (port 0: kernel-chosen).
    pub fn bind(zone: Zone, addr: SocketAddr) -> Result<AuthServer> {
        let SocketAddr::V4(v4) = addr else {
            bail!("AuthServer binds IPv4 loopback addresses only, not {addr}");
        };
        let ip: Ipv4Addr = *v4.ip();
        let (udp, tcp) = bind_pair(ip, addr.port()).with_context(|| format!("binding {addr}"))?;
        Self::serve(zone, udp, tcp)
    }

    /// Start the server thread on already bound sockets.
    fn serve(
        zone: Zone,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> Result<AuthServer> {
        let addr = udp.local_addr()?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            zone: Mutex::new(zone),
            queries: AtomicU64::new(0),
            tcp_queries: AtomicU64::new(0),
            counts: Mutex::new(HashMap::new()),
            delay_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            edns_options: Mutex::new(Vec::new()),
            question_case: Mutex::new(QuestionCase::Echo),
            last_query: Mutex::new(None),
            spoof: AtomicBool::new(false),
            spoofed: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the auth server runtime")?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let state = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("auth-{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let (Ok(udp), Ok(tcp)) = (UdpSocket::from_std(udp), TcpListener::from_std(tcp))
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = stop_rx => {}
                        () = serve_udp(Arc::clone(&state), udp) => {}
                        () = serve_tcp(state, tcp) => {}
                    }
                });
            })
            .context("spawning the auth server thread")?;
        Ok(AuthServer {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address (UDP and TCP) the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The apex of the served zone.
    pub fn origin(&self) -> Name {
        lock(&self.shared.zone).origin.clone()
    }

    /// Total queries received so far (UDP and TCP, including dropped ones).
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> u64 {
        self.shared.tcp_queries.load(Ordering::SeqCst)
    }

    /// Queries received for `name` (case-insensitive, trailing dot optional) and `qtype`.
    pub fn count(&self, name: &str, qtype: RecordType) -> u64 {
        let Ok(name) = fqdn(name) else { return 0 };
        lock(&self.shared.counts)
            .get(&count_key(&name, qtype))
            .copied()
            .unwrap_or(0)
    }

    /// The most recent well-formed query received, if any.
    pub fn last_query(&self) -> Option<Message> {
        lock(&self.shared.last_query).clone()
    }

    /// Race every UDP answer with forged replies carrying [`SPOOFED_ADDR`] as the answer: before
    /// the real answer, one with a wrong ID and one with the right ID but another question
    /// from this server's own address and port, and one right in ID and question from another
    /// port of this address and from another loopback address; after it, one right in every
    /// respect (it arrives after the answer). Set a delay too, so the forgeries arrive first.
    pub fn set_spoof(&self, spoof: bool) {
        self.shared.spoof.store(spoof, Ordering::SeqCst);
    }

    /// Forged datagrams sent so far (see [`AuthServer::set_spoof`]).
    pub fn spoofed(&self) -> u64 {
        self.shared.spoofed.load(Ordering::SeqCst)
    }

    /// Hold every answer back by `delay` (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// While `down`, drop every query silently (they are still counted).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Replace the whole RRset of `rtype` at `name` (relative to the apex, or absolute)
    /// by `rdatas` with `ttl`; an empty list removes the RRset.
    pub fn set_rrset(&self, name: &str, rtype: RecordType, ttl: u32, rdatas: Vec<RData>) {
        let mut zone = lock(&self.shared.zone);
        let name = zone.name(name);
        zone.replace(&name, rtype, ttl, rdatas);
    }

    /// Replace the RRset at `name` of the type of `rdata` by this single record.
    pub fn set_record(&self, name: &str, ttl: u32, rdata: RData) {
        let rtype = rdata.record_type();
        self.set_rrset(name, rtype, ttl, vec![rdata]);
    }

    /// Change the TTL of every record of `rtype` at `name`.
    pub fn set_ttl(&self, name: &str, rtype: RecordType, ttl: u32) {
        let mut zone = lock(&self.shared.zone);
        let name = zone.name(name);
        for record in zone
            .records
            .iter_mut()
            .filter(|r| r.name == name && r.record_type() == rtype)
        {
            record.ttl = ttl;
        }
    }

    /// Change the SOA record's TTL and MINIMUM field.
    pub fn set_soa(&self, ttl: u32, minimum: u32) {
        let mut zone = lock(&self.shared.zone);
        zone.soa_ttl = ttl;
        zone.soa_minimum = minimum;
    }

    /// Add these EDNS options (e.g. [`upstream_cookie_option`], [`padding_option`]) to every
    /// OPT record the server sends (it sends one whenever the query had one).
    pub fn set_edns_options(&self, options: Vec<EdnsOption>) {
        *lock(&self.shared.edns_options) = options;
    }

    /// Choose how the question name is written back in answers.
    pub fn set_question_case(&self, case: QuestionCase) {
        *lock(&self.shared.question_case) = case;
    }
}

impl Drop for AuthServer {
    /// Stop the runtime and wait for the server thread, freeing the address.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answer UDP queries forever, each on its own task so delays overlap.
async fn serve_udp(shared: Arc<Shared>, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(request) = buf.get(..len).map(<[u8]>::to_vec) else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            let delay = shared.delay();
            if let Some(answer) = shared.respond(&request, Transport::Udp) {
                let forged = shared
                    .spoof
                    .load(Ordering::SeqCst)
                    .then(|| Forgeries::of(&request))
                    .flatten();
                if let Some(forged) = &forged {
                    forged.race(&shared, &socket, peer).await;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = socket.send_to(&answer, peer).await;
                if let Some(forged) = &forged {
                    // Late: the forwarder has its answer and closed the socket it asked on.
                    if socket.send_to(&forged.right, peer).await.is_ok() {
                        shared.spoofed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
    }
}

/// The address every forged reply of [`AuthServer::set_spoof`] answers with.
pub const SPOOFED_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

/// Forged replies to one query (see [`AuthServer::set_spoof`]).
struct Forgeries {
    /// Another ID, the right question.
    wrong_id: Vec<u8>,
    /// The right ID, another question name.
    wrong_question: Vec<u8>,
    /// The right ID and question.
    right: Vec<u8>,
}

impl Forgeries {
    /// The forgeries for the query `request`; None when it does not parse.
    fn of(request: &[u8]) -> Option<Forgeries> {
        let query = Message::from_vec(request).ok()?;
        let q = query.queries.first()?.clone();
        let forge = |id: u16, q: &Query| {
            let mut resp = Message::response(id, OpCode::Query);
            resp.metadata.recursion_desired = query.recursion_desired;
            resp.metadata.authoritative = true;
            resp.add_query(q.clone());
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                3600,
                RData::A(hickory_proto::rr::rdata::A(SPOOFED_ADDR)),
            ));
            resp.to_vec().ok()
        };
        let mut other = q.clone();
        other.set_name(Name::from_ascii("forged.invalid.").ok()?);
        Some(Forgeries {
            wrong_id: forge(query.id.wrapping_add(1), &q)?,
            wrong_question: forge(query.id, &other)?,
            right: forge(query.id, &q)?,
        })
    }

    /// Send the forgeries that race the real answer to `peer` (counted in `shared`).
    async fn race(&self, shared: &Shared, socket: &UdpSocket, peer: SocketAddr) {
        let mut sent = 0;
        for bytes in [&self.wrong_id, &self.wrong_question] {
            if socket.send_to(bytes, peer).await.is_ok() {
                sent += 1;
            }
        }
        let here = socket.local_addr().map(|a| a.ip()).ok();
        let elsewhere = crate::addr::unique_addr(0).ok().map(|a| a.ip());
        for ip in [here, elsewhere].into_iter().flatten() {
            if let Ok(other) = UdpSocket::bind(SocketAddr::new(ip, 0)).await
                && other.send_to(&self.right, peer).await.is_ok()
            {
                sent += 1;
            }
        }
        shared.spoofed.fetch_add(sent, Ordering::SeqCst);
    }
}

/// Accept TCP connections forever.
async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(Arc::clone(&shared), stream));
        }
    }
}

/// Read length-prefixed queries from one connection; answer each on its own task
/// (so pipelined queries are answered concurrently, possibly out of order).
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    loop {
        let mut prefix = [0u8; 2];
        if reader.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if reader.read_exact(&mut request).await.is_err() {
            return;
        }
        let shared = Arc::clone(&shared);
        let writer = Arc::clone(&writer);
        tokio::spawn(async move {
            let delay = shared.delay();
            if let Some(answer) = shared.respond(&request, Transport::Tcp) {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                write_frame(&writer, &answer).await;
            }
        });
    }
}

/// Write one length-prefixed message, ignoring a vanished peer.
async fn write_frame(writer: &tokio::sync::Mutex<OwnedWriteHalf>, message: &[u8]) {
    let Ok(len) = u16::try_from(message.len()) else {
        return;
    };
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    let mut w = writer.lock().await;
    let _ = w.write_all(&frame).await;
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, TcpStream as StdTcpStream};
    use std::time::Instant;

    use hickory_proto::rr::rdata::{A, AAAA, MX};

    use super::*;
    use crate::client::{
        TcpReply, build_query, exchange_udp, query_tcp, query_udp, send_raw_tcp, send_raw_udp,
        tcp_pipeline,
    };

    /// A zone exercising every record kind the server is asked to serve.
    fn zone() -> Zone {
        Zone::new("example.test.")
            .soa(120, 60)
            .add("www", 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))))
            .add("www", 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 2))))
            .add("www", 300, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)))
            .add(
                "alias",
                300,
                RData::CNAME(CNAME(fqdn_or_root("middle.example.test."))),
            )
            .add(
                "middle",
                300,
                RData::CNAME(CNAME(fqdn_or_root("www.example.test."))),
            )
            .add(
                "away",
                300,
                RData::CNAME(CNAME(fqdn_or_root("elsewhere.invalid."))),
            )
            .add(
                "@",
                300,
                RData::MX(MX::new(10, fqdn_or_root("mail.example.test."))),
            )
            .add("deep.down", 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 9))))
            .add_all("big", 300, large_txt(8))
    }

    /// Parse a literal name in tests.
    fn fqdn_or_root(name: &str) -> Name {
        fqdn(name).unwrap_or_else(|_| Name::root())
    }

    /// A records answer with AA=1 and both addresses in zone order.
    #[test]
    fn answers_a_authoritatively() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let resp = query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        assert_eq!(resp.response_code, ResponseCode::NoError);
        assert!(resp.authoritative);
        assert!(resp.recursion_desired, "RD is copied from the query");
        let ips: Vec<_> = resp
            .answers
            .iter()
            .filter_map(|r| r.data.ip_addr())
            .collect();
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].to_string(), "192.0.2.1");
        assert_eq!(resp.answers[0].ttl, 300);
        assert_eq!(auth.count("WWW.example.test", RecordType::A), 1);
        assert_eq!(auth.queries(), 1);
        Ok(())
    }

    /// A CNAME chain is followed inside the zone: both CNAMEs then the target's records.
    #[test]
    fn follows_cname_chain() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let resp = query_udp(
            auth.addr(),
            "alias.example.test.",
            RecordType::A,
            None,
            false,
        )?;
        let types: Vec<_> = resp.answers.iter().map(Record::record_type).collect();
        assert_eq!(
            types,
            [
                RecordType::CNAME,
                RecordType::CNAME,
                RecordType::A,
                RecordType::A
            ]
        );
        assert_eq!(resp.answers[2].name, fqdn("www.example.test")?);
        let resp = query_udp(
            auth.addr(),
            "away.example.test.",
            RecordType::A,
            None,
            false,
        )?;
        assert_eq!(
            resp.answers.len(),
            1,
            "a chain leaving the zone stops there"
        );
        assert_eq!(resp.response_code, ResponseCode::NoError);
        Ok(())
    }

    /// Absent names get NXDOMAIN with the SOA in authority.
    #[test]
    fn nxdomain_carries_soa() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let resp = query_udp(
            auth.addr(),
            "nope.example.test.",
            RecordType::A,
            None,
            false,
        )?;
        assert_eq!(resp.response_code, ResponseCode::NXDomain);
        assert!(resp.answers.is_empty());
        assert_eq!(resp.authorities.len(), 1);
        let soa = &resp.authorities[0];
        assert_eq!(soa.ttl, 120);
        match &soa.data {
            RData::SOA(soa) => assert_eq!(soa.minimum, 60),
            other => bail!("expected SOA, got {other:?}"),
        }
        Ok(())
    }

    /// Existing names (and empty non-terminals) without the type get NODATA with the SOA.
    #[test]
    fn nodata_carries_soa() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        for name in ["www.example.test.", "down.example.test."] {
            let resp = query_udp(auth.addr(), name, RecordType::MX, None, false)?;
            assert_eq!(resp.response_code, ResponseCode::NoError, "{name}");
            assert!(resp.answers.is_empty(), "{name}");
            assert_eq!(resp.authorities[0].record_type(), RecordType::SOA, "{name}");
        }
        Ok(())
    }

    /// Names outside the zone are REFUSED without AA; the apex serves SOA, NS and MX.
    #[test]
    fn refuses_outside_and_serves_apex() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let resp = query_udp(auth.addr(), "example.org.", RecordType::A, None, false)?;
        assert_eq!(resp.response_code, ResponseCode::Refused);
        assert!(!resp.authoritative);
        for rtype in [RecordType::SOA, RecordType::NS, RecordType::MX] {
            let resp = query_udp(auth.addr(), "example.test.", rtype, None, false)?;
            assert_eq!(resp.answers.len(), 1, "{rtype}");
            assert_eq!(resp.answers[0].record_type(), rtype);
        }
        Ok(())
    }

    /// An OPT is echoed only when the query had one, with the configured extra options.
    #[test]
    fn echoes_opt_with_options() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let plain = query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        assert!(plain.edns.is_none());
        auth.set_edns_options(vec![upstream_cookie_option(), padding_option(16)]);
        let resp = query_udp(
            auth.addr(),
            "www.example.test.",
            RecordType::A,
            Some(1232),
            true,
        )?;
        let Some(edns) = &resp.edns else {
            bail!("no OPT in the answer");
        };
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), SERVER_UDP_PAYLOAD);
        let codes: Vec<u16> = edns
            .options()
            .as_ref()
            .iter()
            .map(|(c, _)| u16::from(*c))
            .collect();
        assert_eq!(codes, [COOKIE_OPTION_CODE, PADDING_OPTION_CODE]);
        Ok(())
    }

    /// Oversized UDP answers are truncated at the client's size; TCP gets everything.
    #[test]
    fn truncates_udp_by_client_size() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        for edns in [None, Some(512), Some(1232)] {
            let resp = query_udp(
                auth.addr(),
                "big.example.test.",
                RecordType::TXT,
                edns,
                false,
            )?;
            assert!(resp.truncation, "edns {edns:?}");
            assert!(resp.answers.is_empty());
            assert_eq!(resp.edns.is_some(), edns.is_some());
        }
        let resp = query_udp(
            auth.addr(),
            "big.example.test.",
            RecordType::TXT,
            Some(4096),
            false,
        )?;
        assert!(!resp.truncation);
        assert_eq!(resp.answers.len(), 8);
        let resp = query_tcp(
            auth.addr(),
            "big.example.test.",
            RecordType::TXT,
            None,
            false,
        )?;
        assert!(!resp.truncation);
        assert_eq!(resp.answers.len(), 8);
        assert_eq!(auth.tcp_queries(), 1);
        Ok(())
    }

    /// The delay holds answers back, concurrent queries overlap, and down drops everything.
    #[test]
    fn delay_and_down() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        auth.set_delay(Duration::from_millis(200));
        let start = Instant::now();
        let replies: Vec<Result<Message>> = thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|_| {
                    s.spawn(|| {
                        query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        println!("10 delayed queries took {:?}", start.elapsed());
        assert_eq!(replies.len(), 10);
        for reply in replies {
            assert_eq!(reply?.answers.len(), 2);
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
        auth.set_delay(Duration::ZERO);
        auth.set_down(true);
        let query = build_query("www.example.test.", RecordType::A, None, false)?;
        assert!(exchange_udp(auth.addr(), &query, Duration::from_millis(300), 1).is_err());
        assert_eq!(
            auth.count("www.example.test.", RecordType::A),
            11,
            "dropped queries count"
        );
        auth.set_down(false);
        query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        Ok(())
    }

    /// Records and TTLs can be changed while the server runs.
    #[test]
    fn live_record_changes() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        auth.set_ttl("www", RecordType::A, 7);
        let resp = query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        assert!(resp.answers.iter().all(|r| r.ttl == 7));
        auth.set_record("www", 9, RData::A(A(Ipv4Addr::new(198, 51, 100, 1))));
        let resp = query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        assert_eq!(resp.answers.len(), 1);
        assert_eq!(resp.answers[0].ttl, 9);
        auth.set_rrset("www", RecordType::A, 9, vec![]);
        let resp = query_udp(auth.addr(), "www.example.test.", RecordType::A, None, false)?;
        assert!(
            resp.answers.is_empty(),
            "removed RRset gives NODATA (AAAA remains)"
        );
        assert_eq!(resp.response_code, ResponseCode::NoError);
        auth.set_soa(5, 3);
        let resp = query_udp(
            auth.addr(),
            "gone.example.test.",
            RecordType::A,
            None,
            false,
        )?;
        assert_eq!(resp.authorities[0].ttl, 5);
        Ok(())
    }

    /// The question comes back as sent, lower-cased or upper-cased on request.
    #[test]
    fn question_case_modes() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let name = "WwW.ExAmPlE.TeSt.";
        let cases = [
            (QuestionCase::Echo, "WwW.ExAmPlE.TeSt."),
            (QuestionCase::Lower, "www.example.test."),
            (QuestionCase::Upper, "WWW.EXAMPLE.TEST."),
        ];
        for (case, expected) in cases {
            auth.set_question_case(case);
            let resp = query_udp(auth.addr(), name, RecordType::A, None, false)?;
            assert_eq!(resp.queries[0].name().to_ascii(), expected);
        }
        assert_eq!(auth.count("www.example.test", RecordType::A), 3);
        Ok(())
    }

    /// Pipelined TCP queries on one connection are all answered with matching ids.
    #[test]
    fn tcp_pipelining() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let queries = (0..10)
            .map(|i| {
                let name = if i % 2 == 0 {
                    "www.example.test."
                } else {
                    "alias.example.test."
                };
                build_query(name, RecordType::A, None, false)
            })
            .collect::<Result<Vec<_>>>()?;
        let replies = tcp_pipeline(auth.addr(), &queries, Duration::from_secs(5))?;
        assert_eq!(replies.len(), 10);
        assert_eq!(auth.tcp_queries(), 10);
        Ok(())
    }

    /// Garbage gets FORMERR with the id echoed, short packets and responses get nothing.
    #[test]
    fn malformed_input() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let timeout = Duration::from_millis(300);
        assert!(send_raw_udp(auth.addr(), &[1, 2, 3], timeout).is_none());
        let garbage = [0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3F];
        let reply = send_raw_udp(auth.addr(), &garbage, Duration::from_secs(2));
        let Some(reply) = reply else {
            bail!("no FORMERR")
        };
        let msg = Message::from_vec(&reply)?;
        assert_eq!(msg.id, 0xABCD);
        assert_eq!(msg.response_code, ResponseCode::FormErr);
        let response = [0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(send_raw_udp(auth.addr(), &response, timeout).is_none());
        let mut frame = vec![0, 13];
        frame.extend_from_slice(&garbage);
        match send_raw_tcp(auth.addr(), &frame, Duration::from_secs(2))? {
            TcpReply::Message(bytes) => {
                assert_eq!(
                    Message::from_vec(&bytes)?.response_code,
                    ResponseCode::FormErr
                );
            }
            other => bail!("expected FORMERR over TCP, got {other:?}"),
        }
        Ok(())
    }

    /// dig reads the server's answers over UDP and TCP (skipped when dig is missing).
    #[test]
    fn dig_reads_answers() -> Result<()> {
        if !crate::client::dig_available() {
            println!("SKIPPED: dig is not installed (apt-get install dnsutils)");
            return Ok(());
        }
        let auth = AuthServer::start(zone())?;
        let chain = crate::client::dig_answers(auth.addr(), "Alias.example.test.", "A", &[])?;
        let types: Vec<&str> = chain.iter().map(|r| r.rtype.as_str()).collect();
        assert_eq!(types, ["CNAME", "CNAME", "A", "A"]);
        assert_eq!(chain[0].name, "alias.example.test.");
        assert_eq!(chain[0].rdata, "middle.example.test.");
        assert_eq!(chain[0].ttl, 300);
        let big = crate::client::dig_answers(auth.addr(), "big.example.test.", "TXT", &["+tcp"])?;
        assert_eq!(big.len(), 8);
        Ok(())
    }

    /// Dropping the server frees its address.
    #[test]
    fn stops_on_drop() -> Result<()> {
        let auth = AuthServer::start(zone())?;
        let addr = auth.addr();
        drop(auth);
        assert!(StdTcpStream::connect(addr).is_err());
        let again = AuthServer::bind(zone(), addr)?;
        assert_eq!(again.addr(), addr);
        Ok(())
    }
}
