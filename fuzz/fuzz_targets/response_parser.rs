//! Fuzz the message view used on upstream replies: header, questions, records read lazily and
//! OPT, on arbitrary bytes. Never panics, every name decodes within 255 bytes, the lazy record
//! walk stops (libFuzzer's -timeout catches a loop), and the offsets stay inside the input.

#![no_main]

use heimdall_fuzz::check_message;
use heimdall_wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        check_message(&msg);
    }
});
