//! Authentication of internal cluster RPCs: an HMAC-SHA256 under the cluster secret.
//!
//! Every call carries the metadata [`AUTH_HEADER`] = `v1:<unix ms>:<hex mac>`, where the MAC
//! is taken over a fixed context string, the gRPC method path, the timestamp and the SHA-256
//! of the encoded request message. The receiver recomputes it over the message it decoded
//! (protobuf encoding of our messages is deterministic: no map fields), checks it in constant
//! time ([`hmac::Mac::verify_slice`]) and refuses timestamps more than [`MAX_SKEW`] away from
//! its own clock, which bounds how long a captured call could be replayed.
//!
//! The secret itself never travels and is never logged ([`crate::config::Secret`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// The metadata key carrying the authentication tag.
pub const AUTH_HEADER: &str = "x-heimdall-auth";

/// How far the sender's timestamp may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Domain separation: a MAC made for this protocol is useless anywhere else.
const CONTEXT: &[u8] = b"heimdall-cluster-rpc-v1";

/// Version prefix of the header value.
const VERSION: &str = "v1";

/// HMAC-SHA256.
type HmacSha256 = hmac::Hmac<Sha256>;

/// Why an authentication tag was refused; counted and answered UNAUTHENTICATED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The call carried no [`AUTH_HEADER`].
    #[error("missing {AUTH_HEADER}")]
    Missing,
    /// The header is not `v1:<ms>:<64 hex digits>`.
    #[error("malformed {AUTH_HEADER}")]
    Malformed,
    /// The timestamp is more than [`MAX_SKEW`] away from this node's clock.
    #[error("{AUTH_HEADER} timestamp outside the allowed clock skew")]
    Expired,
    /// The MAC does not match (another secret, or a modified message).
    #[error("{AUTH_HEADER} does not match")]
    BadMac,
    /// This node has no cluster secret, so it accepts no internal call.
    #[error("this node has no cluster secret and accepts no cluster RPC")]
    NoSecret,
}

/// The current time as Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The MAC state over everything signed, keyed with `secret`.
fn mac(secret: &Secret, method: &str, at_ms: u64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret.expose()) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac_key(),
    };
    let body_hash = Sha256::digest(body);
    mac.update(CONTEXT);
    mac.update(b"\n");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(at_ms.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(&body_hash);
    mac
}

/// HMAC takes keys of every length, so keying cannot fail; this documents the dead branch.
#[cold]
fn unreachable_hmac_key() -> ! {
    unreachable!("HMAC accepts keys of any length")
}

/// The header value authenticating a call of `method` (a gRPC path such as
/// `/heimdall.v1.RaftService/Vote`) carrying the encoded message `body`, made at `at_ms`.
pub fn sign(secret: &Secret, method: &str, at_ms: u64, body: &[u8]) -> String {
    let tag = mac(secret, method, at_ms, body).finalize().into_bytes();
    format!("{VERSION}:{at_ms}:{}", hex(&tag))
}

/// Checks a header value for `method` and `body` at `now_ms`, in constant time.
pub fn verify(
    secret: &Secret,
    method: &str,
    header: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let mut parts = header.splitn(3, ':');
    let (Some(VERSION), Some(at), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let at_ms: u64 = at.parse().map_err(|_| AuthError::Malformed)?;
    let tag = unhex(tag).ok_or(AuthError::Malformed)?;
    let skew = u128::from(now_ms.abs_diff(at_ms));
    if skew > MAX_SKEW.as_millis() {
        return Err(AuthError::Expired);
    }
    mac(secret, method, at_ms, body)
        .verify_slice(&tag)
        .map_err(|_| AuthError::BadMac)
}

/// The secrets a node checks incoming calls and gossip with: the current cluster secret
/// (the only one it signs with) and, during a rotation, the previous one, accepted until the
/// grace period set by `cluster.previous_secret_grace_s` ends.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// The cluster secret.
    current: Secret,
    /// The secret being rotated out, and until when it is accepted.
    previous: Option<(Secret, Instant)>,
}

impl Keyring {
    /// Only `current`.
    pub fn new(current: Secret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Also accepts `previous` for `grace` from now.
    pub fn with_previous(mut self, previous: Secret, grace: Duration) -> Self {
        self.previous = Some((previous, Instant::now() + grace));
        self
    }

    /// The current secret (signs everything this node sends).
    pub fn current(&self) -> &Secret {
        &self.current
    }

    /// The previous secret while its grace period lasts.
    pub fn previous(&self) -> Option<&Secret> {
        self.previous
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(secret, _)| secret)
    }

    /// [`verify`] under the current secret, then (for a MAC that does not match) under the
    /// previous one while it is accepted.
    pub fn verify(
        &self,
        method: &str,
        header: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), AuthError> {
        match verify(&self.current, method, header, body, now_ms) {
            Err(AuthError::BadMac) => match self.previous() {
                Some(previous) => verify(previous, method, header, body, now_ms),
                None => Err(AuthError::BadMac),
            },
            other => other,
        }
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex (either case); `None` unless it is exactly 32 bytes (a SHA-256 MAC).
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let value = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(value(*hi)? << 4 | value(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test secret.
    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    /// A keyring accepts its current secret, the previous one only during the grace period,
    /// and nothing else.
    #[test]
    fn keyring_accepts_the_previous_secret_during_the_grace_period() {
        let (new, old, other) = (
            secret("the-new-cluster-secret"),
            secret("the-old-cluster-secret"),
            secret("some-other-secret-000"),
        );
        let m = "/heimdall.v1.RaftService/Vote";
        let signed = |k: &Secret| sign(k, m, 1_000_000, b"body");
        let check =
            |ring: &Keyring, k: &Secret| ring.verify(m, Some(&signed(k)), b"body", 1_000_000);
        let rotating =
            Keyring::new(new.clone()).with_previous(old.clone(), Duration::from_secs(60));
        assert_eq!(check(&rotating, &new), Ok(()));
        assert_eq!(check(&rotating, &old), Ok(()));
        assert_eq!(check(&rotating, &other), Err(AuthError::BadMac));
        assert_eq!(rotating.current(), &new);
        let ended = Keyring::new(new.clone()).with_previous(old.clone(), Duration::ZERO);
        assert!(ended.previous().is_none());
        assert_eq!(check(&ended, &new), Ok(()));
        assert_eq!(check(&ended, &old), Err(AuthError::BadMac));
        assert_eq!(check(&Keyring::new(new), &old), Err(AuthError::BadMac));
    }

    /// A signed call verifies; any change to method, body, time or secret does not.
    #[test]
    fn sign_then_verify() {
        let key = secret("0123456789abcdef-cluster");
        let header = sign(&key, "/heimdall.v1.RaftService/Vote", 1_000_000, b"body");
        assert!(header.starts_with("v1:1000000:"), "{header}");
        let ok = |m: &str, h: &str, b: &[u8], now: u64, k: &Secret| verify(k, m, Some(h), b, now);
        let m = "/heimdall.v1.RaftService/Vote";
        assert_eq!(ok(m, &header, b"body", 1_000_000, &key), Ok(()));
        assert_eq!(ok(m, &header, b"body", 1_029_000, &key), Ok(()));
        assert_eq!(ok(m, &header, b"body", 971_000, &key), Ok(()));
        assert_eq!(
            ok(
                "/heimdall.v1.RaftService/AppendEntries",
                &header,
                b"body",
                1_000_000,
                &key
            ),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            ok(m, &header, b"bodY", 1_000_000, &key),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            ok(
                m,
                &header,
                b"body",
                1_000_000,
                &secret("another-secret-0000")
            ),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            ok(m, &header, b"body", 1_031_000, &key),
            Err(AuthError::Expired)
        );
        assert_eq!(
            verify(&key, m, None, b"body", 1_000_000),
            Err(AuthError::Missing)
        );
        let forged = header.replace("v1:1000000:", "v1:1000001:");
        assert_eq!(
            ok(m, &forged, b"body", 1_000_000, &key),
            Err(AuthError::BadMac)
        );
    }

    /// Malformed headers are refused without panicking.
    #[test]
    fn malformed_headers() {
        let key = secret("0123456789abcdef-cluster");
        for header in [
            "",
            "v1",
            "v1:abc:00",
            "v2:1:00",
            "v1:1:zz",
            "v1:1:",
            "v1:1:0123",
            &format!("v1:1:{}", "g".repeat(64)),
            &format!("v1:1:{}", "é".repeat(32)),
        ] {
            assert_eq!(
                verify(&key, "/m", Some(header), b"", 1),
                Err(AuthError::Malformed),
                "{header:?}"
            );
        }
    }

    /// Hex round trip.
    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..32).map(|i| i * 7).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.clone()));
        assert_eq!(unhex(&hex(&bytes).to_uppercase()), Some(bytes));
    }
}
