//! Writing authoritative answers: records, CNAME chains, NXDOMAIN/NODATA with the SOA,
//! REFUSED, EDNS and truncation; straight into the caller's buffer, without allocating.

use heimdall_wire::{
    Header, MAX_NAME_LEN, MessageWriter, Query, Section, WireError, class, rcode, rtype,
};

use super::Tables;
use super::zone::{Rr, Zone};
use crate::cache::ClientOpt;

/// Most CNAMEs followed within our own data before the answer is sent as it is.
const MAX_CHAIN: usize = 8;

/// Size of our OPT record (root owner, type, class, TTL, empty rdata).
const OPT_LEN: usize = 11;

/// Where the records of one name come from.
enum Found<'t> {
    /// The name has these records (local records or zone).
    Records(&'t [Rr], Option<&'t Zone>),
    /// The name is in the zone but does not exist there.
    Missing(&'t Zone),
    /// Neither local records nor the zone know the name.
    Outside,
}

/// Looks `name` (lower-cased wire) up: local records first, then the zone.
fn find<'t>(tables: &'t Tables, name: &[u8]) -> Found<'t> {
    if let Some(records) = tables.local.as_ref().and_then(|l| l.get(name)) {
        return Found::Records(records, None);
    }
    match tables.zone.as_deref() {
        Some(zone) if zone.contains(name) => match zone.get(name) {
            Some(records) => Found::Records(records, Some(zone)),
            None => Found::Missing(zone),
        },
        _ => Found::Outside,
    }
}

/// The client's side of the exchange.
struct Client<'q> {
    /// Message id.
    id: u16,
    /// Header flags of the query.
    flags: u16,
    /// The question name as the client wrote it (its case is echoed).
    qname: &'q [u8],
    /// Question type.
    qtype: u16,
    /// Question class.
    qclass: u16,
    /// The client's EDNS state.
    opt: Option<ClientOpt>,
}

impl Client<'_> {
    /// The response flags: QR, AA, the client's opcode, RD and CD, RA when we also recurse.
    fn flags(&self, tables: &Tables, rcode: u8) -> u16 {
        let ra = if tables.refuse_outside { 0 } else { Header::RA };
        Header::QR
            | Header::AA
            | (self.flags & (0x7800 | Header::RD | Header::CD))
            | ra
            | u16::from(rcode & 0x0f)
    }

    /// Appends our OPT record when the client sent one.
    fn opt(&self, w: &mut MessageWriter<'_>) -> Result<(), WireError> {
        match self.opt {
            Some(o) => {
                let flags = if o.dnssec_ok { 0x8000 } else { 0 };
                w.opt(o.our_udp_size, 0, 0, flags, &[])
            }
            None => Ok(()),
        }
    }
}

/// Answers `query` from `tables` into `out` when the name is ours; None otherwise.
pub(super) fn answer(
    tables: &Tables,
    query: &Query<'_>,
    question: &[u8],
    opt: Option<ClientOpt>,
    max_len: usize,
    out: &mut [u8],
) -> Option<usize> {
    let mut lower = [0u8; MAX_NAME_LEN];
    let len = query.question.name.write_lower(&mut lower).ok()?;
    let qname = lower.get(..len)?;
    let client = Client {
        id: query.header.id,
        flags: query.header.flags,
        qname: question.get(..question.len().checked_sub(4)?)?,
        qtype: query.question.qtype,
        qclass: query.question.qclass,
        opt,
    };
    let out = out.get_mut(..max_len.min(out.len()))?;
    let ours = client.qclass == class::IN && !matches!(find(tables, qname), Found::Outside);
    if !ours {
        if !tables.refuse_outside {
            return None;
        }
        return Some(write_refused(tables, &client, out));
    }
    let written = write_records(tables, &client, qname, out);
    Some(written.unwrap_or_else(|_| write_truncated(tables, &client, out)))
}

/// Writes the full answer for a name we hold; NoSpace when it does not fit.
fn write_records(
    tables: &Tables,
    client: &Client<'_>,
    qname: &[u8],
    out: &mut [u8],
) -> Result<usize, WireError> {
    let mut w = MessageWriter::new(out)?;
    w.question(client.qname, client.qtype, client.qclass)?;
    // The first owner is written as the client wrote it, later ones as stored.
    let mut owner = client.qname;
    let mut name = qname;
    let mut code = rcode::NOERROR;
    let mut negative: Option<&Zone> = None;
    for _ in 0..MAX_CHAIN {
        let (records, zone) = match find(tables, name) {
            Found::Outside => break,
            Found::Missing(zone) => {
                code = rcode::NXDOMAIN;
                negative = Some(zone);
                break;
            }
            Found::Records(records, zone) => (records, zone),
        };
        let wanted = |r: &&Rr| r.rtype == client.qtype || client.qtype == rtype::ANY;
        if records.iter().any(|r| wanted(&r)) {
            for r in records.iter().filter(wanted) {
                w.record(Section::Answer, owner, r.rtype, class::IN, r.ttl, &r.rdata)?;
            }
            break;
        }
        match records.iter().find(|r| r.rtype == rtype::CNAME) {
            Some(cname) if client.qtype != rtype::CNAME => {
                w.record(
                    Section::Answer,
                    owner,
                    rtype::CNAME,
                    class::IN,
                    cname.ttl,
                    &cname.rdata,
                )?;
                owner = &cname.rdata;
                name = &cname.rdata;
            }
            _ => {
                negative = zone;
                break;
            }
        }
    }
    if let Some(zone) = negative {
        let soa = zone.soa();
        // RFC 2308 section 3: the SOA's TTL is the smaller of its TTL and its MINIMUM.
        let minimum = soa
            .rdata
            .last_chunk::<4>()
            .map_or(soa.ttl, |m| u32::from_be_bytes(*m));
        w.record(
            Section::Authority,
            zone.apex(),
            rtype::SOA,
            class::IN,
            soa.ttl.min(minimum),
            &soa.rdata,
        )?;
    }
    client.opt(&mut w)?;
    w.set_header(client.id, client.flags(tables, code));
    Ok(w.finish())
}

/// Writes header, question and OPT with TC=1: the answer did not fit (the client retries
/// over TCP).
fn write_truncated(tables: &Tables, client: &Client<'_>, out: &mut [u8]) -> usize {
    write_empty(tables, client, rcode::NOERROR, Header::TC, out)
}

/// Writes REFUSED: a name outside the zone on an authoritative-only node.
fn write_refused(tables: &Tables, client: &Client<'_>, out: &mut [u8]) -> usize {
    write_empty(tables, client, rcode::REFUSED, 0, out)
}

/// Writes an answer with no records: header (`rcode`, `extra` flags), question, OPT.
fn write_empty(
    tables: &Tables,
    client: &Client<'_>,
    code: u8,
    extra: u16,
    out: &mut [u8],
) -> usize {
    let Ok(mut w) = MessageWriter::new(out) else {
        return 0;
    };
    let mut flags = client.flags(tables, code) | extra;
    if code == rcode::REFUSED {
        // Not our zone: not an authoritative answer.
        flags &= !Header::AA;
    }
    w.set_header(client.id, flags);
    // A header is always sent; the question and OPT go in while they fit.
    if w.question(client.qname, client.qtype, client.qclass)
        .is_ok()
        && w.remaining() >= OPT_LEN
    {
        let _ = client.opt(&mut w);
    }
    w.finish()
}
