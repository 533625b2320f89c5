//! The cluster-wide settings held in Raft: typed sections, dotted-key access and validation.
//!
//! [`ClusterSettings`] is what every node of a cluster shares: upstreams, cache policy, ACL,
//! rate limits, gossip tuning and local records. Node-local settings (listen addresses, data
//! dir, node id, memory budget) and secrets (admin token, cluster secret) are deliberately
//! absent: nothing here is secret, so the Raft log, snapshots and history may be shown to any
//! operator.
//!
//! Keys are dotted paths over the serialized form (`cache.max_ttl`, `acl.allow_from`,
//! `upstreams`); [`KEYS`] lists every leaf. [`ClusterSettings::get`] reads a leaf or a whole
//! section as JSON; [`ClusterSettings::set`] parses a text value for a key (lists as
//! comma-separated items or a JSON array, sections as a JSON object merged into the current
//! one) and validates the result; every [`SettingsError`] names the field it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::cache::CachePolicy;
use crate::config::{CacheConfig, Config, DNS_PORT};

/// Every leaf key of [`ClusterSettings`], in display order. Lists count as one leaf.
pub const KEYS: &[&str] = &[
    "upstreams",
    "cache.min_ttl",
    "cache.max_ttl",
    "cache.max_negative_ttl",
    "cache.servfail_ttl",
    "cache.nosoa_negative_ttl",
    "cache.prefetch",
    "cache.serve_stale",
    "cache.stale_max",
    "cache.stale_ttl",
    "acl.allow_from",
    "rate_limit.enabled",
    "rate_limit.qps_per_prefix",
    "rate_limit.burst",
    "rate_limit.ipv4_prefix_len",
    "rate_limit.ipv6_prefix_len",
    "rate_limit.slip",
    "rate_limit.exempt_loopback",
    "rate_limit.max_amplification",
    "gossip.interval_ms",
    "gossip.fanout",
    "gossip.max_payload",
    "gossip.bandwidth_bytes_per_sec",
    "local_records",
];

/// Default of `rate_limit.max_amplification`: a cookieless UDP answer is at most 10 times its
/// query (a 40-byte query gets up to 400 bytes, enough for most A/AAAA answers).
pub const DEFAULT_MAX_AMPLIFICATION: u32 = 10;

/// Largest `rate_limit.max_amplification`.
pub const MAX_AMPLIFICATION: u32 = 100;

/// Longest SERVFAIL caching the cluster accepts, in seconds (the node config's limit).
pub const MAX_SERVFAIL_TTL: u32 = 30;

/// Largest TTL a DNS record may carry (RFC 2181 section 8).
pub const MAX_RECORD_TTL: u32 = i32::MAX as u32;

/// Most local records the cluster holds; bounds the Raft state and its history.
pub const MAX_LOCAL_RECORDS: usize = 1000;

/// Longest TXT local record text, in bytes (cut into 255-byte character strings).
pub const MAX_TXT_LEN: usize = 4000;

/// Largest UDP payload a gossip datagram may be configured to carry (IPv4 UDP maximum).
pub const MAX_GOSSIP_PAYLOAD: u32 = 65_507;

/// Why a settings key could not be read, set or validated; always names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SettingsError {
    /// The key names no setting (a typo, or a node-local setting that is not in Raft).
    #[error("{key}: unknown key")]
    UnknownKey {
        /// The dotted key as given.
        key: String,
    },
    /// The value does not parse for the key's type or breaks a rule.
    #[error("{key}: {reason}")]
    Invalid {
        /// The dotted key of the offending field, e.g. `cache.max_ttl` or
        /// `local_records[2].data`.
        key: String,
        /// Why the value is rejected.
        reason: String,
    },
}

impl SettingsError {
    /// The dotted key this error is about.
    pub fn key(&self) -> &str {
        match self {
            Self::UnknownKey { key } | Self::Invalid { key, .. } => key,
        }
    }

    /// An [`SettingsError::Invalid`] for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// One changed key between two settings: its old and new values as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The leaf key from [`KEYS`].
    pub key: String,
    /// The value before the change.
    pub old: Value,
    /// The value after the change.
    pub new: Value,
}

/// The configuration every node of the cluster shares, replicated by Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Resolvers misses are forwarded to ("ip" means port 53). Empty: each node uses the
    /// nameservers of its own /etc/resolv.conf, as a single node does with no upstream set.
    #[serde(deserialize_with = "deserialize_upstreams")]
    pub upstreams: Vec<SocketAddr>,
    /// TTL rules of the answer cache.
    pub cache: CacheSettings,
    /// Which clients may query.
    pub acl: AclSettings,
    /// Per-client-prefix rate limiting.
    pub rate_limit: RateLimitSettings,
    /// Hot-cache gossip tuning.
    pub gossip: GossipSettings,
    /// Records every node answers itself, like Unbound's local-data.
    pub local_records: Vec<LocalRecord>,
}

/// `cache`: the TTL policy of the answer cache (the cache's size is node-local).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// TTLs below this are raised to it, in seconds.
    pub min_ttl: u32,
    /// TTLs above this are lowered to it, in seconds (>= `min_ttl`).
    pub max_ttl: u32,
    /// Upper bound of the TTL of negative answers, in seconds (RFC 2308).
    pub max_negative_ttl: u32,
    /// How long a SERVFAIL is cached, in seconds (<= 30).
    pub servfail_ttl: u32,
    /// TTL of negative answers without an SOA, in seconds; 0 = not cached.
    pub nosoa_negative_ttl: u32,
    /// Refresh popular entries shortly before they expire.
    pub prefetch: bool,
    /// Answer from expired entries when upstreams fail (RFC 8767).
    pub serve_stale: bool,
    /// How long past expiry an entry may still be served stale, in seconds.
    pub stale_max: u32,
    /// TTL given to records of a stale answer, in seconds.
    pub stale_ttl: u32,
}

impl Default for CacheSettings {
    /// The node configuration's `[cache]` defaults.
    fn default() -> Self {
        Self::from(&CacheConfig::default())
    }
}

impl From<&CacheConfig> for CacheSettings {
    /// The TTL policy part of a node's `[cache]` section (`max_bytes` stays node-local).
    fn from(c: &CacheConfig) -> Self {
        Self {
            min_ttl: c.min_ttl,
            max_ttl: c.max_ttl,
            max_negative_ttl: c.max_negative_ttl,
            servfail_ttl: c.servfail_ttl,
            nosoa_negative_ttl: c.nosoa_negative_ttl,
            prefetch: c.prefetch,
            serve_stale: c.serve_stale,
            stale_max: c.stale_max,
            stale_ttl: c.stale_ttl,
        }
    }
}

impl From<&CacheSettings> for CachePolicy {
    /// The policy the cache applies, field for field.
    fn from(c: &CacheSettings) -> Self {
        CachePolicy {
            min_ttl: c.min_ttl,
            max_ttl: c.max_ttl,
            max_negative_ttl: c.max_negative_ttl,
            servfail_ttl: c.servfail_ttl,
            nosoa_negative_ttl: c.nosoa_negative_ttl,
            prefetch: c.prefetch,
            serve_stale: c.serve_stale,
            stale_max: c.stale_max,
            stale_ttl: c.stale_ttl,
        }
    }
}

impl From<CacheSettings> for CachePolicy {
    /// The policy the cache applies, field for field.
    fn from(c: CacheSettings) -> Self {
        CachePolicy::from(&c)
    }
}

/// `acl`: who may send queries; everyone else gets REFUSED (enforced by the serving path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclSettings {
    /// Networks in CIDR notation ("10.0.0.0/8", "::1/128"; a bare address is one host).
    pub allow_from: Vec<String>,
}

impl Default for AclSettings {
    /// Loopback, RFC 1918 private, RFC 4193 unique-local and link-local networks.
    fn default() -> Self {
        let nets = [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
            "169.254.0.0/16",
            "fe80::/10",
        ];
        Self {
            allow_from: nets.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

impl AclSettings {
    /// The parsed networks of `allow_from`; the error names the offending item.
    pub fn networks(&self) -> Result<Vec<IpNet>, SettingsError> {
        self.allow_from
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<IpNet>().map_err(|reason| {
                    SettingsError::invalid(format!("acl.allow_from[{i}]"), reason)
                })
            })
            .collect()
    }
}

/// `rate_limit`: a token bucket per client source prefix, with slip (enforced by the
/// serving path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Whether answers are rate limited at all.
    pub enabled: bool,
    /// Sustained answers per second allowed to one source prefix (>= 1).
    pub qps_per_prefix: u32,
    /// Bucket size: answers a prefix may send in a burst above the rate (>= 1).
    pub burst: u32,
    /// IPv4 clients are grouped by this prefix length (1..=32).
    pub ipv4_prefix_len: u8,
    /// IPv6 clients are grouped by this prefix length (1..=128).
    pub ipv6_prefix_len: u8,
    /// Over the limit, every `slip`-th answer is sent truncated (TC=1) so real clients retry
    /// over TCP, the others are dropped; 0 = drop all (0..=10).
    pub slip: u8,
    /// Never limit loopback sources (local benchmarks and tests), nor cap their answers.
    pub exempt_loopback: bool,
    /// Over UDP, a client without a valid server cookie gets no answer larger than this many
    /// times its query; larger ones are truncated (TC=1). 0 = no cap (0 or 2..=100).
    pub max_amplification: u32,
}

impl Default for RateLimitSettings {
    /// On, 100 answers/s with bursts of 200 per /24 or /56, slip 2, loopback exempt,
    /// answers capped at 10 times the query.
    fn default() -> Self {
        Self {
            enabled: true,
            qps_per_prefix: 100,
            burst: 200,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 56,
            slip: 2,
            exempt_loopback: true,
            max_amplification: DEFAULT_MAX_AMPLIFICATION,
        }
    }
}

/// `gossip`: how hot cache entries are spread between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipSettings {
    /// Time between gossip rounds, in milliseconds (10..=60000).
    pub interval_ms: u64,
    /// Peers sent to per round (1..=16).
    pub fanout: u32,
    /// Largest datagram payload, in bytes (512..=65507).
    pub max_payload: u32,
    /// Upper bound of gossip traffic a node sends, in bytes per second (>= `max_payload`).
    pub bandwidth_bytes_per_sec: u64,
}

impl Default for GossipSettings {
    /// 100 ms rounds to 2 peers, 1232-byte datagrams, at most 1 MiB/s.
    fn default() -> Self {
        Self {
            interval_ms: 100,
            fanout: 2,
            max_payload: 1232,
            bandwidth_bytes_per_sec: 1024 * 1024,
        }
    }
}

/// Record types a local record may have.
pub const LOCAL_RECORD_TYPES: &[&str] = &["A", "AAAA", "CNAME", "TXT", "MX", "PTR"];

/// A record every node answers itself (authoritatively), like Unbound's local-data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRecord {
    /// Owner name in presentation form, e.g. `printer.lan.` (trailing dot optional).
    pub name: String,
    /// Record type: A, AAAA, CNAME, TXT, MX or PTR (any case).
    pub rtype: String,
    /// TTL in seconds (<= 2^31 - 1). Default 3600.
    #[serde(default = "default_local_ttl")]
    pub ttl: u32,
    /// Record data in presentation form: an address (A, AAAA), a name (CNAME, PTR),
    /// "PREFERENCE NAME" (MX), or the text itself, unquoted (TXT; cut into 255-byte strings).
    pub data: String,
}

/// The TTL of a local record that does not give one.
fn default_local_ttl() -> u32 {
    3600
}

/// A local record in wire form, ready to be written into an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRecordWire {
    /// Owner name, uncompressed wire form, ASCII lower-cased.
    pub owner: Vec<u8>,
    /// Record type code.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA, uncompressed (names inside are in plain wire form).
    pub rdata: Vec<u8>,
}

impl LocalRecord {
    /// The record type code, when `rtype` is one of [`LOCAL_RECORD_TYPES`].
    pub fn rtype_code(&self) -> Option<u16> {
        use heimdall_wire::rtype;
        match self.rtype.to_ascii_uppercase().as_str() {
            "A" => Some(rtype::A),
            "AAAA" => Some(rtype::AAAA),
            "CNAME" => Some(rtype::CNAME),
            "TXT" => Some(rtype::TXT),
            "MX" => Some(rtype::MX),
            "PTR" => Some(rtype::PTR),
            _ => None,
        }
    }

    /// The record in wire form. The error names the field (`name`, `rtype`, `ttl`, `data`)
    /// relative to the record; [`ClusterSettings::validate`] prefixes it with its position.
    pub fn to_wire(&self) -> Result<LocalRecordWire, SettingsError> {
        let mut owner = name_to_wire(&self.name).map_err(|r| SettingsError::invalid("name", r))?;
        owner.make_ascii_lowercase();
        let Some(rtype) = self.rtype_code() else {
            return Err(SettingsError::invalid(
                "rtype",
                format!(
                    "unsupported type {:?}: expected one of {}",
                    self.rtype,
                    LOCAL_RECORD_TYPES.join(", ")
                ),
            ));
        };
        if self.ttl > MAX_RECORD_TTL {
            return Err(SettingsError::invalid(
                "ttl",
                format!("must be <= {MAX_RECORD_TTL}, got {}", self.ttl),
            ));
        }
        let rdata =
            rdata_from_text(rtype, &self.data).map_err(|r| SettingsError::invalid("data", r))?;
        Ok(LocalRecordWire {
            owner,
            rtype,
            ttl: self.ttl,
            rdata,
        })
    }
}

/// Encodes a presentation name into uncompressed wire form.
fn name_to_wire(text: &str) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; heimdall_wire::MAX_NAME_LEN];
    let len = heimdall_wire::name_from_str(text, &mut buf)
        .map_err(|e| format!("{text:?} is not a domain name: {e}"))?;
    buf.get(..len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("{text:?} is not a domain name"))
}

/// Encodes the presentation `data` of a local record of type `rtype` into RDATA.
fn rdata_from_text(rtype: u16, data: &str) -> Result<Vec<u8>, String> {
    use heimdall_wire::rtype as t;
    let trimmed = data.trim();
    match rtype {
        t::A => trimmed
            .parse::<Ipv4Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{data:?} is not an IPv4 address")),
        t::AAAA => trimmed
            .parse::<Ipv6Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{data:?} is not an IPv6 address")),
        t::CNAME | t::PTR => name_to_wire(trimmed),
        t::MX => {
            let mut parts = trimmed.split_whitespace();
            let (Some(pref), Some(host), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("{data:?}: expected \"PREFERENCE NAME\""));
            };
            let pref: u16 = pref
                .parse()
                .map_err(|_| format!("{data:?}: preference {pref:?} is not 0..=65535"))?;
            let mut rdata = pref.to_be_bytes().to_vec();
            rdata.extend(name_to_wire(host)?);
            Ok(rdata)
        }
        t::TXT => {
            if data.len() > MAX_TXT_LEN {
                return Err(format!(
                    "text is {} bytes, at most {MAX_TXT_LEN}",
                    data.len()
                ));
            }
            let mut rdata = Vec::with_capacity(data.len() + data.len() / 255 + 1);
            let bytes = data.as_bytes();
            if bytes.is_empty() {
                rdata.push(0);
            }
            for chunk in bytes.chunks(255) {
                // chunks(255) yields at most 255 bytes, so the length fits a u8.
                rdata.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                rdata.extend_from_slice(chunk);
            }
            Ok(rdata)
        }
        other => Err(format!("unsupported record type {other}")),
    }
}

/// An IP network in CIDR notation: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address (host bits are zero).
    pub addr: IpAddr,
    /// The prefix length (<= 32 for IPv4, <= 128 for IPv6).
    pub prefix_len: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    /// Why the text is not a network, naming the text.
    type Err = String;

    /// Parses `addr/len` or a bare address (a host network); host bits must be zero.
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr_text, len_text) = match text.trim().split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{text:?} is not a network (expected CIDR like 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_text {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        };
        let net = IpNet { addr, prefix_len };
        let zeroed = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        if zeroed != addr {
            return Err(format!(
                "{text:?} has host bits set (did you mean {zeroed}/{prefix_len}?)"
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    /// `addr/len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses an upstream given as "ip", "[ipv6]" (port 53) or "ip:port".
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("{text:?} is not an address (expected ip or ip:port)"))
}

/// Deserializes `upstreams` from strings accepted by [`parse_upstream`].
fn deserialize_upstreams<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| parse_upstream(t).map_err(serde::de::Error::custom))
        .collect()
}

impl ClusterSettings {
    /// The cluster settings found in a node's configuration: what the bootstrapping node
    /// seeds the first version with. Sections the node config does not have yet keep their
    /// defaults. Pass the config as loaded from file, environment and flags: after
    /// [`Config::validate`] an empty upstream list has been filled from this host's
    /// /etc/resolv.conf, which would then be imposed on every node.
    pub fn from_node_config(config: &Config) -> Self {
        Self {
            upstreams: config.upstream.servers.clone(),
            cache: CacheSettings::from(&config.cache),
            ..Self::default()
        }
    }

    /// The cache policy these settings ask for.
    pub fn cache_policy(&self) -> CachePolicy {
        CachePolicy::from(&self.cache)
    }

    /// The value at a dotted key (a leaf from [`KEYS`], a section such as `cache`, or `""`
    /// for everything) as JSON.
    pub fn get(&self, key: &str) -> Result<Value, SettingsError> {
        let root = self.to_json(key)?;
        lookup(&root, key)
            .cloned()
            .ok_or_else(|| SettingsError::UnknownKey {
                key: key.to_owned(),
            })
    }

    /// Sets a dotted key from text and validates the result; on error nothing changes.
    ///
    /// Booleans: true/false/yes/no/on/off/1/0. Numbers: decimal. Lists: a JSON array or
    /// comma-separated items (`"9.9.9.9, 1.1.1.1:53"`, `""` for empty). Sections (`cache`) and
    /// local records: JSON; a JSON object is merged into the current section.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), SettingsError> {
        if key.is_empty() {
            return Err(SettingsError::UnknownKey {
                key: key.to_owned(),
            });
        }
        let current = self.get(key)?;
        let value = parse_for(key, &current, text)?;
        let next = self.with_value(key, value)?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// A copy with the JSON `value` at `key` (objects merged into the current one), without
    /// validation. The error names `key` when the value has the wrong shape.
    pub(crate) fn with_value(&self, key: &str, value: Value) -> Result<Self, SettingsError> {
        let mut root = self.to_json(key)?;
        let slot = lookup_mut(&mut root, key).ok_or_else(|| SettingsError::UnknownKey {
            key: key.to_owned(),
        })?;
        merge(slot, value);
        serde_json::from_value(root).map_err(|e| SettingsError::invalid(key, e.to_string()))
    }

    /// The keys whose values differ between `self` (old) and `new`, with both values.
    pub fn diff(&self, new: &Self) -> Vec<Change> {
        let (Ok(old_root), Ok(new_root)) = (self.to_json(""), new.to_json("")) else {
            return Vec::new();
        };
        KEYS.iter()
            .filter_map(|key| {
                let old = lookup(&old_root, key)?;
                let new = lookup(&new_root, key)?;
                (old != new).then(|| Change {
                    key: (*key).to_owned(),
                    old: old.clone(),
                    new: new.clone(),
                })
            })
            .collect()
    }

    /// Checks every rule; the error names the first offending field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_upstreams()?;
        self.validate_cache()?;
        self.acl.networks()?;
        self.validate_rate_limit()?;
        self.validate_gossip()?;
        self.validate_local_records()
    }

    /// `upstreams`: usable unicast addresses with a port, no duplicates.
    fn validate_upstreams(&self) -> Result<(), SettingsError> {
        let mut seen = BTreeSet::new();
        for up in &self.upstreams {
            if up.port() == 0 || up.ip().is_unspecified() || up.ip().is_multicast() {
                return Err(SettingsError::invalid(
                    "upstreams",
                    format!("{up} is not a usable server address"),
                ));
            }
            if !seen.insert(*up) {
                return Err(SettingsError::invalid(
                    "upstreams",
                    format!("{up} is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// `cache.*`: the same rules as the node's `[cache]` section.
    fn validate_cache(&self) -> Result<(), SettingsError> {
        let c = &self.cache;
        if c.max_ttl < c.min_ttl {
            return Err(SettingsError::invalid(
                "cache.max_ttl",
                format!(
                    "must be >= cache.min_ttl ({}), got {}",
                    c.min_ttl, c.max_ttl
                ),
            ));
        }
        if c.servfail_ttl > MAX_SERVFAIL_TTL {
            return Err(SettingsError::invalid(
                "cache.servfail_ttl",
                format!("must be <= {MAX_SERVFAIL_TTL}, got {}", c.servfail_ttl),
            ));
        }
        Ok(())
    }

    /// `rate_limit.*`: positive rates, prefix lengths, slip and the amplification cap in range.
    fn validate_rate_limit(&self) -> Result<(), SettingsError> {
        let r = &self.rate_limit;
        in_range(
            "rate_limit.qps_per_prefix",
            u64::from(r.qps_per_prefix),
            1,
            u64::from(u32::MAX),
        )?;
        in_range(
            "rate_limit.burst",
            u64::from(r.burst),
            1,
            u64::from(u32::MAX),
        )?;
        in_range(
            "rate_limit.ipv4_prefix_len",
            u64::from(r.ipv4_prefix_len),
            1,
            32,
        )?;
        in_range(
            "rate_limit.ipv6_prefix_len",
            u64::from(r.ipv6_prefix_len),
            1,
            128,
        )?;
        in_range("rate_limit.slip", u64::from(r.slip), 0, 10)?;
        // 1 would leave no room for the truncated answer itself (header, question and OPT
        // with a cookie can outgrow the query).
        if r.max_amplification == 1 || r.max_amplification > MAX_AMPLIFICATION {
            return Err(SettingsError::invalid(
                "rate_limit.max_amplification",
                format!(
                    "must be 0 (no cap) or 2..={MAX_AMPLIFICATION}, got {}",
                    r.max_amplification
                ),
            ));
        }
        Ok(())
    }

    /// `gossip.*`: interval, fanout and payload in range; bandwidth fits one datagram.
    fn validate_gossip(&self) -> Result<(), SettingsError> {
        let g = &self.gossip;
        in_range("gossip.interval_ms", g.interval_ms, 10, 60_000)?;
        in_range("gossip.fanout", u64::from(g.fanout), 1, 16)?;
        in_range(
            "gossip.max_payload",
            u64::from(g.max_payload),
            512,
            u64::from(MAX_GOSSIP_PAYLOAD),
        )?;
        if g.bandwidth_bytes_per_sec < u64::from(g.max_payload) {
            return Err(SettingsError::invalid(
                "gossip.bandwidth_bytes_per_sec",
                format!(
                    "must be >= gossip.max_payload ({}), got {}",
                    g.max_payload, g.bandwidth_bytes_per_sec
                ),
            ));
        }
        Ok(())
    }

    /// `local_records`: each record encodes; a CNAME owner has no other record.
    fn validate_local_records(&self) -> Result<(), SettingsError> {
        if self.local_records.len() > MAX_LOCAL_RECORDS {
            return Err(SettingsError::invalid(
                "local_records",
                format!(
                    "{} records, at most {MAX_LOCAL_RECORDS}",
                    self.local_records.len()
                ),
            ));
        }
        // Owner name -> (index of its first record, whether any record there is a CNAME).
        let mut owners: BTreeMap<Vec<u8>, (usize, bool)> = BTreeMap::new();
        for (i, record) in self.local_records.iter().enumerate() {
            let wire = record.to_wire().map_err(|e| {
                SettingsError::invalid(
                    format!("local_records[{i}].{}", e.key()),
                    match e {
                        SettingsError::Invalid { reason, .. } => reason,
                        SettingsError::UnknownKey { key } => format!("unknown field {key}"),
                    },
                )
            })?;
            let is_cname = wire.rtype == heimdall_wire::rtype::CNAME;
            match owners.get_mut(&wire.owner) {
                None => {
                    owners.insert(wire.owner, (i, is_cname));
                }
                Some((first, had_cname)) => {
                    if is_cname || *had_cname {
                        return Err(SettingsError::invalid(
                            format!("local_records[{i}].rtype"),
                            format!(
                                "{} has a CNAME, which cannot coexist with other records \
                                 (see local_records[{first}])",
                                record.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Serializes to JSON; a failure (impossible for these types) is blamed on `key`.
    fn to_json(&self, key: &str) -> Result<Value, SettingsError> {
        serde_json::to_value(self).map_err(|e| SettingsError::invalid(key, e.to_string()))
    }
}

/// Checks `min <= value <= max` for `key`.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), SettingsError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SettingsError::invalid(
            key,
            format!("must be {min}..={max}, got {value}"),
        ))
    }
}

/// The value at dotted `key` inside `root`; `""` is the root itself.
fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    if key.is_empty() {
        return Some(root);
    }
    key.split('.')
        .try_fold(root, |v, part| v.as_object()?.get(part))
}

/// The mutable value at dotted `key` inside `root`; `""` is the root itself.
fn lookup_mut<'a>(root: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    if key.is_empty() {
        return Some(root);
    }
    key.split('.')
        .try_fold(root, |v, part| v.as_object_mut()?.get_mut(part))
}

/// Puts `value` into `slot`: objects merge key by key (recursively), anything else replaces.
fn merge(slot: &mut Value, value: Value) {
    match (slot, value) {
        (Value::Object(current), Value::Object(update)) => {
            for (k, v) in update {
                match current.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        // Unknown fields stay, so deserialization names them.
                        current.insert(k, v);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Parses `text` as a value for `key`, guided by the type of the `current` value.
fn parse_for(key: &str, current: &Value, text: &str) -> Result<Value, SettingsError> {
    let t = text.trim();
    let invalid = |reason: String| SettingsError::invalid(key, reason);
    match current {
        Value::Bool(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(invalid(format!(
                "invalid value {text:?}: expected true or false"
            ))),
        },
        Value::Number(_) => t.parse::<u64>().map(Value::from).map_err(|_| {
            invalid(format!(
                "invalid value {text:?}: expected a non-negative integer"
            ))
        }),
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Array(_) if !t.starts_with('[') => Ok(Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        Value::Array(_) | Value::Object(_) | Value::Null => {
            let value: Value = serde_json::from_str(t)
                .map_err(|e| invalid(format!("invalid JSON {text:?}: {e}")))?;
            if current.is_object() && !value.is_object() {
                return Err(invalid(format!("expected a JSON object, got {text:?}")));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects every leaf path of a JSON object (arrays are leaves).
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    /// The default settings are valid.
    #[test]
    fn defaults_validate() {
        assert_eq!(ClusterSettings::default().validate(), Ok(()));
    }

    /// Defaults match the node's own config defaults (cache) and convert to a CachePolicy.
    #[test]
    fn cache_defaults_match_node_config() {
        let settings = ClusterSettings::default();
        let node = CacheConfig::default();
        let policy = settings.cache_policy();
        assert_eq!(policy.max_ttl, node.max_ttl);
        assert_eq!(policy.max_negative_ttl, node.max_negative_ttl);
        assert_eq!(policy.servfail_ttl, node.servfail_ttl);
        assert_eq!(policy.stale_ttl, node.stale_ttl);
        assert_eq!(policy.prefetch, node.prefetch);
        assert_eq!(settings.cache, CacheSettings::from(&node));
    }

    /// KEYS lists exactly the leaves of the serialized settings.
    #[test]
    fn keys_cover_every_leaf() {
        let root = serde_json::to_value(ClusterSettings::default()).expect("serializes");
        let mut found = Vec::new();
        leaves("", &root, &mut found);
        found.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        assert_eq!(found, keys);
    }

    /// A sample text value for every key, and the JSON `get` must return after setting it.
    fn sample(key: &str) -> (&'static str, Value) {
        match key {
            "upstreams" => (
                "9.9.9.9, 1.1.1.1:5353,[2620:fe::fe]",
                serde_json::json!(["9.9.9.9:53", "1.1.1.1:5353", "[2620:fe::fe]:53"]),
            ),
            "acl.allow_from" => ("10.0.0.0/8,::1", serde_json::json!(["10.0.0.0/8", "::1"])),
            "local_records" => (
                r#"[{"name":"printer.lan.","rtype":"A","ttl":60,"data":"192.168.1.9"}]"#,
                serde_json::json!([{"name":"printer.lan.","rtype":"A","ttl":60,"data":"192.168.1.9"}]),
            ),
            "cache.prefetch" | "cache.serve_stale" | "rate_limit.exempt_loopback" => {
                ("off", Value::Bool(false))
            }
            "rate_limit.enabled" => ("no", Value::Bool(false)),
            "cache.min_ttl" => ("5", Value::from(5)),
            "cache.servfail_ttl" => ("3", Value::from(3)),
            "rate_limit.ipv4_prefix_len" => ("20", Value::from(20)),
            "rate_limit.ipv6_prefix_len" => ("48", Value::from(48)),
            "rate_limit.slip" => ("3", Value::from(3)),
            "rate_limit.max_amplification" => ("5", Value::from(5)),
            "gossip.interval_ms" => ("250", Value::from(250)),
            "gossip.fanout" => ("3", Value::from(3)),
            "gossip.max_payload" => ("1400", Value::from(1400)),
            _ => ("4321", Value::from(4321)),
        }
    }

    /// Every key can be set from text and read back; nothing else changes.
    #[test]
    fn get_set_round_trip_every_key() {
        for key in KEYS {
            let mut s = ClusterSettings::default();
            let before = s.clone();
            let (text, expected) = sample(key);
            s.set(key, text)
                .unwrap_or_else(|e| panic!("set {key}={text}: {e}"));
            assert_eq!(s.get(key), Ok(expected), "{key}");
            let changes = before.diff(&s);
            assert_eq!(changes.len(), 1, "{key}: {changes:?}");
            assert_eq!(changes.first().map(|c| c.key.as_str()), Some(*key));
            // Setting the old value back restores the defaults exactly.
            let old = before.get(key).expect("old value");
            let back = s.with_value(key, old).expect("restore");
            assert_eq!(back, before, "{key}");
        }
    }

    /// Lists also accept JSON arrays; an empty text empties a list.
    #[test]
    fn lists_accept_json_and_empty() {
        let mut s = ClusterSettings::default();
        s.set("upstreams", r#"["192.0.2.1", "192.0.2.2:5300"]"#)
            .expect("json list");
        assert_eq!(
            s.upstreams,
            vec![
                SocketAddr::from(([192, 0, 2, 1], 53)),
                SocketAddr::from(([192, 0, 2, 2], 5300))
            ]
        );
        s.set("acl.allow_from", "").expect("empty list");
        assert!(s.acl.allow_from.is_empty());
    }

    /// A section set with a JSON object merges into the current section.
    #[test]
    fn section_object_merges() {
        let mut s = ClusterSettings::default();
        s.set("cache", r#"{"min_ttl": 10, "prefetch": false}"#)
            .expect("merge");
        assert_eq!(s.cache.min_ttl, 10);
        assert!(!s.cache.prefetch);
        assert_eq!(s.cache.max_ttl, CacheSettings::default().max_ttl);
        let err = s
            .set("cache", r#"{"max_tll": 1}"#)
            .expect_err("unknown field");
        assert_eq!(err.key(), "cache");
        assert!(err.to_string().contains("max_tll"), "{err}");
    }

    /// Errors name the field and leave the settings unchanged.
    #[test]
    fn errors_name_the_field() {
        let mut s = ClusterSettings::default();
        let before = s.clone();
        let cases: &[(&str, &str, &str)] = &[
            ("cache.min_ttl", "100000", "cache.max_ttl"),
            ("cache.servfail_ttl", "31", "cache.servfail_ttl"),
            ("cache.min_ttl", "-1", "cache.min_ttl"),
            ("cache.prefetch", "maybe", "cache.prefetch"),
            ("upstreams", "not-an-ip", "upstreams"),
            ("upstreams", "1.1.1.1,1.1.1.1:53", "upstreams"),
            ("acl.allow_from", "10.0.0.1/8", "acl.allow_from[0]"),
            ("acl.allow_from", "::1,300.0.0.0/8", "acl.allow_from[1]"),
            (
                "rate_limit.ipv4_prefix_len",
                "33",
                "rate_limit.ipv4_prefix_len",
            ),
            (
                "rate_limit.ipv6_prefix_len",
                "300",
                "rate_limit.ipv6_prefix_len",
            ),
            ("rate_limit.slip", "11", "rate_limit.slip"),
            (
                "rate_limit.max_amplification",
                "1",
                "rate_limit.max_amplification",
            ),
            (
                "rate_limit.max_amplification",
                "101",
                "rate_limit.max_amplification",
            ),
            ("gossip.fanout", "0", "gossip.fanout"),
            (
                "gossip.bandwidth_bytes_per_sec",
                "100",
                "gossip.bandwidth_bytes_per_sec",
            ),
            ("cache.nope", "1", "cache.nope"),
            ("local_records", "a,b", "local_records"),
        ];
        for (key, text, named) in cases {
            let err = s.set(key, text).expect_err(key);
            assert_eq!(err.key(), *named, "{key}={text}: {err}");
            assert!(err.to_string().starts_with(named), "{err}");
            assert_eq!(s, before, "{key}={text} changed the settings");
        }
        s.set("cache.min_ttl", "60").expect("min_ttl");
        let err = s.set("cache.max_ttl", "30").expect_err("crossed");
        assert_eq!(
            err.to_string(),
            "cache.max_ttl: must be >= cache.min_ttl (60), got 30"
        );
    }

    /// Local records are checked per field, with their position in the list.
    #[test]
    fn local_records_validate_each_field() {
        let record = |name: &str, rtype: &str, data: &str| LocalRecord {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            ttl: 300,
            data: data.to_owned(),
        };
        let good = vec![
            record("a.lan", "A", "192.0.2.1"),
            record("a.lan", "aaaa", "2001:db8::1"),
            record("alias.lan.", "CNAME", "a.lan."),
            record("lan", "MX", "10 mail.lan."),
            record("a.lan", "TXT", &"x".repeat(600)),
            record("1.2.0.192.in-addr.arpa", "PTR", "a.lan"),
        ];
        let s = ClusterSettings {
            local_records: good.clone(),
            ..ClusterSettings::default()
        };
        assert_eq!(s.validate(), Ok(()));
        let txt = good.get(4).expect("txt").to_wire().expect("txt wire");
        assert_eq!(txt.rdata.len(), 600 + 3);
        assert_eq!(txt.rdata.first(), Some(&255));

        let bad = [
            (record("a..lan", "A", "192.0.2.1"), "local_records[6].name"),
            (record("b.lan", "SRV", "x"), "local_records[6].rtype"),
            (record("b.lan", "A", "2001:db8::1"), "local_records[6].data"),
            (
                record("b.lan", "AAAA", "192.0.2.1"),
                "local_records[6].data",
            ),
            (record("b.lan", "MX", "mail.lan"), "local_records[6].data"),
            (
                record("b.lan", "MX", "70000 mail.lan"),
                "local_records[6].data",
            ),
            (
                record("b.lan", "CNAME", "bad..name"),
                "local_records[6].data",
            ),
            (record("A.LAN.", "CNAME", "x.lan"), "local_records[6].rtype"),
        ];
        for (rec, field) in bad {
            let mut records = good.clone();
            records.push(rec.clone());
            let s = ClusterSettings {
                local_records: records,
                ..ClusterSettings::default()
            };
            let err = s.validate().expect_err(field);
            assert_eq!(err.key(), field, "{rec:?}: {err}");
        }
        let mut long_ttl = record("b.lan", "A", "192.0.2.1");
        long_ttl.ttl = MAX_RECORD_TTL + 1;
        let s = ClusterSettings {
            local_records: vec![long_ttl],
            ..ClusterSettings::default()
        };
        assert_eq!(
            s.validate().map_err(|e| e.key().to_owned()),
            Err("local_records[0].ttl".to_owned())
        );
        let s = ClusterSettings {
            local_records: vec![record("a.lan", "A", "192.0.2.1"); MAX_LOCAL_RECORDS + 1],
            ..ClusterSettings::default()
        };
        assert_eq!(
            s.validate().map_err(|e| e.key().to_owned()),
            Err("local_records".to_owned())
        );
    }

    /// CIDR parsing, host-bit checks and membership, including IPv4-mapped IPv6.
    #[test]
    fn ip_networks() {
        let net: IpNet = "192.168.0.0/16".parse().expect("parses");
        assert!(net.contains("192.168.4.1".parse().expect("ip")));
        assert!(net.contains("::ffff:192.168.4.1".parse().expect("ip")));
        assert!(!net.contains("192.169.0.1".parse().expect("ip")));
        let host: IpNet = "::1".parse().expect("parses");
        assert_eq!(host.prefix_len, 128);
        assert!(host.contains("::1".parse().expect("ip")));
        let all: IpNet = "0.0.0.0/0".parse().expect("parses");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        assert!("10.0.0.1/8".parse::<IpNet>().is_err());
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("fe80::/129".parse::<IpNet>().is_err());
        let acl = AclSettings::default();
        let nets = acl.networks().expect("default ACL parses");
        assert!(
            nets.iter()
                .any(|n| n.contains("172.20.1.1".parse().expect("ip")))
        );
        assert!(
            !nets
                .iter()
                .any(|n| n.contains("8.8.8.8".parse().expect("ip")))
        );
    }

    /// Unknown keys are reported as such, for get and set.
    #[test]
    fn unknown_keys() {
        let mut s = ClusterSettings::default();
        assert_eq!(
            s.get("cache.max_bytes"),
            Err(SettingsError::UnknownKey {
                key: "cache.max_bytes".to_owned()
            })
        );
        assert!(matches!(
            s.set("node.data_dir", "/tmp"),
            Err(SettingsError::UnknownKey { .. })
        ));
        assert!(matches!(
            s.set("", "{}"),
            Err(SettingsError::UnknownKey { .. })
        ));
        assert!(s.get("").expect("root").is_object());
        assert!(s.get("cache").expect("section").is_object());
    }
}
