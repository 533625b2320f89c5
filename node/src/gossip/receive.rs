//! The receiving side: authenticate, check freshness and replay, then admit entries one by one.
//!
//! A datagram is dropped whole when it is malformed, of another version, fails the HMAC
//! (under the cluster secret, or the previous one during a rotation's grace period),
//! carries a timestamp outside the time window or a sequence number already seen; nothing in
//! it reaches the cache. Each entry of an accepted datagram is then dropped when its remaining
//! TTL is above the cluster's `max_ttl`, when it expires within a second, when a flush newer
//! than the epoch it carries covers its name (so a cluster-wide flush is never undone), when
//! this node already holds a copy that lives at least as long, or when its message does not
//! match its key. Otherwise it is stored as [`Source::Gossip`](crate::cache::Source) so that
//! it expires exactly when the sender's copy does (its whole-second TTL counted from a moment
//! up to a second in the past), so a lifetime is never extended.

use std::time::{Duration, Instant};

use heimdall_wire::Message;

use super::replay::{ReplayGuard, Stale};
use super::stats::{GossipStats, Reject};
use super::wire::{DecodeError, Kind, WireEntry, open};
use crate::cache::{Cache, Entry, MAX_KEY_LEN, write_key};
use crate::cluster::ClusterState;
use crate::cluster::apply::with_flush_target;
use crate::cluster::auth::Keyring;

/// Entries expiring sooner than this are not worth storing.
const MIN_REMAINING_MS: u64 = 1000;

/// The receiver's state: its id (its own datagrams are ignored) and the replay windows.
#[derive(Debug)]
pub struct Receiver {
    /// This node's id.
    id: u64,
    /// Replay windows per (sender, boot epoch).
    guard: ReplayGuard,
    /// What the last datagram was and who sent it, when it passed authentication and the
    /// replay checks.
    last: Option<(Kind, u64)>,
    /// The SWIM message of the last datagram when it was one.
    swim: Vec<u8>,
}

impl Receiver {
    /// A receiver for node `id`.
    pub fn new(id: u64) -> Receiver {
        Receiver {
            id,
            guard: ReplayGuard::new(),
            last: None,
            swim: Vec::new(),
        }
    }

    /// What the last handled datagram was (entries, or a SWIM message for the failure
    /// detector: [`Receiver::swim_message`]); `None` when it was refused or was our own.
    pub fn last_kind(&self) -> Option<Kind> {
        self.last.map(|(kind, _)| kind)
    }

    /// The SWIM message of the last handled datagram when it was [`Kind::Swim`].
    pub fn swim_message(&self) -> &[u8] {
        &self.swim
    }

    /// Handle one received datagram at `now` (`now_ms` on the wall clock): counted in the
    /// cache's gossip stats; returns how many entries were stored.
    pub fn handle(
        &mut self,
        bytes: &[u8],
        keys: &Keyring,
        cache: &Cache,
        state: &ClusterState,
        now: Instant,
        now_ms: u64,
    ) -> usize {
        let stats = cache.gossip_stats();
        self.last = None;
        GossipStats::add(&stats.datagrams_received, 1);
        let opened = match open(keys.current().expose(), bytes) {
            // During a secret rotation, a member still on the previous secret.
            Err(DecodeError::BadTag) => match keys.previous() {
                Some(previous) => open(previous.expose(), bytes),
                None => Err(DecodeError::BadTag),
            },
            other => other,
        };
        let datagram = match opened {
            Ok(datagram) => datagram,
            Err(error) => {
                stats.reject(match error {
                    DecodeError::Malformed => Reject::Malformed,
                    DecodeError::Version(_) => Reject::Version,
                    DecodeError::BadTag => Reject::Auth,
                });
                return 0;
            }
        };
        let h = datagram.header;
        if h.sender == self.id {
            // Our own datagram looped back (a peer list naming us): nothing to learn.
            return 0;
        }
        if let Err(stale) =
            self.guard
                .check(h.sender, h.boot_epoch, h.sequence, h.timestamp_ms, now_ms)
        {
            stats.reject(match stale {
                Stale::Clock => Reject::Clock,
                Stale::Replay => Reject::Replay,
            });
            return 0;
        }
        self.last = Some((datagram.kind, h.sender));
        self.swim.clear();
        self.swim.extend_from_slice(datagram.payload);
        let age_ms = now_ms.saturating_sub(h.timestamp_ms);
        let mut stored = 0;
        for entry in &datagram.entries {
            GossipStats::add(&stats.entries_received, 1);
            match admit(entry, age_ms, cache, state, now) {
                Ok(()) => {
                    GossipStats::add(&stats.entries_accepted, 1);
                    stored += 1;
                }
                Err(reason) => stats.reject(reason),
            }
        }
        stored
    }
}

/// Check one entry that arrived `age_ms` after its datagram's timestamp, and store it.
pub(crate) fn admit(
    entry: &WireEntry<'_>,
    age_ms: u64,
    cache: &Cache,
    state: &ClusterState,
    now: Instant,
) -> Result<(), Reject> {
    let policy = cache.policy();
    if u64::from(entry.ttl_ms) > u64::from(policy.max_ttl) * 1000 {
        return Err(Reject::TtlAboveMax);
    }
    let remaining_ms = u64::from(entry.ttl_ms).saturating_sub(age_ms);
    if remaining_ms < MIN_REMAINING_MS {
        return Err(Reject::Expiring);
    }
    if flushed_since(state, entry.flush_epoch, entry.key) {
        return Err(Reject::Flushed);
    }
    let message = Message::parse(entry.message).map_err(|_| Reject::BadEntry)?;
    let question = message.question().ok_or(Reject::BadEntry)?;
    let flags = entry.key.last().copied().unwrap_or(0);
    let mut key = [0u8; MAX_KEY_LEN];
    let len = write_key(
        &question.name,
        question.qtype,
        question.qclass,
        flags & crate::cache::KEY_DNSSEC_OK != 0,
        flags & crate::cache::KEY_CHECKING_DISABLED != 0,
        &mut key,
    );
    if len == 0 || key.get(..len) != Some(entry.key) {
        return Err(Reject::BadEntry);
    }
    let ours = cache.inspect(entry.key, now, |e, stale| {
        (!stale).then(|| e.remaining(now).as_millis())
    });
    if let Some(Some(ours_ms)) = ours
        && ours_ms >= u128::from(remaining_ms)
    {
        return Err(Reject::NotFresher);
    }
    // Whole seconds, rounded up, counted from a moment in the past chosen so the entry
    // expires exactly `remaining_ms` from now: never later, and not a second early either
    // (which would make every receiver refresh a short-TTL name on its own).
    let whole = remaining_ms.div_ceil(1000);
    let remaining = u32::try_from(whole).unwrap_or(u32::MAX);
    let stored_at = now
        .checked_sub(Duration::from_millis(whole * 1000 - remaining_ms))
        .ok_or(Reject::BadEntry)?;
    let (built, ttl) =
        Entry::from_peer(&message, &policy, stored_at, remaining).map_err(|_| Reject::BadEntry)?;
    let ttl = ttl.ok_or(Reject::BadEntry)?;
    cache.insert(entry.key, built, ttl, stored_at);
    Ok(())
}

/// Whether a flush after `epoch` that this node knows of covers `key`. When flushes after
/// `epoch` are no longer all recorded, assume one did.
fn flushed_since(state: &ClusterState, epoch: u64, key: &[u8]) -> bool {
    if epoch >= state.flush_epoch {
        return false;
    }
    let oldest = state
        .flush_epochs
        .front()
        .map_or(state.flush_epoch, |f| f.epoch);
    if epoch + 1 < oldest {
        return true;
    }
    state
        .flush_epochs
        .iter()
        .filter(|f| f.epoch > epoch)
        .any(|f| with_flush_target(&f.scope, |target| target.covers(key)).unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::super::send::Sender;
    use super::super::wire::{DatagramWriter, Header};
    use super::*;
    use crate::cache::testutil::{a, answer, response, wire_name};
    use crate::cache::{CachePolicy, Freshness, Source};
    use crate::cluster::{Command, FlushScope, GossipSettings};
    use crate::config::Secret;
    use heimdall_wire::{Name, class, rtype};
    use std::time::Duration;

    /// A fixed wall clock.
    const NOW_MS: u64 = 1_700_000_000_000;

    /// The test secret.
    fn secret() -> Secret {
        Secret::new("receive-test-secret".to_owned())
    }

    /// The receiver's keyring: the test secret only.
    fn keys() -> Keyring {
        Keyring::new(secret())
    }

    /// The cache key of `name` type A.
    fn key(name: &str) -> Vec<u8> {
        let wire = wire_name(name);
        let (name, _) = Name::parse(&wire, 0).expect("name");
        let mut out = [0u8; MAX_KEY_LEN];
        let len = write_key(&name, rtype::A, class::IN, false, false, &mut out);
        out[..len].to_vec()
    }

    /// A cache holding `name` A with `ttl`, made hot (queued for gossip).
    fn hot_cache(name: &'static str, ttl: u32, now: Instant) -> Cache {
        let cache = Cache::new(1 << 20, CachePolicy::default());
        let bytes = response(
            0,
            name,
            rtype::A,
            &[answer(name, rtype::A, ttl, a([192, 0, 2, 7]))],
            None,
        );
        let msg = Message::parse(&bytes).expect("parses");
        let (entry, t) =
            Entry::from_response(&msg, &cache.policy(), now, Source::Upstream).expect("entry");
        cache.insert(&key(name), entry, t.expect("cacheable"), now);
        for _ in 0..2 {
            cache.lookup(&key(name), now, false, |_, _| ());
            cache.flush_hits();
        }
        cache
    }

    /// One datagram from node 1 carrying the hot entries of `cache`, sent `at_ms`.
    fn gossip(sender: &mut Sender, cache: &Cache, now: Instant, at_ms: u64) -> Vec<u8> {
        sender.collect(cache);
        let mut datagrams =
            sender.round(cache, &GossipSettings::default(), &secret(), 1, now, at_ms);
        assert_eq!(datagrams.len(), 1);
        datagrams.remove(0)
    }

    /// What the receiver's cache serves for `name`: (TTL left in s, source).
    fn held(cache: &Cache, name: &str, now: Instant) -> Option<(u64, Source)> {
        cache.lookup(&key(name), now, false, |e, f| {
            assert!(matches!(f, Freshness::Fresh { .. }));
            (e.remaining(now).as_secs(), e.source())
        })
    }

    /// During a secret rotation a datagram signed with the previous secret is accepted while
    /// the grace period lasts and refused (as Auth) after it; a third secret never is.
    #[test]
    fn previous_secret_accepted_during_grace_only() {
        let now = Instant::now();
        let old = Secret::new("the-old-cluster-secret".to_owned());
        let signed_with = |name: &'static str, key: &Secret, sender_id: u64| {
            let c = hot_cache(name, 300, now);
            let mut s = Sender::new(sender_id, 1);
            s.collect(&c);
            s.round(&c, &GossipSettings::default(), key, 1, now, NOW_MS)
                .remove(0)
        };
        let state = ClusterState::default();
        let rotating = Keyring::new(secret()).with_previous(old.clone(), Duration::from_secs(60));
        let b = Cache::new(1 << 20, CachePolicy::default());
        let mut receiver = Receiver::new(2);
        let from_old = signed_with("old.example", &old, 3);
        assert_eq!(
            receiver.handle(&from_old, &rotating, &b, &state, now, NOW_MS),
            1
        );
        let from_new = signed_with("new.example", &secret(), 4);
        assert_eq!(
            receiver.handle(&from_new, &rotating, &b, &state, now, NOW_MS),
            1
        );
        let other = Secret::new("some-other-secret-000".to_owned());
        let from_other = signed_with("other.example", &other, 5);
        assert_eq!(
            receiver.handle(&from_other, &rotating, &b, &state, now, NOW_MS),
            0
        );

        let ended = Keyring::new(secret()).with_previous(old.clone(), Duration::ZERO);
        let c = Cache::new(1 << 20, CachePolicy::default());
        let mut late = Receiver::new(2);
        assert_eq!(late.handle(&from_old, &ended, &c, &state, now, NOW_MS), 0);
        assert_eq!(c.gossip_stats().snapshot().rejected(Reject::Auth), 1);
        assert!(c.is_empty());
    }

    /// An entry crosses: stored as Gossip with no more TTL than the sender had left minus
    /// the datagram's age; a replay is refused, a reordered-but-fresh datagram accepted,
    /// forged, garbage and clock-skewed datagrams refused, each counted by reason.
    #[test]
    fn datagram_checks() {
        let now = Instant::now();
        let a_cache = hot_cache("hot.example", 300, now);
        let mut sender = Sender::new(1, 77);
        let first = gossip(&mut sender, &a_cache, now, NOW_MS);
        let b = Cache::new(1 << 20, CachePolicy::default());
        let state = ClusterState::default();
        let mut receiver = Receiver::new(2);
        // Received 2.5 s after it was sent: 297.5 s left, stored as 297.
        assert_eq!(
            receiver.handle(&first, &keys(), &b, &state, now, NOW_MS + 2500),
            1
        );
        assert_eq!(held(&b, "hot.example", now), Some((297, Source::Gossip)));
        assert_eq!(receiver.last_kind(), Some(Kind::Entries));
        // It expires exactly when the sender's copy does: 297.5 s from now.
        let just_before = now + Duration::from_millis(297_499);
        assert!(b.inspect(&key("hot.example"), just_before, |_, stale| !stale) == Some(true));
        let at_expiry = now + Duration::from_millis(297_500);
        assert!(b.inspect(&key("hot.example"), at_expiry, |_, stale| !stale) != Some(true));
        let count = |r| b.gossip_stats().snapshot().rejected(r);
        assert_eq!(
            receiver.handle(&first, &keys(), &b, &state, now, NOW_MS + 2500),
            0
        );
        assert_eq!(count(Reject::Replay), 1);

        // Sequence 3 then 2: both fresh.
        let later = hot_cache("later.example", 300, now);
        let mut sender2 = Sender::new(3, 5);
        let d1 = gossip(&mut sender2, &later, now, NOW_MS);
        let hot = hot_cache("third.example", 300, now);
        let d2 = gossip(&mut sender2, &hot, now, NOW_MS);
        assert_eq!(receiver.handle(&d2, &keys(), &b, &state, now, NOW_MS), 1);
        assert_eq!(receiver.handle(&d1, &keys(), &b, &state, now, NOW_MS), 1);

        let before = b.len();
        let forged = {
            let c = hot_cache("forged.example", 300, now);
            let mut s = Sender::new(9, 9);
            s.collect(&c);
            let other = Secret::new("wrong".to_owned());
            s.round(&c, &GossipSettings::default(), &other, 1, now, NOW_MS)
                .remove(0)
        };
        assert_eq!(
            receiver.handle(&forged, &keys(), &b, &state, now, NOW_MS),
            0
        );
        assert_eq!(count(Reject::Auth), 1);
        assert_eq!(
            receiver.handle(b"\x00garbage", &keys(), &b, &state, now, NOW_MS),
            0
        );
        assert_eq!(
            receiver.handle(&first[..first.len() - 5], &keys(), &b, &state, now, NOW_MS),
            0
        );
        assert_eq!(count(Reject::Malformed), 1);
        assert_eq!(count(Reject::Auth), 2, "a truncated datagram fails its tag");
        let skewed = gossip(
            &mut Sender::new(4, 4),
            &hot_cache("skew.example", 300, now),
            now,
            NOW_MS,
        );
        assert_eq!(
            receiver.handle(&skewed, &keys(), &b, &state, now, NOW_MS + 31_000),
            0
        );
        assert_eq!(count(Reject::Clock), 1);
        assert_eq!(b.len(), before, "no refused datagram reached the cache");
    }

    /// Build a signed datagram from node 5 with one entry for `name` claiming `ttl_ms` and
    /// `epoch`.
    fn crafted(name: &'static str, ttl_ms: u32, epoch: u64, sequence: u64) -> Vec<u8> {
        let bytes = response(
            0,
            name,
            rtype::A,
            &[answer(name, rtype::A, 300, a([192, 0, 2, 8]))],
            None,
        );
        let k = key(name);
        let header = Header {
            sender: 5,
            boot_epoch: 1,
            timestamp_ms: NOW_MS,
            sequence,
        };
        let mut writer = DatagramWriter::new(&header, 1232);
        assert!(writer.push(&WireEntry {
            key: &k,
            flush_epoch: epoch,
            ttl_ms,
            message: &bytes,
        }));
        writer.finish(secret().expose())
    }

    /// Entries above max_ttl, expiring, older than a covering flush, not fresher, or whose
    /// message does not match the key are refused; the cache is unchanged by each.
    #[test]
    fn entry_checks() {
        let now = Instant::now();
        let b = Cache::new(
            1 << 20,
            CachePolicy {
                max_ttl: 600,
                ..CachePolicy::default()
            },
        );
        let mut state = ClusterState::default();
        let r = state.apply(Command::Flush {
            scope: FlushScope::Name("old.example.".to_owned()),
            author: "test".to_owned(),
            node: 1,
            at_unix_ms: NOW_MS,
        });
        assert!(
            matches!(r, crate::cluster::CommandResponse::Flushed { epoch: 1 }),
            "{r:?}"
        );
        let mut receiver = Receiver::new(2);
        let count = |r| b.gossip_stats().snapshot().rejected(r);
        let mut handle = |d: &[u8]| receiver.handle(d, &keys(), &b, &state, now, NOW_MS);
        assert_eq!(handle(&crafted("long.example", 601_000, 0, 1)), 0);
        assert_eq!(count(Reject::TtlAboveMax), 1);
        assert_eq!(handle(&crafted("short.example", 999, 0, 2)), 0);
        assert_eq!(count(Reject::Expiring), 1);
        assert_eq!(handle(&crafted("old.example", 100_000, 0, 3)), 0);
        assert_eq!(count(Reject::Flushed), 1);
        assert!(b.is_empty());
        assert_eq!(
            handle(&crafted("old.example", 100_000, 1, 4)),
            1,
            "cached after the flush"
        );
        assert_eq!(
            handle(&crafted("other.example", 100_000, 0, 5)),
            1,
            "not covered"
        );
        assert_eq!(handle(&crafted("other.example", 50_000, 0, 6)), 0);
        assert_eq!(count(Reject::NotFresher), 1);
        assert_eq!(b.len(), 2);
        let later = now + Duration::from_secs(1);
        assert!(held(&b, "other.example", later).is_some_and(|(left, _)| left <= 99));
    }
}
