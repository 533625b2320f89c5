//! Fuzz-style robustness: random bytes and mutated valid messages never make the parser, the
//! validator, the query path, Display or copy_record panic.

use std::fmt::Write as _;

use heimdall_wire::{Message, MessageWriter, Name, parse_query, rtype};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::vectors::{QUERY_WITH_EDNS, RESPONSE};

/// Inputs per kind (random bytes, mutated messages).
const ROUNDS: usize = 50_000;

/// Exercise every entry point on `bytes`; returns true if the message validated.
fn exercise(bytes: &[u8], text: &mut String) -> bool {
    let _ = parse_query(bytes);
    let Ok(msg) = Message::parse(bytes) else {
        return false;
    };
    let mut show = |name: &Name<'_>| {
        text.clear();
        let _ = write!(text, "{name}");
        let mut out = [0u8; 255];
        let _ = name.write_lower(&mut out);
    };
    for q in msg.questions() {
        show(&q.name);
    }
    for rec in msg.records() {
        let Ok(rec) = rec else { break };
        show(&rec.name);
        let mut out = [0u8; 65535];
        let _ = rec.write_rdata_uncompressed(&msg, &mut out);
    }
    let valid = msg.validate().is_ok();
    // Copy whatever records parse into a small writer: errors are fine, panics are not.
    let mut buf = [0u8; 300];
    if let Ok(mut w) = MessageWriter::new(&mut buf) {
        for rec in msg.records().map_while(Result::ok) {
            if rec.rtype != rtype::OPT {
                let _ = w.copy_record(&msg, &rec, 1);
            }
        }
        let len = w.finish();
        if valid {
            assert!(
                Message::parse(&buf[..len]).is_ok(),
                "writer output must parse"
            );
        }
    }
    valid
}

/// 50k random byte strings (random header counts, some starting like a real header) and 50k
/// mutations of valid messages go through every entry point without panicking.
#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xf022);
    let mut text = String::new();
    for _ in 0..ROUNDS {
        let len = rng.random_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if bytes.len() >= 12 && rng.random_bool(0.7) {
            // Small counts so the parser gets past the header more often.
            for i in [4, 6, 8, 10] {
                bytes[i] = 0;
                bytes[i + 1] = rng.random_range(0..4);
            }
            bytes[2] &= 0x07;
        }
        exercise(&bytes, &mut text);
    }
    let seeds: [&[u8]; 2] = [&QUERY_WITH_EDNS, &RESPONSE];
    let mut valid = 0;
    for _ in 0..ROUNDS {
        let mut bytes = seeds[rng.random_range(0..seeds.len())].to_vec();
        for _ in 0..rng.random_range(1..=4) {
            match rng.random_range(0..4) {
                0 => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                1 => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
                2 => bytes.truncate(rng.random_range(0..=bytes.len())),
                _ => {
                    let i = rng.random_range(0..=bytes.len());
                    bytes.insert(i, rng.random());
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        valid += usize::from(exercise(&bytes, &mut text));
    }
    // The mutations must leave a fair share valid, or they are not testing the deep paths.
    assert!(
        valid > ROUNDS / 20,
        "only {valid} mutated messages stayed valid"
    );
}

/// Random wire names (any byte values) survive Display -> name_from_str unchanged, and random
/// text never makes name_from_str panic.
#[test]
fn name_text_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x7e47);
    let mut text = String::new();
    for _ in 0..20_000 {
        let mut wire = Vec::new();
        for _ in 0..rng.random_range(0..6) {
            let len = rng.random_range(1..=20u8);
            wire.push(len);
            wire.extend((0..len).map(|_| rng.random::<u8>()));
        }
        wire.push(0);
        let name = Name::from_wire(&wire).expect("valid wire name");
        text.clear();
        write!(text, "{name}").expect("display");
        let mut out = [0u8; 255];
        let n = heimdall_wire::name_from_str(&text, &mut out).expect("display output parses");
        assert_eq!(&out[..n], &wire[..], "{text}");

        let len = rng.random_range(0..40);
        let random: String = (0..len)
            .map(|_| char::from(b"ab.\\0129\xff"[rng.random_range(0..9)]))
            .collect();
        let _ = heimdall_wire::name_from_str(&random, &mut out);
    }
}
