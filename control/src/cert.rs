//! The name of a verified client certificate, used as the caller's name under mTLS.
//!
//! The TLS layer (tonic over rustls) has already verified the certificate against the node's
//! `tls.client_ca_file` when [`tonic::Request::peer_certs`] returns it; this only reads who it
//! names: the subject's common name (CN), else the first DNS name of the subject alternative
//! names. Control characters are replaced, so the name stays one line in the config history.

use x509_parser::extensions::GeneralName;

use crate::auth::MAX_ACTOR_LEN;

/// A client certificate the TLS layer verified against the node's client CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Who it names (CN, else the first DNS SAN); None when it names nobody readable.
    pub name: Option<String>,
}

impl ClientCertificate {
    /// The verified certificate of `request`'s connection, if the client presented one.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<ClientCertificate> {
        let certs = request.peer_certs()?;
        let leaf = certs.first()?;
        Some(ClientCertificate {
            name: certificate_name(leaf),
        })
    }
}

/// The subject common name of the DER certificate `der`, else its first DNS subject
/// alternative name; None when it has neither or does not parse.
pub fn certificate_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::trim)
        .find(|cn| !cn.is_empty())
        .map(str::to_owned);
    let dns_name = || {
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) if !dns.trim().is_empty() => Some(dns.trim().to_owned()),
            _ => None,
        })
    };
    common_name.or_else(dns_name).map(|name| one_line(&name))
}

/// `name` with control characters replaced by `?`, cut to [`MAX_ACTOR_LEN`] bytes at a
/// character boundary.
fn one_line(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let mut end = clean.len().min(MAX_ACTOR_LEN);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate with `cn` as common name (when given) and `sans` as DNS names.
    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    /// The CN wins; without one the first DNS SAN; with neither, no name.
    #[test]
    fn common_name_then_dns_name() {
        assert_eq!(
            certificate_name(&cert(Some("alice"), &["alice.example"])).as_deref(),
            Some("alice")
        );
        assert_eq!(
            certificate_name(&cert(None, &["ops.example", "other.example"])).as_deref(),
            Some("ops.example")
        );
        assert_eq!(certificate_name(&cert(None, &[])), None);
        assert_eq!(certificate_name(b"not a certificate"), None);
    }

    /// Control characters cannot break the history's lines; long names are cut.
    #[test]
    fn names_are_one_bounded_line() {
        assert_eq!(
            certificate_name(&cert(Some("eve\nroot"), &[])).as_deref(),
            Some("eve?root")
        );
        let long = "b".repeat(300);
        assert_eq!(
            certificate_name(&cert(Some(&long), &[])).map(|n| n.len()),
            Some(MAX_ACTOR_LEN)
        );
    }
}
