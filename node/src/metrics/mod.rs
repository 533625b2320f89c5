//! The node's statistics: per-thread counters, latency histograms and top-names sketches,
//! written on the query path without locks, shared cache lines or allocation, and summed on
//! read into the control plane's `StatsSnapshot`, its `TopNamesReply` and the Prometheus text
//! of /metrics (all three built from one [`Collected`] read).
//!
//! Each thread writes its own [`Shard`] (picked by [`crate::stats::thread_slot`]): counters are
//! plain relaxed load + store (no locked instruction), as only that thread writes them. With
//! more threads than shards two threads share one, which stays memory-safe and at worst loses
//! a count to a race.

mod histogram;
mod http;
mod prometheus;
mod sketch;

pub use histogram::{Histogram, HistogramTotals};
pub use http::serve;
pub use sketch::CAPACITY as TOP_NAMES_CAPACITY;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heimdall_proto::v1::{
    LabeledCount, LatencySummary, StatsSnapshot, TopName, TopNamesReply, UpstreamStatus,
};
use heimdall_wire::Name;

use crate::cache::Cache;
use crate::stats::{SLOTS, thread_slot};
use crate::upstream::Forwarder;
use histogram::bump;
use sketch::Sketch;

/// Length of a top-names window; a reply covers the previous full window and the current one.
pub const WINDOW_SECS: u64 = 60;
/// One query in this many is offered to the top-names sketch (and weighted by it). Measured
/// with callgrind on the `resolver/process_hit` bench: offering every query cost about 260 more
/// instructions per cache hit (+13%) than one in eight (see ARCHITECTURE.md, "Stats and
/// metrics").
pub const SAMPLE_EVERY: u64 = 8;

/// Something the query path counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// A message received over UDP.
    UdpQuery,
    /// A message received over TCP.
    TcpQuery,
    /// A query answered from the cache (fresh).
    CacheHit,
    /// A query that went upstream (including coalesced ones).
    CacheMiss,
    /// An expired answer served (RFC 8767).
    StaleServed,
    /// A background refresh started.
    Prefetch,
    /// A message that could not be read as a query (answered FORMERR, or dropped).
    Malformed,
    /// A miss answered SERVFAIL because the runtime queue was full.
    Shed,
    /// A TCP connection accepted.
    TcpConnection,
    /// A TCP connection refused at the connection limit.
    TcpRefused,
    /// A TCP connection closed for a bad or incomplete frame.
    TcpBadFrame,
    /// A query refused because its source is not in `acl.allow_from`.
    AclRefused,
    /// A fresh server cookie put in an answer.
    CookieIssued,
    /// A query with a valid server cookie.
    CookieValid,
    /// A query with a server cookie that is not valid (answered BADCOOKIE).
    CookieBad,
    /// A query over its prefix's rate limit that got no answer.
    RateLimitDropped,
    /// A query over its prefix's rate limit answered truncated (slip).
    RateLimitSlipped,
    /// A UDP answer truncated by the amplification cap.
    AmplificationCapped,
}

/// Number of [`Event`] kinds.
const EVENTS: usize = 18;

/// Query types counted by name; everything else is "other".
pub const QTYPES: [(u16, &str); 17] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (43, "DS"),
    (46, "RRSIG"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
    (257, "CAA"),
];
/// The label of query types not in [`QTYPES`].
pub const QTYPE_OTHER: &str = "other";

/// Response codes by value (0..=15 from the header, 16 = BADVERS, an extended rcode), then
/// BADCOOKIE (23, counted at [`BADCOOKIE_INDEX`]).
pub const RCODES: [&str; 18] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
    "BADVERS",
    "BADCOOKIE",
];

/// Where [`RCODES`] counts BADCOOKIE (extended rcode 23).
const BADCOOKIE_INDEX: usize = 17;
/// Rcodes always listed (0 when unseen), so dashboards have stable series.
const RCODES_ALWAYS: usize = 6;

/// The slot of a query type in a shard's table (the last one is "other").
#[inline]
fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        35 => 9,
        43 => 10,
        46 => 11,
        48 => 12,
        64 => 13,
        65 => 14,
        255 => 15,
        257 => 16,
        _ => QTYPES.len(),
    }
}

/// One thread's counters, alone on its cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    /// Counts per [`Event`].
    events: [AtomicU64; EVENTS],
    /// Queries per type ([`QTYPES`] order, then "other").
    qtypes: [AtomicU64; QTYPES.len() + 1],
    /// Responses per rcode ([`RCODES`] order).
    rcodes: [AtomicU64; RCODES.len()],
    /// Time from receiving a query to sending its answer.
    latency: Histogram,
    /// Queries seen by the top-names sampler.
    sampled: AtomicU64,
    /// Top names of the current and the previous window (index: window % 2).
    sketches: [Sketch; 2],
}

/// Every counter merged over the threads at one moment, with the node-wide parts (cache,
/// upstreams). The one source of Stats, top names and /metrics.
#[derive(Clone, Debug)]
pub struct Collected {
    /// The control plane's snapshot (`node_id` and raft fields left 0).
    pub snapshot: StatsSnapshot,
    /// Query latency buckets.
    pub latency: HistogramTotals,
    /// Upstream round-trip buckets.
    pub upstream_rtt: HistogramTotals,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP connections refused at the limit.
    pub tcp_refused: u64,
    /// TCP connections closed for a bad frame.
    pub tcp_bad_frames: u64,
    /// Answers stored in the cache.
    pub cache_inserts: u64,
    /// Upstream replies ignored because they did not match the query (wrong ID or question).
    pub upstream_mismatched: u64,
    /// Gossip counters in full (the snapshot carries only sent, received and rejected).
    pub gossip: crate::gossip::GossipSnapshot,
}

/// The node's statistics.
pub struct Metrics {
    /// When the node started (uptime, top-names windows).
    start: Instant,
    /// One shard per thread slot.
    shards: Box<[Shard]>,
    /// The answer cache (size, bytes, evictions).
    cache: Arc<Cache>,
    /// The forwarder (upstream queries, per-upstream health and RTT, RTT histogram).
    forwarder: Arc<Forwarder>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("uptime", &self.start.elapsed())
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// The calling thread's shard of a [`Metrics`], from [`Metrics::local`].
#[derive(Clone, Copy, Debug)]
pub struct Local<'a> {
    /// The shard only this thread writes.
    shard: &'a Shard,
    /// When the node started (top-names windows).
    start: Instant,
}

impl Local<'_> {
    /// Count `n` `event`s.
    #[inline]
    pub fn add(&self, event: Event, n: u64) {
        if let Some(c) = self.shard.events.get(event as usize) {
            bump(c, n);
        }
    }

    /// Count one `event`.
    #[inline]
    pub fn count(&self, event: Event) {
        self.add(event, 1);
    }

    /// Count one query of type `qtype`.
    #[inline]
    pub fn count_qtype(&self, qtype: u16) {
        if let Some(c) = self.shard.qtypes.get(qtype_index(qtype)) {
            bump(c, 1);
        }
    }

    /// Count one response with `rcode` (0..=15, 16 for BADVERS, 23 for BADCOOKIE).
    #[inline]
    pub fn count_rcode(&self, rcode: u16) {
        let index = match rcode {
            23 => BADCOOKIE_INDEX,
            // Other extended rcodes are never sent; their index is past the table.
            code => usize::from(code).min(RCODES.len()),
        };
        if let Some(c) = self.shard.rcodes.get(index) {
            bump(c, 1);
        }
    }

    /// Count one response by the rcode in its header (nothing for a message under 4 bytes).
    #[inline]
    pub fn count_answer(&self, answer: &[u8]) {
        if let Some(b) = answer.get(3) {
            self.count_rcode(u16::from(b & 0x0f));
        }
    }

    /// Record `n` answers sent `latency` after their queries arrived.
    #[inline]
    pub fn record_latency(&self, latency: Duration, n: u64) {
        self.shard.latency.record_owned(latency, n);
    }

    /// Offer a queried name (lower-cased wire form) to the top-names sketch, one query in
    /// [`SAMPLE_EVERY`]. No allocation.
    #[inline]
    pub fn offer_name(&self, name: &[u8], now: Instant) {
        let shard = self.shard;
        let tick = shard.sampled.load(std::sync::atomic::Ordering::Relaxed);
        bump(&shard.sampled, 1);
        if !tick.is_multiple_of(SAMPLE_EVERY) {
            return;
        }
        let window = now.saturating_duration_since(self.start).as_secs() / WINDOW_SECS;
        let Some(sketch) = shard.sketches.get((window % 2) as usize) else {
            return;
        };
        if sketch.window() != window {
            sketch.reset(window);
        }
        sketch.offer(name, SAMPLE_EVERY);
    }
}

/// Sum one counter over the shards.
fn sum(shards: &[Shard], counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
    shards.iter().fold(0u64, |acc, s| {
        acc.wrapping_add(counter(s).load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// [`SLOTS`] shards, all zero (allocated zeroed: untouched shards cost no memory pages).
fn zeroed_shards() -> Box<[Shard]> {
    let layout = std::alloc::Layout::new::<[Shard; SLOTS]>();
    // SAFETY: the layout is non-zero sized (a Shard is not empty). A Shard is made only of
    // atomic integers (in arrays and structs), for which all-zero bytes are valid values: every
    // counter at 0, every sketch empty for window 0. The pointer comes from the global
    // allocator with the layout of a [Shard; SLOTS], which is what Box<[Shard]> frees with.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<Shard>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, SLOTS))
    }
}

impl Metrics {
    /// Statistics over these parts, with uptime counted from now.
    pub fn new(cache: Arc<Cache>, forwarder: Arc<Forwarder>) -> Metrics {
        Metrics {
            start: Instant::now(),
            shards: zeroed_shards(),
            cache,
            forwarder,
        }
    }

    /// The calling thread's counters: take it once per query and count through it (one
    /// thread-local read instead of one per count).
    #[inline]
    pub fn local(&self) -> Local<'_> {
        Local {
            shard: &self.shards[thread_slot() % SLOTS],
            start: self.start,
        }
    }

    /// Count one `event` on the calling thread.
    #[inline]
    pub fn count(&self, event: Event) {
        self.local().add(event, 1);
    }

    /// Count one response with `rcode` on the calling thread (0..=15, 16 for BADVERS, 23 for
    /// BADCOOKIE).
    #[inline]
    pub fn count_rcode(&self, rcode: u16) {
        self.local().count_rcode(rcode);
    }

    /// Count one response by the rcode in its header, on the calling thread.
    #[inline]
    pub fn count_answer(&self, answer: &[u8]) {
        self.local().count_answer(answer);
    }

    /// Record `n` answers sent `latency` after their queries arrived, on the calling thread.
    #[inline]
    pub fn record_latency(&self, latency: Duration, n: u64) {
        self.local().record_latency(latency, n);
    }

    /// Read and merge every counter now.
    pub fn collect(&self) -> Collected {
        let shards = &self.shards[..];
        let event = |e: Event| sum(shards, |s| &s.events[e as usize]);
        let udp = event(Event::UdpQuery);
        let tcp = event(Event::TcpQuery);
        let hits = event(Event::CacheHit);
        let misses = event(Event::CacheMiss);
        let mut latency = HistogramTotals::default();
        for s in shards {
            s.latency.add_to(&mut latency);
        }
        let mut upstream_rtt = HistogramTotals::default();
        self.forwarder.stats().rtt.add_to(&mut upstream_rtt);
        let cache = self.cache.stats();
        let gossip = self.cache.gossip_stats().snapshot();
        let queries_by_type = QTYPES
            .iter()
            .map(|(_, name)| *name)
            .chain([QTYPE_OTHER])
            .enumerate()
            .map(|(i, label)| LabeledCount {
                label: label.to_owned(),
                count: sum(shards, |s| &s.qtypes[i]),
            })
            .collect();
        let responses_by_rcode = RCODES
            .iter()
            .enumerate()
            .map(|(i, label)| (i, label, sum(shards, |s| &s.rcodes[i])))
            .filter(|(i, _, count)| *i < RCODES_ALWAYS || *count > 0)
            .map(|(_, label, count)| LabeledCount {
                label: (*label).to_owned(),
                count,
            })
            .collect();
        let snapshot = StatsSnapshot {
            node_id: 0,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uptime_seconds: self.start.elapsed().as_secs(),
            queries_total: udp.wrapping_add(tcp),
            queries_by_protocol: vec![
                LabeledCount {
                    label: "udp".to_owned(),
                    count: udp,
                },
                LabeledCount {
                    label: "tcp".to_owned(),
                    count: tcp,
                },
            ],
            queries_by_type,
            responses_by_rcode,
            cache_hits: hits,
            cache_misses: misses,
            cache_evictions: cache.evictions,
            cache_entries: self.cache.len() as u64,
            cache_bytes: self.cache.bytes() as u64,
            cache_hit_ratio: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            upstream_queries: self.forwarder.stats().queries.get(),
            upstreams: self
                .forwarder
                .upstreams()
                .into_iter()
                .map(|u| UpstreamStatus {
                    addr: u.addr.to_string(),
                    healthy: u.healthy,
                    srtt_us: u.srtt.as_micros() as u64,
                    queries: u.answers + u.failures,
                    failures: u.failures,
                })
                .collect(),
            latency: Some(LatencySummary {
                count: latency.count(),
                p50_us: latency.quantile_us(0.50),
                p90_us: latency.quantile_us(0.90),
                p99_us: latency.quantile_us(0.99),
                p999_us: latency.quantile_us(0.999),
            }),
            malformed: event(Event::Malformed),
            shed: event(Event::Shed),
            gossip_sent: gossip.entries_sent,
            gossip_received: gossip.entries_accepted,
            gossip_rejected: gossip.rejected_total(),
            // Raft state is the control plane's to fill in (it holds the Raft handle).
            raft_term: 0,
            raft_last_applied: 0,
            raft_auth_failures: 0,
            stale_served: event(Event::StaleServed),
            prefetches: event(Event::Prefetch),
            acl_refused: event(Event::AclRefused),
            cookies_issued: event(Event::CookieIssued),
            cookies_valid: event(Event::CookieValid),
            cookies_bad: event(Event::CookieBad),
            rate_limited_dropped: event(Event::RateLimitDropped),
            rate_limited_slipped: event(Event::RateLimitSlipped),
            amplification_truncated: event(Event::AmplificationCapped),
        };
        Collected {
            snapshot,
            latency,
            upstream_rtt,
            tcp_connections: event(Event::TcpConnection),
            tcp_refused: event(Event::TcpRefused),
            tcp_bad_frames: event(Event::TcpBadFrame),
            cache_inserts: cache.inserts,
            upstream_mismatched: self.forwarder.stats().mismatched.get(),
            gossip,
        }
    }

    /// A snapshot of every counter. `node_id` and the raft fields are left 0 for the control
    /// plane to fill in.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.collect().snapshot
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter.
    pub fn prometheus(&self) -> String {
        prometheus::render(&self.collect())
    }

    /// The most queried names over the previous full window and the current one, most
    /// queried first, at most `limit` (0 means 10; at most [`TOP_NAMES_CAPACITY`]).
    pub fn top_names(&self, limit: usize) -> TopNamesReply {
        let limit = match limit {
            0 => 10,
            n => n.min(sketch::CAPACITY),
        };
        let elapsed = self.start.elapsed().as_secs();
        let window = elapsed / WINDOW_SECS;
        let mut merged = HashMap::new();
        let mut queries = 0u64;
        for shard in &self.shards[..] {
            for sketch in &shard.sketches {
                let w = sketch.window();
                if w == window || (window > 0 && w == window - 1) {
                    queries += sketch.offered();
                    sketch.merge_into(&mut merged);
                }
            }
        }
        let names = sketch::top(merged, limit)
            .into_iter()
            .map(|c| TopName {
                name: Name::from_wire(&c.name).map_or_else(
                    |_| String::from_utf8_lossy(&c.name).into_owned(),
                    |n| n.to_string(),
                ),
                count: c.count,
                error: c.error,
            })
            .collect();
        TopNamesReply {
            names,
            window_seconds: if window == 0 {
                elapsed
            } else {
                WINDOW_SECS + elapsed % WINDOW_SECS
            },
            window_queries: queries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::resolver::{Client, Outcome};

    /// The address the test queries come from.
    const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A query for `name` (dotted, no trailing dot) and `qtype`, RD set.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    /// Queries through `Resolver::process` show up by type, as misses, as malformed, and the
    /// most queried names come out of top names with their window.
    #[test]
    fn process_counts_types_misses_and_top_names() {
        let resolver = crate::server::build_resolver(&Config::default());
        let now = Instant::now();
        let mut out = [0u8; 512];
        let mut sent = 0u64;
        let mut ask = |name: &str, qtype: u16, times: usize| {
            for _ in 0..times {
                let q = query(sent as u16, name, qtype);
                sent += 1;
                let outcome = resolver.process(&q, &mut out, Client::udp(LOCALHOST), now);
                assert!(matches!(outcome, Outcome::Miss(_)), "{name}: {outcome:?}");
            }
        };
        ask("hot.example", 1, 400);
        ask("warm.example", 28, 160);
        for i in 0..200 {
            ask(&format!("cold{i}.example"), 99, 1);
        }
        // A message too short to hold a header is dropped and counted as malformed.
        let outcome = resolver.process(&[0u8; 5], &mut out, Client::udp(LOCALHOST), now);
        assert!(matches!(outcome, Outcome::Drop));

        let snap = resolver.metrics().snapshot();
        let by_type = |label: &str| {
            snap.queries_by_type
                .iter()
                .find(|c| c.label == label)
                .map(|c| c.count)
        };
        assert_eq!(by_type("A"), Some(400));
        assert_eq!(by_type("AAAA"), Some(160));
        assert_eq!(by_type(QTYPE_OTHER), Some(200));
        assert_eq!((snap.cache_misses, snap.cache_hits), (760, 0));
        assert_eq!(snap.malformed, 1);
        assert_eq!(snap.cache_hit_ratio, 0.0);

        let top = resolver.metrics().top_names(2);
        let names: Vec<&str> = top.names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["hot.example.", "warm.example."]);
        // One query in SAMPLE_EVERY is offered, weighted by SAMPLE_EVERY.
        assert_eq!(top.window_queries, 760);
        assert!(
            top.names[0].count >= 400 - SAMPLE_EVERY,
            "{:?}",
            top.names[0]
        );
        assert!(top.window_seconds < WINDOW_SECS);
        assert_eq!(resolver.metrics().top_names(0).names.len(), 10);
    }
}
