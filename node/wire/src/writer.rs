//! Response writer: appends questions and records to a caller-provided buffer with name
//! compression, never allocating, and rolls back any call that does not fit.

use crate::error::{Result, WireError};
use crate::header::{HEADER_LEN, Header, rtype};
use crate::message::{Message, Record, Section};
use crate::name::{Labels, Name, labels_eq};
use crate::rdata;

/// Number of name suffixes remembered for compression.
pub const COMPRESSION_SLOTS: usize = 64;
/// Highest offset a compression pointer can reach (14 bits).
const MAX_POINTER_TARGET: usize = 0x3fff;

/// A name suffix already in the buffer that later names may point to.
#[derive(Clone, Copy, Debug, Default)]
struct Suffix {
    /// Offset of the suffix's first length byte.
    offset: u16,
    /// Its uncompressed length (root included), for a cheap mismatch test.
    wire_len: u8,
}

/// The writer state saved before a call, restored if the call fails.
#[derive(Clone, Copy, Debug)]
struct Checkpoint {
    /// Write position.
    pos: usize,
    /// Section counts.
    counts: [u16; 4],
    /// Section stage.
    stage: usize,
    /// Used compression slots (slots are only ever appended).
    suffixes: usize,
}

/// Writes a DNS message into a caller-provided `&mut [u8]`; never allocates.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    /// The output buffer; the first 12 bytes are reserved for the header.
    buf: &'b mut [u8],
    /// Offset of the next byte to write.
    pos: usize,
    /// Message id written by `finish`.
    id: u16,
    /// Flags word written by `finish`.
    flags: u16,
    /// Question, answer, authority and additional counts.
    counts: [u16; 4],
    /// Index into `counts` of the latest section written, to keep sections in order.
    stage: usize,
    /// Previously written name suffixes (fixed size, on the stack).
    suffix_table: [Suffix; COMPRESSION_SLOTS],
    /// Number of used entries of `suffix_table`.
    suffixes: usize,
}

/// Index into the writer's counts for a record section.
fn section_index(section: Section) -> usize {
    match section {
        Section::Answer => 1,
        Section::Authority => 2,
        Section::Additional => 3,
    }
}

impl<'b> MessageWriter<'b> {
    /// Start a message in `buf`; `NoSpace` if it cannot hold a header. The header is reserved
    /// and written by [`finish`](Self::finish).
    pub fn new(buf: &'b mut [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::NoSpace);
        }
        Ok(MessageWriter {
            buf,
            pos: HEADER_LEN,
            id: 0,
            flags: 0,
            counts: [0; 4],
            stage: 0,
            suffix_table: [Suffix::default(); COMPRESSION_SLOTS],
            suffixes: 0,
        })
    }

    /// Set the id and flags word; the counts are maintained by the writer.
    pub fn set_header(&mut self, id: u16, flags: u16) {
        self.id = id;
        self.flags = flags;
    }

    /// The header as `finish` would write it now.
    pub fn header(&self) -> Header {
        let [qdcount, ancount, nscount, arcount] = self.counts;
        Header {
            id: self.id,
            flags: self.flags,
            qdcount,
            ancount,
            nscount,
            arcount,
        }
    }

    /// Append a question; `name_wire` is an uncompressed wire name. Questions must come before
    /// any record (`BadOrder`).
    pub fn question(&mut self, name_wire: &[u8], qtype: u16, qclass: u16) -> Result<()> {
        let name = Name::from_wire(name_wire)?;
        self.transaction(|w| {
            if w.stage != 0 {
                return Err(WireError::BadOrder);
            }
            w.write_name(name, true)?;
            w.put_u16(qtype)?;
            w.put_u16(qclass)?;
            w.bump(0)
        })
    }

    /// Append a record; `name_wire` uncompressed. rdata given as uncompressed bytes; for the RFC 1035
    /// types whose rdata holds names (NS, CNAME, PTR, MX, SOA, MINFO, MB, MG, MR) those names are compressed.
    /// Returns the absolute offset of the TTL field. Records must be appended in section order.
    pub fn record(
        &mut self,
        section: Section,
        name_wire: &[u8],
        rtype: u16,
        rclass: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<usize> {
        let owner = Name::from_wire(name_wire)?;
        let rdlength = u16::try_from(rdata.len()).map_err(|_| WireError::NoSpace)?;
        self.transaction(|w| {
            let ttl_offset = w.record_head(section, owner, rtype, rclass, ttl)?;
            let compressed = rdata::layout(rtype).filter(|l| l.compress && !rdata.is_empty());
            match compressed {
                Some(layout) => {
                    let mut pos = 0;
                    for &field in layout.fields {
                        pos = match rdata::field_len(rdata, pos, rdata.len(), field)? {
                            Some(len) => {
                                w.put(rdata.get(pos..pos + len).ok_or(WireError::Truncated)?)?;
                                pos + len
                            }
                            None => {
                                let (name, next) = Name::parse(rdata, pos)?;
                                // The caller promises uncompressed names: a pointer here would
                                // resolve against the rdata, not this message.
                                if next - pos != name.wire_len() {
                                    return Err(WireError::BadPointer);
                                }
                                w.write_name(name, true)?;
                                next
                            }
                        };
                    }
                    if pos != rdata.len() {
                        return Err(WireError::TrailingBytes);
                    }
                    w.finish_rdata(ttl_offset, None)?;
                }
                None => {
                    w.put(rdata)?;
                    w.finish_rdata(ttl_offset, Some(rdlength))?;
                }
            }
            Ok(ttl_offset)
        })
    }

    /// Copy a record from a parsed message, decompressing its owner name and rdata names (for the
    /// types above; other types verbatim, RFC 3597) and re-compressing in this message. Returns TTL offset.
    ///
    /// Names in the rdata of the other name-bearing types that may arrive compressed (SRV, MD, MF,
    /// RP, AFSDB, RT, PX, NAPTR, SIG, NXT) are decompressed and written uncompressed.
    pub fn copy_record(&mut self, src: &Message<'_>, rec: &Record<'_>, ttl: u32) -> Result<usize> {
        self.transaction(|w| {
            let ttl_offset = w.record_head(rec.section, rec.name, rec.rtype, rec.rclass, ttl)?;
            match rdata::layout(rec.rtype).filter(|_| !rec.rdata.is_empty()) {
                Some(layout) => {
                    // Names may point anywhere before themselves, never past the rdata.
                    let scope = src.bytes().get(..rec.end).ok_or(WireError::Truncated)?;
                    let mut pos = rec.rdata_offset;
                    for &field in layout.fields {
                        pos = match rdata::field_len(scope, pos, rec.end, field)? {
                            Some(len) => {
                                w.put(scope.get(pos..pos + len).ok_or(WireError::Truncated)?)?;
                                pos + len
                            }
                            None => {
                                let (name, next) = Name::parse(scope, pos)?;
                                w.write_name(name, layout.compress)?;
                                next
                            }
                        };
                    }
                    if pos != rec.end {
                        return Err(WireError::TrailingBytes);
                    }
                    w.finish_rdata(ttl_offset, None)?;
                }
                None => {
                    w.put(rec.rdata)?;
                    let rdlength =
                        u16::try_from(rec.rdata.len()).map_err(|_| WireError::NoSpace)?;
                    w.finish_rdata(ttl_offset, Some(rdlength))?;
                }
            }
            Ok(ttl_offset)
        })
    }

    /// Append an OPT record to the additional section: root owner, type 41, class = UDP payload
    /// size, TTL = ext_rcode << 24 | version << 16 | flags, rdata = `options` (already encoded).
    pub fn opt(
        &mut self,
        udp_payload: u16,
        ext_rcode: u8,
        version: u8,
        flags: u16,
        options: &[u8],
    ) -> Result<()> {
        let rdlength = u16::try_from(options.len()).map_err(|_| WireError::NoSpace)?;
        let [flags_hi, flags_lo] = flags.to_be_bytes();
        let ttl = u32::from_be_bytes([ext_rcode, version, flags_hi, flags_lo]);
        self.transaction(|w| {
            w.enter(Section::Additional)?;
            w.put(&[0])?;
            w.put_u16(rtype::OPT)?;
            w.put_u16(udp_payload)?;
            w.put(&ttl.to_be_bytes())?;
            w.put_u16(rdlength)?;
            w.put(options)?;
            w.bump(section_index(Section::Additional))
        })
    }

    /// Offset of the next byte to be written (the message length so far).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes still free in the buffer.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Patch counts into the header and return the message length. On NoSpace from any call the
    /// writer is unchanged (the failed record is rolled back), so the caller can set TC and finish.
    pub fn finish(self) -> usize {
        // `new` guaranteed room for the header, so this cannot fail.
        let _ = self.header().write(self.buf);
        self.pos
    }

    /// Run `f`, restoring the position, counts and compression table if it fails.
    fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let saved = Checkpoint {
            pos: self.pos,
            counts: self.counts,
            stage: self.stage,
            suffixes: self.suffixes,
        };
        let result = f(self);
        if result.is_err() {
            self.pos = saved.pos;
            self.counts = saved.counts;
            self.stage = saved.stage;
            self.suffixes = saved.suffixes;
        }
        result
    }

    /// Move to `section`, refusing to go back to an earlier one.
    fn enter(&mut self, section: Section) -> Result<()> {
        let index = section_index(section);
        if index < self.stage {
            return Err(WireError::BadOrder);
        }
        self.stage = index;
        Ok(())
    }

    /// Add one to the count at `index` (question, answer, authority, additional).
    fn bump(&mut self, index: usize) -> Result<()> {
        let count = self.counts.get_mut(index).ok_or(WireError::BadOrder)?;
        *count = count.checked_add(1).ok_or(WireError::NoSpace)?;
        Ok(())
    }

    /// Write owner, type, class, TTL and a placeholder RDLENGTH; returns the TTL offset.
    fn record_head(
        &mut self,
        section: Section,
        owner: Name<'_>,
        rtype: u16,
        rclass: u16,
        ttl: u32,
    ) -> Result<usize> {
        self.enter(section)?;
        self.bump(section_index(section))?;
        self.write_name(owner, true)?;
        self.put_u16(rtype)?;
        self.put_u16(rclass)?;
        let ttl_offset = self.pos;
        self.put(&ttl.to_be_bytes())?;
        self.put_u16(0)?;
        Ok(ttl_offset)
    }

    /// Patch RDLENGTH (computed from the position when `rdlength` is None) after the rdata.
    fn finish_rdata(&mut self, ttl_offset: usize, rdlength: Option<u16>) -> Result<()> {
        let rdata_start = ttl_offset + 6;
        let rdlength = match rdlength {
            Some(len) => len,
            None => u16::try_from(self.pos - rdata_start).map_err(|_| WireError::NoSpace)?,
        };
        self.buf
            .get_mut(ttl_offset + 4..rdata_start)
            .ok_or(WireError::NoSpace)?
            .copy_from_slice(&rdlength.to_be_bytes());
        Ok(())
    }

    /// Append raw bytes.
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WireError::NoSpace)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Append a big-endian u16.
    fn put_u16(&mut self, value: u16) -> Result<()> {
        self.put(&value.to_be_bytes())
    }

    /// Find the longest suffix of `name` already in the buffer: returns how many leading labels
    /// must still be written and the offset to point to.
    fn find_suffix(&self, name: Name<'_>) -> Option<(usize, u16)> {
        let written = self.buf.get(..self.pos)?;
        let table = self.suffix_table.get(..self.suffixes)?;
        let mut suffix = name.labels();
        let mut suffix_len = name.wire_len();
        for skipped in 0.. {
            let rest = suffix.clone();
            let label = suffix.next()?;
            let hit = table.iter().find(|entry| {
                usize::from(entry.wire_len) == suffix_len
                    && labels_eq(
                        rest.clone(),
                        Labels::at(written, usize::from(entry.offset)),
                        false,
                    )
            });
            if let Some(entry) = hit {
                return Some((skipped, entry.offset));
            }
            suffix_len -= 1 + label.len();
        }
        None
    }

    /// Remember that a name suffix of `wire_len` bytes starts at the current position, if a
    /// pointer can reach it and a slot is free.
    fn remember(&mut self, wire_len: usize) {
        if self.pos > MAX_POINTER_TARGET {
            return;
        }
        if let (Some(slot), Ok(offset), Ok(wire_len)) = (
            self.suffix_table.get_mut(self.suffixes),
            u16::try_from(self.pos),
            u8::try_from(wire_len),
        ) {
            *slot = Suffix { offset, wire_len };
            self.suffixes += 1;
        }
    }

    /// Write `name`, pointing at an earlier identical suffix when `compress` (exact byte match,
    /// so case is preserved) and remembering the new suffixes for later names.
    fn write_name(&mut self, name: Name<'_>, compress: bool) -> Result<()> {
        let found = if compress {
            self.find_suffix(name)
        } else {
            None
        };
        let mut suffix_len = name.wire_len();
        for (index, label) in name.labels().enumerate() {
            if let Some((skipped, target)) = found
                && index == skipped
            {
                return self.put_u16(0xc000 | target);
            }
            if compress {
                self.remember(suffix_len);
            }
            let len = u8::try_from(label.len()).map_err(|_| WireError::LabelTooLong)?;
            self.put(&[len])?;
            self.put(label)?;
            suffix_len -= 1 + label.len();
        }
        self.put(&[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::class;

    /// Build the uncompressed wire form of a presentation name.
    fn wire(s: &str) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = crate::name::name_from_str(s, &mut buf).expect("valid name");
        buf[..n].to_vec()
    }

    /// A record that does not fit leaves position, counts and compression table untouched,
    /// so the caller can still finish a valid (truncated) message.
    #[test]
    fn no_space_rolls_back() {
        let mut buf = [0u8; 60];
        let mut w = MessageWriter::new(&mut buf).expect("header fits");
        let qname = wire("example.org");
        w.question(&qname, rtype::A, class::IN)
            .expect("question fits");
        let before = (w.position(), w.header(), w.suffixes);
        let big = [7u8; 64];
        let err = w.record(Section::Answer, &qname, rtype::TXT, class::IN, 1, &big);
        assert_eq!(err, Err(WireError::NoSpace));
        // A name-bearing record whose new labels would be remembered, then fail on space.
        let long = wire("a-long-label-that-will-not-fit.example.org");
        let err = w.record(Section::Answer, &long, rtype::CNAME, class::IN, 1, &long);
        assert_eq!(err, Err(WireError::NoSpace));
        assert_eq!((w.position(), w.header(), w.suffixes), before);
        w.record(
            Section::Answer,
            &qname,
            rtype::A,
            class::IN,
            5,
            &[1, 2, 3, 4],
        )
        .expect("small record fits");
        let len = w.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        assert_eq!(msg.header().ancount, 1);
        assert_eq!(msg.validate().map(|o| o.is_none()), Ok(true));
    }

    /// Sections must be appended in order; an out-of-order call fails and changes nothing.
    #[test]
    fn section_order_enforced() {
        let mut buf = [0u8; 512];
        let mut w = MessageWriter::new(&mut buf).expect("header fits");
        let name = wire("a.example");
        w.record(Section::Authority, &name, rtype::A, class::IN, 1, &[0; 4])
            .expect("authority");
        let pos = w.position();
        assert_eq!(
            w.record(Section::Answer, &name, rtype::A, class::IN, 1, &[0; 4]),
            Err(WireError::BadOrder)
        );
        assert_eq!(
            w.question(&name, rtype::A, class::IN),
            Err(WireError::BadOrder)
        );
        assert_eq!(w.position(), pos);
        w.opt(1232, 0, 0, 0x8000, &[]).expect("opt");
        assert_eq!(
            w.record(Section::Authority, &name, rtype::A, class::IN, 1, &[0; 4]),
            Err(WireError::BadOrder)
        );
        assert_eq!(w.header().nscount, 1);
        assert_eq!(w.header().arcount, 1);
    }

    /// Caller-supplied names must be uncompressed and whole; rdata names must not hold pointers.
    #[test]
    fn rejects_compressed_input() {
        let mut buf = [0u8; 512];
        let mut w = MessageWriter::new(&mut buf).expect("header fits");
        assert_eq!(
            w.question(&[0xc0, 0x0c], rtype::A, class::IN),
            Err(WireError::BadPointer)
        );
        assert_eq!(
            w.question(&[0xc0, 0x00], rtype::A, class::IN),
            Err(WireError::PointerLoop)
        );
        assert_eq!(
            w.question(&[1, b'a', 0, 0], rtype::A, class::IN),
            Err(WireError::TrailingBytes)
        );
        // SOA rdata whose rname points back at its mname (offset 0 of the rdata).
        let mut soa = vec![1, b'a', 0, 0xc0, 0x00];
        soa.extend_from_slice(&[0; 20]);
        let owner = wire("a");
        assert_eq!(
            w.record(Section::Answer, &owner, rtype::SOA, class::IN, 1, &soa),
            Err(WireError::BadPointer)
        );
        assert_eq!(w.position(), HEADER_LEN);
    }
}
