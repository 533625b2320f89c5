//! The client's error type: every failure is one readable line naming the endpoint and why.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};

/// The metadata key a node answers UNAVAILABLE with when another node leads: `ID@host:port`.
pub const LEADER_METADATA: &str = "x-heimdall-leader";

/// Where the leader is, as a node names it in [`LEADER_METADATA`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id.
    pub id: u64,
    /// Its gRPC address, `host:port`.
    pub addr: String,
}

impl LeaderHint {
    /// Parses `ID@host:port`; None when the text has another shape.
    pub fn parse(text: &str) -> Option<LeaderHint> {
        let (id, addr) = text.trim().split_once('@')?;
        let id = id.parse().ok()?;
        let (host, port) = addr.rsplit_once(':')?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return None;
        }
        Some(LeaderHint {
            id,
            addr: addr.to_owned(),
        })
    }

    /// The hint carried by a status' metadata, if any.
    pub fn from_status(status: &Status) -> Option<LeaderHint> {
        let value = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
        LeaderHint::parse(value)
    }
}

impl fmt::Display for LeaderHint {
    /// `node 3 at 127.0.0.3:50051`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} at {}", self.id, self.addr)
    }
}

/// A failed call to a node's control plane. Display is one line: the endpoint, then the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint text is not a usable URI.
    #[error("{endpoint}: invalid endpoint: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token or actor name cannot travel as gRPC metadata.
    #[error("{endpoint}: invalid {what}: it must be visible ASCII")]
    InvalidMetadata {
        /// The endpoint the client was for.
        endpoint: String,
        /// "token" or "actor name".
        what: &'static str,
    },
    /// The TLS handshake failed (an untrusted or wrong server certificate, a client
    /// certificate the node requires or refuses), or the TLS configuration is unusable.
    #[error("{endpoint}: TLS handshake failed: {reason}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// rustls' reason, with a hint at the flag to check.
        reason: String,
    },
    /// No connection could be made (refused, no route, connect timeout, connection lost).
    #[error("{endpoint}: unreachable: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The transport's reason.
        reason: String,
    },
    /// The node refused the admin token (missing or wrong).
    #[error("{endpoint}: unauthenticated: {message} (check --token or --token-file)")]
    Unauthenticated {
        /// The endpoint.
        endpoint: String,
        /// The node's message.
        message: String,
    },
    /// The node cannot take the change because it does not lead (or no leader is known).
    #[error("{endpoint}: not the leader: {message}; {}", leader_text(.leader))]
    NotLeader {
        /// The endpoint.
        endpoint: String,
        /// The node's message.
        message: String,
        /// Where the leader is, when the node knows.
        leader: Option<LeaderHint>,
    },
    /// The request did not validate; the message names the field.
    #[error("{endpoint}: invalid request: {message}")]
    Invalid {
        /// The endpoint.
        endpoint: String,
        /// The node's message, naming the field.
        message: String,
    },
    /// A compare-and-set found another version than the expected one.
    #[error("{endpoint}: stale version: {message}")]
    StaleVersion {
        /// The endpoint.
        endpoint: String,
        /// The node's message.
        message: String,
    },
    /// The call did not complete in time.
    #[error("{endpoint}: timed out{}", timeout_text(*.after))]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The deadline that passed, when the client set it.
        after: Option<Duration>,
    },
    /// The node refused a change for the state it is in (other than a stale version), e.g. a
    /// membership change it cannot make now.
    #[error("{endpoint}: refused: {message}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The node's message.
        message: String,
    },
    /// What was asked for does not exist (an unknown key, version or node).
    #[error("{endpoint}: not found: {message}")]
    NotFound {
        /// The endpoint.
        endpoint: String,
        /// The node's message.
        message: String,
    },
    /// Any other gRPC status.
    #[error("{endpoint}: {code}: {message}")]
    Rpc {
        /// The endpoint.
        endpoint: String,
        /// The status code, in words.
        code: String,
        /// The node's message.
        message: String,
    },
}

/// The tail of a [`Error::NotLeader`] line.
fn leader_text(leader: &Option<LeaderHint>) -> String {
    match leader {
        Some(hint) => format!("the leader is {hint}"),
        None => "no leader is known".to_owned(),
    }
}

/// The tail of a [`Error::Timeout`] line.
fn timeout_text(after: Option<Duration>) -> String {
    match after {
        Some(after) => format!(" after {after:?}"),
        None => String::new(),
    }
}

/// A node's message made to fit on one line (empty messages become the code's description).
fn one_line(message: &str, code: Code) -> String {
    let text = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        code.description().to_owned()
    } else {
        text
    }
}

/// A status code in lower-case words: `AlreadyExists` -> "already exists".
fn code_name(code: Code) -> String {
    let mut out = String::new();
    for c in format!("{code:?}").chars() {
        if c.is_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Every distinct message of an error and its sources, joined by ": ", on one line.
pub(crate) fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    one_line(&parts.join(": "), Code::Unavailable)
}

/// The rustls error in `error`'s source chain (rustls errors travel inside `io::Error`s, whose
/// `source` skips them, so each `io::Error` is looked into).
fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

/// Which flag to check after a TLS failure, as a parenthesized tail ("" when none applies).
fn tls_hint(error: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError};
    match error {
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            " (the node requires a client certificate: --client-cert and --client-key)"
        }
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError,
        ) => " (the node refused the client certificate: check --client-cert)",
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the node's certificate is not signed by a trusted CA: check --ca-cert)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (the node's certificate does not name this endpoint's host)",
        rustls::Error::InvalidMessage(_) => " (is the node serving TLS? use http:// if not)",
        _ => "",
    }
}

/// Whether a status was made by the local transport (it carries the error it came from) rather
/// than sent by the node.
fn is_local(status: &Status) -> bool {
    status.source().is_some()
}

/// Whether the status' source chain holds tonic's client-side deadline error.
fn is_timeout_expired(status: &Status) -> bool {
    let mut next = status.source();
    while let Some(err) = next {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = err.source();
    }
    false
}

impl Error {
    /// Maps a status from a call to `endpoint` (with deadline `timeout`, if one was set).
    pub fn from_status(endpoint: &str, status: &Status, timeout: Option<Duration>) -> Error {
        let endpoint = endpoint.to_owned();
        let message = one_line(status.message(), status.code());
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                Error::Unauthenticated { endpoint, message }
            }
            Code::InvalidArgument => Error::Invalid { endpoint, message },
            // FAILED_PRECONDITION is the documented answer to a stale expected version; the
            // node also uses it for membership changes it cannot make, which name no version.
            Code::FailedPrecondition if message.contains("version") => {
                Error::StaleVersion { endpoint, message }
            }
            Code::FailedPrecondition => Error::Refused { endpoint, message },
            Code::NotFound => Error::NotFound { endpoint, message },
            Code::DeadlineExceeded => Error::Timeout {
                endpoint,
                after: timeout,
            },
            Code::Cancelled if is_timeout_expired(status) => Error::Timeout {
                endpoint,
                after: timeout,
            },
            // A transport failure (connection refused or lost, a failed TLS handshake) comes
            // as a local UNAVAILABLE; a connection that broke mid-call as a local UNKNOWN,
            // INTERNAL (an HTTP/2 protocol error) or CANCELLED (closed under the call).
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                if is_local(status) =>
            {
                match status.source() {
                    Some(source) => Error::from_transport(&endpoint, source),
                    None => Error::Unreachable {
                        endpoint,
                        reason: message,
                    },
                }
            }
            Code::Unavailable => Error::NotLeader {
                endpoint,
                message,
                leader: LeaderHint::from_status(status),
            },
            code => Error::Rpc {
                endpoint,
                code: code_name(code),
                message,
            },
        }
    }

    /// Maps a transport failure on the way to `endpoint`: a TLS failure (rustls' error in the
    /// source chain) is [`Error::Tls`] with a hint at the flag to check; anything else is
    /// [`Error::Unreachable`], with a hint when the connection was closed under the call: at
    /// `https://` for a plain-text connection (a TLS listener closes it), at the client
    /// certificate for a TLS one (a node requiring one closes the connection without it).
    pub fn from_transport(endpoint: &str, error: &(dyn StdError + 'static)) -> Error {
        let endpoint = endpoint.to_owned();
        let reason = chain_text(error);
        if let Some(tls) = rustls_error(error) {
            let hint = tls_hint(tls);
            return Error::Tls {
                endpoint,
                reason: format!("{reason}{hint}"),
            };
        }
        // An alert read after the handshake reaches us inside an HTTP/2 error, which keeps
        // the rustls error only as text.
        if reason.contains("received fatal alert") {
            let hint = if reason.contains("CertificateRequired") {
                " (the node requires a client certificate: --client-cert and --client-key)"
            } else {
                " (the node refused the client certificate: check --client-cert)"
            };
            return Error::Tls {
                endpoint,
                reason: format!("{reason}{hint}"),
            };
        }
        let closed = [
            "connection closed",
            "connection reset",
            "broken pipe",
            "protocol error",
            "frame with invalid size",
        ]
        .iter()
        .any(|what| reason.contains(what));
        let hint = match (endpoint.starts_with("https://"), closed) {
            (false, true) => " (if the node serves TLS, use https:// and --ca-cert)",
            // Under TLS 1.3 a node refuses a missing or untrusted client certificate after the
            // handshake: the client only sees the connection close.
            (true, true) => {
                " (if the node requires client certificates, check --client-cert and \
                 --client-key)"
            }
            _ => "",
        };
        Error::Unreachable {
            endpoint,
            reason: format!("{reason}{hint}"),
        }
    }

    /// The endpoint the failed call was made to.
    pub fn endpoint(&self) -> &str {
        match self {
            Error::InvalidEndpoint { endpoint, .. }
            | Error::InvalidMetadata { endpoint, .. }
            | Error::Unreachable { endpoint, .. }
            | Error::Tls { endpoint, .. }
            | Error::Unauthenticated { endpoint, .. }
            | Error::NotLeader { endpoint, .. }
            | Error::Invalid { endpoint, .. }
            | Error::StaleVersion { endpoint, .. }
            | Error::Refused { endpoint, .. }
            | Error::Timeout { endpoint, .. }
            | Error::NotFound { endpoint, .. }
            | Error::Rpc { endpoint, .. } => endpoint,
        }
    }

    /// The leader named by a not-leader answer.
    pub fn leader(&self) -> Option<&LeaderHint> {
        match self {
            Error::NotLeader { leader, .. } => leader.as_ref(),
            _ => None,
        }
    }

    /// Whether the endpoint could not be reached at all (so another endpoint may be tried).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    /// The endpoint every test error is for.
    const EP: &str = "http://127.0.0.9:50051";

    /// A status as a node sends it, with the leader hint when given.
    fn status(code: Code, message: &str, leader: Option<&'static str>) -> Status {
        let mut status = Status::new(code, message);
        if let Some(leader) = leader {
            status
                .metadata_mut()
                .insert(LEADER_METADATA, MetadataValue::from_static(leader));
        }
        status
    }

    /// Maps a status and renders its line.
    fn line(status: &Status) -> String {
        Error::from_status(EP, status, Some(Duration::from_secs(5))).to_string()
    }

    /// A wrong token reads as unauthenticated and names the endpoint.
    #[test]
    fn unauthenticated_line() {
        let text = line(&status(Code::Unauthenticated, "invalid admin token", None));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: unauthenticated: invalid admin token \
             (check --token or --token-file)"
        );
    }

    /// UNAVAILABLE with the leader hint says where the leader is.
    #[test]
    fn not_leader_with_hint() {
        let st = status(
            Code::Unavailable,
            "no leader can take the change",
            Some("3@127.0.0.3:50051"),
        );
        let err = Error::from_status(EP, &st, None);
        assert_eq!(
            err.leader(),
            Some(&LeaderHint {
                id: 3,
                addr: "127.0.0.3:50051".into()
            })
        );
        assert_eq!(
            err.to_string(),
            "http://127.0.0.9:50051: not the leader: no leader can take the change; \
             the leader is node 3 at 127.0.0.3:50051"
        );
    }

    /// UNAVAILABLE from the node without a hint says no leader is known.
    #[test]
    fn not_leader_without_hint() {
        let text = line(&status(Code::Unavailable, "election in progress", None));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: not the leader: election in progress; no leader is known"
        );
    }

    /// A malformed hint is ignored rather than misread.
    #[test]
    fn malformed_hints_are_ignored() {
        for bad in ["3", "x@h:1", "3@h", "3@:50051", "3@h:99999"] {
            assert_eq!(LeaderHint::parse(bad), None, "{bad}");
        }
        assert_eq!(
            LeaderHint::parse("12@[::1]:50051"),
            Some(LeaderHint {
                id: 12,
                addr: "[::1]:50051".into()
            })
        );
    }

    /// Validation failures keep the field the node named; multi-line messages become one line.
    #[test]
    fn invalid_argument_line() {
        let text = line(&status(
            Code::InvalidArgument,
            "cache.max_ttl: must be at least\n  cache.min_ttl",
            None,
        ));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: invalid request: cache.max_ttl: must be at least cache.min_ttl"
        );
    }

    /// FAILED_PRECONDITION about a version is a stale version; otherwise a refusal.
    #[test]
    fn stale_version_line() {
        let text = line(&status(
            Code::FailedPrecondition,
            "membership: node 4 belongs to another cluster",
            None,
        ));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: refused: membership: node 4 belongs to another cluster"
        );
        let text = line(&status(
            Code::FailedPrecondition,
            "expected version 3, the current version is 4",
            None,
        ));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: stale version: expected version 3, the current version is 4"
        );
    }

    /// A server deadline and the client's own deadline both read as a timeout.
    #[test]
    fn timeouts() {
        let text = line(&status(Code::DeadlineExceeded, "deadline", None));
        assert_eq!(text, "http://127.0.0.9:50051: timed out after 5s");
        let local = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(local.code(), Code::Cancelled);
        assert_eq!(line(&local), "http://127.0.0.9:50051: timed out after 5s");
    }

    /// A transport failure during a call reads as unreachable, with the reason.
    #[test]
    fn local_unavailable_is_unreachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let local = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        assert_eq!(local.code(), Code::Unavailable);
        let err = Error::from_status(EP, &local, None);
        assert!(err.is_unreachable(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("http://127.0.0.9:50051: unreachable: ")
                && text.contains("connection refused")
                && !text.contains('\n'),
            "{text}"
        );
    }

    /// Other codes keep their description and the message; an empty message gets the code's.
    #[test]
    fn other_codes() {
        let text = line(&status(Code::Internal, "storage failed", None));
        assert_eq!(text, "http://127.0.0.9:50051: internal: storage failed");
        let text = line(&status(
            Code::AlreadyExists,
            "addr: 10.0.0.1:53 is listed",
            None,
        ));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: already exists: addr: 10.0.0.1:53 is listed"
        );
        let text = line(&status(Code::NotFound, "", None));
        assert_eq!(
            text,
            "http://127.0.0.9:50051: not found: Some requested entity was not found"
        );
    }

    /// A rustls error inside an io::Error reads as a TLS failure with the flag to check; a
    /// plain connection closed under the call hints at https:// (or at the client
    /// certificate over TLS).
    #[test]
    fn transport_failures_name_the_flag_to_check() {
        let untrusted = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let line = Error::from_transport("https://127.0.0.9:50051", &untrusted).to_string();
        assert!(
            line.starts_with("https://127.0.0.9:50051: TLS handshake failed: ")
                && line.contains("UnknownIssuer")
                && line.ends_with("check --ca-cert)"),
            "{line}"
        );
        let closed = std::io::Error::other("connection closed");
        let line = Error::from_transport(EP, &closed).to_string();
        assert!(
            line.contains("unreachable") && line.contains("use https://"),
            "{line}"
        );
        let line = Error::from_transport("https://127.0.0.9:50051", &closed).to_string();
        assert!(line.contains("--client-cert"), "{line}");
        let refused = std::io::Error::other("tcp connect error: Connection refused");
        let line = Error::from_transport(EP, &refused).to_string();
        assert_eq!(
            line,
            "http://127.0.0.9:50051: unreachable: tcp connect error: Connection refused"
        );
    }
}
