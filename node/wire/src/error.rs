//! The error type shared by every parse and write operation of the wire crate.

use core::fmt;

/// Why a message could not be parsed or written. `Copy` and allocation-free, so it is cheap on
/// the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The input ends before a field it declares (header, name, record, rdata).
    Truncated,
    /// A label longer than 63 bytes (presentation or caller-supplied input).
    LabelTooLong,
    /// A name longer than 255 bytes in uncompressed wire form (root byte included).
    NameTooLong,
    /// A compression pointer that does not point strictly backwards, or a pointer where an
    /// uncompressed name is required.
    BadPointer,
    /// Compression pointers that revisit bytes already read for the same name, or too many hops.
    PointerLoop,
    /// A label type other than a plain label (0b00) or a pointer (0b11).
    BadLabelType,
    /// Bytes left over after the last declared record, or inside an rdata after its last field.
    TrailingBytes,
    /// A malformed, duplicated or misplaced OPT record.
    BadOpt,
    /// The output buffer is too small (or a count or length field would overflow).
    NoSpace,
    /// A presentation-format name with an empty label or a malformed escape.
    BadText,
    /// A question or record appended to the writer out of section order.
    BadOrder,
}

impl fmt::Display for WireError {
    /// Write a short lower-case description of the error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "message truncated",
            Self::LabelTooLong => "label longer than 63 bytes",
            Self::NameTooLong => "name longer than 255 bytes",
            Self::BadPointer => "compression pointer does not point backwards",
            Self::PointerLoop => "compression pointer loop",
            Self::BadLabelType => "unsupported label type",
            Self::TrailingBytes => "trailing bytes after the last field",
            Self::BadOpt => "malformed, duplicate or misplaced OPT record",
            Self::NoSpace => "output buffer too small",
            Self::BadText => "malformed presentation-format name",
            Self::BadOrder => "section written out of order",
        })
    }
}

impl std::error::Error for WireError {}

/// Result alias used throughout the crate.
pub type Result<T> = core::result::Result<T, WireError>;
