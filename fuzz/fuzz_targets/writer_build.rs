//! Fuzz the response writer on structured input: a message built from arbitrary names (sharing
//! suffixes, mixed case) and records of the name-bearing types is written with compression,
//! parsed back, and must hold exactly the names, records and rdata that were written.

#![no_main]

use heimdall_fuzz::{check_message, labels_wire, rdata_uncompressed};
use heimdall_wire::{
    MAX_LABEL_LEN, MAX_NAME_LEN, Message, MessageWriter, Section, WireError, class, rtype,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// A name to build: its own leading labels, then (optionally) an earlier name as its suffix.
#[derive(Arbitrary, Debug)]
struct NameSpec {
    /// Leading labels (emptied ones are dropped, long ones cut to 63 bytes).
    labels: Vec<Vec<u8>>,
    /// Index of an earlier name to append, so names share suffixes.
    parent: Option<u8>,
}

/// The rdata of one record, with names given as indexes into the name pool.
#[derive(Arbitrary, Debug)]
enum Rdata {
    /// An IPv4 address.
    A([u8; 4]),
    /// One name (NS, CNAME, PTR, MB, MG, MR, MD, MF by the selector).
    OneName(u8, u8),
    /// Preference and exchange (MX, AFSDB, RT by the selector).
    PreferenceName(u8, u16, u8),
    /// SOA: two names and the five counters.
    Soa(u8, u8, [u8; 20]),
    /// Two names (MINFO, RP by the selector).
    TwoNames(u8, u8, u8),
    /// SRV: priority, weight, port and target.
    Srv([u8; 6], u8),
    /// Opaque rdata of a type without embedded names.
    Opaque(u16, Vec<u8>),
}

/// One record to write.
#[derive(Arbitrary, Debug)]
struct RecordSpec {
    /// Section selector (answer, authority, additional).
    section: u8,
    /// Owner name index.
    owner: u8,
    /// Record class.
    rclass: u16,
    /// TTL.
    ttl: u32,
    /// Type and rdata.
    rdata: Rdata,
}

/// The whole message to write.
#[derive(Arbitrary, Debug)]
struct Input {
    /// Header id and flags.
    id: u16,
    /// Header flags word.
    flags: u16,
    /// The name pool.
    names: Vec<NameSpec>,
    /// The question: name index and type.
    question: Option<(u8, u16)>,
    /// The records (sorted into section order before writing).
    records: Vec<RecordSpec>,
    /// An OPT record: payload size, extended rcode, version, flags and option bytes.
    opt: Option<(u16, u8, u8, u16, Vec<u8>)>,
}

/// Record types whose rdata holds names (the writer parses those), and OPT.
const NAMED_TYPES: &[u16] = &[
    rtype::NS,
    rtype::MD,
    rtype::MF,
    rtype::CNAME,
    rtype::SOA,
    rtype::MB,
    rtype::MG,
    rtype::MR,
    rtype::PTR,
    rtype::MINFO,
    rtype::MX,
    rtype::RP,
    rtype::AFSDB,
    rtype::RT,
    rtype::PX,
    rtype::SRV,
    rtype::NAPTR,
    rtype::SIG,
    rtype::NXT,
    rtype::OPT,
];

/// Build the uncompressed names of the pool (the root is always name 0).
fn build_names(specs: &[NameSpec]) -> Vec<Vec<u8>> {
    let mut names = vec![vec![0u8]];
    for spec in specs {
        let suffix = spec
            .parent
            .and_then(|p| names.get(usize::from(p)))
            .cloned()
            .unwrap_or_else(|| vec![0]);
        let mut name = Vec::new();
        for label in spec.labels.iter().filter(|l| !l.is_empty()) {
            let label = &label[..label.len().min(MAX_LABEL_LEN)];
            if name.len() + 1 + label.len() + suffix.len() > MAX_NAME_LEN {
                break;
            }
            name.push(u8::try_from(label.len()).expect("cut to 63"));
            name.extend_from_slice(label);
        }
        name.extend_from_slice(&suffix);
        names.push(name);
    }
    names
}

/// Pick a name of the pool by index (wrapping).
fn pick(names: &[Vec<u8>], index: u8) -> &[u8] {
    &names[usize::from(index) % names.len()]
}

/// The record type and uncompressed rdata of `rdata`.
fn encode(names: &[Vec<u8>], rdata: &Rdata) -> (u16, Vec<u8>) {
    match rdata {
        Rdata::A(addr) => (rtype::A, addr.to_vec()),
        Rdata::OneName(which, n) => {
            let types = [
                rtype::NS,
                rtype::CNAME,
                rtype::PTR,
                rtype::MB,
                rtype::MG,
                rtype::MR,
                rtype::MD,
                rtype::MF,
            ];
            (
                types[usize::from(*which) % types.len()],
                pick(names, *n).to_vec(),
            )
        }
        Rdata::PreferenceName(which, pref, n) => {
            let types = [rtype::MX, rtype::AFSDB, rtype::RT];
            let mut out = pref.to_be_bytes().to_vec();
            out.extend_from_slice(pick(names, *n));
            (types[usize::from(*which) % types.len()], out)
        }
        Rdata::Soa(m, r, counters) => {
            let mut out = pick(names, *m).to_vec();
            out.extend_from_slice(pick(names, *r));
            out.extend_from_slice(counters);
            (rtype::SOA, out)
        }
        Rdata::TwoNames(which, a, b) => {
            let mut out = pick(names, *a).to_vec();
            out.extend_from_slice(pick(names, *b));
            (
                if which % 2 == 0 {
                    rtype::MINFO
                } else {
                    rtype::RP
                },
                out,
            )
        }
        Rdata::Srv(fixed, n) => {
            let mut out = fixed.to_vec();
            out.extend_from_slice(pick(names, *n));
            (rtype::SRV, out)
        }
        Rdata::Opaque(t, bytes) => {
            let t = if NAMED_TYPES.contains(t) {
                0xff00 | t
            } else {
                *t
            };
            (t, bytes.clone())
        }
    }
}

fuzz_target!(|input: Input| {
    let names = build_names(&input.names);
    let mut records: Vec<_> = input
        .records
        .iter()
        .map(|r| {
            let section = [Section::Answer, Section::Authority, Section::Additional]
                [usize::from(r.section % 3)];
            let (t, rdata) = encode(&names, &r.rdata);
            (
                section,
                pick(&names, r.owner).to_vec(),
                t,
                r.rclass,
                r.ttl,
                rdata,
            )
        })
        .collect();
    records.sort_by_key(|r| r.0);

    // Expected items as (section tag, owner, type, class, ttl, rdata), in written order.
    let mut expected = Vec::new();
    let mut naive = heimdall_wire::HEADER_LEN;
    let mut buf = vec![0u8; u16::MAX as usize];
    let mut w = MessageWriter::new(&mut buf).expect("64 KiB hold a header");
    w.set_header(input.id, input.flags);
    let outcome = (|| {
        if let Some((n, qtype)) = input.question {
            let name = pick(&names, n);
            w.question(name, qtype, class::IN)?;
            expected.push((0u8, name.to_vec(), qtype, class::IN, 0, Vec::new()));
            naive += name.len() + 4;
        }
        for (section, owner, t, rclass, ttl, rdata) in &records {
            w.record(*section, owner, *t, *rclass, *ttl, rdata)?;
            expected.push((
                1 + *section as u8,
                owner.clone(),
                *t,
                *rclass,
                *ttl,
                rdata.clone(),
            ));
            naive += owner.len() + 10 + rdata.len();
        }
        if let Some((payload, ext, version, flags, options)) = &input.opt {
            w.opt(*payload, *ext, *version, *flags, options)?;
            // OPT options must be well-formed for the message to validate; record it either way.
            let ttl = u32::from_be_bytes([*ext, *version, (flags >> 8) as u8, *flags as u8]);
            expected.push((3, vec![0], rtype::OPT, *payload, ttl, options.clone()));
            naive += 11 + options.len();
        }
        Ok(())
    })();
    match outcome {
        Ok(()) | Err(WireError::NoSpace) => {}
        Err(e) => panic!("writing well-formed input failed: {e}"),
    }
    let len = w.finish();
    assert!(
        len <= naive,
        "compressed message ({len}) longer than uncompressed ({naive})"
    );

    let msg = Message::parse(&buf[..len]).expect("writer output parses");
    let valid = check_message(&msg);
    let mut got = Vec::new();
    for q in msg.questions() {
        got.push((0u8, labels_wire(&q.name), q.qtype, q.qclass, 0, Vec::new()));
    }
    for rec in msg.records() {
        let rec = rec.expect("every written record parses");
        let rdata = rdata_uncompressed(&msg, &rec).expect("written rdata decompresses");
        got.push((
            1 + rec.section as u8,
            labels_wire(&rec.name),
            rec.rtype,
            rec.rclass,
            rec.ttl,
            rdata,
        ));
    }
    assert_eq!(
        got, expected,
        "parsed message differs from what was written"
    );
    let bad_opt = input.opt.as_ref().is_some_and(|o| {
        heimdall_wire::Opt {
            udp_payload: 0,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: &o.4,
            start: 0,
            end: 0,
        }
        .options()
        .any(|r| r.is_err())
    });
    assert!(valid || bad_opt, "writer output does not validate");
});
