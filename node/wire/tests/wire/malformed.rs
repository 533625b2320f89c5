//! Malformed input: every case returns the expected error (and nothing panics).

use heimdall_wire::{Message, Name, QueryError, WireError, parse_query};

/// A 12-byte header with the given id, flags and counts.
fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

/// A query header (RD set) with one question and the given record counts.
fn query_header(an: u16, ns: u16, ar: u16) -> Vec<u8> {
    header(0xabcd, 0x0100, [1, an, ns, ar])
}

/// The question example.com/A/IN in uncompressed form.
const QUESTION: &[u8] = b"\x07example\x03com\x00\x00\x01\x00\x01";

/// An empty OPT record with the given owner bytes (UDP 1232).
fn opt_record(owner: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&[0x00, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0x00, 0x00]);
    out
}

/// An A record owned by a pointer to the question name (offset 12).
const A_RECORD: &[u8] = &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1];

/// The FORMERR answer expected for a query built with `query_header`.
const FORMERR: QueryError = QueryError::FormErr {
    id: 0xabcd,
    flags: 0x0100,
};

/// Check that `msg` fails `Message::parse` or `validate` with `err` and parse_query says FORMERR.
fn expect_formerr(msg: &[u8], err: WireError) {
    let result = Message::parse(msg).and_then(|m| m.validate());
    assert_eq!(result.map(|_| ()), Err(err), "message {msg:02x?}");
    assert_eq!(
        parse_query(msg).map(|_| ()),
        Err(FORMERR),
        "message {msg:02x?}"
    );
}

/// A header shorter than 12 bytes is Truncated and dropped by the server.
#[test]
fn truncated_header() {
    for len in 0..12 {
        let msg = &query_header(0, 0, 0)[..len];
        assert_eq!(Message::parse(msg).map(|_| ()), Err(WireError::Truncated));
        assert_eq!(parse_query(msg).map(|_| ()), Err(QueryError::Drop));
    }
}

/// A question name cut off mid-label, or before QTYPE/QCLASS, is Truncated.
#[test]
fn truncated_name_and_question() {
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(b"\x07exam");
    expect_formerr(&msg, WireError::Truncated);
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(&QUESTION[..QUESTION.len() - 1]);
    expect_formerr(&msg, WireError::Truncated);
    // A pointer whose second byte is missing.
    let mut msg = query_header(0, 0, 0);
    msg.push(0xc0);
    expect_formerr(&msg, WireError::Truncated);
}

/// A length byte of 64 is label type 0b01, not a plain label, so it is BadLabelType.
#[test]
fn label_64_rejected() {
    let mut msg = query_header(0, 0, 0);
    msg.push(64);
    msg.extend_from_slice(&[b'a'; 64]);
    msg.extend_from_slice(&[0, 0, 1, 0, 1]);
    expect_formerr(&msg, WireError::BadLabelType);
}

/// Label types 0b01 and 0b10 are rejected as BadLabelType.
#[test]
fn bad_label_types() {
    for first in [0x41u8, 0x80, 0xbf] {
        let mut msg = query_header(0, 0, 0);
        msg.extend_from_slice(&[first, 0, 0, 0, 1, 0, 1]);
        expect_formerr(&msg, WireError::BadLabelType);
    }
}

/// A 255-byte name is accepted; a 256-byte one (also when built through a pointer) is NameTooLong.
#[test]
fn name_length_limit() {
    // 3 labels of 63 plus one of 61: 3*64 + 62 + root = 255.
    let build = |last: usize| {
        let mut name = Vec::new();
        for _ in 0..3 {
            name.push(63u8);
            name.extend_from_slice(&[b'x'; 63]);
        }
        name.push(u8::try_from(last).expect("small"));
        name.extend(std::iter::repeat_n(b'y', last));
        name.push(0);
        name
    };
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(&build(61));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    let q = parse_query(&msg).expect("255 is fine");
    assert_eq!(q.question.name.wire_len(), 255);

    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(&build(62));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    expect_formerr(&msg, WireError::NameTooLong);

    // 255-byte question name, then an answer owner "a" + pointer to it: 257 bytes.
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(&build(61));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    msg.extend_from_slice(&[
        1, b'a', 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4,
    ]);
    expect_formerr(&msg, WireError::NameTooLong);
}

/// A pointer to itself is a PointerLoop.
#[test]
fn self_pointer_loop() {
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    expect_formerr(&msg, WireError::PointerLoop);
}

/// Two pointers pointing at each other are a PointerLoop: the question points back into the
/// header (ID bytes 0xc00c), which points forward to the question again.
#[test]
fn two_pointer_loop() {
    let mut msg = header(0xc00c, 0x0100, [1, 0, 0, 0]);
    msg.extend_from_slice(&[0xc0, 0x00, 0, 1, 0, 1]);
    assert_eq!(
        Message::parse(&msg).map(|_| ()),
        Err(WireError::PointerLoop)
    );
    assert_eq!(
        parse_query(&msg).map(|_| ()),
        Err(QueryError::FormErr {
            id: 0xc00c,
            flags: 0x0100
        })
    );
    // Directly: at 16 a pointer to 14, at 14 a pointer back to 16.
    let mut buf = vec![0u8; 14];
    buf.extend_from_slice(&[0xc0, 0x10, 0xc0, 0x0e]);
    assert_eq!(
        Name::parse(&buf, 16).map(|_| ()),
        Err(WireError::PointerLoop)
    );
    assert_eq!(
        Name::parse(&buf, 14).map(|_| ()),
        Err(WireError::BadPointer)
    );
}

/// A pointer to a later offset (forward) is BadPointer, even if a valid name sits there.
#[test]
fn forward_pointer() {
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(&[0xc0, 0x12, 0, 1, 0, 1, 1, b'a', 0]);
    assert_eq!(Message::parse(&msg).map(|_| ()), Err(WireError::BadPointer));
    // In an rdata: a CNAME target pointing past itself.
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 1, 0, 2, 0xc0, 0x30]);
    expect_formerr(&msg, WireError::BadPointer);
}

/// A chain of more than MAX_POINTER_HOPS backward pointers is a PointerLoop; a shorter one is fine.
#[test]
fn pointer_hop_limit() {
    // buf[0] = root; buf[2k] = pointer to 2(k-1).
    let mut buf = vec![0u8, 0];
    for k in 1..=200u16 {
        buf.extend_from_slice(&(0xc000 | (2 * (k - 1))).to_be_bytes());
    }
    let (name, end) = Name::parse(&buf, 2 * 100).expect("100 hops is fine");
    assert!(name.is_root());
    assert_eq!(end, 202);
    assert_eq!(
        Name::parse(&buf, 2 * 200).map(|_| ()),
        Err(WireError::PointerLoop)
    );
}

/// QDCOUNT 0 and 2 are FORMERR for the server (Message::parse itself accepts them).
#[test]
fn qdcount_not_one() {
    let msg = header(0xabcd, 0x0100, [0, 0, 0, 0]);
    assert!(Message::parse(&msg).is_ok());
    assert_eq!(parse_query(&msg).map(|_| ()), Err(FORMERR));
    let mut msg = header(0xabcd, 0x0100, [2, 0, 0, 0]);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(QUESTION);
    assert_eq!(Message::parse(&msg).map(|m| m.questions().count()), Ok(2));
    assert_eq!(parse_query(&msg).map(|_| ()), Err(FORMERR));
}

/// Two OPT records are BadOpt.
#[test]
fn opt_twice() {
    let mut msg = query_header(0, 0, 2);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&opt_record(&[0]));
    msg.extend_from_slice(&opt_record(&[0]));
    expect_formerr(&msg, WireError::BadOpt);
}

/// An OPT whose owner is not the root is BadOpt.
#[test]
fn opt_non_root_owner() {
    let mut msg = query_header(0, 0, 1);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&opt_record(&[0xc0, 0x0c]));
    expect_formerr(&msg, WireError::BadOpt);
}

/// An OPT in the answer (or authority) section is BadOpt.
#[test]
fn opt_in_answer() {
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&opt_record(&[0]));
    expect_formerr(&msg, WireError::BadOpt);
    let mut msg = query_header(0, 1, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&opt_record(&[0]));
    expect_formerr(&msg, WireError::BadOpt);
}

/// An OPT option whose length runs past the rdata is BadOpt.
#[test]
fn opt_bad_option() {
    let mut msg = query_header(0, 0, 1);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 8, 1]);
    expect_formerr(&msg, WireError::BadOpt);
}

/// An RDLENGTH running past the end of the message is Truncated.
#[test]
fn rdlength_past_end() {
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&A_RECORD[..A_RECORD.len() - 1]);
    expect_formerr(&msg, WireError::Truncated);
}

/// Name-bearing rdata must match its layout: extra bytes are TrailingBytes, missing ones Truncated.
#[test]
fn rdata_layout_checked() {
    // CNAME whose rdata holds a name plus one extra byte.
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 1, 0, 3, 0xc0, 0x0c, 0xff]);
    expect_formerr(&msg, WireError::TrailingBytes);
    // MX with only one byte of preference.
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0, 1, 0, 1, 0]);
    expect_formerr(&msg, WireError::Truncated);
    // NS whose name runs past RDLENGTH (into the next bytes of the message).
    let mut msg = query_header(1, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0xc0, 0x0c, 0, 2, 0, 1, 0, 0, 0, 1, 0, 2, 1, b'a', 0]);
    expect_formerr(&msg, WireError::Truncated);
}

/// Bytes after the last declared record are TrailingBytes (FORMERR for the server).
#[test]
fn trailing_garbage() {
    let mut msg = query_header(0, 0, 0);
    msg.extend_from_slice(QUESTION);
    msg.push(0);
    expect_formerr(&msg, WireError::TrailingBytes);
    let mut msg = query_header(1, 0, 1);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(A_RECORD);
    msg.extend_from_slice(&opt_record(&[0]));
    msg.extend_from_slice(&[1, 2, 3]);
    expect_formerr(&msg, WireError::TrailingBytes);
    // Without the garbage the same query is accepted, answer record and all.
    msg.truncate(msg.len() - 3);
    let q = parse_query(&msg).expect("valid");
    assert_eq!(q.opt.map(|o| o.udp_payload), Some(1232));
}

/// A response (QR=1) sent to the server is dropped, however malformed the rest is.
#[test]
fn qr_set_dropped() {
    let mut msg = header(1, 0x8100, [1, 0, 0, 0]);
    msg.extend_from_slice(QUESTION);
    assert_eq!(parse_query(&msg).map(|_| ()), Err(QueryError::Drop));
    let msg = header(1, 0x8000, [5, 5, 5, 5]);
    assert_eq!(parse_query(&msg).map(|_| ()), Err(QueryError::Drop));
}

/// Opcode 2 (STATUS) is NOTIMP with the query's id and flags, before anything else is checked.
#[test]
fn opcode_two_not_implemented() {
    let flags = (2 << 11) | 0x0100;
    let mut msg = header(0x4242, flags, [1, 0, 0, 0]);
    msg.extend_from_slice(QUESTION);
    assert_eq!(
        parse_query(&msg).map(|_| ()),
        Err(QueryError::NotImp { id: 0x4242, flags })
    );
    let msg = header(0x4242, flags, [0, 0, 0, 0]);
    assert_eq!(
        parse_query(&msg).map(|_| ()),
        Err(QueryError::NotImp { id: 0x4242, flags })
    );
}
