//! The answer cache: sharded SLRU store with a hot layer, entries replayed from wire bytes.
//!
//! - [`write_key`] builds the key of a question on the stack (lower-cased name, type, class,
//!   DO and CD bits); every lookup takes the key as a borrowed slice.
//! - [`Entry::from_response`] turns an upstream response into an [`Entry`] and says whether and
//!   for how long it may be cached ([`CachePolicy`]: TTL clamps, RFC 2308 negative caching,
//!   SERVFAIL caching); [`Entry::write_response`] replays it for a client without allocating.
//! - [`Cache`] stores entries in a byte-bounded sharded SLRU store (the eviction rule is in the
//!   `store` module doc). A lookup takes no lock and writes no memory shared with other
//!   threads: the entry is found in a lock-free map and read in place, the hit is logged in a
//!   per-thread buffer (applied to the eviction state in batches; [`Cache::flush_hits`] applies
//!   a thread's pending hits when it goes idle) and counted in per-thread counter slots.
//!
//! Life of an entry: fresh until `insert time + ttl`. A fresh hit in the last 10% of the TTL
//! asks (once per entry) for a prefetch when the policy allows it. Once expired, an entry is kept
//! for `stale_max` seconds when serve-stale is on (RFC 8767): a lookup that allows stale data
//! gets it as [`Freshness::Stale`], other lookups miss. Past that window, or at once when
//! serve-stale is off, the entry is dead: a lookup misses and removes it (if the shard's lock
//! is free at that moment; otherwise eviction or the next insert of the key does).

mod entry;
mod hits;
mod key;
mod policy;
mod refresh;
mod store;
#[cfg(test)]
pub(crate) mod testutil;

use crate::stats::Counter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use entry::{ClientOpt, ClientQuery, Entry, EntryError, EntryKind, Source};
pub use key::{KEY_CHECKING_DISABLED, KEY_DNSSEC_OK, MAX_KEY_LEN, key_len, write_key};
pub use policy::{CachePolicy, MAX_SERVFAIL_TTL};
pub use refresh::Refreshers;
pub use store::{ENTRY_OVERHEAD, GOSSIP_HITS, HOT_HITS};

use entry::Lifetime;
use store::Store;

/// How fresh a cache hit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Before expiry; `prefetch` is true once per entry, on a hit in the last 10% of its TTL
    /// (when the policy enables prefetch): the caller should refresh it in the background.
    Fresh {
        /// Refresh this entry now.
        prefetch: bool,
    },
    /// Expired but within the stale window: serve with the stale TTL (RFC 8767).
    Stale,
}

/// A snapshot of the cache counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Fresh hits.
    pub hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Entries stored.
    pub inserts: u64,
    /// Entries evicted to stay under the byte bound.
    pub evictions: u64,
    /// Entries removed because they were past their stale window.
    pub expired: u64,
    /// Expired entries served stale.
    pub stale_served: u64,
    /// Hit records dropped because the store was busy when they were handed over (they only
    /// steer eviction; the hits themselves were served and counted).
    pub hits_dropped: u64,
}

/// The live counters behind [`CacheStats`] (per-thread slots: a hit writes no shared line).
#[derive(Debug, Default)]
struct Counters {
    /// See [`CacheStats::hits`].
    hits: Counter,
    /// See [`CacheStats::misses`].
    misses: Counter,
    /// See [`CacheStats::inserts`].
    inserts: Counter,
    /// See [`CacheStats::evictions`].
    evictions: Counter,
    /// See [`CacheStats::expired`].
    expired: Counter,
    /// See [`CacheStats::stale_served`].
    stale_served: Counter,
}

/// What a lookup found.
enum Probe<R> {
    /// A fresh entry; the callback's result.
    Fresh(R),
    /// An expired entry served stale; the callback's result.
    Stale(R),
    /// An expired entry the caller did not want stale.
    Expired,
    /// An entry past its stale window.
    Dead,
}

/// What a flush removes. Names are uncompressed wire form, lower-cased (as in cache keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushTarget<'a> {
    /// Every entry.
    All,
    /// Every type of exactly this name.
    Name(&'a [u8]),
    /// This name and every name below it.
    Subtree(&'a [u8]),
    /// Every name of this type.
    Type(u16),
    /// This name with this type.
    NameType(&'a [u8], u16),
}

impl FlushTarget<'_> {
    /// Whether the entry under `key` (name || type || class || flags) is covered.
    pub fn covers(&self, key: &[u8]) -> bool {
        let Some(name_len) = key.len().checked_sub(5) else {
            return false;
        };
        let (name, rest) = key.split_at(name_len);
        let qtype = u16::from_be_bytes([rest[0], rest[1]]);
        match *self {
            FlushTarget::All => true,
            FlushTarget::Name(n) => name == n,
            FlushTarget::Subtree(n) => in_subtree(name, n),
            FlushTarget::Type(t) => qtype == t,
            FlushTarget::NameType(n, t) => name == n && qtype == t,
        }
    }
}

/// Whether wire name `name` equals `apex` or lies below it (the suffix must start at a
/// label boundary: `xexample.test` is not below `example.test`).
pub(crate) fn in_subtree(name: &[u8], apex: &[u8]) -> bool {
    let Some(start) = name.len().checked_sub(apex.len()) else {
        return false;
    };
    if name.get(start..) != Some(apex) {
        return false;
    }
    // Walk the labels from the front until the suffix's offset is reached or passed.
    let mut at = 0;
    while at < start {
        at += 1 + usize::from(name[at]);
    }
    at == start
}

/// The answer cache, shared by every worker (`Send + Sync`, wrap it in an `Arc`).
#[derive(Debug)]
pub struct Cache {
    /// The byte-bounded sharded SLRU store.
    store: Store<Entry>,
    /// The policy, replaceable at run time without locking readers.
    policy: ArcSwap<CachePolicy>,
    /// The two policy values a lookup needs, packed in one word (see [`pack_knobs`]) so a hit
    /// reads them with one relaxed load instead of loading the policy.
    knobs: AtomicU64,
    /// Counters.
    counters: Counters,
    /// The last cluster flush epoch applied to this cache (set by the cluster's live apply):
    /// every entry in the cache survived the flushes up to it. Gossip carries it.
    flush_epoch: AtomicU64,
    /// Counters of the gossip that fills and spreads this cache (held here so the metrics
    /// view, which holds the cache, reads them).
    gossip: crate::gossip::GossipStats,
    /// Which keys this node refreshes when its peers hold them too.
    refreshers: Refreshers,
}

/// Pack what a lookup needs from `policy`: the stale window (low 32 bits) and prefetch (bit 32).
fn pack_knobs(policy: &CachePolicy) -> u64 {
    u64::from(policy.stale_window()) | u64::from(policy.prefetch) << 32
}

impl Cache {
    /// An empty cache holding at most `max_bytes` (keys, entries and per-entry overhead).
    pub fn new(max_bytes: usize, policy: CachePolicy) -> Cache {
        Cache {
            store: Store::new(max_bytes),
            knobs: AtomicU64::new(pack_knobs(&policy)),
            policy: ArcSwap::from_pointee(policy),
            counters: Counters::default(),
            flush_epoch: AtomicU64::new(0),
            gossip: crate::gossip::GossipStats::default(),
            refreshers: Refreshers::default(),
        }
    }

    /// Replace the policy; it applies to every later lookup and entry build.
    pub fn set_policy(&self, policy: CachePolicy) {
        self.knobs.store(pack_knobs(&policy), Ordering::Relaxed);
        self.policy.store(Arc::new(policy));
    }

    /// Which keys this node refreshes (set by the gossip task from the live members).
    pub fn refreshers(&self) -> &Refreshers {
        &self.refreshers
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<CachePolicy> {
        self.policy.load_full()
    }

    /// Look `key` up at `now` and call `f` on a usable entry.
    ///
    /// Fresh entry: `f(entry, Fresh { prefetch })`. Expired entry within the stale window:
    /// `f(entry, Stale)` if `allow_stale`, else `None`. Dead entry: `None`, and it is removed.
    ///
    /// A hit takes no lock, never allocates and writes nothing another thread writes: `f` reads
    /// the entry in place under an epoch pinned on this thread, the hit goes to this thread's
    /// hit log (every 64th hit hands the log to the store, with `try_lock` only) and the
    /// counters are per-thread slots. The one shared write is the once-per-entry prefetch
    /// claim.
    pub fn lookup<R>(
        &self,
        key: &[u8],
        now: Instant,
        allow_stale: bool,
        f: impl FnOnce(&Entry, Freshness) -> R,
    ) -> Option<R> {
        self.lookup_aged(key, now, allow_stale, |entry, freshness, _| {
            f(entry, freshness)
        })
    }

    /// [`Cache::lookup`], passing `f` the entry's age at `now` as well (see [`Entry::age`]),
    /// so a caller writing the answer need not subtract the instants again
    /// ([`Entry::write_response_aged`]).
    pub fn lookup_aged<R>(
        &self,
        key: &[u8],
        now: Instant,
        allow_stale: bool,
        f: impl FnOnce(&Entry, Freshness, Duration) -> R,
    ) -> Option<R> {
        let knobs = self.knobs.load(Ordering::Relaxed);
        let stale_window = knobs as u32;
        let prefetch_on = knobs >> 32 != 0;
        let probe = self.store.get(key, |entry| {
            let age = entry.age(now);
            match entry.lifetime_at(age, stale_window) {
                Lifetime::Fresh => {
                    let prefetch = prefetch_on && entry.claim_prefetch(age);
                    (
                        Probe::Fresh(f(entry, Freshness::Fresh { prefetch }, age)),
                        true,
                    )
                }
                Lifetime::Stale if allow_stale => {
                    (Probe::Stale(f(entry, Freshness::Stale, age)), true)
                }
                Lifetime::Stale => (Probe::Expired, false),
                Lifetime::Dead => (Probe::Dead, false),
            }
        });
        match probe {
            Some(Probe::Fresh(result)) => {
                self.counters.hits.incr();
                Some(result)
            }
            Some(Probe::Stale(result)) => {
                self.counters.stale_served.incr();
                Some(result)
            }
            Some(Probe::Dead) => {
                self.counters.misses.incr();
                let dead = |entry: &Entry| entry.lifetime(now, stale_window) == Lifetime::Dead;
                if self.store.try_remove_if(key, dead) {
                    self.counters.expired.incr();
                }
                None
            }
            Some(Probe::Expired) | None => {
                self.counters.misses.incr();
                None
            }
        }
    }

    /// Store `entry` under `key` for `ttl` seconds from `now`, replacing any entry there, and
    /// evict to stay under the byte bound. A `ttl` of 0 only removes the old entry.
    pub fn insert(&self, key: &[u8], mut entry: Entry, ttl: u32, now: Instant) {
        if ttl == 0 {
            self.store.remove(key);
            return;
        }
        let window = self.refreshers.window(key, entry.source());
        entry.restart(now, ttl, window);
        let stale_window = self.policy.load().stale_window();
        let dead = |entry: &Entry| entry.lifetime(now, stale_window) == Lifetime::Dead;
        // A fresh upstream answer replacing a hot entry is news for the peers.
        let refresh = matches!(entry.source(), Source::Upstream | Source::Prefetch);
        let outcome = self.store.insert_queueing(key, entry, dead, refresh);
        if outcome.stored {
            self.counters.inserts.incr();
        }
        self.counters.evictions.add(outcome.evicted);
        self.counters.expired.add(outcome.expired);
    }

    /// Apply the hits this thread has logged, and every hit other threads have handed over,
    /// to the eviction state now (waiting for the store's locks).
    ///
    /// A worker thread should call this when it goes idle (e.g. on its receive timeout): hits
    /// are otherwise applied only when a thread's log fills (64 hits) and the store's inbox
    /// fills (1024 hits), so on a quiet node they would never reach the SLRU. Hits logged by
    /// other threads that are still in their own logs are not touched.
    pub fn flush_hits(&self) {
        self.store.flush_hits();
    }

    /// Read the entry under `key` without counting a hit or a miss and without touching its
    /// eviction state: `f(entry, stale)` for an entry that is fresh (`stale` false) or within
    /// its stale window at `now` (`stale` true); `None` for no entry or a dead one. For the
    /// control plane, not the query path.
    pub fn inspect<R>(
        &self,
        key: &[u8],
        now: Instant,
        f: impl FnOnce(&Entry, bool) -> R,
    ) -> Option<R> {
        let stale_window = self.policy.load().stale_window();
        self.store
            .get(key, |entry| match entry.lifetime(now, stale_window) {
                Lifetime::Fresh => (Some(f(entry, false)), false),
                Lifetime::Stale => (Some(f(entry, true)), false),
                Lifetime::Dead => (None, false),
            })
            .flatten()
    }

    /// Every entry still fresh at `now`, with its key (shared, not copied): what a dump
    /// writes. Takes no lock and counts nothing.
    pub fn fresh_entries(&self, now: Instant) -> Vec<(Arc<[u8]>, Arc<Entry>)> {
        let mut entries = self.store.entries();
        entries.retain(|(_, entry)| entry.lifetime(now, 0) == Lifetime::Fresh);
        entries
    }

    /// Move every key queued for gossip into `out`, with its applied hits: keys whose entry
    /// reached [`GOSSIP_HITS`] hits, and hot entries replaced by an upstream answer. Each
    /// shard queues at most 64 keys between two calls (more are dropped); queueing happens
    /// where hits are applied, never on the lookup itself, and allocates nothing.
    pub fn take_hot(&self, out: &mut Vec<(Arc<[u8]>, u32)>) {
        self.store.take_hot(out);
    }

    /// Record that every cluster flush up to `epoch` was applied to this cache.
    pub fn set_flush_epoch(&self, epoch: u64) {
        self.flush_epoch.fetch_max(epoch, Ordering::Relaxed);
    }

    /// The last cluster flush epoch applied to this cache.
    pub fn flush_epoch(&self) -> u64 {
        self.flush_epoch.load(Ordering::Relaxed)
    }

    /// The gossip counters.
    pub fn gossip_stats(&self) -> &crate::gossip::GossipStats {
        &self.gossip
    }

    /// Remove the entry under `key`; true if there was one.
    pub fn remove(&self, key: &[u8]) -> bool {
        self.store.remove(key)
    }

    /// Remove every entry (counters are kept).
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Remove the entries `target` covers (every DO/CD variant and class); returns how many.
    pub fn flush(&self, target: FlushTarget<'_>) -> usize {
        match target {
            FlushTarget::All => {
                let n = self.store.len();
                self.store.clear();
                n
            }
            target => self.store.remove_matching(|key| target.covers(key)),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Bytes charged for the entries (never above the bound given to [`Cache::new`]).
    pub fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.store.max_bytes()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.get(),
            misses: c.misses.get(),
            inserts: c.inserts.get(),
            evictions: c.evictions.get(),
            expired: c.expired.get(),
            stale_served: c.stale_served.get(),
            hits_dropped: self.store.hits_dropped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{a, answer, client, question, response};
    use super::*;
    use heimdall_wire::{Message, Name, class, rtype};
    use std::time::Duration;

    /// An A answer for `qname` with one record of `ttl` seconds.
    fn a_response(qname: &str, ttl: u32) -> Vec<u8> {
        response(
            0,
            qname,
            rtype::A,
            &[answer("example.com", rtype::A, ttl, a([192, 0, 2, 1]))],
            None,
        )
    }

    /// Build an entry from `bytes` under the cache's policy; returns it with its TTL.
    fn entry(cache: &Cache, bytes: &[u8], now: Instant) -> (Entry, u32) {
        let msg = Message::parse(bytes).expect("test response parses");
        let (entry, ttl) =
            Entry::from_response(&msg, &cache.policy(), now, Source::Upstream).expect("entry");
        (entry, ttl.expect("cacheable"))
    }

    /// The cache key of `qname` type A, class IN, no DO/CD.
    fn key(qname: &str) -> Vec<u8> {
        let wire = super::testutil::wire_name(qname);
        let (name, _) = Name::parse(&wire, 0).expect("name");
        let mut out = [0u8; MAX_KEY_LEN];
        let len = write_key(&name, rtype::A, class::IN, false, false, &mut out);
        out[..len].to_vec()
    }

    /// Insert an A answer for `qname` with `ttl` at `now`; returns its key.
    fn insert_a(cache: &Cache, qname: &str, ttl: u32, now: Instant) -> Vec<u8> {
        let (e, ttl) = entry(cache, &a_response(qname, ttl), now);
        let k = key(qname);
        cache.insert(&k, e, ttl, now);
        k
    }

    /// The cache key of `qname` with type `qtype`, class IN, no DO/CD.
    fn key_of(qname: &str, qtype: u16) -> Vec<u8> {
        let mut k = key(qname);
        let at = k.len() - 5;
        k[at..at + 2].copy_from_slice(&qtype.to_be_bytes());
        k
    }

    /// Flushes by name, subtree, type and name+type remove exactly what they cover: a
    /// subtree flush stops at label boundaries and keeps sibling zones.
    #[test]
    fn flush_targets_remove_exactly_what_they_cover() {
        let now = Instant::now();
        let names = [
            "example.test",
            "a.example.test",
            "b.a.example.test",
            "xexample.test",
            "other.test",
        ];
        let fill = |cache: &Cache| {
            cache.clear();
            for n in names {
                for t in [rtype::A, rtype::MX] {
                    let (e, ttl) = entry(cache, &a_response(n, 300), now);
                    cache.insert(&key_of(n, t), e, ttl, now);
                }
            }
            assert_eq!(cache.len(), names.len() * 2);
        };
        let present =
            |cache: &Cache, n: &str, t: u16| probe(cache, &key_of(n, t), now, false).is_some();
        let wire = |n: &str| super::testutil::wire_name(n);
        let cache = Cache::new(1 << 20, CachePolicy::default());

        fill(&cache);
        let apex = wire("example.test");
        assert_eq!(cache.flush(FlushTarget::Subtree(&apex)), 6);
        for n in ["example.test", "a.example.test", "b.a.example.test"] {
            assert!(
                !present(&cache, n, rtype::A) && !present(&cache, n, rtype::MX),
                "{n}"
            );
        }
        for n in ["xexample.test", "other.test"] {
            assert!(
                present(&cache, n, rtype::A) && present(&cache, n, rtype::MX),
                "{n}"
            );
        }

        fill(&cache);
        let a_name = wire("a.example.test");
        assert_eq!(cache.flush(FlushTarget::Name(&a_name)), 2);
        assert!(!present(&cache, "a.example.test", rtype::MX));
        assert!(present(&cache, "b.a.example.test", rtype::A));

        fill(&cache);
        assert_eq!(cache.flush(FlushTarget::Type(rtype::MX)), names.len());
        assert!(
            names
                .iter()
                .all(|n| present(&cache, n, rtype::A) && !present(&cache, n, rtype::MX))
        );

        fill(&cache);
        assert_eq!(cache.flush(FlushTarget::NameType(&a_name, rtype::A)), 1);
        assert!(
            !present(&cache, "a.example.test", rtype::A)
                && present(&cache, "a.example.test", rtype::MX)
        );

        let root = wire(".");
        assert_eq!(
            cache.flush(FlushTarget::Subtree(&root)),
            names.len() * 2 - 1
        );
        assert!(cache.is_empty());
    }

    /// A dumped entry (message with the TTLs as they stand, remaining time) loads into
    /// another cache with no more TTL than it had left; inspect and dump count nothing.
    #[test]
    fn dump_and_load_keep_remaining_ttl() {
        let policy = CachePolicy {
            min_ttl: 120,
            ..CachePolicy::default()
        };
        let cache = Cache::new(1 << 20, policy.clone());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 300, now);
        let later = now + Duration::from_secs(100);
        let info = cache.inspect(&k, later, |e, stale| (e.ttl(), e.remaining(later), stale));
        assert_eq!(info, Some((300, Duration::from_secs(200), false)));
        assert_eq!(
            cache.inspect(&key("absent.example"), later, |_, _| ()),
            None
        );
        let dumped = cache.fresh_entries(later);
        assert_eq!(dumped.len(), 1);
        assert!(
            cache
                .fresh_entries(now + Duration::from_secs(300))
                .is_empty()
        );
        let (dk, entry) = &dumped[0];
        let mut out = vec![0u8; 65_535];
        let len = entry.to_message(dk, later, &mut out);
        let reply = super::testutil::decode(&out[..len]);
        assert_eq!(reply.records[0].ttl, 200);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (0, 0));

        // Loaded with 50 s left: min_ttl (120) must not raise it back.
        let other = Cache::new(1 << 20, policy);
        let msg = Message::parse(&out[..len]).expect("dump parses");
        let (loaded, ttl) = Entry::from_dump(&msg, &other.policy(), later, 50).expect("entry");
        assert_eq!((ttl, loaded.source()), (Some(50), Source::Loaded));
        other.insert(dk, loaded, 50, later);
        let q = question("example.com", rtype::A);
        let mut answer = [0u8; 512];
        let n = other
            .lookup(dk, later, false, |e, _| {
                e.write_response(&mut answer, &client(&q, None), later, false, 512)
            })
            .expect("loaded entry hits");
        let reply = super::testutil::decode(&answer[..n]);
        assert!(reply.records.iter().all(|r| r.ttl <= 50), "{reply:?}");
    }

    /// What a lookup returns: the freshness, or None on a miss.
    fn probe(cache: &Cache, key: &[u8], now: Instant, allow_stale: bool) -> Option<Freshness> {
        cache.lookup(key, now, allow_stale, |_, freshness| freshness)
    }

    /// Hits, misses and inserts are counted; the lookup key ignores case and a lookup can replay the entry.
    #[test]
    fn hit_miss_and_replay() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 300, now);
        assert_eq!(key("EXAMPLE.com"), k);
        let q = question("Example.COM", rtype::A);
        let mut out = [0u8; 512];
        let len = cache.lookup(&k, now, false, |e, f| {
            assert_eq!(f, Freshness::Fresh { prefetch: false });
            e.write_response(&mut out, &client(&q, None), now, false, 512)
        });
        assert!(len.is_some_and(|l| l > 12 + q.len()));
        assert!(probe(&cache, &key("other.example.com"), now, false).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1));
        assert_eq!((cache.len(), cache.is_empty()), (1, false));
        assert!(cache.bytes() > 0);
    }

    /// insert replaces the entry under a key; a zero TTL only removes it.
    #[test]
    fn insert_replaces() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 300, now);
        insert_a(&cache, "example.com", 60, now);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup(&k, now, false, |e, _| e.ttl()), Some(60));
        let (e, _) = entry(&cache, &a_response("example.com", 60), now);
        cache.insert(&k, e, 0, now);
        assert!(cache.is_empty());
        assert!(!cache.remove(&k));
    }

    /// An entry is fresh until its TTL ends; with serve-stale off it is dropped at the first lookup after.
    #[test]
    fn expiry_without_serve_stale() {
        let policy = CachePolicy {
            serve_stale: false,
            ..CachePolicy::default()
        };
        let cache = Cache::new(1 << 20, policy);
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 60, now);
        assert!(probe(&cache, &k, now + Duration::from_millis(59_999), false).is_some());
        assert!(probe(&cache, &k, now + Duration::from_secs(60), true).is_none());
        assert_eq!((cache.len(), cache.stats().expired), (0, 1));
    }

    /// Expired entries are served stale within stale_max only when allowed, then removed and counted as expired.
    #[test]
    fn stale_within_window_then_gone() {
        let policy = CachePolicy {
            stale_max: 100,
            ..CachePolicy::default()
        };
        let cache = Cache::new(1 << 20, policy);
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 60, now);
        let expired = now + Duration::from_secs(61);
        assert_eq!(probe(&cache, &k, expired, false), None);
        assert_eq!(probe(&cache, &k, expired, true), Some(Freshness::Stale));
        let q = question("example.com", rtype::A);
        let mut out = [0u8; 512];
        let len = cache
            .lookup(&k, expired, true, |e, f| {
                e.write_response(
                    &mut out,
                    &client(&q, None),
                    expired,
                    f == Freshness::Stale,
                    512,
                )
            })
            .expect("stale hit");
        let reply = super::testutil::decode(&out[..len]);
        assert_eq!(reply.records[0].ttl, cache.policy().stale_ttl);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            probe(&cache, &k, now + Duration::from_secs(160), true),
            None
        );
        assert_eq!(cache.len(), 0);
        let stats = cache.stats();
        assert_eq!((stats.stale_served, stats.expired), (2, 1));
    }

    /// The prefetch flag is raised once, on the first hit in the last 10% of the TTL, and only if enabled.
    #[test]
    fn prefetch_once_in_last_tenth() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 100, now);
        let at = |s: u64| now + Duration::from_secs(s);
        assert_eq!(
            probe(&cache, &k, at(89), false),
            Some(Freshness::Fresh { prefetch: false })
        );
        assert_eq!(
            probe(&cache, &k, at(91), false),
            Some(Freshness::Fresh { prefetch: true })
        );
        assert_eq!(
            probe(&cache, &k, at(95), false),
            Some(Freshness::Fresh { prefetch: false })
        );
        cache.set_policy(CachePolicy {
            prefetch: false,
            ..CachePolicy::default()
        });
        let k2 = insert_a(&cache, "example.org", 100, now);
        assert_eq!(
            probe(&cache, &k2, at(95), false),
            Some(Freshness::Fresh { prefetch: false })
        );
    }

    /// Entries count their hits once they are applied (on flush) and become hot at three.
    #[test]
    fn hits_and_hot() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 100, now);
        let read = |cache: &Cache| cache.lookup(&k, now, false, |e, _| (e.hits(), e.is_hot()));
        assert_eq!(read(&cache), Some((0, false)));
        assert_eq!(
            read(&cache),
            Some((0, false)),
            "hits wait in the thread's log"
        );
        cache.flush_hits();
        for expected in [(2, false), (3, true), (4, true)] {
            assert_eq!(read(&cache), Some(expected));
            cache.flush_hits();
        }
        // Misses and expired probes are not hits.
        assert!(probe(&cache, &key("other.example.com"), now, false).is_none());
        assert!(probe(&cache, &k, now + Duration::from_secs(101), false).is_none());
        cache.flush_hits();
        assert_eq!(read(&cache), Some((5, true)));
        assert_eq!(cache.stats().hits_dropped, 0);
    }

    /// A key is queued for gossip once, when it reaches two applied hits (three uses), and
    /// again when an upstream answer replaces it while hot; a gossip insert does not queue.
    #[test]
    fn hot_keys_are_queued_for_gossip() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        let k = insert_a(&cache, "example.com", 100, now);
        let mut queued = Vec::new();
        for _ in 0..4 {
            assert!(probe(&cache, &k, now, false).is_some());
            cache.flush_hits();
        }
        cache.take_hot(&mut queued);
        assert_eq!(queued.len(), 1, "queued once, at the second hit");
        assert_eq!((&queued[0].0[..], queued[0].1), (&k[..], 2));
        queued.clear();
        cache.take_hot(&mut queued);
        assert!(queued.is_empty());

        insert_a(&cache, "example.com", 100, now);
        cache.take_hot(&mut queued);
        assert_eq!(queued.len(), 1, "refresh of a hot entry");
        queued.clear();
        for _ in 0..2 {
            assert!(probe(&cache, &k, now, false).is_some());
            cache.flush_hits();
        }
        cache.take_hot(&mut queued);
        queued.clear();
        let bytes = a_response("example.com", 60);
        let msg = Message::parse(&bytes).expect("parses");
        let (peer, ttl) = Entry::from_peer(&msg, &cache.policy(), now, 60).expect("entry");
        assert_eq!(peer.source(), Source::Gossip);
        cache.insert(&k, peer, ttl.expect("cacheable"), now);
        cache.take_hot(&mut queued);
        assert!(queued.is_empty(), "a gossiped copy is not news");
    }

    /// A flood of 200k distinct names keeps bytes() under a 1 MiB bound, evicting as it goes.
    #[test]
    fn flood_keeps_bytes_under_bound() {
        let max = 1 << 20;
        let cache = Cache::new(max, CachePolicy::default());
        let now = Instant::now();
        let bytes = a_response("example.com", 300);
        let msg = Message::parse(&bytes).expect("parses");
        let policy = cache.policy();
        let mut rng_key = Vec::with_capacity(64);
        for i in 0..200_000u32 {
            let (e, _) = Entry::from_response(&msg, &policy, now, Source::Upstream).expect("entry");
            rng_key.clear();
            rng_key.extend_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            rng_key.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01\x00");
            cache.insert(&rng_key, e, 300, now);
            assert!(cache.bytes() <= max, "over the bound after {i} inserts");
        }
        let stats = cache.stats();
        assert!(stats.evictions > 150_000, "{stats:?}");
        assert_eq!(stats.inserts, 200_000);
        assert!(cache.bytes() > max / 2);
    }

    /// SLRU through the cache: an entry read once survives a scan of entries that are never read.
    #[test]
    fn hit_entry_survives_scan() {
        let cache = Cache::new(256 * 1024, CachePolicy::default());
        let now = Instant::now();
        let keeper = insert_a(&cache, "keeper.example.com", 300, now);
        assert!(probe(&cache, &keeper, now, false).is_some());
        cache.flush_hits();
        let bytes = a_response("example.com", 300);
        let msg = Message::parse(&bytes).expect("parses");
        let policy = cache.policy();
        for i in 0..20_000u32 {
            let (e, _) = Entry::from_response(&msg, &policy, now, Source::Upstream).expect("entry");
            cache.insert(&i.to_be_bytes(), e, 300, now);
        }
        assert!(cache.stats().evictions > 10_000);
        assert!(
            probe(&cache, &keeper, now, false).is_some(),
            "the read entry was evicted"
        );
    }

    /// Concurrency smoke test: 4 threads read while 1 inserts; no panic, counters add up, the
    /// bound holds throughout and the byte accounting returns to zero when cleared.
    #[test]
    fn concurrent_readers_one_writer() {
        let cache = Arc::new(Cache::new(512 * 1024, CachePolicy::default()));
        let now = Instant::now();
        let keys: Vec<Vec<u8>> = (0..200)
            .map(|i| key(&format!("host{i}.example.com")))
            .collect();
        let keys = Arc::new(keys);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (cache, keys, done) =
                    (Arc::clone(&cache), Arc::clone(&keys), Arc::clone(&done));
                std::thread::spawn(move || {
                    let q = question("host1.example.com", rtype::A);
                    let mut out = [0u8; 512];
                    let mut lookups = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        for k in keys.iter() {
                            cache.lookup(k, now, true, |e, _| {
                                e.write_response(&mut out, &client(&q, None), now, false, 512)
                            });
                            lookups += 1;
                        }
                    }
                    cache.flush_hits();
                    lookups
                })
            })
            .collect();
        let bytes = a_response("example.com", 300);
        let msg = Message::parse(&bytes).expect("parses");
        let policy = cache.policy();
        for round in 0..20 {
            for (i, k) in keys.iter().enumerate() {
                if (i + round) % 3 == 0 {
                    cache.remove(k);
                } else {
                    let (e, _) =
                        Entry::from_response(&msg, &policy, now, Source::Upstream).expect("entry");
                    cache.insert(k, e, 300, now);
                }
                assert!(cache.bytes() <= cache.max_bytes());
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut lookups = 0;
        for reader in readers {
            lookups += reader.join().expect("reader thread");
        }
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses + stats.stale_served, lookups);
        assert!(cache.bytes() <= cache.max_bytes());
        cache.clear();
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
