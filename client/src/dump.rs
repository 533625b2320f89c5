//! The cache dump file: what `heimdallctl cache dump` writes and `cache load` reads back.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! header   "HEIMDALL-CACHE\0" (15 bytes)  format version u8 (= 1)
//! record   length u32 (1 ..= MAX_RECORD_LEN)  a protobuf heimdall.v1.CacheEntry
//! ...
//! trailer  u32::MAX  record count u64  FNV-1a 64 of every record's bytes u64
//! ```
//!
//! A reader checks the header, each record's length and decoding, and at the end the count and
//! checksum, and that nothing follows the trailer, so a truncated, corrupted or foreign file is
//! refused before anything is loaded into a node. TTLs in the records are the ones left at
//! dump time; the node subtracts nothing for the time the file sat on disk beyond what it
//! refuses as expired, so load soon after dumping.

use std::io::{self, Read, Write};

use heimdall_proto::v1::CacheEntry;
use prost::Message;

/// The first bytes of every dump file.
pub const MAGIC: &[u8; 15] = b"HEIMDALL-CACHE\0";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The largest record accepted: a DNS message (at most 64 KiB) plus its key and names.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// The length value that marks the trailer instead of a record.
const TRAILER_MARK: u32 = u32::MAX;

/// Why a dump file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file does not start with the dump header.
    #[error("not a heimdall cache dump (bad header)")]
    BadMagic,
    /// The file is a dump of a format this code does not know.
    #[error(
        "unsupported dump format version {0} (this heimdallctl reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// The file ends before its trailer.
    #[error("truncated dump: the file ends inside record {record}")]
    Truncated {
        /// The 1-based record being read.
        record: u64,
    },
    /// A record's length is zero or too large.
    #[error("corrupt dump: record {record} claims {len} bytes")]
    BadLength {
        /// The 1-based record.
        record: u64,
        /// The length it claims.
        len: u32,
    },
    /// A record is not a protobuf CacheEntry.
    #[error("corrupt dump: record {record} does not decode: {reason}")]
    BadRecord {
        /// The 1-based record.
        record: u64,
        /// The decoder's reason.
        reason: String,
    },
    /// The trailer's count or checksum does not match the records.
    #[error("corrupt dump: the trailer {what} {found} does not match the records' {expected}")]
    BadTrailer {
        /// "record count" or "checksum".
        what: &'static str,
        /// The trailer's value.
        found: u64,
        /// The value computed from the records.
        expected: u64,
    },
    /// Bytes follow the trailer.
    #[error("corrupt dump: data after the trailer")]
    TrailingData,
}

/// FNV-1a, 64 bits: a cheap checksum that catches flipped or shifted bytes.
#[derive(Clone, Copy, Debug)]
struct Fnv64(u64);

impl Fnv64 {
    /// The FNV-1a offset basis.
    const fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    /// Mixes `bytes` in.
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes a dump file record by record; [`DumpWriter::finish`] writes the trailer.
#[derive(Debug)]
pub struct DumpWriter<W: Write> {
    /// Where the bytes go.
    out: W,
    /// Records written so far.
    count: u64,
    /// Checksum of the records so far.
    sum: Fnv64,
    /// Scratch buffer for one encoded record.
    buf: Vec<u8>,
}

impl<W: Write> DumpWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W) -> Result<DumpWriter<W>, DumpError> {
        out.write_all(MAGIC)?;
        out.write_all(&[FORMAT_VERSION])?;
        Ok(DumpWriter {
            out,
            count: 0,
            sum: Fnv64::new(),
            buf: Vec::new(),
        })
    }

    /// Appends one entry.
    pub fn write(&mut self, entry: &CacheEntry) -> Result<(), DumpError> {
        self.buf.clear();
        entry.encode(&mut self.buf).map_err(io::Error::other)?;
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|len| (1..=MAX_RECORD_LEN).contains(len))
            .ok_or(DumpError::BadLength {
                record: self.count + 1,
                len: u32::try_from(self.buf.len()).unwrap_or(u32::MAX),
            })?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.sum.update(&self.buf);
        self.count += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the trailer and flushes; returns the output and the number of records.
    pub fn finish(mut self) -> Result<(W, u64), DumpError> {
        self.out.write_all(&TRAILER_MARK.to_be_bytes())?;
        self.out.write_all(&self.count.to_be_bytes())?;
        self.out.write_all(&self.sum.0.to_be_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.count))
    }
}

/// Reads a dump file record by record, checking everything the format allows to check.
#[derive(Debug)]
pub struct DumpReader<R: Read> {
    /// Where the bytes come from.
    input: R,
    /// Records read so far.
    count: u64,
    /// Checksum of the records so far.
    sum: Fnv64,
    /// Scratch buffer for one record.
    buf: Vec<u8>,
    /// Set once the trailer has been read and checked.
    done: bool,
}

/// Fills `buf` from `input`; false when the input ended first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<bool, DumpError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl<R: Read> DumpReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<DumpReader<R>, DumpError> {
        let mut header = [0u8; MAGIC.len() + 1];
        if !read_full(&mut input, &mut header)? || &header[..MAGIC.len()] != MAGIC {
            return Err(DumpError::BadMagic);
        }
        let version = header[MAGIC.len()];
        if version != FORMAT_VERSION {
            return Err(DumpError::UnsupportedVersion(version));
        }
        Ok(DumpReader {
            input,
            count: 0,
            sum: Fnv64::new(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// The next entry; None after the trailer was read and matched the records.
    pub fn next_entry(&mut self) -> Result<Option<CacheEntry>, DumpError> {
        if self.done {
            return Ok(None);
        }
        let record = self.count + 1;
        let mut len = [0u8; 4];
        if !read_full(&mut self.input, &mut len)? {
            return Err(DumpError::Truncated { record });
        }
        let len = u32::from_be_bytes(len);
        if len == TRAILER_MARK {
            self.read_trailer()?;
            return Ok(None);
        }
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(DumpError::BadLength { record, len });
        }
        self.buf.resize(len as usize, 0);
        if !read_full(&mut self.input, &mut self.buf)? {
            return Err(DumpError::Truncated { record });
        }
        let entry = CacheEntry::decode(self.buf.as_slice()).map_err(|e| DumpError::BadRecord {
            record,
            reason: e.to_string(),
        })?;
        self.sum.update(&self.buf);
        self.count = record;
        Ok(Some(entry))
    }

    /// Checks the trailer against the records read and that the file ends there.
    fn read_trailer(&mut self) -> Result<(), DumpError> {
        let mut trailer = [0u8; 16];
        if !read_full(&mut self.input, &mut trailer)? {
            return Err(DumpError::Truncated {
                record: self.count + 1,
            });
        }
        let (count, sum) = trailer.split_at(8);
        let count = u64::from_be_bytes(count.try_into().unwrap_or_default());
        let sum = u64::from_be_bytes(sum.try_into().unwrap_or_default());
        if count != self.count {
            return Err(DumpError::BadTrailer {
                what: "record count",
                found: count,
                expected: self.count,
            });
        }
        if sum != self.sum.0 {
            return Err(DumpError::BadTrailer {
                what: "checksum",
                found: sum,
                expected: self.sum.0,
            });
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(DumpError::TrailingData);
        }
        self.done = true;
        Ok(())
    }

    /// Reads to the end, checking every record; returns how many there are.
    pub fn validate(mut self) -> Result<u64, DumpError> {
        while self.next_entry()?.is_some() {}
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_proto::v1::EntrySource;

    /// A few entries shaped like the ones a node dumps.
    fn entries() -> Vec<CacheEntry> {
        (0..5u8)
            .map(|i| CacheEntry {
                key: vec![3, b'w', b'w', b'w', 0, 0, 1, 0, 1, i],
                message: vec![i; 40 + usize::from(i)],
                ttl_remaining_ms: 30_000 + u64::from(i),
                source: EntrySource::Upstream as i32,
                name: format!("www{i}.example."),
                rtype: "A".into(),
            })
            .collect()
    }

    /// A dump of `entries` as bytes.
    fn dump(entries: &[CacheEntry]) -> Vec<u8> {
        let mut writer = DumpWriter::new(Vec::new()).expect("writing to memory");
        for entry in entries {
            writer.write(entry).expect("writing to memory");
        }
        writer.finish().expect("writing to memory").0
    }

    /// Every entry of a dump.
    fn read_all(bytes: &[u8]) -> Result<Vec<CacheEntry>, DumpError> {
        let mut reader = DumpReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            out.push(entry);
        }
        Ok(out)
    }

    /// What is written is read back unchanged, and validation counts the records.
    #[test]
    fn round_trip() {
        let entries = entries();
        let bytes = dump(&entries);
        assert_eq!(read_all(&bytes).expect("a valid dump"), entries);
        assert_eq!(
            DumpReader::new(bytes.as_slice())
                .and_then(DumpReader::validate)
                .ok(),
            Some(5)
        );
        let empty = dump(&[]);
        assert_eq!(read_all(&empty).expect("a valid empty dump"), Vec::new());
    }

    /// A file that is not a dump is refused by its header.
    #[test]
    fn foreign_file_is_refused() {
        let err = read_all(b"{\"not\": \"a dump\"}").expect_err("JSON is no dump");
        assert!(matches!(err, DumpError::BadMagic), "{err}");
        let err = read_all(b"").expect_err("an empty file is no dump");
        assert!(matches!(err, DumpError::BadMagic), "{err}");
        let mut future = dump(&entries());
        future[MAGIC.len()] = 2;
        let err = read_all(&future).expect_err("version 2 is unknown");
        assert!(matches!(err, DumpError::UnsupportedVersion(2)), "{err}");
    }

    /// Every truncation of a valid dump is refused.
    #[test]
    fn truncation_is_refused() {
        let bytes = dump(&entries());
        for cut in MAGIC.len() + 1..bytes.len() {
            let err = read_all(&bytes[..cut]).expect_err("a truncated dump");
            assert!(
                matches!(err, DumpError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    /// A flipped byte anywhere after the header is refused (length, record, or trailer).
    #[test]
    fn corruption_is_refused() {
        let bytes = dump(&entries());
        for at in MAGIC.len() + 1..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(read_all(&bad).is_err(), "flipped byte {at} went unnoticed");
        }
    }

    /// Bytes after the trailer are refused.
    #[test]
    fn trailing_data_is_refused() {
        let mut bytes = dump(&entries());
        bytes.push(0);
        let err = read_all(&bytes).expect_err("data after the trailer");
        assert!(matches!(err, DumpError::TrailingData), "{err}");
    }

    /// A zero or oversized record length is refused with its record number.
    #[test]
    fn bad_lengths_are_refused() {
        let mut bytes = MAGIC.to_vec();
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&(MAX_RECORD_LEN + 1).to_be_bytes());
        let err = read_all(&bytes).expect_err("an oversized record");
        assert_eq!(
            err.to_string(),
            "corrupt dump: record 1 claims 1048577 bytes"
        );
    }
}
