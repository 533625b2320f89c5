//! Zero-copy message view: header and questions parsed eagerly, record sections lazily, and the
//! EDNS OPT pseudo-record.

use crate::error::{Result, WireError};
use crate::header::{HEADER_LEN, Header, read_u16, read_u32, rtype};
use crate::name::Name;
use crate::rdata;

/// The record sections that follow the question section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// Records that answer the question.
    Answer,
    /// Records that point toward an authority (NS, SOA).
    Authority,
    /// Records that may help the client (glue, OPT).
    Additional,
}

/// One question: name, type, class and the span of its bytes in the message.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    /// The queried name.
    pub name: Name<'a>,
    /// The queried type.
    pub qtype: u16,
    /// The queried class.
    pub qclass: u16,
    /// Offset of the question's first byte.
    pub start: usize,
    /// Offset just past the question (after QCLASS).
    pub end: usize,
}

impl<'a> Question<'a> {
    /// Parse the question at `offset` of `msg`.
    pub fn parse(msg: &'a [u8], offset: usize) -> Result<Question<'a>> {
        let (name, next) = Name::parse(msg, offset)?;
        Ok(Question {
            name,
            qtype: read_u16(msg, next)?,
            qclass: read_u16(msg, next + 2)?,
            start: offset,
            end: next + 4,
        })
    }
}

/// One resource record with the offsets of its parts in the message.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The section the record was read from.
    pub section: Section,
    /// Owner name.
    pub name: Name<'a>,
    /// Record type.
    pub rtype: u16,
    /// Record class (the UDP payload size for OPT).
    pub rclass: u16,
    /// Time to live (extended rcode, version and flags for OPT).
    pub ttl: u32,
    /// Offset of the record's first byte (its owner name).
    pub start: usize,
    /// Offset of the 4-byte TTL field.
    pub ttl_offset: usize,
    /// Offset of the first rdata byte.
    pub rdata_offset: usize,
    /// The rdata bytes as they sit in the message (names inside may be compressed).
    pub rdata: &'a [u8],
    /// Offset just past the rdata.
    pub end: usize,
}

impl<'a> Record<'a> {
    /// Parse the record at `offset`; the rdata of types with embedded names is validated too.
    pub fn parse(msg: &'a [u8], offset: usize, section: Section) -> Result<Record<'a>> {
        let (name, next) = Name::parse(msg, offset)?;
        let rtype = read_u16(msg, next)?;
        let rclass = read_u16(msg, next + 2)?;
        let ttl = read_u32(msg, next + 4)?;
        let rdlength = usize::from(read_u16(msg, next + 8)?);
        let rdata_offset = next + 10;
        let end = rdata_offset + rdlength;
        let rdata = msg.get(rdata_offset..end).ok_or(WireError::Truncated)?;
        // An empty rdata is accepted for every type (RFC 2136 uses it).
        if let Some(layout) = rdata::layout(rtype).filter(|_| rdlength > 0) {
            rdata::validate(msg, rdata_offset, end, layout)?;
        }
        Ok(Record {
            section,
            name,
            rtype,
            rclass,
            ttl,
            start: offset,
            ttl_offset: next + 4,
            rdata_offset,
            rdata,
            end,
        })
    }

    /// Write the rdata with every embedded name decompressed (case preserved) into `out`;
    /// returns the length. `src` must be the message the record was read from. Types without
    /// embedded names are copied verbatim.
    pub fn write_rdata_uncompressed(&self, src: &Message<'_>, out: &mut [u8]) -> Result<usize> {
        let Some(layout) = rdata::layout(self.rtype).filter(|_| !self.rdata.is_empty()) else {
            let dst = out.get_mut(..self.rdata.len()).ok_or(WireError::NoSpace)?;
            dst.copy_from_slice(self.rdata);
            return Ok(self.rdata.len());
        };
        let scope = src.bytes().get(..self.end).ok_or(WireError::Truncated)?;
        let mut pos = self.rdata_offset;
        let mut written = 0;
        for &field in layout.fields {
            match rdata::field_len(scope, pos, self.end, field)? {
                Some(len) => {
                    let bytes = scope.get(pos..pos + len).ok_or(WireError::Truncated)?;
                    out.get_mut(written..written + len)
                        .ok_or(WireError::NoSpace)?
                        .copy_from_slice(bytes);
                    pos += len;
                    written += len;
                }
                None => {
                    let (name, next) = Name::parse(scope, pos)?;
                    let dst = out.get_mut(written..).ok_or(WireError::NoSpace)?;
                    written += name.write_uncompressed(dst)?;
                    pos = next;
                }
            }
        }
        if pos != self.end {
            return Err(WireError::TrailingBytes);
        }
        Ok(written)
    }
}

/// The EDNS(0) OPT pseudo-record, decoded (RFC 6891).
#[derive(Clone, Copy, Debug)]
pub struct Opt<'a> {
    /// Requestor's UDP payload size (the record's class).
    pub udp_payload: u16,
    /// High 8 bits of the extended response code.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// EDNS flags; DO = 0x8000.
    pub flags: u16,
    /// The raw option bytes (the rdata).
    pub options: &'a [u8],
    /// Offset of the OPT record's first byte.
    pub start: usize,
    /// Offset just past the OPT record.
    pub end: usize,
}

impl<'a> Opt<'a> {
    /// The DNSSEC OK flag bit.
    pub const DO: u16 = 0x8000;

    /// True when the DNSSEC OK bit is set.
    pub fn dnssec_ok(&self) -> bool {
        self.flags & Self::DO != 0
    }

    /// The options as (code, value) pairs; yields one `Err` and stops on a truncated option.
    pub fn options(&self) -> EdnsOptions<'a> {
        EdnsOptions {
            rest: self.options,
            failed: false,
        }
    }
}

/// Iterator over the options of an OPT record.
#[derive(Clone, Debug)]
pub struct EdnsOptions<'a> {
    /// Option bytes not read yet.
    rest: &'a [u8],
    /// Set after an error so iteration stops.
    failed: bool,
}

impl<'a> Iterator for EdnsOptions<'a> {
    type Item = Result<(u16, &'a [u8])>;

    /// Return the next option, or one `Truncated` error if the bytes run out mid-option.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let parsed = read_u16(self.rest, 0).and_then(|code| {
            let len = usize::from(read_u16(self.rest, 2)?);
            let value = self.rest.get(4..4 + len).ok_or(WireError::Truncated)?;
            Ok((code, value, 4 + len))
        });
        match parsed {
            Ok((code, value, used)) => {
                self.rest = self.rest.get(used..).unwrap_or_default();
                Some(Ok((code, value)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decode an OPT record from a Record known to have rtype == OPT.
///
/// `BadOpt` if the type is not OPT or the options are malformed. Placement rules (additional
/// section, root owner, only one) are checked by [`Message::validate`].
pub fn opt_from_record<'a>(r: &Record<'a>) -> Result<Opt<'a>> {
    if r.rtype != rtype::OPT {
        return Err(WireError::BadOpt);
    }
    let [ext_rcode, version, flags_hi, flags_lo] = r.ttl.to_be_bytes();
    let opt = Opt {
        udp_payload: r.rclass,
        ext_rcode,
        version,
        flags: u16::from_be_bytes([flags_hi, flags_lo]),
        options: r.rdata,
        start: r.start,
        end: r.end,
    };
    if opt.options().any(|o| o.is_err()) {
        return Err(WireError::BadOpt);
    }
    Ok(opt)
}

/// Zero-copy view: header + questions parsed eagerly, record sections lazily.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The whole message.
    bytes: &'a [u8],
    /// The parsed header.
    header: Header,
    /// The first question, kept so `question()` costs nothing.
    first_question: Option<Question<'a>>,
    /// Offset of the first record (just past the question section).
    records_offset: usize,
}

impl<'a> Message<'a> {
    /// Parse the header and validate all `qdcount` questions; records are left for later.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>> {
        let header = Header::parse(bytes)?;
        let mut pos = HEADER_LEN;
        let mut first_question = None;
        for _ in 0..header.qdcount {
            let question = Question::parse(bytes, pos)?;
            first_question.get_or_insert(question);
            pos = question.end;
        }
        Ok(Message {
            bytes,
            header,
            first_question,
            records_offset: pos,
        })
    }

    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The questions (already validated by `parse`).
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            msg: self.bytes,
            pos: HEADER_LEN,
            remaining: self.header.qdcount,
        }
    }

    /// The first question, if any.
    pub fn question(&self) -> Option<Question<'a>> {
        self.first_question
    }

    /// Offset of the first record, just past the question section.
    pub fn records_offset(&self) -> usize {
        self.records_offset
    }

    /// All answer, authority and additional records in order, each tagged with its section;
    /// stops after the first `Err`.
    pub fn records(&self) -> Records<'a> {
        Records {
            msg: self.bytes,
            pos: self.records_offset,
            answers: self.header.ancount,
            authorities: self.header.nscount,
            additionals: self.header.arcount,
            failed: false,
        }
    }

    /// Walk every record once: Err on any malformed record or (TrailingBytes) bytes after the last record;
    /// returns the OPT (BadOpt if >1 OPT, OPT not in additional, or OPT owner not root).
    pub fn validate(&self) -> Result<Option<Opt<'a>>> {
        let mut records = self.records();
        let mut opt = None;
        for record in records.by_ref() {
            let record = record?;
            if record.rtype != rtype::OPT {
                continue;
            }
            if record.section != Section::Additional || opt.is_some() || !record.name.is_root() {
                return Err(WireError::BadOpt);
            }
            opt = Some(opt_from_record(&record)?);
        }
        if records.position() != self.bytes.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(opt)
    }
}

/// Iterator over the questions of a parsed message.
#[derive(Clone, Debug)]
pub struct Questions<'a> {
    /// The whole message.
    msg: &'a [u8],
    /// Offset of the next question.
    pos: usize,
    /// Questions not yet returned.
    remaining: u16,
}

impl<'a> Iterator for Questions<'a> {
    type Item = Question<'a>;

    /// Return the next question (they were validated by `Message::parse`).
    fn next(&mut self) -> Option<Question<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        match Question::parse(self.msg, self.pos) {
            Ok(question) => {
                self.pos = question.end;
                Some(question)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    /// Exact when the questions were validated, which `Message::parse` guarantees.
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining)))
    }
}

/// Iterator over the records of all three sections, in message order.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    /// The whole message.
    msg: &'a [u8],
    /// Offset of the next record (or just past the last one read).
    pos: usize,
    /// Answer records not yet read.
    answers: u16,
    /// Authority records not yet read.
    authorities: u16,
    /// Additional records not yet read.
    additionals: u16,
    /// Set after an error so iteration stops.
    failed: bool,
}

impl Records<'_> {
    /// Offset just past the last record read so far (the record section start before any).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>>;

    /// Parse the next record; after an error, return None.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let section = if let Some(n) = self.answers.checked_sub(1) {
            self.answers = n;
            Section::Answer
        } else if let Some(n) = self.authorities.checked_sub(1) {
            self.authorities = n;
            Section::Authority
        } else if let Some(n) = self.additionals.checked_sub(1) {
            self.additionals = n;
            Section::Additional
        } else {
            return None;
        };
        match Record::parse(self.msg, self.pos, section) {
            Ok(record) => {
                self.pos = record.end;
                Some(Ok(record))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
