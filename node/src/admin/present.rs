//! Presentation forms for the control plane: type and rcode mnemonics, names from wire form,
//! and records in zone-file syntax (RFC 1035 section 5; RFC 3597 `\#` for unknown types).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use heimdall_wire::{Message, Name, Record, class, rtype};

/// Type mnemonics the control plane knows by name; others are written `TYPEnnn`.
const TYPES: &[(&str, u16)] = &[
    ("A", rtype::A),
    ("NS", rtype::NS),
    ("CNAME", rtype::CNAME),
    ("SOA", rtype::SOA),
    ("PTR", rtype::PTR),
    ("HINFO", rtype::HINFO),
    ("MX", rtype::MX),
    ("TXT", rtype::TXT),
    ("AAAA", rtype::AAAA),
    ("SRV", rtype::SRV),
    ("NAPTR", rtype::NAPTR),
    ("DNAME", rtype::DNAME),
    ("DS", 43),
    ("RRSIG", rtype::RRSIG),
    ("NSEC", rtype::NSEC),
    ("DNSKEY", rtype::DNSKEY),
    ("NSEC3", rtype::NSEC3),
    ("NSEC3PARAM", rtype::NSEC3PARAM),
    ("TLSA", 52),
    ("SVCB", rtype::SVCB),
    ("HTTPS", rtype::HTTPS),
    ("ANY", rtype::ANY),
    ("CAA", rtype::CAA),
];

/// Response code mnemonics (RFC 6895 section 2.3), by value.
const RCODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

/// The mnemonic of a type (`A`, `MX`, ... or `TYPE123`).
pub fn type_name(code: u16) -> String {
    TYPES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("TYPE{code}"), |(n, _)| (*n).to_owned())
}

/// The code of a type mnemonic or `TYPEnnn`, any case; `None` when it is neither.
pub fn type_code(text: &str) -> Option<u16> {
    let text = text.trim();
    if let Some((_, code)) = TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
        return Some(*code);
    }
    let digits = text.get(..4).filter(|p| p.eq_ignore_ascii_case("TYPE"))?;
    text[digits.len()..].parse().ok()
}

/// The mnemonic of a response code (extended codes above 15 included): `NOERROR`, ...,
/// `BADVERS`, or `RCODEn`.
pub fn rcode_name(code: u16) -> String {
    match code {
        16 => "BADVERS".to_owned(),
        c => RCODES
            .get(usize::from(c))
            .map_or_else(|| format!("RCODE{c}"), |n| (*n).to_owned()),
    }
}

/// A wire name (uncompressed) in presentation form with the trailing dot; `None` when the
/// bytes are not a name.
pub fn wire_name_text(wire: &[u8]) -> Option<String> {
    Name::from_wire(wire).ok().map(|n| n.to_string())
}

/// The class mnemonic (`IN`, `CH`, or `CLASSn`).
fn class_name(code: u16) -> String {
    match code {
        class::IN => "IN".to_owned(),
        3 => "CH".to_owned(),
        c => format!("CLASS{c}"),
    }
}

/// One record of `msg` as a zone-file line: `owner TTL CLASS TYPE RDATA`.
pub fn record_text(msg: &Message<'_>, record: &Record<'_>) -> String {
    format!(
        "{} {} {} {} {}",
        record.name,
        record.ttl,
        class_name(record.rclass),
        type_name(record.rtype),
        rdata_text(msg, record).unwrap_or_else(|| unknown_rdata(record.rdata))
    )
}

/// Every record of a message (OPT left out) in presentation form, in message order.
pub fn records_text(message: &[u8]) -> Vec<String> {
    let Ok(msg) = Message::parse(message) else {
        return Vec::new();
    };
    msg.records()
        .filter_map(Result::ok)
        .filter(|r| r.rtype != rtype::OPT)
        .map(|r| record_text(&msg, &r))
        .collect()
}

/// RFC 3597 form: `\# length hex`.
fn unknown_rdata(rdata: &[u8]) -> String {
    let mut out = format!("\\# {}", rdata.len());
    if !rdata.is_empty() {
        out.push(' ');
        for byte in rdata {
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
}

/// The rdata of the common types in their own syntax; `None` for other types or rdata
/// that does not have the type's shape.
fn rdata_text(msg: &Message<'_>, record: &Record<'_>) -> Option<String> {
    let bytes = msg.bytes();
    let rdata = record.rdata;
    let at = record.rdata_offset;
    let name_at = |offset: usize| Name::parse(bytes, offset).ok();
    let u16_at = |i: usize| Some(u16::from_be_bytes(rdata.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_be_bytes(rdata.get(i..i + 4)?.try_into().ok()?));
    Some(match record.rtype {
        rtype::A => Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?).to_string(),
        rtype::AAAA => Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?).to_string(),
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => name_at(at)?.0.to_string(),
        rtype::MX => format!("{} {}", u16_at(0)?, name_at(at + 2)?.0),
        rtype::SRV => format!(
            "{} {} {} {}",
            u16_at(0)?,
            u16_at(2)?,
            u16_at(4)?,
            name_at(at + 6)?.0
        ),
        rtype::SOA => {
            let (mname, next) = name_at(at)?;
            let (rname, next) = name_at(next)?;
            let fixed = next.checked_sub(at)?;
            format!(
                "{mname} {rname} {} {} {} {} {}",
                u32_at(fixed)?,
                u32_at(fixed + 4)?,
                u32_at(fixed + 8)?,
                u32_at(fixed + 12)?,
                u32_at(fixed + 16)?
            )
        }
        rtype::TXT => {
            let mut parts = Vec::new();
            let mut i = 0;
            while i < rdata.len() {
                let len = usize::from(rdata[i]);
                parts.push(quoted(rdata.get(i + 1..i + 1 + len)?));
                i += 1 + len;
            }
            parts.join(" ")
        }
        _ => return None,
    })
}

/// A character-string in double quotes, with `"` and `\` escaped and bytes outside
/// printable ASCII as `\DDD`.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Type mnemonics parse in any case, TYPEnnn both ways, unknown text is refused.
    #[test]
    fn type_names_round_trip() {
        assert_eq!(type_code("aaaa"), Some(rtype::AAAA));
        assert_eq!(type_code("TYPE999"), Some(999));
        assert_eq!(type_code("type1"), Some(1));
        assert_eq!(type_code("BOGUS"), None);
        assert_eq!(type_code("TYPE"), None);
        assert_eq!(type_name(rtype::MX), "MX");
        assert_eq!(type_name(999), "TYPE999");
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(16), "BADVERS");
        assert_eq!(rcode_name(12), "RCODE12");
    }

    /// Records of a hand-built message print as zone-file lines.
    #[test]
    fn records_in_presentation_form() {
        // Header: one question, three answers.
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
        let qname = b"\x03www\x07example\x00";
        m.extend_from_slice(qname);
        m.extend_from_slice(&[0, 1, 0, 1]);
        // www.example. 60 IN A 192.0.2.1 (owner compressed to offset 12)
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        // www.example. 60 IN MX 10 www.example.
        m.extend_from_slice(&[0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 10, 0xc0, 12]);
        // www.example. 60 IN TXT "a\"b"
        m.extend_from_slice(&[
            0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 3, b'a', b'"', b'b',
        ]);
        assert_eq!(
            records_text(&m),
            vec![
                "www.example. 60 IN A 192.0.2.1",
                "www.example. 60 IN MX 10 www.example.",
                "www.example. 60 IN TXT \"a\\\"b\"",
            ]
        );
        assert_eq!(unknown_rdata(&[1, 0xab]), "\\# 2 01ab");
        assert_eq!(wire_name_text(qname).as_deref(), Some("www.example."));
    }
}
