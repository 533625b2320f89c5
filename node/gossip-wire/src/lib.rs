//! The gossip datagram wire format (version 1): encoder and a decoder that never panics.
//!
//! A crate of its own, with no runtime dependencies, so the fuzz target of the decoder
//! (fuzz/) builds quickly under the sanitizer and the node and the fuzzer run the same code.
//!
//! All integers are big-endian. A datagram is a header, entries, and a tag:
//!
//! ```text
//! offset size  field
//!      0    4  magic "HMDG"
//!      4    1  version (1)
//!      5    1  kind: 0 entries, 1 swim (a SWIM failure-detector message: entry count 0,
//!                 then the message as the rest of the body, for liveness)
//!      6    8  sender node id
//!     14    8  sender boot epoch (random per process start)
//!     22    8  timestamp, Unix milliseconds, when the datagram was built
//!     30    8  sequence number (per sender and boot epoch, from 1)
//!     38    2  entry count
//!     40       entries, each:
//!                2  key length K (6..=MAX_KEY_LEN)
//!                K  cache key (lower-cased wire name, type, class, DO/CD flags byte)
//!                8  flush epoch the sender's cache was at (every flush up to it applied)
//!                4  remaining TTL in ms, relative to the timestamp
//!                2  message length M (12..)
//!                M  the DNS response as the cache replays it (ID 0, record TTLs as they
//!                   stood at the timestamp, no OPT)
//!     40       (kind 1) the SWIM message bytes, opaque here (foca's encoding)
//!    end-32   32  HMAC-SHA256 under the cluster secret over "heimdall-gossip-datagram-v1\n"
//!                 followed by every byte before the tag
//! ```
//!
//! The decoder ([`open`]) checks the length, magic and version, then the tag, and only then
//! reads entries, so nothing from an unauthenticated datagram is interpreted beyond its
//! header's fixed fields. Every read is bounds-checked.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The longest cache key: a 255-byte wire name, type, class and the flags byte.
pub const MAX_KEY_LEN: usize = heimdall_wire::MAX_NAME_LEN + 5;

/// Domain separation of gossip datagrams: a tag made for them is useless for anything else
/// keyed with the cluster secret (the internal RPCs use another context).
const DATAGRAM_CONTEXT: &[u8] = b"heimdall-gossip-datagram-v1\n";

/// Length of a datagram tag ([`datagram_tag`]).
pub const DATAGRAM_TAG_LEN: usize = 32;

/// HMAC-SHA256.
type HmacSha256 = hmac::Hmac<Sha256>;

/// The HMAC state keyed with `secret` over the datagram context.
fn datagram_mac(secret: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(DATAGRAM_CONTEXT);
    mac
}

/// The HMAC-SHA256 tag authenticating the gossip datagram `body` (everything before the tag).
pub fn datagram_tag(secret: &[u8], body: &[u8]) -> [u8; DATAGRAM_TAG_LEN] {
    let mut mac = datagram_mac(secret);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Whether `tag` authenticates `body` under `secret` (compared in constant time).
pub fn verify_datagram(secret: &[u8], body: &[u8], tag: &[u8]) -> bool {
    let mut mac = datagram_mac(secret);
    mac.update(body);
    mac.verify_slice(tag).is_ok()
}

/// The first four bytes of every gossip datagram.
pub const MAGIC: [u8; 4] = *b"HMDG";
/// The wire format version this node writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 40;
/// Bytes of the trailing tag.
pub const TAG_LEN: usize = DATAGRAM_TAG_LEN;
/// Bytes an entry takes besides its key and message.
pub const ENTRY_OVERHEAD: usize = 16;
/// Smallest key: a root name (1 byte), type, class and the flags byte.
const MIN_KEY_LEN: usize = 6;
/// What a datagram is for (header byte 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Cache entries.
    Entries,
    /// A SWIM failure-detector message (no entries; [`Datagram::payload`]).
    Swim,
}

/// Smallest message: a DNS header.
const MIN_MESSAGE_LEN: usize = 12;

/// The fixed fields of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's node id.
    pub sender: u64,
    /// Random per start of the sender's process: sequence numbers restart with it.
    pub boot_epoch: u64,
    /// When the datagram was built (Unix ms, sender's clock).
    pub timestamp_ms: u64,
    /// Increases by one per datagram of this sender and boot epoch.
    pub sequence: u64,
}

/// One cache entry on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireEntry<'a> {
    /// The cache key.
    pub key: &'a [u8],
    /// The sender's applied flush epoch when it built the datagram.
    pub flush_epoch: u64,
    /// Remaining lifetime in ms from the header's timestamp.
    pub ttl_ms: u32,
    /// The DNS response.
    pub message: &'a [u8],
}

impl WireEntry<'_> {
    /// Bytes this entry takes in a datagram.
    pub fn encoded_len(&self) -> usize {
        ENTRY_OVERHEAD + self.key.len() + self.message.len()
    }
}

/// Why a datagram was refused before any entry was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header and a tag, wrong magic, or entries that do not add up.
    #[error("malformed gossip datagram")]
    Malformed,
    /// A version this node does not speak.
    #[error("unsupported gossip version {0}")]
    Version(u8),
    /// The tag does not match (another secret, or modified bytes).
    #[error("gossip datagram tag does not match")]
    BadTag,
}

/// An authenticated, decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The fixed fields.
    pub header: Header,
    /// Entries or a SWIM message.
    pub kind: Kind,
    /// The entries, in order.
    pub entries: Vec<WireEntry<'a>>,
    /// The SWIM message of a [`Kind::Swim`] datagram (never empty); empty otherwise.
    pub payload: &'a [u8],
}

/// Builds one datagram of at most `max_len` bytes (tag included).
#[derive(Debug)]
pub struct DatagramWriter {
    /// The bytes so far (header and entries).
    buf: Vec<u8>,
    /// Entries written.
    count: u16,
    /// The size bound, tag included.
    max_len: usize,
}

impl DatagramWriter {
    /// A datagram with `header` and no entries yet, bounded by `max_len` bytes.
    pub fn new(header: &Header, max_len: usize) -> DatagramWriter {
        Self::with_kind(header, Kind::Entries, max_len)
    }

    /// A signed datagram with `header` carrying the SWIM message `payload` (no entries).
    pub fn swim(header: &Header, payload: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut writer = Self::with_kind(header, Kind::Swim, HEADER_LEN + payload.len() + TAG_LEN);
        writer.buf.extend_from_slice(payload);
        writer.finish(secret)
    }

    /// A datagram of `kind` with `header` and no entries yet.
    fn with_kind(header: &Header, kind: Kind, max_len: usize) -> DatagramWriter {
        let mut buf = Vec::with_capacity(max_len.min(65_535));
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.push(match kind {
            Kind::Entries => 0,
            Kind::Swim => 1,
        });
        buf.extend_from_slice(&header.sender.to_be_bytes());
        buf.extend_from_slice(&header.boot_epoch.to_be_bytes());
        buf.extend_from_slice(&header.timestamp_ms.to_be_bytes());
        buf.extend_from_slice(&header.sequence.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        DatagramWriter {
            buf,
            count: 0,
            max_len,
        }
    }

    /// The most entry bytes a datagram of `max_len` bytes can carry.
    pub fn capacity(max_len: usize) -> usize {
        max_len.saturating_sub(HEADER_LEN + TAG_LEN)
    }

    /// Append `entry` if it fits (and its lengths fit their fields); false otherwise.
    pub fn push(&mut self, entry: &WireEntry<'_>) -> bool {
        let (Ok(key_len), Ok(message_len)) = (
            u16::try_from(entry.key.len()),
            u16::try_from(entry.message.len()),
        ) else {
            return false;
        };
        if self.count == u16::MAX || self.buf.len() + entry.encoded_len() + TAG_LEN > self.max_len {
            return false;
        }
        self.buf.extend_from_slice(&key_len.to_be_bytes());
        self.buf.extend_from_slice(entry.key);
        self.buf.extend_from_slice(&entry.flush_epoch.to_be_bytes());
        self.buf.extend_from_slice(&entry.ttl_ms.to_be_bytes());
        self.buf.extend_from_slice(&message_len.to_be_bytes());
        self.buf.extend_from_slice(entry.message);
        self.count += 1;
        true
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True when no entry was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished datagram: entry count filled in, tag appended.
    pub fn finish(mut self, secret: &[u8]) -> Vec<u8> {
        if let Some(count) = self.buf.get_mut(HEADER_LEN - 2..HEADER_LEN) {
            count.copy_from_slice(&self.count.to_be_bytes());
        }
        let tag = datagram_tag(secret, &self.buf);
        self.buf.extend_from_slice(&tag);
        self.buf
    }
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a> {
    /// The bytes left to read.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Malformed);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Malformed)
    }

    /// A big-endian u16.
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian u32.
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian u64.
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }
}

/// Check and decode `bytes`: length, magic and version, the tag under `secret`, then the
/// header and every entry. Never panics, whatever the input.
pub fn open<'a>(secret: &[u8], bytes: &'a [u8]) -> Result<Datagram<'a>, DecodeError> {
    let body_len = bytes
        .len()
        .checked_sub(TAG_LEN)
        .filter(|len| *len >= HEADER_LEN)
        .ok_or(DecodeError::Malformed)?;
    let (body, tag) = bytes.split_at(body_len);
    let mut reader = Reader { rest: body };
    if reader.array::<4>()? != MAGIC {
        return Err(DecodeError::Malformed);
    }
    let version = reader.array::<1>()?[0];
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    if !verify_datagram(secret, body, tag) {
        return Err(DecodeError::BadTag);
    }
    let kind = match reader.array::<1>()?[0] {
        0 => Kind::Entries,
        1 => Kind::Swim,
        _ => return Err(DecodeError::Malformed),
    };
    let header = Header {
        sender: reader.u64()?,
        boot_epoch: reader.u64()?,
        timestamp_ms: reader.u64()?,
        sequence: reader.u64()?,
    };
    let count = reader.u16()?;
    if kind == Kind::Swim {
        if count != 0 || reader.rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        return Ok(Datagram {
            header,
            kind,
            entries: Vec::new(),
            payload: reader.rest,
        });
    }
    // Each entry takes at least this much: the count cannot promise more than the bytes hold.
    let smallest = ENTRY_OVERHEAD + MIN_KEY_LEN + MIN_MESSAGE_LEN;
    if usize::from(count) * smallest > reader.rest.len() {
        return Err(DecodeError::Malformed);
    }
    let mut entries = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let key_len = usize::from(reader.u16()?);
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key_len) {
            return Err(DecodeError::Malformed);
        }
        let key = reader.take(key_len)?;
        let flush_epoch = reader.u64()?;
        let ttl_ms = reader.u32()?;
        let message_len = usize::from(reader.u16()?);
        if message_len < MIN_MESSAGE_LEN {
            return Err(DecodeError::Malformed);
        }
        let message = reader.take(message_len)?;
        entries.push(WireEntry {
            key,
            flush_epoch,
            ttl_ms,
            message,
        });
    }
    if !reader.rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    Ok(Datagram {
        header,
        kind,
        entries,
        payload: &[],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The secret the tests sign with.
    fn secret() -> Vec<u8> {
        b"gossip-test-secret".to_vec()
    }

    /// A header with recognizable values.
    fn header() -> Header {
        Header {
            sender: 7,
            boot_epoch: 0xdead_beef,
            timestamp_ms: 1_700_000_000_000,
            sequence: 42,
        }
    }

    /// A datagram with two entries.
    fn two_entries() -> Vec<u8> {
        let mut writer = DatagramWriter::new(&header(), 1232);
        let key = b"\x07example\x03com\x00\x00\x01\x00\x01\x00";
        let message = [0u8; 40];
        assert!(writer.push(&WireEntry {
            key,
            flush_epoch: 3,
            ttl_ms: 299_500,
            message: &message,
        }));
        assert!(writer.push(&WireEntry {
            key: b"\x00\x00\x1c\x00\x01\x02",
            flush_epoch: 0,
            ttl_ms: 1,
            message: &message[..12],
        }));
        assert_eq!(writer.len(), 2);
        writer.finish(&secret())
    }

    /// The documented layout, byte by byte, and back.
    #[test]
    fn layout_round_trip() {
        let bytes = two_entries();
        assert_eq!(&bytes[..4], b"HMDG");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 0);
        assert_eq!(&bytes[6..14], &7u64.to_be_bytes());
        assert_eq!(&bytes[30..38], &42u64.to_be_bytes());
        assert_eq!(&bytes[38..40], &2u16.to_be_bytes());
        assert_eq!(&bytes[40..42], &18u16.to_be_bytes());
        let entries_len = (16 + 18 + 40) + (16 + 6 + 12);
        assert_eq!(bytes.len(), HEADER_LEN + entries_len + TAG_LEN);
        let datagram = open(&secret(), &bytes).expect("opens");
        assert_eq!(datagram.header, header());
        assert_eq!(datagram.kind, Kind::Entries);
        assert_eq!(datagram.entries.len(), 2);
        let swim = DatagramWriter::swim(&header(), b"foca message", &secret());
        assert_eq!(swim.len(), HEADER_LEN + 12 + TAG_LEN);
        assert_eq!((swim[5], &swim[38..40]), (1, &[0u8, 0][..]));
        let opened = open(&secret(), &swim).expect("swim opens");
        assert_eq!((opened.kind, opened.entries.len()), (Kind::Swim, 0));
        assert_eq!(opened.payload, b"foca message");
        let empty = DatagramWriter::swim(&header(), b"", &secret());
        assert_eq!(open(&secret(), &empty), Err(DecodeError::Malformed));
        assert_eq!(datagram.entries[0].flush_epoch, 3);
        assert_eq!(datagram.entries[0].ttl_ms, 299_500);
        assert_eq!(datagram.entries[1].key, b"\x00\x00\x1c\x00\x01\x02");
        assert_eq!(datagram.entries[1].message.len(), 12);
    }

    /// Entries that do not fit the size bound are refused; an empty datagram is valid.
    #[test]
    fn writer_respects_the_bound() {
        let mut writer = DatagramWriter::new(&header(), HEADER_LEN + TAG_LEN + 40);
        let big = [0u8; 30];
        let entry = WireEntry {
            key: b"\x00\x00\x01\x00\x01\x00",
            flush_epoch: 0,
            ttl_ms: 5,
            message: &big,
        };
        assert!(!writer.push(&entry), "16 + 6 + 30 > 40");
        assert!(writer.is_empty());
        let bytes = writer.finish(&secret());
        assert_eq!(open(&secret(), &bytes).expect("empty opens").entries, []);
        assert_eq!(DatagramWriter::capacity(1232), 1232 - 72);
    }

    /// Another secret, a flipped bit, a wrong magic or version, and trailing junk are refused.
    #[test]
    fn forged_and_damaged_datagrams_are_refused() {
        let bytes = two_entries();
        let other = b"another-secret".to_vec();
        assert_eq!(open(&other, &bytes), Err(DecodeError::BadTag));
        for at in [6, 45, bytes.len() - 40, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert_eq!(open(&secret(), &damaged), Err(DecodeError::BadTag), "{at}");
        }
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(open(&secret(), &magic), Err(DecodeError::Malformed));
        let mut version = bytes.clone();
        version[4] = 2;
        assert_eq!(open(&secret(), &version), Err(DecodeError::Version(2)));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(open(&secret(), &longer).is_err());
    }

    /// Every truncation of a valid datagram is refused without a panic.
    #[test]
    fn truncations_are_refused() {
        let bytes = two_entries();
        for len in 0..bytes.len() {
            assert!(open(&secret(), &bytes[..len]).is_err(), "{len}");
        }
    }

    /// A correctly signed datagram whose entries lie about their lengths is malformed.
    #[test]
    fn signed_but_inconsistent_entries_are_malformed() {
        let sign = |body: &[u8]| {
            let mut out = body.to_vec();
            out.extend_from_slice(&datagram_tag(&secret(), body));
            out
        };
        let bytes = two_entries();
        let body = &bytes[..bytes.len() - TAG_LEN];
        let mut count = body.to_vec();
        count[39] = 3;
        assert_eq!(open(&secret(), &sign(&count)), Err(DecodeError::Malformed));
        let mut key_len = body.to_vec();
        key_len[40..42].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(
            open(&secret(), &sign(&key_len)),
            Err(DecodeError::Malformed)
        );
        let mut swim_with_entries = body.to_vec();
        swim_with_entries[5] = 1;
        assert_eq!(
            open(&secret(), &sign(&swim_with_entries)),
            Err(DecodeError::Malformed)
        );
        let mut reserved = body.to_vec();
        reserved[5] = 2;
        assert_eq!(
            open(&secret(), &sign(&reserved)),
            Err(DecodeError::Malformed)
        );
        assert!(open(&secret(), &sign(&body[..body.len() - 1])).is_err());
    }

    /// 100,000 random inputs (pure noise, and valid datagrams with random bytes changed,
    /// re-signed so the entry parser is reached) never panic the decoder.
    #[test]
    fn random_input_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0060_551b);
        let valid = two_entries();
        let key = secret();
        let mut accepted = 0;
        for round in 0..100_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.random_range(0..300);
                (0..len).map(|_| rng.random()).collect()
            } else {
                let mut body = valid[..valid.len() - TAG_LEN].to_vec();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..body.len());
                    body[at] = rng.random();
                }
                let cut = rng.random_range(HEADER_LEN..=body.len());
                body.truncate(cut);
                let tag = datagram_tag(&key, &body);
                body.extend_from_slice(&tag);
                body
            };
            if open(&key, &bytes).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted < 100_000);
    }
}
