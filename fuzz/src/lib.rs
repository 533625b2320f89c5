//! Shared invariant checks for the fuzz targets: each walks a parsed view and panics (which
//! libFuzzer reports as a crash) when the view contradicts itself or the input bytes.

use heimdall_wire::{MAX_LABEL_LEN, MAX_NAME_LEN, Message, Name, Record, name_from_str, rtype};

/// The uncompressed wire form of `name`, rebuilt label by label (the reference every other
/// decoder is compared with).
pub fn labels_wire(name: &Name<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.wire_len());
    for label in name.labels() {
        assert!(
            (1..=MAX_LABEL_LEN).contains(&label.len()),
            "label of {} bytes in {name}",
            label.len()
        );
        out.push(u8::try_from(label.len()).expect("label length checked above"));
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// Check every decoder of one name against the label walk; returns its uncompressed form.
///
/// Checked: the name fits 255 bytes, `wire_len` and `label_count` match the labels, the
/// piecewise writers (`write_uncompressed`, `write_lower`) match the labels, the presentation
/// form parses back to the same bytes, and the name equals itself and its uncompressed copy
/// ignoring case.
pub fn check_name(name: &Name<'_>) -> Vec<u8> {
    let wire = labels_wire(name);
    assert!(wire.len() <= MAX_NAME_LEN, "name of {} bytes", wire.len());
    assert_eq!(wire.len(), name.wire_len(), "wire_len of {name}");
    assert_eq!(name.label_count(), name.labels().count());
    assert_eq!(name.is_root(), wire.len() == 1);

    let mut out = [0u8; MAX_NAME_LEN];
    let n = name
        .write_uncompressed(&mut out)
        .expect("a parsed name fits 255 bytes");
    assert_eq!(&out[..n], &wire[..], "write_uncompressed of {name}");
    let n = name
        .write_lower(&mut out)
        .expect("a parsed name fits 255 bytes");
    assert_eq!(
        &out[..n],
        &wire.to_ascii_lowercase()[..],
        "write_lower of {name}"
    );
    if wire.len() > 1 {
        let short = wire.len() - 1;
        assert!(name.write_uncompressed(&mut out[..short]).is_err());
        assert!(name.write_lower(&mut out[..short]).is_err());
    }

    let text = name.to_string();
    let mut back = [0u8; MAX_NAME_LEN];
    let n = name_from_str(&text, &mut back).expect("Display output parses back");
    assert_eq!(&back[..n], &wire[..], "presentation round trip of {text}");

    let copy = Name::from_wire(&wire).expect("the uncompressed form is a valid name");
    assert_eq!(copy.wire_len(), wire.len());
    assert!(name.eq_ignore_case(name), "{name} differs from itself");
    assert!(name.eq_ignore_case(&copy) && copy.eq_ignore_case(name));
    wire
}

/// Check that the case-insensitive comparison of two names agrees with comparing their
/// lower-cased uncompressed forms (the fast path against the reference).
pub fn check_name_pair(a: &Name<'_>, b: &Name<'_>) {
    let expected = labels_wire(a).eq_ignore_ascii_case(&labels_wire(b));
    assert_eq!(a.eq_ignore_case(b), expected, "eq_ignore_case({a}, {b})");
    assert_eq!(b.eq_ignore_case(a), expected, "eq_ignore_case({b}, {a})");
}

/// The record's rdata with embedded names decompressed, or None when the layout does not
/// hold (only possible for records that `Record::parse` accepted with an empty rdata).
pub fn rdata_uncompressed(msg: &Message<'_>, rec: &Record<'_>) -> Option<Vec<u8>> {
    // At most two names per layout, each at least one byte in place and 255 decompressed.
    let mut out = vec![0u8; rec.rdata.len() + 2 * MAX_NAME_LEN];
    let n = rec.write_rdata_uncompressed(msg, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// Check one parsed record: its offsets lie inside the message and in order, the rdata slice
/// is the bytes between them, its names decode, and an OPT decodes with bounded options.
pub fn check_record(msg: &Message<'_>, rec: &Record<'_>) {
    let bytes = msg.bytes();
    assert!(rec.start < rec.ttl_offset && rec.ttl_offset + 6 == rec.rdata_offset);
    assert!(rec.rdata_offset <= rec.end && rec.end <= bytes.len());
    assert_eq!(rec.rdata, &bytes[rec.rdata_offset..rec.end]);
    assert_eq!(
        rec.ttl.to_be_bytes(),
        bytes[rec.ttl_offset..rec.ttl_offset + 4]
    );
    check_name(&rec.name);
    let rdata = rdata_uncompressed(msg, rec).expect("a parsed record's rdata decompresses");
    if rec.rdata.is_empty() {
        assert!(rdata.is_empty());
    }
    if rec.rtype == rtype::OPT
        && let Ok(opt) = heimdall_wire::opt_from_record(rec)
    {
        assert_eq!((opt.start, opt.end), (rec.start, rec.end));
        let mut used = 0;
        for option in opt.options() {
            let (_, value) = option.expect("opt_from_record validated the options");
            used += 4 + value.len();
        }
        assert_eq!(used, opt.options.len());
    }
}

/// Walk a parsed message the way the node reads an upstream reply: header, every question,
/// every record lazily (stopping at the first error), then `validate`. Returns whether the
/// message validated.
pub fn check_message(msg: &Message<'_>) -> bool {
    let bytes = msg.bytes();
    let header = msg.header();
    assert_eq!(heimdall_wire::Header::parse(bytes), Ok(header));
    assert!(msg.records_offset() <= bytes.len());

    let questions: Vec<_> = msg.questions().collect();
    assert_eq!(questions.len(), usize::from(header.qdcount));
    let mut expected_start = heimdall_wire::HEADER_LEN;
    for q in &questions {
        assert_eq!(q.start, expected_start);
        assert!(q.end <= bytes.len());
        check_name(&q.name);
        expected_start = q.end;
    }
    assert_eq!(expected_start, msg.records_offset());
    if let Some(first) = msg.question() {
        assert_eq!(first.start, heimdall_wire::HEADER_LEN);
    }

    let total =
        usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
    let mut records = msg.records();
    let mut seen = 0;
    let mut all_ok = true;
    let mut previous_end = msg.records_offset();
    for rec in records.by_ref() {
        seen += 1;
        assert!(seen <= total, "more records than the header declares");
        let Ok(rec) = rec else {
            all_ok = false;
            continue;
        };
        assert_eq!(rec.start, previous_end);
        previous_end = rec.end;
        check_record(msg, &rec);
        if let Some(q) = questions.first() {
            check_name_pair(&q.name, &rec.name);
        }
    }
    assert!(records.next().is_none(), "records resumed after the end");
    if all_ok {
        assert_eq!(seen, total);
    }
    let validated = msg.validate();
    if validated.is_ok() {
        assert!(all_ok, "validate accepted a message with a bad record");
        assert_eq!(previous_end, bytes.len());
    }
    validated.is_ok()
}
