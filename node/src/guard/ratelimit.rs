//! Per-client rate limiting: a token bucket per source prefix, in fixed tables of buckets, one
//! per thread, so a check takes no lock, allocates nothing and writes only memory of the
//! calling thread.
//!
//! Each bucket is GCRA (the "virtual scheduling" form of a token bucket): it stores the
//! theoretical arrival time of the next answer. An answer is allowed while that time is at
//! most `burst` intervals ahead of now; each allowed answer pushes it one interval
//! (`1 / qps_per_prefix`) further.
//!
//! Accuracy trade-offs, chosen to keep memory bounded and the hit path free of shared writes:
//! - Buckets are per thread: a prefix whose queries reach several UDP workers (SO_REUSEPORT
//!   spreads source ports over the sockets) gets up to `workers` times its rate.
//! - A table holds [`BUCKETS`] buckets indexed by a keyed hash of the prefix. A prefix that
//!   lands on a bucket held by another takes it over with a full burst, so with more active
//!   prefixes than buckets limiting errs on the lenient side: a collision never makes an
//!   innocent prefix share an abuser's empty bucket.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use siphasher::sip::SipHasher13;

use crate::stats::{SLOTS, thread_slot};

/// Buckets per thread table (a power of two).
pub const BUCKETS: usize = 4096;

/// What the limiter says about one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: answer normally.
    Allow,
    /// Over the limit, and this one slips through truncated (TC=1), so a real client retries
    /// over TCP.
    Slip,
    /// Over the limit: send nothing.
    Drop,
}

/// The limits in force, from `rate_limit.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sustained answers per second per prefix (>= 1).
    pub qps: u32,
    /// Answers a prefix may send at once above the rate (>= 1).
    pub burst: u32,
    /// IPv4 clients are grouped by this prefix length.
    pub ipv4_prefix_len: u8,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix_len: u8,
    /// Every `slip`-th limited answer is sent truncated; 0: all are dropped.
    pub slip: u8,
}

/// One prefix's bucket.
#[derive(Debug)]
struct Bucket {
    /// The prefix's tag (a hash, never 0 for a used bucket); 0: unused.
    tag: AtomicU64,
    /// Theoretical arrival time of the next answer, in nanoseconds since the limiter's start.
    tat: AtomicU64,
}

/// One thread's buckets, alone on its cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Table {
    /// The buckets, indexed by prefix hash.
    buckets: [Bucket; BUCKETS],
    /// Limited answers so far (picks which ones slip).
    limited: AtomicU64,
}

/// The rate limiter: a table per thread slot.
pub struct RateLimiter {
    /// When the limiter started (bucket times count from it).
    start: Instant,
    /// Keys of the prefix hash (random, so nobody can aim collisions at a bucket).
    keys: (u64, u64),
    /// One table per thread slot.
    tables: Box<[Table]>,
}

impl std::fmt::Debug for RateLimiter {
    /// The table count only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

impl Default for RateLimiter {
    /// A limiter with random hash keys and empty tables.
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    /// A limiter with random hash keys and empty tables (allocated zeroed: pages of threads
    /// that never check cost no memory).
    pub fn new() -> RateLimiter {
        RateLimiter {
            start: Instant::now(),
            keys: (rand::random(), rand::random()),
            tables: zeroed_tables(),
        }
    }

    /// Charge one answer to `ip`'s prefix at `now` under `limits`, on the calling thread's
    /// table.
    #[inline]
    pub fn check(&self, ip: IpAddr, limits: &Limits, now: Instant) -> Verdict {
        let tag = self.tag(ip, limits) | 1;
        let table = &self.tables[thread_slot() % SLOTS];
        let index = (tag >> 1) as usize % BUCKETS;
        let Some(bucket) = table.buckets.get(index) else {
            return Verdict::Allow;
        };
        let now_ns = nanos(now.saturating_duration_since(self.start));
        let interval = 1_000_000_000 / u64::from(limits.qps.max(1));
        let tolerance = interval.saturating_mul(u64::from(limits.burst.max(1)));
        let tat = if bucket.tag.load(Ordering::Relaxed) == tag {
            bucket.tat.load(Ordering::Relaxed).max(now_ns)
        } else {
            // A new prefix for this bucket (or a collision): it starts with a full burst.
            bucket.tag.store(tag, Ordering::Relaxed);
            now_ns
        };
        let next = tat.saturating_add(interval);
        if next.saturating_sub(now_ns) <= tolerance {
            bucket.tat.store(next, Ordering::Relaxed);
            return Verdict::Allow;
        }
        bucket.tat.store(tat, Ordering::Relaxed);
        let limited = table.limited.load(Ordering::Relaxed).wrapping_add(1);
        table.limited.store(limited, Ordering::Relaxed);
        if limits.slip > 0 && limited.is_multiple_of(u64::from(limits.slip)) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// The keyed hash of `ip`'s prefix (family included, so v4 and v6 never share a key).
    fn tag(&self, ip: IpAddr, limits: &Limits) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(limits.ipv4_prefix_len.min(32)))
                    .unwrap_or(0);
                hasher.write_u8(4);
                hasher.write_u32(u32::from(v4) & mask);
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(limits.ipv6_prefix_len.min(128)))
                    .unwrap_or(0);
                hasher.write_u8(6);
                hasher.write_u128(u128::from(v6) & mask);
            }
        }
        hasher.finish()
    }
}

/// A duration in nanoseconds, saturating (after 584 years).
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`SLOTS`] tables, all zero (unused buckets, nothing limited yet).
fn zeroed_tables() -> Box<[Table]> {
    let layout = std::alloc::Layout::new::<[Table; SLOTS]>();
    // SAFETY: the layout is non-zero sized (a Table is not empty). A Table is made only of
    // atomic integers, for which all-zero bytes are valid values: every bucket unused and
    // nothing limited. The pointer comes from the global allocator with the layout of a
    // [Table; SLOTS], which is what Box<[Table]> frees with.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<Table>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, SLOTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Limits of `qps` per second, a burst of `burst`, /24 and /56, slip `slip`.
    fn limits(qps: u32, burst: u32, slip: u8) -> Limits {
        Limits {
            qps,
            burst,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 56,
            slip,
        }
    }

    /// A burst passes, then every second limited answer slips and the rest are dropped; the
    /// rate refills the bucket as time passes.
    #[test]
    fn burst_then_slip_then_refill() {
        let limiter = RateLimiter::new();
        let l = limits(10, 5, 2);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (0..9).map(|_| limiter.check(ip, &l, now)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // Another address of the same /24 shares the bucket.
        let neighbour: IpAddr = "192.0.2.200".parse().expect("ip");
        assert_ne!(limiter.check(neighbour, &l, now), Verdict::Allow);
        // 100 ms at 10 per second buys one more answer.
        let later = now + Duration::from_millis(100);
        assert_eq!(limiter.check(ip, &l, later), Verdict::Allow);
        assert_ne!(limiter.check(ip, &l, later), Verdict::Allow);
        // Another /24 has its own bucket (checked last: were it to land on the same bucket,
        // it would take it over, which is the documented lenient side).
        let other: IpAddr = "192.0.3.7".parse().expect("ip");
        assert_eq!(limiter.check(other, &l, later), Verdict::Allow);
    }

    /// With slip 0 every limited answer is dropped; with slip 1 every one is truncated.
    #[test]
    fn slip_zero_drops_all_and_one_truncates_all() {
        let now = Instant::now();
        let ip: IpAddr = "2001:db8:1::1".parse().expect("ip");
        for (slip, verdict) in [(0, Verdict::Drop), (1, Verdict::Slip)] {
            let limiter = RateLimiter::new();
            for _ in 0..3 {
                assert_eq!(limiter.check(ip, &limits(1, 3, slip), now), Verdict::Allow);
            }
            for _ in 0..4 {
                assert_eq!(limiter.check(ip, &limits(1, 3, slip), now), verdict);
            }
        }
    }
}
