//! TLS towards the nodes: the CA to trust and the client certificate to present (mTLS), read
//! from PEM files and checked before any connection is made.
//!
//! An `https://` endpoint is verified against [`TlsOptions::ca_cert`] when given, else against
//! the system's CA certificates; the server certificate must name the endpoint's host (a DNS
//! name or an IP address). `http://` endpoints never use TLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PEM file that cannot be used; Display is one line naming the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {reason}", .path.display())]
pub struct TlsFileError {
    /// Which file: "CA certificate", "client certificate" or "client key".
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be used.
    pub reason: String,
}

/// What a client trusts and presents over TLS.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM) that verify the nodes' certificates; None: the system's roots.
    pub ca_cert: Option<Vec<u8>>,
    /// The client certificate chain and its private key (PEM), presented when a node asks.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsOptions {
    /// Whether each part is set; never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_cert", &self.ca_cert.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Reads and checks the CA certificate file and the client certificate and key files
    /// (both or neither).
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<TlsOptions, TlsFileError> {
        let ca_cert = match ca_cert {
            Some(path) => Some(read_certificates("CA certificate", path)?),
            None => None,
        };
        let identity = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((
                read_certificates("client certificate", cert)?,
                read_key(key)?,
            )),
            (Some(cert), None) => {
                return Err(TlsFileError {
                    what: "client certificate",
                    path: cert.to_owned(),
                    reason: "needs its private key too (--client-key)".to_owned(),
                });
            }
            (None, Some(key)) => {
                return Err(TlsFileError {
                    what: "client key",
                    path: key.to_owned(),
                    reason: "needs its certificate too (--client-cert)".to_owned(),
                });
            }
            (None, None) => None,
        };
        Ok(TlsOptions { ca_cert, identity })
    }

    /// The tonic configuration: the CA (or the system's roots) and the client identity.
    pub fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        let config = match &self.ca_cert {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// The contents of `path`, which must hold at least one PEM certificate.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let error = |reason: String| TlsFileError {
        what,
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| error(pem_reason(&e, "CERTIFICATE")))?;
        count += 1;
    }
    if count == 0 {
        return Err(error(pem_reason(&pem::Error::NoItemsFound, "CERTIFICATE")));
    }
    Ok(pem)
}

/// The contents of `path`, which must hold a PEM private key.
fn read_key(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let error = |reason: String| TlsFileError {
        what: "client key",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| error(pem_reason(&e, "PRIVATE KEY")))?;
    Ok(pem)
}

/// Why a PEM file could not be used, for a file that should hold `label` blocks.
fn pem_reason(error: &pem::Error, label: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("no PEM {label} in it (-----BEGIN {label}-----)"),
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Missing files, files without PEM blocks and a certificate without its key are refused
    /// with one line naming the file.
    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = TlsOptions::from_files(Some(&missing), None, None).expect_err("missing");
        let line = err.to_string();
        assert!(
            line.starts_with("CA certificate ") && line.contains("cannot read it"),
            "{line}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").expect("write");
        let line = TlsOptions::from_files(Some(&junk), None, None)
            .expect_err("no PEM")
            .to_string();
        assert!(line.contains("no PEM CERTIFICATE"), "{line}");
        let line = TlsOptions::from_files(None, None, Some(&junk))
            .expect_err("key alone")
            .to_string();
        assert!(line.contains("needs its certificate too"), "{line}");
        assert_eq!(
            TlsOptions::from_files(None, None, None).expect("nothing"),
            TlsOptions::default()
        );
    }
}
