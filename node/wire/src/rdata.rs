//! Rdata layouts of the record types whose rdata embeds domain names (RFC 3597 section 4).

use crate::error::{Result, WireError};
use crate::header::rtype;
use crate::name::Name;

/// One field of an rdata layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// A fixed number of opaque bytes.
    Fixed(usize),
    /// A domain name (possibly compressed when read).
    Name,
    /// A length-prefixed character string.
    CharString,
    /// Everything up to the end of the rdata.
    Rest,
}

/// How an rdata with embedded names is laid out and whether the writer may compress its names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// The fields in order; they must cover the rdata exactly.
    pub(crate) fields: &'static [Field],
    /// True for the RFC 1035 types whose rdata names the writer compresses.
    pub(crate) compress: bool,
}

/// Layout of a single name (NS, CNAME, PTR, ...).
const ONE_NAME: &[Field] = &[Field::Name];
/// Layout of two names (MINFO, RP).
const TWO_NAMES: &[Field] = &[Field::Name, Field::Name];
/// Layout of a 16-bit preference then a name (MX, AFSDB, RT).
const PREFERENCE_NAME: &[Field] = &[Field::Fixed(2), Field::Name];

/// The rdata layout for `rtype` if its rdata embeds names, else None (opaque, RFC 3597).
///
/// Names are decompressed when read for all of these; the writer compresses only the RFC 1035
/// types (NS, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX) and writes the others uncompressed.
pub(crate) fn layout(rtype: u16) -> Option<Layout> {
    let (fields, compress) = match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::MB | rtype::MG | rtype::MR => {
            (ONE_NAME, true)
        }
        rtype::MD | rtype::MF => (ONE_NAME, false),
        rtype::SOA => (&[Field::Name, Field::Name, Field::Fixed(20)][..], true),
        rtype::MINFO => (TWO_NAMES, true),
        rtype::MX => (PREFERENCE_NAME, true),
        rtype::RP => (TWO_NAMES, false),
        rtype::AFSDB | rtype::RT => (PREFERENCE_NAME, false),
        rtype::PX => (&[Field::Fixed(2), Field::Name, Field::Name][..], false),
        rtype::SRV => (&[Field::Fixed(6), Field::Name][..], false),
        rtype::NAPTR => (
            &[
                Field::Fixed(4),
                Field::CharString,
                Field::CharString,
                Field::CharString,
                Field::Name,
            ][..],
            false,
        ),
        rtype::SIG => (&[Field::Fixed(18), Field::Name, Field::Rest][..], false),
        rtype::NXT => (&[Field::Name, Field::Rest][..], false),
        _ => return None,
    };
    Some(Layout { fields, compress })
}

/// Length of the non-name field `field` starting at `pos` (within `scope`), or None for a name.
pub(crate) fn field_len(
    scope: &[u8],
    pos: usize,
    end: usize,
    field: Field,
) -> Result<Option<usize>> {
    let len = match field {
        Field::Fixed(n) => n,
        Field::CharString => 1 + usize::from(*scope.get(pos).ok_or(WireError::Truncated)?),
        Field::Rest => end.checked_sub(pos).ok_or(WireError::Truncated)?,
        Field::Name => return Ok(None),
    };
    if pos + len > end {
        return Err(WireError::Truncated);
    }
    Ok(Some(len))
}

/// Check that the rdata at `start..end` of `msg` matches `layout`: every name valid (pointers
/// resolve before it), every field inside the rdata, no bytes left over.
pub(crate) fn validate(msg: &[u8], start: usize, end: usize, layout: Layout) -> Result<()> {
    // Names may point anywhere before themselves but must not run past the rdata.
    let scope = msg.get(..end).ok_or(WireError::Truncated)?;
    let mut pos = start;
    for &field in layout.fields {
        pos = match field_len(scope, pos, end, field)? {
            Some(len) => pos + len,
            None => Name::parse(scope, pos)?.1,
        };
    }
    if pos != end {
        return Err(WireError::TrailingBytes);
    }
    Ok(())
}
