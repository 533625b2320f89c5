//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018): reading the COOKIE
//! option of a query, checking its server cookie, and making a fresh one.
//!
//! A server cookie is version 1, three reserved zero bytes, a 32-bit Unix timestamp and
//! SipHash-2-4 under the server secret over client cookie | version | reserved | timestamp |
//! client IP (4 or 16 bytes). The secret of each hour is derived from the node's master key
//! (the cluster secret, so every node of a cluster makes and accepts the same cookies as
//! RFC 9018 intends for anycast sets; a random key on a node without one), and a cookie made
//! under the previous hour's secret is still accepted, so a rotation never invalidates a
//! cookie inside its one-hour lifetime.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hmac::{KeyInit, Mac};
use siphasher::sip::SipHasher24;

/// The EDNS option code of COOKIE (RFC 7873).
pub const OPTION_COOKIE: u16 = 10;
/// Length of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Length of the server cookies this node makes (RFC 9018).
pub const SERVER_LEN: usize = 16;
/// Length of the COOKIE option value in our answers: client cookie and our server cookie.
pub const REPLY_LEN: usize = CLIENT_LEN + SERVER_LEN;
/// Bytes the COOKIE option adds to an answer's OPT record (code, length, value).
pub const REPLY_OPTION_LEN: usize = 4 + REPLY_LEN;
/// Server cookie version of RFC 9018.
const VERSION: u8 = 1;
/// A server cookie older than this is no longer valid (RFC 9018 section 4.3), in seconds.
const MAX_AGE: u32 = 3600;
/// A server cookie from further in the future than this is not valid, in seconds.
const MAX_FUTURE: u32 = 300;
/// A valid server cookie younger than this is echoed; an older one is replaced, in seconds.
const RENEW_AFTER: u32 = 1800;
/// Length of one secret's period; a secret stays acceptable for two periods. At least
/// [`MAX_AGE`], so a cookie stays valid for its whole lifetime.
pub const ROTATION_SECS: u64 = 3600;

/// The COOKIE option of a query, as far as the server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryCookie<'a> {
    /// No COOKIE option.
    Absent,
    /// A COOKIE option of a length RFC 7873 forbids (not 8, and not 16..=40): FORMERR.
    Malformed,
    /// A client cookie without a server cookie.
    ClientOnly {
        /// The client cookie.
        client: [u8; CLIENT_LEN],
    },
    /// A client cookie and a server cookie (8..=32 bytes).
    WithServer {
        /// The client cookie.
        client: [u8; CLIENT_LEN],
        /// The server cookie, whatever its format.
        server: &'a [u8],
    },
}

/// Reads the first COOKIE option of a query's OPT option bytes (RFC 7873 section 5.2: later
/// ones are ignored). Options that fail to parse were refused by the query parser already.
pub fn find(options: heimdall_wire::EdnsOptions<'_>) -> QueryCookie<'_> {
    for option in options {
        let Ok((code, value)) = option else {
            return QueryCookie::Absent;
        };
        if code != OPTION_COOKIE {
            continue;
        }
        let Some((client, server)) = value.split_first_chunk::<CLIENT_LEN>() else {
            return QueryCookie::Malformed;
        };
        return match server.len() {
            0 => QueryCookie::ClientOnly { client: *client },
            8..=32 => QueryCookie::WithServer {
                client: *client,
                server,
            },
            _ => QueryCookie::Malformed,
        };
    }
    QueryCookie::Absent
}

/// The two secrets a node accepts: the current hour's and the previous hour's.
#[derive(Clone, Copy, Debug)]
struct Secrets {
    /// Which period (Unix seconds / [`ROTATION_SECS`]) `current` belongs to.
    period: u64,
    /// Makes new cookies and checks them.
    current: [u8; 16],
    /// Still checks cookies made before the last rotation.
    previous: [u8; 16],
    /// The same two secrets derived from a retired master key (the previous cluster secret
    /// during a rotation of it), accepted until `Cookies::retired_until`.
    retired: Option<[[u8; 16]; 2]>,
}

/// A master key being rotated out, and until when its cookies are accepted.
struct Retired {
    /// The previous master key (the previous cluster secret).
    master: Vec<u8>,
    /// Unix seconds after which its cookies are no longer accepted.
    until: u64,
}

/// The node's cookie secrets, rotated every [`ROTATION_SECS`] by [`Cookies::rotate`].
pub struct Cookies {
    /// The key every period's secret is derived from (never leaves this struct).
    master: Vec<u8>,
    /// A master key being rotated out, whose cookies are still accepted for a while.
    retired: Option<Retired>,
    /// The secrets in use, swapped whole by a rotation and read without a lock.
    secrets: ArcSwap<Secrets>,
}

impl std::fmt::Debug for Cookies {
    /// Shows the period only, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookies")
            .field("period", &self.secrets.load().period)
            .finish_non_exhaustive()
    }
}

impl Cookies {
    /// Cookies whose secrets derive from `master` (the cluster secret, or random bytes), with
    /// the secrets of the period containing `unix` seconds in use.
    pub fn new(master: &[u8], unix: u64) -> Cookies {
        let master = master.to_vec();
        let secrets = derive_secrets(&master, None, unix / ROTATION_SECS);
        Cookies {
            master,
            retired: None,
            secrets: ArcSwap::from_pointee(secrets),
        }
    }

    /// Also accept (never make) cookies derived from `retired`, the previous cluster secret,
    /// until Unix second `until`, so rotating the cluster secret does not turn every client's
    /// cookie into a BADCOOKIE at once. `unix` is now.
    pub fn with_retired(mut self, retired: &[u8], until: u64, unix: u64) -> Cookies {
        self.retired = Some(Retired {
            master: retired.to_vec(),
            until,
        });
        let secrets = derive_secrets(&self.master, self.retired.as_ref(), unix / ROTATION_SECS);
        self.secrets = ArcSwap::from_pointee(secrets);
        self
    }

    /// Cookies under a random master key (a node without a cluster secret).
    pub fn random(unix: u64) -> Cookies {
        let master: [u8; 32] = rand::random();
        Cookies::new(&master, unix)
    }

    /// Installs the secrets of the period containing `unix` seconds, if it is a new one.
    /// Returns whether it rotated.
    pub fn rotate(&self, unix: u64) -> bool {
        let period = unix / ROTATION_SECS;
        if self.secrets.load().period == period {
            return false;
        }
        let retired = self.retired.as_ref().filter(|r| unix < r.until);
        self.secrets
            .store(Arc::new(derive_secrets(&self.master, retired, period)));
        true
    }

    /// Whether `server` is a server cookie this node (or any node with the same master key)
    /// made for `client` at `ip`, no older than an hour and not from the future; if so, its
    /// timestamp.
    pub fn check(
        &self,
        client: &[u8; CLIENT_LEN],
        server: &[u8],
        ip: IpAddr,
        unix: u32,
    ) -> Option<u32> {
        let cookie: &[u8; SERVER_LEN] = server.try_into().ok()?;
        let [version, r0, r1, r2, t0, t1, t2, t3, hash @ ..] = *cookie;
        if version != VERSION || [r0, r1, r2] != [0, 0, 0] {
            return None;
        }
        let stamp = u32::from_be_bytes([t0, t1, t2, t3]);
        // Serial-number arithmetic: the timestamp wraps in 2106.
        let age = unix.wrapping_sub(stamp);
        let ahead = stamp.wrapping_sub(unix);
        if age > MAX_AGE && ahead > MAX_FUTURE {
            return None;
        }
        let secrets = self.secrets.load();
        let matches = |secret: &[u8; 16]| {
            let expected = hash_of(secret, client, stamp, ip);
            // Not secret-dependent timing worth hiding: the hash is over public input and an
            // attacker learns a forged cookie failed either way; still compare all bytes.
            expected
                .iter()
                .zip(hash.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        };
        let retired = secrets.retired.filter(|_| {
            self.retired
                .as_ref()
                .is_some_and(|r| u64::from(unix) < r.until)
        });
        let matches_retired = || retired.is_some_and(|[a, b]| matches(&a) || matches(&b));
        (matches(&secrets.current) || matches(&secrets.previous) || matches_retired())
            .then_some(stamp)
    }

    /// Whether a valid server cookie stamped `stamp` should be replaced by a fresh one at
    /// `unix` (it is older than half an hour, RFC 9018 section 4.3).
    pub fn needs_renewal(stamp: u32, unix: u32) -> bool {
        let age = unix.wrapping_sub(stamp);
        age > RENEW_AFTER && age <= MAX_AGE
    }

    /// A fresh server cookie for `client` at `ip`, stamped `unix`, under the current secret.
    pub fn make(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, unix: u32) -> [u8; SERVER_LEN] {
        let secrets = self.secrets.load();
        make_with(&secrets.current, client, ip, unix)
    }
}

/// The current Unix time in whole seconds (0 before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A server cookie for `client` at `ip` stamped `unix`, under `secret`.
fn make_with(
    secret: &[u8; 16],
    client: &[u8; CLIENT_LEN],
    ip: IpAddr,
    unix: u32,
) -> [u8; SERVER_LEN] {
    let mut cookie = [0u8; SERVER_LEN];
    let [t0, t1, t2, t3] = unix.to_be_bytes();
    let [h0, h1, h2, h3, h4, h5, h6, h7] = hash_of(secret, client, unix, ip);
    cookie.copy_from_slice(&[
        VERSION, 0, 0, 0, t0, t1, t2, t3, h0, h1, h2, h3, h4, h5, h6, h7,
    ]);
    cookie
}

/// SipHash-2-4 under `secret` over client cookie | version | reserved | timestamp | client IP.
fn hash_of(secret: &[u8; 16], client: &[u8; CLIENT_LEN], stamp: u32, ip: IpAddr) -> [u8; 8] {
    let mut hasher = SipHasher24::new_with_key(secret);
    hasher.write(client);
    hasher.write(&[VERSION, 0, 0, 0]);
    hasher.write(&stamp.to_be_bytes());
    match ip.to_canonical() {
        IpAddr::V4(v4) => hasher.write(&v4.octets()),
        IpAddr::V6(v6) => hasher.write(&v6.octets()),
    }
    hasher.finish().to_le_bytes()
}

/// The secrets of `period` and the one before, derived from `master` (and from a retired
/// master, when there is one).
fn derive_secrets(master: &[u8], retired: Option<&Retired>, period: u64) -> Secrets {
    let pair = |key: &[u8]| {
        [
            derive_secret(key, period),
            derive_secret(key, period.saturating_sub(1)),
        ]
    };
    let [current, previous] = pair(master);
    Secrets {
        period,
        current,
        previous,
        retired: retired.map(|r| pair(&r.master)),
    }
}

/// The secret of one period: the first 16 bytes of HMAC-SHA256(master, label | period).
fn derive_secret(master: &[u8], period: u64) -> [u8; 16] {
    let mut secret = [0u8; 16];
    // HMAC takes keys of any length, so this never fails.
    if let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(master) {
        mac.update(b"heimdall-dns-cookie-secret-v1\n");
        mac.update(&period.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        if let Some(first) = tag.first_chunk::<16>() {
            secret = *first;
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a hex string (test vectors).
    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The secret of RFC 9018 Appendix A.
    fn rfc_secret() -> [u8; 16] {
        hex("e5e973e5a6b2a43f48e7dc849e37bfcf")
            .try_into()
            .expect("16 bytes")
    }

    /// RFC 9018 Appendix A.1 to A.3: the server cookies made for the examples' clients.
    #[test]
    fn rfc9018_test_vectors() {
        let cases = [
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1559731985,
                "010000005cf79f111f8130c3eee29480",
            ),
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1559734385,
                "010000005cf7a871d4a564a1442aca77",
            ),
            (
                "fc93fc62807ddb86",
                "203.0.113.203",
                1559734700,
                "010000005cf7a9acf73a7810aca2381e",
            ),
        ];
        for (client, ip, unix, want) in cases {
            let client: [u8; 8] = hex(client).try_into().expect("8 bytes");
            let ip: IpAddr = ip.parse().expect("ip");
            let made = make_with(&rfc_secret(), &client, ip, unix);
            assert_eq!(made.to_vec(), hex(want), "{ip} at {unix}");
        }
    }

    /// A cookie checks for its client and address within its hour, under the previous
    /// secret after one rotation, and never for another client, address, or after two.
    #[test]
    fn check_accepts_own_cookies_and_rejects_others() {
        let start = 1_800_000_000u64;
        let cookies = Cookies::new(b"a cluster secret of some length", start);
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let unix = start as u32;
        let made = cookies.make(&client, ip, unix);
        assert_eq!(cookies.check(&client, &made, ip, unix), Some(unix));
        assert_eq!(cookies.check(&client, &made, ip, unix + 3599), Some(unix));
        assert_eq!(
            cookies.check(&client, &made, ip, unix + 3601),
            None,
            "too old"
        );
        assert_eq!(
            cookies.check(&client, &made, ip, unix - 301),
            None,
            "future"
        );
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(cookies.check(&client, &made, other, unix), None);
        assert_eq!(cookies.check(&[0; 8], &made, ip, unix), None);
        let mut forged = made;
        forged[15] ^= 1;
        assert_eq!(cookies.check(&client, &forged, ip, unix), None);
        assert_eq!(cookies.check(&client, &made[..8], ip, unix), None);

        // One rotation: the previous secret still checks; a second one retires it.
        assert!(cookies.rotate(start + ROTATION_SECS));
        assert!(!cookies.rotate(start + ROTATION_SECS + 1));
        assert_eq!(cookies.check(&client, &made, ip, unix + 60), Some(unix));
        assert!(cookies.rotate(start + 2 * ROTATION_SECS));
        assert_eq!(cookies.check(&client, &made, ip, unix + 60), None);

        // Another node with the same master key accepts the cookie; one without does not.
        let same = Cookies::new(b"a cluster secret of some length", start);
        assert_eq!(same.check(&client, &made, ip, unix), Some(unix));
        let stranger = Cookies::random(start);
        assert_eq!(stranger.check(&client, &made, ip, unix), None);
    }

    /// While the cluster secret rotates, cookies made under the previous one are accepted until
    /// the grace period ends, and new cookies are made under the new one only.
    #[test]
    fn retired_master_is_accepted_until_its_grace_ends() {
        let start = 1_800_000_000u64;
        let unix = start as u32;
        let client = [4u8; 8];
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let old = Cookies::new(b"the previous cluster secret", start);
        let made = old.make(&client, ip, unix);
        let new = Cookies::new(b"the current cluster secret", start).with_retired(
            b"the previous cluster secret",
            start + 600,
            start,
        );
        assert_eq!(new.check(&client, &made, ip, unix + 60), Some(unix));
        assert_eq!(
            new.check(&client, &made, ip, unix + 601),
            None,
            "grace over"
        );
        let fresh = new.make(&client, ip, unix);
        assert_eq!(
            old.check(&client, &fresh, ip, unix),
            None,
            "made under the new key"
        );
        let without = Cookies::new(b"the current cluster secret", start);
        assert_eq!(without.check(&client, &made, ip, unix + 60), None);
    }

    /// Cookies are renewed only after half an hour.
    #[test]
    fn renewal_after_half_an_hour() {
        assert!(!Cookies::needs_renewal(1000, 1000 + 1800));
        assert!(Cookies::needs_renewal(1000, 1000 + 1801));
    }
}
