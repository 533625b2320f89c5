//! Differential test against hickory-proto: random messages encoded by hickory are parsed by our
//! view, and random messages written by our writer are decoded by hickory; both must agree.

use heimdall_wire::{Message, MessageWriter, Section, class, opt_from_record, rtype};
use hickory_proto::op::{
    Edns, Message as HMessage, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{self as hrdata, A, AAAA, MX, NULL, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name as HName, RData, Record as HRecord, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Number of random messages per direction.
const MESSAGES: usize = 2500;
/// Local-use EDNS option code carried in some messages.
const LOCAL_OPTION: u16 = 65001;

/// A name as its labels.
type Labels = Vec<Vec<u8>>;

/// Uncompressed wire form of a label list.
fn wire_of(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::new();
    for label in labels {
        out.push(u8::try_from(label.len()).expect("label <= 63"));
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// The hickory name with these exact labels.
fn hickory_name(labels: &Labels) -> HName {
    HName::from_labels(labels.iter().map(Vec::as_slice)).expect("valid labels")
}

/// The labels of a hickory name.
fn labels_of(name: &HName) -> Labels {
    name.iter().map(<[u8]>::to_vec).collect()
}

/// Record data of the types the test generates.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rd {
    /// IPv4 address.
    A([u8; 4]),
    /// IPv6 address.
    Aaaa([u8; 16]),
    /// Name server.
    Ns(Labels),
    /// Alias target.
    Cname(Labels),
    /// Pointer target.
    Ptr(Labels),
    /// Preference and exchange.
    Mx(u16, Labels),
    /// Character strings.
    Txt(Vec<Vec<u8>>),
    /// mname, rname, serial, refresh, retry, expire, minimum.
    Soa(Labels, Labels, [u32; 5]),
    /// Priority, weight, port, target.
    Srv(u16, u16, u16, Labels),
    /// An unknown type's opaque bytes.
    Unknown(u16, Vec<u8>),
}

impl Rd {
    /// The record type number.
    fn rtype(&self) -> u16 {
        match self {
            Rd::A(_) => rtype::A,
            Rd::Aaaa(_) => rtype::AAAA,
            Rd::Ns(_) => rtype::NS,
            Rd::Cname(_) => rtype::CNAME,
            Rd::Ptr(_) => rtype::PTR,
            Rd::Mx(..) => rtype::MX,
            Rd::Txt(_) => rtype::TXT,
            Rd::Soa(..) => rtype::SOA,
            Rd::Srv(..) => rtype::SRV,
            Rd::Unknown(t, _) => *t,
        }
    }

    /// True when the rdata embeds a name.
    fn has_names(&self) -> bool {
        matches!(
            self,
            Rd::Ns(_) | Rd::Cname(_) | Rd::Ptr(_) | Rd::Mx(..) | Rd::Soa(..) | Rd::Srv(..)
        )
    }

    /// Uncompressed wire rdata.
    fn wire(&self) -> Vec<u8> {
        match self {
            Rd::A(a) => a.to_vec(),
            Rd::Aaaa(a) => a.to_vec(),
            Rd::Ns(n) | Rd::Cname(n) | Rd::Ptr(n) => wire_of(n),
            Rd::Mx(p, n) => [&p.to_be_bytes()[..], &wire_of(n)].concat(),
            Rd::Txt(strings) => strings
                .iter()
                .flat_map(|s| {
                    std::iter::once(u8::try_from(s.len()).expect("short")).chain(s.iter().copied())
                })
                .collect(),
            Rd::Soa(m, r, nums) => {
                let mut out = wire_of(m);
                out.extend(wire_of(r));
                nums.iter()
                    .for_each(|n| out.extend_from_slice(&n.to_be_bytes()));
                out
            }
            Rd::Srv(p, w, port, n) => [
                &p.to_be_bytes()[..],
                &w.to_be_bytes(),
                &port.to_be_bytes(),
                &wire_of(n),
            ]
            .concat(),
            Rd::Unknown(_, bytes) => bytes.clone(),
        }
    }

    /// The hickory rdata.
    fn to_hickory(&self) -> RData {
        match self {
            Rd::A(a) => RData::A(A::from(std::net::Ipv4Addr::from(*a))),
            Rd::Aaaa(a) => RData::AAAA(AAAA::from(std::net::Ipv6Addr::from(*a))),
            Rd::Ns(n) => RData::NS(hrdata::NS(hickory_name(n))),
            Rd::Cname(n) => RData::CNAME(hrdata::CNAME(hickory_name(n))),
            Rd::Ptr(n) => RData::PTR(hrdata::PTR(hickory_name(n))),
            Rd::Mx(p, n) => RData::MX(MX::new(*p, hickory_name(n))),
            Rd::Txt(strings) => {
                RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
            }
            Rd::Soa(m, r, [serial, refresh, retry, expire, minimum]) => RData::SOA(SOA::new(
                hickory_name(m),
                hickory_name(r),
                *serial,
                *refresh as i32,
                *retry as i32,
                *expire as i32,
                *minimum,
            )),
            Rd::Srv(p, w, port, n) => RData::SRV(SRV::new(*p, *w, *port, hickory_name(n))),
            Rd::Unknown(t, bytes) => RData::Unknown {
                code: RecordType::from(*t),
                rdata: NULL::with(bytes.clone()),
            },
        }
    }

    /// Our model of a hickory rdata (panics on a type the test never generates).
    fn from_hickory(data: &RData) -> Rd {
        match data {
            RData::A(a) => Rd::A(a.0.octets()),
            RData::AAAA(a) => Rd::Aaaa(a.0.octets()),
            RData::NS(n) => Rd::Ns(labels_of(&n.0)),
            RData::CNAME(n) => Rd::Cname(labels_of(&n.0)),
            RData::PTR(n) => Rd::Ptr(labels_of(&n.0)),
            RData::MX(mx) => Rd::Mx(mx.preference, labels_of(&mx.exchange)),
            RData::TXT(txt) => Rd::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
            RData::SOA(soa) => Rd::Soa(
                labels_of(&soa.mname),
                labels_of(&soa.rname),
                [
                    soa.serial,
                    soa.refresh as u32,
                    soa.retry as u32,
                    soa.expire as u32,
                    soa.minimum,
                ],
            ),
            RData::SRV(srv) => Rd::Srv(srv.priority, srv.weight, srv.port, labels_of(&srv.target)),
            RData::Unknown { code, rdata } => Rd::Unknown(u16::from(*code), rdata.anything.clone()),
            other => panic!("unexpected rdata {other:?}"),
        }
    }
}

/// One generated record.
#[derive(Clone, Debug)]
struct Rr {
    /// Section it belongs to.
    section: Section,
    /// Owner name.
    owner: Labels,
    /// Class.
    class: u16,
    /// TTL.
    ttl: u32,
    /// Data.
    rd: Rd,
}

/// Generated EDNS parameters.
#[derive(Clone, Debug)]
struct EdnsModel {
    /// UDP payload size (>= 512: hickory clamps smaller values).
    payload: u16,
    /// DO bit.
    dnssec_ok: bool,
    /// EDNS version.
    version: u8,
    /// Value of the local option, when present.
    option: Option<Vec<u8>>,
}

/// One generated message.
#[derive(Clone, Debug)]
struct Model {
    /// Message id.
    id: u16,
    /// QR, AA, TC, RD, RA, AD, CD bits (as in the flags word).
    bits: u16,
    /// Opcode.
    opcode: u8,
    /// Full (12-bit) response code; > 15 only with EDNS.
    rcode: u16,
    /// Question name.
    qname: Labels,
    /// Question type.
    qtype: u16,
    /// Question class.
    qclass: u16,
    /// Records in section order.
    records: Vec<Rr>,
    /// EDNS, if any.
    edns: Option<EdnsModel>,
}

impl Model {
    /// The header flags word (low rcode bits included).
    fn flags(&self) -> u16 {
        self.bits | (u16::from(self.opcode) << 11) | (self.rcode & 0xf)
    }
}

/// Random generator of names that share suffixes, so hickory compresses them.
struct NameGen {
    /// Names used so far in the current message.
    pool: Vec<Labels>,
}

/// Characters used for labels.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

impl NameGen {
    /// A random label, mostly alphanumeric, sometimes with arbitrary bytes or 63 long.
    fn label(rng: &mut StdRng) -> Vec<u8> {
        let len = if rng.random_bool(0.03) {
            rng.random_range(40..=63)
        } else {
            rng.random_range(1..=10)
        };
        (0..len)
            .map(|_| {
                if rng.random_bool(0.02) {
                    rng.random()
                } else {
                    ALPHABET[rng.random_range(0..ALPHABET.len())]
                }
            })
            .collect()
    }

    /// Flip the ASCII case of random letters.
    fn mix_case(rng: &mut StdRng, labels: &mut Labels) {
        for label in labels.iter_mut() {
            for b in label.iter_mut() {
                if b.is_ascii_alphabetic() && rng.random_bool(0.3) {
                    *b ^= 0x20;
                }
            }
        }
    }

    /// A random name: reused, or new labels in front of a known suffix, or fresh.
    fn name(&mut self, rng: &mut StdRng) -> Labels {
        let bases: [Labels; 4] = [
            vec![b"example".to_vec(), b"com".to_vec()],
            vec![b"Example".to_vec(), b"ORG".to_vec()],
            vec![b"net".to_vec()],
            vec![],
        ];
        let roll = rng.random_range(0..100);
        let mut name = if roll < 25 && !self.pool.is_empty() {
            let mut name = self.pool[rng.random_range(0..self.pool.len())].clone();
            if rng.random_bool(0.2) {
                Self::mix_case(rng, &mut name);
            }
            name
        } else if roll < 85 {
            let suffix = if self.pool.is_empty() || rng.random_bool(0.4) {
                bases[rng.random_range(0..bases.len())].clone()
            } else {
                let known = &self.pool[rng.random_range(0..self.pool.len())];
                known[rng.random_range(0..=known.len())..].to_vec()
            };
            let mut prefix: Labels = (0..rng.random_range(0..=3))
                .map(|_| Self::label(rng))
                .collect();
            if rng.random_bool(0.2) {
                Self::mix_case(rng, &mut prefix);
            }
            prefix.extend(suffix);
            prefix
        } else {
            (0..rng.random_range(0..=4))
                .map(|_| Self::label(rng))
                .collect()
        };
        while wire_of(&name).len() > 200 {
            name.remove(0);
        }
        self.pool.push(name.clone());
        name
    }
}

/// Generate random rdata of a random type.
fn random_rd(rng: &mut StdRng, names: &mut NameGen) -> Rd {
    match rng.random_range(0..10) {
        0 => Rd::A(rng.random()),
        1 => Rd::Aaaa(rng.random()),
        2 => Rd::Ns(names.name(rng)),
        3 => Rd::Cname(names.name(rng)),
        4 => Rd::Ptr(names.name(rng)),
        5 => Rd::Mx(rng.random(), names.name(rng)),
        6 => Rd::Txt(
            (0..rng.random_range(1..=3))
                .map(|_| {
                    (0..rng.random_range(0..=40))
                        .map(|_| rng.random())
                        .collect()
                })
                .collect(),
        ),
        7 => Rd::Soa(
            names.name(rng),
            names.name(rng),
            rng.random::<[u32; 5]>().map(|n| n >> 1),
        ),
        8 => Rd::Srv(rng.random(), rng.random(), rng.random(), names.name(rng)),
        _ => Rd::Unknown(
            rng.random_range(65280..=65290),
            (0..rng.random_range(1..=30))
                .map(|_| rng.random())
                .collect(),
        ),
    }
}

/// Generate a random message model.
fn random_model(rng: &mut StdRng) -> Model {
    let mut names = NameGen { pool: Vec::new() };
    let flag_bits = [0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010];
    let bits = flag_bits
        .iter()
        .filter(|_| rng.random_bool(0.5))
        .fold(0, |a, b| a | b);
    let edns = rng.random_bool(0.6).then(|| EdnsModel {
        payload: rng.random_range(512..=4096),
        dnssec_ok: rng.random_bool(0.5),
        version: if rng.random_bool(0.9) {
            0
        } else {
            rng.random()
        },
        option: rng
            .random_bool(0.3)
            .then(|| (0..rng.random_range(0..=8)).map(|_| rng.random()).collect()),
    });
    let rcode = if edns.is_some() {
        rng.random_range(0..=23)
    } else {
        rng.random_range(0..=5)
    };
    let opcode = [0, 0, 0, 2, 4, 5][rng.random_range(0..6)];
    let qname = names.name(rng);
    let qtype = [
        rtype::A,
        rtype::AAAA,
        rtype::MX,
        rtype::TXT,
        rtype::SRV,
        65280,
    ][rng.random_range(0..6)];
    let qclass = [class::IN, class::IN, class::CH, class::ANY][rng.random_range(0..4)];
    let mut records = Vec::new();
    for (section, max) in [
        (Section::Answer, 6),
        (Section::Authority, 3),
        (Section::Additional, 3),
    ] {
        for _ in 0..rng.random_range(0..=max) {
            records.push(Rr {
                section,
                owner: names.name(rng),
                class: if rng.random_bool(0.9) {
                    class::IN
                } else {
                    class::CH
                },
                ttl: rng.random(),
                rd: random_rd(rng, &mut names),
            });
        }
    }
    Model {
        id: rng.random(),
        bits,
        opcode,
        rcode,
        qname,
        qtype,
        qclass,
        records,
        edns,
    }
}

/// Encode a model with hickory.
fn encode_with_hickory(m: &Model) -> Vec<u8> {
    let message_type = if m.bits & 0x8000 != 0 {
        MessageType::Response
    } else {
        MessageType::Query
    };
    let mut msg = HMessage::new(m.id, message_type, OpCode::from_u8(m.opcode));
    msg.metadata.authoritative = m.bits & 0x0400 != 0;
    msg.metadata.truncation = m.bits & 0x0200 != 0;
    msg.metadata.recursion_desired = m.bits & 0x0100 != 0;
    msg.metadata.recursion_available = m.bits & 0x0080 != 0;
    msg.metadata.authentic_data = m.bits & 0x0020 != 0;
    msg.metadata.checking_disabled = m.bits & 0x0010 != 0;
    msg.metadata.response_code = <ResponseCode as From<u16>>::from(m.rcode);
    let mut query = HQuery::query(hickory_name(&m.qname), RecordType::from(m.qtype));
    query.set_query_class(DNSClass::from(m.qclass));
    msg.add_query(query);
    for rr in &m.records {
        let mut record = HRecord::from_rdata(hickory_name(&rr.owner), rr.ttl, rr.rd.to_hickory());
        record.dns_class = DNSClass::from(rr.class);
        match rr.section {
            Section::Answer => msg.add_answer(record),
            Section::Authority => msg.add_authority(record),
            Section::Additional => msg.add_additional(record),
        };
    }
    if let Some(e) = &m.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.payload);
        edns.set_dnssec_ok(e.dnssec_ok);
        edns.set_version(e.version);
        if let Some(value) = &e.option {
            edns.options_mut()
                .insert(EdnsOption::Unknown(LOCAL_OPTION, value.clone()));
        }
        msg.set_edns(edns);
    }
    msg.to_vec().expect("hickory encodes")
}

/// Write a model with our writer (names given uncompressed).
fn encode_with_writer(m: &Model) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let mut w = MessageWriter::new(&mut buf).expect("header fits");
    w.set_header(m.id, m.flags());
    w.question(&wire_of(&m.qname), m.qtype, m.qclass)
        .expect("question");
    for rr in &m.records {
        w.record(
            rr.section,
            &wire_of(&rr.owner),
            rr.rd.rtype(),
            rr.class,
            rr.ttl,
            &rr.rd.wire(),
        )
        .expect("record");
    }
    if let Some(e) = &m.edns {
        let options = match &e.option {
            Some(v) => [
                &LOCAL_OPTION.to_be_bytes()[..],
                &(v.len() as u16).to_be_bytes(),
                v,
            ]
            .concat(),
            None => Vec::new(),
        };
        let flags = if e.dnssec_ok { 0x8000 } else { 0 };
        w.opt(e.payload, (m.rcode >> 4) as u8, e.version, flags, &options)
            .expect("opt");
    }
    let len = w.finish();
    buf.truncate(len);
    buf
}

/// Check our parse of `bytes` against the model: header, question, records, OPT.
fn check_view(m: &Model, bytes: &[u8]) {
    let msg = Message::parse(bytes).expect("our parser accepts");
    let opt = msg.validate().expect("our validation accepts");
    let h = msg.header();
    assert_eq!(h.id, m.id);
    assert_eq!(h.flags & !0x0040, m.flags(), "flags");
    assert_eq!(h.opcode(), m.opcode);
    assert_eq!(h.rcode(), (m.rcode & 0xf) as u8);
    let count = |s| m.records.iter().filter(|r| r.section == s).count() as u16;
    assert_eq!(h.qdcount, 1);
    assert_eq!(h.ancount, count(Section::Answer));
    assert_eq!(h.nscount, count(Section::Authority));
    assert_eq!(
        h.arcount,
        count(Section::Additional) + u16::from(m.edns.is_some())
    );

    let q = msg.question().expect("one question");
    let mut buf = [0u8; 1024];
    let n = q.name.write_uncompressed(&mut buf).expect("fits");
    assert_eq!(&buf[..n], &wire_of(&m.qname)[..], "qname");
    let n = q.name.write_lower(&mut buf).expect("fits");
    assert_eq!(&buf[..n], &wire_of(&m.qname).to_ascii_lowercase()[..]);
    assert_eq!((q.qtype, q.qclass), (m.qtype, m.qclass));

    let ours: Vec<_> = msg
        .records()
        .map(|r| r.expect("record parses"))
        .filter(|r| r.rtype != rtype::OPT)
        .collect();
    assert_eq!(ours.len(), m.records.len());
    for (rec, rr) in ours.iter().zip(&m.records) {
        assert_eq!(rec.section, rr.section);
        let n = rec.name.write_lower(&mut buf).expect("fits");
        assert_eq!(
            &buf[..n],
            &wire_of(&rr.owner).to_ascii_lowercase()[..],
            "owner"
        );
        let n = rec.name.write_uncompressed(&mut buf).expect("fits");
        assert_eq!(&buf[..n], &wire_of(&rr.owner)[..], "owner case");
        assert_eq!(
            (rec.rtype, rec.rclass, rec.ttl),
            (rr.rd.rtype(), rr.class, rr.ttl)
        );
        if !rr.rd.has_names() {
            assert_eq!(rec.rdata, &rr.rd.wire()[..], "rdata");
        }
        let n = rec.write_rdata_uncompressed(&msg, &mut buf).expect("fits");
        assert_eq!(&buf[..n], &rr.rd.wire()[..], "decompressed rdata");
    }

    match (&m.edns, opt) {
        (None, None) => {}
        (Some(e), Some(opt)) => {
            assert_eq!(opt.udp_payload, e.payload);
            assert_eq!(opt.dnssec_ok(), e.dnssec_ok);
            assert_eq!(opt.version, e.version);
            assert_eq!(u16::from(opt.ext_rcode), m.rcode >> 4);
            let options: Vec<_> = opt.options().map(|o| o.expect("option parses")).collect();
            match &e.option {
                Some(v) => assert_eq!(options, vec![(LOCAL_OPTION, &v[..])]),
                None => assert!(options.is_empty()),
            }
        }
        (e, o) => panic!("edns mismatch: model {e:?}, parsed {o:?}"),
    }
}

/// Copy every record of `bytes` through our writer with copy_record and return the new message.
fn copy_through_writer(bytes: &[u8]) -> Vec<u8> {
    let src = Message::parse(bytes).expect("parses");
    let mut buf = vec![0u8; 65535];
    let mut w = MessageWriter::new(&mut buf).expect("header fits");
    w.set_header(src.header().id, src.header().flags);
    let mut qname = [0u8; 255];
    for q in src.questions() {
        let n = q.name.write_uncompressed(&mut qname).expect("fits");
        w.question(&qname[..n], q.qtype, q.qclass)
            .expect("question");
    }
    for rec in src.records() {
        let rec = rec.expect("parses");
        if rec.rtype == rtype::OPT {
            let o = opt_from_record(&rec).expect("opt");
            w.opt(o.udp_payload, o.ext_rcode, o.version, o.flags, o.options)
                .expect("opt");
        } else {
            w.copy_record(&src, &rec, rec.ttl).expect("copy");
        }
    }
    let len = w.finish();
    buf.truncate(len);
    buf
}

/// Hickory-encoded random messages (compressed, mixed case, EDNS) parse in our view with the
/// same header, question, records and OPT; copying them through our writer preserves all of it.
#[test]
fn hickory_encodes_we_parse() {
    let mut rng = StdRng::seed_from_u64(0x04e1_da11);
    let mut compressed = 0;
    for _ in 0..MESSAGES {
        let m = random_model(&mut rng);
        let bytes = encode_with_hickory(&m);
        compressed += usize::from(bytes.windows(2).any(|w| w[0] >= 0xc0));
        check_view(&m, &bytes);
        let copy = copy_through_writer(&bytes);
        check_view(&m, &copy);
        // Our compression is as good as hickory's or better on these names.
    }
    assert!(
        compressed > MESSAGES / 2,
        "hickory compressed only {compressed} messages"
    );
}

/// Messages written by our writer decode in hickory to the same header, question, records and EDNS.
#[test]
fn we_write_hickory_parses() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for _ in 0..MESSAGES {
        let m = random_model(&mut rng);
        let bytes = encode_with_writer(&m);
        check_view(&m, &bytes);
        let h = HMessage::from_vec(&bytes).unwrap_or_else(|e| panic!("hickory rejects: {e} {m:?}"));
        let md = &h.metadata;
        assert_eq!(md.id, m.id);
        assert_eq!(
            md.message_type == MessageType::Response,
            m.bits & 0x8000 != 0
        );
        assert_eq!(u8::from(md.op_code), m.opcode);
        assert_eq!(md.authoritative, m.bits & 0x0400 != 0);
        assert_eq!(md.truncation, m.bits & 0x0200 != 0);
        assert_eq!(md.recursion_desired, m.bits & 0x0100 != 0);
        assert_eq!(md.recursion_available, m.bits & 0x0080 != 0);
        assert_eq!(md.authentic_data, m.bits & 0x0020 != 0);
        assert_eq!(md.checking_disabled, m.bits & 0x0010 != 0);
        assert_eq!(u16::from(md.response_code), m.rcode);
        assert_eq!(h.queries.len(), 1);
        assert_eq!(labels_of(&h.queries[0].name), m.qname);
        assert_eq!(u16::from(h.queries[0].query_type), m.qtype);
        assert_eq!(u16::from(h.queries[0].query_class), m.qclass);
        let theirs = h.answers.iter().map(|r| (Section::Answer, r));
        let theirs = theirs
            .chain(h.authorities.iter().map(|r| (Section::Authority, r)))
            .chain(h.additionals.iter().map(|r| (Section::Additional, r)));
        let theirs: Vec<_> = theirs.collect();
        assert_eq!(theirs.len(), m.records.len());
        for ((section, rec), rr) in theirs.into_iter().zip(&m.records) {
            assert_eq!(section, rr.section);
            assert_eq!(labels_of(&rec.name), rr.owner);
            assert_eq!(u16::from(rec.record_type()), rr.rd.rtype());
            assert_eq!(u16::from(rec.dns_class), rr.class);
            assert_eq!(rec.ttl, rr.ttl);
            assert_eq!(Rd::from_hickory(&rec.data), rr.rd);
        }
        match (&m.edns, &h.edns) {
            (None, None) => {}
            (Some(e), Some(he)) => {
                assert_eq!(he.max_payload(), e.payload);
                assert_eq!(he.flags().dnssec_ok, e.dnssec_ok);
                assert_eq!(he.version(), e.version);
                let option = he.option(EdnsCode::from(LOCAL_OPTION));
                match &e.option {
                    Some(v) => {
                        assert_eq!(option, Some(&EdnsOption::Unknown(LOCAL_OPTION, v.clone())))
                    }
                    None => assert!(he.options().as_ref().is_empty()),
                }
            }
            (e, he) => panic!("edns mismatch: model {e:?}, hickory {he:?}"),
        }
    }
}
