//! Fuzz the response writer on parsed input: every valid message is written again with
//! MessageWriter (names decompressed and re-compressed), and the result parses to the same
//! questions and records; writing it once more gives identical bytes; and a writer that runs
//! out of space mid-message still finishes a valid message holding a prefix of the records.

#![no_main]

use heimdall_fuzz::{check_message, labels_wire, rdata_uncompressed};
use heimdall_wire::{HEADER_LEN, Message, MessageWriter, WireError, opt_from_record, rtype};
use libfuzzer_sys::fuzz_target;

/// Largest DNS message (TCP length prefix).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// One question or record reduced to comparable parts: section tag, uncompressed owner, type,
/// class, TTL and uncompressed rdata.
type Item = (u8, Vec<u8>, u16, u16, u32, Vec<u8>);

/// Every question and record of a validated message, in order.
fn items(msg: &Message<'_>) -> Vec<Item> {
    let mut out: Vec<Item> = msg
        .questions()
        .map(|q| (0, labels_wire(&q.name), q.qtype, q.qclass, 0, Vec::new()))
        .collect();
    for rec in msg.records() {
        let rec = rec.expect("a validated message has only good records");
        let rdata = rdata_uncompressed(msg, &rec).expect("a validated rdata decompresses");
        let tag = 1 + rec.section as u8;
        out.push((
            tag,
            labels_wire(&rec.name),
            rec.rtype,
            rec.rclass,
            rec.ttl,
            rdata,
        ));
    }
    out
}

/// Write `msg` into `buf` until the first call that does not fit; returns the finished length
/// and how many questions and records were written. Any error but NoSpace is a bug.
fn rewrite(msg: &Message<'_>, buf: &mut [u8]) -> Option<(usize, usize)> {
    let header = msg.header();
    let mut w = MessageWriter::new(buf).ok()?;
    w.set_header(header.id, header.flags);
    let mut written = 0;
    let outcome = (|| {
        for q in msg.questions() {
            w.question(&labels_wire(&q.name), q.qtype, q.qclass)?;
            written += 1;
        }
        for rec in msg.records() {
            let rec = rec.expect("a validated message has only good records");
            if rec.rtype == rtype::OPT {
                let opt = opt_from_record(&rec).expect("validate decoded this OPT");
                w.opt(
                    opt.udp_payload,
                    opt.ext_rcode,
                    opt.version,
                    opt.flags,
                    opt.options,
                )?;
            } else {
                w.copy_record(msg, &rec, rec.ttl)?;
            }
            written += 1;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) | Err(WireError::NoSpace) => Some((w.finish(), written)),
        Err(e) => panic!("writing a validated message failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    if !check_message(&msg) {
        return;
    }
    let original = items(&msg);

    let mut first = vec![0u8; MAX_MESSAGE];
    let Some((len, written)) = rewrite(&msg, &mut first) else {
        return;
    };
    let copy = Message::parse(&first[..len]).expect("writer output parses");
    assert!(check_message(&copy), "writer output does not validate");
    assert_eq!(copy.header().id, msg.header().id);
    assert_eq!(copy.header().flags, msg.header().flags);
    let copied = items(&copy);
    assert_eq!(
        copied[..],
        original[..written],
        "records changed in the round trip"
    );
    if written < original.len() {
        // Decompressed names outgrew 64 KiB; the prefix was checked above.
        return;
    }

    let mut second = vec![0u8; MAX_MESSAGE];
    let (len2, _) = rewrite(&copy, &mut second).expect("a 64 KiB buffer holds a header");
    assert_eq!(
        &second[..len2],
        &first[..len],
        "second write differs from the first"
    );

    // A small buffer: the writer rolls back the call that does not fit, and what it finished
    // is a valid message with a prefix of the records.
    let size = HEADER_LEN + usize::from(msg.header().id) % 512;
    let mut small = vec![0u8; size];
    let (len3, written3) = rewrite(&msg, &mut small).expect("the buffer holds a header");
    let partial = Message::parse(&small[..len3]).expect("truncated output parses");
    assert!(
        check_message(&partial),
        "truncated output does not validate"
    );
    assert_eq!(items(&partial)[..], original[..written3]);
});
