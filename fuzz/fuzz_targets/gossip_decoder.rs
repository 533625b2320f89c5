//! Fuzz the gossip datagram decoder (untrusted input from the network). The bytes are opened
//! as they arrived (nearly always refused at the tag) and again signed with the key, so the
//! header and entry parser behind the tag is reached. Never panics; an accepted datagram
//! (entries or a SWIM message) re-encodes to exactly the bytes it was decoded from.

#![no_main]

use heimdall_gossip_wire::{DatagramWriter, Kind, datagram_tag, open};
use libfuzzer_sys::fuzz_target;

/// The cluster secret of the fuzzed node.
const KEY: &[u8] = b"fuzz-cluster-secret";

fuzz_target!(|data: &[u8]| {
    let _ = open(KEY, data);
    let mut signed = data.to_vec();
    signed.extend_from_slice(&datagram_tag(KEY, data));
    let Ok(datagram) = open(KEY, &signed) else {
        return;
    };
    let again = match datagram.kind {
        Kind::Swim => DatagramWriter::swim(&datagram.header, datagram.payload, KEY),
        Kind::Entries => {
            let mut writer = DatagramWriter::new(&datagram.header, signed.len());
            for entry in &datagram.entries {
                assert!(
                    writer.push(entry),
                    "a decoded entry does not fit again: {entry:?}"
                );
            }
            writer.finish(KEY)
        }
    };
    assert_eq!(again, signed, "decode then encode changed the datagram");
});
