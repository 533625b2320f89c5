//! Fuzz the server's one-pass query parser: never panics, classifies like the header says, and
//! an accepted query is consistent with the bytes (the question re-encodes to the same bytes).

#![no_main]

use heimdall_fuzz::{check_message, check_name};
use heimdall_wire::{HEADER_LEN, Header, Message, MessageWriter, QueryError, parse_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_query(data);
    let Ok(header) = Header::parse(data) else {
        assert_eq!(parsed.err(), Some(QueryError::Drop), "runt not dropped");
        return;
    };
    let (id, flag_word) = (header.id, header.flags);
    let query = match parsed {
        Ok(query) => query,
        Err(QueryError::Drop) => {
            assert!(header.qr(), "a query-shaped header was dropped");
            return;
        }
        Err(QueryError::NotImp { id: i, flags: f }) => {
            assert!(!header.qr() && header.opcode() != 0);
            assert_eq!((i, f), (id, flag_word));
            return;
        }
        Err(QueryError::FormErr { id: i, flags: f }) => {
            assert!(!header.qr() && header.opcode() == 0);
            assert_eq!((i, f), (id, flag_word));
            // FORMERR only for what the full validator also rejects.
            let valid = Message::parse(data).is_ok_and(|m| m.validate().is_ok());
            assert!(header.qdcount != 1 || !valid, "valid query got FORMERR");
            return;
        }
    };

    assert_eq!(query.header, header);
    assert!(!header.qr() && header.opcode() == 0 && header.qdcount == 1);
    let q = query.question;
    assert_eq!(q.start, HEADER_LEN);
    assert!(q.end <= data.len() && q.start < q.end);
    let wire = check_name(&q.name);
    assert_eq!(
        [q.qtype.to_be_bytes(), q.qclass.to_be_bytes()].concat(),
        &data[q.end - 4..q.end]
    );

    // Re-encode the question: identical bytes unless the name used a compression pointer
    // (into the header, the only bytes before it). In place a compressed name is its leading
    // labels and 2 pointer bytes, standing for a suffix of 1 (root) or at least 3 bytes, so
    // its in-place length never equals the decoded one.
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("512 bytes hold a header");
    w.set_header(id, flag_word);
    w.question(&wire, q.qtype, q.qclass)
        .expect("a parsed question re-encodes");
    let len = w.finish();
    let in_place = q.end - 4 - q.start;
    if in_place == wire.len() {
        assert_eq!(
            &buf[HEADER_LEN..len],
            &data[q.start..q.end],
            "question re-encoding"
        );
    } else {
        assert!(
            in_place <= wire.len() + 1,
            "compressed name longer in place than decoded"
        );
    }

    if let Some(opt) = query.opt {
        assert!(q.end <= opt.start && opt.start < opt.end && opt.end <= data.len());
        assert!(opt.options().all(|o| o.is_ok()));
    }

    let msg = Message::parse(data).expect("an accepted query parses as a message");
    assert!(check_message(&msg), "an accepted query does not validate");
});
