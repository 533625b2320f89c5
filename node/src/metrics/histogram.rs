//! Fixed log-linear latency histograms: four linear buckets per power of two of nanoseconds,
//! from 1.024 µs up to about 34 s. Recording is one bucket increment and one sum add; buckets
//! of several histograms (one per worker) are merged on read, and percentiles are interpolated
//! inside the bucket they fall in (relative error under 25%, usually far less).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Linear buckets per power of two (must be a power of two).
const SUB_BUCKETS: usize = 4;
/// log2 of SUB_BUCKETS.
const SUB_BITS: u32 = 2;
/// log2 of the upper bound of the first bucket, in nanoseconds (2^10 ns = 1.024 µs).
const FIRST_OCTAVE: u32 = 10;
/// Powers of two covered after the first bucket (up to 2^35 ns, about 34 s).
const OCTAVES: usize = 25;
/// Number of buckets: [0, 2^10) ns, the log-linear ones, and one for anything larger.
pub const BUCKETS: usize = 1 + OCTAVES * SUB_BUCKETS + 1;

/// The bucket a value in nanoseconds falls in.
#[inline]
fn bucket_of(ns: u64) -> usize {
    if ns < (1 << FIRST_OCTAVE) {
        return 0;
    }
    let octave = 63 - ns.leading_zeros(); // >= FIRST_OCTAVE
    let sub = ((ns >> (octave - SUB_BITS)) as usize) & (SUB_BUCKETS - 1);
    let index = 1 + (octave - FIRST_OCTAVE) as usize * SUB_BUCKETS + sub;
    index.min(BUCKETS - 1)
}

/// The exclusive upper bound of bucket `i` in nanoseconds (u64::MAX for the last one).
pub fn upper_bound_ns(i: usize) -> u64 {
    if i == 0 {
        return 1 << FIRST_OCTAVE;
    }
    if i >= BUCKETS - 1 {
        return u64::MAX;
    }
    let octave = FIRST_OCTAVE + ((i - 1) / SUB_BUCKETS) as u32;
    let sub = ((i - 1) % SUB_BUCKETS) as u64;
    let step = 1u64 << (octave - SUB_BITS);
    (1u64 << octave) + (sub + 1) * step
}

/// The inclusive lower bound of bucket `i` in nanoseconds.
fn lower_bound_ns(i: usize) -> u64 {
    if i == 0 { 0 } else { upper_bound_ns(i - 1) }
}

/// Whether bucket `i`'s upper bound is a power of two (the bounds /metrics exposes, so its
/// histograms have 27 lines rather than 102).
pub fn is_octave_bound(i: usize) -> bool {
    i == 0 || (i < BUCKETS - 1 && i.is_multiple_of(SUB_BUCKETS))
}

/// One histogram's live buckets. `record_owned` is for a histogram only its thread writes
/// (plain load and store, no locked instruction); `record` is for a shared one.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket.
    buckets: [AtomicU64; BUCKETS],
    /// Sum of all observations in nanoseconds.
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// Add `n` to a counter only this thread writes (readers may see the old or the new value).
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Histogram {
    /// Record `count` observations of `value`, from the histogram's owning thread.
    #[inline]
    pub fn record_owned(&self, value: Duration, count: u64) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(bucket_of(ns)) {
            bump(b, count);
        }
        bump(&self.sum_ns, ns.saturating_mul(count));
    }

    /// Record one observation from any thread.
    pub fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(bucket_of(ns)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Add this histogram's current values into `totals`.
    pub fn add_to(&self, totals: &mut HistogramTotals) {
        for (t, b) in totals.buckets.iter_mut().zip(&self.buckets) {
            *t = t.wrapping_add(b.load(Ordering::Relaxed));
        }
        totals.sum_ns = totals
            .sum_ns
            .wrapping_add(self.sum_ns.load(Ordering::Relaxed));
    }
}

/// Merged histogram values at one point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramTotals {
    /// Observations per bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of all observations in nanoseconds.
    pub sum_ns: u64,
}

impl Default for HistogramTotals {
    fn default() -> HistogramTotals {
        HistogramTotals {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramTotals {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// The `q` quantile (0..=1) in microseconds, interpolated linearly inside its bucket; 0
    /// when empty. A value in the last (open) bucket reports that bucket's lower bound.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let count = self.count();
        if count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * count as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= rank {
                let lo = lower_bound_ns(i) as f64;
                if i == BUCKETS - 1 {
                    return lo / 1000.0;
                }
                let hi = upper_bound_ns(i) as f64;
                let within = (rank - below as f64) / n as f64;
                return (lo + (hi - lo) * within) / 1000.0;
            }
            below += n;
        }
        lower_bound_ns(BUCKETS - 1) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bucket bounds increase strictly and every value lands in the bucket whose bounds hold it.
    #[test]
    fn buckets_hold_their_values() {
        for i in 1..BUCKETS {
            assert!(upper_bound_ns(i) > upper_bound_ns(i - 1), "bucket {i}");
        }
        for ns in [
            0u64,
            1,
            1023,
            1024,
            1279,
            1280,
            5000,
            999_999,
            1 << 34,
            u64::MAX,
        ] {
            let b = bucket_of(ns);
            assert!(lower_bound_ns(b) <= ns, "{ns} below bucket {b}");
            assert!(
                ns < upper_bound_ns(b) || b == BUCKETS - 1,
                "{ns} above bucket {b}"
            );
        }
        assert_eq!(upper_bound_ns(4), 2048);
        assert!(is_octave_bound(4) && !is_octave_bound(5));
    }

    /// Percentiles of a known distribution come out within the bucket resolution.
    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let h = Histogram::default();
        // 1..=10_000 µs, one observation each.
        for us in 1..=10_000u64 {
            h.record_owned(Duration::from_micros(us), 1);
        }
        let mut t = HistogramTotals::default();
        h.add_to(&mut t);
        assert_eq!(t.count(), 10_000);
        assert_eq!(t.sum_ns, (1..=10_000u64).sum::<u64>() * 1000);
        for (q, want) in [
            (0.5, 5000.0),
            (0.9, 9000.0),
            (0.99, 9900.0),
            (0.999, 9990.0),
        ] {
            let got = t.quantile_us(q);
            let err = (got - want).abs() / want;
            assert!(err < 0.10, "p{q}: {got} µs, want about {want} µs");
        }
    }

    /// A single repeated value is reported inside its bucket; merging adds counts.
    #[test]
    fn merge_and_single_value() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.record_owned(Duration::from_micros(100), 10);
        b.record(Duration::from_micros(100));
        let mut t = HistogramTotals::default();
        a.add_to(&mut t);
        b.add_to(&mut t);
        assert_eq!(t.count(), 11);
        let p50 = t.quantile_us(0.5);
        assert!((81.9..=114.7).contains(&p50), "p50 {p50}");
        assert_eq!(HistogramTotals::default().quantile_us(0.5), 0.0);
    }
}
