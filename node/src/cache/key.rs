//! Cache keys: lower-cased question name, type, class and the DO/CD bits, built on the stack.

use heimdall_wire::{MAX_NAME_LEN, Name};

/// Bytes a key adds after the name: type, class and the flags byte.
const SUFFIX_LEN: usize = 5;
/// Longest key: a 255-byte name and the suffix.
pub const MAX_KEY_LEN: usize = MAX_NAME_LEN + SUFFIX_LEN;

// Gossip carries cache keys, so its bound on key length must be the cache's.
const _: () = assert!(MAX_KEY_LEN == heimdall_gossip_wire::MAX_KEY_LEN);

/// Flags-byte bit: the query had the EDNS DO bit (DNSSEC records wanted).
pub const KEY_DNSSEC_OK: u8 = 0x01;
/// Flags-byte bit: the query had the CD bit (validation disabled).
pub const KEY_CHECKING_DISABLED: u8 = 0x02;

/// Write the cache key of a question into `out` and return its length: the uncompressed
/// lower-cased name in wire form, the type and class (big-endian), then a flags byte (bit 0 =
/// DO, bit 1 = CD). Returns 0 if the key does not fit `out`; a buffer of [`MAX_KEY_LEN`] bytes
/// holds the key of every name [`Name::parse`] accepts, one of [`key_len`] bytes holds this one's.
pub fn write_key(
    name: &Name<'_>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    cd: bool,
    out: &mut [u8],
) -> usize {
    let room = out.len().min(MAX_NAME_LEN);
    let Some(Ok(len)) = out
        .get_mut(..room)
        .map(|name_out| name.write_lower(name_out))
    else {
        return 0;
    };
    let mut flags = 0;
    if dnssec_ok {
        flags |= KEY_DNSSEC_OK;
    }
    if cd {
        flags |= KEY_CHECKING_DISABLED;
    }
    let [t0, t1] = qtype.to_be_bytes();
    let [c0, c1] = qclass.to_be_bytes();
    match out.get_mut(len..len + SUFFIX_LEN) {
        Some(suffix) => {
            suffix.copy_from_slice(&[t0, t1, c0, c1, flags]);
            len + SUFFIX_LEN
        }
        None => 0,
    }
}

/// Length of the key of a question named `name` (what [`write_key`] writes).
pub fn key_len(name: &Name<'_>) -> usize {
    name.wire_len() + SUFFIX_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_wire::name_from_str;

    /// Parse a presentation name into a buffer usable by `Name::parse`.
    fn wire(s: &str) -> Vec<u8> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let len = name_from_str(s, &mut buf).expect("valid test name");
        buf[..len].to_vec()
    }

    /// The key is the lower-cased name, type, class and flags; names differing in case share a key.
    #[test]
    fn key_layout_and_case_folding() {
        let upper = wire("WwW.Example.ORG");
        let lower = wire("www.example.org");
        let (a, _) = Name::parse(&upper, 0).expect("name");
        let (b, _) = Name::parse(&lower, 0).expect("name");
        let mut ka = [0u8; MAX_KEY_LEN];
        let mut kb = [0u8; MAX_KEY_LEN];
        let la = write_key(&a, 1, 1, true, false, &mut ka);
        let lb = write_key(&b, 1, 1, true, false, &mut kb);
        assert_eq!(ka[..la], kb[..lb]);
        let mut expected = lower.clone();
        expected.extend_from_slice(&[0, 1, 0, 1, KEY_DNSSEC_OK]);
        assert_eq!(&ka[..la], &expected[..]);
        let lc = write_key(&a, 1, 1, false, true, &mut ka);
        assert_eq!(ka[lc - 1], KEY_CHECKING_DISABLED);
        let ld = write_key(&a, 28, 1, false, false, &mut kb);
        assert_ne!(ka[..lc], kb[..ld]);
    }

    /// A maximal 255-byte name still fits, with its 5-byte suffix.
    #[test]
    fn longest_name_fits() {
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        let bytes = wire(&long);
        assert_eq!(bytes.len(), MAX_NAME_LEN);
        let (name, _) = Name::parse(&bytes, 0).expect("name");
        let mut key = [0u8; MAX_KEY_LEN];
        assert_eq!(write_key(&name, 1, 1, false, false, &mut key), MAX_KEY_LEN);
        assert_eq!(key_len(&name), MAX_KEY_LEN);
    }

    /// A buffer one byte short of the key gets nothing (0), one of `key_len` bytes the key.
    #[test]
    fn short_buffer_gets_nothing() {
        let bytes = wire("www.example.org");
        let (name, _) = Name::parse(&bytes, 0).expect("name");
        let need = key_len(&name);
        let mut full = [0u8; MAX_KEY_LEN];
        let expected = write_key(&name, 1, 1, false, false, &mut full);
        assert_eq!(expected, need);
        let mut short = vec![0u8; need - 1];
        assert_eq!(write_key(&name, 1, 1, false, false, &mut short), 0);
        let mut exact = vec![0u8; need];
        assert_eq!(write_key(&name, 1, 1, false, false, &mut exact), need);
        assert_eq!(exact[..], full[..need]);
    }
}
