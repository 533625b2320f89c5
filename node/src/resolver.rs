//! Glue between the cache and upstream forwarding: answer a query, from cache or upstream.
//!
//! [`Resolver::process`] is the synchronous part shared by the UDP workers and the TCP
//! connections: it parses the query in place, answers errors and cache hits directly into the
//! caller's buffer (no allocation on a hit), and otherwise hands back an owned [`MissRequest`].
//! [`Resolver::resolve_miss`] is the asynchronous part that runs on the tokio runtime.
//! Before answering, `process` applies the access and abuse controls of [`crate::guard`]:
//! ACL, DNS cookies, rate limiting (UDP) and the amplification cap (UDP).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_wire::{Header, Message, MessageWriter, Query, QueryError, parse_query, rcode};

use crate::authority::Authority;
use crate::cache::{
    Cache, CachePolicy, ClientOpt, ClientQuery, Entry, Freshness, MAX_KEY_LEN, Source, key_len,
    write_key,
};
use crate::guard::cookie::{self, QueryCookie, REPLY_LEN, REPLY_OPTION_LEN};
use crate::guard::{Guard, Verdict, append_cookie, append_cookie_vec};
use crate::metrics::{Event, Local, Metrics};
use crate::upstream::{Forwarder, Question};

/// Smallest UDP payload every client can take (RFC 1035), and the size without EDNS.
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest DNS message over TCP.
pub const MAX_TCP_MESSAGE: usize = 65535;
/// Query type AXFR (zone transfer): not forwarded by a cache.
const QTYPE_AXFR: u16 = 252;
/// Query type IXFR (incremental zone transfer): not forwarded by a cache.
const QTYPE_IXFR: u16 = 251;
/// Extended RCODE BADVERS (16): its upper 8 bits go in the OPT record.
const BADVERS_EXT: u8 = (rcode::BADVERS >> 4) as u8;
/// Stack bytes zeroed for the cache key of a name of up to 59 bytes (the common case); longer
/// names get a [`MAX_KEY_LEN`] buffer.
const SHORT_KEY_LEN: usize = 64;
/// Extended RCODE BADCOOKIE (23, RFC 7873): a wrong server cookie.
pub const BADCOOKIE: u16 = 23;

/// Which transport a query arrived on; it decides the answer size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the limit is the client's EDNS size (clamped) or 512.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// A query the cache could not answer, owned so it can travel to the async runtime.
#[derive(Debug, Clone)]
pub struct MissRequest {
    /// Cache key of the question.
    pub key: Box<[u8]>,
    /// The question as sent upstream.
    pub question: Question,
    /// The client's question bytes verbatim (its case is echoed back).
    pub client_question: Box<[u8]>,
    /// The client's message ID.
    pub id: u16,
    /// The client's header flags.
    pub flags: u16,
    /// The client's EDNS state, if it sent an OPT record.
    pub client_opt: Option<ClientOpt>,
    /// Largest answer the client can take on its transport (room for the COOKIE option
    /// already taken off).
    pub max_len: usize,
    /// The COOKIE option value to append to the answer (client and server cookie), when the
    /// client sent a cookie.
    pub cookie: Option<[u8; REPLY_LEN]>,
    /// The amplification cap lowered `max_len` below the client's own limit: a truncated
    /// answer is counted as capped.
    pub capped: bool,
}

impl MissRequest {
    /// The client view used to write answers.
    fn client(&self) -> ClientQuery<'_> {
        ClientQuery {
            id: self.id,
            flags: self.flags,
            question: &self.client_question,
            opt: self.client_opt,
        }
    }

    /// Write a SERVFAIL for this request into `out`, with the client's COOKIE option (used
    /// when load is shed). Returns the length.
    pub fn write_servfail(&self, out: &mut [u8]) -> usize {
        let len = self.write_servfail_bare(out);
        match &self.cookie {
            Some(value) => append_cookie(out, len, value),
            None => len,
        }
    }

    /// Write a SERVFAIL for this request into `out` without the COOKIE option (every upstream
    /// failed with nothing stale to serve; `resolve_miss` adds the option). Returns the length.
    fn write_servfail_bare(&self, out: &mut [u8]) -> usize {
        write_error(
            out,
            self.id,
            self.flags,
            rcode::SERVFAIL,
            Some(&self.client_question),
            self.client_opt.map(|o| (o, 0)),
        )
    }
}

/// Where a query came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The transport it arrived on (decides the answer size limit and which controls apply).
    pub transport: Transport,
    /// The source address (the ACL, cookies and rate limits are per address).
    pub ip: IpAddr,
}

impl Client {
    /// A client at `ip` over UDP.
    pub fn udp(ip: IpAddr) -> Client {
        Client {
            transport: Transport::Udp,
            ip,
        }
    }

    /// A client at `ip` over TCP.
    pub fn tcp(ip: IpAddr) -> Client {
        Client {
            transport: Transport::Tcp,
            ip,
        }
    }
}

/// The cookie state of one query once checked.
#[derive(Clone, Copy, Debug)]
struct CookieState {
    /// The COOKIE option value to put in the answer (None: the client sent no cookie).
    reply: Option<[u8; REPLY_LEN]>,
    /// The client presented a valid server cookie (exempt from rate limiting and the cap).
    valid: bool,
    /// The client presented a server cookie that is not valid: BADCOOKIE.
    bad: bool,
    /// `reply` holds a server cookie made for this answer (counted once the answer is sure
    /// to be sent, i.e. past the rate limit).
    fresh: bool,
}

/// What to do with one received message.
#[derive(Debug)]
pub enum Outcome {
    /// The answer is in the output buffer, `len` bytes; `prefetch` asks for a background refresh.
    Reply {
        /// Length of the answer written to the output buffer.
        len: usize,
        /// A refresh to run in the background (the hit was in the last 10% of the TTL).
        prefetch: Option<MissRequest>,
    },
    /// Send nothing (unreadable header, or a response sent to us).
    Drop,
    /// Not in the cache: resolve upstream.
    Miss(MissRequest),
}

/// The query engine shared by every worker and connection.
#[derive(Debug)]
pub struct Resolver {
    /// The answer cache (shared with the metrics view).
    cache: Arc<Cache>,
    /// Upstream forwarding (shared with the metrics view).
    forwarder: Arc<Forwarder>,
    /// Our advertised EDNS UDP payload size and the clamp for clients' sizes.
    max_udp_payload: u16,
    /// Per-thread counters, histograms and top names; snapshots for the control plane and
    /// /metrics.
    metrics: Metrics,
    /// With serve-stale, how long to wait for upstreams before answering from an expired
    /// entry (RFC 8767 client response timer); None = only after every upstream failed.
    stale_answer_after: Option<Duration>,
    /// Zone and local records, answered before the cache.
    authority: Authority,
    /// Access and abuse controls (ACL, cookies, rate limits, amplification cap).
    guard: Guard,
}

impl Resolver {
    /// Build the engine.
    pub fn new(cache: Cache, forwarder: Forwarder, max_udp_payload: u16) -> Resolver {
        let cache = Arc::new(cache);
        let forwarder = Arc::new(forwarder);
        let metrics = Metrics::new(Arc::clone(&cache), Arc::clone(&forwarder));
        Resolver {
            cache,
            forwarder,
            max_udp_payload: max_udp_payload.max(MIN_UDP_PAYLOAD),
            metrics,
            stale_answer_after: None,
            authority: Authority::default(),
            guard: Guard::new(None, None),
        }
    }

    /// Derive the DNS cookie secrets from `master` (the cluster secret) instead of a random
    /// key, so every node of the cluster makes and accepts the same server cookies; cookies
    /// derived from `retired` (the previous cluster secret) are accepted until its Unix second.
    pub fn with_cookie_master(mut self, master: &[u8], retired: Option<(&[u8], u64)>) -> Resolver {
        self.guard = Guard::new(Some(master), retired);
        self
    }

    /// Answer from an expired entry once upstreams have been silent for `after` (None: only
    /// once every upstream failed). Only matters while the cache policy allows serve-stale.
    pub fn with_stale_answer_after(mut self, after: Option<Duration>) -> Resolver {
        self.stale_answer_after = after;
        self
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The forwarder.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The authoritative data (zone, local records).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The node's statistics: snapshots for the control plane and /metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The access and abuse controls.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Handle one received message from `client`: errors, refusals and cache hits are answered
    /// into `out`. Never allocates on a cache hit.
    ///
    /// Order: parse; ACL (REFUSED); EDNS version (BADVERS); COOKIE option (FORMERR when
    /// malformed); rate limit (UDP, clients without a valid server cookie: slip or drop);
    /// BADCOOKIE for a wrong server cookie; then the answer, capped in size for UDP clients
    /// without a valid server cookie, with the COOKIE option appended when the client sent one.
    pub fn process(&self, packet: &[u8], out: &mut [u8], client: Client, now: Instant) -> Outcome {
        let metrics = self.metrics.local();
        let query = match parse_query(packet) {
            Ok(q) => q,
            Err(QueryError::Drop) => {
                metrics.count(Event::Malformed);
                return Outcome::Drop;
            }
            Err(QueryError::FormErr { id, flags }) => {
                return error_reply(metrics, out, ErrorReply::new(id, flags, rcode::FORMERR));
            }
            Err(QueryError::NotImp { id, flags }) => {
                return error_reply(metrics, out, ErrorReply::new(id, flags, rcode::NOTIMP));
            }
        };
        let header = query.header;
        let qtype = query.question.qtype;
        metrics.count_qtype(qtype);
        let question = packet
            .get(query.question.start..query.question.end)
            .unwrap_or(&[]);
        // A compressed question name (a pointer into the header) cannot be echoed or keyed
        // safely: answers are laid out after an uncompressed question.
        if question.len() != query.question.name.wire_len() + 4 {
            let reply = ErrorReply::new(header.id, header.flags, rcode::FORMERR);
            return error_reply(metrics, out, reply);
        }
        let client_opt = query.opt.map(|o| ClientOpt {
            dnssec_ok: o.dnssec_ok(),
            our_udp_size: self.max_udp_payload,
        });
        let policy = self.guard.policy();
        if !policy.allows(client.ip) {
            metrics.count(Event::AclRefused);
            let reply = ErrorReply {
                question: Some(question),
                opt: client_opt.map(|o| (o, 0)),
                ..ErrorReply::new(header.id, header.flags, rcode::REFUSED)
            };
            return error_reply(metrics, out, reply);
        }
        if let (Some(opt), Some(ours)) = (query.opt, client_opt)
            && opt.version > 0
        {
            let reply = ErrorReply {
                question: Some(question),
                opt: Some((ours, BADVERS_EXT)),
                counted: rcode::BADVERS,
                ..ErrorReply::new(header.id, header.flags, 0)
            };
            return error_reply(metrics, out, reply);
        }
        let query_cookie = query
            .opt
            .map_or(QueryCookie::Absent, |o| cookie::find(o.options()));
        let cookies = match self.check_cookie(query_cookie, client.ip, metrics) {
            Some(state) => state,
            None => {
                let reply = ErrorReply {
                    question: Some(question),
                    opt: client_opt.map(|o| (o, 0)),
                    ..ErrorReply::new(header.id, header.flags, rcode::FORMERR)
                };
                return error_reply(metrics, out, reply);
            }
        };
        let metered =
            client.transport == Transport::Udp && !cookies.valid && !policy.exempt(client.ip);
        if metered && let Some(limits) = policy.limits() {
            match self.guard.limiter().check(client.ip, limits, now) {
                Verdict::Allow => {}
                Verdict::Drop => {
                    metrics.count(Event::RateLimitDropped);
                    return Outcome::Drop;
                }
                Verdict::Slip => {
                    metrics.count(Event::RateLimitSlipped);
                    if cookies.fresh {
                        metrics.count(Event::CookieIssued);
                    }
                    let reply = ErrorReply {
                        question: Some(question),
                        opt: client_opt.map(|o| (o, 0)),
                        truncated: true,
                        ..ErrorReply::new(header.id, header.flags, rcode::NOERROR)
                    };
                    return self.with_cookie(error_reply(metrics, out, reply), out, &cookies);
                }
            }
        }
        if cookies.fresh {
            metrics.count(Event::CookieIssued);
        }
        if cookies.bad {
            metrics.count(Event::CookieBad);
            let reply = ErrorReply {
                question: Some(question),
                opt: client_opt.map(|o| (o, (BADCOOKIE >> 4) as u8)),
                counted: BADCOOKIE,
                ..ErrorReply::new(header.id, header.flags, (BADCOOKIE & 0x0f) as u8)
            };
            return self.with_cookie(error_reply(metrics, out, reply), out, &cookies);
        }
        if qtype == QTYPE_AXFR || qtype == QTYPE_IXFR {
            let reply = ErrorReply {
                question: Some(question),
                opt: client_opt.map(|o| (o, 0)),
                ..ErrorReply::new(header.id, header.flags, rcode::REFUSED)
            };
            return self.with_cookie(error_reply(metrics, out, reply), out, &cookies);
        }
        let client_max = match client.transport {
            Transport::Udp => usize::from(query.opt.map_or(MIN_UDP_PAYLOAD, |o| {
                o.udp_payload.clamp(MIN_UDP_PAYLOAD, self.max_udp_payload)
            })),
            Transport::Tcp => MAX_TCP_MESSAGE,
        }
        .min(out.len());
        let cap = if metered {
            policy.amplification_cap(packet.len())
        } else {
            None
        };
        let capped = cap.is_some_and(|c| c < client_max);
        let max_len = cap.map_or(client_max, |c| c.min(client_max));
        // The writers leave room for the COOKIE option, appended afterwards.
        let max_len = if cookies.reply.is_some() {
            max_len.saturating_sub(REPLY_OPTION_LEN)
        } else {
            max_len
        };
        drop(policy);
        if let Some(len) = self
            .authority
            .answer(&query, question, client_opt, max_len, out)
        {
            let len = self.finish(out, len, &cookies, capped, metrics);
            return Outcome::Reply {
                len,
                prefetch: None,
            };
        }

        // Zero only the stack a key needs: most keys fit one cache line, and this runs while
        // the CPU caches are cold from the kernel's receive path.
        let mut short_key = [0u8; SHORT_KEY_LEN];
        let mut long_key;
        let key_buf: &mut [u8] = if key_len(&query.question.name) <= SHORT_KEY_LEN {
            &mut short_key
        } else {
            long_key = [0u8; MAX_KEY_LEN];
            &mut long_key
        };
        let dnssec_ok = client_opt.is_some_and(|o| o.dnssec_ok);
        let written = write_key(
            &query.question.name,
            qtype,
            query.question.qclass,
            dnssec_ok,
            header.cd(),
            key_buf,
        );
        let key = &key_buf[..written];
        // The key starts with the lower-cased name (type, class and flags take 5 bytes).
        metrics.offer_name(key.get(..written.saturating_sub(5)).unwrap_or(&[]), now);
        let writer = ClientQuery {
            id: header.id,
            flags: header.flags,
            question,
            opt: client_opt,
        };
        let hit = self
            .cache
            .lookup_aged(key, now, false, |entry, freshness, age| {
                let len = entry.write_response_aged(out, &writer, age, false, max_len);
                (
                    len,
                    matches!(freshness, Freshness::Fresh { prefetch: true }),
                )
            });
        let guarded = Guarded {
            cookie: cookies.reply,
            capped,
        };
        match hit {
            Some((len, prefetch)) => {
                metrics.count(Event::CacheHit);
                metrics.count_answer(out.get(..len).unwrap_or(&[]));
                let len = self.finish(out, len, &cookies, capped, metrics);
                let prefetch = prefetch.then(|| {
                    metrics.count(Event::Prefetch);
                    miss_request(&query, key, question, client_opt, max_len, guarded)
                });
                Outcome::Reply { len, prefetch }
            }
            None => {
                metrics.count(Event::CacheMiss);
                Outcome::Miss(miss_request(
                    &query, key, question, client_opt, max_len, guarded,
                ))
            }
        }
    }

    /// Check a query's COOKIE option for a client at `ip` (counting a valid one) and make the
    /// cookie for the answer. None when the option is malformed (FORMERR).
    #[inline]
    fn check_cookie(
        &self,
        query_cookie: QueryCookie<'_>,
        ip: IpAddr,
        metrics: Local<'_>,
    ) -> Option<CookieState> {
        let absent = CookieState {
            reply: None,
            valid: false,
            bad: false,
            fresh: false,
        };
        let (client, server) = match query_cookie {
            QueryCookie::Absent => return Some(absent),
            QueryCookie::Malformed => return None,
            QueryCookie::ClientOnly { client } => (client, None),
            QueryCookie::WithServer { client, server } => (client, Some(server)),
        };
        let cookies = self.guard.cookies();
        // Serial-number time: the timestamp field is 32 bits.
        let unix = cookie::unix_now() as u32;
        let checked = server.map(|s| (s, cookies.check(&client, s, ip, unix)));
        let mut reply = [0u8; REPLY_LEN];
        let (client_part, server_part) = reply.split_at_mut(cookie::CLIENT_LEN);
        client_part.copy_from_slice(&client);
        let (valid, bad) = match checked {
            Some((server, Some(stamp))) if !cookie::Cookies::needs_renewal(stamp, unix) => {
                // Valid and recent: echo it (RFC 9018 section 4.3).
                metrics.count(Event::CookieValid);
                if let Some(echo) = server.get(..cookie::SERVER_LEN) {
                    server_part.copy_from_slice(echo);
                }
                return Some(CookieState {
                    reply: Some(reply),
                    valid: true,
                    bad: false,
                    fresh: false,
                });
            }
            Some((_, Some(_))) => {
                metrics.count(Event::CookieValid);
                (true, false)
            }
            Some((_, None)) => (false, true),
            None => (false, false),
        };
        server_part.copy_from_slice(&cookies.make(&client, ip, unix));
        Some(CookieState {
            reply: Some(reply),
            valid,
            bad,
            fresh: true,
        })
    }

    /// Append the COOKIE option to an answer written into `out` by `process`'s error path.
    #[inline]
    fn with_cookie(&self, outcome: Outcome, out: &mut [u8], cookies: &CookieState) -> Outcome {
        match (outcome, &cookies.reply) {
            (Outcome::Reply { len, prefetch }, Some(value)) => Outcome::Reply {
                len: append_cookie(out, len, value),
                prefetch,
            },
            (outcome, _) => outcome,
        }
    }

    /// Finish an answer of `len` bytes in `out`: count it when the amplification cap truncated
    /// it, and append the COOKIE option. Returns the new length.
    #[inline]
    fn finish(
        &self,
        out: &mut [u8],
        len: usize,
        cookies: &CookieState,
        capped: bool,
        metrics: Local<'_>,
    ) -> usize {
        if capped && is_truncated(out.get(..len).unwrap_or(&[])) {
            metrics.count(Event::AmplificationCapped);
        }
        match &cookies.reply {
            Some(value) => append_cookie(out, len, value),
            None => len,
        }
    }

    /// Resolve a miss upstream, cache the answer, and return the client's answer bytes.
    /// When every upstream fails, an expired answer is served if serve-stale allows it,
    /// otherwise SERVFAIL. With a stale answer at hand, upstreams get `stale_answer_after`
    /// to answer before the stale one is sent, and the refresh goes on in the background.
    pub async fn resolve_miss(self: &Arc<Self>, req: &MissRequest) -> Vec<u8> {
        let mut answer = self.resolve_answer(req).await;
        self.metrics.count_answer(&answer);
        if req.capped && is_truncated(&answer) {
            self.metrics.count(Event::AmplificationCapped);
        }
        if let Some(value) = &req.cookie {
            append_cookie_vec(&mut answer, value);
        }
        answer
    }

    /// [`Resolver::resolve_miss`] without the response count.
    async fn resolve_answer(self: &Arc<Self>, req: &MissRequest) -> Vec<u8> {
        let mut out = vec![0u8; req.max_len.max(usize::from(MIN_UDP_PAYLOAD))];
        let client = req.client();
        let serve_stale = self.cache.policy().serve_stale;
        let stale_timer = self.stale_answer_after.filter(|_| {
            serve_stale
                && self
                    .cache
                    .lookup(&req.key, Instant::now(), true, |_, f| {
                        matches!(f, Freshness::Stale)
                    })
                    .unwrap_or(false)
        });
        let resolution = self.forwarder.resolve(&req.key, &req.question);
        let (result, leader) = match stale_timer {
            None => resolution.await,
            Some(after) => match tokio::time::timeout(after, resolution).await {
                Ok(r) => r,
                Err(_) => {
                    // Upstreams are slow: refresh in the background, answer stale now.
                    let this = Arc::clone(self);
                    let refresh = req.clone();
                    tokio::spawn(async move { this.prefetch(&refresh).await });
                    if let Some(len) = self.write_stale(req, &mut out) {
                        out.truncate(len);
                        return out;
                    }
                    self.forwarder.resolve(&req.key, &req.question).await
                }
            },
        };
        let now = Instant::now();
        match result {
            Ok(answer) => match self.entry_from(&answer.bytes, Source::Upstream, now) {
                Ok((entry, ttl)) => {
                    let len = entry.write_response(&mut out, &client, now, false, req.max_len);
                    if leader && let Some(ttl) = ttl {
                        self.cache.insert(&req.key, entry, ttl, now);
                    }
                    out.truncate(len);
                    return out;
                }
                Err(e) => {
                    tracing::warn!(upstream = %answer.from, error = %e, "unusable upstream answer");
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "resolution failed");
                if serve_stale && let Some(len) = self.write_stale(req, &mut out) {
                    out.truncate(len);
                    return out;
                }
            }
        }
        let len = req.write_servfail_bare(&mut out);
        out.truncate(len);
        out
    }

    /// Write the answer from an expired (or meanwhile refreshed) entry, if the cache still
    /// holds one within its stale window. Returns the length.
    fn write_stale(&self, req: &MissRequest, out: &mut [u8]) -> Option<usize> {
        let now = Instant::now();
        let client = req.client();
        let len = self.cache.lookup(&req.key, now, true, |entry, freshness| {
            let stale = matches!(freshness, Freshness::Stale);
            entry.write_response(out, &client, now, stale, req.max_len)
        })?;
        self.metrics.count(Event::StaleServed);
        Some(len)
    }

    /// Refresh an entry in the background (prefetch): resolve and replace the cached answer.
    pub async fn prefetch(&self, req: &MissRequest) {
        let (result, leader) = self.forwarder.resolve(&req.key, &req.question).await;
        let Ok(answer) = result else { return };
        if !leader {
            return;
        }
        let now = Instant::now();
        match self.entry_from(&answer.bytes, Source::Prefetch, now) {
            Ok((entry, Some(ttl))) => self.cache.insert(&req.key, entry, ttl, now),
            Ok((_, None)) => {}
            Err(e) => {
                tracing::warn!(upstream = %answer.from, error = %e, "unusable upstream answer on prefetch")
            }
        }
    }

    /// Build a cache entry from an upstream reply under the current policy.
    fn entry_from(
        &self,
        bytes: &[u8],
        source: Source,
        now: Instant,
    ) -> Result<(Entry, Option<u32>), String> {
        let msg = Message::parse(bytes).map_err(|e| e.to_string())?;
        let policy: Arc<CachePolicy> = self.cache.policy();
        Entry::from_response(&msg, &policy, now, source).map_err(|e| e.to_string())
    }
}

/// An answer with no records that `process` sends instead of looking up the cache.
struct ErrorReply<'q> {
    /// The client's message ID.
    id: u16,
    /// The client's header flags.
    flags: u16,
    /// The rcode in the header (low 4 bits).
    rcode: u8,
    /// The rcode counted in the metrics (differs for BADVERS, an extended rcode).
    counted: u16,
    /// The client's question to echo, if it was readable.
    question: Option<&'q [u8]>,
    /// Our OPT record and its extended-rcode bits, if the client sent one.
    opt: Option<(ClientOpt, u8)>,
    /// Set TC (a rate-limited answer that slips through truncated).
    truncated: bool,
}

impl ErrorReply<'_> {
    /// A bare header answer with `rcode`, counted as such.
    fn new(id: u16, flags: u16, rcode: u8) -> ErrorReply<'static> {
        ErrorReply {
            id,
            flags,
            rcode,
            counted: rcode.into(),
            question: None,
            opt: None,
            truncated: false,
        }
    }
}

/// Write and count an error answer (kept out of line: the cache-hit path never takes it).
#[cold]
#[inline(never)]
fn error_reply(metrics: Local<'_>, out: &mut [u8], reply: ErrorReply<'_>) -> Outcome {
    if reply.rcode == rcode::FORMERR {
        metrics.count(Event::Malformed);
    }
    metrics.count_rcode(reply.counted);
    let len = write_error(
        out,
        reply.id,
        reply.flags,
        reply.rcode,
        reply.question,
        reply.opt,
    );
    if reply.truncated
        && let Some(flags) = out.get_mut(2)
    {
        *flags |= (Header::TC >> 8) as u8;
    }
    Outcome::Reply {
        len,
        prefetch: None,
    }
}

/// What the guard decided for a query that goes on to a miss.
#[derive(Clone, Copy, Debug)]
struct Guarded {
    /// The COOKIE option value for the answer.
    cookie: Option<[u8; REPLY_LEN]>,
    /// The amplification cap lowered the size limit.
    capped: bool,
}

/// Whether an answer has the TC flag.
fn is_truncated(answer: &[u8]) -> bool {
    answer
        .get(2)
        .is_some_and(|b| u16::from(*b) << 8 & Header::TC != 0)
}

/// Build the owned request for a miss (allocates; the miss path may).
fn miss_request(
    query: &Query<'_>,
    key: &[u8],
    question: &[u8],
    client_opt: Option<ClientOpt>,
    max_len: usize,
    guarded: Guarded,
) -> MissRequest {
    let mut name = [0u8; heimdall_wire::MAX_NAME_LEN];
    let name_len = query.question.name.write_lower(&mut name).unwrap_or(0);
    MissRequest {
        key: key.into(),
        question: Question {
            name: name[..name_len].into(),
            qtype: query.question.qtype,
            qclass: query.question.qclass,
            dnssec_ok: client_opt.is_some_and(|o| o.dnssec_ok),
            checking_disabled: query.header.cd(),
        },
        client_question: question.into(),
        id: query.header.id,
        flags: query.header.flags,
        client_opt,
        max_len,
        cookie: guarded.cookie,
        capped: guarded.capped,
    }
}

/// Write an answer with no records: `rcode`, the question if known, and our OPT record (with
/// the given extended-RCODE upper bits) if the client sent one. Returns the length (0 if `out`
/// is too small even for a header).
pub fn write_error(
    out: &mut [u8],
    id: u16,
    client_flags: u16,
    rcode: u8,
    question: Option<&[u8]>,
    opt: Option<(ClientOpt, u8)>,
) -> usize {
    // QR, the client's opcode, RD and CD; RA because we recurse for the client.
    let flags = Header::QR
        | (client_flags & (0x7800 | Header::RD | Header::CD))
        | Header::RA
        | u16::from(rcode & 0x0f);
    let Ok(mut w) = MessageWriter::new(out) else {
        return 0;
    };
    w.set_header(id, flags);
    if let Some(q) = question {
        // The question bytes are the client's own (name + type + class), already validated.
        let split = q.len().saturating_sub(4);
        let (name, tail) = q.split_at(split);
        if let [t0, t1, c0, c1] = *tail {
            let _ = w.question(
                name,
                u16::from_be_bytes([t0, t1]),
                u16::from_be_bytes([c0, c1]),
            );
        }
    }
    if let Some((o, ext)) = opt {
        let edns_flags = if o.dnssec_ok { 0x8000 } else { 0 };
        let _ = w.opt(o.our_udp_size, ext, 0, edns_flags, &[]);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil;
    use crate::cluster::settings::ClusterSettings;
    use crate::config::Config;
    use crate::guard::GuardPolicy;

    /// The loopback client most tests send from.
    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A query for `www.example.` A, RD set, with an OPT record (1232 bytes) carrying `cookie`
    /// as its COOKIE option when given.
    fn query(id: u16, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        let options = cookie.map_or_else(Vec::new, |c| {
            let mut o = vec![0, 10];
            o.extend_from_slice(&(c.len() as u16).to_be_bytes());
            o.extend_from_slice(c);
            o
        });
        q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
        q.extend_from_slice(&(options.len() as u16).to_be_bytes());
        q.extend_from_slice(&options);
        q
    }

    /// A resolver whose guard runs `change`d default settings.
    fn resolver(change: impl FnOnce(&mut ClusterSettings)) -> Resolver {
        let resolver = crate::server::build_resolver(&Config::default());
        let mut settings = ClusterSettings::default();
        change(&mut settings);
        resolver.guard().set_policy(GuardPolicy::from(&settings));
        resolver
    }

    /// The reply bytes of a `Reply` outcome.
    fn reply(outcome: Outcome, out: &[u8]) -> Vec<u8> {
        match outcome {
            Outcome::Reply { len, .. } => out[..len].to_vec(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The COOKIE option value at the end of a reply (its last 24 bytes after a 4-byte header).
    fn trailing_cookie(reply: &[u8]) -> &[u8] {
        let (head, value) = reply.split_at(reply.len() - REPLY_LEN);
        assert_eq!(
            &head[head.len() - 4..],
            &[0, 10, 0, 24],
            "COOKIE option header"
        );
        value
    }

    /// A query for `qname` A, RD set, no OPT record.
    fn query_for(qname: &str) -> Vec<u8> {
        let mut q = vec![0, 9, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(testutil::question(qname, 1));
        q
    }

    /// An upper-case name of `len` bytes in wire form: 63-byte labels, the last one shorter.
    fn name_of_len(len: usize) -> String {
        let mut labels = Vec::new();
        let mut left = len - 1;
        while left > 0 {
            let label = (left - 1).min(63);
            labels.push("X".repeat(label));
            left -= label + 1;
        }
        labels.join(".")
    }

    /// Names whose keys fill the short key buffer exactly, overflow it by one, or are the
    /// longest there are, all reach the cache under their full lower-cased key.
    #[test]
    fn keys_on_both_sides_of_the_short_buffer() {
        let resolver = resolver(|_| {});
        let mut out = [0u8; 1232];
        for len in [
            SHORT_KEY_LEN - 5 - 1,
            SHORT_KEY_LEN - 5,
            SHORT_KEY_LEN - 4,
            255,
        ] {
            let name = testutil::wire_name(&name_of_len(len));
            assert_eq!(name.len(), len);
            let q = query_for(&name_of_len(len));
            let outcome = resolver.process(&q, &mut out, Client::tcp(LOCALHOST), Instant::now());
            let Outcome::Miss(req) = outcome else {
                panic!("a {len}-byte name: expected a miss, got {outcome:?}");
            };
            let mut expected = name.to_ascii_lowercase();
            expected.extend_from_slice(&[0, 1, 0, 1, 0]);
            assert_eq!(&req.key[..], &expected[..], "a {len}-byte name");
        }
    }

    /// A source outside `acl.allow_from` gets REFUSED with the question and OPT, and is counted.
    #[test]
    fn acl_refuses_outside_sources() {
        let resolver = resolver(|s| s.acl.allow_from = vec!["10.0.0.0/8".into()]);
        let mut out = [0u8; 1232];
        let q = query(7, None);
        let r = reply(
            resolver.process(&q, &mut out, Client::udp(LOCALHOST), Instant::now()),
            &out,
        );
        assert_eq!(r[3] & 0x0f, rcode::REFUSED);
        assert_eq!(
            &r[4..12],
            &[0, 1, 0, 0, 0, 0, 0, 1],
            "question and OPT echoed"
        );
        let inside = IpAddr::from([10, 1, 2, 3]);
        let outcome = resolver.process(&q, &mut out, Client::tcp(inside), Instant::now());
        assert!(matches!(outcome, Outcome::Miss(_)), "{outcome:?}");
        assert_eq!(resolver.metrics().snapshot().acl_refused, 1);
    }

    /// A client cookie alone goes on to the miss with a fresh server cookie to append and room
    /// left for it; the cookie it earns is valid and echoed; a wrong one is BADCOOKIE (7 in the
    /// header, 1 in the OPT record) with a fresh cookie; a 12-byte option is FORMERR.
    #[test]
    fn cookies_on_the_query_path() {
        let resolver = resolver(|_| {});
        let mut out = [0u8; 1232];
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let now = Instant::now();
        let q = query(1, Some(&client));
        let Outcome::Miss(req) = resolver.process(&q, &mut out, Client::udp(LOCALHOST), now) else {
            panic!("expected a miss");
        };
        let cookie = req.cookie.expect("a cookie for the answer");
        assert_eq!(&cookie[..8], &client);
        assert_eq!(req.max_len, 1232 - REPLY_OPTION_LEN);
        let shed = req.write_servfail(&mut out);
        assert_eq!(trailing_cookie(&out[..shed]), &cookie);

        let q = query(2, Some(&cookie));
        let Outcome::Miss(req) = resolver.process(&q, &mut out, Client::udp(LOCALHOST), now) else {
            panic!("expected a miss");
        };
        assert_eq!(req.cookie, Some(cookie), "a recent valid cookie is echoed");

        let mut wrong = cookie;
        wrong[20] ^= 1;
        let q = query(3, Some(&wrong));
        let r = reply(
            resolver.process(&q, &mut out, Client::udp(LOCALHOST), now),
            &out,
        );
        assert_eq!(r[3] & 0x0f, (BADCOOKIE & 0x0f) as u8);
        let opt_ttl = r.len() - REPLY_OPTION_LEN - 6;
        assert_eq!(
            r[opt_ttl],
            (BADCOOKIE >> 4) as u8,
            "extended rcode in the OPT TTL"
        );
        let fresh = trailing_cookie(&r);
        assert_eq!(&fresh[..8], &client);
        assert_ne!(fresh, &wrong[..]);

        let q = query(4, Some(&[9u8; 12]));
        let r = reply(
            resolver.process(&q, &mut out, Client::udp(LOCALHOST), now),
            &out,
        );
        assert_eq!(r[3] & 0x0f, rcode::FORMERR);

        let snap = resolver.metrics().snapshot();
        assert_eq!(
            (snap.cookies_issued, snap.cookies_valid, snap.cookies_bad),
            (2, 1, 1)
        );
    }

    /// Over the limit (1 per second, burst 1, slip 1) a cookieless UDP query slips through as
    /// TC=1 with no records; a loopback source is exempt while `exempt_loopback` holds, TCP
    /// always, and so is a valid server cookie.
    #[test]
    fn rate_limit_slips_and_exempts() {
        let limited = resolver(|s| {
            s.rate_limit.qps_per_prefix = 1;
            s.rate_limit.burst = 1;
            s.rate_limit.slip = 1;
            s.rate_limit.exempt_loopback = false;
        });
        let mut out = [0u8; 1232];
        let now = Instant::now();
        let udp = Client::udp(LOCALHOST);
        let client = [8u8; 8];
        let first = limited.process(&query(1, Some(&client)), &mut out, udp, now);
        let Outcome::Miss(req) = first else {
            panic!("the first query is within the burst: {first:?}");
        };
        let cookie = req.cookie.expect("cookie");
        let r = reply(limited.process(&query(2, None), &mut out, udp, now), &out);
        assert_eq!(r[2] & 0x02, 0x02, "TC set");
        assert_eq!(&r[6..8], &[0, 0], "no answers");
        let tcp = limited.process(&query(3, None), &mut out, Client::tcp(LOCALHOST), now);
        assert!(matches!(tcp, Outcome::Miss(_)), "{tcp:?}");
        let valid = limited.process(&query(4, Some(&cookie)), &mut out, udp, now);
        assert!(matches!(valid, Outcome::Miss(_)), "{valid:?}");
        assert_eq!(limited.metrics().snapshot().rate_limited_slipped, 1);

        let exempt = resolver(|s| {
            s.rate_limit.qps_per_prefix = 1;
            s.rate_limit.burst = 1;
        });
        for id in 0..5 {
            let outcome = exempt.process(&query(id, None), &mut out, udp, now);
            assert!(matches!(outcome, Outcome::Miss(_)), "{outcome:?}");
        }
    }

    /// A cookieless UDP client's answer limit is the amplification cap when that is below its
    /// EDNS size; with a cap of 0, or over TCP, it is not.
    #[test]
    fn amplification_cap_lowers_the_limit() {
        let capped = resolver(|s| s.rate_limit.exempt_loopback = false);
        let mut out = [0u8; 1232];
        let now = Instant::now();
        let q = query(1, None);
        let Outcome::Miss(req) = capped.process(&q, &mut out, Client::udp(LOCALHOST), now) else {
            panic!("expected a miss");
        };
        assert_eq!((req.max_len, req.capped), (10 * q.len(), true));
        let Outcome::Miss(req) = capped.process(&q, &mut out, Client::tcp(LOCALHOST), now) else {
            panic!("expected a miss");
        };
        assert_eq!((req.max_len, req.capped), (out.len(), false));
        let uncapped = resolver(|s| {
            s.rate_limit.exempt_loopback = false;
            s.rate_limit.max_amplification = 0;
        });
        let Outcome::Miss(req) = uncapped.process(&q, &mut out, Client::udp(LOCALHOST), now) else {
            panic!("expected a miss");
        };
        assert_eq!((req.max_len, req.capped), (1232, false));
    }
}
