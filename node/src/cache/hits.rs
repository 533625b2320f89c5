//! Per-thread hit logs: a cache hit records its slot's ticket here instead of writing shared memory.
//!
//! Each thread owns one fixed log of [`LOG_LEN`] tickets in thread-local storage. It is
//! initialized at compile time and has no destructor, so recording a hit never allocates, not
//! even on a thread's first hit. A full log is handed to the store that owns it (see
//! `Store::deliver`), which applies the hits under its own locks or drops them when busy.
//!
//! A log belongs to one store at a time (stores are told apart by a process-unique id). When
//! a thread records a hit for a different store, the tickets still logged for the previous
//! one are discarded: a process normally has one cache, and hit bookkeeping is allowed to lose
//! hits.

use std::cell::RefCell;

/// Tickets a thread logs before handing them to the store.
pub const LOG_LEN: usize = 64;

/// One thread's pending hits.
#[derive(Debug)]
struct HitLog {
    /// Id of the store the logged tickets belong to (0: none yet).
    owner: u64,
    /// How many of `tickets` are filled.
    len: usize,
    /// The logged tickets, oldest first.
    tickets: [u64; LOG_LEN],
}

thread_local! {
    /// This thread's log (const-initialized and without drop glue: no allocation, no destructor).
    static LOG: RefCell<HitLog> = const {
        RefCell::new(HitLog {
            owner: 0,
            len: 0,
            tickets: [0; LOG_LEN],
        })
    };
}

/// Log a hit on `ticket` for store `owner`; when the log is full, call `deliver` with all of
/// its tickets and empty it. `deliver` must not record hits itself.
#[inline]
pub fn record(owner: u64, ticket: u64, deliver: impl FnOnce(&mut [u64])) {
    let _ = LOG.try_with(|log| {
        let Ok(mut log) = log.try_borrow_mut() else {
            return;
        };
        if log.owner != owner {
            log.owner = owner;
            log.len = 0;
        }
        let len = log.len;
        let Some(slot) = log.tickets.get_mut(len) else {
            log.len = 0;
            return;
        };
        *slot = ticket;
        log.len = len + 1;
        if log.len == LOG_LEN {
            log.len = 0;
            deliver(&mut log.tickets);
        }
    });
}

/// Hand this thread's pending tickets for store `owner` (if any) to `deliver` and empty the log.
pub fn take(owner: u64, deliver: impl FnOnce(&mut [u64])) {
    let _ = LOG.try_with(|log| {
        let Ok(mut log) = log.try_borrow_mut() else {
            return;
        };
        if log.owner != owner || log.len == 0 {
            return;
        }
        let len = std::mem::take(&mut log.len);
        if let Some(tickets) = log.tickets.get_mut(..len) {
            deliver(tickets);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full log is delivered whole and emptied; `take` delivers the rest; other owners reset it.
    #[test]
    fn deliver_when_full_take_rest_and_owner_switch() {
        let mut delivered = Vec::new();
        for t in 0..LOG_LEN as u64 + 3 {
            record(7, t, |batch| delivered.extend_from_slice(batch));
        }
        assert_eq!(delivered, (0..LOG_LEN as u64).collect::<Vec<_>>());
        delivered.clear();
        take(8, |batch| delivered.extend_from_slice(batch));
        assert!(
            delivered.is_empty(),
            "another store's tickets are not handed out"
        );
        take(7, |batch| delivered.extend_from_slice(batch));
        let tail: Vec<u64> = (LOG_LEN as u64..LOG_LEN as u64 + 3).collect();
        assert_eq!(delivered, tail);
        delivered.clear();
        take(7, |batch| delivered.extend_from_slice(batch));
        assert!(delivered.is_empty());
        record(7, 1, |_| {});
        record(9, 2, |_| {});
        take(7, |batch| delivered.extend_from_slice(batch));
        assert!(
            delivered.is_empty(),
            "switching owners drops the old tickets"
        );
        take(9, |batch| delivered.extend_from_slice(batch));
        assert_eq!(delivered, [2]);
    }
}
