//! Sharded, byte-bounded SLRU store with a hot layer: the memory manager under the answer cache.
//!
//! Keys are byte strings; values are anything [`Weighted`]. The store is split into a power of
//! two number of shards chosen by a keyed hash of the key; each shard is a `RwLock` around a
//! hash map (key to slab index), a dense slab of slots and two intrusive LRU lists, and owns an
//! equal share of the byte budget. A slot is charged `key length + value size +`
//! [`ENTRY_OVERHEAD`] bytes.
//!
//! # Reads
//! [`Store::get`] takes only the shard's read lock. It does no bookkeeping itself: the value
//! counts its own hits with a relaxed atomic ([`Weighted::hits`]), and the write path compares
//! that counter with the slot's `mark` (the hit count when the slot last moved) to learn whether
//! the slot was referenced since.
//!
//! # Eviction rule (run by [`Store::insert`] under the shard's write lock)
//! New slots enter the MRU end of the *probation* list. The *protected* list may hold at most
//! 80% of the shard budget; probation takes the rest. While the shard is over budget, the LRU
//! tail of probation is examined (if probation is empty, the protected tail is demoted first):
//! 1. a slot the `dead` predicate accepts (expired past its stale window) is removed and
//!    counted as expired;
//! 2. a slot hit since its mark is promoted to the MRU end of protected (mark := hits, its hot
//!    chance is restored); while protected is over its 80%, its LRU tail is examined: if hit
//!    since its mark it goes back to the protected MRU end (mark := hits), else it is demoted
//!    to the probation MRU end (mark := hits);
//! 3. otherwise, a *hot* slot (at least [`HOT_HITS`] hits in its life) that has not used its hot
//!    chance since it was last promoted uses it: it goes back to the probation MRU end, once;
//! 4. otherwise the slot is evicted.
//!
//! Every move consumes a reference (hits > mark) or the hot chance, and hits cannot change while
//! the write lock is held, so the loop ends. A value larger than a quarter of a shard budget is
//! not stored (it would flush the shard). The shared byte and length counters are updated once
//! per write with the net change, so [`Store::bytes`] never exceeds the bound.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lifetime hits at which a slot is hot and earns one extra pass through probation.
pub const HOT_HITS: u32 = 3;
/// Bytes charged per slot on top of key and value: map bucket, slab slot and key header.
pub const ENTRY_OVERHEAD: usize = 96;
/// Smallest shard budget worth splitting the store for.
const MIN_SHARD_BYTES: usize = 128 * 1024;
/// Most shards a store is split into.
const MAX_SHARDS: usize = 64;
/// Share of a shard's budget the protected list may hold, in percent.
const PROTECTED_PERCENT: usize = 80;
/// A value is stored only if its charge is at most the shard budget divided by this.
const MAX_ENTRY_FRACTION: usize = 4;
/// The "no slot" index in the intrusive lists.
const NIL: u32 = u32::MAX;

/// What the store needs to know about a value.
pub trait Weighted: Send + Sync {
    /// Heap and inline bytes the value occupies.
    fn size_bytes(&self) -> usize;
    /// How many times the value was read (a relaxed counter the reader bumps).
    fn hits(&self) -> u32;
}

/// What one insert did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The value was stored (false: too large for a shard).
    pub stored: bool,
    /// A value was already stored under the key and was replaced (or dropped).
    pub replaced: bool,
    /// Slots evicted to make room.
    pub evicted: u64,
    /// Slots removed because they were dead (past their stale window).
    pub expired: u64,
}

/// Which list a slot is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    /// New or demoted slots; evictions happen at its LRU tail.
    Probation,
    /// Slots hit while on probation; capped at 80% of the shard budget.
    Protected,
}

/// One stored value with its list links and eviction state.
struct Slot<V> {
    /// The key, shared with the map so eviction can remove the map entry.
    key: Arc<[u8]>,
    /// The stored value.
    value: V,
    /// Bytes charged to the shard for this slot.
    charge: usize,
    /// Previous slot (towards the MRU head) in its list, or `NIL`.
    prev: u32,
    /// Next slot (towards the LRU tail) in its list, or `NIL`.
    next: u32,
    /// The list the slot is on.
    segment: Segment,
    /// `value.hits()` when the slot was inserted or last moved: more hits mean "referenced".
    mark: u32,
    /// The hot slot already had its extra pass through probation since it was last promoted.
    hot_chance_used: bool,
}

/// Head, tail and byte total of one intrusive list.
#[derive(Clone, Copy, Debug)]
struct List {
    /// Most recently used slot, or `NIL`.
    head: u32,
    /// Least recently used slot, or `NIL`.
    tail: u32,
    /// Sum of the charges of the slots on the list.
    bytes: usize,
}

impl List {
    /// An empty list.
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        bytes: 0,
    };
}

/// The state of one shard, behind its lock.
struct ShardInner<V> {
    /// Key to slab index.
    map: HashMap<Arc<[u8]>, u32>,
    /// Dense slab: removal swaps the last slot into the hole.
    slots: Vec<Slot<V>>,
    /// New and demoted slots.
    probation: List,
    /// Slots that were hit on probation.
    protected: List,
    /// Bytes charged to this shard.
    bytes: usize,
    /// Byte budget of this shard.
    budget: usize,
}

/// The sharded store.
pub struct Store<V> {
    /// The shards, a power of two in number.
    shards: Box<[RwLock<ShardInner<V>>]>,
    /// Keyed hash choosing the shard (keyed so remote names cannot target one shard).
    hasher: RandomState,
    /// The byte bound over all shards.
    max_bytes: usize,
    /// Bytes charged over all shards (updated with each write's net change).
    bytes: AtomicUsize,
    /// Slots over all shards.
    len: AtomicUsize,
}

impl<V> fmt::Debug for Store<V> {
    /// Sizes only; the contents can be large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("shards", &self.shards.len())
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish()
    }
}

impl<V: Weighted> Store<V> {
    /// A store bounded by `max_bytes`, split into up to 64 shards of at least 128 KiB.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_shards(max_bytes, (max_bytes / MIN_SHARD_BYTES).min(MAX_SHARDS))
    }

    /// A store bounded by `max_bytes` split into `shards` shards (rounded up to a power of two,
    /// at least one).
    pub fn with_shards(max_bytes: usize, shards: usize) -> Self {
        let count = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let budget = max_bytes / count;
        let shards = (0..count)
            .map(|_| {
                RwLock::new(ShardInner {
                    map: HashMap::new(),
                    slots: Vec::new(),
                    probation: List::EMPTY,
                    protected: List::EMPTY,
                    bytes: 0,
                    budget,
                })
            })
            .collect();
        Store {
            shards,
            hasher: RandomState::new(),
            max_bytes,
            bytes: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// Call `f` on the value stored under `key`, under the shard's read lock only.
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self.read(key);
        let &index = shard.map.get(key)?;
        shard.slots.get(index as usize).map(|slot| f(&slot.value))
    }

    /// Store `value` under `key`, replacing any value there, then evict until the shard is back
    /// under budget (see the module doc). `dead` says which values are past their stale window.
    /// A value too large for a shard is not stored, and the previous value is still removed.
    pub fn insert(&self, key: &[u8], value: V, mut dead: impl FnMut(&V) -> bool) -> InsertOutcome {
        let charge = key.len() + value.size_bytes() + ENTRY_OVERHEAD;
        let mut shard = self.write(key);
        let (bytes_before, len_before) = (shard.bytes, shard.slots.len());
        let mut outcome = InsertOutcome {
            replaced: shard.remove_key(key).is_some(),
            ..InsertOutcome::default()
        };
        if charge <= shard.budget / MAX_ENTRY_FRACTION {
            shard.push(key, value, charge);
            outcome.stored = true;
            shard.evict_to_budget(&mut dead, &mut outcome);
        }
        self.account(bytes_before, len_before, shard.bytes, shard.slots.len());
        outcome
    }

    /// Remove the value stored under `key`; true if there was one.
    pub fn remove(&self, key: &[u8]) -> bool {
        let mut shard = self.write(key);
        let (bytes_before, len_before) = (shard.bytes, shard.slots.len());
        let removed = shard.remove_key(key).is_some();
        self.account(bytes_before, len_before, shard.bytes, shard.slots.len());
        removed
    }

    /// Remove the value under `key` if `pred` accepts it, but only if the shard's write lock is
    /// free right now (never waits). True if a value was removed.
    pub fn try_remove_if(&self, key: &[u8], pred: impl FnOnce(&V) -> bool) -> bool {
        let mut shard = match self.shard(key).try_write() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let Some(&index) = shard.map.get(key) else {
            return false;
        };
        if !shard
            .slots
            .get(index as usize)
            .is_some_and(|slot| pred(&slot.value))
        {
            return false;
        }
        let (bytes_before, len_before) = (shard.bytes, shard.slots.len());
        shard.remove_index(index);
        self.account(bytes_before, len_before, shard.bytes, shard.slots.len());
        true
    }

    /// Remove every value.
    pub fn clear(&self) {
        for lock in self.shards.iter() {
            let mut shard = lock.write().unwrap_or_else(PoisonError::into_inner);
            let (bytes_before, len_before) = (shard.bytes, shard.slots.len());
            shard.map.clear();
            shard.slots.clear();
            shard.probation = List::EMPTY;
            shard.protected = List::EMPTY;
            shard.bytes = 0;
            self.account(bytes_before, len_before, 0, 0);
        }
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged for the stored values (never above [`Store::max_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The shard that owns `key`.
    fn shard(&self, key: &[u8]) -> &RwLock<ShardInner<V>> {
        let hash = self.hasher.hash_one(key);
        // The shard count is a power of two; the high bits are independent of the map's hash.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    /// Read-lock the shard that owns `key` (a panic elsewhere does not make the data unusable).
    fn read(&self, key: &[u8]) -> RwLockReadGuard<'_, ShardInner<V>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write-lock the shard that owns `key`.
    fn write(&self, key: &[u8]) -> RwLockWriteGuard<'_, ShardInner<V>> {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply one shard's net change to the shared counters (adds before subtracting, so a
    /// reader never sees a wrapped value).
    fn account(
        &self,
        bytes_before: usize,
        len_before: usize,
        bytes_after: usize,
        len_after: usize,
    ) {
        if bytes_after >= bytes_before {
            self.bytes
                .fetch_add(bytes_after - bytes_before, Ordering::Relaxed);
        } else {
            self.bytes
                .fetch_sub(bytes_before - bytes_after, Ordering::Relaxed);
        }
        if len_after >= len_before {
            self.len
                .fetch_add(len_after - len_before, Ordering::Relaxed);
        } else {
            self.len
                .fetch_sub(len_before - len_after, Ordering::Relaxed);
        }
    }
}

impl<V: Weighted> ShardInner<V> {
    /// Byte cap of the protected list.
    fn protected_budget(&self) -> usize {
        self.budget / 100 * PROTECTED_PERCENT
    }

    /// The list a segment names.
    fn list(&mut self, segment: Segment) -> &mut List {
        match segment {
            Segment::Probation => &mut self.probation,
            Segment::Protected => &mut self.protected,
        }
    }

    /// Add a new slot at the probation MRU end.
    fn push(&mut self, key: &[u8], value: V, charge: usize) {
        let key: Arc<[u8]> = Arc::from(key);
        let index = u32::try_from(self.slots.len()).unwrap_or(NIL);
        let mark = value.hits();
        self.slots.push(Slot {
            key: Arc::clone(&key),
            value,
            charge,
            prev: NIL,
            next: NIL,
            segment: Segment::Probation,
            mark,
            hot_chance_used: false,
        });
        self.map.insert(key, index);
        self.bytes += charge;
        self.link_head(index, Segment::Probation);
    }

    /// Remove the slot stored under `key`, returning its value.
    fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let &index = self.map.get(key)?;
        Some(self.remove_index(index))
    }

    /// Remove slot `index` from its list, the map and the slab; the last slot fills the hole.
    fn remove_index(&mut self, index: u32) -> V {
        self.unlink(index);
        let slot = self.slots.swap_remove(index as usize);
        self.map.remove(&slot.key);
        self.bytes -= slot.charge;
        // The former last slot now lives at `index`: repoint everything that referred to it.
        let moved_from = self.slots.len() as u32;
        if index != moved_from {
            let (prev, next, segment) = {
                let moved = &self.slots[index as usize];
                (moved.prev, moved.next, moved.segment)
            };
            if prev == NIL {
                self.list(segment).head = index;
            } else {
                self.slots[prev as usize].next = index;
            }
            if next == NIL {
                self.list(segment).tail = index;
            } else {
                self.slots[next as usize].prev = index;
            }
            if let Some(entry) = self.map.get_mut(&self.slots[index as usize].key) {
                *entry = index;
            }
        }
        slot.value
    }

    /// Put slot `index` (currently unlinked) at the MRU end of `segment`.
    fn link_head(&mut self, index: u32, segment: Segment) {
        let charge = self.slots[index as usize].charge;
        let list = self.list(segment);
        let old_head = list.head;
        list.head = index;
        if old_head == NIL {
            list.tail = index;
        }
        list.bytes += charge;
        if old_head != NIL {
            self.slots[old_head as usize].prev = index;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = old_head;
        slot.segment = segment;
    }

    /// Take slot `index` off its list.
    fn unlink(&mut self, index: u32) {
        let (prev, next, segment, charge) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next, slot.segment, slot.charge)
        };
        if prev == NIL {
            self.list(segment).head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.list(segment).tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        self.list(segment).bytes -= charge;
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }

    /// Move slot `index` to the MRU end of `segment` and reset its mark to its current hits.
    fn move_to_head(&mut self, index: u32, segment: Segment) {
        self.unlink(index);
        let slot = &mut self.slots[index as usize];
        slot.mark = slot.value.hits();
        self.link_head(index, segment);
    }

    /// Run the eviction rule of the module doc until the shard fits its budget.
    fn evict_to_budget(&mut self, dead: &mut impl FnMut(&V) -> bool, outcome: &mut InsertOutcome) {
        while self.bytes > self.budget {
            let mut victim = self.probation.tail;
            if victim == NIL {
                victim = self.protected.tail;
                if victim == NIL {
                    return;
                }
                self.move_to_head(victim, Segment::Probation);
            }
            let slot = &self.slots[victim as usize];
            let hits = slot.value.hits();
            if dead(&slot.value) {
                self.remove_index(victim);
                outcome.expired += 1;
            } else if hits > slot.mark {
                self.slots[victim as usize].hot_chance_used = false;
                self.move_to_head(victim, Segment::Protected);
                self.rebalance_protected();
            } else if hits >= HOT_HITS && !slot.hot_chance_used {
                self.slots[victim as usize].hot_chance_used = true;
                self.move_to_head(victim, Segment::Probation);
            } else {
                self.remove_index(victim);
                outcome.evicted += 1;
            }
        }
    }

    /// Bring the protected list back under its cap: referenced tails go back to its MRU end,
    /// the others are demoted to probation.
    fn rebalance_protected(&mut self) {
        while self.protected.bytes > self.protected_budget() {
            let tail = self.protected.tail;
            if tail == NIL {
                return;
            }
            let slot = &self.slots[tail as usize];
            if slot.value.hits() > slot.mark {
                self.move_to_head(tail, Segment::Protected);
            } else {
                self.move_to_head(tail, Segment::Probation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use std::sync::atomic::AtomicU32;

    /// A value with a settable size and hit counter.
    #[derive(Debug)]
    struct Val {
        /// Reported size.
        size: usize,
        /// Hit counter, bumped by `hit`.
        hits: AtomicU32,
    }

    impl Val {
        /// A value of `size` bytes with no hits.
        fn new(size: usize) -> Val {
            Val {
                size,
                hits: AtomicU32::new(0),
            }
        }
    }

    impl Weighted for Val {
        fn size_bytes(&self) -> usize {
            self.size
        }
        fn hits(&self) -> u32 {
            self.hits.load(Ordering::Relaxed)
        }
    }

    /// Never dead.
    fn alive(_: &Val) -> bool {
        false
    }

    /// Read `key`, counting a hit like the cache does; true if present.
    fn hit(store: &Store<Val>, key: &[u8]) -> bool {
        store
            .get(key, |v| {
                v.hits.fetch_add(1, Ordering::Relaxed);
            })
            .is_some()
    }

    /// Check the shard invariants: list links, byte totals, map indices.
    fn check(store: &Store<Val>) {
        let mut total = 0;
        let mut count = 0;
        for lock in store.shards.iter() {
            let shard = lock.read().unwrap_or_else(PoisonError::into_inner);
            assert!(shard.bytes <= shard.budget);
            assert_eq!(shard.map.len(), shard.slots.len());
            for (key, &index) in &shard.map {
                assert_eq!(&shard.slots[index as usize].key, key);
            }
            let mut seen = 0;
            for (list, segment) in [
                (shard.probation, Segment::Probation),
                (shard.protected, Segment::Protected),
            ] {
                let (mut at, mut prev, mut bytes) = (list.head, NIL, 0);
                while at != NIL {
                    let slot = &shard.slots[at as usize];
                    assert_eq!(slot.segment, segment);
                    assert_eq!(slot.prev, prev);
                    bytes += slot.charge;
                    seen += 1;
                    prev = at;
                    at = slot.next;
                }
                assert_eq!(list.tail, prev);
                assert_eq!(list.bytes, bytes);
            }
            assert_eq!(seen, shard.slots.len());
            assert_eq!(shard.probation.bytes + shard.protected.bytes, shard.bytes);
            total += shard.bytes;
            count += shard.slots.len();
        }
        assert_eq!(store.bytes(), total);
        assert_eq!(store.len(), count);
    }

    /// The segment `key` is in, if stored.
    fn segment_of(store: &Store<Val>, key: &[u8]) -> Option<Segment> {
        let shard = store.read(key);
        shard.map.get(key).map(|&i| shard.slots[i as usize].segment)
    }

    /// Insert, get, replace and remove keep the lists, map and byte counters consistent.
    #[test]
    fn insert_get_replace_remove() {
        let store = Store::with_shards(1 << 20, 4);
        for i in 0..100u32 {
            let out = store.insert(&i.to_be_bytes(), Val::new(10), alive);
            assert!(out.stored && !out.replaced);
        }
        check(&store);
        assert_eq!(store.len(), 100);
        assert_eq!(store.bytes(), 100 * (4 + 10 + ENTRY_OVERHEAD));
        assert_eq!(store.get(&7u32.to_be_bytes(), |v| v.size), Some(10));
        let out = store.insert(&7u32.to_be_bytes(), Val::new(20), alive);
        assert!(out.stored && out.replaced);
        assert_eq!(store.get(&7u32.to_be_bytes(), |v| v.size), Some(20));
        assert_eq!(store.len(), 100);
        for i in (0..100u32).step_by(3) {
            assert!(store.remove(&i.to_be_bytes()));
            check(&store);
        }
        assert!(!store.remove(&0u32.to_be_bytes()));
        assert!(store.get(&3u32.to_be_bytes(), |_| ()).is_none());
        store.clear();
        check(&store);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    /// A flood of 200k random names into a 1 MiB store never pushes bytes() over the bound.
    #[test]
    fn random_flood_stays_under_bound() {
        let max = 1 << 20;
        let store = Store::new(max);
        let mut rng = rand::rng();
        let mut key = [0u8; 40];
        let mut evicted = 0;
        for i in 0..200_000 {
            let len = rng.random_range(8..key.len());
            rng.fill(&mut key[..len]);
            let out = store.insert(&key[..len], Val::new(rng.random_range(16..600)), alive);
            evicted += out.evicted;
            assert!(store.bytes() <= max, "over bound after insert {i}");
        }
        check(&store);
        assert!(evicted > 100_000);
        assert!(store.bytes() > max / 2, "the budget is used, not wasted");
    }

    /// A value larger than a quarter of a shard is refused, and still replaces the old value.
    #[test]
    fn oversized_value_is_not_stored() {
        let store = Store::with_shards(4096, 1);
        assert!(store.insert(b"k", Val::new(10), alive).stored);
        let out = store.insert(b"k", Val::new(2000), alive);
        assert!(!out.stored && out.replaced);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    /// SLRU: an entry hit once survives a scan of many one-hit (never re-read) entries.
    #[test]
    fn hit_entry_survives_scan() {
        let store = Store::with_shards(64 * 1024, 1);
        assert!(store.insert(b"keeper", Val::new(100), alive).stored);
        assert!(hit(&store, b"keeper"));
        for i in 0..10_000u32 {
            store.insert(&i.to_be_bytes(), Val::new(100), alive);
        }
        check(&store);
        assert!(
            hit(&store, b"keeper"),
            "the hit entry was evicted by the scan"
        );
        assert_eq!(segment_of(&store, b"keeper"), Some(Segment::Protected));
        assert!(
            store.get(&0u32.to_be_bytes(), |_| ()).is_none(),
            "scan entries are evicted"
        );
    }

    /// Hot layer: a demoted entry with >= 3 hits gets one extra pass through probation; one with fewer does not.
    #[test]
    fn hot_entry_gets_extra_pass() {
        // One shard of 100 slots of charge 100; protected holds at most 80 slots.
        let charge = 100;
        let val = || Val::new(charge - 4 - ENTRY_OVERHEAD);
        let store = Store::with_shards(100 * charge, 1);
        store.insert(b"hot!", val(), alive);
        store.insert(b"warm", val(), alive);
        for _ in 0..HOT_HITS {
            hit(&store, b"hot!");
        }
        hit(&store, b"warm");
        // Fill: "hot!" and "warm" reach the probation tail referenced and get promoted.
        let mut next = 0u32;
        let mut insert_cold = |store: &Store<Val>, n: u32| {
            for _ in 0..n {
                store.insert(&next.to_be_bytes(), val(), alive);
                next += 1;
            }
        };
        insert_cold(&store, 100);
        assert_eq!(segment_of(&store, b"hot!"), Some(Segment::Protected));
        assert_eq!(segment_of(&store, b"warm"), Some(Segment::Protected));
        // 80 more referenced entries overflow protected: its unreferenced tail is demoted.
        let hot_keys: Vec<[u8; 4]> = (1000..1080u32).map(u32::to_be_bytes).collect();
        for key in &hot_keys {
            store.insert(key, val(), alive);
            hit(&store, key);
        }
        // Push cold entries until the promoted batch has demoted both to probation.
        for _ in 0..200 {
            if segment_of(&store, b"warm") == Some(Segment::Probation) {
                break;
            }
            insert_cold(&store, 1);
        }
        check(&store);
        assert_eq!(segment_of(&store, b"hot!"), Some(Segment::Probation));
        assert_eq!(segment_of(&store, b"warm"), Some(Segment::Probation));
        // Keep the demoted pair at the probation tail region and push cold entries through:
        // "warm" (1 hit) is evicted at its first turn at the tail, "hot!" goes round once more.
        let mut warm_gone_at = None;
        let mut hot_gone_at = None;
        for round in 0..200u32 {
            insert_cold(&store, 1);
            if warm_gone_at.is_none() && segment_of(&store, b"warm").is_none() {
                warm_gone_at = Some(round);
            }
            if hot_gone_at.is_none() && segment_of(&store, b"hot!").is_none() {
                hot_gone_at = Some(round);
            }
        }
        check(&store);
        let (Some(warm), Some(hot)) = (warm_gone_at, hot_gone_at) else {
            panic!("both should be evicted eventually: warm {warm_gone_at:?} hot {hot_gone_at:?}");
        };
        assert!(hot > warm + 10, "hot evicted at {hot}, warm at {warm}");
    }

    /// Dead values are removed first and counted as expired, not evicted, even if referenced.
    #[test]
    fn dead_values_count_as_expired() {
        let charge = 100;
        let store = Store::with_shards(10 * charge, 1);
        let val = || Val::new(charge - 4 - ENTRY_OVERHEAD);
        for i in 0..10u32 {
            store.insert(&i.to_be_bytes(), val(), alive);
            hit(&store, &i.to_be_bytes());
        }
        let out = store.insert(&99u32.to_be_bytes(), val(), |_| true);
        assert_eq!((out.expired, out.evicted), (1, 0));
        check(&store);
    }

    /// try_remove_if removes only what the predicate accepts.
    #[test]
    fn try_remove_if_respects_predicate() {
        let store = Store::with_shards(1 << 16, 1);
        store.insert(b"a", Val::new(1), alive);
        assert!(!store.try_remove_if(b"a", |v| v.size == 2));
        assert!(store.try_remove_if(b"a", |v| v.size == 1));
        assert!(!store.try_remove_if(b"a", |_| true));
        check(&store);
    }

    /// Concurrent readers and a writer on the store keep every invariant.
    #[test]
    fn concurrent_readers_and_writer() {
        let store = Arc::new(Store::with_shards(256 * 1024, 8));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut found = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..500u32 {
                            found += u64::from(hit(&store, &i.to_be_bytes()));
                        }
                    }
                    found
                })
            })
            .collect();
        for round in 0..20u32 {
            for i in 0..2000u32 {
                store.insert(&(i + round).to_be_bytes(), Val::new(50), alive);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().is_ok());
        }
        check(&store);
    }
}
