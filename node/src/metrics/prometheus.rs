//! The Prometheus text exposition format (version 0.0.4) of a [`Collected`] read: every metric
//! named `heimdall_*` with a HELP and a TYPE line, labels for protocol, type, rcode and
//! upstream, and the two latency histograms as `_bucket`/`_sum`/`_count` series.

use std::fmt::Write;

use heimdall_proto::v1::LabeledCount;

use super::Collected;
use super::histogram::{BUCKETS, HistogramTotals, is_octave_bound, upper_bound_ns};

/// Nanoseconds per second.
const NANOS: f64 = 1e9;

/// Builds the text, one metric family at a time.
struct Text {
    /// The text so far.
    out: String,
}

impl Text {
    /// Start a family: its HELP and TYPE lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample without labels.
    fn sample(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// One sample with one label.
    fn labeled(
        &mut self,
        name: &str,
        label: &str,
        value_of_label: &str,
        value: impl std::fmt::Display,
    ) {
        let _ = writeln!(
            self.out,
            "{name}{{{label}=\"{}\"}} {value}",
            escape(value_of_label)
        );
    }

    /// A family with no labels and one value.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, value);
    }

    /// A counter family with one label, one sample per labelled count.
    fn counts(&mut self, name: &str, help: &str, label: &str, counts: &[LabeledCount]) {
        self.family(name, "counter", help);
        for c in counts {
            self.labeled(name, label, &c.label, c.count);
        }
    }

    /// A histogram family in seconds: cumulative buckets at every power-of-two bound, +Inf,
    /// sum and count.
    fn histogram(&mut self, name: &str, help: &str, h: &HistogramTotals) {
        self.family(name, "histogram", help);
        let mut cumulative = 0u64;
        for (i, n) in h.buckets.iter().enumerate().take(BUCKETS - 1) {
            cumulative += n;
            if is_octave_bound(i) {
                let le = upper_bound_ns(i) as f64 / NANOS;
                let _ = writeln!(self.out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
        }
        let count = h.count();
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.out, "{name}_sum {}", h.sum_ns as f64 / NANOS);
        let _ = writeln!(self.out, "{name}_count {count}");
    }
}

/// Escape a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Render every metric.
pub fn render(c: &Collected) -> String {
    let s = &c.snapshot;
    let mut t = Text {
        out: String::with_capacity(8192),
    };
    t.single(
        "heimdall_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        s.uptime_seconds,
    );
    t.counts(
        "heimdall_queries_total",
        "DNS messages received, by transport.",
        "protocol",
        &s.queries_by_protocol,
    );
    t.counts(
        "heimdall_queries_by_type_total",
        "Queries by question type (\"other\" for types without their own label).",
        "type",
        &s.queries_by_type,
    );
    t.counts(
        "heimdall_responses_total",
        "Responses sent, by rcode.",
        "rcode",
        &s.responses_by_rcode,
    );
    t.single(
        "heimdall_cache_hits_total",
        "counter",
        "Queries answered from the cache.",
        s.cache_hits,
    );
    t.single(
        "heimdall_cache_misses_total",
        "counter",
        "Queries the cache could not answer (sent upstream).",
        s.cache_misses,
    );
    t.single(
        "heimdall_cache_evictions_total",
        "counter",
        "Cache entries evicted to stay under the byte bound.",
        s.cache_evictions,
    );
    t.single(
        "heimdall_cache_inserts_total",
        "counter",
        "Answers stored in the cache.",
        c.cache_inserts,
    );
    t.single(
        "heimdall_cache_entries",
        "gauge",
        "Entries in the cache.",
        s.cache_entries,
    );
    t.single(
        "heimdall_cache_bytes",
        "gauge",
        "Bytes charged to the cache entries.",
        s.cache_bytes,
    );
    t.single(
        "heimdall_cache_hit_ratio",
        "gauge",
        "Cache hits / (hits + misses) since the node started.",
        s.cache_hit_ratio,
    );
    t.single(
        "heimdall_stale_served_total",
        "counter",
        "Expired answers served (RFC 8767 serve-stale).",
        s.stale_served,
    );
    t.single(
        "heimdall_prefetches_total",
        "counter",
        "Background refreshes of entries near the end of their TTL.",
        s.prefetches,
    );
    t.single(
        "heimdall_malformed_total",
        "counter",
        "Messages that could not be read as a query (FORMERR or dropped).",
        s.malformed,
    );
    t.single(
        "heimdall_shed_total",
        "counter",
        "Misses answered SERVFAIL because the upstream queue was full.",
        s.shed,
    );
    t.single(
        "heimdall_acl_refused_total",
        "counter",
        "Queries answered REFUSED because their source is not in acl.allow_from.",
        s.acl_refused,
    );
    t.family(
        "heimdall_cookies_total",
        "counter",
        "DNS cookies (RFC 7873): fresh server cookies issued, valid server cookies presented, wrong ones answered BADCOOKIE.",
    );
    for (result, count) in [
        ("issued", s.cookies_issued),
        ("valid", s.cookies_valid),
        ("bad", s.cookies_bad),
    ] {
        t.labeled("heimdall_cookies_total", "result", result, count);
    }
    t.family(
        "heimdall_rate_limited_total",
        "counter",
        "UDP queries over their source prefix's rate limit: dropped, or answered truncated (slipped).",
    );
    for (action, count) in [
        ("dropped", s.rate_limited_dropped),
        ("slipped", s.rate_limited_slipped),
    ] {
        t.labeled("heimdall_rate_limited_total", "action", action, count);
    }
    t.single(
        "heimdall_amplification_truncated_total",
        "counter",
        "UDP answers truncated because they exceeded rate_limit.max_amplification times the query.",
        s.amplification_truncated,
    );
    t.single(
        "heimdall_tcp_connections_total",
        "counter",
        "TCP connections accepted.",
        c.tcp_connections,
    );
    t.single(
        "heimdall_tcp_refused_total",
        "counter",
        "TCP connections refused at the connection limit.",
        c.tcp_refused,
    );
    t.single(
        "heimdall_tcp_bad_frames_total",
        "counter",
        "TCP connections closed for a bad or incomplete frame.",
        c.tcp_bad_frames,
    );
    t.single(
        "heimdall_upstream_exchanges_total",
        "counter",
        "Exchanges sent to upstreams (each try and each TCP retry).",
        s.upstream_queries,
    );
    t.single(
        "heimdall_upstream_mismatched_total",
        "counter",
        "Upstream replies ignored because their ID or question did not match the query \
         (spoofing attempts, or late replies to a retried query).",
        c.upstream_mismatched,
    );
    t.family(
        "heimdall_upstream_queries_total",
        "counter",
        "Exchanges with one upstream.",
    );
    for u in &s.upstreams {
        t.labeled(
            "heimdall_upstream_queries_total",
            "upstream",
            &u.addr,
            u.queries,
        );
    }
    t.family(
        "heimdall_upstream_failures_total",
        "counter",
        "Failed exchanges with one upstream (timeout, network error, bad reply).",
    );
    for u in &s.upstreams {
        t.labeled(
            "heimdall_upstream_failures_total",
            "upstream",
            &u.addr,
            u.failures,
        );
    }
    t.family(
        "heimdall_upstream_healthy",
        "gauge",
        "1 while the upstream is considered up, 0 while it is in backoff.",
    );
    for u in &s.upstreams {
        t.labeled(
            "heimdall_upstream_healthy",
            "upstream",
            &u.addr,
            u8::from(u.healthy),
        );
    }
    t.family(
        "heimdall_upstream_srtt_seconds",
        "gauge",
        "Smoothed round-trip time of one upstream.",
    );
    for u in &s.upstreams {
        let srtt = u.srtt_us as f64 / 1e6;
        t.labeled("heimdall_upstream_srtt_seconds", "upstream", &u.addr, srtt);
    }
    t.single(
        "heimdall_gossip_sent_total",
        "counter",
        "Cache entries sent to peers by gossip.",
        s.gossip_sent,
    );
    t.single(
        "heimdall_gossip_received_total",
        "counter",
        "Cache entries received from peers by gossip and accepted.",
        s.gossip_received,
    );
    t.single(
        "heimdall_gossip_rejected_total",
        "counter",
        "Gossip messages refused (bad authentication, malformed).",
        s.gossip_rejected,
    );
    t.family(
        "heimdall_gossip_rejected_by_reason_total",
        "counter",
        "Gossip datagrams and entries refused, by reason (not_fresher: a copy no fresher than the local one).",
    );
    for reason in crate::gossip::Reject::ALL {
        t.labeled(
            "heimdall_gossip_rejected_by_reason_total",
            "reason",
            reason.label(),
            c.gossip.rejected(reason),
        );
    }
    t.single(
        "heimdall_gossip_queue_depth",
        "gauge",
        "Hot cache entries waiting to be gossiped.",
        c.gossip.queue_depth,
    );
    t.single(
        "heimdall_gossip_bytes_per_second",
        "gauge",
        "Gossip bytes sent in the last second.",
        c.gossip.bytes_per_sec,
    );
    t.single(
        "heimdall_gossip_too_large_total",
        "counter",
        "Hot entries too large for one gossip datagram (not gossiped).",
        c.gossip.too_large,
    );
    t.histogram(
        "heimdall_query_duration_seconds",
        "Time from receiving a query to sending its answer.",
        &c.latency,
    );
    t.histogram(
        "heimdall_upstream_rtt_seconds",
        "Round-trip time of successful upstream exchanges.",
        &c.upstream_rtt,
    );
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;
    use heimdall_proto::v1::{StatsSnapshot, UpstreamStatus};
    use std::time::Duration;

    /// The text has HELP/TYPE lines, labels, escaped label values and cumulative buckets
    /// ending in +Inf == _count.
    #[test]
    fn renders_families_labels_and_histograms() {
        let h = Histogram::default();
        h.record_owned(Duration::from_micros(3), 2);
        h.record_owned(Duration::from_millis(2), 1);
        let mut latency = HistogramTotals::default();
        h.add_to(&mut latency);
        let c = Collected {
            snapshot: StatsSnapshot {
                queries_by_protocol: vec![LabeledCount {
                    label: "udp".into(),
                    count: 3,
                }],
                upstreams: vec![UpstreamStatus {
                    addr: "a\"b".into(),
                    healthy: true,
                    ..UpstreamStatus::default()
                }],
                ..StatsSnapshot::default()
            },
            latency,
            upstream_rtt: HistogramTotals::default(),
            tcp_connections: 0,
            tcp_refused: 0,
            tcp_bad_frames: 0,
            cache_inserts: 0,
            upstream_mismatched: 0,
            gossip: crate::gossip::GossipSnapshot::default(),
        };
        let text = render(&c);
        assert!(
            text.contains("heimdall_gossip_rejected_by_reason_total{reason=\"auth\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE heimdall_queries_total counter\n"));
        assert!(text.contains("heimdall_queries_total{protocol=\"udp\"} 3\n"));
        assert!(text.contains("heimdall_upstream_healthy{upstream=\"a\\\"b\"} 1\n"));
        assert!(text.contains("heimdall_query_duration_seconds_bucket{le=\"0.000004096\"} 2\n"));
        assert!(text.contains("heimdall_query_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("heimdall_query_duration_seconds_count 3\n"));
        assert!(text.contains("heimdall_query_duration_seconds_sum 0.002006\n"));
    }
}
