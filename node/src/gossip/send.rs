//! The sending side: the queue of hot keys, packing into datagrams, the bandwidth bound.
//!
//! Each round the sender takes the keys the cache queued (entries that became hot, hot
//! entries refreshed from upstream), merges them into its pending set (a key once, with its
//! highest hit count), and packs the pending entries, most-hit first, into datagrams of at
//! most `gossip.max_payload` bytes. A token bucket filled at `gossip.bandwidth_bytes_per_sec`
//! (at most one second of burst) pays for every datagram times the peers it goes to; what the
//! bucket cannot pay for waits for the next round. An entry whose message alone does not fit a
//! datagram is dropped and counted (`too_large`); entries no longer fresh, or with less than a
//! second left, are dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::stats::GossipStats;
use super::wire::{DatagramWriter, Header, WireEntry};
use crate::cache::Cache;
use crate::cluster::GossipSettings;
use crate::config::Secret;

/// Keys the sender keeps waiting at most; beyond it the least-hit are dropped.
pub const MAX_PENDING: usize = 4096;
/// Entries with less lifetime than this are not worth sending (receivers drop them).
const MIN_REMAINING_MS: u64 = 1000;
/// Largest DNS message the scratch buffer holds.
const MAX_MESSAGE: usize = 65_535;

/// The sender's state across rounds.
#[derive(Debug)]
pub struct Sender {
    /// This node's id (in every header).
    id: u64,
    /// Random per process start (in every header).
    boot_epoch: u64,
    /// The last sequence number used.
    sequence: u64,
    /// Keys waiting to be sent, with their hits.
    pending: HashMap<Arc<[u8]>, u32>,
    /// Bytes the bandwidth bound still allows now.
    tokens: f64,
    /// When the bucket was last filled.
    filled_at: Option<Instant>,
    /// Where the cache's queue is drained into each round (reused).
    taken: Vec<(Arc<[u8]>, u32)>,
    /// Where an entry's message is written (reused).
    scratch: Vec<u8>,
}

impl Sender {
    /// A sender for node `id` with this process's `boot_epoch`.
    pub fn new(id: u64, boot_epoch: u64) -> Sender {
        Sender {
            id,
            boot_epoch,
            sequence: 0,
            pending: HashMap::new(),
            tokens: 0.0,
            filled_at: None,
            taken: Vec::new(),
            scratch: vec![0; MAX_MESSAGE],
        }
    }

    /// Keys waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Take the cache's newly hot keys into the pending set (bounded by [`MAX_PENDING`]).
    pub fn collect(&mut self, cache: &Cache) {
        // Apply the hits workers have handed over (in batches of 64) but the store has not
        // applied yet (it waits for 1024 under steady load), so busy names turn hot promptly.
        cache.flush_hits();
        cache.take_hot(&mut self.taken);
        for (key, hits) in self.taken.drain(..) {
            let slot = self.pending.entry(key).or_insert(0);
            *slot = (*slot).max(hits);
        }
        if self.pending.len() > MAX_PENDING {
            let mut by_hits: Vec<(Arc<[u8]>, u32)> = self.pending.drain().collect();
            by_hits.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.1));
            by_hits.truncate(MAX_PENDING);
            self.pending.extend(by_hits);
        }
        cache.gossip_stats().queue_depth.store(
            self.pending.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Forget every pending key (nobody to send them to).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Pack the pending entries into signed datagrams for `peers` peers, as far as the
    /// bandwidth bound allows at `now`; `now_ms` is the timestamp written in the headers.
    /// Returns the datagrams (each to be sent to every one of the peers).
    pub fn round(
        &mut self,
        cache: &Cache,
        settings: &GossipSettings,
        secret: &Secret,
        peers: usize,
        now: Instant,
        now_ms: u64,
    ) -> Vec<Vec<u8>> {
        let stats = cache.gossip_stats();
        let rate = settings.bandwidth_bytes_per_sec as f64;
        let elapsed = self
            .filled_at
            .map_or(1.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.filled_at = Some(now);
        let max_len = settings.max_payload as usize;
        let capacity = DatagramWriter::capacity(max_len);
        let peers = peers.max(1);

        // Order by the hits entries have now (a key is queued once, when it turns hot).
        let mut order: Vec<(Arc<[u8]>, u32)> = self
            .pending
            .iter()
            .map(|(k, h)| {
                let now_hits = cache.inspect(k, now, |e, _| e.hits()).unwrap_or(0);
                (Arc::clone(k), now_hits.max(*h))
            })
            .collect();
        order.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        let flush_epoch = cache.flush_epoch();
        let mut datagrams = Vec::new();
        let mut writer: Option<DatagramWriter> = None;
        for (key, _) in order {
            let scratch = &mut self.scratch;
            let found = cache.inspect(&key, now, |entry, stale| {
                let remaining = entry.remaining(now).as_millis();
                if stale || remaining < u128::from(MIN_REMAINING_MS) {
                    return None;
                }
                let len = entry.to_message(&key, now, scratch);
                Some((len, u32::try_from(remaining).unwrap_or(u32::MAX)))
            });
            let Some(Some((len, ttl_ms))) = found else {
                self.pending.remove(&key);
                continue;
            };
            let entry = WireEntry {
                key: &key,
                flush_epoch,
                ttl_ms,
                message: &self.scratch[..len],
            };
            if len == 0 || entry.encoded_len() > capacity {
                GossipStats::add(&stats.too_large, 1);
                self.pending.remove(&key);
                continue;
            }
            let mut out_of_budget = false;
            loop {
                if writer.is_none() {
                    if self.tokens < (max_len * peers) as f64 {
                        out_of_budget = true;
                        break;
                    }
                    self.sequence += 1;
                    let header = Header {
                        sender: self.id,
                        boot_epoch: self.boot_epoch,
                        timestamp_ms: now_ms,
                        sequence: self.sequence,
                    };
                    writer = Some(DatagramWriter::new(&header, max_len));
                }
                let Some(current) = writer.as_mut() else {
                    break;
                };
                if current.push(&entry) {
                    self.pending.remove(&key);
                    break;
                }
                if current.is_empty() {
                    // Does not fit even an empty datagram (cannot happen within capacity).
                    GossipStats::add(&stats.too_large, 1);
                    self.pending.remove(&key);
                    break;
                }
                if let Some(full) = writer.take() {
                    seal(full, secret, peers, stats, &mut self.tokens, &mut datagrams);
                }
            }
            if out_of_budget {
                break;
            }
        }
        if let Some(last) = writer.take().filter(|w| !w.is_empty()) {
            seal(last, secret, peers, stats, &mut self.tokens, &mut datagrams);
        }
        stats.queue_depth.store(
            self.pending.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        datagrams
    }
}

/// Finish `writer`, pay for it (its length times `peers`) from `tokens`, count it, and add it
/// to `out`.
fn seal(
    writer: DatagramWriter,
    secret: &Secret,
    peers: usize,
    stats: &GossipStats,
    tokens: &mut f64,
    out: &mut Vec<Vec<u8>>,
) {
    let entries = writer.len() as u64;
    let datagram = writer.finish(secret.expose());
    let cost = datagram.len() * peers;
    *tokens -= cost as f64;
    GossipStats::add(&stats.entries_sent, entries * peers as u64);
    GossipStats::add(&stats.datagrams_sent, peers as u64);
    GossipStats::add(&stats.bytes_sent, cost as u64);
    out.push(datagram);
}

#[cfg(test)]
mod tests {
    use super::super::wire::{HEADER_LEN, TAG_LEN, open};
    use super::*;
    use crate::cache::testutil::{a, answer, response, wire_name};
    use crate::cache::{CachePolicy, Entry, MAX_KEY_LEN, Source, write_key};
    use heimdall_wire::{Message, Name, class, rtype};

    /// The test secret.
    fn secret() -> Secret {
        Secret::new("send-test-secret".to_owned())
    }

    /// Insert `name` A (with `records` addresses) into `cache` and hit it `hits` times.
    fn insert_hit(cache: &Cache, name: &'static str, records: usize, hits: usize, now: Instant) {
        let answers: Vec<_> = (0..records)
            .map(|i| answer(name, rtype::A, 300, a([10, 0, (i / 256) as u8, i as u8])))
            .collect();
        let bytes = response(0, name, rtype::A, &answers, None);
        let msg = Message::parse(&bytes).expect("parses");
        let (entry, ttl) =
            Entry::from_response(&msg, &cache.policy(), now, Source::Upstream).expect("entry");
        let wire = wire_name(name);
        let (qname, _) = Name::parse(&wire, 0).expect("name");
        let mut key = [0u8; MAX_KEY_LEN];
        let len = write_key(&qname, rtype::A, class::IN, false, false, &mut key);
        cache.insert(&key[..len], entry, ttl.expect("cacheable"), now);
        for _ in 0..hits {
            cache.lookup(&key[..len], now, false, |_, _| ());
            cache.flush_hits();
        }
    }

    /// Most-hit entries go first when the bandwidth bound cuts a round short; the rest wait
    /// for the next round; every datagram stays within max_payload.
    #[test]
    fn bandwidth_bound_sends_most_hit_first() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        insert_hit(&cache, "cold.example", 1, 2, now);
        insert_hit(&cache, "warm.example", 1, 5, now);
        insert_hit(&cache, "hot.example", 1, 9, now);
        let settings = GossipSettings {
            max_payload: 512,
            bandwidth_bytes_per_sec: 512,
            ..GossipSettings::default()
        };
        let mut sender = Sender::new(1, 2);
        sender.collect(&cache);
        assert_eq!(sender.pending(), 3);
        // One second of tokens pays for exactly one datagram to one peer.
        let first = sender.round(&cache, &settings, &secret(), 1, now, 1000);
        assert_eq!(first.len(), 1);
        assert!(first[0].len() <= 512);
        let datagram = open(secret().expose(), &first[0]).expect("opens");
        assert_eq!(
            datagram.entries.len(),
            3,
            "three small entries fit one datagram"
        );
        assert!(datagram.entries[0].key.starts_with(b"\x03hot"));
        assert!(datagram.entries[1].key.starts_with(b"\x04warm"));
        assert_eq!(sender.pending(), 0);

        // No tokens left at the same instant: queued entries wait.
        insert_hit(&cache, "next.example", 1, 2, now);
        sender.collect(&cache);
        assert!(
            sender
                .round(&cache, &settings, &secret(), 1, now, 1000)
                .is_empty()
        );
        assert_eq!(sender.pending(), 1);
        let later = now + std::time::Duration::from_secs(1);
        assert_eq!(
            sender
                .round(&cache, &settings, &secret(), 1, later, 2000)
                .len(),
            1
        );
        let snap = cache.gossip_stats().snapshot();
        assert_eq!((snap.datagrams_sent, snap.entries_sent), (2, 4));
    }

    /// An entry larger than a datagram is counted and dropped; entries spill over into a
    /// second datagram with the next sequence number.
    #[test]
    fn too_large_dropped_and_spill_over() {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let now = Instant::now();
        insert_hit(&cache, "big.example", 40, 2, now);
        for name in ["a.example", "b.example", "c.example", "d.example"] {
            insert_hit(&cache, name, 8, 2, now);
        }
        let settings = GossipSettings {
            max_payload: 512,
            ..GossipSettings::default()
        };
        let mut sender = Sender::new(1, 2);
        sender.collect(&cache);
        let datagrams = sender.round(&cache, &settings, &secret(), 2, now, 1000);
        assert_eq!(cache.gossip_stats().snapshot().too_large, 1);
        assert!(datagrams.len() >= 2, "{} datagrams", datagrams.len());
        let mut entries = 0;
        for (i, d) in datagrams.iter().enumerate() {
            assert!(d.len() <= 512 && d.len() > HEADER_LEN + TAG_LEN);
            let opened = open(secret().expose(), d).expect("opens");
            assert_eq!(opened.header.sequence, i as u64 + 1);
            entries += opened.entries.len();
        }
        assert_eq!(entries, 4);
        assert_eq!(sender.pending(), 0);
    }
}
