//! Replay protection: a time window on the signed timestamp and a sliding sequence window per
//! (sender, boot epoch).
//!
//! A datagram is fresh when its timestamp is within [`TIME_WINDOW`] of this node's clock and
//! its sequence number was not seen before from that sender in that boot epoch. The sequence
//! window remembers the highest number seen and a bitmap of the [`WINDOW_BITS`] numbers below
//! it, so datagrams that arrive out of order are accepted once each, and numbers that fell
//! out of the window are refused. A sender that restarts picks a new random boot epoch and so
//! gets a new window; windows idle for longer than twice the time window are forgotten (any
//! datagram they could still refuse is refused by the time window).

use std::collections::HashMap;

/// How far a datagram's timestamp may be from this node's clock, in milliseconds.
pub const TIME_WINDOW_MS: u64 = 30_000;
/// The same, for documentation and logs.
pub const TIME_WINDOW: std::time::Duration = std::time::Duration::from_millis(TIME_WINDOW_MS);
/// Sequence numbers a window remembers below the highest one seen.
pub const WINDOW_BITS: u64 = 128;
/// Windows kept before idle ones are pruned.
const PRUNE_AT: usize = 1024;

/// Why a datagram was refused as stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// The timestamp is outside the time window.
    Clock,
    /// The sequence number was seen before, or is below the window.
    Replay,
}

/// One (sender, boot epoch)'s sliding window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Highest sequence number accepted.
    top: u64,
    /// Bit i set: `top - i` was accepted (bit 0 is `top` itself).
    seen: u128,
    /// When this window last accepted a datagram (Unix ms, our clock).
    last_ms: u64,
}

impl Window {
    /// Record `sequence`; false if it was seen or is too old.
    fn accept(&mut self, sequence: u64) -> bool {
        if sequence > self.top {
            let shift = sequence - self.top;
            self.seen = if shift >= WINDOW_BITS {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = sequence;
            return true;
        }
        let back = self.top - sequence;
        if back >= WINDOW_BITS {
            return false;
        }
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// The replay state of one receiver.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// Windows by (sender, boot epoch).
    windows: HashMap<(u64, u64), Window>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// Check the datagram (`sender`, `boot_epoch`, `sequence`, `timestamp_ms`) at `now_ms` and
    /// remember it when fresh. Call only for authenticated datagrams.
    pub fn check(
        &mut self,
        sender: u64,
        boot_epoch: u64,
        sequence: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), Stale> {
        if timestamp_ms.abs_diff(now_ms) > TIME_WINDOW_MS {
            return Err(Stale::Clock);
        }
        if self.windows.len() >= PRUNE_AT {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.last_ms) <= 2 * TIME_WINDOW_MS);
        }
        let window = self.windows.entry((sender, boot_epoch)).or_insert(Window {
            top: 0,
            seen: 0,
            last_ms: now_ms,
        });
        if !window.accept(sequence) {
            return Err(Stale::Replay);
        }
        window.last_ms = now_ms;
        Ok(())
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// True when no window is held.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed "now".
    const NOW: u64 = 1_700_000_000_000;

    /// In order, reordered-but-fresh and duplicate sequence numbers.
    #[test]
    fn reordered_accepted_once_replays_refused() {
        let mut guard = ReplayGuard::new();
        let check = |g: &mut ReplayGuard, seq| g.check(1, 9, seq, NOW, NOW);
        assert_eq!(check(&mut guard, 1), Ok(()));
        assert_eq!(check(&mut guard, 5), Ok(()));
        assert_eq!(check(&mut guard, 3), Ok(()), "reordered but fresh");
        assert_eq!(check(&mut guard, 3), Err(Stale::Replay));
        assert_eq!(check(&mut guard, 5), Err(Stale::Replay));
        assert_eq!(check(&mut guard, 1), Err(Stale::Replay));
        assert_eq!(check(&mut guard, 4), Ok(()));
        assert_eq!(check(&mut guard, 200), Ok(()));
        assert_eq!(
            check(&mut guard, 72),
            Err(Stale::Replay),
            "below the window"
        );
        assert_eq!(check(&mut guard, 73), Ok(()), "the window's last slot");
        assert_eq!(check(&mut guard, 1000), Ok(()), "a jump clears the bitmap");
        assert_eq!(check(&mut guard, 999), Ok(()));
    }

    /// A new boot epoch (sender restart) and another sender get their own windows.
    #[test]
    fn restart_and_other_senders_are_separate() {
        let mut guard = ReplayGuard::new();
        assert_eq!(guard.check(1, 9, 10, NOW, NOW), Ok(()));
        assert_eq!(guard.check(1, 10, 1, NOW, NOW), Ok(()), "restarted sender");
        assert_eq!(guard.check(2, 9, 10, NOW, NOW), Ok(()));
        assert_eq!(guard.check(1, 9, 10, NOW, NOW), Err(Stale::Replay));
        assert_eq!(guard.len(), 3);
    }

    /// Timestamps more than 30 s away either way are refused and not remembered.
    #[test]
    fn time_window() {
        let mut guard = ReplayGuard::new();
        assert_eq!(
            guard.check(1, 9, 1, NOW - TIME_WINDOW_MS - 1, NOW),
            Err(Stale::Clock)
        );
        assert_eq!(
            guard.check(1, 9, 1, NOW + TIME_WINDOW_MS + 1, NOW),
            Err(Stale::Clock)
        );
        assert!(guard.is_empty());
        assert_eq!(guard.check(1, 9, 1, NOW - TIME_WINDOW_MS, NOW), Ok(()));
    }

    /// Idle windows are pruned once many are held.
    #[test]
    fn idle_windows_are_pruned() {
        let mut guard = ReplayGuard::new();
        for sender in 0..PRUNE_AT as u64 {
            assert_eq!(guard.check(sender, 1, 1, NOW, NOW), Ok(()));
        }
        let later = NOW + 2 * TIME_WINDOW_MS + 1;
        assert_eq!(guard.check(5000, 1, 1, later, later), Ok(()));
        assert_eq!(guard.len(), 1);
    }
}
