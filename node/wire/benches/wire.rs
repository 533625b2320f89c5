//! Micro-benchmarks of the per-query wire work: query parse, response parse, name lower-casing
//! and response writing.
//!
//! `cargo bench -p heimdall-wire` runs them under criterion (`-- <filter>` selects some).
//! For repeatable instruction counts, set `BENCH_ITERS` and run the bench executable under
//! callgrind: it then runs each selected case that many times without criterion, e.g.
//! `BENCH_ITERS=100000 valgrind --tool=callgrind target/release/deps/wire-<hash> write_lower`.

use std::hint::black_box;

use criterion::Criterion;
use heimdall_wire::{
    Message, MessageWriter, Name, Section, class, flags, lower_ascii_in_place, name_from_str,
    parse_query, rtype,
};

/// One iteration of a workload, returning a value that depends on the work.
type Run = Box<dyn FnMut() -> usize>;

/// One named workload. Its setup runs only when the case is selected.
struct Case {
    /// The criterion benchmark id (and the `BENCH_ITERS` filter target).
    name: String,
    /// Builds the inputs and returns the iteration.
    setup: Box<dyn FnOnce() -> Run>,
}

impl Case {
    /// A case named `name` whose `setup` returns the iteration to measure.
    fn new<R: FnMut() -> usize + 'static>(
        name: impl Into<String>,
        setup: impl FnOnce() -> R + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            setup: Box::new(move || Box::new(setup()) as Run),
        }
    }
}

/// A presentation name in uncompressed wire form.
fn wire_name(s: &str) -> Vec<u8> {
    let mut buf = [0u8; 255];
    let len = name_from_str(s, &mut buf).expect("bench names are valid");
    buf[..len].to_vec()
}

/// A validated name over leaked bytes, so `'static` cases can hold it.
fn static_name(s: &str) -> Name<'static> {
    Name::from_wire(wire_name(s).leak()).expect("bench names are valid")
}

/// A short name, as most queries carry (17 bytes).
const SHORT_NAME: &str = "www.Example.com";
/// A name under one word and a half (12 bytes).
const MEDIUM_NAME: &str = "Google.com";
/// A top-level domain (5 bytes, under one word).
const TINY_NAME: &str = "COM";
/// An IPv6 reverse name: 34 one-byte labels (74 bytes), the worst case for label-at-a-time work.
const REVERSE_NAME: &str =
    "B.A.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa";

/// The names the name benchmarks run on, with their case ids.
fn sized_names() -> Vec<(&'static str, String)> {
    vec![
        ("tiny_5B", TINY_NAME.to_string()),
        ("medium_12B", MEDIUM_NAME.to_string()),
        ("short_17B", SHORT_NAME.to_string()),
        ("reverse_74B", REVERSE_NAME.to_string()),
        ("max_255B", max_name()),
    ]
}

/// The longest name: three 63-byte labels and a 61-byte one (255 bytes), mixed case.
fn max_name() -> String {
    let label = "AbCdEfGhIj".repeat(7);
    format!("{0}.{0}.{0}.{1}", &label[..63], &"Zz".repeat(31)[..61])
}

/// A typical stub query: `www.Example.com` A with RD, and EDNS (1232 bytes, a client cookie).
fn typical_query() -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("room");
    w.set_header(0x1234, flags::RD | flags::AD);
    w.question(&wire_name(SHORT_NAME), rtype::A, class::IN)
        .expect("room");
    // COOKIE option (code 10) with an 8-byte client cookie, as dig sends.
    let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    w.opt(1232, 0, 0, 0, &cookie).expect("room");
    let len = w.finish();
    buf[..len].to_vec()
}

/// A typical upstream answer with compression: `www.Example.com` CNAME `web.example.com`, two A
/// records for it, and an OPT record.
fn typical_response() -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("room");
    write_response(&mut w, &response_parts());
    let len = w.finish();
    buf[..len].to_vec()
}

/// The names and record data of the typical response.
struct ResponseParts {
    /// The question name, uncompressed.
    qname: Vec<u8>,
    /// The CNAME target, uncompressed.
    target: Vec<u8>,
}

/// Build the parts of the typical response once.
fn response_parts() -> ResponseParts {
    ResponseParts {
        qname: wire_name(SHORT_NAME),
        target: wire_name("web.example.com"),
    }
}

/// Write the typical response with `w`: header, question, CNAME, two A, OPT (errors ignored:
/// every caller's buffer is large enough).
fn write_response(w: &mut MessageWriter<'_>, parts: &ResponseParts) {
    w.set_header(0x1234, flags::QR | flags::RD | flags::RA);
    let _ = w.question(&parts.qname, rtype::A, class::IN);
    let _ = w.record(
        Section::Answer,
        &parts.qname,
        rtype::CNAME,
        class::IN,
        300,
        &parts.target,
    );
    let _ = w.record(
        Section::Answer,
        &parts.target,
        rtype::A,
        class::IN,
        60,
        &[192, 0, 2, 1],
    );
    let _ = w.record(
        Section::Answer,
        &parts.target,
        rtype::A,
        class::IN,
        60,
        &[192, 0, 2, 2],
    );
    let _ = w.opt(1232, 0, 0, 0, &[]);
}

/// Every benchmark case (inputs are built when a case is set up).
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    cases.push(Case::new("parse_query/typical_edns", || {
        let query = typical_query();
        move || match parse_query(black_box(&query)) {
            Ok(q) => q.question.end + usize::from(q.opt.is_some()),
            Err(_) => 0,
        }
    }));

    cases.push(Case::new("parse_response/validate_records", || {
        let response = typical_response();
        move || {
            let Ok(msg) = Message::parse(black_box(&response)) else {
                return 0;
            };
            let opt = msg.validate().ok().flatten().map_or(0, |o| o.end);
            let records: usize = msg.records().flatten().map(|r| r.rdata.len()).sum();
            opt + records
        }
    }));

    for (size, text) in sized_names() {
        cases.push(Case::new(format!("write_lower/{size}"), move || {
            let name = static_name(&text);
            let mut out = [0u8; 255];
            move || black_box(name).write_lower(&mut out).unwrap_or(0) + usize::from(out[1])
        }));
    }

    // A compressed owner name: the last A record's owner is a pointer to the CNAME target,
    // which sits in the CNAME rdata and ends with a pointer to the question's "example.com".
    cases.push(Case::new("write_lower/compressed_owner", || {
        let response: &'static [u8] = typical_response().leak();
        let owner = Message::parse(response)
            .ok()
            .and_then(|m| m.records().nth(2))
            .and_then(Result::ok)
            .map(|r| r.name)
            .expect("the typical response has three answers");
        let mut out = [0u8; 255];
        move || black_box(owner).write_lower(&mut out).unwrap_or(0) + usize::from(out[1])
    }));

    // Copy, then lower in place: the pattern that makes wide loads wait on narrower stores.
    for (size, text) in sized_names() {
        cases.push(Case::new(
            format!("lower_ascii_in_place/{size}"),
            move || {
                let wire = wire_name(&text);
                let mut buf = wire.clone();
                move || {
                    buf.copy_from_slice(black_box(&wire));
                    lower_ascii_in_place(black_box(&mut buf));
                    usize::from(buf[1])
                }
            },
        ));
    }

    for (size, text) in sized_names() {
        cases.push(Case::new(format!("eq_ignore_case/{size}"), move || {
            let a = static_name(&text);
            let b = static_name(&text.to_ascii_lowercase());
            move || usize::from(black_box(a).eq_ignore_case(&black_box(b)))
        }));
    }

    cases.push(Case::new("message_writer/small_response", || {
        let parts = response_parts();
        let mut buf = [0u8; 512];
        move || {
            let Ok(mut w) = MessageWriter::new(&mut buf) else {
                return 0;
            };
            write_response(&mut w, black_box(&parts));
            w.finish()
        }
    }));

    cases
}

/// Run every case `iters` times whose name contains `filter` (no criterion; for callgrind).
fn count_mode(iters: u64, filter: Option<&str>) {
    for case in cases() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let mut run = (case.setup)();
        let mut sum = 0usize;
        for _ in 0..iters {
            sum = sum.wrapping_add(run());
        }
        println!("{}: {iters} iterations (checksum {sum})", case.name);
    }
}

/// Criterion unless `BENCH_ITERS` asks for the fixed-count mode.
fn main() {
    if let Some(iters) = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        count_mode(iters, filter.as_deref());
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    for case in cases() {
        let mut run = (case.setup)();
        criterion.bench_function(&case.name, |b| b.iter(&mut run));
    }
    criterion.final_summary();
}
