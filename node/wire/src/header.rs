//! The fixed 12-byte DNS header, flag bits and the numeric registries (rcode, rtype, class).

use crate::error::{Result, WireError};

/// Length of the DNS header in bytes.
pub const HEADER_LEN: usize = 12;

/// Response codes (RFC 1035 section 4.1.1, RFC 6891 for BADVERS).
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The server could not interpret the query.
    pub const FORMERR: u8 = 1;
    /// The server failed to process the query.
    pub const SERVFAIL: u8 = 2;
    /// The queried name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// The server does not implement the requested kind of query.
    pub const NOTIMP: u8 = 4;
    /// The server refuses to answer for policy reasons.
    pub const REFUSED: u8 = 5;
    /// Unsupported EDNS version (extended rcode, needs an OPT record to carry the high bits).
    pub const BADVERS: u16 = 16;
}

/// Opcodes (RFC 1035, RFC 1996, RFC 2136).
pub mod opcode {
    /// A standard query.
    pub const QUERY: u8 = 0;
    /// An inverse query (obsolete).
    pub const IQUERY: u8 = 1;
    /// A server status request.
    pub const STATUS: u8 = 2;
    /// A zone change notification.
    pub const NOTIFY: u8 = 4;
    /// A dynamic update.
    pub const UPDATE: u8 = 5;
}

/// Resource record types (IANA DNS parameters registry).
pub mod rtype {
    /// IPv4 host address.
    pub const A: u16 = 1;
    /// Authoritative name server.
    pub const NS: u16 = 2;
    /// Mail destination (obsolete).
    pub const MD: u16 = 3;
    /// Mail forwarder (obsolete).
    pub const MF: u16 = 4;
    /// Canonical name of an alias.
    pub const CNAME: u16 = 5;
    /// Start of a zone of authority.
    pub const SOA: u16 = 6;
    /// Mailbox domain name.
    pub const MB: u16 = 7;
    /// Mail group member.
    pub const MG: u16 = 8;
    /// Mail rename domain name.
    pub const MR: u16 = 9;
    /// Null record.
    pub const NULL: u16 = 10;
    /// Well known service description.
    pub const WKS: u16 = 11;
    /// Domain name pointer.
    pub const PTR: u16 = 12;
    /// Host information.
    pub const HINFO: u16 = 13;
    /// Mailbox or mail list information.
    pub const MINFO: u16 = 14;
    /// Mail exchange.
    pub const MX: u16 = 15;
    /// Text strings.
    pub const TXT: u16 = 16;
    /// Responsible person.
    pub const RP: u16 = 17;
    /// AFS database location.
    pub const AFSDB: u16 = 18;
    /// Route through.
    pub const RT: u16 = 21;
    /// Signature (obsolete, SIG(0) only).
    pub const SIG: u16 = 24;
    /// Public key (obsolete).
    pub const KEY: u16 = 25;
    /// X.400 mail mapping.
    pub const PX: u16 = 26;
    /// IPv6 host address.
    pub const AAAA: u16 = 28;
    /// Next domain (obsolete).
    pub const NXT: u16 = 30;
    /// Service locator.
    pub const SRV: u16 = 33;
    /// Naming authority pointer.
    pub const NAPTR: u16 = 35;
    /// Delegation name.
    pub const DNAME: u16 = 39;
    /// EDNS(0) option pseudo-record.
    pub const OPT: u16 = 41;
    /// Delegation signer.
    pub const DS: u16 = 43;
    /// DNSSEC signature.
    pub const RRSIG: u16 = 46;
    /// Next secure record.
    pub const NSEC: u16 = 47;
    /// DNS public key.
    pub const DNSKEY: u16 = 48;
    /// Hashed next secure record.
    pub const NSEC3: u16 = 50;
    /// NSEC3 parameters.
    pub const NSEC3PARAM: u16 = 51;
    /// Service binding.
    pub const SVCB: u16 = 64;
    /// HTTPS service binding.
    pub const HTTPS: u16 = 65;
    /// Transaction signature.
    pub const TSIG: u16 = 250;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Full zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type (query only).
    pub const ANY: u16 = 255;
    /// Certification authority authorization.
    pub const CAA: u16 = 257;
}

/// Record classes.
pub mod class {
    /// The Internet.
    pub const IN: u16 = 1;
    /// Chaos.
    pub const CH: u16 = 3;
    /// Hesiod.
    pub const HS: u16 = 4;
    /// None (dynamic update).
    pub const NONE: u16 = 254;
    /// Any class (query only).
    pub const ANY: u16 = 255;
}

/// Header flag bits, as they sit in the 16-bit flags word.
pub mod flags {
    /// Message is a response.
    pub const QR: u16 = 0x8000;
    /// Mask of the 4-bit opcode.
    pub const OPCODE_MASK: u16 = 0x7800;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Reserved, must be zero.
    pub const Z: u16 = 0x0040;
    /// Authentic data (DNSSEC).
    pub const AD: u16 = 0x0020;
    /// Checking disabled (DNSSEC).
    pub const CD: u16 = 0x0010;
    /// Mask of the low 4 bits of the response code.
    pub const RCODE_MASK: u16 = 0x000f;
}

/// The DNS message header: id, flags word and the four section counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// Transaction id chosen by the querier.
    pub id: u16,
    /// Flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD and the low rcode bits.
    pub flags: u16,
    /// Number of questions.
    pub qdcount: u16,
    /// Number of answer records.
    pub ancount: u16,
    /// Number of authority records.
    pub nscount: u16,
    /// Number of additional records (OPT included).
    pub arcount: u16,
}

/// Read the big-endian u16 at `offset`, or `Truncated`.
pub(crate) fn read_u16(msg: &[u8], offset: usize) -> Result<u16> {
    match msg.get(offset..offset.checked_add(2).ok_or(WireError::Truncated)?) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Truncated),
    }
}

/// Read the big-endian u32 at `offset`, or `Truncated`.
pub(crate) fn read_u32(msg: &[u8], offset: usize) -> Result<u32> {
    match msg.get(offset..offset.checked_add(4).ok_or(WireError::Truncated)?) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(WireError::Truncated),
    }
}

impl Header {
    /// Response flag (QR).
    pub const QR: u16 = flags::QR;
    /// Authoritative answer flag (AA).
    pub const AA: u16 = flags::AA;
    /// Truncation flag (TC).
    pub const TC: u16 = flags::TC;
    /// Recursion desired flag (RD).
    pub const RD: u16 = flags::RD;
    /// Recursion available flag (RA).
    pub const RA: u16 = flags::RA;
    /// Authentic data flag (AD).
    pub const AD: u16 = flags::AD;
    /// Checking disabled flag (CD).
    pub const CD: u16 = flags::CD;

    /// Parse the header at the start of `msg`; `Truncated` if it is shorter than 12 bytes.
    pub fn parse(msg: &[u8]) -> Result<Header> {
        Ok(Header {
            id: read_u16(msg, 0)?,
            flags: read_u16(msg, 2)?,
            qdcount: read_u16(msg, 4)?,
            ancount: read_u16(msg, 6)?,
            nscount: read_u16(msg, 8)?,
            arcount: read_u16(msg, 10)?,
        })
    }

    /// Write the header into the first 12 bytes of `out`; `NoSpace` if `out` is shorter.
    pub fn write(&self, out: &mut [u8]) -> Result<()> {
        let dst = out.get_mut(..HEADER_LEN).ok_or(WireError::NoSpace)?;
        let fields = [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ];
        for (pair, field) in dst.chunks_exact_mut(2).zip(fields) {
            pair.copy_from_slice(&field.to_be_bytes());
        }
        Ok(())
    }

    /// True for a response (QR set).
    pub fn qr(&self) -> bool {
        self.flags & flags::QR != 0
    }

    /// The 4-bit opcode.
    pub fn opcode(&self) -> u8 {
        // The mask keeps four bits, so the value fits a u8.
        ((self.flags & flags::OPCODE_MASK) >> 11) as u8
    }

    /// True when the authoritative answer flag is set.
    pub fn aa(&self) -> bool {
        self.flags & flags::AA != 0
    }

    /// True when the truncation flag is set.
    pub fn tc(&self) -> bool {
        self.flags & flags::TC != 0
    }

    /// True when the recursion desired flag is set.
    pub fn rd(&self) -> bool {
        self.flags & flags::RD != 0
    }

    /// True when the recursion available flag is set.
    pub fn ra(&self) -> bool {
        self.flags & flags::RA != 0
    }

    /// True when the authentic data flag is set.
    pub fn ad(&self) -> bool {
        self.flags & flags::AD != 0
    }

    /// True when the checking disabled flag is set.
    pub fn cd(&self) -> bool {
        self.flags & flags::CD != 0
    }

    /// The low 4 bits of the response code (the high bits live in the OPT record).
    pub fn rcode(&self) -> u8 {
        // The mask keeps four bits, so the value fits a u8.
        (self.flags & flags::RCODE_MASK) as u8
    }

    /// Replace the low 4 rcode bits with the low 4 bits of `rcode`.
    pub fn set_rcode(&mut self, rcode: u8) {
        self.flags = (self.flags & !flags::RCODE_MASK) | (u16::from(rcode) & flags::RCODE_MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header round-trips through write and parse, and the flag accessors read the right bits.
    #[test]
    fn header_round_trip_and_flags() {
        let h = Header {
            id: 0xbeef,
            flags: flags::QR | (2 << 11) | flags::AA | flags::RD | flags::CD | 3,
            qdcount: 1,
            ancount: 2,
            nscount: 3,
            arcount: 4,
        };
        let mut buf = [0u8; 12];
        assert_eq!(h.write(&mut buf), Ok(()));
        assert_eq!(buf, [0xbe, 0xef, 0x95, 0x13, 0, 1, 0, 2, 0, 3, 0, 4]);
        assert_eq!(Header::parse(&buf), Ok(h));
        assert!(h.qr() && h.aa() && h.rd() && h.cd());
        assert!(!h.tc() && !h.ra() && !h.ad());
        assert_eq!(h.opcode(), 2);
        assert_eq!(h.rcode(), 3);
        assert_eq!(Header::parse(&buf[..11]), Err(WireError::Truncated));
        assert_eq!(h.write(&mut [0u8; 11]), Err(WireError::NoSpace));
    }
}
