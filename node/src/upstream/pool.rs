//! The upstream pool: per-upstream health (consecutive failures, backoff) and smoothed RTT,
//! its UDP sockets, and the order in which a resolution tries them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::sockets::{SocketLimits, SocketPool};

/// Consecutive failures after which an upstream is put in backoff.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// First backoff; doubles with every further failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest backoff; after it the upstream is probed again by real traffic.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Smoothed RTT an upstream starts with before it has answered (RFC 6298 style initial value,
/// low enough that new upstreams get tried).
const INITIAL_SRTT: Duration = Duration::from_millis(50);

/// One upstream server and its health.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    addr: SocketAddr,
    /// Smoothed round-trip time in microseconds (EWMA, 1/8 weight for new samples).
    srtt_us: AtomicU64,
    /// Failures in a row since its last answer.
    consecutive_failures: AtomicU32,
    /// Answers received.
    answers: AtomicU64,
    /// Failed exchanges.
    failures: AtomicU64,
    /// Until when it is skipped in favour of healthy upstreams (None: healthy).
    backoff_until: Mutex<Option<Instant>>,
    /// Its connected UDP sockets, shared by every query to it (opened on first use; a list
    /// change keeps them along with the health).
    sockets: SocketPool,
}

/// A point-in-time view of one upstream, for stats and logs.
#[derive(Clone, Debug)]
pub struct UpstreamSnapshot {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Smoothed RTT.
    pub srtt: Duration,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Whether it is currently in backoff.
    pub healthy: bool,
    /// Answers received.
    pub answers: u64,
    /// Failed exchanges.
    pub failures: u64,
}

impl Upstream {
    /// A fresh, healthy upstream.
    fn new(addr: SocketAddr) -> Upstream {
        Upstream {
            addr,
            srtt_us: AtomicU64::new(INITIAL_SRTT.as_micros() as u64),
            consecutive_failures: AtomicU32::new(0),
            answers: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            backoff_until: Mutex::new(None),
            sockets: SocketPool::new(addr, SocketLimits::DEFAULT),
        }
    }

    /// Its pooled UDP sockets.
    pub fn sockets(&self) -> &SocketPool {
        &self.sockets
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Record an answer after `rtt`: update the smoothed RTT and clear the failure streak.
    pub fn record_success(&self, rtt: Duration) {
        let sample = rtt.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.srtt_us.load(Ordering::Relaxed);
        let new = if self.answers.load(Ordering::Relaxed) == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.srtt_us.store(new, Ordering::Relaxed);
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if let Ok(mut b) = self.backoff_until.lock() {
            *b = None;
        }
    }

    /// Record a failed exchange: after a few in a row the upstream backs off exponentially.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        // A failure also counts as a slow sample so a flaky upstream sinks in the order.
        let old = self.srtt_us.load(Ordering::Relaxed);
        self.srtt_us
            .store(old.saturating_mul(2).min(5_000_000), Ordering::Relaxed);
        if streak >= FAILURES_BEFORE_BACKOFF {
            let exp = (streak - FAILURES_BEFORE_BACKOFF).min(16);
            let backoff = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
            if let Ok(mut b) = self.backoff_until.lock() {
                *b = Some(Instant::now() + backoff);
            }
        }
    }

    /// Whether it is in backoff at `now`.
    fn in_backoff(&self, now: Instant) -> bool {
        self.backoff_until
            .lock()
            .map(|b| b.is_some_and(|until| now < until))
            .unwrap_or(false)
    }

    /// A snapshot for stats.
    fn snapshot(&self, now: Instant) -> UpstreamSnapshot {
        UpstreamSnapshot {
            addr: self.addr,
            srtt: Duration::from_micros(self.srtt_us.load(Ordering::Relaxed)),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            healthy: !self.in_backoff(now),
            answers: self.answers.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// All configured upstreams.
#[derive(Debug)]
pub struct UpstreamPool {
    /// The upstreams, in configuration order.
    upstreams: Vec<Arc<Upstream>>,
}

impl UpstreamPool {
    /// A pool of healthy upstreams.
    pub fn new(addrs: &[SocketAddr]) -> UpstreamPool {
        UpstreamPool {
            upstreams: addrs.iter().map(|a| Arc::new(Upstream::new(*a))).collect(),
        }
    }

    /// A pool over `addrs` that keeps the health state of the upstreams already in this one.
    pub fn with_upstreams(&self, addrs: &[SocketAddr]) -> UpstreamPool {
        UpstreamPool {
            upstreams: addrs
                .iter()
                .map(|a| {
                    self.upstreams
                        .iter()
                        .find(|u| u.addr == *a)
                        .map_or_else(|| Arc::new(Upstream::new(*a)), Arc::clone)
                })
                .collect(),
        }
    }

    /// The upstream addresses, in configuration order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.upstreams.iter().map(|u| u.addr).collect()
    }

    /// The order to try upstreams in: healthy ones by smoothed RTT (fastest first), then the
    /// ones in backoff (still tried when every healthy one fails, which doubles as a probe).
    pub fn order(&self) -> Vec<Arc<Upstream>> {
        let now = Instant::now();
        let mut order: Vec<(bool, u64, Arc<Upstream>)> = self
            .upstreams
            .iter()
            .map(|u| {
                (
                    u.in_backoff(now),
                    u.srtt_us.load(Ordering::Relaxed),
                    Arc::clone(u),
                )
            })
            .collect();
        order.sort_by_key(|(backoff, srtt, _)| (*backoff, *srtt));
        order.into_iter().map(|(_, _, u)| u).collect()
    }

    /// Snapshots of every upstream, in configuration order.
    pub fn snapshot(&self) -> Vec<UpstreamSnapshot> {
        let now = Instant::now();
        self.upstreams.iter().map(|u| u.snapshot(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A new list keeps the health of the upstreams it shares with the old one.
    #[test]
    fn new_list_keeps_shared_health() {
        let pool = UpstreamPool::new(&[addr(1), addr(2)]);
        for _ in 0..FAILURES_BEFORE_BACKOFF {
            pool.upstreams[1].record_failure();
        }
        let next = pool.with_upstreams(&[addr(2), addr(3)]);
        assert_eq!(next.addrs(), vec![addr(2), addr(3)]);
        let snap = next.snapshot();
        assert!(!snap[0].healthy, "addr 2 keeps its backoff");
        assert!(snap[1].healthy, "addr 3 starts healthy");
        assert!(Arc::ptr_eq(&next.upstreams[0], &pool.upstreams[1]));
    }

    /// The fastest healthy upstream is tried first.
    #[test]
    fn prefers_lowest_srtt() {
        let pool = UpstreamPool::new(&[addr(1), addr(2)]);
        pool.upstreams[0].record_success(Duration::from_millis(40));
        pool.upstreams[1].record_success(Duration::from_millis(5));
        let order = pool.order();
        assert_eq!(order[0].addr(), addr(2));
        assert_eq!(order[1].addr(), addr(1));
    }

    /// An upstream that keeps failing goes into backoff and sorts after healthy ones, and an
    /// answer restores it.
    #[test]
    fn failing_upstream_backs_off_and_recovers() {
        let pool = UpstreamPool::new(&[addr(1), addr(2)]);
        pool.upstreams[1].record_success(Duration::from_millis(80));
        for _ in 0..FAILURES_BEFORE_BACKOFF {
            pool.upstreams[0].record_failure();
        }
        let snap = pool.snapshot();
        assert!(!snap[0].healthy);
        assert_eq!(snap[0].consecutive_failures, FAILURES_BEFORE_BACKOFF);
        assert_eq!(pool.order()[0].addr(), addr(2));
        pool.upstreams[0].record_success(Duration::from_millis(1));
        assert!(pool.snapshot()[0].healthy);
        assert_eq!(pool.order()[0].addr(), addr(1));
    }
}
