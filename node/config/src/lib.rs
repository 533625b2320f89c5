//! Node configuration: defaults < file < environment < flags, validated once.
//!
//! [`load`] layers the sources with the `config` crate, checks every key against the known
//! ones (so a typo in a file or a stray `HEIMDALL_*` variable is an error naming the dotted
//! key), deserializes into [`Config`], applies the command-line flags and then runs
//! [`Config::validate`] exactly once. Every [`ConfigError`] names the key it is about.
//!
//! This crate reads only what is pure configuration: the file, the environment, the flags,
//! `/etc/resolv.conf` and the secret files. The files a configuration names for the node to
//! use, the zone of `authority.zone_file` and the PEM files of `[tls]`, are read by
//! heimdall-node after [`load`] (its `config` module): their parsers live there (the
//! zone-file parser; rustls-pki-types, x509-parser and tonic for TLS), and this crate stays
//! small enough to fuzz. [`Config`] has a type
//! parameter for each of them; here both are [`Unread`], so `authority.zone` and
//! `tls.material` are always `None`, and [`Config::with_loaded`] moves the keys into a
//! configuration that carries them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use config::{Environment, FileFormat, Format, Map, Value, ValueKind};
use serde::{Deserialize, Deserializer, Serialize};

/// Prefix of the environment variables read by [`load`]: `HEIMDALL_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "HEIMDALL";

/// Separator between section and key in environment variable names.
const ENV_SEPARATOR: &str = "__";

/// Port used for an upstream server given without one.
pub const DNS_PORT: u16 = 53;

/// Where upstream servers come from when none are configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Origin string the `config` crate gives to values read from the environment.
const ENV_ORIGIN: &str = "the environment";

/// Command-line flags of the `heimdall` binary; each overrides the matching config key.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "heimdall",
    version,
    about = "Heimdall: a caching DNS forwarder"
)]
pub struct Cli {
    /// TOML configuration file; without it defaults and HEIMDALL_* variables are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve DNS on, UDP and TCP, e.g. 127.0.0.1:5353 or [::1]:53 (dns.listen).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub dns_listen: Option<SocketAddr>,
    /// Upstream server, "ip" (port 53) or "ip:port"; repeat for several (upstream.servers).
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream)]
    pub upstream: Vec<SocketAddr>,
    /// Directory for the node's data (node.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of UDP worker threads; 0 = one per CPU (dns.workers).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Pin UDP worker i to CPU i (modulo the CPU count) (dns.cpu_affinity).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub cpu_affinity: Option<bool>,
    /// UDP I/O backend: epoll (default), auto or uring (dns.io_backend).
    #[arg(long, value_name = "BACKEND", value_enum)]
    pub io_backend: Option<IoBackend>,
    /// Scheduling policy of the UDP workers: batch (default) or normal (dns.worker_scheduling).
    #[arg(long, value_name = "POLICY", value_enum)]
    pub worker_scheduling: Option<WorkerScheduling>,
    /// Log output format (log.format).
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Address of the gRPC server: the internal Raft service and the control plane
    /// (node.grpc_listen).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub grpc_listen: Option<SocketAddr>,
    /// Start uninitialized and wait to be added to an existing cluster (cluster.join).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub join: Option<bool>,
    /// Address of the Prometheus metrics endpoint (HTTP, /metrics) (node.metrics_listen).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Zone file to answer authoritatively (authority.zone_file).
    #[arg(long, value_name = "FILE")]
    pub zone_file: Option<PathBuf>,
    /// Address of the gossip UDP socket sharing hot cache entries with peers
    /// (node.gossip_listen).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub gossip_listen: Option<SocketAddr>,
}

/// What a configuration carries in place of a file the node reads after [`load`]: a type
/// without values, so `authority.zone` and `tls.material` of a [`Config`] are always `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unread {}

/// The whole node configuration, one field per TOML section.
///
/// `Zone` and `Tls` are what the node reads from `authority.zone_file` and the `[tls]` files
/// (see the crate documentation); both are [`Unread`] for a configuration from [`load`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct Config<Zone = Unread, Tls = Unread> {
    /// `[node]`: identity and storage of this node.
    pub node: NodeConfig,
    /// `[dns]`: the DNS listener serving clients.
    pub dns: DnsConfig,
    /// `[upstream]`: the resolvers queries are forwarded to.
    pub upstream: UpstreamConfig,
    /// `[cache]`: size and TTL policy of the answer cache.
    pub cache: CacheConfig,
    /// `[log]`: logging output.
    pub log: LogConfig,
    /// `[cluster]`: joining the Raft group that holds the shared configuration.
    pub cluster: ClusterConfig,
    /// `[admin]`: who may use the control plane.
    pub admin: AdminConfig,
    /// `[authority]`: a zone this node answers authoritatively.
    pub authority: AuthorityConfig<Zone>,
    /// `[tls]`: TLS on the gRPC listener and on this node's calls to its peers.
    pub tls: TlsConfig<Tls>,
}

impl<Zone, Tls> Default for Config<Zone, Tls> {
    /// Every section's defaults (written out: a derive would require `Zone: Default`).
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            dns: DnsConfig::default(),
            upstream: UpstreamConfig::default(),
            cache: CacheConfig::default(),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
            authority: AuthorityConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// Moves every key into a configuration carrying what the node read from the files it
    /// names: `zone` from `authority.zone_file`, `material` from the `[tls]` files.
    pub fn with_loaded<Zone, Tls>(
        self,
        zone: Option<Zone>,
        material: Option<Tls>,
    ) -> Config<Zone, Tls> {
        let Self {
            node,
            dns,
            upstream,
            cache,
            log,
            cluster,
            admin,
            authority,
            tls,
        } = self;
        Config {
            node,
            dns,
            upstream,
            cache,
            log,
            cluster,
            admin,
            authority: AuthorityConfig {
                zone_file: authority.zone_file,
                zone,
            },
            tls: TlsConfig {
                cert_file: tls.cert_file,
                key_file: tls.key_file,
                client_ca_file: tls.client_ca_file,
                require_client_cert: tls.require_client_cert,
                ca_file: tls.ca_file,
                material,
            },
        }
    }
}

/// `[tls]` section: TLS (rustls) for the gRPC listener, optional client certificates (mTLS),
/// and the CA this node trusts when it calls its peers. Node-local: never in Raft.
///
/// `Tls` is what the node reads from the files (see [`Config`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct TlsConfig<Tls = Unread> {
    /// The node's certificate chain (PEM); with `key_file`, gRPC is served over TLS only, and
    /// the node presents it as its client certificate to its peers. Default absent (plain).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1). Default absent.
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that verify client certificates: a client presenting one that
    /// verifies is authenticated as admin and named by it. Default absent (no client
    /// certificates are asked for).
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a verified client certificate (needs `client_ca_file`);
    /// false: a client certificate is optional, but verified when presented. Default false.
    pub require_client_cert: bool,
    /// CA certificates (PEM) this node trusts for its peers' server certificates on its own
    /// calls to them. Default: `client_ca_file`.
    pub ca_file: Option<PathBuf>,
    /// The files, read and checked by the node after validation; None when TLS is off.
    #[serde(skip)]
    pub material: Option<Tls>,
}

impl<Tls> Default for TlsConfig<Tls> {
    /// TLS off.
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            require_client_cert: false,
            ca_file: None,
            material: None,
        }
    }
}

/// The `[tls]` files to read once the keys are checked ([`TlsConfig::files`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFiles<'a> {
    /// `tls.cert_file`: the node's certificate chain.
    pub cert_file: &'a Path,
    /// `tls.key_file`: its private key.
    pub key_file: &'a Path,
    /// Which CA files verify client certificates and the peers' server certificates.
    pub ca: CaFiles<'a>,
    /// `tls.require_client_cert` (then a client CA is set).
    pub require_client_cert: bool,
}

/// The CA files of `[tls]`: at least one is set when TLS is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaFiles<'a> {
    /// Only `tls.client_ca_file`: it verifies client certificates and the peers' server
    /// certificates.
    Shared(&'a Path),
    /// `tls.ca_file` verifies the peers' server certificates; `tls.client_ca_file`, if set,
    /// client certificates.
    Separate {
        /// `tls.ca_file`.
        ca_file: &'a Path,
        /// `tls.client_ca_file`.
        client_ca_file: Option<&'a Path>,
    },
}

impl<Tls> TlsConfig<Tls> {
    /// Checks that the keys go together and names the files to read; None when TLS is off
    /// (no `tls.cert_file` nor `tls.key_file`, and no other `[tls]` key set).
    pub fn files(&self) -> Result<Option<TlsFiles<'_>>, ConfigError> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "tls.key_file",
                    "required with tls.cert_file (the private key of the node's certificate)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.cert_file",
                    "required with tls.key_file (the node's certificate chain)",
                ));
            }
            (None, None) => {
                let stray = [
                    ("tls.client_ca_file", self.client_ca_file.is_some()),
                    ("tls.ca_file", self.ca_file.is_some()),
                    ("tls.require_client_cert", self.require_client_cert),
                ];
                if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::invalid(
                        key,
                        "TLS is off: set tls.cert_file and tls.key_file to serve gRPC over TLS",
                    ));
                }
                return Ok(None);
            }
        };
        if self.require_client_cert && self.client_ca_file.is_none() {
            return Err(ConfigError::invalid(
                "tls.require_client_cert",
                "needs tls.client_ca_file (the CA that signs the client certificates)",
            ));
        }
        let ca = match (&self.ca_file, &self.client_ca_file) {
            (Some(ca_file), client_ca_file) => CaFiles::Separate {
                ca_file,
                client_ca_file: client_ca_file.as_deref(),
            },
            (None, Some(client_ca_file)) => CaFiles::Shared(client_ca_file),
            (None, None) => {
                return Err(ConfigError::invalid(
                    "tls.ca_file",
                    "required with TLS on: the CA that signed the members' certificates, which \
                     this node trusts when it calls them (or set tls.client_ca_file, used for both)",
                ));
            }
        };
        Ok(Some(TlsFiles {
            cert_file,
            key_file,
            ca,
            require_client_cert: self.require_client_cert,
        }))
    }
}

/// `[authority]` section: a zone answered from a zone file (heimdall-node's `authority`).
///
/// `Zone` is what the node reads from the file (see [`Config`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct AuthorityConfig<Zone = Unread> {
    /// An RFC 1035 zone file answered authoritatively; names outside it are forwarded, or
    /// REFUSED when no upstream is configured. Default absent.
    pub zone_file: Option<PathBuf>,
    /// The zone read from `zone_file` by the node after validation.
    #[serde(skip)]
    pub zone: Option<Zone>,
}

impl<Zone> Default for AuthorityConfig<Zone> {
    /// No zone.
    fn default() -> Self {
        Self {
            zone_file: None,
            zone: None,
        }
    }
}

/// `[node]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Directory for the node's persistent data. Default `"heimdall-data"`.
    pub data_dir: PathBuf,
    /// This node's id in the cluster, unique across it (>= 1). Absent: a random id generated
    /// on first start and kept in `<data_dir>/node_id`. Default absent.
    pub node_id: Option<u64>,
    /// Address of the gRPC server (TCP): the internal Raft service and the control plane.
    /// Default `127.0.0.1:50051`.
    #[serde(deserialize_with = "deserialize_listen")]
    pub grpc_listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (HTTP, path /metrics). Default
    /// `127.0.0.1:9153`.
    #[serde(deserialize_with = "deserialize_listen")]
    pub metrics_listen: SocketAddr,
    /// Address of the gossip socket (UDP) on which hot cache entries are exchanged with the
    /// other members; announced to them through Raft. Default `127.0.0.1:7946`.
    #[serde(deserialize_with = "deserialize_listen")]
    pub gossip_listen: SocketAddr,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("heimdall-data"),
            node_id: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9153)),
            gossip_listen: SocketAddr::from(([127, 0, 0, 1], 7946)),
        }
    }
}

/// `[admin]` section: access to the control plane. Node-local and secret: never in Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin token that mutating control-plane calls must send as a bearer token;
    /// prefer the environment (`HEIMDALL_ADMIN__TOKEN`) or `token_file`. Never logged.
    /// Absent: every mutating call is refused. Default absent.
    pub token: Option<Secret>,
    /// A file holding the admin token (surrounding whitespace ignored). Default absent.
    pub token_file: Option<PathBuf>,
    /// Require the token for read calls too (stats, lookups, config get). Default false.
    pub require_token_for_reads: bool,
}

/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// `[cluster]` section: node-local settings of cluster membership. The shared settings
/// themselves live in Raft, not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The founding members, node id -> gRPC address (`host:port`). The member with the
    /// lowest id initializes the cluster when no Raft state exists; every listed node must
    /// set `node.node_id` to its own id. Empty: a one-node cluster (unless `join`). In the
    /// environment: `"1=10.0.0.1:50051,2=10.0.0.2:50051"`. Default empty.
    #[serde(deserialize_with = "deserialize_members")]
    pub initial_members: BTreeMap<u64, String>,
    /// A file holding the cluster secret (surrounding whitespace ignored). Default absent.
    pub secret_file: Option<PathBuf>,
    /// The cluster secret (>= 16 bytes) that authenticates internal RPCs; prefer the
    /// environment (`HEIMDALL_CLUSTER__SECRET`) or `secret_file`. Never logged. Without one the
    /// node runs a one-node cluster only. Default absent.
    pub secret: Option<Secret>,
    /// A file holding the previous cluster secret (see `previous_secret`). Default absent.
    pub previous_secret_file: Option<PathBuf>,
    /// The secret being rotated out: accepted on incoming internal RPCs and gossip (never
    /// used to sign) for `previous_secret_grace_s` seconds after this node starts, so members
    /// still on it keep working during a rolling rotation. Env
    /// `HEIMDALL_CLUSTER__PREVIOUS_SECRET`. Never logged. Default absent.
    pub previous_secret: Option<Secret>,
    /// How long after start `previous_secret` is accepted, in seconds. Default 3600.
    pub previous_secret_grace_s: u64,
    /// Raft election timeout in milliseconds: a follower that hears no leader for a random
    /// time in [this, 2 x this) starts an election; leaders send heartbeats every third of
    /// it (>= 30). Default 1000.
    pub election_timeout_ms: u64,
    /// Start uninitialized and wait to be added to an existing cluster. Default false.
    pub join: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            initial_members: BTreeMap::new(),
            secret_file: None,
            secret: None,
            previous_secret_file: None,
            previous_secret: None,
            previous_secret_grace_s: 3600,
            election_timeout_ms: 1000,
            join: false,
        }
    }
}

/// A secret value (the cluster secret): shown as `<redacted>` by `Debug` and serialization.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's bytes, for key derivation only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    /// Never shows the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    /// Never writes the value.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// `[dns]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Address served on both UDP and TCP. Default `127.0.0.1:5353`.
    #[serde(deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// UDP worker threads; 0 = one per CPU. After validation always >= 1. Default 0.
    pub workers: usize,
    /// Threads of the async runtime (misses and upstream I/O, TCP, gRPC, Raft, gossip);
    /// 0 = two, or one when the process may run on a single CPU only. After validation
    /// always >= 1. Default 0.
    pub runtime_threads: usize,
    /// Largest UDP response we send; client EDNS sizes are clamped to [512, this].
    /// Valid 512..=4096. Default 1232.
    pub max_udp_payload: u16,
    /// Idle TCP connections are closed after this many milliseconds (>= 1). Default 10000.
    pub tcp_idle_timeout_ms: u64,
    /// Most concurrent TCP client connections (>= 1). Default 1024.
    pub tcp_max_connections: usize,
    /// Bound of the channel carrying cache misses from the UDP workers to the runtime (>= 1).
    /// Default 4096.
    pub miss_queue: usize,
    /// Receive buffer (`SO_RCVBUF`) asked for on each UDP worker socket, in bytes; 0 keeps
    /// the system default (`net.core.rmem_default`). The kernel caps it at
    /// `net.core.rmem_max`. Valid 0 or 65536..=1073741824. Default 1048576 (1 MiB).
    pub udp_recv_buffer: usize,
    /// Pin UDP worker i to CPU i (modulo the CPU count). Default false.
    pub cpu_affinity: bool,
    /// UDP I/O backend: `epoll`, `auto` (io_uring when compiled in and the start-up probe
    /// succeeds, else epoll), or `uring` (io_uring; falls back to epoll with a warning when
    /// unavailable). Default `epoll`.
    pub io_backend: IoBackend,
    /// Linux scheduling policy of the UDP worker threads: `batch` (`SCHED_BATCH`: a worker
    /// woken by a datagram does not preempt a runtime thread forwarding misses on the same
    /// CPU) or `normal` (`SCHED_OTHER`). Default `batch`.
    pub worker_scheduling: WorkerScheduling,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            workers: 0,
            runtime_threads: 0,
            max_udp_payload: 1232,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 1024,
            miss_queue: 4096,
            udp_recv_buffer: 1 << 20,
            cpu_affinity: false,
            io_backend: IoBackend::Epoll,
            worker_scheduling: WorkerScheduling::Batch,
        }
    }
}

/// `[upstream]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Resolvers to forward to, each "ip" (port 53) or "ip:port". Empty = the `nameserver`
    /// lines of /etc/resolv.conf (filled in by validation). Default empty.
    #[serde(deserialize_with = "deserialize_servers")]
    pub servers: Vec<SocketAddr>,
    /// Timeout of one attempt against one server, in milliseconds (> 0). Default 1000.
    pub timeout_ms: u64,
    /// Set by validation when `servers` was filled from /etc/resolv.conf (not configured), so
    /// the cluster is not seeded with this host's resolvers.
    #[serde(skip)]
    pub servers_from_resolv_conf: bool,
    /// Total time for a query, all attempts included, before answering SERVFAIL, in
    /// milliseconds (>= timeout_ms). Default 3000.
    pub resolve_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout_ms: 1000,
            servers_from_resolv_conf: false,
            resolve_timeout_ms: 3000,
        }
    }
}

/// `[cache]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory bound of the cache in bytes (>= 65536). Default 67108864 (64 MiB).
    pub max_bytes: u64,
    /// TTLs below this are raised to it, in seconds. Default 0.
    pub min_ttl: u32,
    /// TTLs above this are lowered to it, in seconds (>= min_ttl). Default 86400.
    pub max_ttl: u32,
    /// Upper bound of the TTL of negative answers (NXDOMAIN, NODATA), in seconds. Default 3600.
    pub max_negative_ttl: u32,
    /// How long a SERVFAIL is cached, in seconds (<= 30). Default 5.
    pub servfail_ttl: u32,
    /// TTL for negative answers without an SOA record, in seconds; 0 = don't cache them.
    /// Default 0.
    pub nosoa_negative_ttl: u32,
    /// Refresh popular entries in the background shortly before they expire. Default true.
    pub prefetch: bool,
    /// Answer from expired entries when the upstream fails. Default true.
    pub serve_stale: bool,
    /// How long past expiry an entry may still be served stale, in seconds. Default 86400.
    pub stale_max: u32,
    /// TTL given to records in a stale answer, in seconds. Default 30.
    pub stale_ttl: u32,
    /// With serve_stale, answer from an expired entry once the upstreams have not answered
    /// for this many milliseconds, and keep refreshing in the background (RFC 8767's client
    /// response timer); 0 = only after every upstream failed. Default 1800.
    pub stale_answer_after_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3600,
            servfail_ttl: 5,
            nosoa_negative_ttl: 0,
            prefetch: true,
            serve_stale: true,
            stale_max: 86_400,
            stale_ttl: 30,
            stale_answer_after_ms: 1800,
        }
    }
}

/// `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Output format, `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Log filter, a tracing `EnvFilter` directive such as `info` or `info,heimdall_node=debug`;
    /// `RUST_LOG` overrides it. Default `"info,openraft=warn"` (openraft is chatty at info).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,openraft=warn".to_owned(),
        }
    }
}

/// Deserializes one of a `clap::ValueEnum`'s values, in any case, so that a file or the
/// environment accepts exactly what the flag accepts; the error names the bad value and the
/// choices (`invalid value "x": expected "a", "b" or "c"`).
fn deserialize_value_enum<'de, T: clap::ValueEnum, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    T::from_str(&text, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| format!("{:?}", v.get_name()))
            .collect();
        let choices = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        serde::de::Error::custom(format_args!("invalid value {text:?}: expected {choices}"))
    })
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    /// Accepts `text` or `json` in any case; the error names the bad value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_value_enum(deserializer)
    }
}

/// Which UDP I/O loop the workers run (`dns.io_backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring when the binary has it and the start-up probe succeeds, else epoll.
    Auto,
    /// `recvmmsg`/`sendmmsg` on a blocking socket per worker. The default: it cost less CPU
    /// per cache hit than io_uring in side-by-side benchmarks (README "Performance").
    #[default]
    Epoll,
    /// io_uring: multishot receive into a provided buffer ring, batched sends.
    Uring,
}

impl<'de> Deserialize<'de> for IoBackend {
    /// Accepts `auto`, `epoll` or `uring` in any case; the error names the bad value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_value_enum(deserializer)
    }
}

/// The Linux scheduling policy of the UDP worker threads (`dns.worker_scheduling`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScheduling {
    /// `SCHED_BATCH`: the kernel does not let a worker that a datagram wakes preempt the
    /// thread running on its CPU, so a worker and the runtime thread forwarding its misses
    /// switch far less often. The default: on a shared core it cut the context switches per
    /// miss from about 0.3 to 0.03 and the CPU per miss by a sixth to a quarter (README
    /// "Performance").
    #[default]
    Batch,
    /// `SCHED_OTHER`, the policy threads start with.
    Normal,
}

impl<'de> Deserialize<'de> for WorkerScheduling {
    /// Accepts `batch` or `normal` in any case; the error names the bad value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_value_enum(deserializer)
    }
}

/// Why a configuration could not be loaded; the message names the key and the reason.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read or is not valid TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file as given or as resolved by the `config` crate.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A section that Heimdall does not know.
    #[error("{section}: unknown section{}", Origin(.origin))]
    UnknownSection {
        /// The section name.
        section: String,
        /// Where it came from (file path or environment variable).
        origin: Option<String>,
    },
    /// A key that Heimdall does not know (a typo, or a stray environment variable).
    #[error("{key}: unknown key{}", Origin(.origin))]
    UnknownKey {
        /// Dotted key, e.g. `cache.max_tll`.
        key: String,
        /// Where it came from (file path or environment variable).
        origin: Option<String>,
    },
    /// A key has a value of the wrong type or outside its valid range.
    #[error("{key}: {reason}{}", Origin(.origin))]
    Invalid {
        /// Dotted key, e.g. `cache.max_ttl`.
        key: String,
        /// Why the value is rejected.
        reason: String,
        /// Where the value came from, when known.
        origin: Option<String>,
    },
    /// Any other failure reported by the `config` crate.
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key (or section) this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownSection { section, .. } => Some(section),
            Self::UnknownKey { key, .. } | Self::Invalid { key, .. } => Some(key),
            Self::File { .. } | Self::Other(_) => None,
        }
    }

    /// Fills a missing origin of an `Invalid` error from the merged value of its key.
    fn with_origin_from(self, merged: &Map<String, Value>) -> Self {
        match self {
            Self::Invalid {
                key,
                reason,
                origin: None,
            } => {
                let origin = lookup(merged, &key).and_then(|value| origin_of(&key, value));
                Self::Invalid {
                    key,
                    reason,
                    origin,
                }
            }
            other => other,
        }
    }

    /// A validation failure of `key` (the value came from whichever layer won).
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
            origin: None,
        }
    }
}

/// Formats an optional origin as ` (from ...)`.
#[derive(Debug)]
struct Origin<'a>(&'a Option<String>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(origin) => write!(f, " (from {origin})"),
            None => Ok(()),
        }
    }
}

/// Loads the configuration from `cli`, the process environment and `/etc/resolv.conf`.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    load_from(cli, process_env()?)
}

/// Loads the configuration with `env` standing in for the process environment.
pub fn load_from(
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_inner(cli, env, Path::new(RESOLV_CONF))
}

/// The `HEIMDALL_*` variables of this process; a non-UTF-8 value is an error.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}_").to_lowercase();
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        if !name.to_lowercase().starts_with(&prefix) {
            continue;
        }
        let value = value.into_string().map_err(|value: OsString| {
            let key = env_key(&name);
            ConfigError::Invalid {
                key,
                reason: format!("value {value:?} is not valid UTF-8"),
                origin: Some(format!("environment variable {name}")),
            }
        })?;
        vars.push((name, value));
    }
    Ok(vars)
}

/// The dotted key an environment variable maps to (`HEIMDALL_CACHE__MAX_TTL` -> `cache.max_ttl`).
fn env_key(name: &str) -> String {
    let lower = name.to_lowercase();
    let prefix = format!("{ENV_PREFIX}_").to_lowercase();
    lower
        .strip_prefix(&prefix)
        .unwrap_or(&lower)
        .replace(ENV_SEPARATOR, ".")
}

/// The environment variable that sets dotted `key` (`cache.max_ttl` -> `HEIMDALL_CACHE__MAX_TTL`).
pub fn env_var_name(key: &str) -> String {
    let key = key.split('[').next().unwrap_or(key);
    format!(
        "{ENV_PREFIX}_{}",
        key.replace('.', ENV_SEPARATOR).to_uppercase()
    )
}

/// [`load_from`] with an injectable resolv.conf path: reads the file `cli.config` names.
fn load_inner(
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
    resolv_conf: &Path,
) -> Result<Config, ConfigError> {
    let Some(path) = &cli.config else {
        return load_with(cli, None, env, resolv_conf);
    };
    let bytes = std::fs::read(path).map_err(|error| ConfigError::File {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let file = ConfigFile {
        path,
        bytes: &bytes,
    };
    load_with(cli, Some(file), env, resolv_conf)
}

/// A configuration file's contents and the path that names it in messages.
#[derive(Clone, Copy, Debug)]
pub struct ConfigFile<'a> {
    /// The path as given (`--config`); values from the file are `(from file <path>)`.
    pub path: &'a Path,
    /// The file's bytes: TOML, an optional UTF-8 byte order mark, invalid UTF-8 replaced.
    pub bytes: &'a [u8],
}

/// Loads from a configuration file already read (`cli.config` is not read again), with `env`
/// standing in for the process environment and nameservers from `resolv_conf`: the step
/// [`load`] ends in, and the one the `config_loader` fuzz target calls.
///
/// Layers the sources, checks and deserializes them, applies the flags and validates.
pub fn load_with(
    cli: &Cli,
    file: Option<ConfigFile<'_>>,
    env: impl IntoIterator<Item = (String, String)>,
    resolv_conf: &Path,
) -> Result<Config, ConfigError> {
    let known = known()?;
    let mut builder = config::Config::builder().add_source(known.defaults.clone());
    if let Some(file) = file {
        builder = builder.add_source(TomlFile::new(file));
    }
    // A variable of a text key is taken as written; the others are parsed (booleans,
    // integers, the comma-separated upstream.servers), which would turn a secret or a path
    // of digits into a number ("0312" into 312, "1.50" into 1.5).
    let (text, typed): (Map<String, String>, Map<String, String>) = env
        .into_iter()
        .partition(|(name, _)| known.text_keys.contains(&env_key(name)));
    builder = builder
        .add_source(
            environment(typed)
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("upstream.servers"),
        )
        .add_source(environment(text));
    let merged = builder.build().map_err(from_config_error)?;

    let merged_table = collect(&merged)?;
    check_keys(&known.schema, &merged_table)?;
    let mut config: Config = merged
        .try_deserialize()
        .map_err(|error| from_config_error(error).with_origin_from(&merged_table))?;
    config.apply_flags(cli);
    config.validate_with(resolv_conf)?;
    Ok(config)
}

/// The `HEIMDALL_*` variables of `vars` as a `config` source, values as strings.
fn environment(vars: Map<String, String>) -> Environment {
    Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator(ENV_SEPARATOR)
        .ignore_empty(true)
        .source(Some(vars))
}

/// The configuration file as a `config` source: TOML text whose values name the file by the
/// path as given (the `config` crate's own file source names it relative to the working
/// directory, and reads it again on every build).
#[derive(Clone, Debug)]
struct TomlFile {
    /// The path as given, the origin of every value.
    path: String,
    /// The file's text.
    text: String,
}

impl TomlFile {
    /// Decodes the file like the `config` crate does: a UTF-8 byte order mark is skipped and
    /// invalid UTF-8 replaced.
    fn new(file: ConfigFile<'_>) -> Self {
        let bytes = file
            .bytes
            .strip_prefix(b"\xef\xbb\xbf")
            .unwrap_or(file.bytes);
        Self {
            path: file.path.display().to_string(),
            text: String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

impl config::Source for TomlFile {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    /// Parses the text; a syntax error becomes [`ConfigError::File`] naming the path.
    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        FileFormat::Toml
            .parse(Some(&self.path), &self.text)
            .map_err(|cause| config::ConfigError::FileParse {
                uri: Some(self.path.clone()),
                cause,
            })
    }
}

/// The defaults and every known key as `config` values.
#[derive(Debug)]
struct Known {
    /// [`Config::default`], the lowest layer.
    defaults: config::Config,
    /// [`schema`]'s table, which [`check_keys`] compares the merged layers with.
    schema: Map<String, Value>,
    /// The dotted keys whose values are text (strings, paths, secrets, addresses).
    text_keys: BTreeSet<String>,
}

/// [`Known`], converted once per process: the conversion (a `config::Config::set` per key)
/// was most of a load's work, which matters when the loader is fuzzed.
fn known() -> Result<&'static Known, ConfigError> {
    static KNOWN: OnceLock<Result<Known, ConfigError>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let defaults: Config = Config::default();
            let schema = collect(&schema()?)?;
            let text_keys = schema
                .iter()
                .filter_map(|(section, value)| match &value.kind {
                    ValueKind::Table(table) => Some((section, table)),
                    _ => None,
                })
                .flat_map(|(section, table)| {
                    table
                        .iter()
                        .filter(|(_, value)| matches!(value.kind, ValueKind::String(_)))
                        .map(move |(key, _)| format!("{section}.{key}"))
                })
                .collect();
            Ok(Known {
                defaults: config::Config::try_from(&defaults).map_err(from_config_error)?,
                schema,
                text_keys,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Every known key with a value of its kind: the defaults, plus one upstream server, one
/// initial member and a value for every optional key, because the `config` crate drops
/// empty lists and tables and has no kind for `None` (nil).
fn schema() -> Result<config::Config, ConfigError> {
    let mut sample: Config = Config::default();
    sample
        .upstream
        .servers
        .push(SocketAddr::from(([127, 0, 0, 1], DNS_PORT)));
    sample
        .cluster
        .initial_members
        .insert(1, "127.0.0.1:50051".to_owned());
    let path = || Some(PathBuf::from("file"));
    let secret = || Some(Secret::new("secret"));
    sample.node.node_id = Some(1);
    let cluster = &mut sample.cluster;
    (cluster.secret, cluster.secret_file) = (secret(), path());
    (cluster.previous_secret, cluster.previous_secret_file) = (secret(), path());
    (sample.admin.token, sample.admin.token_file) = (secret(), path());
    sample.authority.zone_file = path();
    let tls = &mut sample.tls;
    (tls.cert_file, tls.key_file) = (path(), path());
    (tls.client_ca_file, tls.ca_file) = (path(), path());
    config::Config::try_from(&sample).map_err(from_config_error)
}

/// The top-level table of a built `config::Config`.
fn collect(config: &config::Config) -> Result<Map<String, Value>, ConfigError> {
    config::Source::collect(config).map_err(from_config_error)
}

/// Rejects unknown sections and keys, and values whose kind cannot be the key's type.
///
/// The `config` crate converts leniently (a float to an integer, a number to a bool); this
/// keeps a file value of the wrong kind an error. Variables of text keys are strings as
/// written; the others are parsed first (`true`, a number), and a string that was not is left
/// to deserialization, whose error names the value.
fn check_keys(
    defaults: &Map<String, Value>,
    merged: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let mut sections: Vec<_> = merged.iter().collect();
    sections.sort_by(|a, b| a.0.cmp(b.0));
    for (section, value) in sections {
        let Some(default_section) = defaults.get(section) else {
            return Err(ConfigError::UnknownSection {
                section: toml_name(section),
                origin: origin_of(section, value),
            });
        };
        let (ValueKind::Table(table), ValueKind::Table(default_table)) =
            (&value.kind, &default_section.kind)
        else {
            return Err(ConfigError::Invalid {
                key: section.clone(),
                reason: format!("expected a section (table), found {}", describe(value)),
                origin: origin_of(section, value),
            });
        };
        let mut keys: Vec<_> = table.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in keys {
            let dotted = format!("{section}.{key}");
            let Some(default) = default_table.get(key) else {
                return Err(ConfigError::UnknownKey {
                    origin: origin_of(&dotted, value),
                    key: format!("{section}.{}", toml_name(key)),
                });
            };
            if let Some(expected) = kind_mismatch(&default.kind, value) {
                return Err(ConfigError::Invalid {
                    reason: format!("invalid value {}: expected {expected}", describe(value)),
                    origin: origin_of(&dotted, value),
                    key: dotted,
                });
            }
        }
    }
    Ok(())
}

/// An unknown section or key name as TOML writes it, so an error names it visibly: bare when
/// it can be, else quoted (an empty name from `"" = 1` or the variable `HEIMDALL_` is `""`).
fn toml_name(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// What `value` should have been when its kind cannot match the kind of `default`.
fn kind_mismatch(default: &ValueKind, value: &Value) -> Option<&'static str> {
    let is_int = |kind: &ValueKind| {
        matches!(
            kind,
            ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::I128(_) | ValueKind::U128(_)
        )
    };
    let kind = &value.kind;
    // Nil is an optional key's default (None): TOML and the environment cannot write it.
    let ok = matches!(kind, ValueKind::Nil)
        || match default {
            d if is_int(d) => is_int(kind) || matches!(kind, ValueKind::String(_)),
            ValueKind::Boolean(_) => matches!(kind, ValueKind::Boolean(_) | ValueKind::String(_)),
            ValueKind::String(_) => matches!(kind, ValueKind::String(_)),
            ValueKind::Array(_) => matches!(kind, ValueKind::Array(_)),
            _ => true,
        };
    if ok {
        return None;
    }
    Some(match default {
        d if is_int(d) => "an unsigned integer",
        ValueKind::Boolean(_) => "true or false",
        ValueKind::String(_) => "a string",
        ValueKind::Array(_) => "a list of strings",
        _ => "a different type",
    })
}

/// A short description of a value for error messages, e.g. `"abc"`, `1.5` or `a table`.
fn describe(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "nil".to_owned(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(n) => n.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
    }
}

/// The value at dotted `key` (an index suffix like `[1]` is ignored) in a merged table.
fn lookup<'a>(table: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let key = key.split('[').next().unwrap_or(key);
    let (section, name) = key.split_once('.')?;
    match &table.get(section)?.kind {
        ValueKind::Table(section) => section.get(name),
        _ => None,
    }
}

/// Where the value of dotted `key` came from, for error messages.
fn origin_of(key: &str, value: &Value) -> Option<String> {
    let origin = match (&value.kind, value.origin()) {
        (_, Some(origin)) => origin,
        // Tables built from the environment carry no origin; their entries do.
        (ValueKind::Table(table), None) => table.values().find_map(Value::origin)?,
        _ => return None,
    };
    Some(describe_origin(key, origin))
}

/// Turns a `config` crate origin into `file <path>` or `environment variable <NAME>`.
fn describe_origin(key: &str, origin: &str) -> String {
    if origin == ENV_ORIGIN {
        format!("environment variable {}", env_var_name(key))
    } else {
        format!("file {origin}")
    }
}

/// Converts an error of the `config` crate into one that names the dotted key.
fn from_config_error(error: config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => {
            let key = key.unwrap_or_default();
            let shown = describe_unexpected(&unexpected.to_string());
            let expected = match expected {
                "an integer" | "an unsigned 64 bit or less integer" => "an unsigned integer",
                other => other,
            };
            ConfigError::Invalid {
                reason: format!("invalid value {shown}: expected {expected}"),
                origin: origin.map(|o| describe_origin(&key, &o)),
                key,
            }
        }
        config::ConfigError::At { error, origin, key } => {
            let reason = error.to_string();
            let key = key.unwrap_or_default();
            let origin = origin.map(|o| describe_origin(&key, &o));
            match unknown_field(&reason) {
                Some(field) if key.is_empty() => ConfigError::UnknownSection {
                    section: field.to_owned(),
                    origin,
                },
                Some(field) => ConfigError::UnknownKey {
                    key: format!("{key}.{field}"),
                    origin,
                },
                None => ConfigError::Invalid {
                    key,
                    reason,
                    origin,
                },
            }
        }
        config::ConfigError::Message(message) => match unknown_field(&message) {
            Some(field) => ConfigError::UnknownSection {
                section: field.to_owned(),
                origin: None,
            },
            None => ConfigError::Other(message),
        },
        config::ConfigError::NotFound(key) => ConfigError::invalid(&key, "missing"),
        config::ConfigError::FileParse { uri, cause } => ConfigError::File {
            path: uri.unwrap_or_else(|| "<unknown>".to_owned()),
            reason: cause.to_string(),
        },
        other => ConfigError::Other(other.to_string()),
    }
}

/// Shortens the `config` crate's description of a value: `string "abc"` -> `"abc"`,
/// ``64-bit integer `-1` `` -> `-1`.
fn describe_unexpected(text: &str) -> String {
    if let Some(quoted) = text.strip_prefix("string ") {
        return quoted.to_owned();
    }
    let mut parts = text.split('`');
    match (parts.next(), parts.next()) {
        (Some(_), Some(value)) => value.to_owned(),
        _ => text.to_owned(),
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Parses an upstream server: "ip" (port 53), "ip:port", "[v6]:port", bare "v6" or "[v6]".
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| {
            "expected an IP address with optional port: \"ip\", \"ip:port\", \"[v6]:port\" or \"v6\""
                .to_owned()
        })
}

/// Parses a listen address; the port is required.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected \"ip:port\" (IPv6 as \"[::1]:53\")".to_owned())
}

/// Deserializes `dns.listen`, naming the bad value on error.
fn deserialize_listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_listen(&text).map_err(|reason| {
        serde::de::Error::custom(format_args!("invalid value {text:?}: {reason}"))
    })
}

/// Deserializes `upstream.servers`, naming the bad entry on error.
fn deserialize_servers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            parse_upstream(text).map_err(|reason| {
                serde::de::Error::custom(format_args!("invalid value {text:?}: {reason}"))
            })
        })
        .collect()
}

/// Deserializes `cluster.initial_members`: a table `id = "host:port"` (TOML) or the text
/// `"id=host:port,id=host:port"` (environment); the error names the bad entry.
fn deserialize_members<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u64, String>, D::Error> {
    /// The two accepted shapes.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Members {
        /// `{ "1" = "host:port" }`.
        Table(BTreeMap<String, String>),
        /// `"1=host:port,2=host:port"`.
        Text(String),
    }
    let pairs: Vec<(String, String)> = match Members::deserialize(deserializer)? {
        Members::Table(table) => table.into_iter().collect(),
        Members::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| match item.split_once('=') {
                Some((id, addr)) => Ok((id.trim().to_owned(), addr.trim().to_owned())),
                None => Err(serde::de::Error::custom(format_args!(
                    "invalid entry {item:?}: expected \"id=host:port\""
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    let mut members = BTreeMap::new();
    for (id, addr) in pairs {
        let parsed = id.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "invalid node id {id:?}: expected an integer >= 1"
            ))
        })?;
        parse_host_port(&addr).map_err(|reason| {
            serde::de::Error::custom(format_args!(
                "member {id}: invalid address {addr:?}: {reason}"
            ))
        })?;
        members.insert(parsed, addr);
    }
    Ok(members)
}

/// Checks a `host:port` address (a name or an IP; IPv6 in brackets) without resolving it.
pub fn parse_host_port(text: &str) -> Result<(), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected \"host:port\"".to_owned())?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if host.is_empty() || !port_ok || text.contains(char::is_whitespace) {
        return Err("expected \"host:port\" with a port 1..=65535".to_owned());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address needs brackets: \"[::1]:50051\"".to_owned());
    }
    Ok(())
}

/// The `nameserver` addresses of a resolv.conf text, port 53; unparsable entries are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

impl<Zone, Tls> Config<Zone, Tls> {
    /// Applies the command-line flags on top of the loaded values.
    fn apply_flags(&mut self, cli: &Cli) {
        if let Some(listen) = cli.dns_listen {
            self.dns.listen = listen;
        }
        if !cli.upstream.is_empty() {
            self.upstream.servers = cli.upstream.clone();
        }
        if let Some(dir) = &cli.data_dir {
            self.node.data_dir = dir.clone();
        }
        if let Some(workers) = cli.workers {
            self.dns.workers = workers;
        }
        if let Some(pin) = cli.cpu_affinity {
            self.dns.cpu_affinity = pin;
        }
        if let Some(backend) = cli.io_backend {
            self.dns.io_backend = backend;
        }
        if let Some(policy) = cli.worker_scheduling {
            self.dns.worker_scheduling = policy;
        }
        if let Some(format) = cli.log_format {
            self.log.format = format;
        }
        if let Some(grpc) = cli.grpc_listen {
            self.node.grpc_listen = grpc;
        }
        if let Some(join) = cli.join {
            self.cluster.join = join;
        }
        if let Some(metrics) = cli.metrics_listen {
            self.node.metrics_listen = metrics;
        }
        if let Some(zone_file) = &cli.zone_file {
            self.authority.zone_file = Some(zone_file.clone());
        }
        if let Some(gossip) = cli.gossip_listen {
            self.node.gossip_listen = gossip;
        }
    }

    /// Checks every rule and resolves the derived values (`dns.workers`, `upstream.servers`
    /// from /etc/resolv.conf). The zone and the `[tls]` files are not read here (see the
    /// crate documentation); their keys are checked.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.validate_with(Path::new(RESOLV_CONF))
    }

    /// [`Config::validate`] reading nameservers from `resolv_conf`.
    fn validate_with(&mut self, resolv_conf: &Path) -> Result<(), ConfigError> {
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("node.data_dir", "must not be empty"));
        }

        let dns = &mut self.dns;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if dns.workers == 0 {
            dns.workers = cpus;
        }
        if dns.runtime_threads == 0 {
            // A second runtime thread on a process confined to one CPU only adds wake-ups
            // and context switches between the two.
            dns.runtime_threads = cpus.min(2);
        }
        if !(512..=4096).contains(&dns.max_udp_payload) {
            return Err(ConfigError::invalid(
                "dns.max_udp_payload",
                format!("must be 512..=4096, got {}", dns.max_udp_payload),
            ));
        }
        at_least("dns.tcp_idle_timeout_ms", dns.tcp_idle_timeout_ms, 1)?;
        at_least("dns.tcp_max_connections", dns.tcp_max_connections as u64, 1)?;
        at_least("dns.miss_queue", dns.miss_queue as u64, 1)?;
        if dns.udp_recv_buffer != 0 && !(65_536..=1 << 30).contains(&dns.udp_recv_buffer) {
            return Err(ConfigError::invalid(
                "dns.udp_recv_buffer",
                format!(
                    "must be 0 (the system default) or 65536..=1073741824, got {}",
                    dns.udp_recv_buffer
                ),
            ));
        }

        // The zone itself is read by the node after validation.
        let zone = self.authority.zone_file.is_some();
        let upstream = &mut self.upstream;
        // A zone without upstreams is an authoritative-only node: no resolv.conf fallback.
        if upstream.servers.is_empty() && !zone {
            // An unreadable resolv.conf is the same as one without nameservers.
            let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
            upstream.servers = parse_resolv_conf(&text);
            upstream.servers_from_resolv_conf = true;
        }
        if upstream.servers.is_empty() && !zone {
            return Err(ConfigError::invalid(
                "upstream.servers",
                format!(
                    "no upstream configured and {} has no nameserver",
                    resolv_conf.display()
                ),
            ));
        }
        if let Some(own) = upstream.servers.iter().find(|s| **s == self.dns.listen) {
            return Err(ConfigError::invalid(
                "upstream.servers",
                format!("{own} is dns.listen itself (a forwarding loop)"),
            ));
        }
        at_least("upstream.timeout_ms", upstream.timeout_ms, 1)?;
        if upstream.resolve_timeout_ms < upstream.timeout_ms {
            return Err(ConfigError::invalid(
                "upstream.resolve_timeout_ms",
                format!(
                    "must be >= upstream.timeout_ms ({}), got {}",
                    upstream.timeout_ms, upstream.resolve_timeout_ms
                ),
            ));
        }

        let cache = &self.cache;
        at_least("cache.max_bytes", cache.max_bytes, 65_536)?;
        if cache.max_ttl < cache.min_ttl {
            return Err(ConfigError::invalid(
                "cache.max_ttl",
                format!(
                    "must be >= cache.min_ttl ({}), got {}",
                    cache.min_ttl, cache.max_ttl
                ),
            ));
        }
        if cache.servfail_ttl > 30 {
            return Err(ConfigError::invalid(
                "cache.servfail_ttl",
                format!("must be <= 30, got {}", cache.servfail_ttl),
            ));
        }

        self.validate_cluster()?;
        self.validate_admin()?;
        // The files themselves are read by the node after validation.
        self.tls.files()?;
        if self.node.gossip_listen == self.dns.listen {
            return Err(ConfigError::invalid(
                "node.gossip_listen",
                format!("{} is dns.listen too (both use UDP)", self.dns.listen),
            ));
        }

        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "invalid value {:?}: not a log filter directive: {error}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}

impl<Zone, Tls> Config<Zone, Tls> {
    /// Checks `[admin]` and reads `admin.token_file` into `admin.token`.
    fn validate_admin(&mut self) -> Result<(), ConfigError> {
        if self.node.metrics_listen == self.node.grpc_listen
            || self.node.metrics_listen == self.dns.listen
        {
            return Err(ConfigError::invalid(
                "node.metrics_listen",
                format!(
                    "{} is also node.grpc_listen or dns.listen (all use TCP)",
                    self.node.metrics_listen
                ),
            ));
        }
        let admin = &mut self.admin;
        admin.token = read_secret(
            admin.token.take(),
            admin.token_file.as_deref(),
            ("admin.token", "admin.token_file"),
            "token",
        )?;
        Ok(())
    }

    /// Checks `node.node_id`, `node.grpc_listen` and `[cluster]`, and reads
    /// `cluster.secret_file` into `cluster.secret`.
    fn validate_cluster(&mut self) -> Result<(), ConfigError> {
        if self.node.node_id == Some(0) {
            return Err(ConfigError::invalid("node.node_id", "must be >= 1, got 0"));
        }
        if self.node.grpc_listen == self.dns.listen {
            return Err(ConfigError::invalid(
                "node.grpc_listen",
                format!("{} is dns.listen too (both use TCP)", self.node.grpc_listen),
            ));
        }
        let cluster = &mut self.cluster;
        at_least(
            "cluster.election_timeout_ms",
            cluster.election_timeout_ms,
            30,
        )?;
        cluster.secret = read_secret(
            cluster.secret.take(),
            cluster.secret_file.as_deref(),
            ("cluster.secret", "cluster.secret_file"),
            "secret",
        )?;
        cluster.previous_secret = read_secret(
            cluster.previous_secret.take(),
            cluster.previous_secret_file.as_deref(),
            ("cluster.previous_secret", "cluster.previous_secret_file"),
            "secret",
        )?;
        if cluster.previous_secret.is_some() {
            let key = if cluster.previous_secret_file.is_some() {
                "cluster.previous_secret_file"
            } else {
                "cluster.previous_secret"
            };
            if cluster.secret.is_none() {
                return Err(ConfigError::invalid(
                    key,
                    "a previous secret needs a current one (cluster.secret or \
                     cluster.secret_file) to rotate to",
                ));
            }
            if cluster.previous_secret == cluster.secret {
                return Err(ConfigError::invalid(
                    key,
                    "the previous secret is the current one; set it to the secret being \
                     rotated out",
                ));
            }
        }
        if cluster.join && !cluster.initial_members.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.join",
                "a node that joins an existing cluster must not list cluster.initial_members",
            ));
        }
        let multi_node = cluster.join || cluster.initial_members.len() > 1;
        if multi_node && cluster.secret.is_none() {
            let what = if cluster.join {
                "--join"
            } else {
                "more than one cluster.initial_members entry"
            };
            return Err(ConfigError::invalid(
                "cluster.secret",
                format!(
                    "{what} needs a cluster secret (cluster.secret, HEIMDALL_CLUSTER__SECRET or \
                     cluster.secret_file): without one a node runs a one-node cluster only"
                ),
            ));
        }
        if !cluster.initial_members.is_empty() {
            let ids: Vec<String> = cluster.initial_members.keys().map(u64::to_string).collect();
            match self.node.node_id {
                Some(id) if cluster.initial_members.contains_key(&id) => {}
                Some(id) => {
                    return Err(ConfigError::invalid(
                        "node.node_id",
                        format!(
                            "{id} is not in cluster.initial_members ({})",
                            ids.join(", ")
                        ),
                    ));
                }
                None => {
                    return Err(ConfigError::invalid(
                        "node.node_id",
                        format!(
                            "must be set to this node's id in cluster.initial_members ({})",
                            ids.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A secret (`what`: "secret", "token") from its inline value or its file (`keys`: the
/// inline key and the file key; one or the other), at least [`MIN_SECRET_LEN`] bytes; errors
/// name the key that holds the bad value.
fn read_secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    (inline_key, file_key): (&str, &str),
    what: &str,
) -> Result<Option<Secret>, ConfigError> {
    let (secret, key) = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                file_key,
                format!("set either {inline_key} or {file_key}, not both"),
            ));
        }
        (None, Some(path)) => {
            let text = read_small(path, MAX_SECRET_FILE).map_err(|error| {
                ConfigError::invalid(file_key, format!("cannot read {}: {error}", path.display()))
            })?;
            (Secret::new(text.trim()), file_key)
        }
        (Some(secret), None) => (secret, inline_key),
        (None, None) => return Ok(None),
    };
    if secret.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the {what} must be at least {MIN_SECRET_LEN} bytes, got {}",
                secret.expose().len()
            ),
        ));
    }
    Ok(Some(secret))
}

/// The largest secret file read (a secret is a line; `/dev/zero` must not hang the loader).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The UTF-8 text of the file at `path`, refused when it is longer than `max` bytes, or
/// when it is a FIFO or a socket (opening a FIFO with no writer would block the loader).
fn read_small(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_fifo() || kind.is_socket() {
        return Err(std::io::Error::other(
            "a FIFO or socket, not a file; a secret file holds one line",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "longer than {max} bytes; a secret file holds one line"
        )));
    }
    Ok(text)
}

/// Fails unless `value >= min`.
fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            key,
            format!("must be >= {min}, got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A resolv.conf with one nameserver, so tests do not depend on the machine's.
    fn resolv_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    /// A TOML file with `text`.
    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    /// Loads with an optional TOML text and env pairs; resolv.conf holds 192.0.2.53.
    fn load_test(
        toml: Option<&str>,
        env: &[(&str, &str)],
        cli: Cli,
    ) -> Result<Config, ConfigError> {
        let resolv = resolv_file("nameserver 192.0.2.53\n");
        let file = toml.map(toml_file);
        let cli = Cli {
            config: file.as_ref().map(|f| f.path().to_path_buf()),
            ..cli
        };
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_inner(&cli, env, resolv.path())
    }

    /// Like `load_test`, expecting an error; returns its message.
    fn load_err(toml: Option<&str>, env: &[(&str, &str)]) -> String {
        match load_test(toml, env, Cli::default()) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// Asserts `message` contains every part.
    fn assert_contains(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

    /// Defaults load and resolve workers and servers.
    #[test]
    fn defaults_are_valid() {
        let config = load_test(None, &[], Cli::default()).expect("defaults");
        assert_eq!(config.dns.listen, "127.0.0.1:5353".parse().expect("addr"));
        assert!(config.dns.workers >= 1);
        assert!((1..=2).contains(&config.dns.runtime_threads));
        assert_eq!(
            config.upstream.servers,
            vec!["192.0.2.53:53".parse().expect("addr")]
        );
        let expected = Config {
            dns: DnsConfig {
                workers: config.dns.workers,
                runtime_threads: config.dns.runtime_threads,
                ..DnsConfig::default()
            },
            upstream: UpstreamConfig {
                servers: config.upstream.servers.clone(),
                // Filled from resolv.conf, so the cluster is not seeded with them.
                servers_from_resolv_conf: true,
                ..UpstreamConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(config, expected);
    }

    /// A file sets values in every section; servers parse with and without port.
    #[test]
    fn file_values_are_read() {
        let config = load_test(
            Some(
                r#"
                [node]
                data_dir = "/var/lib/heimdall"
                [dns]
                listen = "[::1]:5353"
                workers = 3
                runtime_threads = 1
                udp_recv_buffer = 0
                [upstream]
                servers = ["10.0.0.1", "10.0.0.2:5300", "::1", "[2001:db8::1]:853", "[2001:db8::2]"]
                [cache]
                max_ttl = 600
                prefetch = false
                [log]
                format = "json"
                level = "info,heimdall_node=debug"
                "#,
            ),
            &[],
            Cli::default(),
        )
        .expect("file");
        assert_eq!(config.dns.udp_recv_buffer, 0, "0: the system default");
        assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/heimdall"));
        assert_eq!(config.dns.listen, "[::1]:5353".parse().expect("addr"));
        assert_eq!(config.dns.workers, 3);
        assert_eq!(config.dns.runtime_threads, 1);
        let servers: Vec<SocketAddr> = [
            "10.0.0.1:53",
            "10.0.0.2:5300",
            "[::1]:53",
            "[2001:db8::1]:853",
            "[2001:db8::2]:53",
        ]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
        assert_eq!(config.upstream.servers, servers);
        assert_eq!(config.cache.max_ttl, 600);
        assert!(!config.cache.prefetch);
        assert_eq!(config.log.format, LogFormat::Json);
    }

    /// Precedence on one key: file < env < flag.
    #[test]
    fn precedence_file_env_flag() {
        let file = Some("[dns]\nworkers = 2\n[upstream]\nservers = [\"10.0.0.1\"]\n");
        let config = load_test(file, &[], Cli::default()).expect("file");
        assert_eq!(config.dns.workers, 2);

        let env = [
            ("HEIMDALL_DNS__WORKERS", "5"),
            ("HEIMDALL_UPSTREAM__SERVERS", "127.0.0.1:5300,10.0.0.2"),
        ];
        let config = load_test(file, &env, Cli::default()).expect("env");
        assert_eq!(config.dns.workers, 5);
        assert_eq!(
            config.upstream.servers,
            vec![
                "127.0.0.1:5300".parse().expect("addr"),
                "10.0.0.2:53".parse().expect("addr")
            ]
        );

        let cli = Cli {
            workers: Some(7),
            upstream: vec!["10.0.0.3:53".parse().expect("addr")],
            log_format: Some(LogFormat::Json),
            ..Cli::default()
        };
        let config = load_test(file, &env, cli).expect("flags");
        assert_eq!(config.dns.workers, 7);
        assert_eq!(
            config.upstream.servers,
            vec!["10.0.0.3:53".parse().expect("addr")]
        );
        assert_eq!(config.log.format, LogFormat::Json);
    }

    /// A single env server (no comma), env booleans and strings.
    #[test]
    fn env_scalars_and_single_server() {
        let env = [
            ("HEIMDALL_UPSTREAM__SERVERS", "::1"),
            ("HEIMDALL_CACHE__PREFETCH", "false"),
            ("HEIMDALL_LOG__LEVEL", "debug"),
            ("HEIMDALL_NODE__DATA_DIR", "1234"),
            ("HEIMDALL_DNS__LISTEN", "[::1]:5353"),
            ("HEIMDALL_EMPTY_IS_IGNORED", ""),
        ];
        let config = load_test(None, &env, Cli::default()).expect("env");
        assert_eq!(
            config.upstream.servers,
            vec!["[::1]:53".parse().expect("addr")]
        );
        assert!(!config.cache.prefetch);
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.node.data_dir, PathBuf::from("1234"));
    }

    /// A variable of a text key arrives as written, never parsed as a number or a boolean
    /// (found by the `config_loader` fuzz target: `HEIMDALL_NODE__DATA_DIR=0312` was the
    /// directory `312`).
    #[test]
    fn env_text_is_verbatim() {
        let secret = "0123456789012345678";
        let env = [
            ("HEIMDALL_NODE__DATA_DIR", "0312"),
            ("HEIMDALL_LOG__LEVEL", "TRUE"),
            ("HEIMDALL_CLUSTER__SECRET", secret),
            ("HEIMDALL_ADMIN__TOKEN", "1.50000000000000000"),
            ("HEIMDALL_AUTHORITY__ZONE_FILE", "+1e3"),
            ("HEIMDALL_UPSTREAM__SERVERS", "192.0.2.1,192.0.2.2"),
        ];
        let config = load_test(None, &env, Cli::default()).expect("env");
        assert_eq!(config.node.data_dir, PathBuf::from("0312"));
        assert_eq!(config.log.level, "TRUE");
        assert_eq!(
            config.cluster.secret.as_ref().map(Secret::expose),
            Some(secret.as_bytes())
        );
        assert_eq!(
            config.admin.token.as_ref().map(Secret::expose),
            Some("1.50000000000000000".as_bytes())
        );
        assert_eq!(config.authority.zone_file, Some(PathBuf::from("+1e3")));
        assert_eq!(config.upstream.servers.len(), 2);
        // Typed keys are still parsed, and a text key still refuses a table.
        let env = [
            ("HEIMDALL_CACHE__MAX_TTL", "0600"),
            ("HEIMDALL_DNS__CPU_AFFINITY", "TRUE"),
        ];
        let config = load_test(None, &env, Cli::default()).expect("typed");
        assert_eq!(config.cache.max_ttl, 600);
        assert!(config.dns.cpu_affinity);
    }

    /// Every key of the schema has a kind, so every optional key is checked like the others
    /// and its environment variable is parsed or not by its type.
    #[test]
    fn schema_has_a_kind_for_every_key() {
        let known = known().expect("known");
        for (section, value) in &known.schema {
            let ValueKind::Table(table) = &value.kind else {
                panic!("{section} is not a table");
            };
            for (key, value) in table {
                assert!(
                    !matches!(value.kind, ValueKind::Nil),
                    "{section}.{key} has no kind in schema()"
                );
            }
        }
        assert!(known.text_keys.contains("cluster.secret"));
        assert!(known.text_keys.contains("tls.ca_file"));
        assert!(!known.text_keys.contains("node.node_id"));
        assert!(!known.text_keys.contains("upstream.servers"));
        let message = load_err(Some("[admin]\ntoken_file = 5\n"), &[]);
        assert_contains(
            &message,
            &["admin.token_file: invalid value 5: expected a string"],
        );
    }

    /// An unknown key inside a known section names `section.key` and the file.
    #[test]
    fn unknown_key_in_file() {
        let message = load_err(Some("[dns]\nbogus = 1\n"), &[]);
        assert_contains(&message, &["dns.bogus: unknown key", "(from file "]);
    }

    /// An unknown section is named.
    #[test]
    fn unknown_section_in_file() {
        let message = load_err(Some("[bogus]\nx = 1\n"), &[]);
        assert_contains(&message, &["bogus: unknown section"]);
        let message = load_err(Some("bogus = 1\n"), &[]);
        assert_contains(&message, &["bogus: unknown section"]);
    }

    /// A stray HEIMDALL_ variable is an unknown key naming the variable.
    #[test]
    fn unknown_env_key() {
        let message = load_err(None, &[("HEIMDALL_CACHE__MAX_TLL", "5")]);
        assert_contains(
            &message,
            &[
                "cache.max_tll: unknown key",
                "environment variable HEIMDALL_CACHE__MAX_TLL",
            ],
        );
        let message = load_err(None, &[("HEIMDALL_BOGUS", "5")]);
        assert_contains(&message, &["bogus: unknown section"]);
    }

    /// An empty or non-bare unknown name is quoted, so the error still names it (found by the
    /// `config_loader` fuzz target: `HEIMDALL_=x` was `: unknown section`).
    #[test]
    fn unknown_names_are_quoted() {
        let message = load_err(None, &[("HEIMDALL_", "x")]);
        assert_contains(
            &message,
            &["\"\": unknown section (from environment variable HEIMDALL_)"],
        );
        let message = load_err(Some("\"\" = 1\n"), &[]);
        assert_contains(&message, &["\"\": unknown section (from file "]);
        let message = load_err(Some("[dns]\n\"\" = 1\n"), &[]);
        assert_contains(&message, &["dns.\"\": unknown key (from file "]);
        let message = load_err(Some("[dns]\n\"a b\" = 1\n"), &[]);
        assert_contains(&message, &["dns.\"a b\": unknown key"]);
    }

    /// Wrong types name the key, the value and what was expected.
    #[test]
    fn wrong_types() {
        let message = load_err(Some("[cache]\nmax_ttl = \"abc\"\n"), &[]);
        assert_contains(
            &message,
            &[
                "cache.max_ttl: invalid value \"abc\": expected an unsigned integer",
                "(from file ",
            ],
        );
        let message = load_err(None, &[("HEIMDALL_CACHE__MAX_TTL", "abc")]);
        assert_contains(
            &message,
            &[
                "cache.max_ttl: invalid value \"abc\": expected an unsigned integer",
                "HEIMDALL_CACHE__MAX_TTL",
            ],
        );
        let message = load_err(Some("[cache]\nmax_ttl = 1.5\n"), &[]);
        assert_contains(&message, &["cache.max_ttl: invalid value 1.5"]);
        let message = load_err(Some("[cache]\nmax_ttl = -1\n"), &[]);
        assert_contains(&message, &["cache.max_ttl: invalid value -1"]);
        let message = load_err(Some("[cache]\nmax_ttl = 5000000000\n"), &[]);
        assert_contains(&message, &["cache.max_ttl: invalid value", "32 bit"]);
        let message = load_err(Some("[cache]\nprefetch = 1\n"), &[]);
        assert_contains(
            &message,
            &["cache.prefetch: invalid value 1: expected true or false"],
        );
        let message = load_err(Some("[log]\nlevel = 3\n"), &[]);
        assert_contains(&message, &["log.level: invalid value 3: expected a string"]);
        let message = load_err(Some("[log]\nformat = \"xml\"\n"), &[]);
        assert_contains(
            &message,
            &["log.format: invalid value \"xml\": expected \"text\" or \"json\""],
        );
        let message = load_err(Some("[cache]\nmax_ttl = 5000000000\n"), &[]);
        assert_contains(&message, &["(from file "]);
        let message = load_err(Some("dns = 5\n"), &[]);
        assert_contains(&message, &["dns: expected a section"]);
        let message = load_err(Some("[dns]\nlisten = \"localhost\"\n"), &[]);
        assert_contains(&message, &["dns.listen", "invalid value \"localhost\""]);
    }

    /// A bad upstream server names the value, from a file or the environment.
    #[test]
    fn bad_upstream_server() {
        let message = load_err(
            Some("[upstream]\nservers = [\"10.0.0.1\", \"dns.google\"]\n"),
            &[],
        );
        assert_contains(
            &message,
            &["upstream.servers", "invalid value \"dns.google\""],
        );
        let message = load_err(None, &[("HEIMDALL_UPSTREAM__SERVERS", "10.0.0.1,nope")]);
        assert_contains(&message, &["upstream.servers", "invalid value \"nope\""]);
    }

    /// A missing config file is an error naming the path; so is invalid TOML.
    #[test]
    fn missing_and_broken_file() {
        let cli = Cli {
            config: Some(PathBuf::from("/nonexistent/heimdall.toml")),
            ..Cli::default()
        };
        let message = load_from(&cli, Vec::new())
            .expect_err("missing")
            .to_string();
        assert_contains(&message, &["config file /nonexistent/heimdall.toml:"]);
        let message = load_err(Some("[dns\n"), &[]);
        assert_contains(&message, &["config file "]);
    }

    /// Every validation rule names its key.
    #[test]
    fn validation_rules() {
        let cases = [
            (
                "[dns]\nmax_udp_payload = 511",
                "dns.max_udp_payload: must be 512..=4096",
            ),
            ("[dns]\nmax_udp_payload = 4097", "dns.max_udp_payload"),
            (
                "[dns]\ntcp_idle_timeout_ms = 0",
                "dns.tcp_idle_timeout_ms: must be >= 1",
            ),
            ("[dns]\ntcp_max_connections = 0", "dns.tcp_max_connections"),
            ("[dns]\nmiss_queue = 0", "dns.miss_queue"),
            ("[dns]\nudp_recv_buffer = 4096", "dns.udp_recv_buffer"),
            ("[dns]\nudp_recv_buffer = 2147483648", "dns.udp_recv_buffer"),
            ("[upstream]\ntimeout_ms = 0", "upstream.timeout_ms"),
            (
                "[upstream]\ntimeout_ms = 2000\nresolve_timeout_ms = 1000",
                "upstream.resolve_timeout_ms: must be >= upstream.timeout_ms",
            ),
            (
                "[cache]\nmax_bytes = 65535",
                "cache.max_bytes: must be >= 65536",
            ),
            (
                "[cache]\nmin_ttl = 10\nmax_ttl = 5",
                "cache.max_ttl: must be >= cache.min_ttl",
            ),
            (
                "[cache]\nservfail_ttl = 31",
                "cache.servfail_ttl: must be <= 30",
            ),
            ("[log]\nlevel = \"info,[=\"", "log.level: invalid value"),
            (
                "[node]\ndata_dir = \"\"",
                "node.data_dir: must not be empty",
            ),
            (
                "[upstream]\nservers = [\"127.0.0.1:5353\"]",
                "upstream.servers: 127.0.0.1:5353 is dns.listen itself",
            ),
        ];
        for (toml, expected) in cases {
            let message = load_err(Some(toml), &[]);
            assert_contains(&message, &[expected]);
        }
        // Boundaries are accepted.
        let ok = "[dns]\nmax_udp_payload = 4096\n[cache]\nmax_bytes = 65536\nservfail_ttl = 30\n";
        load_test(Some(ok), &[], Cli::default()).expect("boundaries");
    }

    /// No servers and an empty resolv.conf is the documented error.
    #[test]
    fn no_upstream_anywhere() {
        let resolv = resolv_file("# nothing here\nsearch example.org\n");
        let error =
            load_inner(&Cli::default(), Vec::new(), resolv.path()).expect_err("no upstream");
        assert_eq!(error.key(), Some("upstream.servers"));
        assert_contains(
            &error.to_string(),
            &[
                "upstream.servers: no upstream configured and ",
                "has no nameserver",
            ],
        );
    }

    /// resolv.conf parsing keeps nameserver lines only, IPv4 and IPv6, port 53.
    #[test]
    fn resolv_conf_parsing() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.1\n  nameserver\t2001:db8::1  # trailing\n\
                    nameserver fe80::1%eth0\nnameserver not-an-ip\n;nameserver 192.0.2.9\noptions ndots:2\nnameserver 127.0.0.53\n";
        let servers: Vec<SocketAddr> = ["192.0.2.1:53", "[2001:db8::1]:53", "127.0.0.53:53"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(parse_resolv_conf(text), servers);
        assert!(parse_resolv_conf("").is_empty());
    }

    /// Upstream address forms accepted on the command line and in files.
    #[test]
    fn upstream_forms() {
        for (text, expected) in [
            ("10.0.0.1", "10.0.0.1:53"),
            ("10.0.0.1:5300", "10.0.0.1:5300"),
            ("::1", "[::1]:53"),
            ("[::1]", "[::1]:53"),
            ("[::1]:5300", "[::1]:5300"),
            (" 10.0.0.1 ", "10.0.0.1:53"),
        ] {
            assert_eq!(
                parse_upstream(text),
                Ok(expected.parse().expect("addr")),
                "{text}"
            );
        }
        for bad in ["", "host", "10.0.0.1:", "10.0.0.1:99999", "[::1", "::1:53x"] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    /// The command line parses every flag.
    #[test]
    fn cli_flags_parse() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "heimdall",
            "--config",
            "x.toml",
            "--dns-listen",
            "[::1]:53",
            "--upstream",
            "10.0.0.1",
            "--upstream",
            "::1",
            "--data-dir",
            "/d",
            "--workers",
            "4",
            "--log-format",
            "json",
        ])
        .expect("parse");
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!(cli.dns_listen, Some("[::1]:53".parse().expect("addr")));
        assert_eq!(cli.upstream.len(), 2);
        assert_eq!(cli.workers, Some(4));
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        assert!(Cli::try_parse_from(["heimdall", "--upstream", "nope"]).is_err());
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// The shipped example config parses and equals the defaults (servers aside).
    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("example.toml");
        let resolv = resolv_file("nameserver 192.0.2.53\n");
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let config = load_inner(&cli, Vec::new(), resolv.path()).expect("example.toml");
        let defaults = load_inner(&Cli::default(), Vec::new(), resolv.path()).expect("defaults");
        assert_eq!(
            Config {
                upstream: UpstreamConfig {
                    servers: Vec::new(),
                    ..config.upstream.clone()
                },
                ..config.clone()
            },
            Config {
                upstream: UpstreamConfig {
                    servers: Vec::new(),
                    ..defaults.upstream.clone()
                },
                ..defaults
            }
        );
    }

    /// `dns.worker_scheduling` defaults to batch, is read from a file, the environment and the
    /// flag, in any case, and a bad value names the key and the choices.
    #[test]
    fn worker_scheduling_key() {
        use clap::Parser;
        let config = load_test(None, &[], Cli::default()).expect("default");
        assert_eq!(
            config.dns.worker_scheduling,
            WorkerScheduling::Batch,
            "the default"
        );
        let config = load_test(
            Some("[dns]\nworker_scheduling = \"Normal\"\n"),
            &[],
            Cli::default(),
        )
        .expect("file");
        assert_eq!(config.dns.worker_scheduling, WorkerScheduling::Normal);
        let config = load_test(
            None,
            &[("HEIMDALL_DNS__WORKER_SCHEDULING", "normal")],
            Cli::default(),
        )
        .expect("env");
        assert_eq!(config.dns.worker_scheduling, WorkerScheduling::Normal);
        let cli = Cli::try_parse_from(["heimdall", "--worker-scheduling", "batch"]).expect("flag");
        let config =
            load_test(Some("[dns]\nworker_scheduling = \"normal\"\n"), &[], cli).expect("flag");
        assert_eq!(config.dns.worker_scheduling, WorkerScheduling::Batch);
        let message = load_err(Some("[dns]\nworker_scheduling = \"fifo\"\n"), &[]);
        assert_contains(
            &message,
            &[
                "dns.worker_scheduling",
                "invalid value \"fifo\"",
                "\"normal\"",
            ],
        );
    }

    /// `dns.io_backend` defaults to epoll, is read from a file, the environment and the flag,
    /// in any case, and a bad value names the key and the choices.
    #[test]
    fn io_backend_key() {
        use clap::Parser;
        let config = load_test(None, &[], Cli::default()).expect("default");
        assert_eq!(config.dns.io_backend, IoBackend::Epoll, "the default");
        let config =
            load_test(Some("[dns]\nio_backend = \"Auto\"\n"), &[], Cli::default()).expect("file");
        assert_eq!(config.dns.io_backend, IoBackend::Auto);
        let config = load_test(
            None,
            &[("HEIMDALL_DNS__IO_BACKEND", "uring")],
            Cli::default(),
        )
        .expect("env");
        assert_eq!(config.dns.io_backend, IoBackend::Uring);
        let cli = Cli::try_parse_from(["heimdall", "--io-backend", "epoll"]).expect("flag");
        let config = load_test(Some("[dns]\nio_backend = \"uring\"\n"), &[], cli).expect("flag");
        assert_eq!(config.dns.io_backend, IoBackend::Epoll);
        let message = load_err(Some("[dns]\nio_backend = \"kqueue\"\n"), &[]);
        assert_contains(
            &message,
            &["dns.io_backend", "invalid value \"kqueue\"", "\"uring\""],
        );
    }

    /// `[cluster]`, `node.node_id` and `node.grpc_listen` load from file, environment and
    /// flags; the secret is never shown by `Debug`.
    #[test]
    fn cluster_keys() {
        use clap::Parser;
        let secret = "a-cluster-secret-of-some-length";
        let toml = format!(
            "[node]\nnode_id = 2\ngrpc_listen = \"127.0.0.2:50051\"\n\n[cluster]\n\
             secret = \"{secret}\"\nelection_timeout_ms = 1500\n\n\
             [cluster.initial_members]\n1 = \"127.0.0.1:50051\"\n2 = \"127.0.0.2:50051\"\n\
             3 = \"node3.example:50051\"\n"
        );
        let config = load_test(Some(&toml), &[], Cli::default()).expect("file");
        assert_eq!(config.node.node_id, Some(2));
        assert_eq!(
            config.node.grpc_listen,
            "127.0.0.2:50051".parse().expect("addr")
        );
        assert_eq!(config.cluster.election_timeout_ms, 1500);
        assert_eq!(
            config.cluster.initial_members.get(&3).map(String::as_str),
            Some("node3.example:50051")
        );
        assert_eq!(
            config.cluster.secret.as_ref().map(Secret::expose),
            Some(secret.as_bytes())
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");

        let config = load_test(
            None,
            &[
                ("HEIMDALL_CLUSTER__SECRET", secret),
                ("HEIMDALL_NODE__NODE_ID", "1"),
                (
                    "HEIMDALL_CLUSTER__INITIAL_MEMBERS",
                    "1=127.0.0.1:50051, 2=127.0.0.2:50051",
                ),
            ],
            Cli::default(),
        )
        .expect("env");
        assert_eq!(config.cluster.initial_members.len(), 2);
        assert_eq!(config.node.node_id, Some(1));

        let cli = Cli::try_parse_from(["heimdall", "--grpc-listen", "127.0.0.9:6000", "--join"])
            .expect("flags");
        let config = load_test(None, &[("HEIMDALL_CLUSTER__SECRET", secret)], cli).expect("flags");
        assert!(config.cluster.join);
        assert_eq!(
            config.node.grpc_listen,
            "127.0.0.9:6000".parse().expect("addr")
        );

        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "  {secret}  ").expect("write");
        let toml = format!("[cluster]\nsecret_file = \"{}\"\n", file.path().display());
        let config = load_test(Some(&toml), &[], Cli::default()).expect("secret file");
        assert_eq!(
            config.cluster.secret.as_ref().map(Secret::expose),
            Some(secret.as_bytes())
        );

        let defaults = load_test(None, &[], Cli::default()).expect("defaults");
        assert_eq!(defaults.cluster, ClusterConfig::default());
        assert_eq!(
            defaults.node.grpc_listen,
            "127.0.0.1:50051".parse().expect("addr")
        );
    }

    /// `[tls]` settings that cannot work are errors naming the key, and the files to read
    /// follow from the keys (the files themselves are read by heimdall-node, whose tests and
    /// the tls integration suite check them).
    #[test]
    fn tls_key_errors() {
        let only_cert = load_err(None, &[("HEIMDALL_TLS__CERT_FILE", "/c.pem")]);
        assert_contains(&only_cert, &["tls.key_file", "required with tls.cert_file"]);
        let only_key = load_err(None, &[("HEIMDALL_TLS__KEY_FILE", "/k.pem")]);
        assert_contains(&only_key, &["tls.cert_file", "required with tls.key_file"]);
        let stray = load_err(Some("[tls]\nrequire_client_cert = true\n"), &[]);
        assert_contains(&stray, &["tls.require_client_cert", "TLS is off"]);
        let stray = load_err(Some("[tls]\nca_file = \"/ca.pem\"\n"), &[]);
        assert_contains(&stray, &["tls.ca_file", "TLS is off"]);
        let pair = "[tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n";
        let no_ca = load_err(Some(pair), &[]);
        assert_contains(&no_ca, &["tls.ca_file", "required with TLS on"]);
        let required = format!("{pair}ca_file = \"/ca.pem\"\nrequire_client_cert = true\n");
        assert_contains(
            &load_err(Some(&required), &[]),
            &["tls.require_client_cert", "needs tls.client_ca_file"],
        );

        let config = load_test(None, &[], Cli::default()).expect("defaults");
        assert_eq!(
            config.tls.files().expect("off"),
            None,
            "TLS is off by default"
        );
        let shared = format!("{pair}client_ca_file = \"/client-ca.pem\"\n");
        let config = load_test(Some(&shared), &[], Cli::default()).expect("shared CA");
        let files = config.tls.files().expect("valid").expect("on");
        assert_eq!(
            (files.cert_file, files.key_file, files.require_client_cert),
            (Path::new("/c.pem"), Path::new("/k.pem"), false)
        );
        assert_eq!(files.ca, CaFiles::Shared(Path::new("/client-ca.pem")));
        let separate = format!("{shared}ca_file = \"/ca.pem\"\nrequire_client_cert = true\n");
        let config = load_test(Some(&separate), &[], Cli::default()).expect("separate CAs");
        let files = config.tls.files().expect("valid").expect("on");
        assert!(files.require_client_cert);
        assert_eq!(
            files.ca,
            CaFiles::Separate {
                ca_file: Path::new("/ca.pem"),
                client_ca_file: Some(Path::new("/client-ca.pem")),
            }
        );
    }

    /// A secret file that is a FIFO is refused at once, naming the key, instead of blocking
    /// the loader until something writes to it.
    #[test]
    fn secret_file_fifo_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("secret.fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo failed");
        let file = format!("[cluster]\nsecret_file = \"{}\"\n", fifo.display());
        // On a thread, so a loader that blocks on the FIFO fails the test instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load_test(Some(&file), &[], Cli::default()).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the loader blocked on the FIFO");
        let text = result.expect_err("a FIFO is refused").to_string();
        assert!(
            text.contains("cluster.secret_file") && text.contains("FIFO"),
            "{text}"
        );
    }

    /// Inconsistent cluster settings are errors naming the key.
    #[test]
    fn cluster_key_errors() {
        let members =
            "[cluster.initial_members]\n1 = \"127.0.0.1:50051\"\n2 = \"127.0.0.2:50051\"\n";
        let secret = "[cluster]\nsecret = \"a-cluster-secret-of-some-length\"\n";
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                format!("[node]\nnode_id = 1\n{members}"),
                vec!["cluster.secret", "needs a cluster secret"],
            ),
            (
                format!("[node]\nnode_id = 5\n{secret}{members}"),
                vec!["node.node_id", "5 is not in cluster.initial_members (1, 2)"],
            ),
            (
                format!("{secret}{members}"),
                vec!["node.node_id", "must be set"],
            ),
            (
                "[cluster]\nsecret = \"short\"\n".to_owned(),
                vec!["cluster.secret", "at least 16 bytes"],
            ),
            (
                "[cluster]\nsecret = \"a-cluster-secret-of-some-length\"\nsecret_file = \"/x\"\n"
                    .to_owned(),
                vec!["cluster.secret_file", "not both"],
            ),
            (
                "[cluster]\nsecret_file = \"/nonexistent/secret\"\n".to_owned(),
                vec!["cluster.secret_file", "cannot read"],
            ),
            (
                "[cluster]\nsecret_file = \"/dev/zero\"\n".to_owned(),
                vec!["cluster.secret_file", "longer than 65536 bytes"],
            ),
            (
                "[cluster]\nprevious_secret = \"an-old-secret-of-some-length\"\n".to_owned(),
                vec!["cluster.previous_secret", "needs a current one"],
            ),
            (
                format!("{secret}previous_secret = \"a-cluster-secret-of-some-length\"\n"),
                vec!["cluster.previous_secret", "is the current one"],
            ),
            (
                format!("{secret}previous_secret = \"old\"\n"),
                vec!["cluster.previous_secret", "at least 16 bytes"],
            ),
            (
                format!("{secret}previous_secret_file = \"/nonexistent/old\"\n"),
                vec!["cluster.previous_secret_file", "cannot read"],
            ),
            (
                format!("[node]\nnode_id = 1\n{secret}join = true\n{members}"),
                vec!["cluster.join", "must not list"],
            ),
            (
                "[cluster.initial_members]\n1 = \"no-port\"\n".to_owned(),
                vec!["cluster.initial_members", "invalid address \"no-port\""],
            ),
            (
                "[cluster.initial_members]\nx = \"127.0.0.1:1\"\n".to_owned(),
                vec!["cluster.initial_members", "invalid node id \"x\""],
            ),
            (
                "[cluster]\nelection_timeout_ms = 10\n".to_owned(),
                vec!["cluster.election_timeout_ms", "must be >= 30"],
            ),
            (
                "[node]\nnode_id = 0\n".to_owned(),
                vec!["node.node_id", "must be >= 1"],
            ),
            (
                "[node]\ngrpc_listen = \"127.0.0.1:5353\"\n".to_owned(),
                vec!["node.grpc_listen", "dns.listen"],
            ),
            (
                "[node]\ngossip_listen = \"127.0.0.1:5353\"\n".to_owned(),
                vec!["node.gossip_listen", "dns.listen", "UDP"],
            ),
        ];
        for (toml, parts) in cases {
            let message = load_err(Some(&toml), &[]);
            assert_contains(&message, &parts);
        }
        let message = load_err(None, &[("HEIMDALL_CLUSTER__JOIN", "true")]);
        assert_contains(
            &message,
            &["cluster.secret", "--join needs a cluster secret"],
        );
    }

    /// `node.gossip_listen` defaults to 127.0.0.1:7946; the file and `--gossip-listen` set it.
    #[test]
    fn gossip_listen() {
        let defaults = load_test(None, &[], Cli::default()).expect("defaults");
        assert_eq!(defaults.node.gossip_listen.to_string(), "127.0.0.1:7946");
        let file = "[node]\ngossip_listen = \"127.0.0.2:7000\"\n";
        let config = load_test(Some(file), &[], Cli::default()).expect("file");
        assert_eq!(config.node.gossip_listen.to_string(), "127.0.0.2:7000");
        let cli = Cli {
            gossip_listen: Some("127.0.0.3:7001".parse().expect("addr")),
            ..Cli::default()
        };
        let config = load_test(Some(file), &[], cli).expect("flag");
        assert_eq!(config.node.gossip_listen.to_string(), "127.0.0.3:7001");
    }

    /// `env_var_name` and `env_key` are inverse.
    #[test]
    fn env_names() {
        assert_eq!(env_var_name("cache.max_ttl"), "HEIMDALL_CACHE__MAX_TTL");
        assert_eq!(
            env_var_name("upstream.servers[1]"),
            "HEIMDALL_UPSTREAM__SERVERS"
        );
        assert_eq!(env_key("HEIMDALL_CACHE__MAX_TTL"), "cache.max_ttl");
    }
}
