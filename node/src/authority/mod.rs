//! Authoritative answers: a zone loaded from a zone file and the cluster's local records.
//!
//! [`Authority`] is consulted by [`Resolver::process`](crate::resolver::Resolver::process)
//! before the cache. It holds an immutable snapshot ([`Tables`]) behind an arc-swap, rebuilt
//! and swapped in when the zone is installed at start or the cluster's local records change,
//! so a query never sees a half-built table and never waits for a writer.
//!
//! How it combines with forwarding:
//! - local records (cluster settings, like Unbound's local-data with a transparent local-zone)
//!   are answered first, for their exact owner names: the records of the asked type, a CNAME
//!   (followed through local records and the zone), or NODATA; other names go on;
//! - names at or below the zone's apex (`authority.zone_file`) are answered from the zone with
//!   AA set: the records, a CNAME chain, NXDOMAIN or NODATA with the SOA in the authority
//!   section;
//! - everything else is forwarded to the upstreams as usual, unless the node was started with
//!   a zone and no upstream (`upstream.servers` empty): then it is authoritative only, answers
//!   REFUSED outside its zone, and does not set RA.
//!
//! With no zone and no local records, [`Authority::answer`] costs one atomic load and a branch;
//! for a query it does not answer it never allocates.

mod answer;
pub mod demo;
pub mod local;
pub mod zone;
pub mod zonefile;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use heimdall_wire::Query;

pub use local::{apply_local_records, local_table};
pub use zone::{NameTable, Rr, Zone, ZoneError};
pub use zonefile::{ZoneFileError, ZoneFileRecord};

use crate::cache::ClientOpt;
use crate::config::Config;
use crate::stats::Counter;

/// Installs the zone `config::load` read from `authority.zone_file` (the hook in
/// `server::build_resolver`); a zone with no configured upstream makes the node
/// authoritative only.
pub fn install_zone(authority: &Authority, config: &Config) {
    let Some(zone) = &config.authority.zone else {
        return;
    };
    let refuse_outside = config.upstream.servers.is_empty();
    authority.set_zone(Some(Arc::clone(zone)), refuse_outside);
    tracing::info!(
        zone = %zone::display_name(zone.apex()),
        names = zone.name_count(),
        authoritative_only = refuse_outside,
        "zone loaded"
    );
}

/// What the authority answers from: one immutable snapshot.
#[derive(Debug, Default)]
pub struct Tables {
    /// The zone from `authority.zone_file`, if any.
    zone: Option<Arc<Zone>>,
    /// The cluster's local records by owner name, if any.
    local: Option<Arc<NameTable>>,
    /// Authoritative only (a zone and no upstream): refuse names outside the zone.
    refuse_outside: bool,
}

/// The authoritative data of a node and its answering entry point.
#[derive(Debug, Default)]
pub struct Authority {
    /// True when there is anything to answer; the only thing a query reads when there is not.
    active: AtomicBool,
    /// The current snapshot (None: nothing installed yet).
    tables: ArcSwapOption<Tables>,
    /// Serializes writers (start-up and live apply), so two updates never lose each other.
    writer: Mutex<()>,
    /// Queries answered here (from the zone or local records, REFUSED included).
    answered: Counter,
}

impl Authority {
    /// Installs the zone (None: no zone). With `refuse_outside`, names outside the zone and
    /// the local records are answered REFUSED instead of being forwarded.
    pub fn set_zone(&self, zone: Option<Arc<Zone>>, refuse_outside: bool) {
        self.update(|tables| {
            tables.zone = zone;
            tables.refuse_outside = refuse_outside && tables.zone.is_some();
        });
    }

    /// Installs the local records (an empty table: none).
    pub fn set_local(&self, table: NameTable) {
        self.update(|tables| {
            tables.local = (!table.is_empty()).then(|| Arc::new(table));
        });
    }

    /// Queries answered from the zone or local records so far.
    pub fn answered(&self) -> u64 {
        self.answered.get()
    }

    /// Answers the query into `out` when it is ours (in the zone, a local record's name, or
    /// refused by an authoritative-only node); returns the answer's length, or None to let
    /// the cache and the upstreams handle it. `question` is the client's question bytes,
    /// `max_len` the largest answer the client takes on its transport.
    #[inline]
    pub fn answer(
        &self,
        query: &Query<'_>,
        question: &[u8],
        opt: Option<ClientOpt>,
        max_len: usize,
        out: &mut [u8],
    ) -> Option<usize> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let tables = self.tables.load();
        let len = answer::answer(tables.as_deref()?, query, question, opt, max_len, out)?;
        self.answered.incr();
        Some(len)
    }

    /// Builds the next snapshot from the current one and swaps it in.
    fn update(&self, change: impl FnOnce(&mut Tables)) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.tables.load_full();
        let mut next = Tables {
            zone: current.as_ref().and_then(|t| t.zone.clone()),
            local: current.as_ref().and_then(|t| t.local.clone()),
            refuse_outside: current.as_ref().is_some_and(|t| t.refuse_outside),
        };
        change(&mut next);
        let active = next.zone.is_some() || next.local.is_some();
        self.tables.store(Some(Arc::new(next)));
        self.active.store(active, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
