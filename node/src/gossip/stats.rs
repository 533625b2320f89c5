//! Gossip counters: what was sent, received, accepted, and refused by reason.
//!
//! Only the gossip tasks write them (one sender, one receiver), so plain relaxed atomics
//! suffice; the cache holds them so the metrics view, which already holds the cache, reads
//! them without another handle.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a datagram or an entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Datagram: too short, wrong magic, or entries that do not add up.
    Malformed,
    /// Datagram: a wire format version this node does not speak.
    Version,
    /// Datagram: the HMAC does not match (wrong secret or modified).
    Auth,
    /// Datagram: timestamp outside the time window.
    Clock,
    /// Datagram: sequence number already seen (or below the window).
    Replay,
    /// Entry: remaining TTL above the cluster's max_ttl.
    TtlAboveMax,
    /// Entry: expires within a second.
    Expiring,
    /// Entry: cached before a flush (epoch) that covers its name.
    Flushed,
    /// Entry: this node already has a copy that lives at least as long.
    NotFresher,
    /// Entry: the message does not parse, does not match its key, or is not cacheable.
    BadEntry,
}

impl Reject {
    /// Every reason, in counter order.
    pub const ALL: [Reject; 10] = [
        Reject::Malformed,
        Reject::Version,
        Reject::Auth,
        Reject::Clock,
        Reject::Replay,
        Reject::TtlAboveMax,
        Reject::Expiring,
        Reject::Flushed,
        Reject::NotFresher,
        Reject::BadEntry,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Version => "version",
            Reject::Auth => "auth",
            Reject::Clock => "clock",
            Reject::Replay => "replay",
            Reject::TtlAboveMax => "ttl_above_max",
            Reject::Expiring => "expiring",
            Reject::Flushed => "flushed",
            Reject::NotFresher => "not_fresher",
            Reject::BadEntry => "bad_entry",
        }
    }

    /// Whether the reason refuses a whole datagram (else one entry).
    pub fn is_datagram(self) -> bool {
        matches!(
            self,
            Reject::Malformed | Reject::Version | Reject::Auth | Reject::Clock | Reject::Replay
        )
    }
}

/// The live gossip counters of one node.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Datagrams sent (one per peer it went to).
    pub datagrams_sent: AtomicU64,
    /// Entries sent (one per peer it went to).
    pub entries_sent: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Bytes sent in the last full second.
    pub bytes_per_sec: AtomicU64,
    /// Entries too large for one datagram, not gossiped.
    pub too_large: AtomicU64,
    /// Keys waiting to be gossiped.
    pub queue_depth: AtomicU64,
    /// Datagrams received (before any check).
    pub datagrams_received: AtomicU64,
    /// Entries received in authenticated, fresh datagrams.
    pub entries_received: AtomicU64,
    /// Entries stored in the cache.
    pub entries_accepted: AtomicU64,
    /// Refusals by reason, in [`Reject::ALL`] order.
    rejected: [AtomicU64; Reject::ALL.len()],
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipSnapshot {
    /// See [`GossipStats::datagrams_sent`].
    pub datagrams_sent: u64,
    /// See [`GossipStats::entries_sent`].
    pub entries_sent: u64,
    /// See [`GossipStats::bytes_sent`].
    pub bytes_sent: u64,
    /// See [`GossipStats::bytes_per_sec`].
    pub bytes_per_sec: u64,
    /// See [`GossipStats::too_large`].
    pub too_large: u64,
    /// See [`GossipStats::queue_depth`].
    pub queue_depth: u64,
    /// See [`GossipStats::datagrams_received`].
    pub datagrams_received: u64,
    /// See [`GossipStats::entries_received`].
    pub entries_received: u64,
    /// See [`GossipStats::entries_accepted`].
    pub entries_accepted: u64,
    /// Refusals by reason, in [`Reject::ALL`] order.
    pub rejected: [u64; Reject::ALL.len()],
}

impl GossipSnapshot {
    /// Refusals of one reason.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason as usize]
    }

    /// Every refusal, datagrams and entries, except copies that were not fresher than this
    /// node's own (with relaying, those are the normal echo of an entry's spread, not bad
    /// input).
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum::<u64>() - self.rejected(Reject::NotFresher)
    }
}

impl GossipStats {
    /// Count one refusal.
    pub fn reject(&self, reason: Reject) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Add `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> GossipSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GossipSnapshot {
            datagrams_sent: get(&self.datagrams_sent),
            entries_sent: get(&self.entries_sent),
            bytes_sent: get(&self.bytes_sent),
            bytes_per_sec: get(&self.bytes_per_sec),
            too_large: get(&self.too_large),
            queue_depth: get(&self.queue_depth),
            datagrams_received: get(&self.datagrams_received),
            entries_received: get(&self.entries_received),
            entries_accepted: get(&self.entries_accepted),
            rejected: std::array::from_fn(|i| get(&self.rejected[i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reason has its own slot and label; totals add up.
    #[test]
    fn reasons_count_separately() {
        let stats = GossipStats::default();
        stats.reject(Reject::Replay);
        stats.reject(Reject::Replay);
        stats.reject(Reject::Flushed);
        stats.reject(Reject::NotFresher);
        let snap = stats.snapshot();
        assert_eq!(snap.rejected(Reject::NotFresher), 1);
        assert_eq!(snap.rejected(Reject::Replay), 2);
        assert_eq!(snap.rejected(Reject::Flushed), 1);
        assert_eq!(snap.rejected(Reject::Auth), 0);
        assert_eq!(snap.rejected_total(), 3);
        let labels: std::collections::HashSet<_> = Reject::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reject::ALL.len());
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        assert!(Reject::Auth.is_datagram() && !Reject::Expiring.is_datagram());
    }
}
