//! What heimdallctl prints: its own serializable views of the replies, and their table form.

use std::collections::BTreeMap;

use heimdall_client::v1::{
    CacheEntryInfo, ClusterLeaderReply, ClusterMember, ClusterMembersReply, ConfigChange,
    ConfigChangeReply, ConfigGetReply, ConfigHistoryEntry, EntrySource, LabeledCount,
    StatsSnapshot, StatusReply, TopNamesReply, UpstreamStatus,
};
use serde::Serialize;
use serde_json::Value;

use crate::format::{self, Table, key_values};

/// A JSON value the node sent as text; text that is not JSON is kept as a string.
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A JSON value on one line, for tables.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One node at a glance.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The node id.
    pub node_id: u64,
    /// The heimdall version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Raft role.
    pub role: String,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// The configuration version it applied.
    pub config_version: u64,
    /// DNS listener.
    pub dns_addr: String,
    /// gRPC listener.
    pub grpc_addr: String,
    /// Cache entries.
    pub cache_entries: u64,
    /// Cache bytes.
    pub cache_bytes: u64,
    /// UDP backend.
    pub io_backend: String,
    /// UDP workers.
    pub workers: u32,
}

impl From<StatusReply> for StatusView {
    /// Copies the reply's fields.
    fn from(r: StatusReply) -> Self {
        StatusView {
            node_id: r.node_id,
            version: r.version,
            uptime_seconds: r.uptime_seconds,
            role: r.role,
            leader_id: r.leader_id,
            config_version: r.config_version,
            dns_addr: r.dns_addr,
            grpc_addr: r.grpc_addr,
            cache_entries: r.cache_entries,
            cache_bytes: r.cache_bytes,
            io_backend: r.io_backend,
            workers: r.workers,
        }
    }
}

/// The status of every node that answered, one row each.
pub fn status_table(nodes: &[(&str, &StatusView)]) -> String {
    let mut table = Table::new(&[
        "ENDPOINT", "NODE", "ROLE", "LEADER", "CONFIG", "ENTRIES", "MEMORY", "UPTIME", "DNS",
        "BACKEND", "VERSION",
    ]);
    for (endpoint, s) in nodes {
        table.row(vec![
            (*endpoint).to_owned(),
            s.node_id.to_string(),
            s.role.clone(),
            format::opt(s.leader_id),
            s.config_version.to_string(),
            s.cache_entries.to_string(),
            format::bytes(s.cache_bytes),
            format::duration(s.uptime_seconds),
            s.dns_addr.clone(),
            format!("{}/{}", s.io_backend, s.workers),
            s.version.clone(),
        ]);
    }
    table.render()
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyView {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

/// One upstream as a node sees it.
#[derive(Debug, Serialize)]
pub struct UpstreamView {
    /// host:port.
    pub addr: String,
    /// Considered up.
    pub healthy: bool,
    /// Smoothed RTT, microseconds.
    pub srtt_us: u64,
    /// Queries sent.
    pub queries: u64,
    /// Failed queries.
    pub failures: u64,
}

impl From<UpstreamStatus> for UpstreamView {
    /// Copies the fields.
    fn from(u: UpstreamStatus) -> Self {
        UpstreamView {
            addr: u.addr,
            healthy: u.healthy,
            srtt_us: u.srtt_us,
            queries: u.queries,
            failures: u.failures,
        }
    }
}

/// The upstreams as a table.
pub fn upstream_table(upstreams: &[UpstreamView]) -> String {
    let mut table = Table::new(&["UPSTREAM", "HEALTHY", "SRTT", "QUERIES", "FAILURES"]);
    for u in upstreams {
        table.row(vec![
            u.addr.clone(),
            format::yes_no(u.healthy).to_owned(),
            if u.srtt_us == 0 {
                "-".to_owned()
            } else {
                format::micros(u.srtt_us as f64)
            },
            u.queries.to_string(),
            u.failures.to_string(),
        ]);
    }
    table.render()
}

/// Cache counters.
#[derive(Debug, Serialize)]
pub struct CacheCounters {
    /// Hits, fresh or stale.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Evictions for space.
    pub evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// hits / (hits + misses).
    pub hit_ratio: f64,
    /// Serve-stale answers.
    pub stale_served: u64,
    /// Prefetches started.
    pub prefetches: u64,
}

/// One node's counters.
#[derive(Debug, Serialize)]
pub struct StatsView {
    /// The node.
    pub node_id: u64,
    /// When the snapshot was taken (Unix ms).
    pub unix_ms: u64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// All queries.
    pub queries_total: u64,
    /// By protocol.
    pub queries_by_protocol: BTreeMap<String, u64>,
    /// By question type.
    pub queries_by_type: BTreeMap<String, u64>,
    /// Responses by rcode.
    pub responses_by_rcode: BTreeMap<String, u64>,
    /// Cache counters.
    pub cache: CacheCounters,
    /// Queries sent upstream.
    pub upstream_queries: u64,
    /// Every upstream.
    pub upstreams: Vec<UpstreamView>,
    /// Query latency.
    pub latency: LatencyView,
    /// Malformed queries.
    pub malformed: u64,
    /// Queries shed.
    pub shed: u64,
    /// Gossip entries sent.
    pub gossip_sent: u64,
    /// Gossip entries accepted.
    pub gossip_received: u64,
    /// Gossip messages refused.
    pub gossip_rejected: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Raft last applied index.
    pub raft_last_applied: u64,
    /// Raft RPCs refused for authentication.
    pub raft_auth_failures: u64,
    /// Access and abuse controls.
    pub abuse: AbuseCounters,
}

/// What the access and abuse controls did.
#[derive(Debug, Default, Serialize)]
pub struct AbuseCounters {
    /// Queries refused by `acl.allow_from`.
    pub acl_refused: u64,
    /// Fresh server cookies issued.
    pub cookies_issued: u64,
    /// Valid server cookies presented.
    pub cookies_valid: u64,
    /// Wrong server cookies (BADCOOKIE).
    pub cookies_bad: u64,
    /// Rate-limited queries dropped.
    pub rate_limited_dropped: u64,
    /// Rate-limited queries answered truncated.
    pub rate_limited_slipped: u64,
    /// Answers truncated by the amplification cap.
    pub amplification_truncated: u64,
}

/// Labelled counts as a map.
fn counts(list: Vec<LabeledCount>) -> BTreeMap<String, u64> {
    list.into_iter().map(|c| (c.label, c.count)).collect()
}

impl From<StatsSnapshot> for StatsView {
    /// Regroups the snapshot.
    fn from(s: StatsSnapshot) -> Self {
        let latency = s
            .latency
            .map_or_else(LatencyView::default, |l| LatencyView {
                count: l.count,
                p50_us: l.p50_us,
                p90_us: l.p90_us,
                p99_us: l.p99_us,
                p999_us: l.p999_us,
            });
        StatsView {
            node_id: s.node_id,
            unix_ms: s.unix_ms,
            uptime_seconds: s.uptime_seconds,
            queries_total: s.queries_total,
            queries_by_protocol: counts(s.queries_by_protocol),
            queries_by_type: counts(s.queries_by_type),
            responses_by_rcode: counts(s.responses_by_rcode),
            cache: CacheCounters {
                hits: s.cache_hits,
                misses: s.cache_misses,
                evictions: s.cache_evictions,
                entries: s.cache_entries,
                bytes: s.cache_bytes,
                hit_ratio: s.cache_hit_ratio,
                stale_served: s.stale_served,
                prefetches: s.prefetches,
            },
            upstream_queries: s.upstream_queries,
            upstreams: s.upstreams.into_iter().map(UpstreamView::from).collect(),
            latency,
            malformed: s.malformed,
            shed: s.shed,
            gossip_sent: s.gossip_sent,
            gossip_received: s.gossip_received,
            gossip_rejected: s.gossip_rejected,
            raft_term: s.raft_term,
            raft_last_applied: s.raft_last_applied,
            raft_auth_failures: s.raft_auth_failures,
            abuse: AbuseCounters {
                acl_refused: s.acl_refused,
                cookies_issued: s.cookies_issued,
                cookies_valid: s.cookies_valid,
                cookies_bad: s.cookies_bad,
                rate_limited_dropped: s.rate_limited_dropped,
                rate_limited_slipped: s.rate_limited_slipped,
                amplification_truncated: s.amplification_truncated,
            },
        }
    }
}

/// The non-zero `label=count` pairs on one line (`-` when all are zero).
fn count_line(map: &BTreeMap<String, u64>) -> String {
    let pairs: Vec<String> = map
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(" ")
    }
}

/// Latency percentiles on one line.
pub fn latency_line(l: &LatencyView) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  ({} samples)",
        format::micros(l.p50_us),
        format::micros(l.p90_us),
        format::micros(l.p99_us),
        format::micros(l.p999_us),
        l.count
    )
}

/// One node's counters as key/value lines, then its upstreams.
pub fn stats_text(s: &StatsView) -> String {
    let c = &s.cache;
    let mut out = key_values(&[
        ("node", s.node_id.to_string()),
        ("at", format::unix_ms(s.unix_ms)),
        ("uptime", format::duration(s.uptime_seconds)),
        ("queries", s.queries_total.to_string()),
        ("by protocol", count_line(&s.queries_by_protocol)),
        ("by type", count_line(&s.queries_by_type)),
        ("by rcode", count_line(&s.responses_by_rcode)),
        (
            "cache",
            format!(
                "{} hits, {} misses ({} hit ratio), {} evictions",
                c.hits,
                c.misses,
                format::percent(c.hit_ratio),
                c.evictions
            ),
        ),
        (
            "cache size",
            format!("{} entries, {}", c.entries, format::bytes(c.bytes)),
        ),
        (
            "stale/prefetch",
            format!(
                "{} stale answers, {} prefetches",
                c.stale_served, c.prefetches
            ),
        ),
        ("latency", latency_line(&s.latency)),
        ("upstream queries", s.upstream_queries.to_string()),
        (
            "malformed/shed",
            format!("{} malformed, {} shed", s.malformed, s.shed),
        ),
        (
            "access/abuse",
            format!(
                "{} refused by ACL, {} rate-limited ({} dropped, {} slipped), {} truncated for amplification",
                s.abuse.acl_refused,
                s.abuse.rate_limited_dropped + s.abuse.rate_limited_slipped,
                s.abuse.rate_limited_dropped,
                s.abuse.rate_limited_slipped,
                s.abuse.amplification_truncated
            ),
        ),
        (
            "cookies",
            format!(
                "{} issued, {} valid, {} bad",
                s.abuse.cookies_issued, s.abuse.cookies_valid, s.abuse.cookies_bad
            ),
        ),
        (
            "gossip",
            format!(
                "{} sent, {} received, {} rejected",
                s.gossip_sent, s.gossip_received, s.gossip_rejected
            ),
        ),
        (
            "raft",
            format!(
                "term {}, applied {}, {} auth failures",
                s.raft_term, s.raft_last_applied, s.raft_auth_failures
            ),
        ),
    ]);
    if !s.upstreams.is_empty() {
        out.push('\n');
        out.push_str(&upstream_table(&s.upstreams));
    }
    out
}

/// One cached answer.
#[derive(Debug, Serialize)]
pub struct EntryView {
    /// The name.
    pub name: String,
    /// The type.
    pub rtype: String,
    /// The rcode.
    pub rcode: String,
    /// Seconds left.
    pub ttl_remaining: u32,
    /// The TTL it was stored with.
    pub ttl_original: u32,
    /// Hits on it.
    pub hits: u64,
    /// Where it came from.
    pub source: &'static str,
    /// Past its TTL.
    pub stale: bool,
    /// Asked with DO.
    pub dnssec_ok: bool,
    /// Asked with CD.
    pub checking_disabled: bool,
    /// The answer records.
    pub records: Vec<String>,
}

/// The word for where an entry came from.
pub fn source_name(source: i32) -> &'static str {
    match EntrySource::try_from(source) {
        Ok(EntrySource::Upstream) => "upstream",
        Ok(EntrySource::Prefetch) => "prefetch",
        Ok(EntrySource::Gossip) => "gossip",
        Ok(EntrySource::Loaded) => "loaded",
        Ok(EntrySource::Unspecified) | Err(_) => "unknown",
    }
}

impl From<CacheEntryInfo> for EntryView {
    /// Copies the fields, naming the source.
    fn from(e: CacheEntryInfo) -> Self {
        EntryView {
            name: e.name,
            rtype: e.rtype,
            rcode: e.rcode,
            ttl_remaining: e.ttl_remaining,
            ttl_original: e.ttl_original,
            hits: e.hits,
            source: source_name(e.source),
            stale: e.stale,
            dnssec_ok: e.dnssec_ok,
            checking_disabled: e.checking_disabled,
            records: e.records,
        }
    }
}

/// Cached entries as a table, then each entry's records.
pub fn entries_text(entries: &[EntryView]) -> String {
    if entries.is_empty() {
        return "not cached\n".to_owned();
    }
    let mut table = Table::new(&[
        "NAME", "TYPE", "RCODE", "TTL", "ORIGINAL", "HITS", "SOURCE", "FLAGS",
    ]);
    for e in entries {
        let mut flags = Vec::new();
        if e.stale {
            flags.push("stale");
        }
        if e.dnssec_ok {
            flags.push("do");
        }
        if e.checking_disabled {
            flags.push("cd");
        }
        table.row(vec![
            e.name.clone(),
            e.rtype.clone(),
            e.rcode.clone(),
            e.ttl_remaining.to_string(),
            e.ttl_original.to_string(),
            e.hits.to_string(),
            e.source.to_owned(),
            if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.join(",")
            },
        ]);
    }
    let mut out = table.render();
    for e in entries.iter().filter(|e| !e.records.is_empty()) {
        out.push('\n');
        for record in &e.records {
            out.push_str(record);
            out.push('\n');
        }
    }
    out
}

/// The configuration or one key.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// The version the answer reflects.
    pub version: u64,
    /// Every key with its value.
    pub values: BTreeMap<String, Value>,
}

impl From<ConfigGetReply> for ConfigView {
    /// Parses the JSON values.
    fn from(r: ConfigGetReply) -> Self {
        ConfigView {
            version: r.version,
            values: r
                .values
                .into_iter()
                .map(|v| (v.key, json(&v.value_json)))
                .collect(),
        }
    }
}

/// The configuration as `version N` and a KEY VALUE table.
pub fn config_text(c: &ConfigView) -> String {
    let mut table = Table::new(&["KEY", "VALUE"]);
    for (key, value) in &c.values {
        table.row(vec![key.clone(), json_text(value)]);
    }
    format!("version {}\n{}", c.version, table.render())
}

/// One changed key.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    /// The key.
    pub key: String,
    /// Its old value.
    pub old: Value,
    /// Its new value.
    pub new: Value,
}

impl From<ConfigChange> for ChangeView {
    /// Parses the JSON values.
    fn from(c: ConfigChange) -> Self {
        ChangeView {
            key: c.key,
            old: json(&c.old_json),
            new: json(&c.new_json),
        }
    }
}

/// The outcome of a configuration change.
#[derive(Debug, Serialize)]
pub struct ChangedView {
    /// The version created.
    pub version: u64,
    /// What changed.
    pub changes: Vec<ChangeView>,
}

impl From<ConfigChangeReply> for ChangedView {
    /// Converts the changes.
    fn from(r: ConfigChangeReply) -> Self {
        ChangedView {
            version: r.version,
            changes: r.changes.into_iter().map(ChangeView::from).collect(),
        }
    }
}

/// `version N` and a KEY OLD NEW table.
pub fn changed_text(c: &ChangedView) -> String {
    let mut table = Table::new(&["KEY", "OLD", "NEW"]);
    for change in &c.changes {
        table.row(vec![
            change.key.clone(),
            json_text(&change.old),
            json_text(&change.new),
        ]);
    }
    if table.is_empty() {
        return format!("version {}: nothing changed\n", c.version);
    }
    format!("version {}\n{}", c.version, table.render())
}

/// One version of the configuration history.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// The version.
    pub version: u64,
    /// When (Unix ms).
    pub unix_ms: u64,
    /// When, as UTC text.
    pub time: String,
    /// The node that accepted it.
    pub node_id: u64,
    /// Who asked.
    pub actor: String,
    /// What kind of change.
    pub kind: String,
    /// What changed.
    pub changes: Vec<ChangeView>,
}

impl From<ConfigHistoryEntry> for HistoryView {
    /// Converts the entry.
    fn from(e: ConfigHistoryEntry) -> Self {
        HistoryView {
            version: e.version,
            unix_ms: e.unix_ms,
            time: format::unix_ms(e.unix_ms),
            node_id: e.node_id,
            actor: e.actor,
            kind: e.kind,
            changes: e.changes.into_iter().map(ChangeView::from).collect(),
        }
    }
}

/// The history as a table, one row per changed key.
pub fn history_text(entries: &[HistoryView]) -> String {
    let mut table = Table::new(&["VERSION", "TIME", "NODE", "ACTOR", "KIND", "CHANGE"]);
    for e in entries {
        let changes: Vec<String> = e
            .changes
            .iter()
            .map(|c| format!("{}: {} -> {}", c.key, json_text(&c.old), json_text(&c.new)))
            .collect();
        let first = changes.first().cloned().unwrap_or_else(|| "-".to_owned());
        table.row(vec![
            e.version.to_string(),
            e.time.clone(),
            e.node_id.to_string(),
            e.actor.clone(),
            e.kind.clone(),
            first,
        ]);
        for more in changes.iter().skip(1) {
            table.row(vec![
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                more.clone(),
            ]);
        }
    }
    table.render()
}

/// One member.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// gRPC address.
    pub grpc_addr: String,
    /// DNS address.
    pub dns_addr: String,
    /// Gossip address.
    pub gossip_addr: String,
    /// Voter (or learner).
    pub voter: bool,
    /// Answered just now.
    pub reachable: bool,
    /// Its role.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// Its last applied index.
    pub last_applied: u64,
    /// Why unreachable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl From<ClusterMember> for MemberView {
    /// Copies the fields.
    fn from(m: ClusterMember) -> Self {
        MemberView {
            id: m.id,
            grpc_addr: m.grpc_addr,
            dns_addr: m.dns_addr,
            gossip_addr: m.gossip_addr,
            voter: m.voter,
            reachable: m.reachable,
            role: m.role,
            term: m.term,
            last_applied: m.last_applied,
            error: m.error,
        }
    }
}

/// The members and the leader.
#[derive(Debug, Serialize)]
pub struct MembersView {
    /// The leader as the answering node knows it.
    pub leader_id: Option<u64>,
    /// Every member.
    pub members: Vec<MemberView>,
}

impl From<ClusterMembersReply> for MembersView {
    /// Converts the members.
    fn from(r: ClusterMembersReply) -> Self {
        MembersView {
            leader_id: r.leader_id,
            members: r.members.into_iter().map(MemberView::from).collect(),
        }
    }
}

/// The members as a table; the leader's id is starred.
pub fn members_text(m: &MembersView) -> String {
    let mut table = Table::new(&[
        "ID",
        "GRPC",
        "DNS",
        "VOTER",
        "REACHABLE",
        "ROLE",
        "TERM",
        "APPLIED",
        "ERROR",
    ]);
    for member in &m.members {
        let star = if m.leader_id == Some(member.id) {
            "*"
        } else {
            ""
        };
        table.row(vec![
            format!("{}{star}", member.id),
            member.grpc_addr.clone(),
            member.dns_addr.clone(),
            format::yes_no(member.voter).to_owned(),
            format::yes_no(member.reachable).to_owned(),
            if member.role.is_empty() {
                "-".to_owned()
            } else {
                member.role.clone()
            },
            member.term.to_string(),
            member.last_applied.to_string(),
            member.error.clone(),
        ]);
    }
    table.render()
}

/// The leader.
#[derive(Debug, Serialize)]
pub struct LeaderView {
    /// The leader's id; None during an election.
    pub leader_id: Option<u64>,
    /// Its gRPC address.
    pub grpc_addr: String,
    /// The current term.
    pub term: u64,
}

impl From<ClusterLeaderReply> for LeaderView {
    /// Copies the fields.
    fn from(r: ClusterLeaderReply) -> Self {
        LeaderView {
            leader_id: r.leader_id,
            grpc_addr: r.grpc_addr,
            term: r.term,
        }
    }
}

/// `leader 2 at 127.0.0.2:50051 (term 3)` or `no leader (term 3)`.
pub fn leader_text(l: &LeaderView) -> String {
    match l.leader_id {
        Some(id) => format!("leader {id} at {} (term {})\n", l.grpc_addr, l.term),
        None => format!("no leader (term {})\n", l.term),
    }
}

/// One of the most queried names.
#[derive(Debug, Serialize)]
pub struct TopNameView {
    /// The name.
    pub name: String,
    /// Estimated queries in the window.
    pub count: u64,
    /// The estimate's error bound.
    pub error: u64,
}

/// The most queried names over a window.
#[derive(Debug, Serialize)]
pub struct TopNamesView {
    /// The window in seconds.
    pub window_seconds: u64,
    /// Queries counted in the window.
    pub window_queries: u64,
    /// The names, most queried first.
    pub names: Vec<TopNameView>,
}

impl From<TopNamesReply> for TopNamesView {
    /// Copies the names.
    fn from(r: TopNamesReply) -> Self {
        TopNamesView {
            window_seconds: r.window_seconds,
            window_queries: r.window_queries,
            names: r
                .names
                .into_iter()
                .map(|n| TopNameView {
                    name: n.name,
                    count: n.count,
                    error: n.error,
                })
                .collect(),
        }
    }
}

/// The top names as a table.
pub fn top_names_table(t: &TopNamesView) -> String {
    let mut table = Table::new(&["#", "NAME", "QUERIES", "ERROR"]);
    for (i, n) in t.names.iter().enumerate() {
        table.row(vec![
            (i + 1).to_string(),
            n.name.clone(),
            n.count.to_string(),
            format!("±{}", n.error),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_client::v1::ConfigValue;

    /// Config values come back as JSON values; text that is no JSON stays a string.
    #[test]
    fn config_values_parse() {
        let view = ConfigView::from(ConfigGetReply {
            version: 7,
            value_json: String::new(),
            values: vec![
                ConfigValue {
                    key: "cache.max_ttl".into(),
                    value_json: "900".into(),
                },
                ConfigValue {
                    key: "upstream.servers".into(),
                    value_json: r#"["127.0.0.1:53"]"#.into(),
                },
                ConfigValue {
                    key: "odd".into(),
                    value_json: "not json".into(),
                },
            ],
        });
        assert_eq!(
            serde_json::to_value(&view).expect("serializable"),
            serde_json::json!({"version": 7, "values": {
                "cache.max_ttl": 900, "odd": "not json", "upstream.servers": ["127.0.0.1:53"]}})
        );
        assert_eq!(
            config_text(&view),
            "version 7\nKEY               VALUE\ncache.max_ttl     900\nodd               not json\n\
             upstream.servers  [\"127.0.0.1:53\"]\n"
        );
    }

    /// A change prints its version and each key's old and new value.
    #[test]
    fn change_text() {
        let view = ChangedView::from(ConfigChangeReply {
            version: 8,
            changes: vec![ConfigChange {
                key: "cache.max_ttl".into(),
                old_json: "900".into(),
                new_json: "60".into(),
            }],
        });
        assert_eq!(
            changed_text(&view),
            "version 8\nKEY            OLD  NEW\ncache.max_ttl  900  60\n"
        );
    }

    /// The leader is starred in the members table; an unreachable member shows its error.
    #[test]
    fn members_star_the_leader() {
        let member = |id: u64, reachable: bool| ClusterMember {
            id,
            grpc_addr: format!("127.0.0.{id}:50051"),
            dns_addr: format!("127.0.0.{id}:53"),
            gossip_addr: String::new(),
            voter: true,
            reachable,
            role: if reachable {
                "Follower".into()
            } else {
                String::new()
            },
            term: 2,
            last_applied: 9,
            error: if reachable {
                String::new()
            } else {
                "refused".into()
            },
        };
        let view = MembersView::from(ClusterMembersReply {
            leader_id: Some(1),
            members: vec![member(1, true), member(2, false)],
        });
        let text = members_text(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("1*  127.0.0.1:50051"), "{text}");
        assert!(
            lines[2].contains(" no ") && lines[2].ends_with("refused"),
            "{text}"
        );
        let json = serde_json::to_value(&view).expect("serializable");
        assert!(json["members"][0].get("error").is_none(), "{json}");
        assert_eq!(json["members"][1]["error"], "refused");
    }

    /// Entries show their source and flags, then their records.
    #[test]
    fn entries_show_source_and_records() {
        let view = EntryView::from(CacheEntryInfo {
            name: "www.example.".into(),
            rtype: "A".into(),
            rcode: "NOERROR".into(),
            ttl_remaining: 250,
            ttl_original: 300,
            hits: 3,
            source: EntrySource::Gossip as i32,
            stale: false,
            records: vec!["www.example. 250 IN A 192.0.2.1".into()],
            dnssec_ok: true,
            checking_disabled: false,
        });
        assert_eq!(view.source, "gossip");
        let text = entries_text(&[view]);
        assert!(text.contains("gossip  do"), "{text}");
        assert!(
            text.ends_with("\nwww.example. 250 IN A 192.0.2.1\n"),
            "{text}"
        );
        assert_eq!(entries_text(&[]), "not cached\n");
        assert_eq!(source_name(99), "unknown");
    }

    /// History rows carry the time in UTC and one row per extra change.
    #[test]
    fn history_rows() {
        let view = HistoryView::from(ConfigHistoryEntry {
            version: 2,
            unix_ms: 0,
            node_id: 1,
            actor: "ops@host".into(),
            kind: "set".into(),
            changes: vec![
                ConfigChange {
                    key: "a".into(),
                    old_json: "1".into(),
                    new_json: "2".into(),
                },
                ConfigChange {
                    key: "b".into(),
                    old_json: "true".into(),
                    new_json: "false".into(),
                },
            ],
        });
        let continuation = format!("{:53}b: true -> false\n", "");
        assert_eq!(
            history_text(&[view]),
            "VERSION  TIME                  NODE  ACTOR     KIND  CHANGE\n\
             2        1970-01-01T00:00:00Z  1     ops@host  set   a: 1 -> 2\n"
                .to_owned()
                + &continuation
        );
    }
}
