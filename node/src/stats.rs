//! Counters that many threads bump without sharing a cache line: each thread writes its own
//! padded slot, and a read sums the slots. The query path counts through these, so counting
//! never makes two workers write the same memory.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots per counter (a power of two). Threads beyond this share slots, which stays correct
/// (the adds are atomic) and only costs some contention.
pub const SLOTS: usize = 64;

/// The next slot to hand to a thread that counts for the first time.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The value of [`SLOT`] before the thread's first count.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// This thread's slot index, assigned on first use. Const-initialised and without a
    /// destructor, so reading it is a plain thread-local load (no lazy-init registration).
    static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// The calling thread's slot index (below [`SLOTS`]), the same for every counter and for the
/// per-thread metrics shards.
#[inline]
pub fn thread_slot() -> usize {
    SLOT.with(|s| {
        let slot = s.get();
        if slot != UNASSIGNED {
            return slot;
        }
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
        s.set(slot);
        slot
    })
}

/// One thread's share of a counter, alone on its cache lines (128 bytes covers the adjacent
/// line prefetcher).
#[derive(Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A monotonically increasing counter, written per thread and summed on read.
pub struct Counter {
    /// One slot per thread (modulo SLOTS).
    slots: Box<[Slot]>,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Counter {
        Counter {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Add `n` from the calling thread.
    #[inline]
    pub fn add(&self, n: u64) {
        let i = thread_slot();
        if let Some(slot) = self.slots.get(i) {
            slot.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one from the calling thread.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The current total over all threads.
    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Adds from many threads all land in the total.
    #[test]
    fn sums_over_threads() {
        let c = Arc::new(Counter::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.incr();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        c.add(5);
        assert_eq!(c.get(), 80_005);
    }
}
