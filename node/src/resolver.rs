//! Glue between the cache and upstream forwarding: answer a query, from cache or upstream.
//!
//! [`Resolver::process`] is the synchronous part shared by the UDP workers and the TCP
//! connections: it parses the query in place, answers errors and cache hits directly into the
//! caller's buffer (no allocation on a hit), and otherwise hands back an owned [`MissRequest`].
//! [`Resolver::resolve_miss`] is the asynchronous part that runs on the tokio runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_wire::{Header, Message, MessageWriter, Query, QueryError, parse_query, rcode};

use crate::cache::{
    Cache, CachePolicy, ClientOpt, ClientQuery, Entry, Freshness, MAX_KEY_LEN, Source, write_key,
};
use crate::stats::Counter;
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
    /// Largest answer the client can take on its transport.
    pub max_len: usize,
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

    /// Write a SERVFAIL for this request into `out` (used when load is shed or every upstream
    /// failed with nothing stale to serve). Returns the length.
    pub fn write_servfail(&self, out: &mut [u8]) -> usize {
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

/// Counters of the query path (summed over all transports; per-thread slots).
#[derive(Debug, Default)]
pub struct ResolverStats {
    /// Answers served from cache.
    pub cache_hits: Counter,
    /// Queries that went upstream (including coalesced ones).
    pub cache_misses: Counter,
    /// Expired answers served because every upstream failed (RFC 8767).
    pub stale_served: Counter,
    /// SERVFAIL answers sent because resolution failed.
    pub servfail: Counter,
    /// FORMERR answers sent.
    pub formerr: Counter,
    /// NOTIMP answers sent.
    pub notimp: Counter,
    /// Messages dropped without an answer.
    pub dropped: Counter,
    /// Background refreshes started.
    pub prefetches: Counter,
}

/// The query engine shared by every worker and connection.
#[derive(Debug)]
pub struct Resolver {
    /// The answer cache.
    cache: Cache,
    /// Upstream forwarding.
    forwarder: Forwarder,
    /// Our advertised EDNS UDP payload size and the clamp for clients' sizes.
    max_udp_payload: u16,
    /// Counters.
    stats: ResolverStats,
    /// With serve-stale, how long to wait for upstreams before answering from an expired
    /// entry (RFC 8767 client response timer); None = only after every upstream failed.
    stale_answer_after: Option<Duration>,
}

impl Resolver {
    /// Build the engine.
    pub fn new(cache: Cache, forwarder: Forwarder, max_udp_payload: u16) -> Resolver {
        Resolver {
            cache,
            forwarder,
            max_udp_payload: max_udp_payload.max(MIN_UDP_PAYLOAD),
            stats: ResolverStats::default(),
            stale_answer_after: None,
        }
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

    /// The query-path counters.
    pub fn stats(&self) -> &ResolverStats {
        &self.stats
    }

    /// Handle one received message: errors and cache hits are answered into `out`.
    /// Never allocates on a cache hit.
    pub fn process(
        &self,
        packet: &[u8],
        out: &mut [u8],
        transport: Transport,
        now: Instant,
    ) -> Outcome {
        let query = match parse_query(packet) {
            Ok(q) => q,
            Err(QueryError::Drop) => {
                self.stats.dropped.incr();
                return Outcome::Drop;
            }
            Err(QueryError::FormErr { id, flags }) => {
                self.stats.formerr.incr();
                let len = write_error(out, id, flags, rcode::FORMERR, None, None);
                return Outcome::Reply {
                    len,
                    prefetch: None,
                };
            }
            Err(QueryError::NotImp { id, flags }) => {
                self.stats.notimp.incr();
                let len = write_error(out, id, flags, rcode::NOTIMP, None, None);
                return Outcome::Reply {
                    len,
                    prefetch: None,
                };
            }
        };
        let header = query.header;
        let question = packet
            .get(query.question.start..query.question.end)
            .unwrap_or(&[]);
        // A compressed question name (a pointer into the header) cannot be echoed or keyed
        // safely: answers are laid out after an uncompressed question.
        if question.len() != query.question.name.wire_len() + 4 {
            self.stats.formerr.incr();
            let len = write_error(out, header.id, header.flags, rcode::FORMERR, None, None);
            return Outcome::Reply {
                len,
                prefetch: None,
            };
        }
        let client_opt = query.opt.map(|o| ClientOpt {
            dnssec_ok: o.dnssec_ok(),
            our_udp_size: self.max_udp_payload,
        });
        if let (Some(opt), Some(ours)) = (query.opt, client_opt)
            && opt.version > 0
        {
            let len = write_error(
                out,
                header.id,
                header.flags,
                0,
                Some(question),
                Some((ours, BADVERS_EXT)),
            );
            return Outcome::Reply {
                len,
                prefetch: None,
            };
        }
        let qtype = query.question.qtype;
        if qtype == QTYPE_AXFR || qtype == QTYPE_IXFR {
            let len = write_error(
                out,
                header.id,
                header.flags,
                rcode::REFUSED,
                Some(question),
                client_opt.map(|o| (o, 0)),
            );
            return Outcome::Reply {
                len,
                prefetch: None,
            };
        }
        let max_len = match transport {
            Transport::Udp => usize::from(query.opt.map_or(MIN_UDP_PAYLOAD, |o| {
                o.udp_payload.clamp(MIN_UDP_PAYLOAD, self.max_udp_payload)
            })),
            Transport::Tcp => MAX_TCP_MESSAGE,
        }
        .min(out.len());

        let mut key = [0u8; MAX_KEY_LEN];
        let dnssec_ok = client_opt.is_some_and(|o| o.dnssec_ok);
        let key_len = write_key(
            &query.question.name,
            qtype,
            query.question.qclass,
            dnssec_ok,
            header.cd(),
            &mut key,
        );
        let key = &key[..key_len];
        let client = ClientQuery {
            id: header.id,
            flags: header.flags,
            question,
            opt: client_opt,
        };
        let hit = self.cache.lookup(key, now, false, |entry, freshness| {
            let len = entry.write_response(out, &client, now, false, max_len);
            (
                len,
                matches!(freshness, Freshness::Fresh { prefetch: true }),
            )
        });
        match hit {
            Some((len, prefetch)) => {
                self.stats.cache_hits.incr();
                let prefetch = prefetch.then(|| {
                    self.stats.prefetches.incr();
                    miss_request(&query, key, question, client_opt, max_len)
                });
                Outcome::Reply { len, prefetch }
            }
            None => {
                self.stats.cache_misses.incr();
                Outcome::Miss(miss_request(&query, key, question, client_opt, max_len))
            }
        }
    }

    /// Resolve a miss upstream, cache the answer, and return the client's answer bytes.
    /// When every upstream fails, an expired answer is served if serve-stale allows it,
    /// otherwise SERVFAIL. With a stale answer at hand, upstreams get `stale_answer_after`
    /// to answer before the stale one is sent, and the refresh goes on in the background.
    pub async fn resolve_miss(self: &Arc<Self>, req: &MissRequest) -> Vec<u8> {
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
        self.stats.servfail.incr();
        let len = req.write_servfail(&mut out);
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
        self.stats.stale_served.incr();
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

/// Build the owned request for a miss (allocates; the miss path may).
fn miss_request(
    query: &Query<'_>,
    key: &[u8],
    question: &[u8],
    client_opt: Option<ClientOpt>,
    max_len: usize,
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
