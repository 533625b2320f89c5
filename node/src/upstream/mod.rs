//! Forwarding misses to upstream servers: pool, health, retries and coalescing.

mod coalesce;
mod exchange;
mod pool;
mod sockets;

pub use coalesce::Inflight;
pub use exchange::{ExchangeError, build_query};
pub use pool::{Upstream, UpstreamPool, UpstreamSnapshot};
pub use sockets::{SocketLimits, SocketPool};

use crate::metrics::Histogram;
use crate::stats::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

/// RCODE of a SERVFAIL answer.
const RCODE_SERVFAIL: u8 = 2;
/// RCODE of a REFUSED answer.
const RCODE_REFUSED: u8 = 5;

/// What one forwarded question needs: the question in uncompressed lower-case wire form plus
/// the bits that select the answer variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Uncompressed, lower-cased owner name in wire form.
    pub name: Box<[u8]>,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// Whether the client set the EDNS DO bit (DNSSEC records wanted).
    pub dnssec_ok: bool,
    /// Whether the client set CD (checking disabled).
    pub checking_disabled: bool,
}

/// Why no upstream produced an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// Every upstream was tried until the resolve deadline and none answered usefully.
    #[error("all {tried} upstream attempts failed within {elapsed_ms} ms (last error: {last})")]
    AllFailed {
        /// How many exchanges were attempted.
        tried: u32,
        /// Time spent before giving up.
        elapsed_ms: u64,
        /// The last exchange error, for logs.
        last: ExchangeError,
    },
    /// No upstream is configured.
    #[error("no upstream configured")]
    NoUpstream,
}

/// Timing knobs of the forwarder.
#[derive(Clone, Copy, Debug)]
pub struct ForwarderTimeouts {
    /// Deadline for one exchange with one upstream.
    pub attempt: Duration,
    /// Deadline for the whole resolution (all attempts) before the client gets SERVFAIL.
    pub total: Duration,
}

/// Counters of the forwarder, summed over all upstreams.
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Exchanges sent to an upstream (each UDP try and each TCP retry counts).
    pub queries: Counter,
    /// Questions answered by joining an identical question already in flight.
    pub coalesced: Counter,
    /// Datagrams from the upstream that did not match a query in flight (wrong ID or question,
    /// or a late reply to a query that already ended) and were ignored.
    pub mismatched: Counter,
    /// Replies that were truncated over UDP and retried over TCP.
    pub tcp_retries: Counter,
    /// Resolutions that failed on every upstream.
    pub failures: Counter,
    /// Round-trip times of successful exchanges (all upstreams; written from the runtime's
    /// threads on the miss path only).
    pub rtt: Histogram,
}

/// The forwarder: picks upstreams by health and latency, retries and fails over, and coalesces
/// identical questions in flight into one upstream exchange.
#[derive(Debug)]
pub struct Forwarder {
    /// The upstream servers with their health; swapped whole when the list changes, so a
    /// resolution in flight keeps the list it started with.
    pool: ArcSwap<UpstreamPool>,
    /// Questions in flight, so identical ones share one exchange.
    inflight: Inflight,
    /// Per-attempt and total deadlines.
    timeouts: ForwarderTimeouts,
    /// Counters (shared with the receive tasks of the upstream sockets).
    stats: Arc<ForwarderStats>,
}

/// One upstream answer, shared between every client that asked the same question.
#[derive(Debug)]
pub struct Answer {
    /// The upstream's reply, verified to match the question.
    pub bytes: Box<[u8]>,
    /// Which upstream answered.
    pub from: SocketAddr,
}

impl Forwarder {
    /// Create a forwarder over the given upstream addresses.
    pub fn new(upstreams: &[SocketAddr], timeouts: ForwarderTimeouts) -> Forwarder {
        Forwarder {
            pool: ArcSwap::from_pointee(UpstreamPool::new(upstreams)),
            inflight: Inflight::default(),
            timeouts,
            stats: Arc::default(),
        }
    }

    /// The forwarder's counters.
    pub fn stats(&self) -> &ForwarderStats {
        &self.stats
    }

    /// Health and latency of every upstream.
    pub fn upstreams(&self) -> Vec<UpstreamSnapshot> {
        self.pool.load().snapshot()
    }

    /// The current upstream addresses, in configuration order.
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.pool.load().addrs()
    }

    /// Replace the upstream list, live. Upstreams present before and after keep their health
    /// and latency; resolutions already in flight finish on the list they started with, so no
    /// query is dropped or failed by the swap.
    pub fn set_upstreams(&self, upstreams: &[SocketAddr]) {
        self.pool.rcu(|current| current.with_upstreams(upstreams));
    }

    /// Resolve `question` upstream. Identical questions in flight share one exchange; the
    /// returned flag is true for the caller whose exchange produced the answer (the one that
    /// should insert it into the cache).
    pub async fn resolve(
        &self,
        key: &[u8],
        question: &Question,
    ) -> (Result<Arc<Answer>, ForwardError>, bool) {
        let (result, leader) = self.inflight.run(key, || self.forward(question)).await;
        if !leader {
            self.stats.coalesced.incr();
        }
        (result, leader)
    }

    /// Try the upstreams in order of preference until one answers or the deadline passes.
    async fn forward(&self, question: &Question) -> Result<Arc<Answer>, ForwardError> {
        let start = Instant::now();
        let deadline = start + self.timeouts.total;
        let order = self.pool.load().order();
        if order.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut tried = 0u32;
        let mut last = ExchangeError::Timeout;
        // A SERVFAIL or REFUSED answer is kept as a fallback while other upstreams may do better.
        let mut fallback: Option<Arc<Answer>> = None;
        // Cycle through the upstreams (best first) until the deadline: a transient loss on a
        // single healthy upstream gets another try.
        for upstream in order.iter().cycle() {
            let now = Instant::now();
            if now >= deadline || tried as usize >= order.len() * 8 {
                break;
            }
            if fallback.is_some() && tried as usize >= order.len() {
                break;
            }
            let budget = self.timeouts.attempt.min(deadline - now);
            tried += 1;
            let sent = Instant::now();
            match exchange::exchange(upstream, question, budget, &self.stats).await {
                Ok(bytes) => {
                    let rtt = sent.elapsed();
                    upstream.record_success(rtt);
                    self.stats.rtt.record(rtt);
                    let rcode = bytes.get(3).map_or(0, |b| b & 0x0f);
                    let answer = Arc::new(Answer {
                        bytes,
                        from: upstream.addr(),
                    });
                    if rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED {
                        fallback = Some(answer);
                        continue;
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    tracing::debug!(upstream = %upstream.addr(), error = %e, "upstream exchange failed");
                    upstream.record_failure();
                    last = e;
                }
            }
        }
        if let Some(answer) = fallback {
            return Ok(answer);
        }
        self.stats.failures.incr();
        Err(ForwardError::AllFailed {
            tried,
            elapsed_ms: start.elapsed().as_millis() as u64,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set_upstreams` replaces the list the next resolution uses.
    #[test]
    fn set_upstreams_swaps_the_list() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let timeouts = ForwarderTimeouts {
            attempt: Duration::from_millis(100),
            total: Duration::from_millis(300),
        };
        let forwarder = Forwarder::new(&[addr(1), addr(2)], timeouts);
        let before = forwarder.pool.load_full();
        forwarder.set_upstreams(&[addr(2), addr(3)]);
        assert_eq!(forwarder.upstream_addrs(), vec![addr(2), addr(3)]);
        // A resolution that loaded the old pool still sees its own list.
        assert_eq!(before.addrs(), vec![addr(1), addr(2)]);
        forwarder.set_upstreams(&[]);
        assert!(forwarder.upstreams().is_empty());
    }
}
