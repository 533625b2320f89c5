//! An authoritative zone: the records of a zone file checked and indexed by owner name.
//!
//! [`Zone::load`] reads and parses a zone file ([`super::zonefile`]) and checks what an
//! answering zone needs: exactly one SOA, whose owner is the apex; every owner at or below the
//! apex; no other data next to a CNAME; no NS below the apex (delegations are not supported).
//! Names that exist only because something exists below them (empty non-terminals) are
//! indexed too, so they answer NODATA rather than NXDOMAIN (RFC 8020).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heimdall_wire::rtype;

use super::zonefile::{self, ZoneFileError, ZoneFileRecord};

/// One record held for answering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    /// Type code.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA with names uncompressed.
    pub rdata: Box<[u8]>,
}

/// Owner name (lower-cased uncompressed wire form) -> its records; an empty list marks a name
/// that exists only because names below it do.
pub type NameTable = HashMap<Box<[u8]>, Vec<Rr>>;

/// Why a zone file could not be loaded: the file, the line (0: the file as a whole) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct ZoneError {
    /// The zone file.
    pub path: PathBuf,
    /// The 1-based line, 0 when the problem is not on one line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A loaded zone, ready to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The apex (the SOA's owner), lower-cased wire form.
    apex: Box<[u8]>,
    /// The SOA record, for negative answers.
    soa: Rr,
    /// Every owner name in the zone and its records.
    names: NameTable,
}

impl Zone {
    /// Reads, parses and checks the zone file at `path`. The initial origin is unset: the
    /// file names its origin with `$ORIGIN` or uses absolute names.
    pub fn load(path: &Path) -> Result<Zone, ZoneError> {
        let located = |e: ZoneFileError| ZoneError {
            path: path.to_path_buf(),
            line: e.line,
            reason: e.reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("cannot read the file: {e}"),
        })?;
        let records = zonefile::parse(&text, None).map_err(located)?;
        Zone::from_records(records).map_err(located)
    }

    /// Checks and indexes parsed records.
    pub fn from_records(records: Vec<ZoneFileRecord>) -> Result<Zone, ZoneFileError> {
        let mut soa: Option<(usize, Vec<u8>, Rr)> = None;
        for record in &records {
            if record.rtype != rtype::SOA {
                continue;
            }
            if let Some((first, ..)) = &soa {
                return Err(ZoneFileError::new(
                    record.line,
                    format!("a second SOA record (the first is on line {first})"),
                ));
            }
            soa = Some((
                record.line,
                record.owner.clone(),
                Rr {
                    rtype: rtype::SOA,
                    ttl: record.ttl,
                    rdata: record.rdata.clone().into(),
                },
            ));
        }
        let Some((_, apex, soa)) = soa else {
            return Err(ZoneFileError::new(0, "the zone has no SOA record"));
        };
        let mut names = NameTable::new();
        // Owner -> line of its CNAME, or of its first other record, for the exclusivity rule.
        let mut first_line: HashMap<Vec<u8>, (usize, bool)> = HashMap::new();
        for record in records {
            let line = record.line;
            if !in_zone(&apex, &record.owner) {
                return Err(ZoneFileError::new(
                    line,
                    format!(
                        "{} is outside the zone {}",
                        display_name(&record.owner),
                        display_name(&apex)
                    ),
                ));
            }
            if record.rtype == rtype::NS && record.owner != apex {
                return Err(ZoneFileError::new(
                    line,
                    format!(
                        "NS at {}: delegations below the apex are not supported",
                        display_name(&record.owner)
                    ),
                ));
            }
            let is_cname = record.rtype == rtype::CNAME;
            match first_line.get(&record.owner) {
                Some(&(first, had_cname)) if is_cname || had_cname => {
                    return Err(ZoneFileError::new(
                        line,
                        format!(
                            "{} has a CNAME, which cannot coexist with other records \
                             (see line {first})",
                            display_name(&record.owner)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    first_line.insert(record.owner.clone(), (line, is_cname));
                }
            }
            let rr = Rr {
                rtype: record.rtype,
                ttl: record.ttl,
                rdata: record.rdata.into(),
            };
            let set = names.entry(record.owner.into_boxed_slice()).or_default();
            // Identical records are one record (RFC 2181 section 5).
            if !set
                .iter()
                .any(|r| r.rtype == rr.rtype && r.rdata == rr.rdata)
            {
                set.push(rr);
            }
        }
        add_empty_non_terminals(&apex, &mut names);
        Ok(Zone {
            apex: apex.into_boxed_slice(),
            soa,
            names,
        })
    }

    /// The apex in lower-cased wire form.
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// The SOA record.
    pub fn soa(&self) -> &Rr {
        &self.soa
    }

    /// Whether `name` (lower-cased wire form) is at or below the apex.
    pub fn contains(&self, name: &[u8]) -> bool {
        in_zone(&self.apex, name)
    }

    /// The records of `name` (lower-cased wire form): None when the name does not exist.
    pub fn get(&self, name: &[u8]) -> Option<&[Rr]> {
        self.names.get(name).map(Vec::as_slice)
    }

    /// How many owner names the zone has (empty non-terminals included).
    pub fn name_count(&self) -> usize {
        self.names.len()
    }
}

/// Inserts an empty record list for every name between an owner and the apex that has none.
fn add_empty_non_terminals(apex: &[u8], names: &mut NameTable) {
    let owners: Vec<Box<[u8]>> = names.keys().cloned().collect();
    for owner in owners {
        let mut at = 0;
        while let Some(&len) = owner.get(at) {
            if len == 0 {
                break;
            }
            at += 1 + usize::from(len);
            let Some(parent) = owner.get(at..) else { break };
            if parent.len() <= apex.len() {
                break;
            }
            names.entry(parent.into()).or_default();
        }
    }
}

/// Whether wire `name` equals `apex` or ends with it at a label boundary (both lower-cased).
pub fn in_zone(apex: &[u8], name: &[u8]) -> bool {
    crate::cache::in_subtree(name, apex)
}

/// A wire name in presentation form, for messages (`www.example.test.`).
pub fn display_name(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "\\{b:03}");
            }
        }
        out.push('.');
        at += 1 + usize::from(len);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}
