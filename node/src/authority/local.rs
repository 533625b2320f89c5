//! The cluster's local records as an answering table, and their live apply.

use crate::cluster::settings::{ClusterSettings, LocalRecord};

use super::Authority;
use super::zone::{NameTable, Rr};

/// Indexes local records by owner name. The settings were validated before they entered the
/// Raft log, so a record that does not encode is only logged and skipped.
pub fn local_table(records: &[LocalRecord]) -> NameTable {
    let mut table = NameTable::new();
    for record in records {
        match record.to_wire() {
            Ok(wire) => {
                let set = table.entry(wire.owner.into_boxed_slice()).or_default();
                let rr = Rr {
                    rtype: wire.rtype,
                    ttl: wire.ttl,
                    rdata: wire.rdata.into_boxed_slice(),
                };
                if !set.contains(&rr) {
                    set.push(rr);
                }
            }
            Err(error) => {
                tracing::warn!(name = %record.name, %error, "local record skipped");
            }
        }
    }
    table
}

/// Live apply of `settings.local_records` (the hook in `cluster::apply`): rebuilds and swaps
/// the table when the records differ from `previous` (None: nothing applied yet).
pub fn apply_local_records(
    authority: &Authority,
    previous: Option<&ClusterSettings>,
    settings: &ClusterSettings,
    version: u64,
) {
    let before = previous.map_or(&[][..], |p| p.local_records.as_slice());
    if before == settings.local_records.as_slice() {
        return;
    }
    authority.set_local(local_table(&settings.local_records));
    tracing::info!(
        version,
        records = settings.local_records.len(),
        "local records applied"
    );
}
