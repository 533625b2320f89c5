//! Admin authentication of control-plane calls (token or client certificate) and the caller's
//! name.
//!
//! A call carries the token as `authorization: Bearer <token>` metadata. [`AdminAuth`] compares
//! it with the node's token in constant time: both are reduced to an HMAC-SHA256 tag under a
//! fixed label and the tags are compared with [`hmac::Mac::verify_slice`], so neither the
//! token's bytes nor its length show in the time a refusal takes. A client certificate that
//! the TLS layer verified against the node's `tls.client_ca_file` ([`ClientCertificate`])
//! authenticates the call as well, and its name is the caller's name (it overrides
//! `x-heimdall-actor`). Mutating calls always need one of the two (a node with neither a token
//! nor client certificates refuses them all); read calls need one when the node sets
//! `admin.require_token_for_reads`.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::cert::ClientCertificate;

/// Metadata carrying the bearer token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Metadata carrying the caller's name for the config history (heimdallctl's `--as`).
pub const ACTOR_HEADER: &str = "x-heimdall-actor";

/// The caller's name when the call does not give one.
pub const UNKNOWN_ACTOR: &str = "unknown";

/// Longest accepted caller name, in bytes (longer names are cut at a character boundary).
pub const MAX_ACTOR_LEN: usize = 128;

/// The label both tokens are MACed over before they are compared.
const TAG_LABEL: &[u8] = b"heimdall admin token v1";

/// HMAC-SHA256.
type HmacSha256 = hmac::Hmac<Sha256>;

/// Whether a call only reads or changes something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Stats, lookups, config reads, listings: open unless reads require the token.
    Read,
    /// Flushes, loads, config changes, membership changes: always need the token.
    Write,
}

/// Who made an admitted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The name of the verified client certificate, else the name from [`ACTOR_HEADER`], else
    /// [`UNKNOWN_ACTOR`].
    pub actor: String,
    /// The call carried the right token or a verified client certificate.
    pub authenticated: bool,
}

/// The node's admin token, whether client certificates are verified, and whether reads need
/// authentication.
#[derive(Clone)]
pub struct AdminAuth {
    /// The MAC tag of the configured token; `None`: no token configured.
    tag: Option<Vec<u8>>,
    /// The listener verifies client certificates (`tls.client_ca_file`); only for messages:
    /// a certificate can only reach [`AdminAuth::admit`] when it was verified.
    client_certificates: bool,
    /// Reads need the token too.
    require_for_reads: bool,
}

impl std::fmt::Debug for AdminAuth {
    /// Never shows the token or its tag.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token_configured", &self.tag.is_some())
            .field("client_certificates", &self.client_certificates)
            .field("require_for_reads", &self.require_for_reads)
            .finish()
    }
}

/// The tag of `token`: HMAC-SHA256 keyed by the token over [`TAG_LABEL`].
fn tag(token: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed first), so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(token) {
        Ok(mac) => mac,
        Err(_) => HmacSha256::new(&Default::default()),
    };
    mac.update(TAG_LABEL);
    mac
}

impl AdminAuth {
    /// Checks calls against `token` (`None`: no token, every mutating call is refused).
    pub fn new(token: Option<&[u8]>, require_for_reads: bool) -> Self {
        Self {
            tag: token.map(|t| tag(t).finalize().into_bytes().to_vec()),
            client_certificates: false,
            require_for_reads,
        }
    }

    /// The same, noting whether the listener verifies client certificates (refusals then
    /// mention them).
    pub fn with_client_certificates(self, client_certificates: bool) -> Self {
        Self {
            client_certificates,
            ..self
        }
    }

    /// Admits or refuses a call with `metadata`, made over a connection with the verified
    /// client certificate `certificate` (if any), that needs `access`; refusals are
    /// UNAUTHENTICATED and say why without echoing the token.
    pub fn admit(
        &self,
        metadata: &MetadataMap,
        certificate: Option<&ClientCertificate>,
        access: Access,
    ) -> Result<Caller, Status> {
        let presented = bearer(metadata);
        let token_ok = match (&self.tag, presented) {
            (Some(expected), Some(token)) => tag(token.as_bytes()).verify_slice(expected).is_ok(),
            _ => false,
        };
        let authenticated = token_ok || certificate.is_some();
        let needed = access == Access::Write || self.require_for_reads;
        if needed && !authenticated {
            let what = match access {
                Access::Write => "this call changes the node or the cluster",
                Access::Read => "this node requires authentication for reads",
            };
            let reason = match (&self.tag, presented, self.client_certificates) {
                (None, _, false) => "no admin token is configured on this node (admin.token)",
                (None, _, true) => {
                    "no client certificate presented, and no admin token is configured on this \
                     node (admin.token)"
                }
                (Some(_), None, false) => "missing admin token (authorization: Bearer <token>)",
                (Some(_), None, true) => {
                    "missing admin token (authorization: Bearer <token>) or client certificate"
                }
                (Some(_), Some(_), _) => "wrong admin token",
            };
            return Err(Status::unauthenticated(format!("{reason}; {what}")));
        }
        let actor = certificate
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| actor(metadata));
        Ok(Caller {
            actor,
            authenticated,
        })
    }
}

/// The token of an `authorization: Bearer <token>` header, if there is one.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get(AUTHORIZATION_HEADER)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller's name from [`ACTOR_HEADER`] (trimmed, at most [`MAX_ACTOR_LEN`] bytes), or
/// [`UNKNOWN_ACTOR`].
fn actor(metadata: &MetadataMap) -> String {
    let name = metadata
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(UNKNOWN_ACTOR);
    let mut end = name.len().min(MAX_ACTOR_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata with the given authorization and actor headers.
    fn metadata(authorization: Option<&str>, actor: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(a) = authorization {
            m.insert(AUTHORIZATION_HEADER, a.parse().expect("ascii header"));
        }
        if let Some(a) = actor {
            m.insert(ACTOR_HEADER, a.parse().expect("ascii header"));
        }
        m
    }

    /// The right token admits writes and reads and the actor is handed on.
    #[test]
    fn right_token_admits() {
        let auth = AdminAuth::new(Some(b"s3cret-token"), true);
        let m = metadata(Some("Bearer s3cret-token"), Some("alice@host"));
        for access in [Access::Write, Access::Read] {
            let caller = auth.admit(&m, None, access).expect("admitted");
            assert_eq!(caller.actor, "alice@host");
            assert!(caller.authenticated);
        }
        let lower = metadata(Some("bearer  s3cret-token "), None);
        let caller = auth
            .admit(&lower, None, Access::Write)
            .expect("scheme is case-insensitive");
        assert_eq!(caller.actor, UNKNOWN_ACTOR);
    }

    /// A wrong token (also a prefix, a longer one, another scheme) is UNAUTHENTICATED.
    #[test]
    fn wrong_token_refused() {
        let auth = AdminAuth::new(Some(b"s3cret-token"), false);
        for header in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer S3CRET-TOKEN",
            "Basic s3cret-token",
            "s3cret-token",
            "Bearer ",
        ] {
            let err = auth
                .admit(&metadata(Some(header), None), None, Access::Write)
                .expect_err(header);
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{header}");
            assert!(!err.message().contains("s3cret"), "{}", err.message());
        }
    }

    /// A missing token is refused for writes, with a message that says so.
    #[test]
    fn missing_token_refused() {
        let auth = AdminAuth::new(Some(b"s3cret-token"), false);
        let err = auth
            .admit(&metadata(None, Some("bob")), None, Access::Write)
            .expect_err("no token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(
            err.message().contains("missing admin token"),
            "{}",
            err.message()
        );
    }

    /// Without a configured token every write is refused, even with some token.
    #[test]
    fn no_configured_token_refuses_writes() {
        let auth = AdminAuth::new(None, false);
        let err = auth
            .admit(
                &metadata(Some("Bearer anything"), None),
                None,
                Access::Write,
            )
            .expect_err("no token configured");
        assert!(err.message().contains("no admin token is configured"));
        assert!(
            auth.admit(&metadata(None, None), None, Access::Read)
                .is_ok()
        );
    }

    /// Reads are open by default (without or with a wrong token) and closed on request.
    #[test]
    fn reads_open_or_closed() {
        let open = AdminAuth::new(Some(b"tok"), false);
        let caller = open
            .admit(&metadata(None, None), None, Access::Read)
            .expect("open read");
        assert!(!caller.authenticated);
        assert!(
            open.admit(&metadata(Some("Bearer nope"), None), None, Access::Read)
                .is_ok()
        );

        let closed = AdminAuth::new(Some(b"tok"), true);
        for header in [None, Some("Bearer nope")] {
            let err = closed
                .admit(&metadata(header, None), None, Access::Read)
                .expect_err("closed read");
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
        }
        assert!(
            closed
                .admit(&metadata(Some("Bearer tok"), None), None, Access::Read)
                .is_ok()
        );
    }

    /// Long actor names are cut at a character boundary; the Debug form hides the token.
    #[test]
    fn actor_is_bounded_and_debug_hides_token() {
        let long = "é".repeat(100);
        let m = metadata(None, None);
        let mut m2 = m.clone();
        m2.insert_bin(
            "x-other-bin",
            tonic::metadata::MetadataValue::from_bytes(b"x"),
        );
        assert_eq!(actor(&m2), UNKNOWN_ACTOR);
        let mut m3 = MetadataMap::new();
        m3.insert(
            ACTOR_HEADER,
            tonic::metadata::MetadataValue::try_from(long.as_bytes()).expect("value"),
        );
        // Non-ASCII bytes are not valid `to_str` metadata: treated as absent.
        assert_eq!(actor(&m3), UNKNOWN_ACTOR);
        let ascii = "a".repeat(300);
        m3.insert(ACTOR_HEADER, ascii.parse().expect("ascii"));
        assert_eq!(actor(&m3).len(), MAX_ACTOR_LEN);
        let auth = AdminAuth::new(Some(b"very-secret"), false);
        assert!(!format!("{auth:?}").contains("very-secret"));
    }

    /// A verified client certificate authenticates writes and reads without a token, and its
    /// name overrides the actor header; a nameless one keeps the header's name.
    #[test]
    fn client_certificate_admits_and_names_the_caller() {
        let auth = AdminAuth::new(None, true).with_client_certificates(true);
        let m = metadata(None, Some("claimed-name"));
        let alice = ClientCertificate {
            name: Some("alice".to_owned()),
        };
        for access in [Access::Write, Access::Read] {
            let caller = auth.admit(&m, Some(&alice), access).expect("admitted");
            assert_eq!(caller.actor, "alice");
            assert!(caller.authenticated);
        }
        let nameless = ClientCertificate { name: None };
        let caller = auth
            .admit(&m, Some(&nameless), Access::Write)
            .expect("admitted");
        assert_eq!(caller.actor, "claimed-name");
        let err = auth
            .admit(&m, None, Access::Write)
            .expect_err("no certificate, no token");
        assert!(
            err.message().contains("no client certificate presented"),
            "{}",
            err.message()
        );
    }
}
