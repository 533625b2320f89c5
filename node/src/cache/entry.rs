//! Cache entries: built from an upstream response, replayed as a client's answer without allocation.
//!
//! An entry keeps the upstream records (OPT removed) as wire bytes laid out to follow a
//! question of the upstream question's length at offset 12: the records are rebuilt with
//! [`MessageWriter`] after the upstream question, so every compression pointer targets either
//! the question name or an earlier record. Replayed after the client's question, which is the
//! same name in possibly different case, the pointers stay valid. The offsets of the TTL fields
//! are kept after the record bytes, in the same allocation, so a reply is one copy plus a few
//! patches (each TTL is read back from the copied record and lowered by the entry's age).
//!
//! Layout: everything a hit reads besides the record bytes (stored-at time, TTLs, header bits,
//! counts, lengths, the prefetch flag and the pointer to the bytes) sits together at the start
//! of the [`Entry`] struct, which is 64 bytes in all; the record bytes and TTL offsets live in
//! their own allocation.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use heimdall_wire::{
    HEADER_LEN, Header, MAX_NAME_LEN, Message, MessageWriter, Section, WireError, rcode, rtype,
};

use super::policy::CachePolicy;
use super::store::{HOT_HITS, Weighted};

/// Largest DNS message, and the size of the rebuild buffer.
const MAX_MESSAGE_LEN: usize = 65_535;
/// Bytes of the OPT record we append: root owner, type, class, TTL, empty RDATA.
const OPT_LEN: usize = 11;
/// EDNS flag DO (DNSSEC OK) in the OPT TTL field's low 16 bits.
const EDNS_DO: u16 = 0x8000;
/// Fixed fields at the end of SOA RDATA: serial, refresh, retry, expire, minimum.
const SOA_FIXED_LEN: usize = 20;

thread_local! {
    /// Per-thread buffer in which upstream records are rebuilt (the miss path reuses it).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; MAX_MESSAGE_LEN].into_boxed_slice());
}

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An upstream answer to a client's query.
    Upstream,
    /// An upstream answer fetched to refresh an entry before it expired.
    Prefetch,
    /// An answer learned from a peer node.
    Gossip,
    /// An answer loaded from a dump (the control plane's CacheLoad).
    Loaded,
}

/// What kind of answer an entry holds; it decides how long it may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// NOERROR with answer records: cached for the smallest answer TTL.
    Positive,
    /// NXDOMAIN: cached per RFC 2308.
    NxDomain,
    /// NOERROR without answer records: cached per RFC 2308.
    NoData,
    /// SERVFAIL: cached for a few seconds.
    ServFail,
    /// Anything else (REFUSED, FORMERR, NOTIMP, extended rcodes): never cached.
    Other,
}

/// Why an upstream response cannot become an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The response has no question to key or replay it by.
    #[error("upstream response has no question")]
    NoQuestion,
    /// The response has more than one question.
    #[error("upstream response has {0} questions, expected one")]
    QuestionCount(u16),
    /// A record, name or the OPT record of the response is malformed.
    #[error("malformed upstream response: {0}")]
    Malformed(#[from] WireError),
    /// The records could not be rebuilt into one message (they would exceed 65535 bytes).
    #[error("upstream records do not fit a message when rebuilt: {0}")]
    Rebuild(WireError),
}

/// The client side of a reply: what `write_response` copies from the query.
#[derive(Clone, Copy, Debug)]
pub struct ClientQuery<'a> {
    /// The client's message ID.
    pub id: u16,
    /// The client's header flags (RD and CD are copied into the reply).
    pub flags: u16,
    /// The client's question bytes (name, type, class), copied verbatim into the reply.
    pub question: &'a [u8],
    /// The client's EDNS state, if it sent an OPT record.
    pub opt: Option<ClientOpt>,
}

/// The EDNS part of a client's query that shapes our OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOpt {
    /// The client set DO: echo it.
    pub dnssec_ok: bool,
    /// The UDP payload size we advertise.
    pub our_udp_size: u16,
}

/// Bytes per stored TTL offset (a native-endian `u16` after the record bytes).
const TTL_OFFSET_LEN: usize = 2;

/// Where an entry stands in its life at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Before expiry.
    Fresh,
    /// Expired, but within the stale window.
    Stale,
    /// Past the stale window: to be removed.
    Dead,
}

/// An answer ready to be replayed to clients.
///
/// `repr(C)` keeps the declared order: the fields a hit reads come first and together (56
/// bytes), then the cold ones; the struct is 64 bytes.
#[derive(Debug)]
#[repr(C)]
pub struct Entry {
    /// When the stored TTLs were current (the insert, or the build for a one-shot entry).
    stored_at: Instant,
    /// Lifetime in seconds from `stored_at`.
    ttl: u32,
    /// TTL put on every record when served stale (the policy's `stale_ttl` when built).
    stale_ttl: u32,
    /// Response code, with the extended bits (upper 8) from the upstream OPT in bits 4..12.
    rcode: u16,
    /// Header bits carried from upstream: AA, AD and TC.
    flags: u16,
    /// Answer, authority and additional record counts (without OPT).
    counts: [u16; 3],
    /// Length of the upstream question (name + type + class) the records are laid out after.
    question_len: u16,
    /// Length of the record bytes at the start of `wire`.
    records_len: u16,
    /// The prefetch signal was given (it is given once per entry).
    prefetch_claimed: AtomicBool,
    /// In which last part of the TTL (percent) a hit asks for a prefetch; 0: never (see
    /// [`super::refresh`]).
    prefetch_window: u8,
    /// The records as wire bytes, valid at offset 12 + `question_len`, followed by the offset
    /// of every record's TTL field from the start of the records (native-endian `u16`s).
    wire: Box<[u8]>,
    /// What kind of answer this is.
    kind: EntryKind,
    /// Where it came from.
    source: Source,
    /// Hits the store has applied from the per-thread hit logs since it was stored (written
    /// only by the store, under its shard lock; drives SLRU promotion and the hot layer).
    hits: AtomicU32,
}

/// Building an entry from an upstream response.
impl Entry {
    /// Build an entry from a parsed upstream response (already matched to the question).
    ///
    /// Record TTLs are clamped to `[min_ttl, max_ttl]`; the OPT record is dropped. Returns the
    /// entry and `Some(ttl)` when it may be cached: positive answers for their smallest answer
    /// TTL, NXDOMAIN/NODATA for min(SOA TTL, SOA MINIMUM) capped at `max_negative_ttl` (or
    /// `nosoa_negative_ttl` without an SOA), SERVFAIL for `servfail_ttl`. `None` means serve it
    /// once: TC=1, REFUSED/FORMERR/NOTIMP/extended rcodes, or a TTL of zero. In negative and
    /// SERVFAIL answers no record TTL exceeds the entry's TTL.
    pub fn from_response(
        resp: &Message<'_>,
        policy: &CachePolicy,
        now: Instant,
        source: Source,
    ) -> Result<(Entry, Option<u32>), EntryError> {
        Self::build(resp, policy, now, source, u32::MAX)
    }

    /// Build an entry from a dumped response (as [`Entry::to_message`] writes it) that has
    /// `remaining` seconds of TTL left: as [`Entry::from_response`] with [`Source::Loaded`],
    /// but neither the entry's TTL nor any record's TTL exceeds `remaining`, so loading never
    /// extends a lifetime (not even when `min_ttl` would raise a record's TTL).
    pub fn from_dump(
        resp: &Message<'_>,
        policy: &CachePolicy,
        now: Instant,
        remaining: u32,
    ) -> Result<(Entry, Option<u32>), EntryError> {
        Self::with_remaining(resp, policy, now, Source::Loaded, remaining)
    }

    /// Build an entry from a response a peer gossiped with `remaining` seconds of TTL left:
    /// as [`Entry::from_dump`] (never longer than `remaining`), marked [`Source::Gossip`].
    pub fn from_peer(
        resp: &Message<'_>,
        policy: &CachePolicy,
        now: Instant,
        remaining: u32,
    ) -> Result<(Entry, Option<u32>), EntryError> {
        Self::with_remaining(resp, policy, now, Source::Gossip, remaining)
    }

    /// An entry from `source` whose TTL and record TTLs are capped at `remaining`.
    fn with_remaining(
        resp: &Message<'_>,
        policy: &CachePolicy,
        now: Instant,
        source: Source,
        remaining: u32,
    ) -> Result<(Entry, Option<u32>), EntryError> {
        let (mut entry, ttl) = Self::build(resp, policy, now, source, remaining)?;
        let ttl = ttl.map(|t| t.min(remaining)).filter(|t| *t > 0);
        entry.ttl = entry.ttl.min(remaining);
        Ok((entry, ttl))
    }

    /// [`Entry::from_response`] with every record TTL also capped at `ttl_limit`.
    fn build(
        resp: &Message<'_>,
        policy: &CachePolicy,
        now: Instant,
        source: Source,
        ttl_limit: u32,
    ) -> Result<(Entry, Option<u32>), EntryError> {
        let header = resp.header();
        let question = match header.qdcount {
            0 => return Err(EntryError::NoQuestion),
            1 => resp.question().ok_or(EntryError::NoQuestion)?,
            n => return Err(EntryError::QuestionCount(n)),
        };
        let opt = resp.validate()?;
        let full_rcode = u16::from(opt.map_or(0, |o| o.ext_rcode)) << 4 | u16::from(header.rcode());
        let kind = match full_rcode {
            r if r == u16::from(rcode::NOERROR) && header.ancount > 0 => EntryKind::Positive,
            r if r == u16::from(rcode::NOERROR) => EntryKind::NoData,
            r if r == u16::from(rcode::NXDOMAIN) => EntryKind::NxDomain,
            r if r == u16::from(rcode::SERVFAIL) => EntryKind::ServFail,
            _ => EntryKind::Other,
        };

        // First pass: the smallest clamped answer TTL and the first authority SOA.
        let mut answer_min: Option<u32> = None;
        let mut soa: Option<(u32, u32)> = None;
        for rec in resp.records() {
            let rec = rec?;
            match rec.section {
                Section::Answer => {
                    let ttl = policy.clamp_ttl(rec.ttl);
                    answer_min = Some(answer_min.map_or(ttl, |m| m.min(ttl)));
                }
                Section::Authority if rec.rtype == rtype::SOA && soa.is_none() => {
                    soa = soa_minimum(rec.rdata).map(|minimum| (rec.ttl, minimum));
                }
                _ => {}
            }
        }
        let ttl = match kind {
            EntryKind::Positive => answer_min.unwrap_or(0),
            EntryKind::NxDomain | EntryKind::NoData => match soa {
                Some((soa_ttl, minimum)) => policy.negative_ttl(soa_ttl, minimum),
                None => policy.nosoa_negative_ttl.min(policy.max_negative_ttl),
            },
            EntryKind::ServFail => policy.servfail_ttl(),
            EntryKind::Other => 0,
        };
        let cacheable = (!header.tc() && ttl > 0).then_some(ttl);
        // No record of a negative or SERVFAIL answer may outlive the entry.
        let record_cap = match kind {
            EntryKind::Positive | EntryKind::Other => u32::MAX,
            _ => ttl,
        }
        .min(ttl_limit);

        let mut name = [0u8; MAX_NAME_LEN];
        let name_len = question.name.write_uncompressed(&mut name)?;
        let name = name.get(..name_len).ok_or(WireError::NameTooLong)?;
        let rebuilt = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            rebuild_records(
                resp,
                &mut scratch,
                name,
                question.qtype,
                question.qclass,
                |ttl| policy.clamp_ttl(ttl).min(record_cap),
            )
        })?;

        let entry = Entry {
            stored_at: now,
            ttl,
            stale_ttl: policy.stale_ttl,
            rcode: full_rcode,
            flags: header.flags & (Header::AA | Header::AD | Header::TC),
            counts: rebuilt.counts,
            question_len: u16::try_from(name_len + 4).map_err(|_| WireError::NameTooLong)?,
            records_len: rebuilt.records_len,
            prefetch_claimed: AtomicBool::new(false),
            prefetch_window: super::refresh::OWNER_WINDOW,
            wire: rebuilt.wire,
            kind,
            source,
            hits: AtomicU32::new(0),
        };
        Ok((entry, cacheable))
    }
}

/// Replaying an entry.
impl Entry {
    /// Write the reply for a client into `out` and return its length (at most `max_len`).
    ///
    /// Header: the client's ID, QR and RA set, RD and CD copied from the client, AA, AD (and TC
    /// for a one-shot truncated answer) from upstream, the rcode. Then the client's question
    /// verbatim, the records with TTLs decremented by the whole seconds since the entry was
    /// stored (saturating at 0) or all set to the stale TTL when `stale`, then our OPT (version
    /// 0, DO echoed, our UDP size) when the client sent one. If that exceeds `max_len`: header,
    /// question (and OPT) with TC=1 and no records. If the client's question is not as long as
    /// the stored one (only a compressed client name can do that) the records cannot be laid out
    /// after it: the reply is SERVFAIL without records. Returns 0 if `out`/`max_len` cannot hold
    /// even the header and question. Never allocates, never locks.
    pub fn write_response(
        &self,
        out: &mut [u8],
        client: &ClientQuery<'_>,
        now: Instant,
        stale: bool,
        max_len: usize,
    ) -> usize {
        self.write_response_aged(out, client, self.age(now), stale, max_len)
    }

    /// [`Entry::write_response`] for an entry whose age ([`Entry::age`]) the caller already
    /// knows: the hit path gets it from the lookup and saves subtracting the instants twice.
    pub fn write_response_aged(
        &self,
        out: &mut [u8],
        client: &ClientQuery<'_>,
        age: Duration,
        stale: bool,
        max_len: usize,
    ) -> usize {
        let limit = max_len.min(out.len());
        let question = client.question;
        let opt_len = if client.opt.is_some() { OPT_LEN } else { 0 };
        let bare_len = HEADER_LEN + question.len() + opt_len;
        if bare_len > limit {
            return 0;
        }
        let mut flags = Header::QR
            | Header::RA
            | (client.flags & (Header::RD | Header::CD))
            | (self.flags & (Header::AA | Header::AD | Header::TC));
        let mut rcode = self.rcode;
        let fits_layout = question.len() == usize::from(self.question_len);
        let (records, ttl_offsets) = self
            .wire
            .split_at_checked(usize::from(self.records_len))
            .unwrap_or((&[], &[]));
        let full_len = bare_len + records.len();
        let records = if !fits_layout {
            rcode = u16::from(rcode::SERVFAIL);
            flags &= !(Header::AA | Header::AD | Header::TC);
            None
        } else if full_len > limit {
            flags |= Header::TC;
            None
        } else {
            Some(records)
        };
        let [an, ns, ar] = if records.is_some() {
            self.counts
        } else {
            [0; 3]
        };
        let ar = ar + u16::from(client.opt.is_some());
        flags |= rcode & 0x000f;

        let mut at = 0;
        put(out, &mut at, &client.id.to_be_bytes());
        put(out, &mut at, &flags.to_be_bytes());
        put(out, &mut at, &1u16.to_be_bytes());
        put(out, &mut at, &an.to_be_bytes());
        put(out, &mut at, &ns.to_be_bytes());
        put(out, &mut at, &ar.to_be_bytes());
        put(out, &mut at, question);
        if let Some(records) = records {
            let base = at;
            put(out, &mut at, records);
            let elapsed = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
            let (offsets, _) = ttl_offsets.as_chunks::<TTL_OFFSET_LEN>();
            for &offset in offsets {
                let ttl_at = base + usize::from(u16::from_ne_bytes(offset));
                // The copied record holds its stored TTL: lower it in place.
                if let Some(field) = out.get_mut(ttl_at..).and_then(|f| f.first_chunk_mut::<4>()) {
                    let ttl = if stale {
                        self.stale_ttl
                    } else {
                        u32::from_be_bytes(*field).saturating_sub(elapsed)
                    };
                    *field = ttl.to_be_bytes();
                }
            }
        }
        if let Some(opt) = client.opt {
            let [size0, size1] = opt.our_udp_size.to_be_bytes();
            let ext_rcode = (rcode >> 4) as u8;
            let edns_flags = if opt.dnssec_ok { EDNS_DO } else { 0 };
            let [flag0, flag1] = edns_flags.to_be_bytes();
            let [type0, type1] = rtype::OPT.to_be_bytes();
            let record = [
                0, type0, type1, size0, size1, ext_rcode, 0, flag0, flag1, 0, 0,
            ];
            put(out, &mut at, &record);
        }
        at
    }
}

/// Exporting an entry (control plane: lookup and dump).
impl Entry {
    /// Write the whole response this entry holds for the question in `key` (a cache key:
    /// lower-cased wire name, type, class, flags byte) into `out`, ID 0, RD set, CD as in the
    /// key, with the record TTLs as they stand at `now` (no OPT record). Returns the length,
    /// or 0 when the key does not fit the entry or `out` is too small.
    pub fn to_message(&self, key: &[u8], now: Instant, out: &mut [u8]) -> usize {
        let Some(question) = key.get(..key.len().saturating_sub(1)) else {
            return 0;
        };
        let cd = key
            .last()
            .is_some_and(|f| f & super::KEY_CHECKING_DISABLED != 0);
        let client = ClientQuery {
            id: 0,
            flags: Header::RD | if cd { Header::CD } else { 0 },
            question,
            opt: None,
        };
        if question.len() != usize::from(self.question_len) {
            return 0;
        }
        self.write_response(out, &client, now, false, out.len())
    }

    /// Time left before it stops being fresh (zero once expired).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at().saturating_duration_since(now)
    }
}

/// Accessors and the bookkeeping the cache does on reads.
impl Entry {
    /// What kind of answer this is.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// Where it came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The response code (extended bits included).
    pub fn rcode(&self) -> u16 {
        self.rcode
    }

    /// Lifetime in seconds from when it was stored.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// When it stops being fresh.
    pub fn expires_at(&self) -> Instant {
        add_secs(self.stored_at, self.ttl)
    }

    /// How many times it was read from the cache, as far as the store has applied the hits.
    ///
    /// Hits are logged per thread and applied in batches (see [`Cache::flush_hits`]), so this
    /// lags the reads: up to 63 hits per thread wait in that thread's log and up to 1024 more
    /// in the store's inbox until a log fills, the inbox fills or a thread flushes; hits may
    /// also be dropped when the store is busy.
    ///
    /// [`Cache::flush_hits`]: super::Cache::flush_hits
    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    /// At least [`HOT_HITS`] applied hits (see [`Entry::hits`]): it gets an extra pass before
    /// eviction.
    pub fn is_hot(&self) -> bool {
        self.hits() >= HOT_HITS
    }

    /// Bytes it occupies: the struct, the records and the TTL offsets.
    pub fn size_bytes(&self) -> usize {
        size_of::<Entry>() + self.wire.len()
    }

    /// Restart its life at `now` for `ttl` seconds (done when it is inserted); a hit asks
    /// for a prefetch in the last `prefetch_window` percent of the TTL, never if 0 (which
    /// node refreshes a name the cluster shares: [`super::refresh`]).
    pub(crate) fn restart(&mut self, now: Instant, ttl: u32, prefetch_window: u8) {
        self.ttl = ttl;
        self.stored_at = now;
        *self.hits.get_mut() = 0;
        self.prefetch_window = prefetch_window;
        *self.prefetch_claimed.get_mut() = prefetch_window == 0;
    }

    /// How long it has been stored at `now` (zero if `now` is earlier).
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Where it stands at `now`, given how long past expiry it may be served stale.
    pub(crate) fn lifetime(&self, now: Instant, stale_window: u32) -> Lifetime {
        self.lifetime_at(self.age(now), stale_window)
    }

    /// Where it stands at age `age` (see [`Entry::age`]), given the stale window.
    pub(crate) fn lifetime_at(&self, age: Duration, stale_window: u32) -> Lifetime {
        let secs = age.as_secs();
        let ttl = u64::from(self.ttl);
        // Whole seconds decide: age < ttl s exactly when secs < ttl.
        if secs < ttl {
            Lifetime::Fresh
        } else if secs < ttl + u64::from(stale_window) {
            Lifetime::Stale
        } else {
            Lifetime::Dead
        }
    }

    /// True exactly once, for the first caller at a fresh age (see [`Entry::age`]) in the last
    /// `prefetch_window` percent of the TTL (see [`Entry::restart`]).
    pub(crate) fn claim_prefetch(&self, age: Duration) -> bool {
        let remaining = Duration::from_secs(u64::from(self.ttl)).saturating_sub(age);
        let in_window = remaining.saturating_mul(100)
            <= Duration::from_secs(u64::from(self.ttl)) * u32::from(self.prefetch_window);
        // Load first: a failed compare-exchange still takes the line exclusive, and every hit
        // in the window after the first would do one.
        in_window
            && !self.prefetch_claimed.load(Ordering::Relaxed)
            && self
                .prefetch_claimed
                .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Weighted for Entry {
    /// See [`Entry::size_bytes`].
    fn size_bytes(&self) -> usize {
        Entry::size_bytes(self)
    }

    /// Record the hit count the store applied (see [`Entry::hits`]).
    fn set_hits(&self, hits: u32) {
        self.hits.store(hits, Ordering::Relaxed);
    }

    /// The record bytes: a hit copies them into the answer right after reading the entry.
    fn prefetch_addr(&self) -> Option<usize> {
        Some(self.wire.as_ptr() as usize)
    }
}

/// The record area of an upstream response rebuilt after its question.
struct Rebuilt {
    /// The record bytes, laid out to follow a question of the same length at offset 12, then
    /// every TTL field's offset from the start of the records (native-endian `u16`s).
    wire: Box<[u8]>,
    /// Length of the record bytes at the start of `wire`.
    records_len: u16,
    /// Answer, authority and additional counts.
    counts: [u16; 3],
}

/// Rebuild every record of `resp` but OPT into `scratch` after the question `name`/`qtype`/
/// `qclass`, with TTLs mapped by `ttl_of`, and copy out the record area.
fn rebuild_records(
    resp: &Message<'_>,
    scratch: &mut [u8],
    name: &[u8],
    qtype: u16,
    qclass: u16,
    ttl_of: impl Fn(u32) -> u32,
) -> Result<Rebuilt, EntryError> {
    let mut writer = MessageWriter::new(scratch).map_err(EntryError::Rebuild)?;
    writer
        .question(name, qtype, qclass)
        .map_err(EntryError::Rebuild)?;
    let start = writer.position();
    let mut ttl_offsets: Vec<u16> = Vec::new();
    let mut counts = [0u16; 3];
    for rec in resp.records() {
        let rec = rec?;
        if rec.rtype == rtype::OPT {
            continue;
        }
        let ttl = ttl_of(rec.ttl);
        let ttl_at = writer
            .copy_record(resp, &rec, ttl)
            .map_err(EntryError::Rebuild)?;
        let offset = ttl_at
            .checked_sub(start)
            .and_then(|o| u16::try_from(o).ok())
            .ok_or(EntryError::Rebuild(WireError::NoSpace))?;
        ttl_offsets.push(offset);
        let count = match rec.section {
            Section::Answer => &mut counts[0],
            Section::Authority => &mut counts[1],
            Section::Additional => &mut counts[2],
        };
        *count = count.saturating_add(1);
    }
    let end = writer.finish();
    let records = scratch
        .get(start..end)
        .ok_or(EntryError::Rebuild(WireError::NoSpace))?;
    let records_len =
        u16::try_from(records.len()).map_err(|_| EntryError::Rebuild(WireError::NoSpace))?;
    let mut wire = Vec::with_capacity(records.len() + ttl_offsets.len() * TTL_OFFSET_LEN);
    wire.extend_from_slice(records);
    for offset in ttl_offsets {
        wire.extend_from_slice(&offset.to_ne_bytes());
    }
    Ok(Rebuilt {
        wire: wire.into_boxed_slice(),
        records_len,
        counts,
    })
}

/// The MINIMUM field of SOA RDATA (its last four bytes), if the RDATA is long enough to hold
/// two names and the five fixed fields.
fn soa_minimum(rdata: &[u8]) -> Option<u32> {
    if rdata.len() < SOA_FIXED_LEN + 2 {
        return None;
    }
    let tail = rdata.get(rdata.len() - 4..)?;
    let bytes: [u8; 4] = tail.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// `now + secs`, saturating far in the future instead of overflowing.
fn add_secs(now: Instant, secs: u32) -> Instant {
    let later = now.checked_add(Duration::from_secs(u64::from(secs)));
    later.unwrap_or(now)
}

/// Copy `bytes` into `out` at `*at` and advance `*at` (callers checked the length first; an
/// out-of-range copy is skipped rather than panicking).
fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(*at..*at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    *at += bytes.len();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{
        Decoded, Reply, a, additional, answer, authority, client, decode, question, rdata_name,
        response, soa, wire_name,
    };
    use heimdall_wire::flags::RD;

    /// Parse `bytes` and build an entry under `policy` at `now`.
    fn build(bytes: &[u8], policy: &CachePolicy, now: Instant) -> (Entry, Option<u32>) {
        let msg = Message::parse(bytes).expect("test response parses");
        Entry::from_response(&msg, policy, now, Source::Upstream).expect("entry builds")
    }

    /// Replay `entry` for a client asking `qname`/`qtype` at `now` (no OPT) and decode it.
    fn replay(
        entry: &Entry,
        qname: &str,
        qtype: u16,
        now: Instant,
        stale: bool,
    ) -> (Vec<u8>, Reply) {
        let q = question(qname, qtype);
        let mut out = [0u8; 4096];
        let len = entry.write_response(&mut out, &client(&q, None), now, stale, 4096);
        assert!(len > 0);
        (out[..len].to_vec(), decode(&out[..len]))
    }

    /// The TTLs of a decoded reply, in order.
    fn ttls(reply: &Reply) -> Vec<u32> {
        reply.records.iter().map(|r| r.ttl).collect()
    }

    /// A CNAME chain ending in an A record is positive, cached for its smallest TTL, and replays intact.
    #[test]
    fn cname_chain_positive() {
        let now = Instant::now();
        let bytes = response(
            RD | Header::RA,
            "www.example.com",
            rtype::A,
            &[
                answer(
                    "www.example.com",
                    rtype::CNAME,
                    300,
                    wire_name("web.example.com"),
                ),
                answer(
                    "web.example.com",
                    rtype::CNAME,
                    600,
                    wire_name("host.example.net"),
                ),
                answer("host.example.net", rtype::A, 120, a([192, 0, 2, 1])),
            ],
            None,
        );
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
        assert_eq!((entry.kind(), ttl), (EntryKind::Positive, Some(120)));
        let (raw, reply) = replay(&entry, "www.example.com", rtype::A, now, false);
        assert_eq!(reply.header.ancount, 3);
        assert_eq!(reply.header.rcode(), rcode::NOERROR);
        let names: Vec<&str> = reply.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["www.example.com.", "web.example.com.", "host.example.net."]
        );
        assert_eq!(ttls(&reply), [300, 600, 120]);
        assert_eq!(rdata_name(&raw, 0), "web.example.com.");
        assert_eq!(rdata_name(&raw, 1), "host.example.net.");
    }

    /// NXDOMAIN with an SOA is cached for min(SOA TTL, MINIMUM), capped by max_negative_ttl; the SOA never outlives it.
    #[test]
    fn nxdomain_with_soa() {
        let now = Instant::now();
        let bytes = response(
            rcode::NXDOMAIN.into(),
            "nope.example.com",
            rtype::A,
            &[authority("example.com", rtype::SOA, 3600, soa(300))],
            None,
        );
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
        assert_eq!((entry.kind(), ttl), (EntryKind::NxDomain, Some(300)));
        let (_, reply) = replay(&entry, "nope.example.com", rtype::A, now, false);
        assert_eq!(reply.header.rcode(), rcode::NXDOMAIN);
        assert_eq!((reply.header.ancount, reply.header.nscount), (0, 1));
        assert_eq!(ttls(&reply), [300]);

        let capped = CachePolicy {
            max_negative_ttl: 60,
            ..CachePolicy::default()
        };
        let (entry, ttl) = build(&bytes, &capped, now);
        assert_eq!(ttl, Some(60));
        assert_eq!(
            ttls(&replay(&entry, "nope.example.com", rtype::A, now, false).1),
            [60]
        );

        let low_soa_ttl = response(
            rcode::NXDOMAIN.into(),
            "nope.example.com",
            rtype::A,
            &[authority("example.com", rtype::SOA, 45, soa(300))],
            None,
        );
        assert_eq!(
            build(&low_soa_ttl, &CachePolicy::default(), now).1,
            Some(45)
        );
    }

    /// NOERROR with no answers (NODATA) and an SOA is a negative answer cached per RFC 2308.
    #[test]
    fn nodata_with_soa() {
        let bytes = response(
            0,
            "example.com",
            rtype::AAAA,
            &[authority("example.com", rtype::SOA, 900, soa(600))],
            None,
        );
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), Instant::now());
        assert_eq!((entry.kind(), ttl), (EntryKind::NoData, Some(600)));
    }

    /// A negative answer without an SOA is not cached by default, and cached for nosoa_negative_ttl when set.
    #[test]
    fn negative_without_soa() {
        let now = Instant::now();
        let bytes = response(
            rcode::NXDOMAIN.into(),
            "nope.example.com",
            rtype::A,
            &[],
            None,
        );
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
        assert_eq!((entry.kind(), ttl), (EntryKind::NxDomain, None));
        let (_, reply) = replay(&entry, "nope.example.com", rtype::A, now, false);
        assert_eq!(reply.header.rcode(), rcode::NXDOMAIN, "still usable once");
        let policy = CachePolicy {
            nosoa_negative_ttl: 30,
            ..CachePolicy::default()
        };
        assert_eq!(build(&bytes, &policy, now).1, Some(30));
    }

    /// SERVFAIL is cached for the short servfail_ttl only.
    #[test]
    fn servfail_short_ttl() {
        let bytes = response(rcode::SERVFAIL.into(), "example.com", rtype::A, &[], None);
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), Instant::now());
        assert_eq!((entry.kind(), ttl), (EntryKind::ServFail, Some(5)));
        let off = CachePolicy {
            servfail_ttl: 0,
            ..CachePolicy::default()
        };
        assert_eq!(build(&bytes, &off, Instant::now()).1, None);
    }

    /// REFUSED, FORMERR and NOTIMP are never cached but replay once with their rcode.
    #[test]
    fn refused_formerr_notimp_not_cached() {
        let now = Instant::now();
        for code in [rcode::REFUSED, rcode::FORMERR, rcode::NOTIMP] {
            let bytes = response(code.into(), "example.com", rtype::A, &[], None);
            let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
            assert_eq!((entry.kind(), ttl), (EntryKind::Other, None));
            let (_, reply) = replay(&entry, "example.com", rtype::A, now, false);
            assert_eq!(reply.header.rcode(), code);
        }
    }

    /// A truncated (TC=1) upstream answer is not cached, and its replay keeps TC.
    #[test]
    fn truncated_not_cached() {
        let now = Instant::now();
        let bytes = response(
            Header::TC,
            "example.com",
            rtype::A,
            &[answer("example.com", rtype::A, 300, a([192, 0, 2, 1]))],
            None,
        );
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
        assert_eq!((entry.kind(), ttl), (EntryKind::Positive, None));
        assert!(
            replay(&entry, "example.com", rtype::A, now, false)
                .1
                .header
                .tc()
        );
    }

    /// Served TTLs drop by the whole seconds elapsed (7 s of injected time) and saturate at zero.
    #[test]
    fn ttl_decrement_after_seven_seconds() {
        let now = Instant::now();
        let bytes = response(
            0,
            "example.com",
            rtype::A,
            &[
                answer("example.com", rtype::A, 300, a([192, 0, 2, 1])),
                authority("example.com", rtype::NS, 5, wire_name("ns1.example.com")),
                additional("ns1.example.com", rtype::A, 3000, a([192, 0, 2, 53])),
            ],
            None,
        );
        let (entry, _) = build(&bytes, &CachePolicy::default(), now);
        let later = now + Duration::from_millis(7_900);
        assert_eq!(
            ttls(&replay(&entry, "example.com", rtype::A, later, false).1),
            [293, 0, 2993]
        );
    }

    /// Record TTLs are clamped into [min_ttl, max_ttl] when stored.
    #[test]
    fn min_max_clamps() {
        let now = Instant::now();
        let policy = CachePolicy {
            min_ttl: 60,
            max_ttl: 3600,
            ..CachePolicy::default()
        };
        let bytes = response(
            0,
            "example.com",
            rtype::A,
            &[
                answer("example.com", rtype::A, 5, a([192, 0, 2, 1])),
                answer("example.com", rtype::A, 100_000, a([192, 0, 2, 2])),
            ],
            None,
        );
        let (entry, ttl) = build(&bytes, &policy, now);
        assert_eq!(ttl, Some(60));
        assert_eq!(
            ttls(&replay(&entry, "example.com", rtype::A, now, false).1),
            [60, 3600]
        );
        let high = response(
            0,
            "example.com",
            rtype::A,
            &[answer("example.com", rtype::A, 100_000, a([192, 0, 2, 2]))],
            None,
        );
        assert_eq!(build(&high, &policy, now).1, Some(3600));
    }

    /// The upstream OPT is never replayed; our OPT appears only if the client sent one, with our size and its DO.
    #[test]
    fn upstream_opt_dropped_ours_echoes_do() {
        let now = Instant::now();
        let bytes = response(
            Header::AD,
            "example.com",
            rtype::A,
            &[
                answer("example.com", rtype::A, 300, a([192, 0, 2, 1])),
                additional("ns1.example.com", rtype::A, 300, a([192, 0, 2, 53])),
            ],
            Some((4096, true)),
        );
        let (entry, _) = build(&bytes, &CachePolicy::default(), now);
        let (_, plain) = replay(&entry, "example.com", rtype::A, now, false);
        assert_eq!((plain.header.arcount, plain.opt), (1, None));
        assert!(plain.header.ad(), "AD carried from upstream");

        let q = question("example.com", rtype::A);
        let mut out = [0u8; 512];
        for dnssec_ok in [true, false] {
            let opt = ClientOpt {
                dnssec_ok,
                our_udp_size: 1232,
            };
            let len = entry.write_response(&mut out, &client(&q, Some(opt)), now, false, 512);
            let reply = decode(&out[..len]);
            assert_eq!(reply.header.arcount, 2);
            assert_eq!(reply.opt, Some((1232, dnssec_ok, 0)));
            assert_eq!(reply.records.len(), 2);
        }
    }

    /// When the answer exceeds max_len the reply is header + question (+ OPT) with TC=1 and no records.
    #[test]
    fn tc_fallback_when_too_large() {
        let now = Instant::now();
        let records: Vec<_> = (0..40u8)
            .map(|i| answer("example.com", rtype::A, 300, a([192, 0, 2, i])))
            .collect();
        let bytes = response(0, "example.com", rtype::A, &records, None);
        let (entry, ttl) = build(&bytes, &CachePolicy::default(), now);
        assert_eq!(ttl, Some(300));
        let q = question("Example.com", rtype::A);
        let opt = ClientOpt {
            dnssec_ok: false,
            our_udp_size: 1232,
        };
        let mut out = [0u8; 4096];
        let len = entry.write_response(&mut out, &client(&q, Some(opt)), now, false, 512);
        assert_eq!(len, 12 + q.len() + OPT_LEN);
        let reply = decode(&out[..len]);
        assert!(reply.header.tc());
        assert_eq!(
            (
                reply.header.ancount,
                reply.header.nscount,
                reply.header.arcount
            ),
            (0, 0, 1)
        );
        assert_eq!(reply.question, q);
        assert!(reply.opt.is_some());
        let full = entry.write_response(&mut out, &client(&q, Some(opt)), now, false, 4096);
        assert!(full > 512 && !decode(&out[..full]).header.tc());
        assert_eq!(
            entry.write_response(&mut out, &client(&q, None), now, false, 10),
            0
        );
    }

    /// The reply carries the client's question verbatim (case kept) and its id, RD and CD; pointers still resolve.
    #[test]
    fn client_question_case_preserved() {
        let now = Instant::now();
        let bytes = response(
            Header::AA,
            "www.example.com",
            rtype::CNAME,
            &[answer(
                "www.example.com",
                rtype::CNAME,
                300,
                wire_name("web.example.com"),
            )],
            None,
        );
        let (entry, _) = build(&bytes, &CachePolicy::default(), now);
        let q = question("WwW.ExAmPlE.CoM", rtype::CNAME);
        let mut query = client(&q, None);
        query.flags = Header::RD | Header::CD;
        let mut out = [0u8; 512];
        let len = entry.write_response(&mut out, &query, now, false, 512);
        let reply = decode(&out[..len]);
        assert_eq!(reply.question, q);
        assert_eq!(reply.header.id, 0xbeef);
        assert!(reply.header.qr() && reply.header.rd() && reply.header.cd() && reply.header.ra());
        assert!(reply.header.aa() && !reply.header.ad() && !reply.header.tc());
        assert_eq!(
            reply.records[0].name.to_ascii_lowercase(),
            "www.example.com."
        );
        assert_eq!(
            rdata_name(&out[..len], 0).to_ascii_lowercase(),
            "web.example.com."
        );
    }

    /// Served stale, every record carries stale_ttl.
    #[test]
    fn stale_replay_uses_stale_ttl() {
        let now = Instant::now();
        let bytes = response(
            0,
            "example.com",
            rtype::A,
            &[
                answer("example.com", rtype::A, 300, a([192, 0, 2, 1])),
                answer("example.com", rtype::A, 20, a([192, 0, 2, 2])),
            ],
            None,
        );
        let (entry, _) = build(&bytes, &CachePolicy::default(), now);
        let later = now + Duration::from_secs(10_000);
        assert_eq!(
            ttls(&replay(&entry, "example.com", rtype::A, later, true).1),
            [30, 30]
        );
        assert_eq!(
            ttls(&replay(&entry, "example.com", rtype::A, later, false).1),
            [0, 0]
        );
    }

    /// A client question of another length than the stored one gets SERVFAIL, not corrupt records.
    #[test]
    fn mismatched_question_gets_servfail() {
        let now = Instant::now();
        let bytes = response(
            0,
            "example.com",
            rtype::A,
            &[answer("example.com", rtype::A, 300, a([192, 0, 2, 1]))],
            None,
        );
        let (entry, _) = build(&bytes, &CachePolicy::default(), now);
        let (_, reply) = replay(&entry, "other.example.com", rtype::A, now, false);
        assert_eq!(reply.header.rcode(), rcode::SERVFAIL);
        assert_eq!(reply.records, Vec::<Decoded>::new());
    }

    /// The entry is one 64-byte cache line's worth (on 64-bit Linux, where `Instant` is 16 bytes).
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn entry_is_64_bytes() {
        assert_eq!(size_of::<Entry>(), 64);
    }

    /// Responses without a question or with malformed records are errors, not entries.
    #[test]
    fn unusable_responses_are_errors() {
        let policy = CachePolicy::default();
        let now = Instant::now();
        let mut no_question = vec![0u8; 12];
        no_question[2] = 0x80;
        let msg = Message::parse(&no_question).expect("header-only message parses");
        let err = Entry::from_response(&msg, &policy, now, Source::Upstream).err();
        assert_eq!(err, Some(EntryError::NoQuestion));

        let mut bytes = response(
            0,
            "example.com",
            rtype::A,
            &[answer("example.com", rtype::A, 300, a([192, 0, 2, 1]))],
            None,
        );
        bytes.truncate(bytes.len() - 2);
        if let Ok(msg) = Message::parse(&bytes) {
            let err = Entry::from_response(&msg, &policy, now, Source::Upstream).err();
            assert!(matches!(err, Some(EntryError::Malformed(_))), "{err:?}");
        }
    }
}
