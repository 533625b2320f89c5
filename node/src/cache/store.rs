//! Sharded, byte-bounded SLRU store with a hot layer: the memory manager under the answer cache.
//!
//! Keys are byte strings; values are anything [`Weighted`]. The store has two halves:
//!
//! - the *read side*, one lock-free map (`papaya`) from key to node (the value behind an `Arc`
//!   and the value's *ticket*, which names its slot); the map holds keys of up to
//!   [`INLINE_KEY_LEN`] bytes inline, so a lookup compares the key in the map's own entry
//!   instead of loading another cache line; and
//! - the *write side*: a power of two number of shards chosen by a keyed hash of the key, each
//!   a `Mutex` around a slab of slots (key, value, list links, eviction state) with two
//!   intrusive LRU lists, owning an equal share of the byte budget. A slot is charged
//!   `key length + value size +` [`ENTRY_OVERHEAD`] bytes.
//!
//! Every change of the map for a key happens under the lock of that key's shard, so the map
//! and the slabs agree whenever a shard lock is free.
//!
//! # Reads
//! [`Store::get`] pins the map's epoch (a store to this thread's own reservation slot, nothing
//! shared), finds the node and reads the value in place: no lock, no reference count, no
//! allocation. A read that counts as a hit appends the node's ticket to the calling thread's
//! hit log (module `hits`). A full log (64 tickets) is handed to the store: `try_lock` on
//! the store's inbox, the tickets are copied in (if the inbox is busy they are dropped and
//! counted in [`Store::hits_dropped`]), and when the inbox holds 1024 tickets the thread that
//! filled it applies them: grouped by shard (a counting sort), then per shard under
//! `try_lock` (a busy shard's tickets are dropped and counted too) each live slot's hit count
//! grows by its tickets.
//! Tickets carry the slot's generation, so a hit on a slot freed and reused since is ignored.
//! [`Store::flush_hits`] delivers the calling thread's log and applies the inbox at once,
//! waiting for the locks: a worker calls it when it goes idle. Hit counts therefore lag the
//! reads by up to 63 hits per thread plus the inbox, and may lose hits under contention; they
//! only steer eviction.
//!
//! # Eviction rule (run by [`Store::insert`] under the shard's lock)
//! New slots enter the MRU end of the *probation* list. The *protected* list may hold at most
//! 80% of the shard budget; probation takes the rest. While the shard is over budget, the LRU
//! tail of probation is examined (if probation is empty, the protected tail is demoted first):
//! 1. a slot the `dead` predicate accepts (expired past its stale window) is removed and
//!    counted as expired;
//! 2. a slot hit since its mark is promoted to the MRU end of protected (mark := hits, its hot
//!    chance is restored); while protected is over its 80%, its LRU tail is examined: if hit
//!    since its mark it goes back to the protected MRU end (mark := hits), else it is demoted
//!    to the probation MRU end (mark := hits);
//! 3. otherwise, a *hot* slot (at least [`HOT_HITS`] applied hits in its life) that has not
//!    used its hot chance since it was last promoted uses it: it goes back to the probation MRU
//!    end, once;
//! 4. otherwise the slot is evicted.
//!
//! Every move consumes a reference (hits > mark) or the hot chance, and hits are only applied
//! under the shard lock, so the loop ends. A value larger than a quarter of a shard budget is
//! not stored (it would flush the shard). The shared byte and length counters are updated once
//! per write with the net change, so [`Store::bytes`] never exceeds the bound.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use super::hits;
use crate::stats::Counter;

/// Applied hits at which a slot is hot and earns one extra pass through probation.
pub const HOT_HITS: u32 = 3;
/// Applied hits at which a key is queued for gossip: with the query that fetched the entry,
/// that is three uses (see [`Store::take_hot`]).
pub const GOSSIP_HITS: u32 = 2;
/// Keys a shard queues for gossip before it drops further ones (until they are taken).
const HOT_QUEUE_LEN: usize = 64;
/// Bytes charged per slot on top of key and value: the map's table slot and boxed entry (with
/// room for an inline copy of the key), the slab slot, and the headers of the shared key and
/// value. A key longer than [`INLINE_KEY_LEN`] is charged twice (the map boxes its own copy).
pub const ENTRY_OVERHEAD: usize = 192;
/// Longest key the map holds inline: with its tag and length byte the map's key is 40 bytes,
/// and with the node (ticket, value, prefetch address) the map's boxed entry is 64 bytes, the
/// size of a cache line. Longer keys are boxed. A name of up to 33 bytes in wire form (the
/// key adds 5) stays inline: `www.example.com` is 17, `i123456.bench.test` 20.
pub const INLINE_KEY_LEN: usize = 38;
/// Smallest shard budget worth splitting the store for.
const MIN_SHARD_BYTES: usize = 128 * 1024;
/// Most shards a store is split into (tickets have 6 bits for the shard).
const MAX_SHARDS: usize = 64;
/// Share of a shard's budget the protected list may hold, in percent.
const PROTECTED_PERCENT: usize = 80;
/// A value is stored only if its charge is at most the shard budget divided by this.
const MAX_ENTRY_FRACTION: usize = 4;
/// The "no slot" index in the intrusive lists and the free list.
const NIL: u32 = u32::MAX;
/// Tickets the inbox collects before they are applied (a multiple of the thread log length).
const INBOX_LEN: usize = 16 * hits::LOG_LEN;
/// Bit position of the shard in a ticket (the top bits, so sorting groups tickets by shard).
const TICKET_SHARD_SHIFT: u32 = 58;
/// Bit position of the slot generation in a ticket.
const TICKET_GENERATION_SHIFT: u32 = 32;
/// The generation bits a ticket keeps.
const TICKET_GENERATION_MASK: u32 = (1 << (TICKET_SHARD_SHIFT - TICKET_GENERATION_SHIFT)) - 1;

/// The source of store ids (they tell apart the stores a thread logs hits for).
static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

/// What the store needs to know about a value.
pub trait Weighted: Send + Sync {
    /// Heap and inline bytes the value occupies.
    fn size_bytes(&self) -> usize;
    /// Told the value's applied hit count whenever the store changes it (for reporting).
    fn set_hits(&self, hits: u32);
    /// Where a read will go after the value itself (say, its payload in another allocation),
    /// if anywhere: [`Store::get`] asks the CPU to load that line while it loads the value, so
    /// the two cache misses overlap. The address must stay the same while the value is stored;
    /// it is only ever prefetched, never read through.
    fn prefetch_addr(&self) -> Option<usize> {
        None
    }
}

/// Ask the CPU to start loading the cache line holding `addr` into its caches. A hint only: it
/// never faults, whatever the address, and does nothing on other architectures.
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing into registers and never faults, for any address; SSE,
    // which provides it, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
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

/// What the map holds for a key: the value and the ticket hits are logged under.
struct Node<V> {
    /// Shard, slot generation and slot index of the value (see [`ticket`]).
    ticket: u64,
    /// The value, shared with its slot.
    value: Arc<V>,
    /// The value's [`Weighted::prefetch_addr`], or 0.
    prefetch: usize,
}

/// A key as the map holds it: short keys inline, so that comparing the key reads the map's
/// entry and nothing else; long ones boxed. Hashes and compares as the key's bytes, so the map
/// is searched with a [`KeyRef`] of them.
enum MapKey {
    /// A key of up to [`INLINE_KEY_LEN`] bytes: its length and its bytes (zero-padded).
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_LEN],
    },
    /// A longer key.
    Boxed(Box<[u8]>),
}

// An inline key, its length byte and the tag fill 40 bytes; with the node, the map's entry 64.
const _: () = assert!(std::mem::size_of::<MapKey>() == 40);
const _: () = assert!(std::mem::size_of::<MapKey>() + std::mem::size_of::<Node<()>>() == 64);

impl MapKey {
    /// The map's copy of `key`.
    fn new(key: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE_KEY_LEN];
        match (bytes.get_mut(..key.len()), u8::try_from(key.len())) {
            (Some(prefix), Ok(len)) => {
                prefix.copy_from_slice(key);
                MapKey::Inline { len, bytes }
            }
            _ => MapKey::Boxed(Box::from(key)),
        }
    }

    /// The key's bytes.
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            MapKey::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            MapKey::Boxed(key) => key,
        }
    }
}

/// A key as the map is searched for it: hashes and compares as the [`MapKey`] holding the same
/// bytes. Both hash the bytes in one write, without the length prefix a `[u8]` hash adds (the
/// hasher's finish mixes in the length anyway): one call into SipHash per lookup instead of
/// two.
struct KeyRef<'a>(&'a [u8]);

impl std::hash::Hash for KeyRef<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

impl papaya::Equivalent<MapKey> for KeyRef<'_> {
    #[inline]
    fn equivalent(&self, key: &MapKey) -> bool {
        self.0 == key.as_bytes()
    }
}

impl std::hash::Hash for MapKey {
    /// As [`KeyRef`] of the same bytes hashes: the map is searched by `KeyRef`.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl PartialEq for MapKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MapKey {}

/// The lock-free map of the read side.
type Map<V> = papaya::HashMap<MapKey, Node<V>, RandomState>;
/// The map with an epoch pinned on the calling thread.
type Pinned<'m, V> = papaya::HashMapRef<'m, MapKey, Node<V>, RandomState, papaya::LocalGuard<'m>>;

/// The key and value a slot holds while it is live.
struct Occupant<V> {
    /// The key (the map holds its own copy); eviction removes the map entry by it, and the
    /// gossip queue shares it.
    key: Arc<[u8]>,
    /// The value, shared with the map's node.
    value: Arc<V>,
}

/// One slab slot with its list links and eviction state.
struct Slot<V> {
    /// The stored key and value; `None` while the slot is on the free list.
    occupant: Option<Occupant<V>>,
    /// Bumped each time the slot is freed, so stale tickets do not count for a new occupant.
    generation: u32,
    /// Bytes charged to the shard for this slot.
    charge: usize,
    /// Previous slot (towards the MRU head) in its list, or `NIL`.
    prev: u32,
    /// Next slot (towards the LRU tail) in its list, or the next free slot, or `NIL`.
    next: u32,
    /// The list the slot is on.
    segment: Segment,
    /// Hits applied from the hit logs since the value was stored.
    hits: u32,
    /// `hits` when the slot was inserted or last moved: more hits mean "referenced".
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

/// The write-side state of one shard, behind its lock.
struct ShardInner<V> {
    /// The slab; indices are stable while a slot is live (freed slots are reused).
    slots: Vec<Slot<V>>,
    /// First free slot, or `NIL`.
    free: u32,
    /// Live slots.
    live: usize,
    /// New and demoted slots.
    probation: List,
    /// Slots that were hit on probation.
    protected: List,
    /// Bytes charged to this shard.
    bytes: usize,
    /// Byte budget of this shard.
    budget: usize,
    /// Keys that reached [`GOSSIP_HITS`], or a hot entry that was replaced by a refresh, and
    /// their hits: waiting for the gossip sender. Allocated once with room for
    /// [`HOT_QUEUE_LEN`] and never grown, so queueing from the hit-delivery path allocates
    /// nothing; when full, further keys are dropped.
    hot: Vec<(Arc<[u8]>, u32)>,
}

/// One shard of the write side.
struct Shard<V>(Mutex<ShardInner<V>>);

/// Tickets handed over by threads whose hit logs filled, waiting to be applied.
struct Inbox {
    /// Room for [`INBOX_LEN`] tickets, allocated once.
    tickets: Box<[u64]>,
    /// How many are filled.
    len: usize,
    /// As much room again, where applying groups the tickets by shard.
    grouped: Box<[u64]>,
}

/// The sharded store.
pub struct Store<V> {
    /// Key to node: the read side.
    map: Map<V>,
    /// The write side, a power of two shards.
    shards: Box<[Shard<V>]>,
    /// Keyed hash choosing the shard (keyed so remote names cannot target one shard).
    hasher: RandomState,
    /// Delivered hit tickets not applied yet.
    inbox: Mutex<Inbox>,
    /// Process-unique id that thread hit logs are tagged with.
    id: u64,
    /// Hit tickets dropped because the inbox or a shard was busy.
    hits_dropped: Counter,
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
            .field("hits_dropped", &self.hits_dropped)
            .finish()
    }
}

/// The ticket of slot `index` of shard `shard` at `generation`: shard in the top 6 bits, the
/// low 26 bits of the generation, the index in the low 32 bits.
fn ticket(shard: usize, generation: u32, index: u32) -> u64 {
    (shard as u64) << TICKET_SHARD_SHIFT
        | u64::from(generation & TICKET_GENERATION_MASK) << TICKET_GENERATION_SHIFT
        | u64::from(index)
}

/// The shard a ticket names.
fn ticket_shard(ticket: u64) -> usize {
    (ticket >> TICKET_SHARD_SHIFT) as usize
}

/// Lock `mutex`, waiting if `wait`, else only if it is free (a panic elsewhere does not make
/// the data unusable).
fn lock<T>(mutex: &Mutex<T>, wait: bool) -> Option<MutexGuard<'_, T>> {
    if wait {
        return Some(mutex.lock().unwrap_or_else(PoisonError::into_inner));
    }
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl<V: Weighted + 'static> Store<V> {
    /// A store bounded by `max_bytes`, split into up to 64 shards of at least 128 KiB.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_shards(max_bytes, (max_bytes / MIN_SHARD_BYTES).min(MAX_SHARDS))
    }

    /// A store bounded by `max_bytes` split into `shards` shards (rounded up to a power of two,
    /// at least one, at most 64).
    pub fn with_shards(max_bytes: usize, shards: usize) -> Self {
        let count = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let budget = max_bytes / count;
        let shards = (0..count)
            .map(|_| {
                Shard(Mutex::new(ShardInner {
                    slots: Vec::new(),
                    free: NIL,
                    live: 0,
                    probation: List::EMPTY,
                    protected: List::EMPTY,
                    bytes: 0,
                    budget,
                    hot: Vec::with_capacity(HOT_QUEUE_LEN),
                }))
            })
            .collect();
        Store {
            map: papaya::HashMap::builder()
                .hasher(RandomState::new())
                .build(),
            shards,
            hasher: RandomState::new(),
            inbox: Mutex::new(Inbox {
                tickets: vec![0; INBOX_LEN].into_boxed_slice(),
                grouped: vec![0; INBOX_LEN].into_boxed_slice(),
                len: 0,
            }),
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            hits_dropped: Counter::new(),
            max_bytes,
            bytes: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// Call `f` on the value stored under `key`, in place and without locking; `f` returns its
    /// result and whether the read counts as a hit (logged on this thread, see the module doc).
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&V) -> (R, bool)) -> Option<R> {
        let guard = self.map.guard();
        let node = self.map.get(&KeyRef(key), &guard)?;
        if node.prefetch != 0 {
            prefetch(node.prefetch);
        }
        let (result, hit) = f(&node.value);
        if hit {
            hits::record(self.id, node.ticket, |batch| self.deliver(batch, false));
        }
        Some(result)
    }

    /// Deliver the calling thread's logged hits and apply every delivered hit now, waiting for
    /// the locks. Call it when a thread goes idle, so hits on a quiet store still count.
    pub fn flush_hits(&self) {
        hits::take(self.id, |batch| self.deliver(batch, true));
        if let Some(mut inbox) = lock(&self.inbox, true) {
            self.apply(&mut inbox, true);
        }
    }

    /// Hit tickets dropped so far because the inbox or a shard was busy.
    pub fn hits_dropped(&self) -> u64 {
        self.hits_dropped.get()
    }

    /// Store `value` under `key`, replacing any value there, then evict until the shard is back
    /// under budget (see the module doc). `dead` says which values are past their stale window.
    /// A value too large for a shard is not stored, and the previous value is still removed.
    #[cfg(test)]
    pub fn insert(&self, key: &[u8], value: V, dead: impl FnMut(&V) -> bool) -> InsertOutcome {
        self.insert_queueing(key, value, dead, false)
    }

    /// [`Store::insert`]; with `queue_if_hot`, a replaced value that was hot (at least
    /// [`GOSSIP_HITS`] applied hits) puts the key on the gossip queue (a refresh of a hot
    /// entry is news for the peers).
    pub fn insert_queueing(
        &self,
        key: &[u8],
        value: V,
        mut dead: impl FnMut(&V) -> bool,
        queue_if_hot: bool,
    ) -> InsertOutcome {
        let boxed_map_key = if key.len() > INLINE_KEY_LEN {
            key.len()
        } else {
            0
        };
        let charge = key.len() + boxed_map_key + value.size_bytes() + ENTRY_OVERHEAD;
        let shard_index = self.shard_index(key);
        let mut shard = self.lock_shard(shard_index);
        let map = self.map.pin();
        let (bytes_before, live_before) = (shard.bytes, shard.live);
        let replaced_hits = map
            .get(&KeyRef(key))
            .and_then(|node| shard.slots.get(node.ticket as u32 as usize))
            .map_or(0, |slot| slot.hits);
        let mut outcome = InsertOutcome {
            replaced: shard.remove_key(&map, key),
            ..InsertOutcome::default()
        };
        if queue_if_hot && replaced_hits >= GOSSIP_HITS {
            shard.queue_hot(Arc::from(key), replaced_hits);
        }
        if charge <= shard.budget / MAX_ENTRY_FRACTION {
            shard.push(&map, shard_index, key, value, charge);
            outcome.stored = true;
            shard.evict_to_budget(&map, &mut dead, &mut outcome);
        }
        self.account(bytes_before, live_before, shard.bytes, shard.live);
        outcome
    }

    /// Remove the value stored under `key`; true if there was one.
    pub fn remove(&self, key: &[u8]) -> bool {
        let mut shard = self.lock_shard(self.shard_index(key));
        let map = self.map.pin();
        let (bytes_before, live_before) = (shard.bytes, shard.live);
        let removed = shard.remove_key(&map, key);
        self.account(bytes_before, live_before, shard.bytes, shard.live);
        removed
    }

    /// Remove the value under `key` if `pred` accepts it, but only if the shard's lock is free
    /// right now (never waits). True if a value was removed.
    pub fn try_remove_if(&self, key: &[u8], pred: impl FnOnce(&V) -> bool) -> bool {
        let Some(shard) = self.shards.get(self.shard_index(key)) else {
            return false;
        };
        let Some(mut shard) = lock(&shard.0, false) else {
            return false;
        };
        let map = self.map.pin();
        let Some(node) = map.get(&KeyRef(key)) else {
            return false;
        };
        if !pred(&node.value) {
            return false;
        }
        let (bytes_before, live_before) = (shard.bytes, shard.live);
        shard.remove_index(&map, node.ticket as u32);
        self.account(bytes_before, live_before, shard.bytes, shard.live);
        true
    }

    /// Remove every value.
    pub fn clear(&self) {
        self.remove_matching(|_| true);
    }

    /// Remove every value whose key `pred` accepts, one shard at a time (each shard's lock is
    /// held while its slots are scanned); returns how many were removed.
    pub fn remove_matching(&self, mut pred: impl FnMut(&[u8]) -> bool) -> usize {
        let map = self.map.pin();
        let mut removed = 0;
        for index in 0..self.shards.len() {
            let mut shard = self.lock_shard(index);
            let (bytes_before, live_before) = (shard.bytes, shard.live);
            for slot in 0..shard.slots.len() as u32 {
                let matched = shard.slots[slot as usize]
                    .occupant
                    .as_ref()
                    .is_some_and(|o| pred(&o.key));
                if matched {
                    shard.remove_index(&map, slot);
                    removed += 1;
                }
            }
            self.account(bytes_before, live_before, shard.bytes, shard.live);
        }
        removed
    }

    /// Every stored key (copied) and value (shared) at this moment, for reports and dumps;
    /// takes no lock and applies no hit.
    pub fn entries(&self) -> Vec<(Arc<[u8]>, Arc<V>)> {
        let map = self.map.pin();
        map.iter()
            .map(|(key, node)| (Arc::from(key.as_bytes()), Arc::clone(&node.value)))
            .collect()
    }

    /// Move every key queued for gossip (with its hits at the time) into `out`, shard by
    /// shard (waiting for each shard's lock; not for the query path).
    pub fn take_hot(&self, out: &mut Vec<(Arc<[u8]>, u32)>) {
        for index in 0..self.shards.len() {
            let mut shard = self.lock_shard(index);
            out.append(&mut shard.hot);
            // `append` leaves the capacity in place: the queue never allocates again.
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

    /// The index of the shard that owns `key`.
    fn shard_index(&self, key: &[u8]) -> usize {
        let hash = self.hasher.hash_one(key);
        // The shard count is a power of two; the high bits are independent of the map's hash.
        (hash >> 32) as usize & (self.shards.len() - 1)
    }

    /// Lock shard `index`, waiting for it.
    fn lock_shard(&self, index: usize) -> MutexGuard<'_, ShardInner<V>> {
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Take a full (or flushed) hit log: copy it into the inbox, applying the inbox first if
    /// it has no room and after if it is full. Without `wait`, a busy inbox drops the batch.
    fn deliver(&self, batch: &mut [u64], wait: bool) {
        let Some(mut inbox) = lock(&self.inbox, wait) else {
            self.hits_dropped.add(batch.len() as u64);
            return;
        };
        if inbox.len + batch.len() > inbox.tickets.len() {
            self.apply(&mut inbox, wait);
        }
        let start = inbox.len;
        match inbox.tickets.get_mut(start..start + batch.len()) {
            Some(room) => {
                room.copy_from_slice(batch);
                inbox.len += batch.len();
            }
            None => self.hits_dropped.add(batch.len() as u64),
        }
        if inbox.len == inbox.tickets.len() {
            self.apply(&mut inbox, wait);
        }
    }

    /// Apply and empty the inbox: group the tickets by shard, then apply them shard by shard
    /// (a shard whose lock is busy, without `wait`, loses its tickets). The grouping is a
    /// counting sort into the inbox's second buffer, one pass to count and one to place:
    /// cheaper than sorting the tickets, which this once did (callgrind, the whole flush per
    /// cache hit: 144 instructions with the sort, 86 with the counting sort).
    fn apply(&self, inbox: &mut Inbox, wait: bool) {
        let len = std::mem::take(&mut inbox.len);
        let (Some(pending), Some(grouped)) =
            (inbox.tickets.get(..len), inbox.grouped.get_mut(..len))
        else {
            return;
        };
        // A ticket's shard has 6 bits (< MAX_SHARDS); the mask only keeps the indexes in range.
        let shard_of = |ticket: u64| ticket_shard(ticket) & (MAX_SHARDS - 1);
        // ends[s]: one past the last place of shard s's tickets in `grouped`.
        let mut ends = [0usize; MAX_SHARDS];
        for &ticket in pending {
            ends[shard_of(ticket)] += 1;
        }
        for s in 1..MAX_SHARDS {
            ends[s] += ends[s - 1];
        }
        // Fill each shard's range from its end down (the counts become the starts).
        let mut starts = ends;
        for &ticket in pending.iter().rev() {
            let at = &mut starts[shard_of(ticket)];
            *at -= 1;
            grouped[*at] = ticket;
        }
        for (shard_index, (&start, &end)) in starts.iter().zip(&ends).enumerate() {
            let Some(run) = grouped.get(start..end).filter(|run| !run.is_empty()) else {
                continue;
            };
            let shard = self
                .shards
                .get(shard_index)
                .and_then(|shard| lock(&shard.0, wait));
            match shard {
                Some(mut shard) => shard.apply_hits(run),
                None => self.hits_dropped.add(run.len() as u64),
            }
        }
    }

    /// Apply one shard's net change to the shared counters (adds before subtracting, so a
    /// reader never sees a wrapped value).
    fn account(
        &self,
        bytes_before: usize,
        live_before: usize,
        bytes_after: usize,
        live_after: usize,
    ) {
        if bytes_after >= bytes_before {
            self.bytes
                .fetch_add(bytes_after - bytes_before, Ordering::Relaxed);
        } else {
            self.bytes
                .fetch_sub(bytes_before - bytes_after, Ordering::Relaxed);
        }
        if live_after >= live_before {
            self.len
                .fetch_add(live_after - live_before, Ordering::Relaxed);
        } else {
            self.len
                .fetch_sub(live_before - live_after, Ordering::Relaxed);
        }
    }
}

impl<V: Weighted + 'static> ShardInner<V> {
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

    /// Add `tickets` (all of this shard, in any order; a run of equal ones is applied at once)
    /// to the slots they name, skipping slots freed since the ticket was logged.
    fn apply_hits(&mut self, tickets: &[u64]) {
        for same in tickets.chunk_by(|a, b| a == b) {
            let Some(&ticket) = same.first() else {
                continue;
            };
            let generation = (ticket >> TICKET_GENERATION_SHIFT) as u32 & TICKET_GENERATION_MASK;
            let Some(slot) = self.slots.get_mut(ticket as u32 as usize) else {
                continue;
            };
            if slot.generation & TICKET_GENERATION_MASK != generation {
                continue;
            }
            if let Some(occupant) = &slot.occupant {
                let added = u32::try_from(same.len()).unwrap_or(u32::MAX);
                let before = slot.hits;
                slot.hits = slot.hits.saturating_add(added);
                occupant.value.set_hits(slot.hits);
                if before < GOSSIP_HITS && slot.hits >= GOSSIP_HITS {
                    let entry = (Arc::clone(&occupant.key), slot.hits);
                    if self.hot.len() < self.hot.capacity() {
                        self.hot.push(entry);
                    }
                }
            }
        }
    }

    /// Queue `key` for gossip unless the queue is full (it never grows).
    fn queue_hot(&mut self, key: Arc<[u8]>, hits: u32) {
        if self.hot.len() < self.hot.capacity() {
            self.hot.push((key, hits));
        }
    }

    /// Add a new slot at the probation MRU end and publish it in the map.
    fn push(&mut self, map: &Pinned<'_, V>, shard: usize, key: &[u8], value: V, charge: usize) {
        let map_key = MapKey::new(key);
        let value = Arc::new(value);
        value.set_hits(0);
        let occupant = Occupant {
            key: Arc::from(key),
            value: Arc::clone(&value),
        };
        let index = if self.free == NIL {
            let index = u32::try_from(self.slots.len()).unwrap_or(NIL);
            self.slots.push(Slot {
                occupant: None,
                generation: 0,
                charge: 0,
                prev: NIL,
                next: NIL,
                segment: Segment::Probation,
                hits: 0,
                mark: 0,
                hot_chance_used: false,
            });
            index
        } else {
            let index = self.free;
            self.free = self.slots[index as usize].next;
            index
        };
        let slot = &mut self.slots[index as usize];
        slot.occupant = Some(occupant);
        slot.charge = charge;
        slot.hits = 0;
        slot.mark = 0;
        slot.hot_chance_used = false;
        let ticket = ticket(shard, slot.generation, index);
        self.live += 1;
        self.bytes += charge;
        self.link_head(index, Segment::Probation);
        let prefetch = value.prefetch_addr().unwrap_or(0);
        map.insert(
            map_key,
            Node {
                ticket,
                value,
                prefetch,
            },
        );
    }

    /// Remove the slot stored under `key`; true if there was one.
    fn remove_key(&mut self, map: &Pinned<'_, V>, key: &[u8]) -> bool {
        let Some(node) = map.get(&KeyRef(key)) else {
            return false;
        };
        self.remove_index(map, node.ticket as u32);
        true
    }

    /// Remove slot `index` from its list and the map, and put it on the free list.
    fn remove_index(&mut self, map: &Pinned<'_, V>, index: u32) {
        self.unlink(index);
        let free = self.free;
        let slot = &mut self.slots[index as usize];
        let occupant = slot.occupant.take();
        slot.generation = slot.generation.wrapping_add(1);
        slot.next = free;
        let charge = std::mem::take(&mut slot.charge);
        self.free = index;
        self.live -= 1;
        self.bytes -= charge;
        if let Some(occupant) = occupant {
            map.remove(&KeyRef(&occupant.key));
        }
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
        slot.mark = slot.hits;
        self.link_head(index, segment);
    }

    /// Run the eviction rule of the module doc until the shard fits its budget.
    fn evict_to_budget(
        &mut self,
        map: &Pinned<'_, V>,
        dead: &mut impl FnMut(&V) -> bool,
        outcome: &mut InsertOutcome,
    ) {
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
            let is_dead = slot
                .occupant
                .as_ref()
                .is_some_and(|occupant| dead(&occupant.value));
            if is_dead {
                self.remove_index(map, victim);
                outcome.expired += 1;
            } else if slot.hits > slot.mark {
                self.slots[victim as usize].hot_chance_used = false;
                self.move_to_head(victim, Segment::Protected);
                self.rebalance_protected();
            } else if slot.hits >= HOT_HITS && !slot.hot_chance_used {
                self.slots[victim as usize].hot_chance_used = true;
                self.move_to_head(victim, Segment::Probation);
            } else {
                self.remove_index(map, victim);
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
            if slot.hits > slot.mark {
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

    /// A value with a settable size that remembers the hit count the store reports.
    #[derive(Debug)]
    struct Val {
        /// Reported size.
        size: usize,
        /// Applied hits, as told by the store.
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
        fn set_hits(&self, hits: u32) {
            self.hits.store(hits, Ordering::Relaxed);
        }
    }

    /// Never dead.
    fn alive(_: &Val) -> bool {
        false
    }

    /// Read `key` as a hit without applying it; true if present.
    fn read(store: &Store<Val>, key: &[u8]) -> bool {
        store.get(key, |_| ((), true)).is_some()
    }

    /// Read `key` as a hit and apply it at once (flush); true if present.
    fn hit(store: &Store<Val>, key: &[u8]) -> bool {
        let found = read(store, key);
        store.flush_hits();
        found
    }

    /// Check the shard invariants: list links, byte totals, free list, map nodes and tickets.
    fn check(store: &Store<Val>) {
        let map = store.map.pin();
        let mut total = 0;
        let mut count = 0;
        for (shard_index, shard) in store.shards.iter().enumerate() {
            let shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(shard.bytes <= shard.budget);
            let mut live = 0;
            for (index, slot) in shard.slots.iter().enumerate() {
                let Some(occupant) = &slot.occupant else {
                    continue;
                };
                live += 1;
                let node = map
                    .get(&KeyRef(&occupant.key))
                    .expect("live slot is in the map");
                assert_eq!(
                    node.ticket,
                    ticket(shard_index, slot.generation, index as u32)
                );
                assert!(Arc::ptr_eq(&node.value, &occupant.value));
                assert_eq!(store.shard_index(&occupant.key), shard_index);
            }
            assert_eq!(live, shard.live);
            let (mut free, mut at) = (0, shard.free);
            while at != NIL {
                assert!(shard.slots[at as usize].occupant.is_none());
                free += 1;
                at = shard.slots[at as usize].next;
            }
            assert_eq!(free + live, shard.slots.len());
            let mut seen = 0;
            for (list, segment) in [
                (shard.probation, Segment::Probation),
                (shard.protected, Segment::Protected),
            ] {
                let (mut at, mut prev, mut bytes) = (list.head, NIL, 0);
                while at != NIL {
                    let slot = &shard.slots[at as usize];
                    assert!(slot.occupant.is_some());
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
            assert_eq!(seen, live);
            assert_eq!(shard.probation.bytes + shard.protected.bytes, shard.bytes);
            total += shard.bytes;
            count += live;
        }
        assert_eq!(map.len(), count);
        assert_eq!(store.bytes(), total);
        assert_eq!(store.len(), count);
    }

    /// The segment `key` is in, if stored.
    fn segment_of(store: &Store<Val>, key: &[u8]) -> Option<Segment> {
        let shard = store.lock_shard(store.shard_index(key));
        let map = store.map.pin();
        let node = map.get(&KeyRef(key))?;
        Some(shard.slots[node.ticket as u32 as usize].segment)
    }

    /// The applied hits of `key`, as the value reports them.
    fn hits_of(store: &Store<Val>, key: &[u8]) -> Option<u32> {
        store.get(key, |v| (v.hits.load(Ordering::Relaxed), false))
    }

    /// Insert, get, replace and remove keep the lists, map, free list and byte counters consistent.
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
        assert_eq!(
            store.get(&7u32.to_be_bytes(), |v| (v.size, false)),
            Some(10)
        );
        let out = store.insert(&7u32.to_be_bytes(), Val::new(20), alive);
        assert!(out.stored && out.replaced);
        assert_eq!(
            store.get(&7u32.to_be_bytes(), |v| (v.size, false)),
            Some(20)
        );
        assert_eq!(store.len(), 100);
        for i in (0..100u32).step_by(3) {
            assert!(store.remove(&i.to_be_bytes()));
            check(&store);
        }
        assert!(!store.remove(&0u32.to_be_bytes()));
        assert!(store.get(&3u32.to_be_bytes(), |_| ((), false)).is_none());
        // Freed slots are reused.
        for i in 1000..1010u32 {
            store.insert(&i.to_be_bytes(), Val::new(10), alive);
        }
        check(&store);
        store.clear();
        check(&store);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    /// Keys on both sides of the inline limit (and the longest and shortest) are stored, found,
    /// told apart from their prefixes, listed whole and removed.
    #[test]
    fn inline_and_boxed_keys() {
        let store = Store::with_shards(1 << 20, 2);
        let lengths = [
            1,
            INLINE_KEY_LEN - 1,
            INLINE_KEY_LEN,
            INLINE_KEY_LEN + 1,
            260,
        ];
        let keys: Vec<Vec<u8>> = lengths.iter().map(|&n| vec![b'k'; n]).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(store.insert(key, Val::new(i), alive).stored);
        }
        check(&store);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                store.get(key, |v| (v.size, false)),
                Some(i),
                "key of {}",
                key.len()
            );
        }
        assert_eq!(store.get(&[b'k'; 2], |v| (v.size, false)), None);
        let mut listed: Vec<usize> = store.entries().iter().map(|(k, _)| k.len()).collect();
        listed.sort_unstable();
        assert_eq!(listed, lengths);
        for key in &keys {
            assert!(store.remove(key));
        }
        check(&store);
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    /// The inline limit is where the map's key switches to a box, a boxed key is charged twice,
    /// and keys that differ only in trailing zero bytes (the inline padding) stay apart.
    #[test]
    fn inline_limit_charge_and_zero_padding() {
        assert!(matches!(
            MapKey::new(&[1; INLINE_KEY_LEN]),
            MapKey::Inline { .. }
        ));
        assert!(matches!(
            MapKey::new(&[1; INLINE_KEY_LEN + 1]),
            MapKey::Boxed(_)
        ));
        let store = Store::with_shards(1 << 20, 1);
        let long = [7u8; INLINE_KEY_LEN + 1];
        store.insert(&long, Val::new(10), alive);
        assert_eq!(store.bytes(), 2 * long.len() + 10 + ENTRY_OVERHEAD);
        store.clear();
        let padded: [&[u8]; 4] = [b"a", b"a\0", b"a\0\0", b"\0a"];
        for (i, key) in padded.iter().enumerate() {
            store.insert(key, Val::new(i), alive);
        }
        check(&store);
        for (i, key) in padded.iter().enumerate() {
            assert_eq!(store.get(key, |v| (v.size, false)), Some(i));
        }
        assert_eq!(store.get(b"", |v| (v.size, false)), None);
        assert_eq!(store.get(b"\0", |v| (v.size, false)), None);
    }

    /// Hits are applied when flushed; a ticket logged before its slot was reused does not count.
    #[test]
    fn hits_apply_on_flush_and_skip_reused_slots() {
        let store = Store::with_shards(1 << 20, 1);
        store.insert(b"a", Val::new(10), alive);
        assert!(read(&store, b"a"));
        assert!(read(&store, b"a"));
        assert_eq!(hits_of(&store, b"a"), Some(0), "logged, not applied yet");
        store.flush_hits();
        assert_eq!(hits_of(&store, b"a"), Some(2));
        assert!(read(&store, b"a"));
        store.remove(b"a");
        store.insert(b"b", Val::new(10), alive);
        store.flush_hits();
        assert_eq!(
            hits_of(&store, b"b"),
            Some(0),
            "b reuses a's slot, not its hits"
        );
        check(&store);
    }

    /// A full thread log goes to the inbox; a full inbox is applied without a flush.
    #[test]
    fn full_logs_and_inbox_apply_themselves() {
        let store = Store::with_shards(1 << 20, 2);
        store.insert(b"k", Val::new(10), alive);
        for _ in 0..hits::LOG_LEN {
            read(&store, b"k");
        }
        assert_eq!(hits_of(&store, b"k"), Some(0), "in the inbox");
        for _ in hits::LOG_LEN..INBOX_LEN {
            read(&store, b"k");
        }
        assert_eq!(hits_of(&store, b"k"), Some(INBOX_LEN as u32));
        assert_eq!(store.hits_dropped(), 0);
    }

    /// Tickets of many shards, interleaved and repeated, each reach their own slot: the
    /// grouping by shard loses, duplicates and misplaces none.
    #[test]
    fn interleaved_hits_of_many_shards_all_apply() {
        let store = Store::with_shards(64 << 20, MAX_SHARDS);
        let keys: Vec<[u8; 4]> = (0u32..200).map(u32::to_be_bytes).collect();
        for key in &keys {
            store.insert(key, Val::new(10), alive);
        }
        let shards: std::collections::HashSet<usize> =
            keys.iter().map(|k| store.shard_index(k)).collect();
        assert!(
            shards.len() > 32,
            "keys spread over {} shards",
            shards.len()
        );
        // Key i is read i % 7 times, in rounds, so a shard's tickets arrive far apart.
        for round in 0..7 {
            for (i, key) in keys.iter().enumerate() {
                if round < i % 7 {
                    assert!(read(&store, key));
                }
            }
        }
        store.flush_hits();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(hits_of(&store, key), Some((i % 7) as u32), "key {i}");
        }
        assert_eq!(store.hits_dropped(), 0);
        check(&store);
    }

    /// A busy inbox or shard makes a hand-off drop its tickets (counted) instead of waiting.
    #[test]
    fn busy_inbox_or_shard_drops_and_counts() {
        let store = Store::with_shards(1 << 20, 1);
        store.insert(b"k", Val::new(10), alive);
        let inbox = store.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..hits::LOG_LEN {
            read(&store, b"k");
        }
        drop(inbox);
        assert_eq!(store.hits_dropped(), hits::LOG_LEN as u64);
        let shard = store.lock_shard(0);
        for _ in 0..INBOX_LEN {
            read(&store, b"k");
        }
        drop(shard);
        assert_eq!(store.hits_dropped(), (hits::LOG_LEN + INBOX_LEN) as u64);
        store.flush_hits();
        assert_eq!(hits_of(&store, b"k"), Some(0));
        check(&store);
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
        check(&store);
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
            store.get(&0u32.to_be_bytes(), |_| ((), false)).is_none(),
            "scan entries are evicted"
        );
    }

    /// Hot layer: a demoted entry with >= 3 hits gets one extra pass through probation; one with fewer does not.
    #[test]
    fn hot_entry_gets_extra_pass() {
        // One shard of 100 slots of charge 256; protected holds at most 80 slots.
        let charge = 256;
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
        let charge = 256;
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

    /// Concurrent readers (logging hits) and a writer keep every invariant and the byte bound.
    #[test]
    fn concurrent_readers_and_writer() {
        let max = 256 * 1024;
        let store = Arc::new(Store::with_shards(max, 8));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut found = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..500u32 {
                            found += u64::from(read(&store, &i.to_be_bytes()));
                        }
                    }
                    store.flush_hits();
                    found
                })
            })
            .collect();
        for round in 0..20u32 {
            for i in 0..2000u32 {
                store.insert(&(i + round).to_be_bytes(), Val::new(50), alive);
                assert!(store.bytes() <= max);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().is_ok());
        }
        check(&store);
    }
}
