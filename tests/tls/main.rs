//! TLS suite: the real `heimdall` binary serving gRPC over TLS with certificates generated per
//! test (rcgen), driven by the real `heimdallctl`: https with a CA, plain http refused, bad PEM
//! files refused at start, client certificates required or optional (mTLS) naming the caller
//! in the config history, and a three-node cluster whose members reach each other over TLS.

mod cluster;
mod node;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use heimdall_tests::node::{NODE_GRPC_PORT, heimdallctl_bin};
use heimdall_tests::{Node, NodeOpts, dead_addr, unique_addr};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// The name heimdallctl sends as `--as` in these tests (a client certificate overrides it).
pub const ACTOR: &str = "tls-test@loopback";

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A test certificate authority whose files live in a temporary directory.
pub struct Pki {
    /// Where the CA and the issued certificates are written.
    dir: TempDir,
    /// The CA's certificate and key.
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate file (PEM).
    ca_file: PathBuf,
}

impl std::fmt::Debug for Pki {
    /// The directory and CA file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir.path())
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Parameters of a certificate named `cn` with `sans` (IP addresses or DNS names).
fn params(cn: &str, sans: Vec<String>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    Ok(params)
}

impl Pki {
    /// A new CA named `name`, with its certificate written to `ca.pem`.
    pub fn new(name: &str) -> Result<Pki> {
        let dir = TempDir::new()?;
        let mut ca_params = params(name, Vec::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let ca_file = dir.path().join("ca.pem");
        fs::write(&ca_file, ca.pem())?;
        Ok(Pki { dir, ca, ca_file })
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }

    /// Issues a certificate named `cn` for `sans` with `usages`, written to `<file>.pem` and
    /// `<file>.key`.
    fn issue(
        &self,
        file: &str,
        cn: &str,
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<CertFiles> {
        let mut params = params(cn, sans)?;
        params.extended_key_usages = usages;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        fs::write(&files.cert, cert.pem())?;
        fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A node certificate for the gRPC addresses `ips`, good as server and as client
    /// certificate (members present it to each other).
    pub fn node_cert(&self, file: &str, ips: &[IpAddr]) -> Result<CertFiles> {
        self.issue(
            file,
            "heimdall node",
            ips.iter().map(IpAddr::to_string).collect(),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate whose subject common name is `cn`.
    pub fn client_cert(&self, file: &str, cn: &str) -> Result<CertFiles> {
        self.issue(
            file,
            cn,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The tonic client configuration trusting this CA and presenting `identity`.
    pub fn client_config(&self, identity: &CertFiles) -> Result<tonic::transport::ClientTlsConfig> {
        Ok(tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(fs::read(
                &self.ca_file,
            )?))
            .identity(tonic::transport::Identity::from_pem(
                fs::read(&identity.cert)?,
                fs::read(&identity.key)?,
            )))
    }
}

/// How the node's listener treats client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for (no `tls.client_ca_file`).
    Off,
    /// Verified when presented (`tls.client_ca_file`).
    Optional,
    /// Required (`tls.require_client_cert = true`).
    Required,
}

/// The `HEIMDALL_TLS__*` variables for a node serving `cert` under `pki`'s CA.
pub fn tls_env(pki: &Pki, cert: &CertFiles, client: ClientCerts) -> Vec<(String, String)> {
    let path = |p: &PathBuf| p.display().to_string();
    let mut env = vec![
        ("HEIMDALL_TLS__CERT_FILE".to_owned(), path(&cert.cert)),
        ("HEIMDALL_TLS__KEY_FILE".to_owned(), path(&cert.key)),
        ("HEIMDALL_TLS__CA_FILE".to_owned(), path(&pki.ca_file)),
    ];
    if client != ClientCerts::Off {
        env.push((
            "HEIMDALL_TLS__CLIENT_CA_FILE".to_owned(),
            path(&pki.ca_file),
        ));
    }
    if client == ClientCerts::Required {
        env.push((
            "HEIMDALL_TLS__REQUIRE_CLIENT_CERT".to_owned(),
            "true".to_owned(),
        ));
    }
    env
}

/// Starts a one-node cluster serving gRPC over TLS with a certificate from `pki`, plus the
/// variables in `env` (e.g. `HEIMDALL_ADMIN__TOKEN`).
pub fn start_tls_node(pki: &Pki, client: ClientCerts, env: &[(&str, &str)]) -> Result<Node> {
    let dns = unique_addr(5353)?;
    let cert = pki.node_cert(&format!("node-{}", dns.ip()), &[dns.ip()])?;
    let mut all = tls_env(pki, &cert, client);
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Node::start_at(
        dns,
        NodeOpts {
            upstreams: vec![dead_addr(53)?],
            env: all,
            ..NodeOpts::default()
        },
    )
}

/// The `https://` endpoint of a node.
pub fn https(node: &Node) -> String {
    format!("https://{}", node.grpc_addr())
}

/// The `https://` endpoint of gRPC address `addr`'s IP on the test gRPC port.
pub fn https_at(addr: SocketAddr) -> String {
    format!("https://{}", SocketAddr::new(addr.ip(), NODE_GRPC_PORT))
}

/// What one heimdallctl run produced.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs heimdallctl with `--as` [`ACTOR`] and `args` (endpoint, TLS flags, command), with no
/// HEIMDALLCTL_* variables from the environment.
pub fn ctl(args: &[&str]) -> Result<Run> {
    let output = Command::new(heimdallctl_bin()?)
        .env_remove("HEIMDALLCTL_ENDPOINT")
        .env_remove("HEIMDALLCTL_TOKEN")
        .env_remove("HEIMDALLCTL_CA_CERT")
        .env_remove("HEIMDALLCTL_CLIENT_CERT")
        .env_remove("HEIMDALLCTL_CLIENT_KEY")
        .args(["--as", ACTOR, "--timeout", "30"])
        .args(args)
        .output()
        .context("running heimdallctl")?;
    Ok(Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs heimdallctl expecting success; returns stdout.
pub fn ctl_ok(args: &[&str]) -> Result<String> {
    let run = ctl(args)?;
    ensure!(
        run.success && run.stderr.is_empty(),
        "heimdallctl {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    Ok(run.stdout)
}

/// Runs heimdallctl expecting failure with exactly one stderr line, which is returned.
pub fn ctl_fail(args: &[&str]) -> Result<String> {
    let run = ctl(args)?;
    ensure!(
        !run.success,
        "heimdallctl {args:?} should have failed; stdout:\n{}",
        run.stdout
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    ensure!(
        lines.len() == 1,
        "heimdallctl {args:?} should print one error line, got:\n{}",
        run.stderr
    );
    println!("{}", lines[0]);
    Ok(lines[0].to_owned())
}

/// The TLS flags for `pki`'s CA and, when given, a client certificate.
pub fn tls_flags(pki: &Pki, client: Option<&CertFiles>) -> Vec<String> {
    let mut flags = vec!["--ca-cert".to_owned(), pki.ca_file.display().to_string()];
    if let Some(client) = client {
        flags.extend([
            "--client-cert".to_owned(),
            client.cert.display().to_string(),
            "--client-key".to_owned(),
            client.key.display().to_string(),
        ]);
    }
    flags
}

/// `prefix` followed by `rest`, as the `&str` list heimdallctl helpers take.
pub fn args<'a>(prefix: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    prefix
        .iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}
