//! Fuzz name decoding with compression pointers (loops, forward pointers, long chains) at an
//! arbitrary offset, and the presentation-format parser on arbitrary text.

#![no_main]

use heimdall_fuzz::check_name;
use heimdall_wire::{MAX_NAME_LEN, Name, name_from_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where in the rest the name starts.
    let Some((&at, msg)) = data.split_first() else {
        return;
    };
    let offset = usize::from(at);
    if let Ok((name, end)) = Name::parse(msg, offset) {
        assert_eq!(name.offset(), offset);
        assert!(
            offset < end && end <= msg.len(),
            "name ends outside the input"
        );
        let wire = check_name(&name);
        // In place the name is its labels up to the first pointer (2 bytes) or the root.
        assert!(end - offset <= wire.len() + 1);
        if end - offset == wire.len() {
            assert_eq!(
                &msg[offset..end],
                &wire[..],
                "contiguous name differs in place"
            );
        }
    }
    // An uncompressed view of the whole input: from_wire must agree with parse at offset 0.
    if let Ok(name) = Name::from_wire(msg) {
        assert_eq!(name.wire_len(), msg.len());
        assert_eq!(check_name(&name), msg);
    }
    if let Ok(text) = std::str::from_utf8(msg) {
        let mut out = [0u8; MAX_NAME_LEN + 8];
        if let Ok(n) = name_from_str(text, &mut out) {
            let name = Name::from_wire(&out[..n]).expect("name_from_str output is a valid name");
            check_name(&name);
        }
    }
});
