//! Who refreshes a shared name: the live members of a cluster agree on one owner per cache
//! key (rendezvous hashing over their node ids), so a fleet that gossips prefetches a name
//! hot everywhere about once per TTL instead of once per node.
//!
//! The owner prefetches its copy in the last 10% of the TTL whatever its source, and gossips
//! the refresh. Another node holding a copy it fetched itself prefetches later, in the last
//! 5% (the owner's refresh normally replaces the copy first; if the owner does not query the
//! name, the node still refreshes what it serves); a copy another node gossiped is never
//! prefetched by a non-owner: it is replaced by the owner's refresh, or expires and the next
//! query fetches it. A node without live peers owns every key.

use arc_swap::ArcSwap;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::Arc;

use super::Source;

/// Prefetch window of the owner, in percent of the TTL.
pub const OWNER_WINDOW: u8 = 10;
/// Prefetch window of another node's own upstream copy, in percent of the TTL.
pub const DEFERRED_WINDOW: u8 = 5;
/// Fixed SipHash keys: every node must compute the same scores.
const SCORE_KEYS: (u64, u64) = (0x6865_696d_6461_6c6c, 0x7265_6672_6573_6821);

/// This node and the peers it currently considers live.
#[derive(Debug, Default, PartialEq, Eq)]
struct Members {
    /// This node's id.
    me: u64,
    /// Live peers' ids, sorted, without `me`.
    peers: Vec<u64>,
}

/// The current refresh owners (replaced by the gossip task as members come and go).
#[derive(Debug, Default)]
pub struct Refreshers {
    /// Read on every insert, replaced rarely.
    members: ArcSwap<Members>,
}

impl Refreshers {
    /// This node is `me`; `peers` are the members it considers live. Returns whether the set
    /// changed.
    pub fn set(&self, me: u64, peers: impl IntoIterator<Item = u64>) -> bool {
        let mut peers: Vec<u64> = peers.into_iter().filter(|p| *p != me).collect();
        peers.sort_unstable();
        peers.dedup();
        let next = Members { me, peers };
        if **self.members.load() == next {
            return false;
        }
        self.members.store(Arc::new(next));
        true
    }

    /// Whether this node refreshes `key`: its score is the highest among the live members.
    pub fn owns(&self, key: &[u8]) -> bool {
        let members = self.members.load();
        let mine = (score(key, members.me), members.me);
        members.peers.iter().all(|p| (score(key, *p), *p) < mine)
    }

    /// The prefetch window, in percent of the TTL, for a copy of `key` from `source`.
    pub fn window(&self, key: &[u8], source: Source) -> u8 {
        match (self.owns(key), source) {
            (true, _) => OWNER_WINDOW,
            (false, Source::Gossip) => 0,
            (false, _) => DEFERRED_WINDOW,
        }
    }
}

/// Node `id`'s rendezvous score for `key`.
fn score(key: &[u8], id: u64) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SCORE_KEYS.0, SCORE_KEYS.1);
    hasher.write(key);
    hasher.write_u64(id);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member computes the same single owner for a key, owners spread over the
    /// members, and a member that goes away hands its keys to the others.
    #[test]
    fn one_owner_per_key() {
        let ids = [1u64, 2, 3];
        let views: Vec<Refreshers> = ids
            .iter()
            .map(|me| {
                let r = Refreshers::default();
                assert!(r.set(*me, ids));
                assert!(!r.set(*me, [3, 2, 1, 2]), "same set");
                r
            })
            .collect();
        let mut owned = [0usize; 3];
        for i in 0..300u32 {
            let key = format!("\x04name{i}\x04test\x00");
            let owners: Vec<usize> = (0..3).filter(|v| views[*v].owns(key.as_bytes())).collect();
            assert_eq!(owners.len(), 1, "{key}: {owners:?}");
            owned[owners[0]] += 1;
        }
        assert!(owned.iter().all(|n| *n > 60), "{owned:?}");

        // Node 3 goes away: its keys move, the others' keys stay.
        let before: Vec<bool> = (0..300u32)
            .map(|i| views[0].owns(format!("\x04name{i}\x04test\x00").as_bytes()))
            .collect();
        views[0].set(1, [2]);
        views[1].set(2, [1]);
        for (i, owned_before) in before.iter().enumerate() {
            let key = format!("\x04name{i}\x04test\x00");
            let (one, two) = (views[0].owns(key.as_bytes()), views[1].owns(key.as_bytes()));
            assert!(one != two, "{key}");
            if *owned_before {
                assert!(one, "{key} moved away from a live owner");
            }
        }
    }

    /// Without peers a node owns every key; the windows follow ownership and source.
    #[test]
    fn windows() {
        let alone = Refreshers::default();
        assert!(alone.owns(b"\x01a\x00"));
        assert_eq!(alone.window(b"\x01a\x00", Source::Gossip), OWNER_WINDOW);
        let r = Refreshers::default();
        r.set(1, [2]);
        let not_mine = (0..100u32)
            .map(|i| format!("\x04name{i}\x00"))
            .find(|k| !r.owns(k.as_bytes()))
            .expect("some key is node 2's");
        assert_eq!(
            r.window(not_mine.as_bytes(), Source::Upstream),
            DEFERRED_WINDOW
        );
        assert_eq!(
            r.window(not_mine.as_bytes(), Source::Prefetch),
            DEFERRED_WINDOW
        );
        assert_eq!(r.window(not_mine.as_bytes(), Source::Gossip), 0);
    }
}
