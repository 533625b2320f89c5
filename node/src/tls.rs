//! TLS of the gRPC listener and of this node's calls to its peers: the PEM files of `[tls]`,
//! read and checked once at start right after config validation, and the tonic (rustls)
//! configurations built from them.
//!
//! [`load`] reads `tls.cert_file`, `tls.key_file`, `tls.client_ca_file` and `tls.ca_file`
//! (which of them go together is checked by heimdall-config's `TlsConfig::files`), checks
//! that each holds what it should (X.509 certificates, a private key that goes with the
//! certificate) and keeps the PEM bytes in [`TlsMaterial`]; every error names the key. The
//! server side ([`TlsMaterial::server_config`]) verifies client certificates against
//! `client_ca_file` when it is set (required with `require_client_cert`, optional but verified
//! when presented otherwise). The client side ([`TlsMaterial::client_config`]) trusts
//! `ca_file` (default `client_ca_file`) and presents the node's own certificate, so members
//! of a TLS cluster reach each other over `https` and pass each other's client-certificate
//! check.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use heimdall_config::{CaFiles, TlsFiles};

/// How long a TLS handshake may take, on the listener and on calls to peers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a `[tls]` key cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsError {
    /// The dotted key, e.g. `tls.cert_file`.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl TlsError {
    /// An error about `key`.
    fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

/// The checked PEM contents of `[tls]`: what the listener serves and what peer calls trust.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The node's certificate chain (PEM), served and presented to peers.
    cert_pem: Vec<u8>,
    /// The node's private key (PEM); never shown.
    key_pem: Vec<u8>,
    /// CA certificates that verify client certificates (PEM); None: no client certificates.
    client_ca_pem: Option<Vec<u8>>,
    /// Refuse connections without a verified client certificate.
    require_client_cert: bool,
    /// CA certificates this node trusts for its peers' server certificates (PEM).
    peer_ca_pem: Vec<u8>,
}

impl fmt::Debug for TlsMaterial {
    /// Sizes and flags only: the key never shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("key", &"<redacted>")
            .field("client_ca", &self.client_ca_pem.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish()
    }
}

/// Reads and checks the `[tls]` files named by checked keys
/// ([`heimdall_config::TlsConfig::files`]).
pub fn load(files: TlsFiles<'_>) -> Result<TlsMaterial, TlsError> {
    let cert_pem = read_certificates("tls.cert_file", files.cert_file)?;
    let key_pem = read("tls.key_file", files.key_file)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError::new(
            "tls.key_file",
            format!(
                "{}: {}",
                files.key_file.display(),
                pem_reason(&e, "PRIVATE KEY")
            ),
        )
    })?;
    let (client_ca_pem, peer_ca_pem) = match files.ca {
        CaFiles::Shared(path) => {
            let pem = read_certificates("tls.client_ca_file", path)?;
            (Some(pem.clone()), pem)
        }
        CaFiles::Separate {
            ca_file,
            client_ca_file,
        } => {
            let client_ca_pem = match client_ca_file {
                Some(path) => Some(read_certificates("tls.client_ca_file", path)?),
                None => None,
            };
            (client_ca_pem, read_certificates("tls.ca_file", ca_file)?)
        }
    };
    let material = TlsMaterial {
        cert_pem,
        key_pem,
        client_ca_pem,
        require_client_cert: files.require_client_cert,
        peer_ca_pem,
    };
    // Build both sides once, so a key that does not go with the certificate, or a certificate
    // rustls cannot use, stops the node at start rather than at the first handshake.
    tonic::transport::Server::builder()
        .tls_config(material.server_config())
        .map_err(|e| {
            TlsError::new(
                "tls.key_file",
                format!("cannot serve TLS with tls.cert_file: {}", chain(&e)),
            )
        })?;
    tonic::transport::Endpoint::from_static("https://localhost")
        .tls_config(material.client_config())
        .map_err(|e| {
            TlsError::new(
                "tls.ca_file",
                format!("cannot call peers over TLS: {}", chain(&e)),
            )
        })?;
    Ok(material)
}

impl TlsMaterial {
    /// The listener's configuration: the node's certificate, and client certificates verified
    /// against `client_ca_file` when set (required with `require_client_cert`).
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(!self.require_client_cert),
            None => config,
        }
    }

    /// The configuration of calls to peers: trust the peer CA, present the node's certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.peer_ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// Whether client certificates are verified (tls.client_ca_file is set).
    pub fn verifies_client_certs(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// The listener's mode in words, for the start-up log.
    pub fn mode(&self) -> &'static str {
        match (&self.client_ca_pem, self.require_client_cert) {
            (None, _) => "on",
            (Some(_), false) => "on, client certificates optional",
            (Some(_), true) => "on, client certificates required",
        }
    }
}

/// The contents of `path`, or an error naming `key`.
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|e| TlsError::new(key, format!("cannot read {}: {e}", path.display())))
}

/// The contents of `path`, checked to hold certificates ([`certificates`]); errors name `key`.
fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(key, path)?;
    certificates(key, path, &pem)?;
    Ok(pem)
}

/// Checks that `pem` holds at least one certificate and that each is X.509.
fn certificates(key: &'static str, path: &Path, pem: &[u8]) -> Result<usize, TlsError> {
    let mut count = 0;
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| {
            TlsError::new(
                key,
                format!("{}: {}", path.display(), pem_reason(&e, "CERTIFICATE")),
            )
        })?;
        x509_parser::parse_x509_certificate(&cert).map_err(|e| {
            TlsError::new(
                key,
                format!(
                    "{}: certificate {} is not a valid X.509 certificate: {e}",
                    path.display(),
                    i + 1
                ),
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsError::new(
            key,
            format!(
                "{}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(count)
}

/// Why a PEM file could not be read, for a file that should hold `label` blocks.
fn pem_reason(error: &pem::Error, label: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no PEM {label} in it (-----BEGIN {label}-----)"),
        other => format!("not valid PEM: {other}"),
    }
}

/// Every message of an error and its sources, joined by ": ".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}
