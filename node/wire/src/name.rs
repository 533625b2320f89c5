//! Domain names: a validated, possibly-compressed view into a message, presentation format
//! (Display and parsing) and case helpers.

use core::fmt::{self, Write as _};

use crate::error::{Result, WireError};
use crate::swar;

/// Longest name in uncompressed wire form, root byte included (RFC 1035 section 3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 section 3.1).
pub const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed while reading one name. Every pointer must already point
/// strictly backwards, so this is only a second guard against pathological chains.
pub const MAX_POINTER_HOPS: usize = 128;

/// Top two bits of a length byte that mark a compression pointer.
const POINTER_BITS: u8 = 0xc0;

/// A possibly-compressed name inside a message (validated at parse time).
#[derive(Clone, Copy)]
pub struct Name<'a> {
    /// The bytes compression pointers are resolved against (the whole message, or a prefix).
    msg: &'a [u8],
    /// Offset of the name's first length byte in `msg`.
    start: usize,
    /// Uncompressed length including the root byte (1..=255) in the low byte, plus
    /// [`CONTIGUOUS`] when the name has no compression pointer (one field, so copying a name
    /// costs no more than before the flag existed).
    len_flags: u16,
}

/// Flag in [`Name`]'s `len_flags`: no compression pointer, so the name is exactly
/// `msg[start..start + wire_len]`.
const CONTIGUOUS: u16 = 0x100;

impl<'a> Name<'a> {
    /// Parse and fully validate the name at `offset`; returns the name and the offset just past
    /// its in-place bytes (after the first pointer or the root label). Loop-safe (pointers must
    /// point strictly backwards), labels <= 63, total uncompressed <= 255.
    pub fn parse(msg: &'a [u8], offset: usize) -> Result<(Name<'a>, usize)> {
        let mut pos = offset;
        // Start of the label sequence being read: a pointer must land strictly before it.
        let mut sequence_start = offset;
        let mut in_place_end = None;
        let mut wire_len = 1usize;
        let mut hops = 0usize;
        loop {
            let len = *msg.get(pos).ok_or(WireError::Truncated)?;
            match len & POINTER_BITS {
                0 if len == 0 => {
                    let end = in_place_end.unwrap_or(pos + 1);
                    // wire_len <= 255 is checked as every label is added.
                    let wire_len = u8::try_from(wire_len).map_err(|_| WireError::NameTooLong)?;
                    let flags = if in_place_end.is_none() {
                        CONTIGUOUS
                    } else {
                        0
                    };
                    let name = Name {
                        msg,
                        start: offset,
                        len_flags: u16::from(wire_len) | flags,
                    };
                    return Ok((name, end));
                }
                0 => {
                    let next = pos + 1 + usize::from(len);
                    if next > msg.len() {
                        return Err(WireError::Truncated);
                    }
                    wire_len += 1 + usize::from(len);
                    if wire_len > MAX_NAME_LEN {
                        return Err(WireError::NameTooLong);
                    }
                    pos = next;
                }
                POINTER_BITS => {
                    let low = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([len & !POINTER_BITS, low]));
                    in_place_end.get_or_insert(pos + 2);
                    if target >= sequence_start {
                        return Err(if revisits(msg, offset, pos, target) {
                            WireError::PointerLoop
                        } else {
                            WireError::BadPointer
                        });
                    }
                    hops += 1;
                    if hops > MAX_POINTER_HOPS {
                        return Err(WireError::PointerLoop);
                    }
                    pos = target;
                    sequence_start = target;
                }
                _ => return Err(WireError::BadLabelType),
            }
        }
    }

    /// View an uncompressed wire-format name that fills all of `wire` (no pointers allowed).
    pub fn from_wire(wire: &'a [u8]) -> Result<Name<'a>> {
        // At offset 0 every pointer fails the strictly-backwards rule, so the name is uncompressed.
        let (name, end) = Name::parse(wire, 0)?;
        if end != wire.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(name)
    }

    /// The labels from the leftmost to the rightmost, excluding the root.
    pub fn labels(&self) -> Labels<'a> {
        Labels::at(self.msg, self.start)
    }

    /// Uncompressed length including the root byte.
    pub fn wire_len(&self) -> usize {
        usize::from(self.len_flags as u8)
    }

    /// True for the root name ".".
    pub fn is_root(&self) -> bool {
        self.wire_len() == 1
    }

    /// Number of labels, root excluded.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Offset of the name's first byte in the message it was parsed from.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Write the uncompressed name, ASCII lower-cased, into out; returns bytes written.
    pub fn write_lower(&self, out: &mut [u8]) -> Result<usize> {
        self.write_pieces(out, swar::copy_lower)
    }

    /// Write the uncompressed name, case preserved, into out; returns bytes written.
    pub fn write_uncompressed(&self, out: &mut [u8]) -> Result<usize> {
        self.write_pieces(out, <[u8]>::copy_from_slice)
    }

    /// Compare two names ASCII case-insensitively (label by label: equal uncompressed forms).
    pub fn eq_ignore_case(&self, other: &Name<'_>) -> bool {
        if self.wire_len() != other.wire_len() {
            return false;
        }
        match (self.contiguous_bytes(), other.contiguous_bytes()) {
            // Length bytes are below b'A', so folding the whole wire form folds only the label
            // bytes, and equal wire forms are equal label sequences.
            (Some(a), Some(b)) => swar::eq_ignore_case(a, b),
            _ => labels_eq(self.labels(), other.labels(), true),
        }
    }

    /// The name's bytes when it has no compression pointer (they are its uncompressed form).
    fn contiguous_bytes(&self) -> Option<&'a [u8]> {
        if self.len_flags & CONTIGUOUS == 0 {
            return None;
        }
        self.msg.get(self.start..self.start + self.wire_len())
    }

    /// Write the uncompressed name into `out` one contiguous piece at a time (the labels between
    /// compression pointers), each with `copy(dst, src)` where both have the piece's length.
    fn write_pieces(
        &self,
        out: &mut [u8],
        mut copy: impl FnMut(&mut [u8], &[u8]),
    ) -> Result<usize> {
        let out = out.get_mut(..self.wire_len()).ok_or(WireError::NoSpace)?;
        if let Some(bytes) = self.contiguous_bytes() {
            copy(out, bytes);
            return Ok(bytes.len());
        }
        let mut at = 0;
        self.for_each_piece(|piece| {
            let end = at + piece.len();
            copy(out.get_mut(at..end).ok_or(WireError::NoSpace)?, piece);
            at = end;
            Ok(())
        })?;
        Ok(at)
    }

    /// Call `f` on each run of the name's bytes between compression pointers, in order; the
    /// last run ends with the root byte, so together they are the uncompressed name. Errors
    /// (only possible on bytes that are not a valid name) stop the walk.
    fn for_each_piece(&self, mut f: impl FnMut(&'a [u8]) -> Result<()>) -> Result<()> {
        let msg = self.msg;
        let mut run_start = self.start;
        let mut pos = self.start;
        let mut hops_left = MAX_POINTER_HOPS;
        loop {
            let len = *msg.get(pos).ok_or(WireError::Truncated)?;
            match len & POINTER_BITS {
                0 if len == 0 => return f(msg.get(run_start..=pos).ok_or(WireError::Truncated)?),
                0 => pos += 1 + usize::from(len),
                POINTER_BITS => {
                    let low = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([len & !POINTER_BITS, low]));
                    if target >= pos || hops_left == 0 {
                        return Err(WireError::BadPointer);
                    }
                    hops_left -= 1;
                    if pos > run_start {
                        f(msg.get(run_start..pos).ok_or(WireError::Truncated)?)?;
                    }
                    pos = target;
                    run_start = target;
                }
                _ => return Err(WireError::BadLabelType),
            }
        }
    }
}

/// Compare two label sequences label by label (ASCII case-insensitively when `ignore_case`).
pub(crate) fn labels_eq<'x, 'y>(
    mut a: impl Iterator<Item = &'x [u8]>,
    mut b: impl Iterator<Item = &'y [u8]>,
    ignore_case: bool,
) -> bool {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if ignore_case && x.eq_ignore_ascii_case(y) => {}
            (Some(x), Some(y)) if !ignore_case && x == y => {}
            _ => return false,
        }
    }
}

/// On the error path of [`Name::parse`]: does a pointer at `stop` to `target` land on bytes
/// already read for the name that starts at `origin`? (Loop versus forward pointer.)
fn revisits(msg: &[u8], origin: usize, stop: usize, target: usize) -> bool {
    let mut pos = origin;
    let mut sequence_start = origin;
    // The walk up to `stop` already succeeded once, so it takes at most this many steps.
    for _ in 0..(MAX_NAME_LEN + MAX_POINTER_HOPS + 2) {
        let Some(&len) = msg.get(pos) else {
            return false;
        };
        if len & POINTER_BITS == POINTER_BITS {
            if (sequence_start..=pos + 1).contains(&target) {
                return true;
            }
            if pos == stop {
                return false;
            }
            let Some(&low) = msg.get(pos + 1) else {
                return false;
            };
            pos = usize::from(u16::from_be_bytes([len & !POINTER_BITS, low]));
            sequence_start = pos;
        } else if len == 0 || len & POINTER_BITS != 0 {
            return false;
        } else {
            pos += 1 + usize::from(len);
        }
    }
    false
}

/// Iterator over the labels of a [`Name`], following compression pointers.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    /// The bytes pointers resolve against.
    msg: &'a [u8],
    /// Offset of the next length byte.
    pos: usize,
    /// Pointers still allowed, so even a hand-made name cannot loop.
    hops_left: usize,
}

impl<'a> Labels<'a> {
    /// Labels of the (already validated) name at `pos` of `msg`.
    pub(crate) fn at(msg: &'a [u8], pos: usize) -> Labels<'a> {
        Labels {
            msg,
            pos,
            hops_left: MAX_POINTER_HOPS,
        }
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    /// Return the next label, or None at the root (or on bytes that are not a valid name).
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let len = *self.msg.get(self.pos)?;
            match len & POINTER_BITS {
                0 if len == 0 => return None,
                0 => {
                    let start = self.pos + 1;
                    let end = start + usize::from(len);
                    let label = self.msg.get(start..end)?;
                    self.pos = end;
                    return Some(label);
                }
                POINTER_BITS => {
                    let low = *self.msg.get(self.pos + 1)?;
                    let target = usize::from(u16::from_be_bytes([len & !POINTER_BITS, low]));
                    if target >= self.pos || self.hops_left == 0 {
                        return None;
                    }
                    self.hops_left -= 1;
                    self.pos = target;
                }
                _ => return None,
            }
        }
    }
}

impl fmt::Display for Name<'_> {
    /// Dotted presentation form with a trailing dot: "." for the root, `\.` and `\\` for a dot
    /// or backslash inside a label, `\DDD` for bytes outside printable ASCII.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_char('.');
        }
        for label in self.labels() {
            for &byte in label {
                match byte {
                    b'.' | b'\\' => {
                        f.write_char('\\')?;
                        f.write_char(char::from(byte))?;
                    }
                    0x21..=0x7e => f.write_char(char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_char('.')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name<'_> {
    /// Show the presentation form rather than the underlying message bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Name")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// Store `byte` at label-content index `at` of a name being built: `NameTooLong` if it leaves no
/// room for the root byte within 255, `NoSpace` if `out` is too short.
fn put_name_byte(out: &mut [u8], at: usize, byte: u8) -> Result<()> {
    if at + 1 >= MAX_NAME_LEN {
        return Err(WireError::NameTooLong);
    }
    *out.get_mut(at).ok_or(WireError::NoSpace)? = byte;
    Ok(())
}

/// Decode the escape after a backslash at `bytes[i]` ("\X" or "\DDD"); returns the byte and the
/// index just past the escape.
fn unescape(bytes: &[u8], i: usize) -> Result<(u8, usize)> {
    let first = *bytes.get(i).ok_or(WireError::BadText)?;
    if !first.is_ascii_digit() {
        return Ok((first, i + 1));
    }
    let digits = bytes.get(i..i + 3).ok_or(WireError::BadText)?;
    let mut value = 0u16;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(WireError::BadText);
        }
        value = value * 10 + u16::from(d - b'0');
    }
    let byte = u8::try_from(value).map_err(|_| WireError::BadText)?;
    Ok((byte, i + 3))
}

/// Parse a presentation name ("www.Example.org" or with trailing dot) into uncompressed wire form.
/// Understands `\X` and `\DDD` escapes; rejects empty labels (other than the root "."), labels
/// over 63 bytes and names over 255 bytes. Returns the number of bytes written to `out`.
pub fn name_from_str(s: &str, out: &mut [u8]) -> Result<usize> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(WireError::BadText);
    }
    // Index of the current label's length byte, and of the next content byte.
    let mut len_at = 0usize;
    let mut at = 1usize;
    let mut i = 0usize;
    if bytes != b"." {
        while let Some(&c) = bytes.get(i) {
            if c == b'.' {
                let len = at - len_at - 1;
                if len == 0 {
                    return Err(WireError::BadText);
                }
                // len <= 63 was checked as the label grew.
                *out.get_mut(len_at).ok_or(WireError::NoSpace)? =
                    u8::try_from(len).map_err(|_| WireError::LabelTooLong)?;
                len_at = at;
                at += 1;
                i += 1;
                continue;
            }
            let byte = if c == b'\\' {
                let (byte, next) = unescape(bytes, i + 1)?;
                i = next;
                byte
            } else {
                i += 1;
                c
            };
            if at - len_at > MAX_LABEL_LEN {
                return Err(WireError::LabelTooLong);
            }
            put_name_byte(out, at, byte)?;
            at += 1;
        }
        let len = at - len_at - 1;
        if len > 0 {
            *out.get_mut(len_at).ok_or(WireError::NoSpace)? =
                u8::try_from(len).map_err(|_| WireError::LabelTooLong)?;
            len_at = at;
        }
    }
    if len_at >= MAX_NAME_LEN {
        return Err(WireError::NameTooLong);
    }
    *out.get_mut(len_at).ok_or(WireError::NoSpace)? = 0;
    Ok(len_at + 1)
}

/// ASCII lower-case a buffer in place (safe on wire names: length bytes are below b'A').
///
/// This stays the standard library's loop (which the compiler vectorizes): word-at-a-time
/// in-place lowering ran fewer instructions but twice as slow right after the buffer was
/// written, because its wide loads stall on the narrower pending stores. To lower a name while
/// copying it, use [`Name::write_lower`], which reads and writes in one pass.
pub fn lower_ascii_in_place(buf: &mut [u8]) {
    buf.make_ascii_lowercase();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse a presentation name into a fresh buffer, returning the wire bytes as a Vec.
    fn wire(s: &str) -> Result<Vec<u8>> {
        let mut buf = [0u8; 300];
        let n = name_from_str(s, &mut buf)?;
        Ok(buf[..n].to_vec())
    }

    /// Presentation names parse to the expected wire bytes, with and without a trailing dot.
    #[test]
    fn from_str_basic() {
        assert_eq!(wire("."), Ok(vec![0]));
        assert_eq!(wire("a.bc"), Ok(vec![1, b'a', 2, b'b', b'c', 0]));
        assert_eq!(wire("a.bc."), Ok(vec![1, b'a', 2, b'b', b'c', 0]));
        assert_eq!(wire("a\\.b"), Ok(vec![3, b'a', b'.', b'b', 0]));
        assert_eq!(wire("\\\\\\000\\255"), Ok(vec![3, b'\\', 0, 255, 0]));
    }

    /// Malformed presentation names are rejected with the documented errors.
    #[test]
    fn from_str_errors() {
        assert_eq!(wire(""), Err(WireError::BadText));
        assert_eq!(wire(".."), Err(WireError::BadText));
        assert_eq!(wire(".a"), Err(WireError::BadText));
        assert_eq!(wire("a..b"), Err(WireError::BadText));
        assert_eq!(wire("a\\"), Err(WireError::BadText));
        assert_eq!(wire("a\\25"), Err(WireError::BadText));
        assert_eq!(wire("a\\256"), Err(WireError::BadText));
        assert_eq!(wire(&"x".repeat(63)).map(|w| w.len()), Ok(65));
        assert_eq!(wire(&"x".repeat(64)), Err(WireError::LabelTooLong));
        // 4 labels of 63 = 256 bytes + root: too long; 3 x 63 + 61 = 255 with root: fits.
        let long = [&"x".repeat(63)[..]; 4].join(".");
        assert_eq!(wire(&long), Err(WireError::NameTooLong));
        let max = format!("{0}.{0}.{0}.{1}", "x".repeat(63), "y".repeat(61));
        assert_eq!(wire(&max).map(|w| w.len()), Ok(255));
        let over = format!("{0}.{0}.{0}.{1}", "x".repeat(63), "y".repeat(62));
        assert_eq!(wire(&over), Err(WireError::NameTooLong));
        assert_eq!(name_from_str("abc", &mut [0u8; 4]), Err(WireError::NoSpace));
        assert_eq!(name_from_str("abc", &mut [0u8; 5]), Ok(5));
    }

    /// Display escapes dots, backslashes and non-printables, and name_from_str reads it back.
    #[test]
    fn display_round_trip() {
        let raw = [3, b'a', b'.', b'\\', 4, b' ', 0, 0x7f, b'Z', 0];
        let name = Name::from_wire(&raw).expect("valid");
        let text = name.to_string();
        assert_eq!(text, "a\\.\\\\.\\032\\000\\127Z.");
        assert_eq!(wire(&text), Ok(raw.to_vec()));
        let root = Name::from_wire(&[0]).expect("root");
        assert_eq!(root.to_string(), ".");
        assert!(root.is_root());
    }

    /// write_lower lower-cases, write_uncompressed preserves case, and both check space.
    #[test]
    fn write_lower_and_uncompressed() {
        let raw = wire("WwW.Example.").expect("valid");
        let name = Name::from_wire(&raw).expect("valid");
        let mut out = [0u8; 64];
        assert_eq!(name.write_uncompressed(&mut out), Ok(raw.len()));
        assert_eq!(&out[..raw.len()], &raw[..]);
        assert_eq!(name.write_lower(&mut out), Ok(raw.len()));
        assert_eq!(&out[..raw.len()], &wire("www.example").expect("valid")[..]);
        assert_eq!(
            name.write_lower(&mut out[..raw.len() - 1]),
            Err(WireError::NoSpace)
        );
        let other = wire("www.EXAMPLE").expect("valid");
        assert!(name.eq_ignore_case(&Name::from_wire(&other).expect("valid")));
        let different = wire("www.example.com").expect("valid");
        assert!(!name.eq_ignore_case(&Name::from_wire(&different).expect("valid")));
    }

    /// The uncompressed name rebuilt label by label (the reference for the piecewise writers).
    fn via_labels(name: &Name<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.labels() {
            out.push(u8::try_from(label.len()).expect("label <= 63"));
            out.extend_from_slice(label);
        }
        out.push(0);
        out
    }

    /// Random names, contiguous and behind pointer chains: write_lower, write_uncompressed and
    /// eq_ignore_case agree with the label-by-label reference.
    #[test]
    fn piecewise_writers_match_labels() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let labels: Vec<Vec<u8>> = (0..rng.random_range(0..8))
                .map(|_| {
                    (0..rng.random_range(1..=20))
                        .map(|_| match rng.random_range(0..3) {
                            0 => rng.random(),
                            1 => rng.random_range(b'A'..=b'Z'),
                            _ => rng.random_range(b'a'..=b'z'),
                        })
                        .collect()
                })
                .collect();
            // msg = [pad] base name (uncompressed) || the first `split` labels || pointer into
            // base at label `split` (or the base name's root when every label was copied).
            let mut msg = vec![0xff; rng.random_range(0..3)];
            let base_at = msg.len();
            let mut offsets = Vec::new();
            for label in &labels {
                offsets.push(msg.len());
                msg.push(u8::try_from(label.len()).expect("short"));
                msg.extend_from_slice(label);
            }
            offsets.push(msg.len());
            msg.push(0);
            let split = rng.random_range(0..=labels.len());
            let compressed_at = msg.len();
            for label in &labels[..split] {
                msg.push(u8::try_from(label.len()).expect("short"));
                msg.extend(
                    label
                        .iter()
                        .map(|b| if rng.random_bool(0.5) { b ^ 0x20 } else { *b }),
                );
            }
            let target = u16::try_from(offsets[split]).expect("small");
            msg.extend_from_slice(&(0xc000 | target).to_be_bytes());

            let (base, _) = Name::parse(&msg, base_at).expect("base name");
            let (compressed, end) = Name::parse(&msg, compressed_at).expect("compressed name");
            assert_eq!(end, msg.len());
            for name in [base, compressed] {
                let expected = via_labels(&name);
                let mut out = [0u8; MAX_NAME_LEN];
                assert_eq!(name.write_uncompressed(&mut out), Ok(expected.len()));
                assert_eq!(&out[..expected.len()], &expected[..]);
                assert_eq!(name.write_lower(&mut out), Ok(expected.len()));
                assert_eq!(&out[..expected.len()], &expected.to_ascii_lowercase()[..]);
                assert_eq!(
                    name.write_lower(&mut out[..expected.len() - 1]),
                    Err(WireError::NoSpace)
                );
            }
            let reference = labels_eq(base.labels(), compressed.labels(), true);
            assert_eq!(base.eq_ignore_case(&compressed), reference);
            assert_eq!(compressed.eq_ignore_case(&base), reference);
            assert!(base.eq_ignore_case(&base) && compressed.eq_ignore_case(&compressed));
            // A flipped case bit on a non-letter (or any other change) must be noticed.
            let mut other = via_labels(&base);
            if other.len() > 1 {
                let at = rng.random_range(1..other.len() - 1);
                if other[at] != 0 {
                    other[at] ^= 1 << rng.random_range(0..5);
                    if let Ok(changed) = Name::from_wire(&other) {
                        let expected = labels_eq(base.labels(), changed.labels(), true);
                        assert_eq!(base.eq_ignore_case(&changed), expected);
                    }
                }
            }
        }
    }
}
