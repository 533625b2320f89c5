//! Zero-copy DNS wire format: message view, names, response writer.
//!
//! Parsing never allocates and never panics on any input; the writer fills a caller-provided
//! buffer with name compression and rolls back a call that does not fit.

pub mod error;
pub mod header;
pub mod message;
pub mod name;
pub mod query;
mod rdata;
mod swar;
pub mod writer;

pub use error::{Result, WireError};
pub use header::{HEADER_LEN, Header, class, flags, opcode, rcode, rtype};
pub use message::{
    EdnsOptions, Message, Opt, Question, Questions, Record, Records, Section, opt_from_record,
};
pub use name::{
    Labels, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_POINTER_HOPS, Name, lower_ascii_in_place,
    name_from_str,
};
pub use query::{Query, QueryError, parse_query};
pub use writer::{COMPRESSION_SLOTS, MessageWriter};
