//! Top names: a Space-Saving heavy-hitter sketch of fixed capacity per worker, written only by
//! its thread without allocation (names live in fixed 256-byte buffers) and read by other
//! threads through a per-entry sequence lock, so a reader never sees a half-replaced entry.
//!
//! Space-Saving (Metwally et al.) keeps `CAPACITY` counters; a name not in the sketch takes
//! the smallest counter over and inherits its count as its error bound. Every name queried more
//! than 1/CAPACITY of the time is guaranteed to be present, and each count over-estimates the
//! true one by at most its `error`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use heimdall_wire::MAX_NAME_LEN;

use super::histogram::bump;

/// Names tracked per sketch (a power of two: the minimum search wraps with a mask).
pub const CAPACITY: usize = 128;
const _: () = assert!(CAPACITY.is_power_of_two());
/// 64-bit words holding one name in wire form (256 bytes >= 255).
const NAME_WORDS: usize = 32;

/// One tracked name.
#[derive(Debug)]
struct Slot {
    /// Sequence lock: odd while the writer replaces the name.
    seq: AtomicU32,
    /// Length of the name in wire form (0: empty slot).
    len: AtomicU32,
    /// Over-estimation bound (the count inherited when the name took the slot over).
    error: AtomicU64,
    /// The name, lower-cased wire form, packed little-endian into words.
    name: [AtomicU64; NAME_WORDS],
}

/// One Space-Saving sketch over one window.
#[derive(Debug)]
pub struct Sketch {
    /// The window this sketch counts (windows since the node started); u64::MAX: never used.
    window: AtomicU64,
    /// Names offered to the sketch in its window.
    offered: AtomicU64,
    /// 32 bits of a hash of each slot's name, scanned to find a name (compared with its
    /// length): 512 bytes, 8 cache lines a scan. A match between two names of the same length
    /// would merge their counts; for an untracked name that chance is 128 / 2^32 per offer.
    hashes: [AtomicU32; CAPACITY],
    /// Each slot's estimated count, apart from the slots so that the search for the smallest
    /// reads 1 KiB instead of a cache line per 280-byte slot (callgrind and the 40k-qps hit
    /// runs: the scattered scan was most of the sketch's cost per sampled query).
    counts: [AtomicU64; CAPACITY],
    /// Writer only: the smallest count the last take-over found. Counts only grow within a
    /// window, so the smallest count never falls below it, and a slot holding it is a
    /// smallest one: the search stops at the first.
    floor: AtomicU64,
    /// Writer only: where the next search for the smallest count starts (after the slot
    /// taken over last, whose neighbours at the floor come first).
    cursor: AtomicU32,
    /// The tracked names.
    slots: [Slot; CAPACITY],
}

/// A name read out of a sketch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The name, lower-cased wire form.
    pub name: Vec<u8>,
    /// Estimated count.
    pub count: u64,
    /// Over-estimation bound.
    pub error: u64,
}

/// A hash of a wire-form name (FxHash-style over 8-byte words).
#[inline]
fn hash_name(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    if let Some(dst) = w.get_mut(..rest.len()) {
        dst.copy_from_slice(rest);
    }
    (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K)
}

impl Sketch {
    /// A new, empty sketch.
    pub fn new() -> Sketch {
        Sketch {
            window: AtomicU64::new(u64::MAX),
            offered: AtomicU64::new(0),
            hashes: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            floor: AtomicU64::new(0),
            cursor: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Slot {
                seq: AtomicU32::new(0),
                len: AtomicU32::new(0),
                error: AtomicU64::new(0),
                name: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }

    /// The window this sketch counts.
    pub fn window(&self) -> u64 {
        self.window.load(Ordering::Acquire)
    }

    /// Names offered in its window.
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Empty the sketch and start counting `window` (writer only).
    pub fn reset(&self, window: u64) {
        self.window.store(u64::MAX, Ordering::Release);
        for ((slot, hash), count) in self.slots.iter().zip(&self.hashes).zip(&self.counts) {
            if slot.len.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let seq = slot.seq.load(Ordering::Relaxed);
            slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
            fence(Ordering::Release);
            slot.len.store(0, Ordering::Relaxed);
            count.store(0, Ordering::Relaxed);
            slot.error.store(0, Ordering::Relaxed);
            hash.store(0, Ordering::Relaxed);
            slot.seq.store(seq.wrapping_add(2), Ordering::Release);
        }
        self.floor.store(0, Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
        self.offered.store(0, Ordering::Relaxed);
        self.window.store(window, Ordering::Release);
    }

    /// Count one occurrence of `name` (lower-cased wire form; writer only; no allocation).
    /// `weight` is how many queries this one stands for (the sampling rate).
    #[inline]
    pub fn offer(&self, name: &[u8], weight: u64) {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return;
        }
        bump(&self.offered, weight);
        // The high half: the multiply leaves the low bits the least mixed.
        let hash = (hash_name(name) >> 32) as u32;
        let len = name.len() as u32;
        // The slots are read only on a hash match: the scan stays in the 512 bytes of hashes.
        for (i, h) in self.hashes.iter().enumerate() {
            if h.load(Ordering::Relaxed) == hash
                && self
                    .slots
                    .get(i)
                    .is_some_and(|slot| slot.len.load(Ordering::Relaxed) == len)
            {
                if let Some(count) = self.counts.get(i) {
                    bump(count, weight);
                }
                return;
            }
        }
        // Not tracked: take a slot with the smallest count over (an empty one counts 0),
        // searching from the cursor and stopping at the first count at the floor.
        let floor = self.floor.load(Ordering::Relaxed);
        let start = self.cursor.load(Ordering::Relaxed) as usize;
        let mut min_index = start & (CAPACITY - 1);
        let mut min_count = u64::MAX;
        for k in 0..CAPACITY {
            let i = (start + k) & (CAPACITY - 1);
            let c = self
                .counts
                .get(i)
                .map_or(u64::MAX, |c| c.load(Ordering::Relaxed));
            if c < min_count {
                min_count = c;
                min_index = i;
                if c <= floor {
                    break;
                }
            }
        }
        let (Some(slot), Some(h), Some(count)) = (
            self.slots.get(min_index),
            self.hashes.get(min_index),
            self.counts.get(min_index),
        ) else {
            return;
        };
        self.floor.store(min_count, Ordering::Relaxed);
        self.cursor
            .store(((min_index + 1) & (CAPACITY - 1)) as u32, Ordering::Relaxed);
        let seq = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (word, chunk) in slot.name.iter().zip(name.chunks(8)) {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..chunk.len()) {
                dst.copy_from_slice(chunk);
            }
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        slot.len.store(len, Ordering::Relaxed);
        slot.error.store(min_count, Ordering::Relaxed);
        count.store(min_count.saturating_add(weight), Ordering::Relaxed);
        h.store(hash, Ordering::Relaxed);
        slot.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Add every tracked name to `into` (summing counts and errors of equal names). A slot the
    /// writer is replacing at that moment is read again, up to a few times, then skipped.
    pub fn merge_into(&self, into: &mut HashMap<Vec<u8>, (u64, u64)>) {
        for (slot, count) in self.slots.iter().zip(&self.counts) {
            for _ in 0..4 {
                let before = slot.seq.load(Ordering::Acquire);
                if before % 2 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let len = (slot.len.load(Ordering::Relaxed) as usize).min(MAX_NAME_LEN);
                let count = count.load(Ordering::Relaxed);
                let error = slot.error.load(Ordering::Relaxed);
                let mut name = [0u8; NAME_WORDS * 8];
                for (dst, word) in name.chunks_exact_mut(8).zip(&slot.name) {
                    dst.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                fence(Ordering::Acquire);
                if slot.seq.load(Ordering::Relaxed) != before {
                    continue;
                }
                if len > 0 && count > 0 {
                    let e = into.entry(name[..len].to_vec()).or_insert((0, 0));
                    e.0 += count;
                    e.1 += error;
                }
                break;
            }
        }
    }
}

impl Default for Sketch {
    fn default() -> Sketch {
        Sketch::new()
    }
}

/// The `limit` largest of merged counts, largest first (ties by name).
pub fn top(merged: HashMap<Vec<u8>, (u64, u64)>, limit: usize) -> Vec<Counted> {
    let mut all: Vec<Counted> = merged
        .into_iter()
        .map(|(name, (count, error))| Counted { name, count, error })
        .collect();
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wire form of a dotted name.
    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// Heavy hitters hidden in a long tail of distinct names are found with counts within
    /// their error bounds, and the sketch never tracks more than CAPACITY names.
    #[test]
    fn finds_heavy_hitters_in_a_long_tail() {
        let sketch = Sketch::new();
        sketch.reset(0);
        let heavy = [
            ("a.example", 5000u64),
            ("b.example", 3000),
            ("c.example", 1000),
        ];
        let mut tail = 0u64;
        // Interleave: each round sends the heavy names their share, then 20 unique tail names.
        for round in 0..1000u64 {
            for (name, total) in heavy {
                for _ in 0..total / 1000 {
                    sketch.offer(&wire(name), 1);
                }
            }
            for j in 0..20 {
                sketch.offer(&wire(&format!("t{round}-{j}.tail")), 1);
                tail += 1;
            }
        }
        assert_eq!(sketch.offered(), 9000 + tail);
        let mut merged = HashMap::new();
        sketch.merge_into(&mut merged);
        assert!(merged.len() <= CAPACITY, "{} names tracked", merged.len());
        let top = top(merged, 3);
        let names: Vec<Vec<u8>> = top.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            vec![wire("a.example"), wire("b.example"), wire("c.example")]
        );
        for (c, (_, truth)) in top.iter().zip(heavy) {
            assert!(
                c.count >= truth,
                "count {} under the truth {truth}",
                c.count
            );
            assert!(
                c.count - c.error <= truth,
                "count {} - error {} over the truth {truth}",
                c.count,
                c.error
            );
        }
    }

    /// Merging sketches of two workers sums a name's counts; reset empties a sketch.
    #[test]
    fn merge_sums_and_reset_empties() {
        let a = Sketch::new();
        let b = Sketch::new();
        a.reset(3);
        b.reset(3);
        for _ in 0..5 {
            a.offer(&wire("x.test"), 2);
        }
        b.offer(&wire("x.test"), 2);
        b.offer(&wire("y.test"), 2);
        let mut merged = HashMap::new();
        a.merge_into(&mut merged);
        b.merge_into(&mut merged);
        let top = top(merged, 10);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].name.clone(), top[0].count), (wire("x.test"), 12));
        assert_eq!(a.window(), 3);
        a.reset(4);
        let mut merged = HashMap::new();
        a.merge_into(&mut merged);
        assert!(merged.is_empty());
        assert_eq!((a.window(), a.offered()), (4, 0));
    }

    /// A name that is not tracked takes over a slot with the smallest count (its error is
    /// that count), whichever slot the search from the cursor meets first: checked against
    /// the smallest count read before every offer, over a stream whose counts grow unevenly.
    #[test]
    fn take_over_picks_a_smallest_count() {
        let sketch = Sketch::new();
        sketch.reset(0);
        let counts = |s: &Sketch| -> HashMap<Vec<u8>, (u64, u64)> {
            let mut merged = HashMap::new();
            s.merge_into(&mut merged);
            merged
        };
        let mut state = 7u64;
        for step in 0..3000u64 {
            // A skewed stream: names 0..40 often, a long tail of fresh names otherwise.
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 33;
            let name = if r.is_multiple_of(3) {
                wire(&format!("h{}.test", r % 40))
            } else {
                wire(&format!("t{step}.test"))
            };
            let before = counts(&sketch);
            let weight = 1 + r % 3;
            sketch.offer(&name, weight);
            let after = counts(&sketch);
            match before.get(&name) {
                Some(&(count, error)) => assert_eq!(after[&name], (count + weight, error)),
                None => {
                    let smallest = if before.len() < CAPACITY {
                        0
                    } else {
                        before.values().map(|&(c, _)| c).min().unwrap_or(0)
                    };
                    assert_eq!(
                        after[&name],
                        (smallest + weight, smallest),
                        "step {step}: took over a slot that was not a smallest one"
                    );
                }
            }
            assert!(after.len() <= CAPACITY);
        }
    }
}
