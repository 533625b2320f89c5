//! Hand-annotated byte vectors, parsed field by field and produced byte for byte by the writer.

use heimdall_wire::{
    Header, MessageWriter, Section, WireError, class, opt_from_record, parse_query, rtype,
};

/// A query for www.example.com/A with an EDNS OPT (UDP 1232, DO=1, one local option).
#[rustfmt::skip]
pub const QUERY_WITH_EDNS: [u8; 52] = [
    // Header (0..12)
    0x12, 0x34,             // 0: ID 0x1234
    0x01, 0x20,             // 2: flags: QR=0, opcode QUERY, RD=1, AD=1, rcode 0
    0x00, 0x01,             // 4: QDCOUNT 1
    0x00, 0x00,             // 6: ANCOUNT 0
    0x00, 0x00,             // 8: NSCOUNT 0
    0x00, 0x01,             // 10: ARCOUNT 1 (the OPT)
    // Question (12..33)
    0x03, b'w', b'w', b'w', // 12: label "www"
    0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // 16: label "example"
    0x03, b'c', b'o', b'm', // 24: label "com"
    0x00,                   // 28: root
    0x00, 0x01,             // 29: QTYPE A
    0x00, 0x01,             // 31: QCLASS IN
    // Additional: OPT (33..52)
    0x00,                   // 33: owner: root
    0x00, 0x29,             // 34: TYPE OPT (41)
    0x04, 0xd0,             // 36: CLASS = UDP payload size 1232
    0x00,                   // 38: TTL byte 0: extended rcode 0
    0x00,                   // 39: TTL byte 1: EDNS version 0
    0x80, 0x00,             // 40: TTL bytes 2-3: flags, DO=1
    0x00, 0x08,             // 42: RDLENGTH 8
    0xfd, 0xe9,             // 44: option code 65001 (local use)
    0x00, 0x04,             // 46: option length 4
    0xde, 0xad, 0xbe, 0xef, // 48: option value
];

/// A compressed response: www.example.com CNAME web.example.com, web.example.com A,
/// example.com SOA in authority, and an OPT (UDP 1232, no flags).
#[rustfmt::skip]
pub const RESPONSE: [u8; 129] = [
    // Header (0..12)
    0x12, 0x34,             // 0: ID 0x1234
    0x81, 0x80,             // 2: flags: QR=1, opcode QUERY, RD=1, RA=1, rcode NOERROR
    0x00, 0x01,             // 4: QDCOUNT 1
    0x00, 0x02,             // 6: ANCOUNT 2
    0x00, 0x01,             // 8: NSCOUNT 1
    0x00, 0x01,             // 10: ARCOUNT 1 (the OPT)
    // Question (12..33)
    0x03, b'w', b'w', b'w', // 12: label "www"
    0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // 16: label "example"
    0x03, b'c', b'o', b'm', // 24: label "com"
    0x00,                   // 28: root
    0x00, 0x01,             // 29: QTYPE A
    0x00, 0x01,             // 31: QCLASS IN
    // Answer 1 (33..51): www.example.com 300 IN CNAME web.example.com
    0xc0, 0x0c,             // 33: owner: pointer to 12 (www.example.com)
    0x00, 0x05,             // 35: TYPE CNAME
    0x00, 0x01,             // 37: CLASS IN
    0x00, 0x00, 0x01, 0x2c, // 39: TTL 300
    0x00, 0x06,             // 43: RDLENGTH 6
    0x03, b'w', b'e', b'b', // 45: label "web"
    0xc0, 0x10,             // 49: pointer to 16 (example.com)
    // Answer 2 (51..67): web.example.com 60 IN A 93.184.216.34
    0xc0, 0x2d,             // 51: owner: pointer to 45 (web.example.com)
    0x00, 0x01,             // 53: TYPE A
    0x00, 0x01,             // 55: CLASS IN
    0x00, 0x00, 0x00, 0x3c, // 57: TTL 60
    0x00, 0x04,             // 61: RDLENGTH 4
    93, 184, 216, 34,       // 63: address
    // Authority (67..118): example.com 3600 IN SOA ns1.example.com hostmaster.example.com ...
    0xc0, 0x10,             // 67: owner: pointer to 16 (example.com)
    0x00, 0x06,             // 69: TYPE SOA
    0x00, 0x01,             // 71: CLASS IN
    0x00, 0x00, 0x0e, 0x10, // 73: TTL 3600
    0x00, 0x27,             // 77: RDLENGTH 39
    0x03, b'n', b's', b'1', // 79: MNAME label "ns1"
    0xc0, 0x10,             // 83: pointer to 16 (example.com)
    0x0a, b'h', b'o', b's', b't', b'm', b'a', b's', b't', b'e', b'r', // 85: RNAME "hostmaster"
    0xc0, 0x10,             // 96: pointer to 16 (example.com)
    0x78, 0xa3, 0xf1, 0x75, // 98: SERIAL 2024010101
    0x00, 0x00, 0x1c, 0x20, // 102: REFRESH 7200
    0x00, 0x00, 0x0e, 0x10, // 106: RETRY 3600
    0x00, 0x12, 0x75, 0x00, // 110: EXPIRE 1209600
    0x00, 0x00, 0x01, 0x2c, // 114: MINIMUM 300
    // Additional (118..129): OPT
    0x00,                   // 118: owner: root
    0x00, 0x29,             // 119: TYPE OPT (41)
    0x04, 0xd0,             // 121: CLASS = UDP payload size 1232
    0x00, 0x00, 0x00, 0x00, // 123: TTL: extended rcode 0, version 0, flags 0
    0x00, 0x00,             // 127: RDLENGTH 0
];

/// The uncompressed wire form of www.example.com.
const WWW_EXAMPLE_COM: &[u8] = b"\x03www\x07example\x03com\x00";

/// The query vector parses field by field through parse_query: header, question span, OPT.
#[test]
fn query_with_edns_fields() {
    let q = parse_query(&QUERY_WITH_EDNS).expect("valid query");
    assert_eq!(
        q.header,
        Header {
            id: 0x1234,
            flags: 0x0120,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: 1
        }
    );
    assert!(!q.header.qr() && q.header.rd() && q.header.ad() && !q.header.cd());
    assert_eq!(q.header.opcode(), 0);
    assert_eq!(q.question.name.to_string(), "www.example.com.");
    assert_eq!(q.question.name.wire_len(), 17);
    assert_eq!((q.question.qtype, q.question.qclass), (rtype::A, class::IN));
    assert_eq!((q.question.start, q.question.end), (12, 33));
    let opt = q.opt.expect("has OPT");
    assert_eq!(opt.udp_payload, 1232);
    assert_eq!((opt.ext_rcode, opt.version, opt.flags), (0, 0, 0x8000));
    assert!(opt.dnssec_ok());
    assert_eq!((opt.start, opt.end), (33, 52));
    let options: Vec<_> = opt.options().collect();
    assert_eq!(options, vec![Ok((65001, &[0xde, 0xad, 0xbe, 0xef][..]))]);
}

/// The compressed response parses: every record's section, owner, type, TTL, offsets, and the
/// names inside CNAME and SOA rdata decompress.
#[test]
fn response_with_compression_fields() {
    let msg = heimdall_wire::Message::parse(&RESPONSE).expect("valid");
    assert_eq!(msg.header().flags, 0x8180);
    assert_eq!(msg.records_offset(), 33);
    let q = msg.question().expect("one question");
    assert_eq!(q.name.to_string(), "www.example.com.");
    let records: Vec<_> = msg
        .records()
        .collect::<Result<_, _>>()
        .expect("records parse");
    assert_eq!(records.len(), 4);

    let cname = &records[0];
    assert_eq!(cname.section, Section::Answer);
    assert_eq!(cname.name.to_string(), "www.example.com.");
    assert_eq!(
        (cname.rtype, cname.rclass, cname.ttl),
        (rtype::CNAME, class::IN, 300)
    );
    assert_eq!(
        (cname.start, cname.ttl_offset, cname.rdata_offset, cname.end),
        (33, 39, 45, 51)
    );
    let mut buf = [0u8; 512];
    let n = cname
        .write_rdata_uncompressed(&msg, &mut buf)
        .expect("decompress");
    assert_eq!(&buf[..n], b"\x03web\x07example\x03com\x00");

    let a = &records[1];
    assert_eq!(a.name.to_string(), "web.example.com.");
    assert_eq!(
        (a.rtype, a.ttl, a.rdata),
        (rtype::A, 60, &[93, 184, 216, 34][..])
    );

    let soa = &records[2];
    assert_eq!(soa.section, Section::Authority);
    assert_eq!(soa.name.to_string(), "example.com.");
    assert_eq!(
        (soa.rtype, soa.ttl, soa.rdata.len()),
        (rtype::SOA, 3600, 39)
    );
    let n = soa
        .write_rdata_uncompressed(&msg, &mut buf)
        .expect("decompress");
    let mut expected =
        b"\x03ns1\x07example\x03com\x00\x0ahostmaster\x07example\x03com\x00".to_vec();
    expected.extend_from_slice(&RESPONSE[98..118]);
    assert_eq!(&buf[..n], &expected[..]);

    let opt = &records[3];
    assert_eq!((opt.section, opt.rtype), (Section::Additional, rtype::OPT));
    let validated = msg.validate().expect("valid").expect("has OPT");
    assert_eq!(
        (validated.udp_payload, validated.flags, validated.start),
        (1232, 0, 118)
    );
    assert_eq!(opt_from_record(opt).map(|o| o.end), Ok(129));
}

/// The writer produces the annotated response byte for byte, compression pointers included.
#[test]
fn writer_produces_exact_bytes() {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("header fits");
    w.set_header(0x1234, 0x8180);
    w.question(WWW_EXAMPLE_COM, rtype::A, class::IN)
        .expect("question");
    let ttl_offset = w
        .record(
            Section::Answer,
            WWW_EXAMPLE_COM,
            rtype::CNAME,
            class::IN,
            300,
            b"\x03web\x07example\x03com\x00",
        )
        .expect("cname");
    assert_eq!(ttl_offset, 39);
    w.record(
        Section::Answer,
        b"\x03web\x07example\x03com\x00",
        rtype::A,
        class::IN,
        60,
        &[93, 184, 216, 34],
    )
    .expect("a");
    let mut soa = b"\x03ns1\x07example\x03com\x00\x0ahostmaster\x07example\x03com\x00".to_vec();
    soa.extend_from_slice(&RESPONSE[98..118]);
    w.record(
        Section::Authority,
        b"\x07example\x03com\x00",
        rtype::SOA,
        class::IN,
        3600,
        &soa,
    )
    .expect("soa");
    w.opt(1232, 0, 0, 0, &[]).expect("opt");
    let len = w.finish();
    assert_eq!(&buf[..len], &RESPONSE[..]);
}

/// Parse -> copy_record into a writer -> parse gives the same message (here the same bytes).
#[test]
fn round_trip_copy_record() {
    let src = heimdall_wire::Message::parse(&RESPONSE).expect("valid");
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("header fits");
    w.set_header(src.header().id, src.header().flags);
    let mut qname = [0u8; 255];
    for q in src.questions() {
        let n = q.name.write_uncompressed(&mut qname).expect("fits");
        w.question(&qname[..n], q.qtype, q.qclass)
            .expect("question");
    }
    for rec in src.records() {
        let rec = rec.expect("valid record");
        if rec.rtype == rtype::OPT {
            let opt = opt_from_record(&rec).expect("valid opt");
            w.opt(
                opt.udp_payload,
                opt.ext_rcode,
                opt.version,
                opt.flags,
                opt.options,
            )
            .expect("opt");
        } else {
            w.copy_record(&src, &rec, rec.ttl).expect("copy");
        }
    }
    let len = w.finish();
    assert_eq!(&buf[..len], &RESPONSE[..]);

    let copy = heimdall_wire::Message::parse(&buf[..len]).expect("parses");
    assert_eq!(copy.header(), src.header());
    for (a, b) in copy.records().zip(src.records()) {
        let (a, b) = (a.expect("valid"), b.expect("valid"));
        assert!(a.name.eq_ignore_case(&b.name));
        assert_eq!(
            (a.section, a.rtype, a.rclass, a.ttl),
            (b.section, b.rtype, b.rclass, b.ttl)
        );
        let (mut x, mut y) = ([0u8; 512], [0u8; 512]);
        let nx = a.write_rdata_uncompressed(&copy, &mut x).expect("fits");
        let ny = b.write_rdata_uncompressed(&src, &mut y).expect("fits");
        assert_eq!(&x[..nx], &y[..ny]);
    }
}

/// copy_record decompresses SRV targets from the source and writes them uncompressed, while an
/// MX exchange is re-compressed against the question name.
#[test]
fn copy_record_srv_uncompressed_mx_compressed() {
    #[rustfmt::skip]
    let src_bytes: [u8; 59] = [
        0x00, 0x01, 0x81, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // header, 1 q, 2 an
        0x01, b'x', 0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x00, // 12: x.example
        0x00, 0x21, 0x00, 0x01,                    // 23: QTYPE SRV, QCLASS IN
        0xc0, 0x0c, 0x00, 0x21, 0x00, 0x01,        // 27: owner -> 12, SRV, IN
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x08,        // 33: TTL 10, RDLENGTH 8
        0x00, 0x01, 0x00, 0x02, 0x00, 0x35,        // 39: priority 1, weight 2, port 53
        0xc0, 0x0e,                                // 45: target -> 14 (example), compressed
        0xc0, 0x0c, 0x00, 0x0f, 0x00, 0x01,        // 47: owner -> 12, MX, IN
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00,        // 53: TTL 10, RDLENGTH 0 (patched below)
    ];
    let mut src_vec = src_bytes.to_vec();
    // MX rdata: preference 5, exchange -> 12 (x.example)
    src_vec.extend_from_slice(&[0x00, 0x05, 0xc0, 0x0c]);
    src_vec[58] = 4;
    let src = heimdall_wire::Message::parse(&src_vec).expect("valid");
    assert_eq!(src.validate().map(|o| o.is_none()), Ok(true));
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("fits");
    w.question(b"\x01x\x07example\x00", rtype::SRV, class::IN)
        .expect("question");
    for rec in src.records() {
        let rec = rec.expect("valid");
        w.copy_record(&src, &rec, 7).expect("copy");
    }
    let len = w.finish();
    let out = &buf[..len];
    // SRV: owner pointer, then rdata = 6 fixed bytes + uncompressed "example."
    assert_eq!(&out[27..29], &[0xc0, 0x0c]);
    assert_eq!(&out[37..39], &[0x00, 0x0f]); // RDLENGTH 15
    assert_eq!(&out[39..54], b"\x00\x01\x00\x02\x00\x35\x07example\x00");
    // MX: preference then a pointer to the question name.
    assert_eq!(&out[len - 4..], &[0x00, 0x05, 0xc0, 0x0c]);
    let copy = heimdall_wire::Message::parse(out).expect("valid");
    assert_eq!(copy.validate().map(|o| o.is_none()), Ok(true));
    let ttls: Vec<u32> = copy
        .records()
        .map(|r| r.map(|r| r.ttl))
        .collect::<Result<_, WireError>>()
        .expect("ok");
    assert_eq!(ttls, vec![7, 7]);
}
