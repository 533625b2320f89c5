//! Test helpers: build upstream responses and client questions, and decode replies.

use heimdall_wire::{
    Header, MAX_NAME_LEN, Message, MessageWriter, Name, Section, class, name_from_str,
    opt_from_record, rtype,
};

use super::{ClientOpt, ClientQuery};

/// One record to put in a test response.
#[derive(Clone, Debug)]
pub struct Rr {
    /// Its section.
    pub section: Section,
    /// Owner name in presentation form.
    pub name: &'static str,
    /// Record type.
    pub rtype: u16,
    /// TTL as sent by "upstream".
    pub ttl: u32,
    /// Uncompressed RDATA.
    pub rdata: Vec<u8>,
}

/// An answer-section record.
pub fn answer(name: &'static str, rtype: u16, ttl: u32, rdata: Vec<u8>) -> Rr {
    Rr {
        section: Section::Answer,
        name,
        rtype,
        ttl,
        rdata,
    }
}

/// An authority-section record.
pub fn authority(name: &'static str, rtype: u16, ttl: u32, rdata: Vec<u8>) -> Rr {
    Rr {
        section: Section::Authority,
        ..answer(name, rtype, ttl, rdata)
    }
}

/// An additional-section record.
pub fn additional(name: &'static str, rtype: u16, ttl: u32, rdata: Vec<u8>) -> Rr {
    Rr {
        section: Section::Additional,
        ..answer(name, rtype, ttl, rdata)
    }
}

/// A presentation name in uncompressed wire form.
pub fn wire_name(s: &str) -> Vec<u8> {
    let mut buf = [0u8; MAX_NAME_LEN];
    let len = name_from_str(s, &mut buf).expect("valid test name");
    buf[..len].to_vec()
}

/// A-record RDATA.
pub fn a(ip: [u8; 4]) -> Vec<u8> {
    ip.to_vec()
}

/// SOA RDATA with the given MINIMUM (other fields arbitrary).
pub fn soa(minimum: u32) -> Vec<u8> {
    let mut rdata = wire_name("ns1.example.com");
    rdata.extend(wire_name("hostmaster.example.com"));
    for field in [2024_u32, 7200, 900, 1_209_600, minimum] {
        rdata.extend(field.to_be_bytes());
    }
    rdata
}

/// An upstream response: `flags` (QR is added), question `qname`/`qtype`, `records` in section
/// order, and an OPT record `(udp size, DO)` if given.
pub fn response(
    flags: u16,
    qname: &str,
    qtype: u16,
    records: &[Rr],
    opt: Option<(u16, bool)>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    let mut writer = MessageWriter::new(&mut buf).expect("buffer");
    writer.set_header(0x4242, flags | Header::QR);
    writer
        .question(&wire_name(qname), qtype, class::IN)
        .expect("question");
    for rr in records {
        writer
            .record(
                rr.section,
                &wire_name(rr.name),
                rr.rtype,
                class::IN,
                rr.ttl,
                &rr.rdata,
            )
            .expect("record");
    }
    if let Some((size, dnssec_ok)) = opt {
        let flags = if dnssec_ok { 0x8000 } else { 0 };
        writer.opt(size, 0, 0, flags, &[]).expect("opt");
    }
    let len = writer.finish();
    buf.truncate(len);
    buf
}

/// A client's question bytes: `qname` exactly as given (case kept), type, class IN.
pub fn question(qname: &str, qtype: u16) -> Vec<u8> {
    let mut bytes = wire_name(qname);
    bytes.extend(qtype.to_be_bytes());
    bytes.extend(class::IN.to_be_bytes());
    bytes
}

/// A client query view with RD set, over `question`.
pub fn client(question: &[u8], opt: Option<ClientOpt>) -> ClientQuery<'_> {
    ClientQuery {
        id: 0xbeef,
        flags: Header::RD,
        question,
        opt,
    }
}

/// A record of a decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its section.
    pub section: Section,
    /// Owner name in presentation form, as sent (case kept).
    pub name: String,
    /// Record type.
    pub rtype: u16,
    /// TTL.
    pub ttl: u32,
}

/// A decoded reply: header, question bytes, non-OPT records and OPT `(udp size, DO, ext rcode)`.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The header.
    pub header: Header,
    /// The question bytes.
    pub question: Vec<u8>,
    /// The records other than OPT.
    pub records: Vec<Decoded>,
    /// The OPT record, if any.
    pub opt: Option<(u16, bool, u8)>,
}

/// Decode and fully validate a reply.
pub fn decode(bytes: &[u8]) -> Reply {
    let msg = Message::parse(bytes).expect("reply parses");
    let opt = msg.validate().expect("reply validates");
    let q = msg.question().expect("reply has a question");
    let mut records = Vec::new();
    for rec in msg.records() {
        let rec = rec.expect("record");
        if rec.rtype == rtype::OPT {
            opt_from_record(&rec).expect("opt");
            continue;
        }
        records.push(Decoded {
            section: rec.section,
            name: rec.name.to_string(),
            rtype: rec.rtype,
            ttl: rec.ttl,
        });
    }
    Reply {
        header: msg.header(),
        question: bytes[q.start..q.end].to_vec(),
        records,
        opt: opt.map(|o| (o.udp_payload, o.dnssec_ok(), o.ext_rcode)),
    }
}

/// The uncompressed RDATA name of the `index`th record of `bytes` (for CNAME/NS/PTR).
pub fn rdata_name(bytes: &[u8], index: usize) -> String {
    let msg = Message::parse(bytes).expect("reply parses");
    let rec = msg.records().nth(index).expect("index").expect("record");
    let (name, _) = Name::parse(&bytes[..rec.end], rec.rdata_offset).expect("rdata name");
    name.to_string()
}
